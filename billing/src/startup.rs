//! Wiring: state, the router (public + internal + ledger), and `run`.

use crate::{config::Config, db::CHARGES, routes};
use anyhow::Result;
use axum::{Router, extract::FromRef, middleware};
use shop_common::{
    auth::JwtKeys,
    domain::Money,
    http,
    internal::{self, InternalToken},
    ledger,
    shutdown::Shutdown,
};
use sqlx::PgPool;
use tokio::net::TcpListener;

#[derive(Clone, FromRef)]
pub struct AppState {
    pub pool: PgPool,
    pub jwt: JwtKeys,
    pub initial_wallet: Money,
}

pub fn build_router(pool: PgPool, config: &Config) -> Router {
    let token = InternalToken(config.participant.internal_token.secret.clone());
    let state = AppState {
        pool: pool.clone(),
        jwt: JwtKeys::new(&config.jwt_secret),
        initial_wallet: config.initial_wallet,
    };
    let internal = routes::internal().layer(middleware::from_fn_with_state(
        token,
        internal::require_token,
    ));
    let api = Router::from(routes::public())
        .merge(internal)
        .with_state(state);
    ledger::participant_app("billing", api, pool, &CHARGES, &config.participant)
}

/// billing's part of the public API's OpenAPI document (its internal routes are not in it).
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::public().into_openapi()
}

pub async fn run(listener: TcpListener, config: Config, shutdown: impl Shutdown) -> Result<()> {
    let server = http::Server::start(listener, shutdown);
    let pool = CHARGES.connect(&config.participant).await?;
    server.serve(build_router(pool, &config)).await
}
