//! The document is current, complete for what clients use, and holds nothing internal.

use super::*;
use serde_json::Value;
use shop_common::openapi::is_instance;
use std::{collections::BTreeSet, path::PathBuf};

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn paths() -> Value {
    serde_json::to_value(document()).unwrap()["paths"].clone()
}

/// `UPDATE_OPENAPI=1 cargo nextest run -p openapi` writes it.
#[test]
fn docs_openapi_json_is_the_generated_document() {
    let path = repo_file("docs/openapi.json");
    let generated = rendered();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is not the generated document: UPDATE_OPENAPI=1 cargo nextest run -p openapi"
    );
}

#[test]
fn the_document_is_openapi_3_1_with_the_bearer_scheme() {
    let document = serde_json::to_value(document()).unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[test]
fn no_internal_or_operational_path_is_documented() {
    for path in paths().as_object().unwrap().keys() {
        for never in ["/internal", "/health", "/metrics"] {
            assert!(!path.starts_with(never), "{path} is documented");
        }
        assert!(path.starts_with("/api/"), "{path} is not under /api");
    }
}

/// Every request of the newman collection — what other people's clients do — is documented: its
/// method under a path template that matches its URL.
#[test]
fn every_request_of_the_newman_collection_is_documented() {
    let collection: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("postman/saga-shop.postman_collection.json")).unwrap(),
    )
    .unwrap();
    let mut requests = BTreeSet::new();
    collect(&collection["item"], &mut requests);
    assert!(requests.len() > 10, "{requests:?}");
    let paths = paths();
    let documented: Vec<(String, Vec<String>)> = paths
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            (
                path.clone(),
                item.as_object().unwrap().keys().cloned().collect(),
            )
        })
        .collect();
    for (method, url) in requests {
        let found = documented.iter().any(|(template, methods)| {
            methods.contains(&method.to_lowercase()) && is_instance(template, &url)
        });
        assert!(found, "{method} {url} is not in the document");
    }
}

fn collect(items: &Value, into: &mut BTreeSet<(String, String)>) {
    for item in items.as_array().into_iter().flatten() {
        if let Some(children) = item.get("item") {
            collect(children, into);
        }
        if let Some(request) = item.get("request") {
            let url = match &request["url"] {
                Value::String(raw) => raw.clone(),
                url => url["raw"].as_str().unwrap().to_owned(),
            };
            let path = url
                .trim_start_matches("{{baseUrl}}")
                .split('?')
                .next()
                .unwrap()
                .trim_end_matches('/')
                .to_owned();
            into.insert((request["method"].as_str().unwrap().to_owned(), path));
        }
    }
}
