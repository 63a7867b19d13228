//! billing: owns the `billing` database — accounts with their wallets, deposits, and the ledger of
//! per-order charges that the saga takes and refunds.

mod config;
mod db;
mod error;
mod routes;
mod startup;

pub use config::Config;
pub use db::{CHARGES, create_account};
pub use startup::{build_router, openapi, run};
