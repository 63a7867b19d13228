//! The guard of `/internal/` routes: callers must present the shared service token in
//! `X-Internal-Token`. Applied as a layer on the whole internal router, so no endpoint can forget it.
//! The gateway and the ingress never route `/internal/` either; this is the second wall.

use crate::config::ExposeSecret;
use crate::{config::SecretString, error::ApiError};
use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};

pub const HEADER: &str = "x-internal-token";

#[derive(Clone, Debug)]
pub struct InternalToken(pub SecretString);

pub async fn require_token(
    State(expected): State<InternalToken>,
    request: Request,
    next: Next,
) -> Response {
    let Some(presented) = request.headers().get(HEADER) else {
        return ApiError::unauthorized(
            "missing_internal_token",
            "internal endpoint: X-Internal-Token required",
        )
        .into_response();
    };
    if !constant_time_eq(presented.as_bytes(), expected.0.expose_secret().as_bytes()) {
        return ApiError::forbidden("bad_internal_token", "internal endpoint: token refused")
            .into_response();
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
