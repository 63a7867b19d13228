//! slots: owns the `slots` database — the delivery slots with their free couriers, and the ledger of
//! per-order bookings that the saga takes and gives back.

mod config;
mod db;
mod routes;
mod startup;

pub use config::Config;
pub use db::{BOOKINGS, seed};
pub use startup::{openapi, run};
