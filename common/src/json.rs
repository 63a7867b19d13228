//! JSON extractors whose failures are [`ApiError`]s: a malformed body or a bad field is a 400 that
//! names the field, instead of axum's plain-text rejections.

use crate::error::ApiError;
use axum::{
    body::Bytes,
    extract::{
        FromRequest, FromRequestParts, Request,
        rejection::{PathRejection, QueryRejection},
    },
    http::{StatusCode, header},
};
use serde::de::DeserializeOwned;

/// Like `axum::Json`, with shop errors.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/json") || ct.contains("+json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected a body with content-type application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "payload_too_large"
            } else {
                "unreadable_body"
            };
            ApiError::new(e.status(), code, e.body_text())
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Deserializes `bytes`, reporting the failing field by its path.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let inner = err.inner();
        let message = strip_position(&inner.to_string());
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::bad_request("malformed_json", message);
        }
        let path = err.path().to_string();
        if path != "." {
            return ApiError::invalid_field(path, message);
        }
        match missing_field(&message) {
            Some(field) => ApiError::invalid_field(field, "is required"),
            None => ApiError::bad_request("invalid_body", message),
        }
    })
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// Like `axum::extract::Path`, with shop errors (a malformed id is a 404: no such resource).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// Like `axum::extract::Query`, with shop errors (a malformed parameter is a 400 naming it).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::not_found("not_found", rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", rejection.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        n: u32,
    }

    #[test]
    fn names_the_failing_field() {
        let e = parse::<Body>(br#"{"name": "x", "n": -1}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.body.field.as_deref(), Some("n"));
        let e = parse::<Body>(br#"{"name": "x"}"#).unwrap_err();
        assert_eq!(e.body.field.as_deref(), Some("n"));
        let e = parse::<Body>(br#"{"name": "#).unwrap_err();
        assert_eq!(e.body.error, "malformed_json");
    }
}
