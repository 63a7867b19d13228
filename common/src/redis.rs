//! Redis access. Ordinary commands go through a deadpool pool of multiplexed connections; blocking
//! reads (XREADGROUP BLOCK) must use [`dedicated_connection`], because a pooled multiplexed
//! connection would stall every other command queued behind the blocking one, and redis 1.x
//! connections time out responses after 500 ms by default.

use crate::config::ExposeSecret;
use crate::config::SecretString;
use anyhow::{Context, Result};
use deadpool_redis::{Config, Pool, Runtime};
use std::time::Duration;

pub use deadpool_redis::Pool as RedisPool;

pub fn pool(url: &SecretString) -> Result<Pool> {
    Config::from_url(url.expose_secret())
        .create_pool(Some(Runtime::Tokio1))
        .context("creating the Redis pool")
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

pub async fn ping(pool: &Pool) -> Result<()> {
    let mut conn = pool.get().await.context("taking a Redis connection")?;
    let _: String = ::redis::cmd("PING")
        .query_async(&mut *conn)
        .await
        .context("Redis PING")?;
    Ok(())
}
