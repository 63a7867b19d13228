//! chaos: failure injection against a private stack under load, then an exact audit.
//!
//! It starts its own stack with the `tools::stack` harness (fresh databases on the given Postgres,
//! its own streams on the given Redis, several mediator replicas that reach billing, items and
//! slots through fault proxies), sends mixed orders straight to the order API (at most
//! `--max-unfinished` accepted orders not final at once, like that many clients each waiting for
//! theirs), and meanwhile:
//! - `kill -9`s `--kills` times a random one of the mediators, billing, items, slots and the order
//!   API, each restarted after a short random delay (`campaign::kill_loop`);
//! - runs the nemesis (`tools::nemesis`): `--pauses` SIGSTOPs of a mediator past its claim idle
//!   time, `--lost-replies` windows where a participant's replies are dropped, `--delays` windows
//!   where its calls are slowed past the per-attempt timeout, `--redis-restarts` (the first with
//!   the last second of the AOF cut: writes really lost) and `--postgres-restarts`. The stores are
//!   the ones `scripts/chaos.sh` started (`--redis-dir`, `--pg-data`, `--pg-bin`).
//!
//! At least `--orders` orders are sent, and more while faults are still due, so that every fault
//! lands under load. A POST that finds the order API down is retried with the same
//! Idempotency-Key; only accepted POSTs count.
//!
//! Once the faults stop, every order must be final within `--resume-within` (else the stragglers
//! are "stalled"; it waits on, at most `--settle`, to show how long they take). Then it checks:
//! 0 stuck, 0 lost (every accepted order exists and is final), no unknown (duplicate) order, the
//! conservation audit (`tools::audit`: wallets, stock and couriers balance exactly, nothing held for
//! a failed order, every completed order held exactly once everywhere), no outcome that no fault
//! explains (`campaign::explained_by_faults`), as many faults of each kind landed (with evidence) as
//! asked. The audit runs AGAIN after the mediators' step deadline plus the longest
//! pause, to catch a straggler (a paused or slowed owner) acting late; before that final audit
//! every service is stopped, so its per-database snapshots see books nothing can change, and it
//! also checks every stored order against what was sent and lists the dead letters and the
//! entries left pending. It prints the figures and a
//! `RESULT {json}` line, and exits 1 on any violation (a service that dies on its own or does not
//! come back counts as one too, and so does a POST given up after a minute of retries).
//!
//! `--short`: 600 orders, 8 kills, 2 pauses, 2 lost replies, 2 delays, 1 Redis restart (cut),
//! 1 PostgreSQL restart (what `make test` runs).

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::json;
use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    time::{Duration, Instant},
};
use tools::{
    audit::{Baseline, Known},
    campaign::{self, Faults, Pace, SendReport, Sending, Setup, SlowRequest, Watch},
    client::ShopClient,
    nemesis::{FaultKind, Nemesis, NemesisConfig, Shared},
    stack::{Service, Stack, StackConfig},
    stores::{PostgresStore, RedisStore},
    workload::Mix,
};

