//! order: the public order API over the `orders` database — orders, their saga status and the
//! saga log. Creating an order stores it and publishes it on the orders stream; the mediator (this
//! service's worker) runs its saga; a customer may cancel it. Operators read every order and the
//! last minute's figures and the dead letters (`admin`). It also serves the shop page and the
//! operations console (`pages`), which use the same public API. The database and the stream's
//! names are `order_store`'s, shared with the mediator.

mod admin;
mod config;
mod error;
pub mod outbox;
mod pages;
mod routes;
mod signals;
mod startup;

pub use config::Config;
pub use startup::{openapi, run};
