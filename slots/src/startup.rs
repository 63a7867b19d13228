//! Wiring: state, the router (public + ledger), seeding, and `run`.

use crate::{config::Config, db, routes};
use anyhow::Result;
use axum::Router;
use shop_common::{
    db as shop_db,
    domain::SlotTime,
    http,
    ledger::{self, KeyType, LedgerSpec, Resources},
    shutdown::Shutdown,
};
use sqlx::{PgPool, migrate::Migrator};
use std::sync::LazyLock;
use tokio::net::TcpListener;

/// Its own tables, then the ledger's `holds` table and functions rendered for [`BOOKINGS`]: the
/// migrations it released as files, byte for byte (shop_common::ledger::schema says why).
pub static MIGRATOR: LazyLock<Migrator> =
    LazyLock::new(|| BOOKINGS.migrator("slots", include_str!("tables.sql")));

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
};

pub fn build_router(pool: PgPool, config: &Config) -> Router {
    let api = routes::public().with_state(pool.clone());
    ledger::participant_app("slots", api, pool, &BOOKINGS, &config.participant)
}

pub async fn run(listener: TcpListener, config: Config, shutdown: impl Shutdown) -> Result<()> {
    let pool = shop_db::connect_and_migrate(&config.participant.database, &MIGRATOR).await?;
    db::seed(&pool, config.slot_capacity).await?;
    http::serve(listener, build_router(pool, &config), shutdown).await
}
