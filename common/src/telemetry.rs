//! Tracing setup: human-readable logs by default, JSON lines with `LOG_FORMAT=json`.

use tracing_subscriber::{EnvFilter, fmt};

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
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
