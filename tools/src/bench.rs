//! `make bench` behind `shop bench`: the throughput and latency of the whole shop, through its
//! gateway, on this machine.
//!
//! 1. Records the machine (CPU model, cores, memory, kernel, load average), the commit and the
//!    tuning.
//! 2. Starts the stack in the background from the release binaries (`shop run --background`,
//!    state in `.state/bench`, ports 28xxx), with stock and couriers large enough that no order
//!    fails for lack of them, and tuned for ONE small machine that runs everything (the profile
//!    behind each setting is in docs/PERFORMANCE.md, "Where the CPU goes"):
//!    - each service and loadgen on one Tokio worker thread (`--worker-threads`): eight processes
//!      plus Postgres share the cores, and idle workers woken to steal tasks cost more than they
//!      bring (in a pod with a CPU limit below 2, Tokio picks 1 by itself);
//!    - the services reach Postgres over its Unix socket, not loopback TCP;
//!    - `--db-connections` per service: fewer backends competing;
//!    - Postgres group commit (`--pg-opts`); fsync and synchronous_commit stay on: every commit
//!      is durable.
//! 3. Runs loadgen (src/bin/loadgen.rs) twice, each with its own fresh users: (a) maximum
//!    throughput, `--concurrency` orders in flight; (b) latency at a fixed `--rate`.
//! 4. Prints both summaries and their `RESULT {json}` lines, also saved in
//!    `.state/bench-last.txt`, and stops the stack (also on failure or Ctrl-C).
//!
//! loadgen runs on the same machine and takes CPU from the shop.

use crate::{
    checks::{Interrupt, child_status},
    local::{self, repo_root},
    procs,
};
use anyhow::{Context, Result, ensure};
use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    process::Stdio,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

/// `shop bench`'s settings.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Orders in flight in the throughput run.
    #[arg(long, env = "BENCH_CONCURRENCY", default_value_t = 256)]
    pub concurrency: u32,
    /// Orders per second in the latency run.
    #[arg(long, env = "BENCH_RATE", default_value_t = 300)]
    pub rate: u32,
    /// How long each run lasts (`30s`, `2m`).
    #[arg(long, env = "BENCH_DURATION", default_value = "30s")]
    pub duration: String,
    /// Users the orders are spread over (fresh ones per run).
    #[arg(long, env = "BENCH_USERS", default_value_t = 50)]
    pub users: u32,
    /// The order mix (see `loadgen --help`).
    #[arg(
        long,
        env = "BENCH_MIX",
        default_value = "success=90,no-money=4,no-item=3,no-slot=3"
    )]
    pub mix: String,
    /// Tokio worker threads of each service and of loadgen.
    #[arg(long, env = "BENCH_WORKER_THREADS", default_value_t = 1)]
    pub worker_threads: u32,
    /// Database connections per service.
    #[arg(long, env = "BENCH_DB_CONNECTIONS", default_value_t = 8)]
    pub db_connections: u32,
    /// PostgreSQL server options (group commit).
    #[arg(
        long,
        env = "BENCH_PG_OPTS",
        default_value = "-c commit_delay=200 -c commit_siblings=5",
        allow_hyphen_values = true
    )]
    pub pg_opts: String,
    /// The services' log filter: per-request logging is not what is measured.
    #[arg(long, env = "RUST_LOG", default_value = "warn")]
    pub service_log: String,
    /// Where the release binaries are (default: next to this program).
    #[arg(long, env = "BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
}

/// `shop bench`; returns the exit code.
pub async fn run(args: BenchArgs) -> Result<i32> {
    let mut interrupt = Interrupt::new()?;
    let state = repo_root().join(".state/bench");
    let outcome = tokio::select! {
        outcome = bench(&args, &state) => outcome.map(|()| 0),
        signal = interrupt.recv() => Ok(signal),
    };
    local::stop(&state, false).await?;
    outcome
}

