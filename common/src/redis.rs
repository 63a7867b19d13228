//! Redis access. Ordinary commands share ONE multiplexed connection per process ([`Redis`]):
//! every task's commands are pipelined on it, so a command costs one round trip — a pool would add
//! a health check (`UNWATCH` + `PING`) to every checkout, one more round trip per use. It is
//! opened on first use and opened again, in the background, after it is lost (a Redis restart):
//! a command meanwhile fails at once with an error [`crate::error::Dependency`] reads as Redis
//! being down, and the next one uses the new connection. Blocking reads (XREADGROUP BLOCK) must
//! use [`dedicated_connection`]: on the shared connection they would stall every command queued
//! behind them, and redis 1.x connections time out responses after 500 ms by default.

use crate::config::ExposeSecret;
use crate::config::SecretString;
use anyhow::{Context, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

/// How long opening the shared connection may take before the command waiting on it fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The process's shared Redis connection (cheap to clone: every clone is the same connection).
#[derive(Clone)]
pub struct Redis(ConnectionManager);

impl Redis {
    /// The shared connection, to send commands on (`query_async(&mut redis.connection())`).
    pub fn connection(&self) -> ConnectionManager {
        self.0.clone()
    }
}

/// The shared connection to `url`, opened on first use: Redis need not be up yet.
pub fn connect(url: &SecretString) -> Result<Redis> {
    let client = ::redis::Client::open(url.expose_secret()).context("parsing REDIS_URL")?;
    // One attempt per loss, no retries inside it: while Redis is down, commands fail fast (503
    // with Retry-After, or the caller's own retry) instead of queueing behind a backoff.
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_number_of_retries(0);
    ConnectionManager::new_lazy_with_config(client, config)
        .map(Redis)
        .context("setting up the Redis connection")
}

/// A connection of its own, whose responses may take as long as `max_block` plus a margin.
pub async fn dedicated_connection(
    url: &SecretString,
    max_block: Duration,
) -> Result<::redis::aio::MultiplexedConnection> {
    let client = ::redis::Client::open(url.expose_secret()).context("parsing REDIS_URL")?;
    let config = ::redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(max_block + Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .context("connecting to Redis")
}

/// Where `url` points, for logs: host, port and database number — never the password.
pub fn describe(url: &SecretString) -> String {
    match ::redis::IntoConnectionInfo::into_connection_info(url.expose_secret()) {
        Ok(info) => format!("Redis {}/{}", info.addr(), info.redis_settings().db()),
        Err(_) => "Redis (REDIS_URL does not parse)".to_owned(),
    }
}

pub async fn ping(redis: &Redis) -> Result<()> {
    let _: String = ::redis::cmd("PING")
        .query_async(&mut redis.connection())
        .await
        .context("Redis PING")?;
    Ok(())
}