#[derive(Parser, Debug)]
#[command(
    about = "Faults (kill -9, pauses, lost replies, delays, store restarts) under load, then audit the books"
)]
struct Args {
    /// Postgres URL of a user that may CREATE DATABASE (default: $TEST_DATABASE_URL).
    #[arg(long, env = "CHAOS_DATABASE_URL")]
    database_url: Option<String>,
    /// Redis URL (default: $TEST_REDIS_URL).
    #[arg(long, env = "CHAOS_REDIS_URL")]
    redis_url: Option<String>,
    /// The directory of `tools::stores::start_redis` (redis.conf, pid file, appendonlydir):
    /// needed for Redis restarts.
    #[arg(long, env = "CHAOS_REDIS_DIR")]
    redis_dir: Option<PathBuf>,
    /// PostgreSQL's data directory: needed for PostgreSQL restarts.
    #[arg(long, env = "CHAOS_PG_DATA")]
    pg_data: Option<PathBuf>,
    /// The directory of pg_ctl.
    #[arg(long, env = "PG_BIN")]
    pg_bin: Option<PathBuf>,
    /// Orders to send (at least; more while faults are still due).
    #[arg(long, default_value_t = 10_000)]
    orders: usize,
    /// kill -9 this many times.
    #[arg(long, default_value_t = 60)]
    kills: usize,
    /// SIGSTOP a mediator with entries in flight past its claim idle time, this many times.
    #[arg(long, default_value_t = 24)]
    pauses: usize,
    /// Windows where one participant's replies are dropped.
    #[arg(long, default_value_t = 24)]
    lost_replies: usize,
    /// Windows where one participant's calls are slowed past the mediator's attempt timeout.
    #[arg(long, default_value_t = 12)]
    delays: usize,
    /// Redis restarts (every other one, the first included, with the AOF tail cut).
    #[arg(long, default_value_t = 4)]
    redis_restarts: usize,
    /// PostgreSQL restarts (alternately -m fast and -m immediate).
    #[arg(long, default_value_t = 2)]
    postgres_restarts: usize,
    /// A small run (what `make test` runs): 600 orders, 8 kills, 2 pauses, 2 lost replies,
    /// 2 delays, 1 Redis restart (cut), 1 PostgreSQL restart.
    #[arg(long)]
    short: bool,
    /// Mediator replicas.
    #[arg(long, default_value_t = 3)]
    mediators: usize,
    /// What may be killed: any of mediator (every replica), billing, items, slots, order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mediator,billing,items,slots,order"
    )]
    targets: Vec<Service>,
    /// Users sending orders (plus a tenth as many "poor" users for the no-money orders).
    #[arg(long, default_value_t = 40)]
    users: usize,
    /// POSTs in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// At most this many accepted orders not final at once.
    #[arg(long, default_value_t = 200)]
    max_unfinished: u64,
    /// Weights of the order kinds.
    #[arg(long, default_value = "success=80,no-money=7,no-item=7,no-slot=6")]
    mix: Mix,
    /// Share of the orders the customer cancels, each at a random moment within 500 ms of its
    /// POST (mid-saga or after it): a 202 must end the order cancelled, holding nothing.
    #[arg(long, default_value_t = 0.06)]
    cancel_share: f64,
    /// Shortest and longest time a killed process stays down.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "100ms")]
    down_min: Duration,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1500ms")]
    down_max: Duration,
    /// Every order must be final within this long after the last fault (else: stalled).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    resume_within: Duration,
    /// How long to wait on for stalled orders (to show when they end), counted from the last fault.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "360s")]
    settle: Duration,
    /// At most this many processes down at once (restarts overlap with the next kills).
    #[arg(long, default_value_t = 2)]
    max_down: usize,
    /// Mediators take over a silent replica's entries after this idle time.
    #[arg(long, default_value_t = 1500)]
    claim_min_idle_ms: u64,
    /// The mediators' STEP_DEADLINE_MS (a step's retries; each attempt times out after a third).
    #[arg(long, default_value_t = 3000)]
    step_deadline_ms: u64,
    /// A pause lasts the claim idle time plus 0.5 s to this.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    pause_extra_max: Duration,
    /// Longest lost-reply and delay windows (the shortest is a third of it).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "4s")]
    window_max: Duration,
    /// Seed of the orders and the faults (random by default; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Keep the services' logs (they are kept anyway when a check fails).
    #[arg(long)]
    keep_logs: bool,
    /// TEST ONLY: the mediators record this participant's compensations as done without sending
    /// them (MEDIATOR_BROKEN_COMPENSATION), which the run must catch
    /// (tools/tests/system/chaos_teeth.rs).
    #[arg(long, value_parser = ["items", "slots", "billing"])]
    broken_compensation: Option<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.short {
        args.orders = 600;
        args.kills = 8;
        args.pauses = 2;
        args.lost_replies = 2;
        args.delays = 2;
        args.redis_restarts = 1;
        args.postgres_restarts = 1;
    }
    if args.targets.is_empty() || args.targets.contains(&Service::Auth) {
        bail!("--targets: some of mediator, billing, items, slots, order (auth is never killed)");
    }
    let database_url = args
        .database_url
        .clone()
        .or_else(|| std::env::var("TEST_DATABASE_URL").ok())
        .context("give --database-url (or CHAOS_DATABASE_URL / TEST_DATABASE_URL)")?;
    let redis_url = args
        .redis_url
        .clone()
        .or_else(|| std::env::var("TEST_REDIS_URL").ok())
        .context("give --redis-url (or CHAOS_REDIS_URL / TEST_REDIS_URL)")?;
    let redis = match &args.redis_dir {
        Some(dir) => Some(RedisStore::new(dir, &redis_url)?),
        None if args.redis_restarts > 0 => {
            bail!("--redis-restarts needs --redis-dir (scripts/chaos.sh passes it)")
        }
        None => None,
    };
    let postgres = match (&args.pg_data, &args.pg_bin) {
        (Some(data), Some(bin)) => Some(PostgresStore::new(data, bin)?),
        _ if args.postgres_restarts > 0 => {
            bail!("--postgres-restarts needs --pg-data and --pg-bin (scripts/chaos.sh passes them)")
        }
        _ => None,
    };
    let seed = args
        .seed
        .unwrap_or_else(|| campaign::seed_from_env_or_random("CHAOS_SEED"));

    let config = StackConfig::new(database_url, redis_url)
        .mediators(args.mediators)
        .fault_proxies()
        .service_env(
            Service::Mediator,
            "CLAIM_MIN_IDLE_MS",
            args.claim_min_idle_ms,
        )
        .service_env(Service::Mediator, "STEP_DEADLINE_MS", args.step_deadline_ms);
    let mut config = match &args.broken_compensation {
        Some(participant) => config.service_env(
            Service::Mediator,
            "MEDIATOR_BROKEN_COMPENSATION",
            participant,
        ),
        None => config,
    };
    // Enough stock and couriers that success orders never run out: the audit is exact either way,
    // but then every success must complete.
    config.item_stock = (max_orders(&args) as i64 * 2).max(1000);
    config.slot_capacity = (max_orders(&args) as i64 * 2).max(1000);
    config.rust_log = std::env::var("SAGA_STACK_RUST_LOG").unwrap_or_else(|_| "warn".into());
    let started = Instant::now();
    let stack = Stack::start(config).await.context("starting the stack")?;
    if args.keep_logs {
        stack.keep_logs();
    }
    eprintln!(
        "chaos: stack {} up in {:.1}s ({} mediators; logs in {}); seed {seed}",
        stack.id(),
        started.elapsed().as_secs_f64(),
        args.mediators,
        stack.log_dir().display()
    );
    let outcome = run(&stack, &args, seed, redis, postgres).await;
    let failed = match &outcome {
        Ok(ok) => !ok,
        Err(_) => true,
    };
    if failed {
        stack.keep_logs();
    }
    stack.shutdown().await;
    match outcome {
        Ok(true) => Ok(()),
        Ok(false) => std::process::exit(1),
        Err(e) => Err(e),
    }
}

