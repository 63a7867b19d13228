//! slots' configuration, from the environment (`slots --help` lists it).

use clap::Parser;
use shop_common::config::ParticipantConfig;

/// saga shop: delivery slots (public) and bookings (saga participant)
#[derive(Debug, Clone, Parser)]
pub struct Config {
    #[command(flatten)]
    pub participant: ParticipantConfig,
    /// Couriers per delivery slot ("00:00".."09:00"; applied only when the slot is first seeded).
    #[arg(long, env, default_value_t = 1000, value_parser = clap::value_parser!(i64).range(0..))]
    pub slot_capacity: i64,
}
