//! billing's errors, and the one place their HTTP statuses are chosen.

use shop_common::{ApiError, idempotency};

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("this Idempotency-Key was already used for a different deposit")]
    IdempotencyKeyReused,
    #[error("you may only see or change your own account")]
    NotYourAccount,
    #[error("no account for {0}")]
    UnknownAccount(String),
}

impl From<BillingError> for ApiError {
    fn from(e: BillingError) -> Self {
        let detail = e.to_string();
        match e {
            BillingError::IdempotencyKeyReused => idempotency::key_reused(detail),
            BillingError::NotYourAccount => ApiError::forbidden("forbidden", detail),
            BillingError::UnknownAccount(_) => ApiError::not_found("account_not_found", detail),
        }
    }
}
