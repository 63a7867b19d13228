//! items: owns the `items` database — the catalog with each item's available stock, and the ledger
//! of per-order reservations that the saga takes and gives back.

mod config;
mod db;
mod routes;
mod startup;

pub use config::Config;
pub use db::{RESERVATIONS, seed};
pub use startup::{openapi, run};
