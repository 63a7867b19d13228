//! Wiring: state, the router (public + ledger), seeding, and `run`.

use crate::{config::Config, db, routes};
use anyhow::Result;
use axum::Router;
use shop_common::{
    db as shop_db, http,
    ledger::{self, KeyType, LedgerSpec, Resources},
    shutdown::Shutdown,
};
use sqlx::{PgPool, migrate::Migrator};
use std::sync::LazyLock;
use tokio::net::TcpListener;

/// Its own tables, then the ledger's `holds` table and functions rendered for [`RESERVATIONS`]: the
/// migrations it released as files, byte for byte (shop_common::ledger::schema says why).
pub static MIGRATOR: LazyLock<Migrator> =
    LazyLock::new(|| RESERVATIONS.migrator("items", include_str!("tables.sql")));

/// The stock step of the saga: reserve = hold `quantity` units of the item `resource` ("3").
pub static RESERVATIONS: LedgerSpec = LedgerSpec {
    route: "reservations",
    unknown_code: "item_unavailable",
    // Anything else would make Postgres' `::bigint` cast fail; it is simply not an item.
    valid_key: |key| key.parse::<i64>().is_ok_and(|id| id > 0),
    resources: Resources {
        table: "items",
        key: "id",
        key_type: KeyType::Bigint,
        available: "stock",
        exhausted_code: "item_unavailable",
        summary: "items.stock by item id",
        holds_meaning: "resource = item id as\n-- text, quantity = units reserved.",
    },
};

pub fn build_router(pool: PgPool, config: &Config) -> Router {
    let api = routes::public().with_state(pool.clone());
    ledger::participant_app("items", api, pool, &RESERVATIONS, &config.participant)
}

pub async fn run(listener: TcpListener, config: Config, shutdown: impl Shutdown) -> Result<()> {
    let pool = shop_db::connect_and_migrate(&config.participant.database, &MIGRATOR).await?;
    db::seed(&pool, config.item_stock).await?;
    http::serve(listener, build_router(pool, &config), shutdown).await
}
