//! `shop bench --profile`: where a saga's cost goes, measured in a steady-state window of the
//! first throughput run — per process (the six services, loadgen, nginx, Redis, and Postgres'
//! backends by database): CPU and context switches per saga, read from /proc; per database:
//! commits per saga (`pg_stat_database`) and statements per saga (`pg_stat_statements`, which
//! the bench preloads for a profile), with the statements a saga runs most; Redis commands per
//! saga (`INFO commandstats`). Only processes of the bench's own stack are read: the release
//! binaries of its bin dir, the postmaster of its data directory and that postmaster's children,
//! its Redis and its nginx.

use crate::procs::Database;
use anyhow::{Context, Result};
use order_store::db::Status;
use sqlx::{Connection, PgConnection, postgres::PgConnectOptions};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// What the profile reads.
pub struct Sources {
    pub bin_dir: PathBuf,
    /// The postmaster's pid file (`<data>/postmaster.pid`).
    pub postmaster_pid: PathBuf,
    pub redis_pid: PathBuf,
    pub nginx_pid: PathBuf,
    pub postgres: PgConnectOptions,
    pub redis_url: String,
}

/// The server options a profile needs (appended to the bench's own).
pub const PG_OPTS: &str =
    "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all";

/// Per process group: CPU ticks (utime + stime) and context switches (all threads).
type Usage = BTreeMap<String, (u64, u64)>;

/// One reading of everything.
struct Reading {
    at: Instant,
    finals: i64,
    usage: Usage,
    commits: BTreeMap<String, i64>,
    redis: BTreeMap<String, i64>,
}

/// Waits until orders are being finished, lets `settle` pass, then measures for `window`;
/// returns the report's lines.
pub async fn measure(sources: &Sources, settle: Duration, window: Duration) -> Result<Vec<String>> {
    let mut db = PgConnection::connect_with(&sources.postgres.clone().database("orders"))
        .await
        .context("connecting to the bench's orders database")?;
    let mut admin = PgConnection::connect_with(&sources.postgres.clone().database("postgres"))
        .await
        .context("connecting to the bench's Postgres")?;
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&mut admin)
        .await
        .context("pg_stat_statements (the bench preloads it with --profile)")?;
    let start = finals(&mut db).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while finals(&mut db).await? == start {
        anyhow::ensure!(Instant::now() < deadline, "no order finished within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(settle).await;
    sqlx::query("SELECT pg_stat_statements_reset()")
        .execute(&mut admin)
        .await
        .context("resetting pg_stat_statements")?;
    let before = read(sources, &mut db, &mut admin).await?;
    tokio::time::sleep(window).await;
    let after = read(sources, &mut db, &mut admin).await?;
    let statements: Vec<(String, i64, f64, String)> = sqlx::query_as(
        "SELECT d.datname::text, s.calls, s.total_exec_time, s.query \
         FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
         WHERE d.datname <> 'postgres' ORDER BY s.calls DESC",
    )
    .fetch_all(&mut admin)
    .await
    .context("reading pg_stat_statements")?;
    Ok(report(&before, &after, &statements))
}

fn report(
    before: &Reading,
    after: &Reading,
    statements: &[(String, i64, f64, String)],
) -> Vec<String> {
    let sagas = (after.finals - before.finals).max(1) as f64;
    let seconds = after.at.duration_since(before.at).as_secs_f64();
    let ticks_per_s = 100.0; // USER_HZ: /proc reports CPU time in 1/100 s on Linux
    let mut lines = vec![format!(
        "window   {seconds:.1} s, {sagas:.0} sagas finished ({:.1}/s)",
        sagas / seconds
    )];
    lines.push("process            CPU ms/saga   cores   ctx switches/saga".to_owned());
    let (mut cpu_total, mut ctx_total) = (0.0, 0.0);
    for (group, &(ticks, ctx)) in &after.usage {
        let (ticks0, ctx0) = before.usage.get(group).copied().unwrap_or_default();
        let cpu_ms = ticks.saturating_sub(ticks0) as f64 / ticks_per_s * 1000.0;
        let switches = ctx.saturating_sub(ctx0) as f64;
        cpu_total += cpu_ms;
        ctx_total += switches;
        lines.push(format!(
            "{group:<18} {:>11.3} {:>7.2} {:>19.1}",
            cpu_ms / sagas,
            cpu_ms / 1000.0 / seconds,
            switches / sagas
        ));
    }
    lines.push(format!(
        "{:<18} {:>11.3} {:>7.2} {:>19.1}",
        "all",
        cpu_total / sagas,
        cpu_total / 1000.0 / seconds,
        ctx_total / sagas
    ));
    let mut per_db: BTreeMap<&str, i64> = BTreeMap::new();
    for (db, calls, _, _) in statements {
        *per_db.entry(db).or_default() += calls;
    }
    lines.push("database           commits/saga   statements/saga".to_owned());
    for (db, &commits) in &after.commits {
        let commits = commits - before.commits.get(db).copied().unwrap_or_default();
        let calls = per_db.get(db.as_str()).copied().unwrap_or_default();
        lines.push(format!(
            "{db:<18} {:>12.2} {:>17.2}",
            commits as f64 / sagas,
            calls as f64 / sagas
        ));
    }
    lines.push("statements a saga runs most (calls/saga, mean ms, database: query)".to_owned());
    for (db, calls, total_ms, query) in statements.iter().take(12) {
        let query: String = query.split_whitespace().collect::<Vec<_>>().join(" ");
        lines.push(format!(
            "  {:>5.2} {:>7.3}  {db}: {}",
            *calls as f64 / sagas,
            total_ms / (*calls).max(1) as f64,
            query.chars().take(110).collect::<String>()
        ));
    }
    let redis: Vec<String> = after
        .redis
        .iter()
        .map(|(cmd, &calls)| (cmd, calls - before.redis.get(cmd).copied().unwrap_or(0)))
        .filter(|&(_, calls)| calls > 0)
        .map(|(cmd, calls)| format!("{cmd} {:.2}", calls as f64 / sagas))
        .collect();
    lines.push(format!("redis commands/saga: {}", redis.join(", ")));
    lines
}

async fn finals(db: &mut PgConnection) -> Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = ANY($1)")
        .bind(Status::finals())
        .fetch_one(db)
        .await
        .context("counting finished orders")
}

