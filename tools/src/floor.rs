//! The floor `make bench` measures the shop against: pgbench running, per "saga", exactly the
//! durable work a completed saga needs ([`Script::PerSaga`], tools/src/floor.pgbench: five
//! commits) on the
//! bench's own Postgres, with its settings, in a database of its own ([`DATABASE`]) whose schemas
//! the services' own migrators make. What this gives per second is what any design that commits
//! each saga step on its own could reach with every other cost (HTTP, Redis, the services' code)
//! at zero; `floor_ratio` = the shop's sagas/s over it.

use anyhow::{Context, Result, ensure};
use shop_common::domain::{Money, Username};
use sqlx::{
    AssertSqlSafe, Connection, Executor, PgConnection, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use std::{path::PathBuf, time::Duration};

/// What pgbench runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// The floor: one transaction = one saga's durable work, five commits (floor.pgbench).
    PerSaga,
    /// The fewer-commits design evaluated: one transaction = this many sagas' durable work in
    /// five commits (floor-batched.pgbench).
    Batched(u32),
}

impl Script {
    fn text(self) -> &'static str {
        match self {
            Script::PerSaga => include_str!("floor.pgbench"),
            Script::Batched(_) => include_str!("floor-batched.pgbench"),
        }
    }

    fn sagas_per_transaction(self) -> u32 {
        match self {
            Script::PerSaga => 1,
            Script::Batched(n) => n,
        }
    }
}

/// The database the floor runs in, next to the stack's own.
pub const DATABASE: &str = "floor";

/// The hot rows, as the bench makes them: its users' wallets (loadgen's `--users`), the catalog's
/// items and the slots (the services' seeds).
pub const ACCOUNTS: u32 = 50;

/// What never runs out during a floor run.
const PLENTY: i64 = 100_000_000;

/// The schemas of [`DATABASE`], each made by its service's migrator, and whether it holds a
/// participant ledger whose functions must find their tables (`search_path`).
fn schemas() -> [(&'static str, &'static sqlx::migrate::Migrator, bool); 4] {
    [
        ("orders", &order_store::MIGRATOR, false),
        ("billing", billing::CHARGES.migrator(), true),
        ("items", items::RESERVATIONS.migrator(), true),
        ("slots", slots::BOOKINGS.migrator(), true),
    ]
}

/// Where the Postgres under test listens, and its pgbench.
#[derive(Debug, Clone)]
pub struct Target {
    /// The directory of its Unix socket (the bench's services use it), or `127.0.0.1`.
    pub host: String,
    pub port: u16,
    /// The PostgreSQL binaries (pgbench).
    pub bin: PathBuf,
    /// The floor's database ([`DATABASE`] in the bench).
    pub database: String,
}

impl Target {
    pub fn options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .host(&self.host)
            .port(self.port)
            .username("postgres")
            .database(database)
    }
}

/// (Re)creates the floor's database: the four schemas from the services' migrations, then the hot rows.
pub async fn prepare(target: &Target) -> Result<()> {
    let mut admin = PgConnection::connect_with(&target.options("postgres"))
        .await
        .context("connecting to the bench's Postgres")?;
    let database = &target.database;
    ensure!(
        database
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "the floor database's name must be a plain identifier: {database}"
    );
    admin
        .execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
        )))
        .await
        .context("dropping the floor database")?;
    admin
        .execute(AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .await
        .context("creating the floor database")?;
    for (schema, migrator, ledger) in schemas() {
        let pool = schema_pool(target, schema).await?;
        migrator
            .run(&pool)
            .await
            .with_context(|| format!("migrating the floor's {schema} schema"))?;
        if ledger {
            // The functions name their tables unqualified, as in the participant's own database.
            for function in ["ledger_hold(uuid, text, bigint)", "ledger_release(uuid)"] {
                pool.execute(AssertSqlSafe(format!(
                    "ALTER FUNCTION {schema}.{function} SET search_path = {schema}"
                )))
                .await
                .with_context(|| format!("pinning {schema}.{function}'s search_path"))?;
            }
        }
        seed(&pool, schema).await?;
    }
    Ok(())
}

