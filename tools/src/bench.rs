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
//! 3. Measures the floor on the same Postgres (src/floor.rs: pgbench doing a completed saga's
//!    durable work, nothing else), first at each of [`FLOOR_CLIENTS`] to find the client count
//!    that maximises it.
//! 4. `--runs` rounds, each: the floor at that client count, then loadgen (src/bin/loadgen.rs),
//!    each with its own fresh users, (a) at maximum throughput, `--concurrency` orders in flight,
//!    and (b) at a fixed `--rate` — interleaved, so that the ratio compares figures of the same
//!    minutes on a machine whose speed drifts.
//! 5. Prints every run, then one `RESULT {json}` line per kind of run: the median over the rounds
//!    with the spread (min, max, every run's figure); latency percentiles are the median run's;
//!    the throughput line carries `floor_sagas_per_s` and `floor_ratio` = sagas/s / floor. All of
//!    it is also saved in `.state/bench-last.txt`; the stack is stopped (also on failure or
//!    Ctrl-C).
//!
//! loadgen runs on the same machine and takes CPU from the shop; pgbench takes less (one process,
//! two threads) from the floor.

use crate::{
    checks::{Interrupt, child_status},
    floor::{self, Length::Time},
    local::{self, repo_root},
    procs, profile, stores,
};
use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
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
    /// How long each run lasts, the floor's included (`20s`, `2m`).
    #[arg(long, env = "BENCH_DURATION", default_value = "20s")]
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
    /// Sagas in flight per mediator (its MEDIATOR_CONCURRENCY): many, so that the sagas in flight
    /// together fill the batches (docs/PERFORMANCE.md); the deployment's default is lower.
    #[arg(long, env = "BENCH_MEDIATOR_CONCURRENCY", default_value_t = 256)]
    pub mediator_concurrency: u32,
    /// PostgreSQL server options (group commit).
    #[arg(
        long,
        env = "BENCH_PG_OPTS",
        default_value = "-c commit_delay=200 -c commit_siblings=5",
        allow_hyphen_values = true
    )]
    pub pg_opts: String,
    /// Also measure, once, the fewer-commits design of floor-batched.pgbench at these batch sizes
    /// (`8,32`; docs/PERFORMANCE.md): the floor if a participant applied that many orders' holds
    /// per transaction.
    #[arg(long, env = "BENCH_BATCH", value_delimiter = ',')]
    pub batch: Vec<u32>,
    /// Profile the first throughput run (src/profile.rs): CPU and context switches per saga by
    /// process, commits and statements per saga by database, Redis commands per saga.
    #[arg(long, env = "BENCH_PROFILE", value_parser = clap::builder::BoolishValueParser::new(),
          action = clap::ArgAction::SetTrue)]
    pub profile: bool,
    /// loadgen places each order with a plain POST and waits with a long-poll GET (two requests,
    /// the original API's way) instead of one POST that waits (`?wait_ms=`).
    #[arg(long, env = "BENCH_TWO_REQUESTS", value_parser = clap::builder::BoolishValueParser::new(),
          action = clap::ArgAction::SetTrue)]
    pub two_requests: bool,
    /// Rounds of (floor, throughput, latency): each figure is their median.
    #[arg(long, env = "BENCH_RUNS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
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
            (
                "MEDIATOR_CONCURRENCY",
                args.mediator_concurrency.to_string(),
            ),
            ("PG_EXTRA_OPTS", pg_opts(args)),
        ],
    )
    .await?;
    let setting = |name: &str| {
        env.get(name)
            .with_context(|| format!("the bench stack's env has no {name}"))
    };
    let base_url = setting("BASE_URL")?;
    let floor = floor::Target {
        host: stores::pg_home(&state.join("pg")).display().to_string(),
        port: setting("PG_PORT")?
            .parse()
            .context("the bench stack's PG_PORT")?,
        bin: PathBuf::from(setting("PG_BIN")?),
        database: floor::DATABASE.to_owned(),
    };

    let duration = humantime::parse_duration(&args.duration)
        .with_context(|| format!("--duration {}", args.duration))?;
    out.say("")?;
    out.say("== the floor: pgbench, a completed saga's durable work per transaction ==")?;
    floor::prepare(&floor).await?;
    let pgbench = |script, clients, length| floor::run(&floor, script, clients, length);
    let mut best: Option<floor::Run> = None;
    for clients in FLOOR_CLIENTS {
        let run = pgbench(floor::Script::PerSaga, clients, Time(FLOOR_PROBE)).await?;
        out.say(&format!(
            "probe    {clients:>3} clients: {:.1} sagas/s",
            run.sagas_per_s
        ))?;
        if best.is_none_or(|b| run.sagas_per_s > b.sagas_per_s) {
            best = Some(run);
        }
    }
    let floor_clients = best.context("no floor probe ran")?.clients;
    out.say(&format!("the floor is measured at {floor_clients} clients"))?;

    let loads = [
        Load {
            mode: "concurrency",
            title: format!(
                "(a) maximum throughput: {} orders in flight",
                args.concurrency
            ),
            flags: ["--concurrency".to_owned(), args.concurrency.to_string()],
        },
        Load {
            mode: "rate",
            title: format!("(b) latency at a fixed {} orders/s", args.rate),
            flags: ["--rate".to_owned(), args.rate.to_string()],
        },
    ];
    let mut floors = Vec::new();
    let mut results: Vec<Vec<Value>> = vec![Vec::new(); loads.len()];
    for round in 1..=args.runs {
        out.say("")?;
        out.say(&format!("== round {round} of {} ==", args.runs))?;
        let run = pgbench(floor::Script::PerSaga, floor_clients, Time(duration)).await?;
        ensure!(run.failed == 0, "{} floor sagas failed", run.failed);
        out.say(&format!(
            "floor    {:.1} sagas/s ({floor_clients} clients, {})",
            run.sagas_per_s, args.duration
        ))?;
        floors.push(run.sagas_per_s);
        for (load, results) in loads.iter().zip(&mut results) {
            out.say("")?;
            out.say(&format!("-- {} for {} --", load.title, args.duration))?;
            let run = loadgen(&mut out, args, &bin_dir, base_url, &load.flags);
            if args.profile && round == 1 && load.mode == "concurrency" {
                let sources = profile::Sources {
                    bin_dir: bin_dir.clone(),
                    postmaster_pid: PathBuf::from(setting("PG_DATA")?).join("postmaster.pid"),
                    redis_pid: PathBuf::from(setting("REDIS_DIR")?).join("redis.pid"),
                    nginx_pid: state.join("nginx/nginx.pid"),
                    postgres: floor.options("postgres"),
                    redis_url: setting("REDIS_URL")?.clone(),
                };
                let window = duration.mul_f64(0.6);
                let (result, profile) =
                    tokio::join!(run, profile::measure(&sources, duration / 10, window));
                results.push(result?);
                out.say("")?;
                out.say("-- profile of this run --")?;
                for line in profile? {
                    out.say(&line)?;
                }
            } else {
                results.push(run.await?);
            }
        }
    }

    // After the rounds: the batches' many row versions must not slow the floor measured above.
    let mut batched = serde_json::Map::new();
    if !args.batch.is_empty() {
        out.say("")?;
        out.say("== the fewer-commits design: floor-batched.pgbench ==")?;
    }
    for &batch in &args.batch {
        let script = floor::Script::Batched(batch);
        let run = pgbench(script, floor_clients, Time(duration)).await?;
        ensure!(run.failed == 0, "{} batches failed", run.failed);
        out.say(&format!(
            "batched  {:.1} sagas/s in batches of {batch} ({floor_clients} clients, {})",
            run.sagas_per_s, args.duration
        ))?;
        batched.insert(batch.to_string(), json!(round1(run.sagas_per_s)));
    }
    let floor_median = median(&floors);
    let mut lines = vec![json!({
        "mode": "floor",
        "floor_sagas_per_s": round1(floor_median),
        "clients": floor_clients,
        "runs": floors.iter().copied().map(round1).collect::<Vec<_>>(),
        "batched_sagas_per_s": batched,
    })];
    for (load, runs) in loads.iter().zip(results) {
        let mut line = summary(load.mode, runs)?;
        if load.mode == "concurrency" {
            let sagas = line["sagas_per_s"].as_f64().unwrap_or(0.0);
            line["floor_sagas_per_s"] = json!(round1(floor_median));
            line["floor_ratio"] = json!((sagas / floor_median * 1000.0).round() / 1000.0);
        }
        lines.push(line);
    }
    out.say("")?;
    out.say("== RESULT lines (medians of the rounds) ==")?;
    for line in lines {
        out.say(&format!("RESULT {line}"))?;
    }
    eprintln!("==> saved in .state/bench-last.txt; stopping the stack");
    Ok(())
}

