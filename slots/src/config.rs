//! slots' configuration, from the environment.

use anyhow::Result;
use shop_common::config::{self, DatabaseConfig, HttpConfig, Secret};

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub internal_token: Secret,
    /// Couriers per slot (applied only when the slot is first seeded).
    pub slot_capacity: i64,
}

impl Config {
    pub fn from_env() -> Result<Self> {
        let slot_capacity: i64 = config::parse_or("SLOT_CAPACITY", 1000)?;
        if slot_capacity < 0 {
            anyhow::bail!("SLOT_CAPACITY={slot_capacity} must not be negative");
        }
        Ok(Self {
            http: HttpConfig::from_env()?,
            database: DatabaseConfig::from_env()?,
            internal_token: config::internal_token_from_env()?,
            slot_capacity,
        })
    }
}
