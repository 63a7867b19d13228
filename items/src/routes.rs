//! items' HTTP endpoint: the public catalog. The reservation ledger's endpoints come from
//! `shop_common::ledger`; items has no errors of its own beyond the ledger's refusals and an
//! unreachable database (`ApiError::unexpected`: 503).

use crate::db;
use axum::{Json, extract::State};
use shop_common::{ApiError, openapi::Unavailable};
use sqlx::PgPool;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn public() -> OpenApiRouter<PgPool> {
    OpenApiRouter::new().routes(routes!(list_items))
}

/// The catalog: every item with its price and the stock left.
#[utoipa::path(
    get,
    path = "/api/items",
    operation_id = "listItems",
    tag = "catalog",
    responses((status = 200, description = "OK", body = Vec<db::Item>), Unavailable)
)]
async fn list_items(State(pool): State<PgPool>) -> Result<Json<Vec<db::Item>>, ApiError> {
    Ok(Json(db::list_items(&pool).await?))
}
