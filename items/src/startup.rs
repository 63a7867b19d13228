//! Wiring: state, the router (public + ledger), seeding, and `run`.

use crate::{config::Config, db, routes};
use anyhow::Result;
use axum::{Router, extract::FromRef};
use shop_common::{
    db as shop_db,
    http::{self, Readiness},
    internal::InternalToken,
    ledger::{self, Ledger, LedgerSpec},
};
use sqlx::{PgPool, migrate::Migrator};
use std::future::Future;
use tokio::net::TcpListener;

pub static MIGRATOR: Migrator = sqlx::migrate!();

/// The stock step of the saga: reserve = hold `quantity` units of the item `resource` ("3").
pub static RESERVATIONS: LedgerSpec = LedgerSpec {
    route: "reservations",
    unknown_code: "item_unavailable",
    // Anything else would make Postgres' `::bigint` cast fail; it is simply not an item.
    valid_key: |key| key.parse::<i64>().is_ok_and(|id| id > 0),
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
