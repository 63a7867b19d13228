//! auth's configuration, from the environment.

use crate::password::PasswordConfig;
use anyhow::Result;
use shop_common::config::{self, DatabaseConfig, HttpConfig, Secret};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub jwt_secret: Secret,
    pub internal_token: Secret,
    pub billing_url: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub passwords: PasswordConfig,
}

impl Config {
    pub fn from_env() -> Result<Self> {
        Ok(Self {
            http: HttpConfig::from_env()?,
            database: DatabaseConfig::from_env()?,
            jwt_secret: config::jwt_secret_from_env()?,
            internal_token: config::internal_token_from_env()?,
            billing_url: config::required("BILLING_URL")?,
            access_ttl: Duration::from_secs(config::parse_or("ACCESS_TOKEN_TTL_SECS", 900)?),
            refresh_ttl: Duration::from_secs(config::parse_or(
                "REFRESH_TOKEN_TTL_SECS",
                7 * 24 * 3600,
            )?),
            passwords: {
                let default = PasswordConfig::default();
                PasswordConfig {
                    memory_budget_mib: config::parse_or(
                        "PASSWORD_HASH_MEMORY_MIB",
                        default.memory_budget_mib,
                    )?,
                    max_waiting: config::parse_or(
                        "PASSWORD_HASH_MAX_WAITING",
                        default.max_waiting,
                    )?,
                    max_wait: config::duration_ms_or(
                        "PASSWORD_HASH_MAX_WAIT_MS",
                        default.max_wait,
                    )?,
                }
            },
        })
    }
}
