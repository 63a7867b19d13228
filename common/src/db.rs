//! The Postgres pool: wait for the database (bounded), apply the service's embedded migrations,
//! then connect the pool — every statement of which Postgres cancels past `DB_STATEMENT_TIMEOUT_MS`
//! (see [`crate::config::DatabaseConfig`]) — before serving.
//!
//! At start-up the database may not be there yet — in Kubernetes the headless `postgres` Service
//! does not even resolve until Postgres is Ready — so every service waits for it, retrying with
//! capped, jittered exponential backoff, for at most `DB_STARTUP_WAIT_SECS`, logging each failed
//! attempt with what it waits for. Exiting at once instead would put the pod into
//! CrashLoopBackOff and add minutes of back-off after Postgres is up. The bound stays under the
//! startup probe's budget, so that a database that never comes is reported by this process,
//! with its last error, before the kubelet kills it without one.

use crate::config::DatabaseConfig;
use crate::config::ExposeSecret;
use anyhow::{Context, Result, anyhow};
use backon::{BackoffBuilder, ExponentialBuilder};
use sqlx::{
    ConnectOptions, Connection, PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions, PgRow},
};
use std::{str::FromStr, time::Duration};
use tokio::time::Instant;

/// How start-up waits between attempts to reach a store (Postgres here, Redis in the mediator):
/// 250 ms, doubling, capped at 2 s; jitter adds up to as much again, so replicas started together
/// do not knock in step.
pub const DEPENDENCY_BACKOFF: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(250))
    .with_max_delay(Duration::from_secs(2))
    .with_jitter()
    .without_max_times();

/// One connection attempt never takes longer than this, so that a host that swallows packets
/// still gets retried and logged every few seconds.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Every row of a parameterless `select` as `T`; `what` names the read in its error.
pub async fn fetch_all<T>(pool: &PgPool, select: &'static str, what: &'static str) -> Result<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
{
    sqlx::query_as::<_, T>(select)
        .fetch_all(pool)
        .await
        .context(what)
}

pub async fn connect_and_migrate(config: &DatabaseConfig, migrator: &Migrator) -> Result<PgPool> {
    let options = PgConnectOptions::from_str(config.url.expose_secret())
        .context("DATABASE_URL is not a valid Postgres URL")?;
    wait_for_database(&options, config.startup_wait).await?;
    // Concurrent starts (replicas, order + mediator) are serialised by sqlx: `Migrator::run` takes
    // a session-level `pg_advisory_lock` (keyed on the database name) before it even creates its
    // table, and each migration is applied in a transaction of its own. On a connection of its
    // own: a migration may rightly run longer than any request's statement.
    // (A pool of one rather than a bare connection: `Migrator::run` on a `&mut PgConnection`
    // makes the caller's future not `Send`.)
    let migrating = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
        .context("connecting to Postgres to migrate")?;
    migrator
        .run(&migrating)
        .await
        .context("applying database migrations")?;
    migrating.close().await;
    let statement_timeout = format!("{}ms", config.statement_timeout.as_millis());
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options.options([("statement_timeout", statement_timeout)]))
        .await
        .context("connecting to Postgres")
}

/// Where `options` point, for logs: user, host, port and database — never the password.
fn describe(options: &PgConnectOptions) -> String {
    let database = options.get_database().unwrap_or(options.get_username());
    format!(
        "Postgres {}@{}:{}/{database}",
        options.get_username(),
        options.get_host(),
        options.get_port()
    )
}

/// Returns once one connection to `options` succeeds; fails at once on an error waiting cannot
/// cure, and after `limit` on any other.
async fn wait_for_database(options: &PgConnectOptions, limit: Duration) -> Result<()> {
    let target = describe(options);
    let deadline = Instant::now() + limit;
    let mut delays = DEPENDENCY_BACKOFF.build();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let attempt_limit = deadline
            .saturating_duration_since(Instant::now())
            .min(ATTEMPT_TIMEOUT);
        let error = match tokio::time::timeout(attempt_limit, options.connect()).await {
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                if attempt > 1 {
                    tracing::info!(database = %target, attempt, "the database is reachable");
                }
                return Ok(());
            }
            Ok(Err(e)) if !worth_waiting_for(&e) => {
                return Err(anyhow!(e)).with_context(|| {
                    format!("connecting to {target} (not retried: waiting cannot fix this)")
                });
            }
            Ok(Err(e)) => anyhow!(e),
            Err(_) => anyhow!("no answer within {attempt_limit:?}"),
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(error).with_context(|| {
                format!(
                    "gave up waiting for {target} after {limit:?} ({attempt} attempts; \
                     DB_STARTUP_WAIT_SECS sets how long)"
                )
            });
        }
        let delay = delays
            .next()
            .unwrap_or(Duration::from_secs(2))
            .min(remaining);
        tracing::warn!(
            database = %target,
            attempt,
            retry_in_ms = delay.as_millis() as u64,
            "waiting for the database: {error:#}"
        );
        tokio::time::sleep(delay).await;
    }
}

/// Whether a failed connection attempt may succeed later. Unreachable (DNS not resolving yet,
/// connection refused or reset), starting up, shutting down, too many connections: yes. Wrong
/// credentials, no such database, no right to connect: no — the databases and the password are
/// set at Postgres' first initialisation, before it listens on the network, so when it refuses
/// those it will refuse them again; failing at once names the real cause instead of hiding it
/// behind a timeout.
fn worth_waiting_for(error: &sqlx::Error) -> bool {
    let code = match error {
        sqlx::Error::Database(e) => e.code(),
        sqlx::Error::Configuration(_) => return false,
        _ => return true,
    };
    let Some(code) = code else { return true };
    // 28xxx: invalid authorization (bad password, no pg_hba entry, unknown role);
    // 3D000: invalid catalog name (no such database); 42501: insufficient privilege (no CONNECT).
    !(code.starts_with("28") || code == "3D000" || code == "42501")
}
