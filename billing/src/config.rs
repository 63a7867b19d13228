//! billing's configuration, from the environment (`billing --help` lists it).

use clap::Parser;
use shop_common::{
    config::{DatabaseConfig, HttpConfig, InternalTokenConfig, JwtSecretConfig},
    domain::Money,
};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "billing",
    about = "saga shop: wallets (public) and charges (saga participant)"
)]
pub struct Config {
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub jwt_secret: JwtSecretConfig,
    #[command(flatten)]
    pub internal_token: InternalTokenConfig,
    /// What a new account's wallet starts with.
    #[arg(long, env, default_value = "100.00", value_parser = Money::parse_positive)]
    pub initial_wallet: Money,
}
