//! slots' configuration, from the environment (`slots --help` lists it).

use clap::Parser;
use shop_common::config::{DatabaseConfig, HttpConfig, InternalTokenConfig};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "slots",
    about = "saga shop: delivery slots (public) and bookings (saga participant)"
)]
pub struct Config {
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub internal_token: InternalTokenConfig,
    /// Couriers per delivery slot ("00:00".."09:00"; applied only when the slot is first seeded).
    #[arg(long, env, default_value_t = 1000, value_parser = clap::value_parser!(i64).range(0..))]
    pub slot_capacity: i64,
}
