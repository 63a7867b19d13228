//! chaos: failure injection against a private stack, then an exact audit.
//!
//! It starts its own stack with the `tools::stack` harness (fresh databases on the given Postgres,
//! its own streams on the given Redis, several mediator replicas), sends `--orders` mixed orders
//! straight to the order API (at most `--max-unfinished` accepted orders not final at once, like
//! that many clients each waiting for theirs), and meanwhile `kill -9`s `--kills` times a random
//! one of the mediators, billing, items, slots and the order API, each restarted after a short
//! random delay. The kills are spread over the run: kill `i` comes once `(i+1)/(kills+1)` of the
//! orders are final, after a random 0-300 ms more. A POST that finds the order API dead is retried
//! with the same Idempotency-Key; only accepted POSTs count.
//!
//! Once the faults stop it waits (at most `--settle`) until no order is pending or compensating,
//! then checks: 0 stuck, 0 lost (every accepted order exists and is final), no unknown (duplicate)
//! order, and the conservation audit (`tools::audit`): wallets, stock and couriers balance exactly,
//! nothing held for a failed order, every completed order held exactly once everywhere, nothing
//! charged twice. It prints the figures and a `RESULT {json}` line, and exits 1 on any violation
//! (a service that dies on its own or does not come back counts as one too).
//!
//! `--short`: 600 orders and 8 kills (what `make test` runs).

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::json;
use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    time::{Duration, Instant},
};
use tools::{
    audit::Baseline,
    campaign::{self, Faults, Pace, Sending, Setup},
    client::ShopClient,
    duration,
    stack::{Service, Stack, StackConfig},
    workload::Mix,
};

