//! items' HTTP endpoint: the public catalog. The reservation ledger's endpoints come from
//! `shop_common::ledger`; items has no errors of its own beyond the ledger's refusals and an
//! unreachable database (`ApiError::unexpected`: 503).

use crate::db;
use axum::{Json, Router, extract::State, routing::get};
use shop_common::ApiError;
use sqlx::PgPool;

pub fn public() -> Router<PgPool> {
    Router::new().route("/api/items", get(list_items))
}

async fn list_items(State(pool): State<PgPool>) -> Result<Json<Vec<db::Item>>, ApiError> {
    Ok(Json(db::list_items(&pool).await?))
}
