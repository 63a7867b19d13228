//! The private Redis and PostgreSQL of every local stack — how each store is STARTED, stopped and
//! restarted, written once: `make run` / `make test` / `make bench` ([`crate::local`]), `make chaos`
//! and the tests that restart stores ([`PrivateStores`]), and the `redis_restart` and
//! `postgres_restart` faults of the nemesis.
//!
//! - PostgreSQL ([`start_postgres`]): initdb'd with trust auth (superuser `postgres`) on first use,
//!   run by `pg_ctl` as the `postgres` user when we are root (it refuses root), bound to 127.0.0.1,
//!   its Unix socket in its home directory; fsync and synchronous_commit stay on. Its home is the
//!   directory given, or a fallback under /var/tmp when the postgres user cannot reach it (a repo
//!   under /root). A restart is `pg_ctl restart`, which reuses the running server's options
//!   (`postmaster.opts`).
//! - Redis ([`start_redis`]): `<dir>/redis.conf` (appendonly yes, appendfsync everysec, no RDB
//!   snapshots, daemonized with a pid file); a restart runs the same file plus
//!   `--aof-load-truncated yes` — Redis' default too, spelled out because the AOF cut of the
//!   nemesis depends on it.
//!
//! Each store's directory holds a `.component` marker (`postgres`, `redis`; `nginx` for the
//! gateway), so that [`stop_components`] finds what runs under a state directory; only processes
//! whose pid files live in those directories are ever signalled.

use anyhow::{Context, Result, ensure};
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};
use tokio::process::Command;

/// A Redis started by [`start_redis`].
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
            "{} has no redis.conf (a directory of start_redis)",
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
    /// from its config and waits for PING.
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
        crate::procs::wait_pid_gone(pid, Duration::from_secs(10))
            .await
            .context("Redis after SIGKILL")?;
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
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            launch_redis(
                &dir,
                &["--aof-load-truncated", "yes"],
                Duration::from_secs(60),
            )
        })
        .await
        .context("the Redis restart task")??;
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

/// A PostgreSQL started by [`start_postgres`].
#[derive(Debug, Clone)]
pub struct PostgresStore {
    /// Its data directory (`<home>/data`; home is its directory or the /var/tmp fallback).
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

    /// `pg_ctl restart -m <mode>` as the postgres user (when we are root), with its log file;
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

/// Newest `/usr/lib/postgresql/<major>/bin` holding `pg_ctl` and `initdb` (`PG_BIN` overrides).
pub fn find_pg_bin() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in std::fs::read_dir("/usr/lib/postgresql").context("listing /usr/lib/postgresql")? {
        let dir = entry?.path();
        let bin = dir.join("bin");
        let major = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split('.').next()?.parse::<u32>().ok());
        if let Some(major) = major
            && bin.join("pg_ctl").is_file()
            && bin.join("initdb").is_file()
            && best.as_ref().is_none_or(|(b, _)| major > *b)
        {
            best = Some((major, bin));
        }
    }
    best.map(|(_, bin)| bin).context(
        "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (scripts/lib.sh \
         ensure_packages installs them)",
    )
}

/// `mkdir -p`, world-traversable: the postgres user must be able to walk through it.
pub fn make_state_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod 755 {}", dir.display()))
}

/// Refuses a busy `port`, creates `dir` and marks it as `component`'s (with its port); returns
/// its absolute path.
fn claim_dir(dir: &Path, component: &str, port: u16, port_var: &str) -> Result<PathBuf> {
    ensure!(
        crate::procs::port_free(port),
        "port {port} ({component}) is in use — is another `make run` running? stop it or set \
         {port_var}"
    );
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    std::fs::write(dir.join(".component"), format!("{component}\n"))
        .and_then(|()| std::fs::write(dir.join(".port"), format!("{port}\n")))
        .with_context(|| format!("writing the markers of {}", dir.display()))?;
    Ok(dir)
}

