//! Restarting the private Redis and PostgreSQL that `scripts/chaos.sh` started (via
//! `scripts/lib.sh`), for the `redis_restart` and `postgres_restart` faults of the nemesis, and
//! starting a test's own pair through lib.sh ([`PrivateStores`]; its Postgres can be stopped and
//! started again, for tests of a service started before its database).
//!
//! How each store is STARTED stays in one place, `scripts/lib.sh`: this module never writes a
//! server option of its own.
//! - Redis: lib.sh writes `<dir>/redis.conf` (appendonly yes, appendfsync everysec, daemonize,
//!   pid file); a restart runs `redis-server <dir>/redis.conf --aof-load-truncated yes` — the same
//!   file, plus the one setting that lets Redis load an append-only file whose tail we cut (it is
//!   Redis' default too; spelled out because the cut depends on it).
//! - PostgreSQL: `pg_ctl restart` reuses the options of the running server (`postmaster.opts`),
//!   run as the `postgres` user like lib.sh does, with lib.sh's log file.
//!
//! Only processes whose pid files live in the directories given are ever signalled.

use anyhow::{Context, Result, bail, ensure};
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};
use tokio::process::Command;

/// The Redis that lib.sh's `start_redis DIR PORT` runs.
#[derive(Debug, Clone)]
pub struct RedisStore {
    pub dir: PathBuf,
    pub url: String,
}

/// What a Redis restart did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RedisRestart {
    /// Bytes cut from the end of the append-only file while Redis was down.
    pub cut_bytes: u64,
    /// `XINFO STREAM` of the orders stream just before the kill and after the restart:
    /// (length, last generated id).
    pub before: Option<(u64, String)>,
    pub after: Option<(u64, String)>,
    /// Whether the newest entry before the kill is gone after the restart (read at once, so that
    /// entries published after the restart, the outbox's re-publication included, cannot hide it).
    pub last_entry_lost: bool,
    pub down_ms: u128,
}

impl RedisRestart {
    /// Stream entries that were there before the kill and are not after the restart.
    pub fn lost_entries(&self) -> bool {
        self.last_entry_lost
    }
}

impl RedisStore {
    pub fn new(dir: impl Into<PathBuf>, url: impl Into<String>) -> Result<Self> {
        let dir = dir.into();
        ensure!(
            dir.join("redis.conf").is_file(),
            "{} has no redis.conf (a directory of lib.sh's start_redis)",
            dir.display()
        );
        Ok(Self {
            dir,
            url: url.into(),
        })
    }

    fn pid(&self) -> Result<i32> {
        read_pid(&self.dir.join("redis.pid"), "redis-server")
    }

    /// The last incremental append-only file (Redis 7 multi-part AOF), from the manifest.
    pub fn aof_tail_file(&self) -> Result<PathBuf> {
        let aof_dir = self.dir.join("appendonlydir");
        let manifest = std::fs::read_dir(&aof_dir)
            .with_context(|| format!("listing {}", aof_dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".manifest"))
            .with_context(|| format!("no AOF manifest in {}", aof_dir.display()))?;
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        let last = text
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .collect::<Vec<_>>()
                    .ends_with(&["type", "i"])
            })
            .filter_map(|l| l.split_whitespace().nth(1))
            .next_back()
            .with_context(|| format!("no incremental AOF in {}", manifest.display()))?;
        Ok(aof_dir.join(last))
    }

    async fn connection(&self) -> Result<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.url.as_str()).context("parsing the Redis URL")?;
        tokio::time::timeout(
            Duration::from_secs(2),
            client.get_multiplexed_async_connection(),
        )
        .await
        .context("connecting to Redis timed out")?
        .context("connecting to Redis")
    }

    /// `(length, last-generated-id)` of a stream.
    pub async fn stream_state(&self, stream: &str) -> Result<(u64, String)> {
        let mut conn = self.connection().await?;
        let info: redis::streams::StreamInfoStreamReply = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(stream)
            .query_async(&mut conn)
            .await
            .context("XINFO STREAM")?;
        Ok((info.length as u64, info.last_generated_id))
    }

    /// Kills Redis (`SIGKILL`: nothing flushed beyond what it already wrote), cuts the append-only
    /// file back to `cut_to` bytes if given (the size it had a moment ago: the writes since are
    /// lost, as after a machine crash with `appendfsync everysec`), waits `down`, starts it again
    /// from its lib.sh config and waits for PING.
    pub async fn restart(
        &self,
        stream: &str,
        cut_to: Option<(PathBuf, u64)>,
        down: Duration,
    ) -> Result<RedisRestart> {
        let mut report = RedisRestart {
            before: self.stream_state(stream).await.ok(),
            ..RedisRestart::default()
        };
        let pid = self.pid()?;
        signal(pid, libc::SIGKILL)?;
        let t = Instant::now();
        wait_gone(pid, Duration::from_secs(10)).await?;
        if let Some((file, size)) = cut_to {
            let now = std::fs::metadata(&file)
                .with_context(|| format!("stat {}", file.display()))?
                .len();
            if now > size {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&file)
                    .with_context(|| format!("opening {}", file.display()))?;
                f.set_len(size)
                    .with_context(|| format!("truncating {}", file.display()))?;
                report.cut_bytes = now - size;
            }
        }
        tokio::time::sleep(down).await;
        let conf = self.dir.join("redis.conf");
        let status = Command::new("redis-server")
            .arg(&conf)
            .args(["--aof-load-truncated", "yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .context("running redis-server")?;
        ensure!(
            status.success(),
            "redis-server {} exited {status}",
            conf.display()
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut conn) = self.connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "Redis did not answer PING within 60 s of its restart (see {})",
                    self.dir.join("redis.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        report.down_ms = t.elapsed().as_millis();
        if let Some((_, last)) = &report.before {
            let mut conn = self.connection().await?;
            let still: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(stream)
                .arg(last)
                .arg(last)
                .query_async(&mut conn)
                .await
                .context("XRANGE of the last entry before the kill")?;
            report.last_entry_lost = still.ids.is_empty();
        }
        report.after = self.stream_state(stream).await.ok();
        Ok(report)
    }
}

/// The PostgreSQL that lib.sh's `start_postgres DIR PORT` runs.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    /// Its data directory (`<home>/data`; home is DIR or lib.sh's /var/tmp fallback).
    pub data: PathBuf,
    /// The directory of `pg_ctl`.
    pub bin: PathBuf,
}

