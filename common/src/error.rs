//! The one HTTP error shape of the shop: `{"error": "<machine_code>", "detail": "<human text>"}`.
//! Each service keeps its own error enum and converts it into an [`ApiError`] in one place; this
//! type only renders it and logs unexpected failures once, with their whole cause chain.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: Cow<'static, str>,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    /// The cause of a 5xx, logged when the response is rendered.
    source: Option<anyhow::Error>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: Cow::Borrowed(code),
                detail: detail.into(),
                field: None,
            },
            source: None,
        }
    }

    /// 400 naming the offending field.
    pub fn invalid_field(field: impl Into<String>, detail: impl Into<String>) -> Self {
        let field = field.into();
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("{field}: {}", detail.into()),
        );
        e.body.field = Some(field);
        e
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
    }

    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, detail)
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    pub fn unavailable(code: &'static str, err: anyhow::Error) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code,
            "a dependency is unavailable, retry later",
        );
        e.source = Some(err);
        e
    }

    pub fn internal(err: anyhow::Error) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "unexpected error, see the service log",
        );
        e.source = Some(err);
        e
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        Self::internal(err)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        Self::internal(anyhow::Error::new(err).context("database query"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(source) = &self.source {
            // `{:#}` prints the whole `.context()` chain on one line.
            tracing::error!(status = %self.status, code = %self.body.error, "{source:#}");
        }
        (self.status, Json(self.body)).into_response()
    }
}

/// For handlers: `Result<T, ApiError>`.
pub type ApiResult<T> = Result<T, ApiError>;
