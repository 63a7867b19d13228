//! slots' HTTP endpoint: the public list of slots. The booking ledger's endpoints come from
//! `shop_common::ledger`; slots has no errors of its own beyond the ledger's refusals and an
//! unreachable database (`ApiError::unexpected`: 503).

use crate::db;
use axum::{Json, extract::State};
use shop_common::{ApiError, openapi::Unavailable};
use sqlx::PgPool;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn public() -> OpenApiRouter<PgPool> {
    OpenApiRouter::new().routes(routes!(list_slots))
}

/// The delivery slots with the couriers still free in each.
#[utoipa::path(
    get,
    path = "/api/slots",
    operation_id = "listSlots",
    tag = "catalog",
    responses((status = 200, description = "OK", body = Vec<db::Slot>), Unavailable)
)]
async fn list_slots(State(pool): State<PgPool>) -> Result<Json<Vec<db::Slot>>, ApiError> {
    Ok(Json(db::list_slots(&pool).await?))
}
