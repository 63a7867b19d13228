//! A service binary's life around its own `run(listener, config, shutdown)`: logs, the
//! configuration from the environment (a bad or missing value exits 2 naming the variable), the
//! listener, and the graceful stop on SIGTERM or Ctrl-C. Every service's `main` is this one call,
//! and its tests start the same `run` on a port-0 listener with a shutdown of their own.

use crate::{
    config::{self, HttpConfig},
    shutdown, telemetry,
};
use anyhow::Result;
use clap::Parser;
use std::{future::Future, pin::Pin};
use tokio::net::TcpListener;

/// What ends a service started by [`main`]: [`shutdown::signal`].
pub type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Parses `C` from the environment, binds where its [`HttpConfig`] says, and runs until
/// [`Signal`].
pub async fn main<C, Running>(run: impl FnOnce(TcpListener, C, Signal) -> Running) -> Result<()>
where
    C: Parser,
    Running: Future<Output = Result<()>>,
{
    telemetry::init();
    let (config, listen) = config::parse_with::<C, HttpConfig>();
    let listener = crate::http::bind(&listen).await?;
    run(listener, config, Box::pin(shutdown::signal())).await
}
