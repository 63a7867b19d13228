//! billing's configuration, from the environment.

use anyhow::Result;
use shop_common::{
    config::{self, DatabaseConfig, HttpConfig, Secret},
    domain::Money,
};

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub jwt_secret: Secret,
    pub internal_token: Secret,
    /// What a new account's wallet starts with.
    pub initial_wallet: Money,
}

impl Config {
    pub fn from_env() -> Result<Self> {
        let initial_wallet = match config::optional("INITIAL_WALLET") {
            None => Money::from_minor(10_000),
            Some(raw) => Money::parse_positive(&raw)
                .map_err(|e| anyhow::anyhow!("INITIAL_WALLET={raw:?} {e}"))?,
        };
        Ok(Self {
            http: HttpConfig::from_env()?,
            database: DatabaseConfig::from_env()?,
            jwt_secret: config::jwt_secret_from_env()?,
            internal_token: config::internal_token_from_env()?,
            initial_wallet,
        })
    }
}
