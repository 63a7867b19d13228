//! order's configuration, from the environment (`order --help` lists it).

use clap::Parser;
use order_store::stream::Streams;
use shop_common::config::{self, JwtSecretConfig, SecretString, ServerConfig};
use std::time::Duration;

/// saga shop: the order API (stores orders, publishes them to the saga stream)
#[derive(Debug, Clone, Parser)]
pub struct Config {
    #[command(flatten)]
    pub server: ServerConfig,
    #[command(flatten)]
    pub jwt_secret: JwtSecretConfig,
    /// The Redis of the saga stream, e.g. `redis://127.0.0.1:56379`.
    #[arg(long, env, hide_env_values = true)]
    pub redis_url: SecretString,
    #[command(flatten)]
    pub streams: Streams,
    /// How long an order may stay unpublished before the sweep publishes it again (s).
    #[arg(long = "republish-after-secs", env = "REPUBLISH_AFTER_SECS", default_value = "5", value_parser = config::secs)]
    pub republish_after: Duration,
    /// How long after publication an order still not final is published again (s). Far above the
    /// slowest saga; only a lost stream entry should ever reach it (a stream lost with Redis' data
    /// is noticed and re-published within a second or two).
    #[arg(long = "republish-stale-after-secs", env = "REPUBLISH_STALE_AFTER_SECS", default_value = "300", value_parser = config::secs)]
    pub republish_stale_after: Duration,
}
