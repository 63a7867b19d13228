//! How a service process is started, watched and stopped — written once, for every stack: the
//! test and chaos harness ([`crate::stack`]) and `make run`'s supervisor ([`crate::local`]).
//!
//! Every child:
//! - gets exactly the environment of its [`ProcSpec`] plus [`PASS_THROUGH`], nothing else;
//! - runs in its own process group (a Ctrl-C in a terminal reaches the supervisor, which stops
//!   the services in order, not the services directly), and kills and stops go to the whole group;
//! - on Linux gets `PR_SET_PDEATHSIG = SIGKILL`, so even a `kill -9` of its supervisor takes it
//!   down. (The kernel ties that signal to the spawning *thread*: spawn from threads that live as
//!   long as the process, never from short-lived blocking-pool threads.)
//! - appends its output to its log file, after a `===== ... start #N ... =====` header.
//!
//! Ports the harness picks come from 20000-27999 ([`pick_ports`]): below the kernel's ephemeral
//! range, so an outgoing connection cannot take one between the pick and the service's bind.

use anyhow::{Context, Result, anyhow, bail};
use std::{
    collections::HashSet,
    fs::OpenOptions,
    io::Write,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};
use tokio::process::{Child, Command};

/// The six service binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Auth,
    Billing,
    Order,
    Mediator,
    Items,
    Slots,
}

impl Service {
    pub const ALL: [Service; 6] = [
        Service::Auth,
        Service::Billing,
        Service::Order,
        Service::Mediator,
        Service::Items,
        Service::Slots,
    ];

    /// The binary's file name, and the instance name of the service's first process.
    pub fn name(self) -> &'static str {
        match self {
            Service::Auth => "auth",
            Service::Billing => "billing",
            Service::Order => "order",
            Service::Mediator => "mediator",
            Service::Items => "items",
            Service::Slots => "slots",
        }
    }

    pub fn database(self) -> Database {
        match self {
            Service::Auth => Database::Auth,
            Service::Billing => Database::Billing,
            Service::Order | Service::Mediator => Database::Orders,
            Service::Items => Database::Items,
            Service::Slots => Database::Slots,
        }
    }
}

named!(Service, "service");

/// The five databases (the order API and the mediator share `orders`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Database {
    Auth,
    Billing,
    Orders,
    Items,
    Slots,
}

impl Database {
    pub const ALL: [Database; 5] = [
        Database::Auth,
        Database::Billing,
        Database::Orders,
        Database::Items,
        Database::Slots,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Database::Auth => "auth",
            Database::Billing => "billing",
            Database::Orders => "orders",
            Database::Items => "items",
            Database::Slots => "slots",
        }
    }
}

/// How one process is (re)started.
#[derive(Debug, Clone)]
pub struct ProcSpec {
    pub service: Service,
    pub program: PathBuf,
    pub port: u16,
    /// The whole environment besides [`PASS_THROUGH`]: nothing else of the caller's leaks in.
    pub env: Vec<(String, String)>,
    /// stdout and stderr, appended to across restarts.
    pub log: PathBuf,
}

/// Environment variables handed down from the caller; everything else is set explicitly, so that a
/// developer's `DATABASE_URL` or `ORDERS_STREAM` can never leak into a stack.
pub const PASS_THROUGH: [&str; 5] = ["PATH", "HOME", "TMPDIR", "RUST_BACKTRACE", "LANG"];

pub fn local_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

pub fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// `target/<profile>/` when running from `target/<profile>/deps/` (a test) or from
/// `target/<profile>/` (a tool); `SAGA_BIN_DIR` overrides.
pub fn default_bin_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("SAGA_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("locating the current executable")?;
    let mut dir = exe
        .parent()
        .context("the current executable has no directory")?
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    Ok(dir)
}

