//! The shop page (`/`), the operations console (`/console`), the API page (`/api/docs`) and their
//! assets (`/assets/{name}`): plain HTML, CSS and JavaScript modules from `order/web/`, compiled
//! into the binary so that the pages work offline and whatever serves the order API serves them
//! (the Ingress routes these paths here). They speak only the public JSON API, as any other client
//! does. Also the whole public API's OpenAPI document, `/api/openapi.json`: `docs/openapi.json`,
//! which the `openapi` crate generates from every service's handlers.
//!
//! Every answer carries a Content-Security-Policy that allows this origin alone: a page that
//! tried to load anything from another host would be refused by the browser, not just untested.

use axum::{
    Router,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use shop_common::{ApiError, json::ApiPath};

const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JSON: &str = "application/json";

/// The files under `/assets/`: (name, content type, content).
const ASSETS: [(&str, &str, &str); 5] = [
    ("app.css", CSS, include_str!("../web/app.css")),
    ("api.js", JAVASCRIPT, include_str!("../web/api.js")),
    ("shop.js", JAVASCRIPT, include_str!("../web/shop.js")),
    ("console.js", JAVASCRIPT, include_str!("../web/console.js")),
    ("docs.js", JAVASCRIPT, include_str!("../web/docs.js")),
];

const SHOP: &str = include_str!("../web/shop.html");
const CONSOLE: &str = include_str!("../web/console.html");
const API_DOCS: &str = include_str!("../web/docs.html");
const OPENAPI: &str = include_str!("../../docs/openapi.json");

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { served(HTML, SHOP) }))
        .route("/console", get(|| async { served(HTML, CONSOLE) }))
        .route("/api/docs", get(|| async { served(HTML, API_DOCS) }))
        .route("/api/openapi.json", get(|| async { served(JSON, OPENAPI) }))
        .route("/assets/{name}", get(asset))
}

async fn asset(ApiPath(name): ApiPath<String>) -> Result<Response, ApiError> {
    let (_, content_type, content) = ASSETS
        .iter()
        .find(|(asset, _, _)| *asset == name)
        .ok_or_else(|| ApiError::not_found("asset_not_found", format!("no asset {name}")))?;
    Ok(served(content_type, content))
}

fn served(content_type: &'static str, content: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Revalidated on every load: a new release is seen at once, never mixed with old files.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        content,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pages and assets name no other host: everything they load comes from this origin.
    #[test]
    fn no_page_or_asset_references_another_host() {
        let pages = [SHOP, CONSOLE, API_DOCS, OPENAPI];
        for text in pages.iter().chain(ASSETS.iter().map(|(_, _, text)| text)) {
            for scheme in ["http://", "https://", "//cdn", "url(//"] {
                assert!(!text.contains(scheme), "{scheme} in {}", &text[..80]);
            }
        }
    }
}
