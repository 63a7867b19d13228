//! mediator's configuration, from the environment.

use crate::saga::Participant;
use anyhow::{Context, Result, bail};
use shop_common::config::{self, DatabaseConfig, HttpConfig, Secret};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    /// The `orders` database, shared with the order API.
    pub database: DatabaseConfig,
    pub redis_url: Secret,
    pub internal_token: Secret,
    pub stream: StreamConfig,
    pub participants: ParticipantsConfig,
}

/// How this process consumes the orders stream.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub orders_stream: String,
    pub dead_letter_stream: String,
    pub group: String,
    /// Stable per pod, so that a restarted process finds its own pending entries.
    pub consumer: String,
    /// Sagas in flight at once in this process.
    pub concurrency: usize,
    /// Entries idle this long in another consumer's pending list are taken over. Must exceed the
    /// slowest legitimate saga (in-flight entries are kept fresh by a heartbeat, too).
    pub claim_min_idle: Duration,
    /// An entry delivered more often than this is dead-lettered instead of processed again.
    pub max_deliveries: u64,
}

#[derive(Debug, Clone)]
pub struct ParticipantsConfig {
    pub billing_url: String,
    pub items_url: String,
    pub slots_url: String,
    /// How long one forward step may keep retrying transient failures before its outcome is
    /// declared unknown and the saga aborts.
    pub step_deadline: Duration,
    /// TEST ONLY (`MEDIATOR_BROKEN_COMPENSATION=items|slots|billing`): the compensations of this
    /// participant are recorded as done without being sent, so that the audit and `make chaos`
    /// can be shown to catch a broken compensation. Never set in a deployment.
    pub broken_compensation: Option<Participant>,
}

impl Config {
    pub fn from_env() -> Result<Self> {
        let concurrency: usize = config::parse_or("MEDIATOR_CONCURRENCY", 64)?;
        if concurrency == 0 {
            bail!("MEDIATOR_CONCURRENCY must be at least 1");
        }
        Ok(Self {
            http: HttpConfig::from_env()?,
            database: DatabaseConfig::from_env()?,
            redis_url: config::redis_url_from_env()?,
            internal_token: config::internal_token_from_env()?,
            stream: StreamConfig {
                orders_stream: config::parse_or("ORDERS_STREAM", "orders".to_string())?,
                dead_letter_stream: config::parse_or(
                    "DEAD_LETTER_STREAM",
                    "orders.dead".to_string(),
                )?,
                group: config::parse_or("CONSUMER_GROUP", "mediator".to_string())?,
                consumer: match config::optional("CONSUMER_NAME") {
                    Some(name) => name,
                    None => default_consumer_name(),
                },
                concurrency,
                claim_min_idle: config::duration_ms_or(
                    "CLAIM_MIN_IDLE_MS",
                    Duration::from_secs(60),
                )?,
                max_deliveries: config::parse_or("MAX_DELIVERIES", 10)?,
            },
            participants: ParticipantsConfig {
                billing_url: config::required("BILLING_URL")?,
                items_url: config::required("ITEMS_URL")?,
                slots_url: config::required("SLOTS_URL")?,
                step_deadline: config::duration_ms_or("STEP_DEADLINE_MS", Duration::from_secs(10))?,
                broken_compensation: match config::optional("MEDIATOR_BROKEN_COMPENSATION") {
                    None => None,
                    Some(name) => Some(Participant::from_name(&name).with_context(|| {
                        format!("MEDIATOR_BROKEN_COMPENSATION={name}: not items, slots or billing")
                    })?),
                },
            },
        })
    }
}

/// `hostname-pid`: in a pod the hostname is the pod name and a restarted container keeps it.
fn default_consumer_name() -> String {
    let host = config::optional("HOSTNAME")
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "mediator".to_owned());
    format!("{host}-{}", std::process::id())
}
