//! slots' errors, and the one place their HTTP statuses are chosen.

use shop_common::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum SlotsError {
    /// 503 `unavailable` if Postgres or Redis cannot be reached, else 500 (`ApiError::unexpected`).
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<SlotsError> for ApiError {
    fn from(e: SlotsError) -> Self {
        match e {
            SlotsError::Unexpected(e) => ApiError::unexpected(e),
        }
    }
}
