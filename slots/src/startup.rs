//! Wiring: the ledger's spec, seeding, and `run` (the public reads and the ledger).

use crate::{config::Config, db, routes};
use anyhow::Result;
use shop_common::{
    domain::SlotTime,
    ledger::{self, KeyType, LedgerSpec, OwnTables, Resources},
    shutdown::Shutdown,
};
use tokio::net::TcpListener;

/// The courier step of the saga: book = hold `quantity` free couriers of the slot `resource`.
pub static BOOKINGS: LedgerSpec = LedgerSpec {
    route: "bookings",
    unknown_code: "slot_unavailable",
    // A well-formed time we do not serve ("19:00") is still refused, by the database lookup.
    valid_key: |key| SlotTime::try_from(key.to_owned()).is_ok(),
    resources: Resources {
        table: "slots",
        key: "slot",
        key_type: KeyType::Text,
        available: "free_couriers",
        exhausted_code: "slot_unavailable",
        summary: "slots.free_couriers by slot",
        holds_meaning: "resource = slot,\n-- quantity = couriers booked.",
    },
    tables: OwnTables::new("slots", include_str!("tables.sql")),
};

pub async fn run(listener: TcpListener, config: Config, shutdown: impl Shutdown) -> Result<()> {
    let pool = BOOKINGS.connect(&config.participant).await?;
    db::seed(&pool, config.slot_capacity).await?;
    let api = routes::public();
    ledger::serve(
        listener,
        "slots",
        api,
        pool,
        &BOOKINGS,
        &config.participant,
        shutdown,
    )
    .await
}
