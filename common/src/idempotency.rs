//! The optional `Idempotency-Key` request header, as an extractor: a client that retries a POST
//! with the same key gets the first attempt's result instead of a second effect.

use crate::error::ApiError;
use axum::{
    extract::FromRequestParts,
    http::{StatusCode, request::Parts},
};

pub const HEADER: &str = "idempotency-key";

/// A key sent again with a different request: 422 `idempotency_key_reused`, `detail` saying what
/// the key was first used for.
pub fn key_reused(detail: String) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        detail,
    )
}

/// `None` without the header; a malformed key is a 400 naming the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(pub Option<String>);

impl IdempotencyKey {
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(raw) = parts.headers.get(HEADER) else {
            return Ok(Self(None));
        };
        match raw.to_str() {
            Ok(k) if !k.is_empty() && k.len() <= 200 => Ok(Self(Some(k.to_owned()))),
            _ => Err(ApiError::invalid_field(
                "Idempotency-Key",
                "must be 1 to 200 visible ASCII characters",
            )),
        }
    }
}

/// The header as the OpenAPI document describes it: `params(IdempotencyKey)`.
impl utoipa::IntoParams for IdempotencyKey {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::{
            ObjectBuilder, Required, Type,
            path::{ParameterBuilder, ParameterIn},
        };
        let key = ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(200));
        vec![
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "A retry with the same key is answered as the first request was, and applies \
                     once",
                ))
                .schema(Some(key))
                .build(),
        ]
    }
}
