//! The Postgres pool: connect, then apply the service's embedded migrations before serving.

use crate::config::DatabaseConfig;
use anyhow::{Context, Result};
use sqlx::{
    PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use std::{str::FromStr, time::Duration};

pub async fn connect_and_migrate(config: &DatabaseConfig, migrator: &Migrator) -> Result<PgPool> {
    let options = PgConnectOptions::from_str(config.url.expose())
        .context("DATABASE_URL is not a valid Postgres URL")?;
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .context("connecting to Postgres")?;
    // Concurrent starts (replicas, order + mediator) are serialised by sqlx's advisory lock.
    migrator
        .run(&pool)
        .await
        .context("applying database migrations")?;
    Ok(pool)
}
