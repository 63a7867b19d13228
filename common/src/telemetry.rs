//! Tracing setup: human-readable logs by default, JSON lines with `LOG_FORMAT=json`.
//!
//! The two logging variables are read here rather than in the services' clap configuration:
//! logging starts before that configuration is parsed, and `RUST_LOG` keeps the filter's own
//! syntax and fallback. [`VARIABLES`] declares them once, for this code and for the README's
//! configuration table (tools/src/config_table.rs).

use tracing_subscriber::{EnvFilter, fmt};

/// An environment variable every service reads outside its clap configuration.
pub struct EnvVariable {
    pub name: &'static str,
    pub default: &'static str,
    /// What it means, for the configuration table (one sentence, no final period, like clap's
    /// help of the other variables).
    pub help: &'static str,
}

pub const LOG_FORMAT: EnvVariable = EnvVariable {
    name: "LOG_FORMAT",
    default: "pretty",
    help: "`json` (any case) for JSON lines; anything else is human-readable text",
};

pub const RUST_LOG: EnvVariable = EnvVariable {
    name: "RUST_LOG",
    default: "info",
    help: "The tracing filter (`warn`, `info,sqlx=warn`, ...); an invalid one means `info`",
};

pub const VARIABLES: [EnvVariable; 2] = [LOG_FORMAT, RUST_LOG];

pub fn init() {
    let filter =
        EnvFilter::try_from_env(RUST_LOG.name).unwrap_or_else(|_| EnvFilter::new(RUST_LOG.default));
    let json = std::env::var(LOG_FORMAT.name).is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // `try_init` because tests start several services in one process.
    let _ = if json {
        fmt()
            .json()
            .with_env_filter(filter)
            .with_current_span(true)
            .try_init()
    } else {
        fmt().with_env_filter(filter).try_init()
    };
}
