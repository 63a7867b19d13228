//! Plumbing every saga-shop service shares, written once: configuration, logging, the Postgres
//! pools and the shared Redis connection, JWT verification, the HTTP error body, the common HTTP
//! layers and endpoints, graceful shutdown, the shared domain newtypes, the public API's wire
//! types (`api`, which the services send and `shop-client` reads) and the participant ledger (the
//! idempotent, compensable hold/release design that billing, items and slots all follow).

pub mod api;
pub mod auth;
pub mod batched;
pub mod client;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod internal;
pub mod json;
pub mod ledger;
#[doc(hidden)]
pub use utoipa_axum as __utoipa_axum;
pub mod openapi;
pub mod redis;
pub mod service;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::ApiError;
