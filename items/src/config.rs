//! items' configuration, from the environment (`items --help` lists it).

use clap::Parser;
use shop_common::config::ParticipantConfig;

/// saga shop: the catalog (public) and reservations (saga participant)
#[derive(Debug, Clone, Parser)]
pub struct Config {
    #[command(flatten)]
    pub participant: ParticipantConfig,
    /// The stock each catalog item (ids 1..10) starts with (applied only when the item is first
    /// seeded).
    #[arg(long, env, default_value_t = 1000, value_parser = clap::value_parser!(i64).range(0..))]
    pub item_stock: i64,
}
