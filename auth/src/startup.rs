//! Wiring: state, the router, and `run`.

use crate::{config::Config, password::Passwords, routes};
use anyhow::Result;
use axum::{Router, extract::FromRef};
use shop_common::{
    auth::JwtKeys,
    client::InternalClient,
    db,
    http::{self, Readiness},
    shutdown::Shutdown,
};
use sqlx::{PgPool, migrate::Migrator};
use std::{sync::Arc, time::Duration};
use tokio::net::TcpListener;

pub static MIGRATOR: Migrator = sqlx::migrate!();

#[derive(Clone, FromRef)]
pub struct AppState {
    pub pool: PgPool,
    pub jwt: JwtKeys,
    pub billing: InternalClient,
    pub passwords: Passwords,
    #[from_ref(skip)]
    pub access_ttl: Duration,
    #[from_ref(skip)]
    pub refresh_ttl: Duration,
    /// Whose tokens carry the admin role.
    #[from_ref(skip)]
    pub config: Arc<Config>,
}

/// Must be called inside a Tokio runtime (the password hasher starts its buffer reaper).
pub fn build_router(pool: PgPool, config: &Config) -> Result<Router> {
    let state = AppState {
        pool: pool.clone(),
        jwt: JwtKeys::new(&config.jwt_secret),
        billing: InternalClient::new(
            &config.billing_url,
            config.internal_token.secret.clone(),
            Duration::from_secs(5),
        )?,
        passwords: Passwords::new(&config.passwords),
        access_ttl: config.access_ttl,
        refresh_ttl: config.refresh_ttl,
        config: Arc::new(config.clone()),
    };
    Ok(http::app(
        "auth",
        Router::from(routes::public()).with_state(state),
        Readiness::database(pool),
        &config.server.http,
    ))
}

/// auth's part of the public API's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::public().into_openapi()
}

pub async fn run(listener: TcpListener, config: Config, shutdown: impl Shutdown) -> Result<()> {
    let server = http::Server::start(listener, shutdown);
    let pool = db::connect_and_migrate(&config.server.database, &MIGRATOR).await?;
    server.serve(build_router(pool, &config)?).await
}
