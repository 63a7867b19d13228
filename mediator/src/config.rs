//! mediator's configuration, from the environment (`mediator --help` lists it).

use crate::saga::Participant;
use clap::Parser;
use order_store::stream::Streams;
use shop_common::config::{self, InternalTokenConfig, SecretString, ServerConfig};
use std::time::Duration;

/// saga shop: the saga orchestrator (consumes the orders stream)
#[derive(Debug, Clone, Parser)]
pub struct Config {
    /// Its database is `orders`, shared with the order API.
    #[command(flatten)]
    pub server: ServerConfig,
    /// The Redis of the saga stream, e.g. `redis://127.0.0.1:56379`.
    #[arg(long, env, hide_env_values = true)]
    pub redis_url: SecretString,
    #[command(flatten)]
    pub internal_token: InternalTokenConfig,
    #[command(flatten)]
    pub stream: StreamConfig,
    #[command(flatten)]
    pub participants: ParticipantsConfig,
}

/// How this process consumes the orders stream.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamConfig {
    #[command(flatten)]
    pub names: Streams,
    /// The consumer group every mediator replica reads the stream in.
    #[arg(
        long = "consumer-group",
        env = "CONSUMER_GROUP",
        default_value = "mediator"
    )]
    pub group: String,
    /// This process's name in the consumer group, stable per pod so that a restarted process
    /// finds its own pending entries. Default: `<hostname>-<pid>`.
    #[arg(long = "consumer-name", env = "CONSUMER_NAME", default_value_t = default_consumer_name(), hide_default_value = true)]
    pub consumer: String,
    /// Sagas in flight at once in this process. More fill the batches of actions and transitions
    /// (faster under load; `make bench` runs 256), but a participant's failure then aborts that
    /// many at once, each compensation its own request.
    #[arg(long = "mediator-concurrency", env = "MEDIATOR_CONCURRENCY", default_value_t = 64, value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u32).range(1..), |n| n as usize))]
    pub concurrency: usize,
    /// Entries idle this long (ms) in another consumer's pending list are taken over. Must exceed
    /// the slowest legitimate saga (in-flight entries are kept fresh by a heartbeat, too).
    #[arg(long = "claim-min-idle-ms", env = "CLAIM_MIN_IDLE_MS", default_value = "60000", value_parser = config::millis)]
    pub claim_min_idle: Duration,
    /// An entry delivered more often than this is dead-lettered instead of processed again.
    #[arg(long, env, default_value_t = 10)]
    pub max_deliveries: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ParticipantsConfig {
    /// billing's base URL, e.g. `http://billing:8080`.
    #[arg(long, env)]
    pub billing_url: String,
    /// items' base URL, e.g. `http://items:8080`.
    #[arg(long, env)]
    pub items_url: String,
    /// slots' base URL, e.g. `http://slots:8080`.
    #[arg(long, env)]
    pub slots_url: String,
    /// How long (ms) one forward step may keep retrying transient failures before its outcome
    /// is declared unknown and the saga aborts.
    #[arg(long = "step-deadline-ms", env = "STEP_DEADLINE_MS", default_value = "10000", value_parser = config::millis)]
    pub step_deadline: Duration,
    /// The most forward actions sent to one participant in one request, applied there in one
    /// transaction (group commit, `crate::batcher`); 1: one request per action.
    #[arg(long = "participant-batch", env = "PARTICIPANT_BATCH", default_value_t = 32, value_parser = clap::builder::ValueParser::new(batch_size))]
    pub batch: usize,
    /// TEST ONLY (`items`, `slots` or `billing`): that participant's compensations are recorded
    /// as done without being sent — it loses stock, couriers or money on purpose — so that the
    /// audit and `make chaos` can be shown to catch a broken compensation. Never set it in a
    /// deployment.
    #[arg(long = "mediator-broken-compensation", env = "MEDIATOR_BROKEN_COMPENSATION", value_parser = broken_compensation)]
    pub broken_compensation: Option<Participant>,
}

fn batch_size(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n @ 1..=1000) => Ok(n),
        _ => Err(format!("{text}: not a batch size from 1 to 1000")),
    }
}

fn broken_compensation(name: &str) -> Result<Participant, String> {
    Participant::from_name(name).ok_or_else(|| format!("{name}: not items, slots or billing"))
}

/// `hostname-pid`: in a pod the hostname is the pod name and a restarted container keeps it.
fn default_consumer_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "mediator".to_owned());
    format!("{host}-{}", std::process::id())
}
