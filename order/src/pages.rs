//! The shop page (`/`), the operations console (`/console`), the API page (`/api/docs`) and their
//! assets (`/assets/{name}`): plain HTML, CSS and JavaScript modules from `order/web/` (each page's
//! `<main>` there, its `<head>` and bar written once here), compiled into the binary so that the pages work offline and whatever serves the order API serves them
//! (the Ingress routes these paths here). They speak only the public JSON API, as any other client
//! does. Also the whole public API's OpenAPI document, `/api/openapi.json`: `docs/openapi.json`,
//! which the `openapi` crate generates from every service's handlers.
//!
//! Every answer carries a Content-Security-Policy that allows this origin alone: a page that
//! tried to load anything from another host would be refused by the browser, not just untested.

use axum::{
    Router,
    body::Body,
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

const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// A page: its title and heading, its script module under `/assets/`, what its bar's `<nav>`
/// holds, and its `<main>`.
struct Page {
    title: &'static str,
    heading: &'static str,
    script: &'static str,
    nav: &'static str,
    main: &'static str,
}

/// Who is signed in, and the way out (the scripts fill and show them).
const ACCOUNT_NAV: &str = "<span id=\"who\"></span>\n\
     <button id=\"logout\" type=\"button\" class=\"quiet\" hidden>Log out</button>";

const SHOP: Page = Page::account(
    "Saga shop",
    "shop.js",
    include_str!("../web/shop.main.html"),
);
const CONSOLE: Page = Page::account(
    "Operations console",
    "console.js",
    include_str!("../web/console.main.html"),
);
const API_DOCS: Page = Page {
    title: "Saga shop · API",
    heading: "API",
    script: "docs.js",
    nav: "<a class=\"quiet-link\" href=\"/api/openapi.json\">openapi.json</a>\n\
          <a class=\"quiet-link\" href=\"/\">shop</a>",
    main: include_str!("../web/docs.main.html"),
};

impl Page {
    /// A page for a signed-in user, titled by its heading, with the account in its bar.
    const fn account(heading: &'static str, script: &'static str, main: &'static str) -> Self {
        Self {
            title: heading,
            heading,
            script,
            nav: ACCOUNT_NAV,
            main,
        }
    }

    fn html(&self) -> String {
        let Page {
            title,
            heading,
            script,
            nav,
            main,
        } = self;
        format!(
            "<!doctype html>\n<html lang=\"en\">\n<head>\n\
             <meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{title}</title>\n<link rel=\"icon\" href=\"data:,\">\n\
             <link rel=\"stylesheet\" href=\"/assets/app.css\">\n\
             <script type=\"module\" src=\"/assets/{script}\"></script>\n\
             </head>\n<body>\n<header class=\"bar\">\n<h1 id=\"title\">{heading}</h1>\n\
             <nav>\n{nav}\n</nav>\n</header>\n{main}</body>\n</html>\n"
        )
    }

    fn serve(&self) -> Response {
        served(HTML, self.html())
    }
}

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { SHOP.serve() }))
        .route("/console", get(|| async { CONSOLE.serve() }))
        .route("/api/docs", get(|| async { API_DOCS.serve() }))
        .route("/api/openapi.json", get(|| async { served(JSON, OPENAPI) }))
        .route("/assets/{name}", get(asset))
}

async fn asset(ApiPath(name): ApiPath<String>) -> Result<Response, ApiError> {
    let (_, content_type, content) = ASSETS
        .iter()
        .find(|(asset, _, _)| *asset == name)
        .ok_or_else(|| ApiError::not_found("asset_not_found", format!("no asset {name}")))?;
    Ok(served(content_type, *content))
}

fn served(content_type: &'static str, content: impl Into<Body>) -> Response {
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
        content.into(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pages and assets name no other host: everything they load comes from this origin.
    #[test]
    fn no_page_or_asset_references_another_host() {
        let pages = [SHOP, CONSOLE, API_DOCS].map(|page| page.html());
        let assets = ASSETS.iter().map(|(_, _, text)| *text);
        for text in pages
            .iter()
            .map(String::as_str)
            .chain([OPENAPI])
            .chain(assets)
        {
            for scheme in ["http://", "https://", "//cdn", "url(//"] {
                assert!(!text.contains(scheme), "{scheme} in {}", &text[..80]);
            }
        }
    }
}
