//! mediator: the orchestrator of the order saga. It consumes the orders stream and drives each
//! order, through the participants' internal ledger API, to exactly one of two ends: completed
//! (item reserved, courier booked, money charged once) or failed with a reason and nothing held.
//! It shares the `orders` database with the order API (through `order_store`) and serves only
//! health and metrics.
//!
//! - [`saga`]: the steps and the pure state machine;
//! - [`participants`]: the HTTP calls and their retry policy;
//! - [`executor`]: one order's saga against the database and the participants;
//! - [`orders_stream`]: the orders stream's Redis commands and replies, typed;
//! - [`consumer`]: scheduling the stream's entries: saga slots, recovery, claims, dead letters.

pub mod batcher;
pub mod config;
pub mod consumer;
pub mod executor;
pub mod orders_stream;
pub mod participants;
pub mod saga;
mod startup;

pub use config::Config;
pub use startup::run;
