//! Wiring: state, the router (public + ledger), seeding, and `run`.

use crate::{config::Config, db, routes};
use anyhow::Result;
use axum::{Router, extract::FromRef};
use shop_common::{
    db as shop_db,
    domain::SlotTime,
    http::{self, Readiness},
    internal::InternalToken,
    ledger::{self, KeyType, Ledger, LedgerSpec, Resources},
};
use sqlx::{PgPool, migrate::Migrator};
use std::{future::Future, sync::LazyLock};
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

#[derive(Clone, FromRef)]
pub struct AppState {
    pub pool: PgPool,
}

pub fn build_router(pool: PgPool, config: &Config) -> Router {
    let token = InternalToken(config.internal_token.secret.clone());
    let api = routes::public()
        .with_state(AppState { pool: pool.clone() })
        .merge(ledger::router(Ledger::new(pool.clone(), &BOOKINGS), token));
    http::app("slots", api, Readiness::database(pool), &config.http)
}

pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let pool = shop_db::connect_and_migrate(&config.database, &MIGRATOR).await?;
    db::seed(&pool, config.slot_capacity).await?;
    http::serve(listener, build_router(pool, &config), shutdown).await
}
