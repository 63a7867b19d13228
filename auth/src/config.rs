//! auth's configuration, from the environment (`auth --help` lists it).

use crate::password::PasswordConfig;
use clap::Parser;
use shop_common::config::{self, DatabaseConfig, HttpConfig, InternalTokenConfig, JwtSecretConfig};
use std::time::Duration;

#[derive(Debug, Clone, Parser)]
#[command(name = "auth", about = "saga shop: sign-up and tokens")]
pub struct Config {
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub jwt_secret: JwtSecretConfig,
    /// auth calls billing's /internal/accounts at sign-up.
    #[command(flatten)]
    pub internal_token: InternalTokenConfig,
    /// billing's base URL, e.g. `http://billing:8080`.
    #[arg(long, env)]
    pub billing_url: String,
    /// How long an access token is valid (s).
    #[arg(long = "access-token-ttl-secs", env = "ACCESS_TOKEN_TTL_SECS", default_value = "900", value_parser = config::secs)]
    pub access_ttl: Duration,
    /// How long a refresh token is valid (s).
    #[arg(long = "refresh-token-ttl-secs", env = "REFRESH_TOKEN_TTL_SECS", default_value = "604800", value_parser = config::secs)]
    pub refresh_ttl: Duration,
    #[command(flatten)]
    pub passwords: PasswordConfig,
}
