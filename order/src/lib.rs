//! order: owns the `orders` database — orders, their saga status and the saga log — and the
//! public order API. Creating an order stores it and publishes it on the orders stream; the
//! mediator (this service's worker, sharing the database through [`db`]) runs its saga.

mod config;
pub mod db;
mod error;
pub mod outbox;
mod routes;
mod signals;
mod startup;

pub use config::Config;
pub use startup::{MIGRATOR, build_router, run};
