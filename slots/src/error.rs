//! slots' errors, and the one place their HTTP statuses are chosen.

use shop_common::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum SlotsError {
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<SlotsError> for ApiError {
    fn from(e: SlotsError) -> Self {
        match e {
            SlotsError::Unexpected(e) => ApiError::internal(e),
        }
    }
}
