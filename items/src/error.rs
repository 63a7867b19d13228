//! items' errors, and the one place their HTTP statuses are chosen.

use shop_common::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum ItemsError {
    /// 503 `unavailable` if Postgres or Redis cannot be reached, else 500 (`ApiError::unexpected`).
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<ItemsError> for ApiError {
    fn from(e: ItemsError) -> Self {
        match e {
            ItemsError::Unexpected(e) => ApiError::unexpected(e),
        }
    }
}