async fn read(
    sources: &Sources,
    db: &mut PgConnection,
    admin: &mut PgConnection,
) -> Result<Reading> {
    let finals = finals(db).await?;
    let databases: Vec<&str> = Database::ALL.iter().map(|d| d.name()).collect();
    let commits: Vec<(String, i64)> = sqlx::query_as(
        "SELECT datname::text, xact_commit FROM pg_stat_database WHERE datname = ANY($1)",
    )
    .bind(databases)
    .fetch_all(admin)
    .await
    .context("reading pg_stat_database")?;
    let client = redis::Client::open(sources.redis_url.as_str())?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to the bench's Redis")?;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .context("INFO commandstats")?;
    Ok(Reading {
        at: Instant::now(),
        finals,
        usage: usage(sources),
        commits: commits.into_iter().collect(),
        redis: commandstats(&info),
    })
}

/// `cmdstat_xadd:calls=12,usec=...` lines -> calls per command.
fn commandstats(info: &str) -> BTreeMap<String, i64> {
    info.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter_map(|l| {
            let (cmd, rest) = l.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((cmd.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// The CPU and context switches of the stack's processes, by group.
fn usage(sources: &Sources) -> Usage {
    let pid_in = |file: &Path| {
        std::fs::read_to_string(file)
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse::<u32>().ok())
    };
    let (postmaster, redis, nginx) = (
        pid_in(&sources.postmaster_pid),
        pid_in(&sources.redis_pid),
        pid_in(&sources.nginx_pid),
    );
    let bin_dir = sources.bin_dir.canonicalize().unwrap_or_default();
    let mut usage = Usage::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return usage;
    };
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        let Some((ppid, ticks)) = stat(pid) else {
            continue;
        };
        let ours = |root: Option<u32>| root.is_some_and(|r| pid == r || ppid == r);
        let group = if ours(postmaster) {
            postgres_group(pid)
        } else if ours(redis) {
            "redis".to_owned()
        } else if ours(nginx) {
            "nginx".to_owned()
        } else {
            match std::fs::read_link(format!("/proc/{pid}/exe")) {
                Ok(exe) if exe.parent() == Some(bin_dir.as_path()) => exe
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                _ => continue,
            }
        };
        let entry = usage.entry(group).or_default();
        entry.0 += ticks;
        entry.1 += context_switches(pid);
    }
    usage
}

/// (ppid, utime + stime) from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may contain spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    // After the command: state(0) ppid(1) ... utime(11) stime(12).
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// Voluntary and involuntary context switches of every thread of `pid`.
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// `postgres <database>` for a backend (its title is `postgres: <user> <database> ...`), or
/// `postgres (server)` for the postmaster and its helpers (WAL writer, checkpointer, ...).
fn postgres_group(pid: u32) -> String {
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let title = cmdline.replace('\0', " ");
    let words: Vec<&str> = title.split_whitespace().collect();
    match words.as_slice() {
        ["postgres:", "postgres", database, ..] => format!("postgres {database}"),
        _ => "postgres (server)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_redis_commandstats() {
        let info = "# Commandstats\r\ncmdstat_xadd:calls=12,usec=30,usec_per_call=2.5\r\n\
                    cmdstat_xack:calls=7,usec=9,usec_per_call=1.2\r\n";
        let stats = commandstats(info);
        assert_eq!(stats.get("xadd"), Some(&12));
        assert_eq!(stats.get("xack"), Some(&7));
    }

    #[test]
    fn reads_its_own_cpu_and_parent() {
        let (ppid, _) = stat(std::process::id()).expect("our own /proc/<pid>/stat");
        assert_eq!(ppid, std::os::unix::process::parent_id());
    }
}