/// A command run as the `postgres` user when we are root (PostgreSQL refuses to run as root).
fn as_postgres(program: &Path) -> std::process::Command {
    if is_root() {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        std::process::Command::new(program)
    }
}

/// Runs a short command to its end; its output goes to `log` (or is returned in the error).
fn run_quiet(mut cmd: std::process::Command, what: &str, log: Option<&Path>) -> Result<()> {
    cmd.stdin(Stdio::null());
    let output = match log {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            cmd.stdout(file.try_clone()?).stderr(file);
            cmd.output()
        }
        None => cmd.output(),
    }
    .with_context(|| format!("running {what}"))?;
    ensure!(
        output.status.success(),
        "{what} failed ({}){}: {}",
        output.status,
        log.map(|l| format!(", see {}", l.display()))
            .unwrap_or_default(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// Where the PostgreSQL of `dir` really keeps its data, socket and log: `dir` itself, or the
/// /var/tmp fallback recorded in `dir/.pg_home`.
pub fn pg_home(dir: &Path) -> PathBuf {
    std::fs::read_to_string(dir.join(".pg_home"))
        .map(|h| PathBuf::from(h.trim()))
        .unwrap_or_else(|_| dir.to_path_buf())
}

/// A stable short name for `dir` (the /var/tmp fallback must be found again from the same path).
fn path_tag(dir: &Path) -> String {
    // FNV-1a: stable across builds, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in dir.as_os_str().as_encoded_bytes() {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")[..12].to_owned()
}

/// Private PostgreSQL on 127.0.0.1:`port`, data in `<home>/data`, Unix socket and postgres.log
/// in its home (`dir`, or the /var/tmp fallback); waits until it accepts connections.
/// `extra_opts` (`-c name=value ...`, e.g. the benchmark's tuning) come after, and win over,
/// the options here. Blocking.
pub fn start_postgres(
    dir: &Path,
    port: u16,
    bin: &Path,
    extra_opts: Option<&str>,
) -> Result<PostgresStore> {
    use std::os::unix::fs::PermissionsExt;
    let dir = claim_dir(dir, "postgres", port, "PG_PORT")?;
    let mut home = dir.clone();
    if is_root() {
        chown_postgres(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let reachable = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--", "test", "-w"])
            .arg(&dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !reachable {
            // some parent of dir is not traversable by postgres (e.g. the repo lives under /root)
            home = PathBuf::from(format!("/var/tmp/saga-shop-pg-{}", path_tag(&dir)));
            eprintln!(
                "warning: user postgres cannot reach {}; keeping the PostgreSQL data in {} \
                 (linked as {}/home)",
                dir.display(),
                home.display(),
                dir.display()
            );
            std::fs::create_dir_all(&home)
                .with_context(|| format!("creating {}", home.display()))?;
            chown_postgres(&home)?;
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700))?;
            let link = dir.join("home");
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&home, &link)
                .with_context(|| format!("linking {}", link.display()))?;
        }
    }
    std::fs::write(dir.join(".pg_home"), home.to_string_lossy().as_bytes())
        .context("writing .pg_home")?;

    let data = home.join("data");
    if !data.join("PG_VERSION").is_file() {
        eprintln!("==> initdb {}", data.display());
        let mut initdb = as_postgres(&bin.join("initdb"));
        initdb.current_dir(&home).arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
        ]);
        run_quiet(initdb, "initdb", Some(&home.join("initdb.log")))?;
    } else {
        let have = std::fs::read_to_string(data.join("PG_VERSION"))?;
        let version = std::process::Command::new(bin.join("pg_ctl"))
            .arg("--version")
            .output()
            .context("pg_ctl --version")?;
        let version = String::from_utf8_lossy(&version.stdout);
        let want = version
            .split_whitespace()
            .last()
            .and_then(|v| v.split('.').next())
            .unwrap_or_default();
        ensure!(
            have.trim() == want,
            "{} was created by PostgreSQL {} but {} is {want}: remove it (make clean-state) or \
             install {}",
            data.display(),
            have.trim(),
            bin.display(),
            have.trim()
        );
    }

    let mut opts = format!(
        "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} \
         -c max_connections=300 -c shared_buffers=256MB -c fsync=on",
        home.display()
    );
    if let Some(extra) = extra_opts.filter(|e| !e.trim().is_empty()) {
        opts.push(' ');
        opts.push_str(extra);
    }
    eprintln!(
        "==> starting postgres on 127.0.0.1:{port} ({})",
        home.display()
    );
    let log = home.join("postgres.log");
    let mut pg_ctl = as_postgres(&bin.join("pg_ctl"));
    pg_ctl
        .current_dir(&home)
        .arg("start")
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", "60", "-s", "-o", &opts]);
    run_quiet(pg_ctl, "pg_ctl start", None).map_err(|e| {
        e.context(format!(
            "postgres did not start on port {port}; end of {}:\n{}",
            log.display(),
            crate::procs::log_tail(&log, 30).unwrap_or_default()
        ))
    })?;
    wait_until(
        &format!("postgres on port {port} ready"),
        Duration::from_secs(30),
        &log,
        || {
            std::process::Command::new(bin.join("pg_isready"))
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-U",
                    "postgres",
                ])
                .args(["-t", "2"])
                .status()
                .is_ok_and(|s| s.success())
        },
    )?;
    PostgresStore::new(data, bin)
}