/// How a PostgreSQL restart stops the server (`pg_ctl -m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgStop {
    /// Disconnect clients, checkpoint, stop.
    Fast,
    /// Abort at once: crash recovery from the WAL at the next start.
    Immediate,
}

impl PgStop {
    pub fn as_str(self) -> &'static str {
        match self {
            PgStop::Fast => "fast",
            PgStop::Immediate => "immediate",
        }
    }
}

impl PostgresStore {
    pub fn new(data: impl Into<PathBuf>, bin: impl Into<PathBuf>) -> Result<Self> {
        let (data, bin) = (data.into(), bin.into());
        ensure!(
            data.join("PG_VERSION").is_file(),
            "{} is not a PostgreSQL data directory",
            data.display()
        );
        ensure!(
            bin.join("pg_ctl").is_file(),
            "no pg_ctl in {}",
            bin.display()
        );
        Ok(Self { data, bin })
    }

    /// The postmaster's pid (first line of `postmaster.pid`).
    pub fn pid(&self) -> Result<i32> {
        read_pid(&self.data.join("postmaster.pid"), "postgres")
    }

    /// `pg_ctl restart -m <mode>` as the postgres user (when we are root), with lib.sh's log file;
    /// returns once the server accepts connections again, with the time it took.
    pub async fn restart(&self, mode: PgStop) -> Result<Duration> {
        let home = self
            .data
            .parent()
            .context("the data directory has no parent")?;
        let t = Instant::now();
        let pg_ctl = self.bin.join("pg_ctl");
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&pg_ctl);
            c
        } else {
            Command::new(&pg_ctl)
        };
        // From the home directory: the postgres user may not be able to enter ours.
        let output = cmd
            .current_dir(home)
            .arg("restart")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", mode.as_str(), "-w", "-t", "60", "-s", "-l"])
            .arg(home.join("postgres.log"))
            .stdin(Stdio::null())
            .output()
            .await
            .context("running pg_ctl restart")?;
        ensure!(
            output.status.success(),
            "pg_ctl restart -m {} failed ({}): {}",
            mode.as_str(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(t.elapsed())
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory of ours.
    unsafe { libc::geteuid() == 0 }
}

/// The pid in the first line of `file`, checked to be a live process named `comm`.
fn read_pid(file: &Path, comm: &str) -> Result<i32> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let pid: i32 = text
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no pid in {}", file.display()))?;
    let actual = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    ensure!(
        pid > 1 && actual.trim() == comm,
        "pid {pid} of {} is not a running {comm} (it is {:?})",
        file.display(),
        actual.trim()
    );
    Ok(pid)
}

fn signal(pid: i32, sig: libc::c_int) -> Result<()> {
    // SAFETY: kill(2) takes no pointers; pid > 1 was checked by read_pid.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(std::io::Error::last_os_error()).context(format!("kill({pid}, {sig})"));
    }
    Ok(())
}

