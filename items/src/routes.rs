//! items' HTTP endpoints: the public catalog. The reservation ledger's endpoints come from
//! `shop_common::ledger`.

use crate::{db, error::ItemsError, startup::AppState};
use axum::{Json, Router, extract::State, routing::get};
use serde::Serialize;
use shop_common::{ApiError, domain::Money};

pub fn public() -> Router<AppState> {
    Router::new().route("/api/items", get(list_items))
}

#[derive(Serialize)]
struct ItemView {
    id: i64,
    name: String,
    price: Money,
    /// What is still available to reserve.
    stock: i64,
}

impl From<db::Item> for ItemView {
    fn from(i: db::Item) -> Self {
        Self {
            id: i.id,
            name: i.name,
            price: i.price,
            stock: i.stock,
        }
    }
}

async fn list_items(State(state): State<AppState>) -> Result<Json<Vec<ItemView>>, ApiError> {
    let items = db::list_items(&state.pool)
        .await
        .map_err(ItemsError::from)?;
    Ok(Json(items.into_iter().map(ItemView::from).collect()))
}
