//! Wiring: `run` (the catalog seeded, the public reads and the ledger).

use crate::{config::Config, db, routes};
use anyhow::Result;
use shop_common::{http, ledger, shutdown::Shutdown};
use tokio::net::TcpListener;

pub async fn run(listener: TcpListener, config: Config, shutdown: impl Shutdown) -> Result<()> {
    let server = http::Server::start(listener, shutdown);
    let api = routes::public().into();
    let seed = db::seed(config.item_stock);
    let app =
        ledger::seeded_app("items", &db::RESERVATIONS, api, seed, &config.participant).await?;
    server.serve(app).await
}

/// items' part of the public API's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::public().into_openapi()
}