#[derive(Parser, Debug)]
#[command(about = "Kill -9 the saga shop's services under load, then audit the books")]
struct Args {
    /// Postgres URL of a user that may CREATE DATABASE (default: $TEST_DATABASE_URL).
    #[arg(long, env = "CHAOS_DATABASE_URL")]
    database_url: Option<String>,
    /// Redis URL (default: $TEST_REDIS_URL).
    #[arg(long, env = "CHAOS_REDIS_URL")]
    redis_url: Option<String>,
    /// Orders to send.
    #[arg(long, default_value_t = 10_000)]
    orders: usize,
    /// kill -9 this many times.
    #[arg(long, default_value_t = 60)]
    kills: usize,
    /// A small run: 600 orders, 8 kills (overrides --orders and --kills).
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
    /// Shortest and longest time a killed process stays down.
    #[arg(long, value_parser = duration::parse, default_value = "100ms")]
    down_min: Duration,
    #[arg(long, value_parser = duration::parse, default_value = "1500ms")]
    down_max: Duration,
    /// Every order must be final within this long after the last fault.
    #[arg(long, value_parser = duration::parse, default_value = "120s")]
    settle: Duration,
    /// At most this many processes down at once (restarts overlap with the next kills).
    #[arg(long, default_value_t = 2)]
    max_down: usize,
    /// Mediators take over a dead replica's entries after this idle time.
    #[arg(long, default_value_t = 3000)]
    claim_min_idle_ms: u64,
    /// The mediators' STEP_DEADLINE_MS (how long a step retries before the saga gives up on it);
    /// the services' default when not given. Below --down-max, steps run out of time and orders
    /// fail (as "unexpected" outcomes) while a participant is down: the compensation path.
    #[arg(long)]
    step_deadline_ms: Option<u64>,
    /// Seed of the orders and the kills (random by default; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Keep the services' logs (they are kept anyway when a check fails).
    #[arg(long)]
    keep_logs: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.short {
        args.orders = 600;
        args.kills = 8;
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
    let seed = args
        .seed
        .unwrap_or_else(|| campaign::seed_from_env_or_random("CHAOS_SEED"));

    let mut config = StackConfig::new(database_url, redis_url)
        .mediators(args.mediators)
        .service_env(
            Service::Mediator,
            "CLAIM_MIN_IDLE_MS",
            args.claim_min_idle_ms,
        );
    if let Some(ms) = args.step_deadline_ms {
        config = config.service_env(Service::Mediator, "STEP_DEADLINE_MS", ms);
    }
    // Enough stock and couriers that success orders never run out: the audit is exact either way,
    // but then every success must complete.
    config.item_stock = (args.orders as i64).max(1000);
    config.slot_capacity = (args.orders as i64).max(1000);
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
    let outcome = run(&stack, &args, seed).await;
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

/// The run; `Ok(true)` when every check passed.
async fn run(stack: &Stack, args: &Args, seed: u64) -> Result<bool> {
    let client = ShopClient::new(stack.endpoints(), Duration::from_secs(10))?;
    let poor = (args.users / 10).max(1);
    let rich = args.users.max(1);
    let max_amount = 500;
    // Every order may hold its amount for a while; 2x margin.
    let per_user = (args.orders / rich + 1) as i64 * max_amount * 2;
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
    let faults = Faults {
        kills: args.kills,
        targets: targets.clone(),
        gap: (Duration::ZERO, Duration::from_millis(300)),
        down: (args.down_min, args.down_max),
        pace: Some((Pace::Final, args.orders as u64)),
        seed,
        max_down: args.max_down,
        verbose: true,
    };
    let sending = Sending {
        orders: args.orders,
        concurrency: args.concurrency,
        pause: Duration::ZERO,
        post_timeout: Duration::from_secs(60),
        max_unfinished: Some(args.max_unfinished),
        seed,
    };
    eprintln!(
        "chaos: {} orders (mix {}), {} kills among {}",
        args.orders,
        args.mix,
        args.kills,
        targets.join(", ")
    );

    let dbs = stack.dbs().await?;
    let progress = AtomicU64::new(0);
    let finals = AtomicU64::new(0);
    let stop_kills = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let t = Instant::now();
    let work = async {
        let r = tokio::join!(
            campaign::send_orders(
                &client,
                &planner,
                &args.mix,
                &sending,
                &progress,
                Some(&finals)
            ),
            campaign::kill_loop(stack, &faults, &progress, &stop_kills, Some(&dbs.orders)),
        );
        done.store(true, Relaxed);
        r
    };
    let report_progress = async {
        while !done.load(Relaxed) {
            tokio::time::sleep(Duration::from_secs(2)).await;
            eprintln!(
                "[{:6.1}s] accepted {:>6}/{}  final {:>6}",
                t.elapsed().as_secs_f64(),
                progress.load(Relaxed),
                args.orders,
                finals.load(Relaxed)
            );
        }
    };
    let ((sent, kills), (), ()) = tokio::join!(
        work,
        campaign::track_finals(&dbs.orders, &finals, &done, Duration::from_millis(50)),
        report_progress
    );
    let faults_over = Instant::now();
    eprintln!(
        "chaos: faults over after {:.1}s: {} orders accepted ({} POST retries, {} given up), \
         {} kills, {} recoveries; waiting for quiescence (at most {:?})",
        t.elapsed().as_secs_f64(),
        sent.accepted.len(),
        sent.retries,
        sent.rejected.len(),
        kills.kills,
        kills.recoveries,
        args.settle
    );

    let settled = campaign::wait_quiescent(&dbs, args.settle).await?;
    let baseline = Baseline {
        initial_wallet_cents: stack.config().initial_wallet_cents,
        item_stock: stack.config().item_stock,
    };
    let verdict = campaign::verify(&dbs, baseline, &sent.accepted).await?;
    // Again a little later: a late effect (a step landing after its order was declared final)
    // would show up only now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = tools::audit::audit(&dbs, baseline).await?;
    let late_violations = again.violation_count();

    let settle_s = match settled {
        Ok(d) => d.as_secs_f64(),
        Err(_) => args.settle.as_secs_f64(),
    };
    let total_s = faults_over.duration_since(t).as_secs_f64();
    let unexpected: usize = verdict.unexpected.values().sum();
    let violations = verdict.violations() + late_violations + kills.problems.len();
    println!("== chaos result (seed {seed}) ==");
    println!(
        "orders sent        {} ({} accepted, {} POSTs given up)",
        args.orders,
        sent.accepted.len(),
        sent.rejected.len()
    );
    println!("kills              {} ({:?})", kills.kills, kills.by_target);
    println!(
        "recoveries         {} (slowest {} ms to ready)",
        kills.recoveries, kills.slowest_recovery_ms
    );
    println!(
        "run time           {total_s:.1} s under faults; quiescent {settle_s:.1} s after the last fault"
    );
    println!("stuck              {}", verdict.stuck.len());
    println!("lost               {}", verdict.lost.len());
    println!("unknown orders     {}", verdict.unknown.len());
    println!(
        "unexpected         {unexpected} (outcome not the one its kind must have; not a violation)"
    );
    println!("violations         {violations}");
    println!("{}", verdict.report());
    if late_violations > 0 {
        println!("audit 3 s later:\n{}", again.report());
    }
    for p in &kills.problems {
        println!("PROBLEM {p}");
    }
    for r in sent.rejected.iter().take(10) {
        println!("gave up on POST: {r}");
    }
    let result = json!({
        "seed": seed,
        "orders": args.orders,
        "accepted": sent.accepted.len(),
        "post_given_up": sent.rejected.len(),
        "post_retries": sent.retries,
        "kills": kills.kills,
        "kills_by_target": kills.by_target,
        "recoveries": kills.recoveries,
        "problems": kills.problems,
        "completed": verdict.audit.completed,
        "failed": verdict.audit.failed,
        "failed_by_reason": verdict.audit.failed_by_reason,
        "stuck": verdict.stuck.len(),
        "lost": verdict.lost.len(),
        "unknown": verdict.unknown.len(),
        "unexpected": verdict.unexpected,
        "audit_violations": verdict.audit.violations,
        "late_audit_violations": again.violations,
        "violations": violations,
        "run_s": (total_s * 10.0).round() / 10.0,
        "quiescent_after_s": (settle_s * 10.0).round() / 10.0,
    });
    println!("RESULT {result}");
    Ok(violations == 0)
}
