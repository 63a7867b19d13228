//! order-store: the `orders` database and the orders stream as the order API and the mediator
//! (the order service's worker) both see them. Neither service's HTTP layer owns these: the order
//! API writes orders and publishes them, the mediator drives their saga, each through this crate.
//!
//! - [`MIGRATOR`]: the schema, applied by whichever process starts first (sqlx serialises that);
//! - [`db`]: every query, each status transition and its guard written once;
//! - [`stream`]: the names both ends of the orders stream must agree on.

pub mod db;
pub mod stream;

use sqlx::migrate::Migrator;

/// The `orders` database's migrations (`migrations/`, embedded at compile time).
pub static MIGRATOR: Migrator = sqlx::migrate!();
