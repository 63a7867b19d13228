//! Wiring: the ledger's spec, seeding, and `run` (the public reads and the ledger).

use crate::{config::Config, db, routes};
use anyhow::Result;
use shop_common::{
    ledger::{self, KeyType, LedgerSpec, OwnTables, Resources},
    shutdown::Shutdown,
};
use tokio::net::TcpListener;

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
    tables: OwnTables::new("items", include_str!("tables.sql")),
};

pub async fn run(listener: TcpListener, config: Config, shutdown: impl Shutdown) -> Result<()> {
    let pool = RESERVATIONS.connect(&config.participant).await?;
    db::seed(&pool, config.item_stock).await?;
    let api = routes::public();
    ledger::serve(
        listener,
        "items",
        api,
        pool,
        &RESERVATIONS,
        &config.participant,
        shutdown,
    )
    .await
}