async fn bench(args: &BenchArgs, state: &Path) -> Result<()> {
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => procs::default_bin_dir()?,
    };
    let out_path = repo_root().join(".state/bench-last.txt");
    let mut out = Output {
        file: File::create(&out_path)
            .with_context(|| format!("creating {}", out_path.display()))?,
    };
    out.say("== machine ==")?;
    for line in machine(args).await {
        out.say(&line)?;
    }

    let env = local::start_in_background(
        &bin_dir,
        state,
        28_000,
        &[
            ("ITEM_STOCK", "100000000".to_owned()),
            ("SLOT_CAPACITY", "100000000".to_owned()),
            ("RUST_LOG", args.service_log.clone()),
            ("TOKIO_WORKER_THREADS", args.worker_threads.to_string()),
            ("PG_UNIX_SOCKET", "1".to_owned()),
            ("DB_MAX_CONNECTIONS", args.db_connections.to_string()),
            ("PG_EXTRA_OPTS", args.pg_opts.clone()),
        ],
    )
    .await?;
    let base_url = env
        .get("BASE_URL")
        .context("the bench stack's env has no BASE_URL")?;

    let runs = [
        (
            format!(
                "(a) maximum throughput: {} orders in flight for {}",
                args.concurrency, args.duration
            ),
            ["--concurrency".to_owned(), args.concurrency.to_string()],
        ),
        (
            format!(
                "(b) latency at a fixed {} orders/s for {}",
                args.rate, args.duration
            ),
            ["--rate".to_owned(), args.rate.to_string()],
        ),
    ];
    let mut results = Vec::new();
    for (title, load) in runs {
        out.say("")?;
        out.say(&format!("== {title} =="))?;
        out.say(&format!("loadgen {}", load.join(" ")))?;
        let mut loadgen = Command::new(bin_dir.join("loadgen"));
        loadgen
            .args(["--base-url", base_url, "--users", &args.users.to_string()])
            .args(["--mix", &args.mix, "--duration", &args.duration])
            .args(&load)
            .env("TOKIO_WORKER_THREADS", args.worker_threads.to_string())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        // Progress goes to stderr (the terminal only); the summary and the RESULT line to stdout,
        // kept in the output file too.
        let mut child = loadgen.spawn().context("starting loadgen")?;
        let mut lines = BufReader::new(child.stdout.take().context("loadgen's stdout")?).lines();
        while let Some(line) = lines.next_line().await.context("reading loadgen")? {
            out.say(&line)?;
            if let Some(json) = line.strip_prefix("RESULT ") {
                results.push(json.to_owned());
            }
        }
        let status = child.wait().await.context("waiting for loadgen")?;
        ensure!(status.success(), "loadgen failed ({status})");
    }
    out.say("")?;
    out.say("== RESULT lines ==")?;
    for result in &results {
        out.say(result)?;
    }
    eprintln!("==> saved in .state/bench-last.txt; stopping the stack");
    Ok(())
}

/// Lines printed and kept in `.state/bench-last.txt`.
struct Output {
    file: File,
}

impl Output {
    fn say(&mut self, line: &str) -> Result<()> {
        println!("{line}");
        writeln!(self.file, "{line}").context("writing .state/bench-last.txt")
    }
}

/// What the figures were measured on.
async fn machine(args: &BenchArgs) -> Vec<String> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')))
        .map_or("unknown", |(_, model)| model.trim());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib: f64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let git = |args: &[&str]| {
        let mut git = Command::new("git");
        git.args(args)
            .current_dir(repo_root())
            .stderr(Stdio::null());
        git
    };
    let commit = match git(&["rev-parse", "--short", "HEAD"]).output().await {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        _ => "unknown".to_owned(),
    };
    let clean = child_status(git(&["diff", "--quiet"]).stdout(Stdio::null()))
        .await
        .is_ok_and(|s| s.success());
    let now = time::OffsetDateTime::now_utc();
    vec![
        format!("cpu      {cpu} x {cores} (available parallelism)"),
        format!("memory   {:.1} GiB", mem_kib / 1_048_576.0),
        format!(
            "kernel   {} {}",
            read("/proc/sys/kernel/ostype").trim(),
            read("/proc/sys/kernel/osrelease").trim()
        ),
        format!(
            "load     {} (/proc/loadavg before the runs)",
            read("/proc/loadavg").trim()
        ),
        format!(
            "commit   {commit}{}",
            if clean { "" } else { " (with local changes)" }
        ),
        format!(
            "date     {:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        ),
        format!(
            "tuning   TOKIO_WORKER_THREADS={} DB_MAX_CONNECTIONS={} PG_UNIX_SOCKET=1 postgres: {}",
            args.worker_threads, args.db_connections, args.pg_opts
        ),
    ]
}