/// A pool whose connections see `schema` first, created if missing.
async fn schema_pool(target: &Target, schema: &str) -> Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(
            target
                .options(&target.database)
                .options([("search_path", schema)]),
        )
        .await
        .context("connecting to the floor database")?;
    pool.execute(AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}"
    )))
    .await
    .with_context(|| format!("creating the floor's {schema} schema"))?;
    Ok(pool)
}

async fn seed(pool: &PgPool, schema: &str) -> Result<()> {
    match schema {
        "billing" => {
            for n in 1..=ACCOUNTS {
                let username = Username::try_from(format!("floor-{n}"))
                    .map_err(|e| anyhow::anyhow!("{e}"))
                    .context("a floor username")?;
                billing::create_account(
                    pool,
                    &username,
                    &format!("floor-{n}@example.com"),
                    Money::from_minor(PLENTY),
                )
                .await
                .context("seeding the floor's accounts")?;
            }
        }
        "items" => {
            items::seed(PLENTY)
                .execute(pool)
                .await
                .context("seeding the floor's items")?;
        }
        "slots" => {
            slots::seed(PLENTY)
                .execute(pool)
                .await
                .context("seeding the floor's slots")?;
        }
        _ => {}
    }
    Ok(())
}

/// How a pgbench run is driven.
#[derive(Debug, Clone, Copy)]
pub enum Length {
    /// For this long (`-T`).
    Time(Duration),
    /// This many pgbench transactions per client (`-t`).
    Transactions(u32),
}

/// What one pgbench run gave.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub clients: u32,
    pub sagas_per_s: f64,
    /// Sagas that ended in an error (a failed statement): must be 0.
    pub failed: u64,
}

/// Runs `script` with `clients` connections (prepared statements, as sqlx sends them).
pub async fn run(target: &Target, script: Script, clients: u32, length: Length) -> Result<Run> {
    let batch = script.sagas_per_transaction();
    let file = std::env::temp_dir().join(format!("saga-floor-{}.pgbench", std::process::id()));
    std::fs::write(&file, script.text()).context("writing the floor script")?;
    let mut pgbench = tokio::process::Command::new(target.bin.join("pgbench"));
    pgbench
        .args(["--no-vacuum", "--protocol=prepared", "--username=postgres"])
        .arg(format!("--host={}", target.host))
        .arg(format!("--port={}", target.port))
        .arg(format!("--client={clients}"))
        .arg(format!("--jobs={}", clients.min(2)))
        .arg(format!("--define=batch={batch}"))
        .arg(format!("--file={}", file.display()));
    match length {
        Length::Time(duration) => pgbench.arg(format!("--time={}", duration.as_secs().max(1))),
        Length::Transactions(n) => pgbench.arg(format!("--transactions={n}")),
    };
    let output = pgbench
        .arg(&target.database)
        .kill_on_drop(true)
        .output()
        .await
        .context("running pgbench")?;
    let _ = std::fs::remove_file(&file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "pgbench failed ({}): {}{}",
        output.status,
        stdout.trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let run = parse(&stdout, clients)?;
    Ok(Run {
        sagas_per_s: run.sagas_per_s * f64::from(batch),
        ..run
    })
}

/// Reads pgbench's summary: `tps = 1090.12 (without initial connection time)` and the failed
/// transactions, if it reports them.
fn parse(stdout: &str, clients: u32) -> Result<Run> {
    let figure = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
    };
    let sagas_per_s = figure("tps = ")
        .and_then(|tps| tps.parse().ok())
        .with_context(|| format!("no tps in pgbench's output:\n{stdout}"))?;
    let failed = figure("number of failed transactions:").map_or(Ok(0), |n| {
        n.parse()
            .with_context(|| format!("pgbench's failed transactions: {n}"))
    })?;
    Ok(Run {
        clients,
        sagas_per_s,
        failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pgbench_summary() {
        let out = "transaction type: floor.pgbench\nnumber of clients: 32\n\
                   number of transactions actually processed: 32700\n\
                   number of failed transactions: 0 (0.000%)\n\
                   latency average = 29.4 ms\n\
                   tps = 1090.123456 (without initial connection time)\n";
        let run = parse(out, 32).unwrap();
        assert_eq!((run.clients, run.failed), (32, 0));
        assert!((run.sagas_per_s - 1090.123456).abs() < 1e-9);
        assert!(parse("no summary", 8).is_err());
    }
}
