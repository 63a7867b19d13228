//! order's configuration, from the environment.

use anyhow::Result;
use shop_common::config::{self, DatabaseConfig, HttpConfig, Secret};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub jwt_secret: Secret,
    pub redis_url: Secret,
    /// The stream new orders are published on (`ORDERS_STREAM`).
    pub orders_stream: String,
    /// How long an order may stay unpublished before the sweep publishes it again.
    pub republish_after: Duration,
    /// How long after publication an order still not final is published again. Far above the
    /// slowest saga; only a lost stream entry should ever reach it.
    pub republish_stale_after: Duration,
}

impl Config {
    pub fn from_env() -> Result<Self> {
        Ok(Self {
            http: HttpConfig::from_env()?,
            database: DatabaseConfig::from_env()?,
            jwt_secret: config::jwt_secret_from_env()?,
            redis_url: config::redis_url_from_env()?,
            orders_stream: config::parse_or("ORDERS_STREAM", "orders".to_string())?,
            republish_after: Duration::from_secs(config::parse_or("REPUBLISH_AFTER_SECS", 5)?),
            republish_stale_after: Duration::from_secs(config::parse_or(
                "REPUBLISH_STALE_AFTER_SECS",
                300,
            )?),
        })
    }
}