pub fn check_binaries(dir: &Path) -> Result<()> {
    let missing: Vec<String> = Service::ALL
        .iter()
        .map(|s| dir.join(s.name()))
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing service binaries: {}. Build them first: `cargo build --workspace --bins` \
             (with --release for a release tool); `cargo nextest run --workspace` builds them too. \
             SAGA_BIN_DIR overrides where they are looked for.",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Free loopback ports in 20000-27999: below the kernel's ephemeral range (32768+), so an outgoing
/// connection cannot grab one between the pick and the service's bind, and clear of the fixed
/// ports the scripts use (8xxx, 18xxx for `make test`'s e2e stack, 28xxx for `make bench`).
/// Never the same port twice per process.
pub fn pick_ports(n: usize) -> Result<Vec<u16>> {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    let mut given = given.lock().unwrap_or_else(|e| e.into_inner());
    use rand::Rng;
    let mut rng = rand::rng();
    let mut out = Vec::with_capacity(n);
    let mut tries = 0;
    while out.len() < n {
        tries += 1;
        if tries > 10_000 {
            bail!("found no free TCP port on 127.0.0.1 in 20000-27999");
        }
        let port: u16 = rng.random_range(20_000..28_000);
        if given.contains(&port) {
            continue;
        }
        if port_free(port) {
            given.insert(port);
            out.push(port);
        }
    }
    Ok(out)
}

pub fn spawn_process(instance: &str, spec: &ProcSpec, start: u32, at: Duration) -> Result<Child> {
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .with_context(|| format!("opening {}", spec.log.display()))?;
    writeln!(
        log,
        "\n===== t+{:.3}s ({}) start #{start} of {instance} on 127.0.0.1:{} =====",
        at.as_secs_f64(),
        time::OffsetDateTime::now_utc(),
        spec.port
    )
    .context("writing the log header")?;
    let mut cmd = Command::new(&spec.program);
    cmd.env_clear();
    for key in PASS_THROUGH {
        if let Ok(value) = std::env::var(key) {
            cmd.env(key, value);
        }
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("duplicating the log handle")?)
        .stderr(log)
        .kill_on_drop(true)
        .process_group(0);
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: between fork and exec the closure only makes async-signal-safe system calls
        // (prctl, getppid, _exit) and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect: then nobody would kill us.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    cmd.spawn()
        .with_context(|| format!("spawning {}", spec.program.display()))
}

/// SIGKILL to the whole process group `pid` leads (each child leads its own).
pub fn kill_group(pid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // pid 0 or 1 would signal our own group or init: never.
    if pgid > 1 {
        // SAFETY: kill(2) takes no pointers; a negative pid addresses the process group.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

pub async fn kill_and_reap(instance: &str, mut child: Child) -> Result<()> {
    // id() is None once the child has been reaped: then its pid may belong to someone else.
    if let Some(pid) = child.id() {
        kill_group(pid);
    }
    let _ = child.start_kill();
    tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .with_context(|| format!("{instance} still alive 10 s after SIGKILL"))?
        .with_context(|| format!("waiting for {instance} to exit"))?;
    Ok(())
}

/// `sig` to the whole process group `pid` leads.
pub fn signal_group(pid: u32, sig: libc::c_int) -> Result<()> {
    let pgid = libc::pid_t::try_from(pid).context("pid out of range")?;
    anyhow::ensure!(pgid > 1, "refusing to signal process group {pgid}");
    // SAFETY: kill(2) takes no pointers; a negative pid addresses the child's own group.
    if unsafe { libc::kill(-pgid, sig) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("signal {sig} to process group {pgid}"));
    }
    Ok(())
}

/// A graceful stop: SIGTERM to the process group, at most `grace` to exit (the services drain
/// their requests), then SIGKILL.
pub async fn terminate_and_reap(instance: &str, mut child: Child, grace: Duration) -> Result<()> {
    let Some(pid) = child.id() else {
        return Ok(());
    };
    let _ = signal_group(pid, libc::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => {
            status.with_context(|| format!("waiting for {instance} to exit"))?;
            // Anything the service left in its group goes too.
            kill_group(pid);
            Ok(())
        }
        Err(_) => {
            eprintln!("warning: {instance} (pid {pid}) did not stop within {grace:?}; SIGKILL");
            kill_and_reap(instance, child).await
        }
    }
}

/// Waits until `url` (a `/health/ready`) answers 2xx; fails with the end of `log` if the process
/// exits meanwhile (`exited` says so) or is not ready within `timeout`.
pub async fn wait_ready(
    http: &reqwest::Client,
    instance: &str,
    url: &str,
    timeout: Duration,
    mut exited: impl FnMut() -> Result<Option<ExitStatus>>,
    log: &Path,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = exited()? {
            bail!(
                "{instance} exited during startup ({status}); end of {}:\n{}",
                log.display(),
                log_tail(log, 30).unwrap_or_default()
            );
        }
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{instance} not ready after {timeout:?} at {url}; end of {}:\n{}",
                log.display(),
                log_tail(log, 30).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last `lines` lines of a log file.
pub fn log_tail(path: &Path, lines: usize) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let all: Vec<&str> = text.lines().collect();
    Some(all[all.len().saturating_sub(lines)..].join("\n"))
}

/// Nothing listens on (or holds) 127.0.0.1:`port`. Like the servers we start, the probe sets
/// SO_REUSEADDR (std does on Unix), so TIME_WAIT leftovers do not count as busy.
pub fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Whether a process `pid` exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 1 {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    !stat
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('Z'))
}

/// Waits at most `timeout` for `pid` to be gone (or a zombie: gone for our purpose, its parent
/// reaps it).
pub async fn wait_pid_gone(pid: i32, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while pid_alive(pid) {
        if Instant::now() > deadline {
            return Err(anyhow!("pid {pid} still alive after {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_parse() {
        assert_eq!("mediator".parse::<Service>().unwrap(), Service::Mediator);
        assert!("nope".parse::<Service>().is_err());
    }

    #[test]
    fn ports_are_distinct() {
        let ports = pick_ports(20).unwrap();
        let set: HashSet<_> = ports.iter().collect();
        assert_eq!(set.len(), 20);
    }
}
