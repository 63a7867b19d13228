//! items' configuration, from the environment.

use anyhow::Result;
use shop_common::config::{self, DatabaseConfig, HttpConfig, Secret};

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub internal_token: Secret,
    /// The stock each catalog item starts with (applied only when the item is first seeded).
    pub item_stock: i64,
}

impl Config {
    pub fn from_env() -> Result<Self> {
        let item_stock: i64 = config::parse_or("ITEM_STOCK", 1000)?;
        if item_stock < 0 {
            anyhow::bail!("ITEM_STOCK={item_stock} must not be negative");
        }
        Ok(Self {
            http: HttpConfig::from_env()?,
            database: DatabaseConfig::from_env()?,
            internal_token: config::internal_token_from_env()?,
            item_stock,
        })
    }
}
