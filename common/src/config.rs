//! Configuration from environment variables (12-factor). Secrets are wrapped in [`Secret`] so that a
//! `{:?}` of any config struct can be logged without leaking them.

use anyhow::{Context, Result, bail};
use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

/// A value that must never reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

pub fn required(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("environment variable {name} is required"))
}

pub fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Parses `name` if set, else returns `default`.
pub fn parse_or<T>(name: &str, default: T) -> Result<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match optional(name) {
        None => Ok(default),
        Some(raw) => raw
            .parse()
            .map_err(|e| anyhow::anyhow!("environment variable {name}={raw:?} is invalid: {e}")),
    }
}

pub fn duration_ms_or(name: &str, default: Duration) -> Result<Duration> {
    let ms = parse_or(name, default.as_millis() as u64)?;
    Ok(Duration::from_millis(ms))
}

/// A required secret of at least `min_len` bytes; the service refuses to start without it.
pub fn secret(name: &str, min_len: usize) -> Result<Secret> {
    let value = required(name)?;
    if value.len() < min_len {
        bail!("environment variable {name} must be at least {min_len} bytes long");
    }
    Ok(Secret(value))
}

/// What every HTTP server of the shop is configured with.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen_addr: SocketAddr,
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
}

impl HttpConfig {
    pub fn from_env() -> Result<Self> {
        Ok(Self {
            listen_addr: parse_or("LISTEN_ADDR", SocketAddr::from(([0, 0, 0, 0], 8080)))?,
            request_timeout: duration_ms_or("REQUEST_TIMEOUT_MS", Duration::from_secs(10))?,
            body_limit_bytes: parse_or("BODY_LIMIT_BYTES", 64 * 1024)?,
        })
    }

    /// Loopback on a random port: what tests use.
    pub fn for_tests() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            request_timeout: Duration::from_secs(10),
            body_limit_bytes: 64 * 1024,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: Secret,
    pub max_connections: u32,
    /// How long start-up waits for the database to accept a connection before giving up
    /// (`DB_STARTUP_WAIT_SECS`). The default stays under the Kubernetes startup probe's budget
    /// (periodSeconds × failureThreshold), so the process reports why it gives up before the
    /// kubelet kills it.
    pub startup_wait: Duration,
}

impl DatabaseConfig {
    pub fn from_env() -> Result<Self> {
        Ok(Self {
            url: Secret(required("DATABASE_URL")?),
            max_connections: parse_or("DB_MAX_CONNECTIONS", 16)?,
            startup_wait: Duration::from_secs(parse_or("DB_STARTUP_WAIT_SECS", 45)?),
        })
    }
}

pub const JWT_SECRET_MIN_BYTES: usize = 32;
pub const INTERNAL_TOKEN_MIN_BYTES: usize = 16;

pub fn jwt_secret_from_env() -> Result<Secret> {
    secret("JWT_SECRET", JWT_SECRET_MIN_BYTES)
}

pub fn internal_token_from_env() -> Result<Secret> {
    secret("INTERNAL_TOKEN", INTERNAL_TOKEN_MIN_BYTES)
}

pub fn redis_url_from_env() -> Result<Secret> {
    Ok(Secret(required("REDIS_URL")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let s = Secret::new("hunter2-hunter2-hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "hunter2-hunter2-hunter2");
    }
}
