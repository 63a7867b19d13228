//! Wiring: state, the router (public + internal + ledger), and `run`.

use crate::{config::Config, routes};
use anyhow::Result;
use axum::{Router, extract::FromRef, middleware};
use shop_common::{
    auth::JwtKeys,
    db,
    domain::Money,
    http::{self, Readiness},
    internal::{self, InternalToken},
    ledger::{self, Ledger, LedgerSpec},
};
use sqlx::{PgPool, migrate::Migrator};
use std::future::Future;
use tokio::net::TcpListener;

pub static MIGRATOR: Migrator = sqlx::migrate!();

/// The money step of the saga: charge = hold `amount` cents of the user's wallet.
pub static CHARGES: LedgerSpec = LedgerSpec {
    route: "charges",
    unknown_code: "account_not_found",
    valid_key: |key| !key.is_empty(),
};

#[derive(Clone, FromRef)]
pub struct AppState {
    pub pool: PgPool,
    pub jwt: JwtKeys,
    pub initial_wallet: Money,
}

pub fn build_router(pool: PgPool, config: &Config) -> Router {
    let token = InternalToken(config.internal_token.secret.clone());
    let state = AppState {
        pool: pool.clone(),
        jwt: JwtKeys::new(&config.jwt_secret),
        initial_wallet: config.initial_wallet,
    };
    let internal = routes::internal().layer(middleware::from_fn_with_state(
        token.clone(),
        internal::require_token,
    ));
    let api = routes::public()
        .merge(internal)
        .with_state(state)
        .merge(ledger::router(Ledger::new(pool.clone(), &CHARGES), token));
    http::app("billing", api, Readiness::database(pool), &config.http)
}

pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let pool = db::connect_and_migrate(&config.database, &MIGRATOR).await?;
    http::serve(listener, build_router(pool, &config), shutdown).await
}
