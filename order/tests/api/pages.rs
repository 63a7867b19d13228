//! The shop page, the console, the API page and document, and their assets: served with their content types and a policy that
//! lets them load nothing from another host.

use crate::spawn_app;
use reqwest::{StatusCode, header};

#[tokio::test]
async fn the_pages_and_assets_are_served_with_a_same_origin_policy() {
    let app = spawn_app().await;
    for (path, content_type, marker) in [
        ("/", "text/html", "/assets/shop.js"),
        ("/console", "text/html", "/assets/console.js"),
        ("/assets/shop.js", "text/javascript", "from './api.js'"),
        ("/assets/console.js", "text/javascript", "/api/admin/stats"),
        (
            "/assets/api.js",
            "text/javascript",
            "export async function call",
        ),
        ("/assets/app.css", "text/css", ".timeline"),
        ("/api/docs", "text/html", "/assets/docs.js"),
        (
            "/api/openapi.json",
            "application/json",
            "\"openapi\": \"3.1",
        ),
    ] {
        let res = app.get_anonymous(path).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let header = |name| res.headers()[name].to_str().unwrap().to_owned();
        assert!(
            header(header::CONTENT_TYPE).starts_with(content_type),
            "{path}"
        );
        assert!(
            header(header::CONTENT_SECURITY_POLICY).starts_with("default-src 'self';"),
            "{path}"
        );
        let body = res.text().await.unwrap();
        assert!(body.contains(marker), "{path} lacks {marker}");
    }
}

#[tokio::test]
async fn an_unknown_asset_is_a_json_404() {
    let app = spawn_app().await;
    for path in ["/assets/nope.js", "/assets/..%2Fmain.rs"] {
        let res = app.get_anonymous(path).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"], "asset_not_found", "{path}");
    }
}
