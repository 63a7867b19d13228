//! auth's errors, and the one place their HTTP statuses are chosen.

use shop_common::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("username {0} is already taken")]
    UsernameTaken(String),
    /// Deliberately the same for an unknown user and a wrong password.
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("the billing account could not be created")]
    BillingUnavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let detail = e.to_string();
        match e {
            AuthError::UsernameTaken(_) => ApiError::conflict("username_taken", detail),
            AuthError::InvalidCredentials => ApiError::unauthorized("invalid_credentials", detail),
            AuthError::BillingUnavailable(source) => {
                ApiError::unavailable("billing_unavailable", source.context(detail))
            }
            AuthError::Unexpected(e) => ApiError::internal(e),
        }
    }
}
