//! auth's errors, and the one place their HTTP statuses are chosen.

use crate::password::PasswordError;
use axum::http::StatusCode;
use shop_common::ApiError;

/// A hash takes tens of milliseconds: a second later the queue has long moved on.
const OVERLOADED_RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("username {0} is already taken")]
    UsernameTaken(String),
    /// Deliberately the same for an unknown user and a wrong password.
    #[error("wrong username or password")]
    InvalidCredentials,
    /// Every password-hashing slot is busy and the bounded wait ran out.
    #[error("too many logins and sign-ups in progress, retry shortly")]
    Overloaded,
    #[error("the billing account could not be created")]
    BillingUnavailable(#[source] anyhow::Error),
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let detail = e.to_string();
        match e {
            AuthError::UsernameTaken(_) => ApiError::conflict("username_taken", detail),
            AuthError::InvalidCredentials => ApiError::unauthorized("invalid_credentials", detail),
            AuthError::Overloaded => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", detail)
                    .with_retry_after(OVERLOADED_RETRY_AFTER_SECS)
            }
            AuthError::BillingUnavailable(source) => {
                ApiError::unavailable("billing_unavailable", source.context(detail))
            }
        }
    }
}

/// A failed hash is unexpected (500, or 503 when a dependency is down); a full queue is ours.
impl From<PasswordError> for ApiError {
    fn from(e: PasswordError) -> Self {
        match e {
            PasswordError::Overloaded => AuthError::Overloaded.into(),
            PasswordError::Failed(e) => ApiError::unexpected(e),
        }
    }
}