/// The bench's Postgres options: its group commit, and what a profile reads.
fn pg_opts(args: &BenchArgs) -> String {
    if args.profile {
        format!("{} {}", args.pg_opts, profile::PG_OPTS)
    } else {
        args.pg_opts.clone()
    }
}

/// The floor's client counts tried first, each for [`FLOOR_PROBE`]: the best one is measured.
pub const FLOOR_CLIENTS: [u32; 4] = [8, 16, 32, 64];
const FLOOR_PROBE: Duration = Duration::from_secs(5);

/// One kind of loadgen run.
struct Load {
    /// loadgen's `mode` in its RESULT.
    mode: &'static str,
    title: String,
    flags: [String; 2],
}

/// Runs loadgen once with `load`; returns its RESULT.
async fn loadgen(
    out: &mut Output,
    args: &BenchArgs,
    bin_dir: &Path,
    base_url: &str,
    load: &[String],
) -> Result<Value> {
    let mut loadgen = Command::new(bin_dir.join("loadgen"));
    loadgen
        .args(["--base-url", base_url, "--users", &args.users.to_string()])
        .args(["--mix", &args.mix, "--duration", &args.duration])
        .args(args.two_requests.then_some("--two-requests"))
        .args(load)
        .env("TOKIO_WORKER_THREADS", args.worker_threads.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    // Progress goes to stderr (the terminal only); the summary and the RESULT line to stdout,
    // kept in the output file too.
    let mut child = loadgen.spawn().context("starting loadgen")?;
    let mut lines = BufReader::new(child.stdout.take().context("loadgen's stdout")?).lines();
    let mut result = None;
    while let Some(line) = lines.next_line().await.context("reading loadgen")? {
        out.say(&line)?;
        if let Some(json) = line.strip_prefix("RESULT ") {
            result = Some(serde_json::from_str(json).context("loadgen's RESULT")?);
        }
    }
    let status = child.wait().await.context("waiting for loadgen")?;
    ensure!(status.success(), "loadgen failed ({status})");
    result.context("loadgen printed no RESULT")
}

/// The rounds of one kind of run as one line: the median sagas/s with every run's and their
/// spread; the latency of the median run (by p99), with every run's p99.
fn summary(mode: &str, runs: Vec<Value>) -> Result<Value> {
    let figure = |run: &Value, pointer: &str| {
        run.pointer(pointer)
            .and_then(Value::as_f64)
            .with_context(|| format!("loadgen's RESULT has no {pointer}: {run}"))
    };
    let sagas = runs
        .iter()
        .map(|r| figure(r, "/sagas_per_s"))
        .collect::<Result<Vec<_>>>()?;
    let p99 = runs
        .iter()
        .map(|r| figure(r, "/latency_ms/p99"))
        .collect::<Result<Vec<_>>>()?;
    let median_run = median_index(&p99).context("no runs")?;
    let run = &runs[median_run];
    let spread = |figures: &[f64]| {
        json!({
            "min": figures.iter().copied().fold(f64::INFINITY, f64::min),
            "max": figures.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            "runs": figures,
        })
    };
    Ok(json!({
        "mode": mode,
        "runs": runs.len(),
        "sagas_per_s": round1(median(&sagas)),
        "sagas_per_s_spread": spread(&sagas),
        "latency_ms": run["latency_ms"],
        "latency_from_run": median_run + 1,
        "p99_ms_spread": spread(&p99),
        "errors": runs.iter().map(|r| r["errors"].as_u64().unwrap_or(0)).sum::<u64>(),
        "unexpected_outcomes": runs
            .iter()
            .map(|r| r["unexpected_outcomes"].as_u64().unwrap_or(0))
            .sum::<u64>(),
        "requests_per_order": run["requests_per_order"],
        "two_requests": run["two_requests"],
        "concurrency": run.get("concurrency"),
        "rate": run.get("rate"),
    }))
}

/// The median of `figures` (the mean of the middle two for an even count).
fn median(figures: &[f64]) -> f64 {
    let mut sorted = figures.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Which of `figures` is the median (the lower middle one for an even count).
fn median_index(figures: &[f64]) -> Option<usize> {
    let mut order: Vec<usize> = (0..figures.len()).collect();
    order.sort_by(|&a, &b| figures[a].total_cmp(&figures[b]));
    order.get(figures.len().saturating_sub(1) / 2).copied()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
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
            "tuning   TOKIO_WORKER_THREADS={} DB_MAX_CONNECTIONS={} MEDIATOR_CONCURRENCY={} \
             PG_UNIX_SOCKET=1 postgres: {}",
            args.worker_threads, args.db_connections, args.mediator_concurrency, args.pg_opts
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_run_is_the_middle_one() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median_index(&[30.0, 10.0, 20.0]), Some(2));
        assert_eq!(median_index(&[40.0, 10.0, 30.0, 20.0]), Some(3));
        assert_eq!(median_index(&[]), None);
    }

    #[test]
    fn a_summary_keeps_every_runs_figure_and_the_median_runs_latency() {
        let run = |sagas: f64, p99: f64| {
            json!({"sagas_per_s": sagas, "latency_ms": {"p50": p99 / 2.0, "p99": p99},
                   "errors": 1, "unexpected_outcomes": 0, "requests_per_order": 2.0})
        };
        let line = summary(
            "concurrency",
            vec![run(400.0, 90.0), run(500.0, 30.0), run(450.0, 60.0)],
        )
        .unwrap();
        assert_eq!(line["sagas_per_s"], json!(450.0));
        assert_eq!(line["sagas_per_s_spread"]["min"], json!(400.0));
        assert_eq!(line["sagas_per_s_spread"]["max"], json!(500.0));
        assert_eq!(line["latency_ms"]["p99"], json!(60.0));
        assert_eq!(line["latency_from_run"], json!(3));
        assert_eq!(line["errors"], json!(3));
    }
}
