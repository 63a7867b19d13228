//! slots' HTTP endpoints: the public list of slots. The booking ledger's endpoints come from
//! `shop_common::ledger`.

use crate::{db, error::SlotsError, startup::AppState};
use axum::{Json, Router, extract::State, routing::get};
use serde::Serialize;
use shop_common::ApiError;

pub fn public() -> Router<AppState> {
    Router::new().route("/api/slots", get(list_slots))
}

#[derive(Serialize)]
struct SlotView {
    slot: String,
    free_couriers: i64,
}

impl From<db::Slot> for SlotView {
    fn from(s: db::Slot) -> Self {
        Self {
            slot: s.slot,
            free_couriers: s.free_couriers,
        }
    }
}

async fn list_slots(State(state): State<AppState>) -> Result<Json<Vec<SlotView>>, ApiError> {
    let slots = db::list_slots(&state.pool)
        .await
        .map_err(SlotsError::from)?;
    Ok(Json(slots.into_iter().map(SlotView::from).collect()))
}
