//! The one HTTP error shape of the shop: `{"error": "<machine_code>", "detail": "<human text>"}`.
//! Each service keeps its own error enum and converts it into an [`ApiError`] in one place; this
//! type only renders it and logs unexpected failures once, with their whole cause chain.
//!
//! It also owns the one rule that tells a dependency that is down from a bug: an unexpected error
//! whose cause is Postgres or Redis being unreachable ([`Dependency::down_in`]) is a 503
//! `unavailable` with `Retry-After` — the client should retry — not a 500.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use std::{borrow::Cow, error::Error as StdError, fmt, io};

/// What a 503 for a dependency that is down asks the client to wait before retrying: long enough
/// for a pool to reconnect, short enough that a restarted database is used at once.
pub const DEPENDENCY_RETRY_AFTER_SECS: u64 = 2;

/// Every 4xx and 5xx answer's body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[schema(example = json!({"error": "invalid_field", "detail": "must be a number greater than 0 with at most 2 decimals", "field": "amount"}))]
pub struct ErrorBody {
    /// A machine-readable code, e.g. `invalid_field`, `not_found`, `unavailable`.
    #[schema(value_type = String)]
    pub error: Cow<'static, str>,
    /// For people.
    pub detail: String,
    /// The request field at fault, on a 400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    /// The cause of a 5xx, logged when the response is rendered.
    source: Option<anyhow::Error>,
    /// Seconds for the `Retry-After` header of a 503.
    retry_after: Option<u64>,
    /// The store that is down, for the log line of a 503 `unavailable`.
    dependency: Option<Dependency>,
}

/// A store a service cannot work without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Postgres,
    Redis,
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dependency::Postgres => "postgres",
            Dependency::Redis => "redis",
        })
    }
}

impl Dependency {
    /// The dependency whose unreachability caused `err`, if that is what it is: a refused, reset or
    /// closed connection, an I/O error, a pool that found no connection in time, the server
    /// shutting down, a statement cancelled past its timeout. Anything else — a constraint
    /// violation, a decode error, a syntax error, a Redis type error — is a bug or a refusal, not
    /// an outage, and gets `None`.
    pub fn down_in(err: &anyhow::Error) -> Option<Self> {
        err.chain().find_map(|cause| {
            if let Some(e) = cause.downcast_ref::<sqlx::Error>() {
                return postgres_unreachable(e).then_some(Dependency::Postgres);
            }
            if let Some(e) = cause.downcast_ref::<::redis::RedisError>() {
                return redis_unreachable(e).then_some(Dependency::Redis);
            }
            None
        })
    }
}

fn postgres_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception), 57P01-57P03 (the server is shutting down,
        // crashed, or not yet accepting connections), 53300 (too many connections), 57014 (the
        // statement was cancelled: it ran past DB_STATEMENT_TIMEOUT_MS, stuck behind a lock or a
        // stalled disk — the database cannot serve it now).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08")
                || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300" | "57014")
        }),
        _ => false,
    }
}

fn redis_unreachable(e: &::redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() || e.is_timeout()
        // an io::Error the client wrapped without classifying it
        || e.source().is_some_and(|s| s.is::<io::Error>())
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
            retry_after: None,
            dependency: None,
        }
    }

    /// Adds a `Retry-After: <secs>` header to the answer.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The `Retry-After` seconds this answer carries, if any.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
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

    /// 503 with `Retry-After`: something this request needs is down; a retry may succeed.
    pub fn unavailable(code: &'static str, err: anyhow::Error) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code,
            "a dependency is unavailable, retry later",
        )
        .with_retry_after(DEPENDENCY_RETRY_AFTER_SECS);
        e.source = Some(err);
        e
    }

    /// An error no service anticipated: 503 `unavailable` (naming the store in the log) when its
    /// cause is Postgres or Redis being unreachable, else 500 `internal_error`.
    pub fn unexpected(err: anyhow::Error) -> Self {
        match Dependency::down_in(&err) {
            Some(dependency) => {
                let mut e = Self::unavailable("unavailable", err);
                e.body.detail = format!("{dependency} is unavailable, retry later");
                e.dependency = Some(dependency);
                e
            }
            None => Self::internal(err),
        }
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
        Self::unexpected(err)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        Self::unexpected(anyhow::Error::new(err).context("database query"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(source) = &self.source {
            // `{:#}` prints the whole `.context()` chain on one line.
            match self.dependency {
                Some(dependency) => tracing::error!(
                    status = %self.status, code = %self.body.error, %dependency,
                    "{dependency} is unavailable: {source:#}"
                ),
                None => {
                    tracing::error!(status = %self.status, code = %self.body.error, "{source:#}")
                }
            }
        }
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// For handlers: `Result<T, ApiError>`.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    /// A loopback port nothing listens on: connecting is refused at once.
    const CLOSED: &str = "127.0.0.1:1";

    fn answer(e: ApiError) -> (StatusCode, Option<String>) {
        let r = e.into_response();
        let retry_after = r
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        (r.status(), retry_after)
    }

    #[tokio::test]
    async fn an_unreachable_postgres_is_503_unavailable_with_retry_after() {
        use sqlx::Connection;
        let refused = sqlx::PgConnection::connect(&format!("postgres://u@{CLOSED}/db"))
            .await
            .expect_err("nothing listens there");
        let err = anyhow::Error::new(refused).context("reading an account");
        assert_eq!(Dependency::down_in(&err), Some(Dependency::Postgres));
        let e = ApiError::from(err);
        assert_eq!(e.body.error, "unavailable");
        assert_eq!(
            answer(e),
            (StatusCode::SERVICE_UNAVAILABLE, Some("2".into()))
        );
        for down in [sqlx::Error::PoolTimedOut, sqlx::Error::PoolClosed] {
            let e = ApiError::from(down);
            assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE, "{e:?}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_503_unavailable() {
        let client = ::redis::Client::open(format!("redis://{CLOSED}")).unwrap();
        let refused = client
            .get_multiplexed_async_connection()
            .await
            .expect_err("nothing listens there");
        let err = anyhow::Error::new(refused).context("XADD");
        assert_eq!(Dependency::down_in(&err), Some(Dependency::Redis));

        // The shared connection, opened on first use: the first command finds Redis down.
        let redis = crate::redis::connect(&crate::config::SecretString::from(format!(
            "redis://{CLOSED}"
        )))
        .unwrap();
        let err = crate::redis::ping(&redis)
            .await
            .expect_err("nothing listens there");
        assert_eq!(Dependency::down_in(&err), Some(Dependency::Redis));
        assert_eq!(ApiError::from(err).status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn query_bugs_stay_500() {
        let bugs = [
            anyhow::Error::new(sqlx::Error::RowNotFound),
            anyhow::Error::new(sqlx::Error::ColumnNotFound("wallet".into())),
            anyhow::Error::new(sqlx::Error::Protocol("unexpected message".into())),
            anyhow::Error::new(::redis::RedisError::from((
                ::redis::ErrorKind::UnexpectedReturnType,
                "not a stream",
            ))),
            Err::<(), _>(io::Error::other("not a store"))
                .context("reading a file")
                .unwrap_err(),
        ];
        for err in bugs {
            assert_eq!(Dependency::down_in(&err), None, "{err:#}");
            let e = ApiError::from(err);
            assert_eq!(
                (e.status, e.body.error.as_ref(), e.retry_after()),
                (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", None)
            );
        }
    }
}
