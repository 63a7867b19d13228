//! billing's configuration, from the environment (`billing --help` lists it).

use clap::Parser;
use shop_common::{
    config::{JwtSecretConfig, ParticipantConfig},
    domain::Money,
};

/// saga shop: wallets (public) and charges (saga participant)
#[derive(Debug, Clone, Parser)]
pub struct Config {
    #[command(flatten)]
    pub participant: ParticipantConfig,
    /// billing's public API verifies the access tokens.
    #[command(flatten)]
    pub jwt_secret: JwtSecretConfig,
    /// What a new account's wallet starts with.
    #[arg(long, env, default_value = "100.00", value_parser = Money::parse_positive)]
    pub initial_wallet: Money,
}