async fn wait_gone(pid: i32, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Path::new(&format!("/proc/{pid}")).exists() {
        // A zombie is gone for our purpose (the daemon's parent reaps it).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat
            .rsplit_once(") ")
            .is_some_and(|(_, r)| r.starts_with('Z'))
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("pid {pid} still alive {timeout:?} after SIGKILL");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A Redis and a PostgreSQL of a test's own, started by lib.sh (`start_postgres`, `start_redis`)
/// under `dir`, for tests that restart stores: restarting the ones other tests share would fail
/// those tests. Ports come from the project range 20000..32000 (never the ephemeral range, where
/// the kernel hands out ports at random); one taken meanwhile makes lib.sh refuse it, and the
/// start is tried again on other ports. Everything under `dir` is stopped and removed on drop.
pub struct PrivateStores {
    pub dir: PathBuf,
    pub redis: RedisStore,
    pub postgres: PostgresStore,
    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub admin_url: String,
    pub postgres_port: u16,
}

impl PrivateStores {
    pub async fn start(dir: impl Into<PathBuf>) -> Result<Self> {
        use rand::Rng;
        let dir = dir.into();
        let mut last_error = None;
        for _ in 0..5 {
            let pg_port: u16 = rand::rng().random_range(20_000..31_998);
            let redis_port = pg_port + 1;
            let output = lib_sh(
                r#"set -e
                ensure_packages >&2
                _mkstate "$1"
                start_postgres "$1/pg" "$2" >&2
                start_redis "$1/redis" "$3" >&2
                printf '%s\n%s/data\n' "$PG_BIN" "$(_pg_home "$1/pg")""#,
                &[
                    dir.to_string_lossy().as_ref(),
                    &pg_port.to_string(),
                    &redis_port.to_string(),
                ],
            )
            .await?;
            if !output.status.success() {
                last_error = Some(String::from_utf8_lossy(&output.stderr).into_owned());
                purge(&dir);
                continue;
            }
            let stdout = String::from_utf8_lossy(&output.stdout);
            let mut lines = stdout.lines();
            let (Some(bin), Some(data)) = (lines.next(), lines.next()) else {
                bail!("lib.sh printed no PG_BIN and data directory: {stdout}");
            };
            return Ok(Self {
                redis: RedisStore::new(
                    dir.join("redis"),
                    format!("redis://127.0.0.1:{redis_port}"),
                )?,
                postgres: PostgresStore::new(data, bin)?,
                admin_url: format!("postgres://postgres@127.0.0.1:{pg_port}/postgres"),
                postgres_port: pg_port,
                dir,
            });
        }
        bail!(
            "could not start private stores in {} (5 tries): {}",
            dir.display(),
            last_error.unwrap_or_default()
        )
    }
}

impl PrivateStores {
    /// Stops the PostgreSQL (lib.sh `stop_postgres`: `pg_ctl stop -m fast`), keeping its data.
    pub async fn stop_postgres(&self) -> Result<()> {
        let pg = self.dir.join("pg");
        let output = lib_sh(r#"stop_postgres "$1""#, &[pg.to_string_lossy().as_ref()]).await?;
        ensure!(
            output.status.success(),
            "lib.sh stop_postgres failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(())
    }

    /// Starts the PostgreSQL again on its port (lib.sh `start_postgres`); returns once it accepts
    /// connections.
    pub async fn start_postgres(&self) -> Result<()> {
        let pg = self.dir.join("pg");
        let output = lib_sh(
            r#"start_postgres "$1" "$2""#,
            &[
                pg.to_string_lossy().as_ref(),
                &self.postgres_port.to_string(),
            ],
        )
        .await?;
        ensure!(
            output.status.success(),
            "lib.sh start_postgres failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(())
    }
}

impl Drop for PrivateStores {
    fn drop(&mut self) {
        purge(&self.dir);
    }
}

/// lib.sh's `purge_state DIR`: stops what runs there and removes it (blocking: used on drop).
pub fn purge(dir: &Path) {
    let lib = lib_sh_path();
    let _ = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#"source "$0" && purge_state "$1""#)
        .arg(&lib)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status();
}

fn lib_sh_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lib.sh")
}

/// Runs `script` with lib.sh sourced and `args` as `$1...`.
pub async fn lib_sh(script: &str, args: &[&str]) -> Result<std::process::Output> {
    Command::new("bash")
        .arg("-c")
        .arg(format!("source \"$0\"\n{script}"))
        .arg(lib_sh_path())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running scripts/lib.sh")
}
