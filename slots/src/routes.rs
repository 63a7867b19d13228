//! slots' HTTP endpoint: the public list of slots. The booking ledger's endpoints come from
//! `shop_common::ledger`; slots has no errors of its own beyond the ledger's refusals and an
//! unreachable database (`ApiError::unexpected`: 503).

use crate::db;
use axum::{Json, Router, extract::State, routing::get};
use shop_common::ApiError;
use sqlx::PgPool;

pub fn public() -> Router<PgPool> {
    Router::new().route("/api/slots", get(list_slots))
}

async fn list_slots(State(pool): State<PgPool>) -> Result<Json<Vec<db::Slot>>, ApiError> {
    Ok(Json(db::list_slots(&pool).await?))
}