fn chown_postgres(path: &Path) -> Result<()> {
    let status = std::process::Command::new("chown")
        .arg("postgres:postgres")
        .arg(path)
        .status()
        .context("running chown")?;
    ensure!(status.success(), "chown postgres {} failed", path.display());
    Ok(())
}

/// Fast shutdown of the PostgreSQL of `dir`, if it runs (`pg_ctl stop -m fast`, else SIGINT, else
/// SIGKILL); its data stays. Blocking.
pub fn stop_postgres(dir: &Path) -> Result<()> {
    let home = pg_home(dir);
    let data = home.join("data");
    let Ok(pid) = read_pid(&data.join("postmaster.pid"), "postgres") else {
        return Ok(());
    };
    eprintln!("==> stopping postgres ({})", home.display());
    if let Ok(bin) = find_pg_bin() {
        let mut pg_ctl = as_postgres(&bin.join("pg_ctl"));
        pg_ctl
            .current_dir(&home)
            .arg("stop")
            .arg("-D")
            .arg(&data)
            .args(["-m", "fast", "-w", "-t", "60", "-s"]);
        if run_quiet(pg_ctl, "pg_ctl stop", None).is_ok() {
            return Ok(());
        }
    }
    // SIGINT is PostgreSQL's fast shutdown.
    stop_daemon(pid, "postgres", &[(libc::SIGINT, 30)])
}

/// Signals a daemon in turn (each signal, then up to its seconds to exit), SIGKILL last. Blocking.
fn stop_daemon(pid: i32, name: &str, steps: &[(libc::c_int, u64)]) -> Result<()> {
    for &(sig, secs) in steps {
        let _ = signal(pid, sig);
        let deadline = Instant::now() + Duration::from_secs(secs);
        while crate::procs::pid_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !crate::procs::pid_alive(pid) {
            return Ok(());
        }
    }
    eprintln!("warning: {name} (pid {pid}) did not stop; SIGKILL");
    signal(pid, libc::SIGKILL)
}

/// Private redis-server on 127.0.0.1:`port`, config, append-only files, log and pid file in
/// `dir`; waits for PING. Blocking.
pub fn start_redis(dir: &Path, port: u16) -> Result<RedisStore> {
    let dir = claim_dir(dir, "redis", port, "REDIS_PORT")?;
    let d = dir.display();
    let conf = format!(
        "# generated by tools/src/stores.rs start_redis — private dev/test redis\n\
         bind 127.0.0.1\nport {port}\nprotected-mode yes\ndir {d}\ndaemonize yes\n\
         pidfile {d}/redis.pid\nlogfile {d}/redis.log\nappendonly yes\nappendfsync everysec\n\
         save \"\"\ntcp-keepalive 60\n"
    );
    std::fs::write(dir.join("redis.conf"), conf).context("writing redis.conf")?;
    eprintln!("==> starting redis on 127.0.0.1:{port} ({d})");
    launch_redis(&dir, &[], Duration::from_secs(30))?;
    RedisStore::new(dir, format!("redis://127.0.0.1:{port}"))
}

