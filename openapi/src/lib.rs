//! The public API's one OpenAPI 3.1 document: each service's own (generated from its handlers'
//! `#[utoipa::path]` and its types' `ToSchema`) merged, with the Bearer scheme and the error body. The order API
//! serves it, as `docs/openapi.json`, at `/api/openapi.json` (with a viewer at `/api/docs`): the
//! file is this crate's output (`cargo run -p openapi > docs/openapi.json`), and a test fails
//! while it differs.

use shop_common::openapi::Shared;
use utoipa::{
    Modify,
    openapi::{InfoBuilder, OpenApi, OpenApiBuilder},
};

/// The merged document.
pub fn document() -> OpenApi {
    let mut document = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("saga shop")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Orders placed here run as sagas over billing, items and slots; a refusal \
                     undoes what was done, in reverse. Every error answer is `{\"error\", \
                     \"detail\", \"field\"}` with a machine-readable `error`; a 503 carries \
                     `Retry-After`.",
                ))
                .build(),
        )
        .build();
    let parts = [
        auth::openapi(),
        billing::openapi(),
        items::openapi(),
        slots::openapi(),
        order::openapi(),
    ];
    for part in parts {
        document.merge(part);
    }
    Shared.modify(&mut document);
    document
}

/// The document as `docs/openapi.json` holds it.
pub fn rendered() -> String {
    let mut text = serde_json::to_string_pretty(&document()).expect("a document serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests;