/// The five slowest of `slow`, slowest first.
fn slowest(slow: &[SlowRequest]) -> Vec<&SlowRequest> {
    let mut slowest: Vec<_> = slow.iter().collect();
    slowest.sort_by_key(|s| std::cmp::Reverse(s.took_ms));
    slowest.truncate(5);
    slowest
}

/// Orders per `send_orders` call: the sender goes on in such chunks while faults are due.
const CHUNK: usize = 500;

/// How many times `--orders` may be sent while faults are still due. Wallets, stock and couriers
/// are sized for that many, so that a success order never fails for want of them (it would be an
/// outcome no fault explains); beyond it no more are sent, and a fault that then finds no traffic
/// does not land. With the orders database batched, the short campaign's 600 orders and ten times
/// as many were done before its last faults (a delay that met no call): forty times.
const MAX_OVERSHOOT: usize = 40;

fn max_orders(args: &Args) -> usize {
    args.orders * MAX_OVERSHOOT
}

/// The run; `Ok(true)` when every check passed.
async fn run(
    stack: &Stack,
    args: &Args,
    seed: u64,
    redis: Option<RedisStore>,
    postgres: Option<PostgresStore>,
) -> Result<bool> {
    // Longer than the services' REQUEST_TIMEOUT_MS (10 s): a request they hold gets their own 503
    // `timeout` (logged, and counted in `slow_requests`) before this client would give up.
    let client = ShopClient::new(stack.endpoints(), Duration::from_secs(15))?;
    let poor = (args.users / 10).max(1);
    let rich = args.users.max(1);
    let max_amount = 500;
    // Enough for every order that may be sent, at its highest amount, twice over (the picks of
    // users are random, so some get more orders than the average).
    let per_user = (max_orders(args) / rich + 1) as i64 * max_amount * 2;
    let setup = Setup {
        rich,
        poor,
        deposit_cents: per_user,
        amount_cents: (100, max_amount),
    };
    let t = Instant::now();
    let planner = campaign::prepare(&client, &setup, "chaos").await?;
    eprintln!(
        "chaos: {rich} rich + {poor} poor users ready in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let mut targets = Vec::new();
    for svc in &args.targets {
        if *svc == Service::Mediator {
            targets.extend(stack.mediators());
        } else {
            targets.push(svc.name().to_owned());
        }
    }
    let shared = Shared::default();
    let faults = Faults {
        kills: args.kills,
        targets: targets.clone(),
        gap: (Duration::ZERO, Duration::from_millis(300)),
        down: (args.down_min, args.down_max),
        pace: Some((Pace::Final, args.orders as u64)),
        seed,
        max_down: args.max_down,
        verbose: true,
        shared: Some(shared.clone()),
    };
    let requested: BTreeMap<FaultKind, usize> = [
        (FaultKind::Kill, args.kills),
        (FaultKind::Pause, args.pauses),
        (FaultKind::LostReply, args.lost_replies),
        (FaultKind::Delay, args.delays),
        (FaultKind::RedisRestart, args.redis_restarts),
        (FaultKind::PostgresRestart, args.postgres_restarts),
    ]
    .into_iter()
    .collect();
    let step_deadline = Duration::from_millis(args.step_deadline_ms);
    let window_min = args.window_max / 3;
    let nemesis_config = NemesisConfig {
        counts: requested.clone(),
        claim_min_idle: Duration::from_millis(args.claim_min_idle_ms),
        pause_extra: (Duration::from_millis(500), args.pause_extra_max),
        step_deadline,
        lost_reply_for: (window_min, args.window_max),
        delay_for: (window_min, args.window_max),
        pace_total: args.orders as u64,
        seed,
        redis,
        postgres,
        verbose: true,
    };
    eprintln!(
        "chaos: {}+ orders (mix {}), faults {:?}; kills among {}",
        args.orders,
        args.mix,
        requested,
        targets.join(", ")
    );

    let dbs = stack.dbs().await?;
    let nemesis = Nemesis::new(stack, &nemesis_config, shared, &dbs);
    let progress = AtomicU64::new(0);
    let finals = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let faults_done = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let t = Instant::now();
    let send_all = async {
        let mut report = SendReport::default();
        for chunk in 0u64.. {
            let tried = report.accepted.len() + report.rejected.len();
            let n = if tried < args.orders {
                (args.orders - tried).min(CHUNK)
            } else if !faults_done.load(Relaxed) && tried < max_orders(args) {
                CHUNK.min(max_orders(args) - tried)
            } else {
                break;
            };
            let sending = Sending {
                orders: n,
                concurrency: args.concurrency,
                pause: Duration::ZERO,
                post_timeout: Duration::from_secs(60),
                max_unfinished: Some(args.max_unfinished),
                cancel_share: args.cancel_share,
                seed: seed.wrapping_add(chunk),
            };
            let sent = campaign::send_orders(
                &client,
                &planner,
                &args.mix,
                &sending,
                &progress,
                Some(&finals),
            )
            .await;
            report.accepted.extend(sent.accepted);
            report.rejected.extend(sent.rejected);
            report.retries += sent.retries;
            report.slow.extend(sent.slow);
        }
        report
    };
    let inject = async {
        let r = tokio::join!(
            campaign::kill_loop(
                stack,
                &faults,
                Watch {
                    progress: &progress,
                    stop: &stop,
                    orders_db: Some(&dbs.orders),
                },
            ),
            nemesis.run(&stop),
        );
        faults_done.store(true, Relaxed);
        r
    };
    let work = async {
        let r = tokio::join!(send_all, inject);
        done.store(true, Relaxed);
        r
    };
    let report_progress = async {
        while !done.load(Relaxed) {
            tokio::time::sleep(Duration::from_secs(5)).await;
            eprintln!(
                "[{:6.1}s] accepted {:>6}  final {:>6}",
                t.elapsed().as_secs_f64(),
                progress.load(Relaxed),
                finals.load(Relaxed)
            );
        }
    };
    let ((sent, (kills, mut nemesis_report)), (), ()) = tokio::join!(
        work,
        campaign::track_finals(&dbs.orders, &finals, &done, Duration::from_millis(50)),
        report_progress
    );
    let faults_over = Instant::now();
    eprintln!(
        "chaos: faults over after {:.1}s: {} orders accepted ({} POST retries, {} given up), \
         {} kills, {} other faults; waiting for quiescence ({:?}, at most {:?})",
        t.elapsed().as_secs_f64(),
        sent.accepted.len(),
        sent.retries,
        sent.rejected.len(),
        kills.kills,
        nemesis_report.faults.len(),
        args.resume_within,
        args.settle
    );

    // Every order must resume and end soon after the last fault; stragglers are waited for (to
    // show how long they take) but count as stalled.
    let resumed = campaign::wait_quiescent(&dbs, args.resume_within).await?;
    let mut stalled_examples = Vec::new();
    let stalled = match resumed {
        Ok(_) => 0,
        Err(_) => {
            let rows: Vec<(uuid::Uuid, String)> = sqlx::query_as(
                "SELECT id, status FROM orders WHERE status <> ALL($1) ORDER BY created_at",
            )
            .bind(order_store::db::Status::finals())
            .fetch_all(&dbs.orders)
            .await
            .context("reading the stalled orders")?;
            stalled_examples = rows
                .iter()
                .take(10)
                .map(|(id, status)| format!("{id} ({status})"))
                .collect();
            eprintln!(
                "chaos: {} orders not final {:?} after the last fault; waiting on (at most {:?})",
                rows.len(),
                args.resume_within,
                args.settle
            );
            rows.len()
        }
    };
    let settled = if stalled > 0 {
        campaign::wait_quiescent(&dbs, args.settle.saturating_sub(faults_over.elapsed())).await?
    } else {
        resumed
    };
    let settle_s = match settled {
        Ok(_) => faults_over.elapsed().as_secs_f64(),
        Err(_) => args.settle.as_secs_f64(),
    };
    let baseline = Baseline {
        initial_wallet_cents: stack.config().initial_wallet_cents,
        item_stock: stack.config().item_stock,
        slot_capacity: stack.config().slot_capacity,
    };
    let known = Known {
        deposits: Some(campaign::deposits(&setup, &planner)),
        streams: Some((stack.config().redis_url.clone(), stack.streams().clone())),
        ..Known::default()
    };
    let verdict = campaign::verify(&dbs, baseline, &sent.accepted, known.clone()).await?;
    nemesis
        .confirm(&mut nemesis_report)
        .await
        .context("checking the evidence of the proxy faults")?;
    // Again, once a paused or slowed owner has certainly woken up and run out of deadline: a late
    // effect (a step landing after its order was declared final) shows up only now.
    let late_after = step_deadline + nemesis_config.max_pause() + Duration::from_secs(2);
    tokio::time::sleep(late_after).await;
    // The final audit: with every service stopped, nothing can act between the four snapshots.
    stack.stop_services().await;
    let known = Known {
        sent: Some(campaign::sent_orders(&sent.accepted)),
        ..known
    };
    let again = tools::audit::audit(&dbs, baseline, &known).await?;
    let late_violations = again.violation_count() + again.not_final;

    let mut faults_by_kind: BTreeMap<FaultKind, usize> = nemesis_report.landed_by_kind();
    faults_by_kind.insert(FaultKind::Kill, kills.kills);
    for kind in FaultKind::ALL {
        faults_by_kind.entry(kind).or_default();
    }
    let shortfalls: Vec<String> = requested
        .iter()
        .filter(|(k, n)| faults_by_kind.get(k).copied().unwrap_or(0) < **n)
        .map(|(k, n)| format!("{k}: {} landed of {n}", faults_by_kind[k]))
        .collect();
    let not_landed: Vec<String> = nemesis_report
        .not_landed()
        .iter()
        .map(|f| {
            format!(
                "{} {} at {}s ({}): {}",
                f.kind, f.target, f.at_s, f.detail, f.evidence
            )
        })
        .collect();

    let total_s = faults_over.duration_since(t).as_secs_f64();
    let unexpected: usize = verdict.unexpected.values().sum();
    let unexplained: usize = verdict.unexplained.values().sum();
    // A fault that did not land tests nothing; it fails the run when fewer of its kind landed
    // than asked (the shortfalls), so an attempt injected again until it landed does not.
    let fault_problems = kills.problems.len() + nemesis_report.errors.len() + shortfalls.len();
    // A POST given up after a minute of retries with its key: the order API refused a client for
    // that long (and fewer orders were accepted than sent).
    let given_up = sent.rejected.len();
    // A kill whose victim held nothing (no entry of its own, no saga running, no order in flight)
    // tested nothing.
    let idle_kills = kills.idle_kills.len();
    let violations = verdict.violations()
        + late_violations
        + unexplained
        + stalled
        + fault_problems
        + given_up
        + idle_kills;
    println!("== chaos result (seed {seed}) ==");
    println!(
        "orders sent        {} accepted ({} POSTs given up)",
        sent.accepted.len(),
        sent.rejected.len()
    );
    println!(
        "slow requests      {} POSTs or cancels took {}s or more, retries included (slowest {} ms)",
        sent.slow.len(),
        campaign::SLOW_REQUEST.as_secs(),
        sent.slow.iter().map(|s| s.took_ms).max().unwrap_or(0)
    );
    println!(
        "cancels sent       {:?} ({} orders ended cancelled)",
        cancels(&sent.accepted),
        verdict.audit.cancelled
    );
    println!(
        "kills              {} ({:?}; {idle_kills} of a victim holding nothing: violations)",
        kills.kills, kills.by_target
    );
    println!(
        "recoveries         {} (slowest {} ms to ready)",
        kills.recoveries, kills.slowest_recovery_ms
    );
    let by_kind: Vec<String> = faults_by_kind
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!("faults landed      {}", by_kind.join(", "));
    println!(
        "run time           {total_s:.1} s under faults; quiescent {settle_s:.1} s after the last fault"
    );
    println!(
        "stalled            {stalled} (not final {:?} after the last fault)",
        args.resume_within
    );
    println!("stuck              {}", verdict.stuck.len());
    println!("lost               {}", verdict.lost.len());
    println!("unknown orders     {}", verdict.unknown.len());
    println!(
        "streams            {} dead letters, {} entries pending at the end",
        again.dead_letters, again.pending_entries
    );
    println!(
        "unexpected         {unexpected} ({unexplained} not explained by a fault: violations)"
    );
    println!("violations         {violations}");
    println!("{}", verdict.report());
    if late_violations > 0 {
        println!(
            "audit {:.0} s later:\n{}",
            late_after.as_secs_f64(),
            again.report()
        );
    }
    for id in &stalled_examples {
        println!("  STALLED {id}");
    }
    for p in &kills.problems {
        println!("PROBLEM {p}");
    }
    for victim in &kills.idle_kills {
        println!("IDLE KILL of {victim}: it held nothing");
    }
    for e in &nemesis_report.errors {
        println!("NEMESIS ERROR {e}");
    }
    for f in &not_landed {
        println!("NOT LANDED {f}");
    }
    for s in &shortfalls {
        println!("TOO FEW {s}");
    }
    for f in &nemesis_report.faults {
        println!(
            "  fault {:>6.1}s {:<16} {:<10} {} -> {}",
            f.at_s, f.kind, f.target, f.detail, f.evidence
        );
    }
    for r in sent.rejected.iter().take(10) {
        println!("GAVE UP on POST: {r}");
    }
    let names = |m: &BTreeMap<FaultKind, usize>| -> BTreeMap<&'static str, usize> {
        m.iter().map(|(k, n)| (k.name(), *n)).collect()
    };
    let result = json!({
        "seed": seed,
        "orders": args.orders,
        "accepted": sent.accepted.len(),
        "post_given_up": sent.rejected.len(),
        "post_retries": sent.retries,
        "slow_requests": sent.slow.len(),
        "slowest_requests": slowest(&sent.slow),
        "faults_by_kind": names(&faults_by_kind),
        "faults_requested": names(&requested),
        "faults_not_landed": not_landed.len(),
        "nemesis_errors": nemesis_report.errors.len(),
        "kills_by_target": kills.by_target,
        "idle_kills": kills.idle_kills,
        "recoveries": kills.recoveries,
        "problems": kills.problems,
        "cancels": cancels(&sent.accepted),
        "cancelled": verdict.audit.cancelled,
        "completed": verdict.audit.completed,
        "failed": verdict.audit.failed,
        "failed_by_reason": verdict.audit.failed_by_reason,
        "stalled": stalled,
        "stuck": verdict.stuck.len(),
        "lost": verdict.lost.len(),
        "unknown": verdict.unknown.len(),
        "unexpected": verdict.unexpected,
        "unexplained": verdict.unexplained,
        "audit_violations": verdict.audit.violations,
        "late_audit_violations": again.violations,
        "dead_letters": again.dead_letters,
        "pending_entries": again.pending_entries,
        "violations": violations,
        "run_s": (total_s * 10.0).round() / 10.0,
        "quiescent_after_s": (settle_s * 10.0).round() / 10.0,
    });
    println!("RESULT {result}");
    Ok(violations == 0)
}

/// The cancels sent, by answer.
fn cancels(accepted: &[campaign::Sent]) -> BTreeMap<String, usize> {
    let mut by_answer = BTreeMap::new();
    for answer in accepted.iter().filter_map(|s| s.cancel) {
        *by_answer
            .entry(format!("{answer:?}").to_lowercase())
            .or_default() += 1;
    }
    by_answer
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The duration flags take what scripts/chaos.sh and tests/system/chaos_teeth.rs pass.
    #[test]
    fn duration_flags_take_human_durations() {
        let args = Args::try_parse_from([
            "chaos",
            "--resume-within",
            "120s",
            "--down-max",
            "1500ms",
            "--settle",
            "2m",
            "--window-max",
            "2.5s",
        ])
        .unwrap();
        assert_eq!(args.resume_within, Duration::from_secs(120));
        assert_eq!(args.down_max, Duration::from_millis(1500));
        assert_eq!(args.settle, Duration::from_secs(120));
        assert_eq!(args.window_max, Duration::from_millis(2500));
        assert_eq!(args.down_min, Duration::from_millis(100));
        assert!(Args::try_parse_from(["chaos", "--settle", "10x"]).is_err());
    }
}
