//! auth's configuration, from the environment (`auth --help` lists it).

use crate::password::PasswordConfig;
use clap::Parser;
use shop_common::{
    auth::Role,
    config::{self, InternalTokenConfig, JwtSecretConfig, ServerConfig},
};
use std::time::Duration;

/// saga shop: sign-up and tokens
#[derive(Debug, Clone, Parser)]
pub struct Config {
    #[command(flatten)]
    pub server: ServerConfig,
    /// auth calls billing's /internal/accounts at sign-up.
    #[command(flatten)]
    pub internal_token: InternalTokenConfig,
    /// billing's base URL, e.g. `http://billing:8080`.
    #[arg(long, env)]
    pub billing_url: String,
    /// auth signs the access and refresh tokens.
    #[command(flatten)]
    pub jwt_secret: JwtSecretConfig,
    /// How long an access token is valid (s).
    #[arg(long = "access-token-ttl-secs", env = "ACCESS_TOKEN_TTL_SECS", default_value = "900", value_parser = config::secs)]
    pub access_ttl: Duration,
    /// How long a refresh token is valid (s).
    #[arg(long = "refresh-token-ttl-secs", env = "REFRESH_TOKEN_TTL_SECS", default_value = "604800", value_parser = config::secs)]
    pub refresh_ttl: Duration,
    #[command(flatten)]
    pub passwords: PasswordConfig,
    /// Usernames, comma-separated, whose access tokens carry the `admin` role (the operations
    /// console). Sign-up is open: name only accounts that exist, or register them first.
    #[arg(long, env = "ADMIN_USERS", value_delimiter = ',')]
    pub admin_users: Vec<String>,
}

impl Config {
    /// The role `username`'s tokens carry.
    pub fn role_of(&self, username: &str) -> Option<Role> {
        self.admin_users
            .iter()
            .any(|admin| admin.trim() == username)
            .then_some(Role::Admin)
    }
}
