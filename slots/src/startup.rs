//! Wiring: `run` (the slots seeded, the public reads and the ledger).

use crate::{config::Config, db, routes};
use anyhow::Result;
use shop_common::{http, ledger, shutdown::Shutdown};
use tokio::net::TcpListener;

pub async fn run(listener: TcpListener, config: Config, shutdown: impl Shutdown) -> Result<()> {
    let server = http::Server::start(listener, shutdown);
    let api = routes::public().into();
    let seed = db::seed(config.slot_capacity);
    let app = ledger::seeded_app("slots", &db::BOOKINGS, api, seed, &config.participant).await?;
    server.serve(app).await
}

/// slots' part of the public API's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::public().into_openapi()
}