/// `redis-server <dir>/redis.conf ARGS` (it daemonizes), then waits for PING. Blocking.
fn launch_redis(dir: &Path, args: &[&str], timeout: Duration) -> Result<()> {
    let conf = dir.join("redis.conf");
    let port = std::fs::read_to_string(dir.join(".port"))
        .ok()
        .and_then(|p| p.trim().parse::<u16>().ok())
        .with_context(|| format!("no port recorded in {}", dir.display()))?;
    let _ = std::fs::remove_file(dir.join("redis.pid"));
    let mut cmd = std::process::Command::new("redis-server");
    cmd.arg(&conf).args(args);
    run_quiet(cmd, "redis-server", None)?;
    wait_until(
        &format!("redis on port {port} answering PING"),
        timeout,
        &dir.join("redis.log"),
        || redis_answers_ping(port),
    )
}

/// Polls `probe` until it holds; after `timeout`, fails with `what` and the end of `log`. Blocking.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    log: &Path,
    mut probe: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !probe() {
        ensure!(
            Instant::now() < deadline,
            "no {what} after {timeout:?}; end of {}:\n{}",
            log.display(),
            crate::procs::log_tail(log, 30).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn redis_answers_ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let mut reply = [0u8; 7];
    conn.write_all(b"PING\r\n").is_ok()
        && conn.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

/// SHUTDOWN NOSAVE-like stop of the Redis of `dir` if it runs: SIGTERM (the AOF is flushed), then
/// SIGKILL. Blocking.
pub fn stop_redis(dir: &Path) -> Result<()> {
    let Ok(pid) = read_pid(&dir.join("redis.pid"), "redis-server") else {
        return Ok(());
    };
    eprintln!("==> stopping redis ({})", dir.display());
    stop_daemon(pid, "redis", &[(libc::SIGTERM, 20)])?;
    let _ = std::fs::remove_file(dir.join("redis.pid"));
    Ok(())
}

/// Graceful quit of the nginx of `dir` if it runs (SIGQUIT, then SIGTERM, then SIGKILL). Blocking.
pub fn stop_nginx(dir: &Path) -> Result<()> {
    let pid_file = dir.join("nginx.pid");
    let Ok(pid) = read_pid(&pid_file, "nginx") else {
        return Ok(());
    };
    eprintln!("==> stopping nginx ({})", dir.display());
    stop_daemon(pid, "nginx", &[(libc::SIGQUIT, 10), (libc::SIGTERM, 5)])?;
    let _ = std::fs::remove_file(pid_file);
    Ok(())
}

/// The marked components (`.component`) in `dir` and its direct subdirectories.
fn components(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut dirs = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        dirs.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
    }
    dirs.into_iter()
        .filter_map(|d| {
            let kind = std::fs::read_to_string(d.join(".component")).ok()?;
            Some((kind.trim().to_owned(), d))
        })
        .collect()
}

/// What still runs of the daemons under `dir`, e.g. `["redis (pid 123)"]`.
pub fn running_components(dir: &Path) -> Vec<String> {
    components(dir)
        .into_iter()
        .filter_map(|(kind, d)| {
            let pid = match kind.as_str() {
                "postgres" => read_pid(&pg_home(&d).join("data/postmaster.pid"), "postgres"),
                "redis" => read_pid(&d.join("redis.pid"), "redis-server"),
                "nginx" => read_pid(&d.join("nginx.pid"), "nginx"),
                _ => return None,
            };
            pid.ok().map(|pid| format!("{kind} (pid {pid})"))
        })
        .collect()
}

/// Stops every daemon under `dir`: the gateway first (it stops taking traffic), then Redis and
/// PostgreSQL. Tolerant of things not running; every failure is reported. Blocking.
pub fn stop_components(dir: &Path) -> Result<()> {
    let found = components(dir);
    let mut failures = Vec::new();
    for order in ["nginx", "redis", "postgres"] {
        for (kind, d) in found.iter().filter(|(k, _)| k == order) {
            let stopped = match kind.as_str() {
                "nginx" => stop_nginx(d),
                "redis" => stop_redis(d),
                _ => stop_postgres(d),
            };
            if let Err(e) = stopped {
                failures.push(format!("{kind} in {}: {e:#}", d.display()));
            }
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("; "));
    Ok(())
}

/// Stops what runs under `dir`, then removes it and any PostgreSQL data kept outside it (the
/// /var/tmp fallback). Blocking: also used on drop.
pub fn purge(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    stop_components(dir).with_context(|| {
        format!(
            "not removing {}: something there did not stop",
            dir.display()
        )
    })?;
    for (kind, d) in components(dir) {
        let home = pg_home(&d);
        if kind == "postgres" && home.starts_with("/var/tmp") {
            let _ = std::fs::remove_dir_all(home);
        }
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
}

/// A Redis and a PostgreSQL of a test's own under `dir`, for tests that stop or restart stores:
/// doing that to the ones other tests share would fail those tests. Ports come from the project
/// range ([`crate::procs::pick_ports`]); one taken meanwhile makes the start fail, and it is
/// tried again on other ports. Everything under `dir` is stopped and removed on drop.
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
        let dir: PathBuf = dir.into();
        let task_dir = dir.clone();
        tokio::task::spawn_blocking(move || Self::start_blocking(task_dir, None))
            .await
            .context("the store start task")?
    }

    /// [`PrivateStores::start`] for callers without a runtime; `pg_extra_opts` as in
    /// [`start_postgres`].
    pub fn start_blocking(dir: PathBuf, pg_extra_opts: Option<&str>) -> Result<Self> {
        let bin = find_pg_bin()?;
        let mut last_error = None;
        for _ in 0..5 {
            let ports = crate::procs::pick_ports(2)?;
            let (pg_port, redis_port) = (ports[0], ports[1]);
            let started = make_state_dir(&dir).and_then(|()| {
                let postgres = start_postgres(&dir.join("pg"), pg_port, &bin, pg_extra_opts)?;
                let redis = start_redis(&dir.join("redis"), redis_port)?;
                Ok((postgres, redis))
            });
            match started {
                Ok((postgres, redis)) => {
                    return Ok(Self {
                        redis,
                        postgres,
                        admin_url: format!("postgres://postgres@127.0.0.1:{pg_port}/postgres"),
                        postgres_port: pg_port,
                        dir,
                    });
                }
                Err(e) => {
                    last_error = Some(e);
                    let _ = purge(&dir);
                }
            }
        }
        Err(last_error
            .unwrap_or_else(|| anyhow::anyhow!("no attempt made"))
            .context(format!(
                "could not start private stores in {} (5 tries)",
                dir.display()
            )))
    }

    /// Stops the PostgreSQL (`pg_ctl stop -m fast`), keeping its data.
    pub async fn stop_postgres(&self) -> Result<()> {
        let pg = self.dir.join("pg");
        tokio::task::spawn_blocking(move || stop_postgres(&pg))
            .await
            .context("the PostgreSQL stop task")?
    }

    /// Starts the PostgreSQL again on its port; returns once it accepts connections.
    pub async fn start_postgres(&self) -> Result<()> {
        let (pg, port, bin) = (
            self.dir.join("pg"),
            self.postgres_port,
            self.postgres.bin.clone(),
        );
        tokio::task::spawn_blocking(move || start_postgres(&pg, port, &bin, None).map(drop))
            .await
            .context("the PostgreSQL start task")?
    }
}

impl Drop for PrivateStores {
    fn drop(&mut self) {
        if let Err(e) = purge(&self.dir) {
            eprintln!("private stores: {e:#}");
        }
    }
}
