//! Wiring: state, the router (public + ledger), seeding, and `run`.

use crate::{config::Config, db, routes};
use anyhow::Result;
use axum::{Router, extract::FromRef};
use shop_common::{
    db as shop_db,
    http::{self, Readiness},
    internal::InternalToken,
    ledger::{self, KeyType, Ledger, LedgerSpec, Resources},
};
use sqlx::{PgPool, migrate::Migrator};
use std::{future::Future, sync::LazyLock};
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

#[derive(Clone, FromRef)]
pub struct AppState {
    pub pool: PgPool,
}

pub fn build_router(pool: PgPool, config: &Config) -> Router {
    let token = InternalToken(config.internal_token.secret.clone());
    let api = routes::public()
        .with_state(AppState { pool: pool.clone() })
        .merge(ledger::router(
            Ledger::new(pool.clone(), &RESERVATIONS),
            token,
        ));
    http::app("items", api, Readiness::database(pool), &config.http)
}

pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let pool = shop_db::connect_and_migrate(&config.database, &MIGRATOR).await?;
    db::seed(&pool, config.item_stock).await?;
    http::serve(listener, build_router(pool, &config), shutdown).await
}
