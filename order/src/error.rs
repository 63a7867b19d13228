//! order's errors, and the one place their HTTP statuses are chosen.

use shop_common::{ApiError, idempotency};

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// Also for someone else's order: its existence is not disclosed.
    #[error("no such order")]
    NotFound,
    #[error("this Idempotency-Key was already used for a different order")]
    IdempotencyKeyReused,
    /// A failed order holds nothing, and one being aborted will fail: nothing to cancel.
    #[error("the order has failed: there is nothing to cancel")]
    AlreadyFailed,
}

impl From<OrderError> for ApiError {
    fn from(e: OrderError) -> Self {
        let detail = e.to_string();
        match e {
            OrderError::NotFound => ApiError::not_found("not_found", detail),
            OrderError::IdempotencyKeyReused => idempotency::key_reused(detail),
            OrderError::AlreadyFailed => ApiError::conflict("order_final", detail),
        }
    }
}
