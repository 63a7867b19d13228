//! `shop` (tools/src/bin/shop.rs), the supervisor of `make run`, as a user drives it:
//!
//! 1. started in the background with SIGINT ignored — what a non-interactive shell does to `make
//!    run &` — a SIGINT still stops it, and every process it started (the six services, nginx,
//!    Redis, PostgreSQL) is gone afterwards;
//! 2. a second supervisor on the same state directory is refused with a clear message;
//! 3. `shop stop` (`make stop`) stops a detached one (`--background`), again leaving nothing.
//!
//! Each stack gets its own state directory and ports of the project range, so it disturbs no other
//! test or stack. Needs the service binaries next to `shop` (nextest builds the workspace).

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};
use tools::procs;

const PORT_VARS: [&str; 9] = [
    "GATEWAY_PORT",
    "PG_PORT",
    "REDIS_PORT",
    "AUTH_PORT",
    "BILLING_PORT",
    "ORDER_PORT",
    "MEDIATOR_PORT",
    "ITEMS_PORT",
    "SLOTS_PORT",
];

/// `shop ARGS` for the stack of `state` on `ports`, output in `state/../<name>.log`.
fn shop(state: &Path, ports: &[u16], args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shop"));
    cmd.args(args)
        .env("SAGA_STATE_DIR", state)
        .env("RUST_LOG", "warn")
        .env_remove("PG_EXTRA_OPTS")
        .env_remove("PG_UNIX_SOCKET")
        .stdin(Stdio::null());
    for (var, port) in PORT_VARS.iter().zip(ports) {
        cmd.env(var, port.to_string());
    }
    cmd
}

fn fresh_state(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("saga-{name}-{}", uuid::Uuid::new_v4().simple()))
}

/// The value of `key` in the stack's `env` file, once the stack is ready (bounded wait).
fn wait_env(state: &Path, key: &str, child: &mut std::process::Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(env) = std::fs::read_to_string(state.join("env"))
            && let Some(value) = env.lines().find_map(|l| l.strip_prefix(&format!("{key}=")))
        {
            return value.to_owned();
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the supervisor exited ({status}) before its stack was ready");
        }
        assert!(
            Instant::now() < deadline,
            "no ready stack in {} after 180 s",
            state.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pid_in(file: &Path) -> i32 {
    std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()))
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {}", file.display()))
}

/// Every process the supervisor `pid` started: its children (the services) and the daemons of
/// its state directory (nginx, Redis, the PostgreSQL postmaster).
fn started_by(supervisor: i32, state: &Path) -> Vec<(String, i32)> {
    let mut out: Vec<(String, i32)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (head, rest) = stat.rsplit_once(") ")?;
            let ppid: i32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            let comm = head.split_once(" (")?.1.to_owned();
            (ppid == supervisor).then_some((comm, pid))
        })
        .collect();
    let pg_home = tools::stores::pg_home(&state.join("pg"));
    out.push(("nginx".into(), pid_in(&state.join("nginx/nginx.pid"))));
    out.push(("redis".into(), pid_in(&state.join("redis/redis.pid"))));
    out.push((
        "postgres".into(),
        pid_in(&pg_home.join("data/postmaster.pid")),
    ));
    out
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_all_gone(started: &[(String, i32)]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Vec<_> = started
            .iter()
            .filter(|(_, pid)| procs::pid_alive(*pid))
            .collect();
        if alive.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still running after the supervisor stopped: {alive:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigint_stops_everything_even_when_started_with_sigint_ignored() {
    let state = fresh_state("supervisor-sigint");
    let ports = procs::pick_ports(PORT_VARS.len()).unwrap();
    let mut cmd = shop(&state, &ports, &["run"]);
    let log = std::fs::File::create(state.with_extension("log")).unwrap();
    cmd.stdout(log.try_clone().unwrap()).stderr(log);
    // SAFETY: signal(2) and setpgid(2) are async-signal-safe and allocate nothing.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            // What bash does to a background job of a non-interactive shell.
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            libc::setpgid(0, 0);
            Ok(())
        });
    }
    let mut supervisor = cmd.spawn().unwrap();
    let pid = wait_env(&state, "SUPERVISOR_PID", &mut supervisor);
    assert_eq!(pid, supervisor.id().to_string());
    let started = started_by(supervisor.id() as i32, &state);
    assert!(
        started.len() >= 9,
        "want 6 services + 3 daemons: {started:?}"
    );

    // A second supervisor on the same state directory is refused, and disturbs nothing.
    let second = shop(&state, &ports, &["run"]).output().unwrap();
    assert!(!second.status.success());
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(said.contains("is `make run` already running?"), "{said}");
    assert!(supervisor.try_wait().unwrap().is_none());

    // SAFETY: kill(2) takes no pointers; the pid is our own child's.
    unsafe {
        libc::kill(supervisor.id() as i32, libc::SIGINT);
    }
    let status = wait_exit(&mut supervisor, Duration::from_secs(60));
    assert!(status.success(), "{status}");
    assert_all_gone(&started);
    assert!(!state.join("env").exists());
    for port in ports {
        assert!(procs::port_free(port), "port {port} still taken");
    }
    tools::stores::purge(&state).unwrap();
    let _ = std::fs::remove_file(state.with_extension("log"));
}

#[test]
fn shop_stop_stops_a_background_stack() {
    let state = fresh_state("supervisor-stop");
    let ports = procs::pick_ports(PORT_VARS.len()).unwrap();
    let started = shop(&state, &ports, &["run", "--background"])
        .output()
        .unwrap();
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let env = std::fs::read_to_string(state.join("env")).unwrap();
    let supervisor: i32 = env
        .lines()
        .find_map(|l| l.strip_prefix("SUPERVISOR_PID="))
        .unwrap()
        .parse()
        .unwrap();
    let base = env
        .lines()
        .find_map(|l| l.strip_prefix("BASE_URL="))
        .unwrap();
    let health = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{base}/internal/x"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&health.stdout), "404");
    let mut pids = started_by(supervisor, &state);
    pids.push(("shop".into(), supervisor));

    let stopped = shop(&state, &ports, &["stop"]).output().unwrap();
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    assert_all_gone(&pids);
    tools::stores::purge(&state).unwrap();
}
