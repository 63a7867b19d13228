//! loadgen: drives a running shop through its public API (by default the gateway on :8080) and
//! measures completed sagas per second and order latency.
//!
//! It signs up `--users` users in parallel (Argon2 makes that the slow part), tops up their wallets,
//! then sends orders of a `--mix` of kinds (see `tools::workload`), either open-loop at a fixed
//! `--rate` or closed-loop with a fixed `--concurrency` in flight, for `--duration` or `--count`.
//!
//! Latency = from sending the POST to observing the final state. The POST itself waits for it,
//! `POST /api/orders/?wait_ms=N` (N up to 5000, `shop_client::LONG_POLL`), which the order API
//! answers as soon as the mediator signals the order final; an order not final by then is
//! followed with long polls, GET /api/orders/{id}?wait_ms=N (`shop_client::ShopClient::wait_final`).
//! So a latency includes that signal's trip (Redis pub/sub, one re-read of the order) but no
//! polling interval, and an order normally costs one request. `--two-requests` places the order
//! with a plain POST and waits with a long-poll GET, as a client of the original API does: two
//! requests. The requests per order are reported (`requests_per_order`, POST included); more than
//! the least means waits that ended without the order final (a saga slower than 5 s, a lost
//! signal) or retried errors.
//!
//! An order whose outcome is not what its kind must give (a `success` that failed, a failure with
//! the wrong reason) counts as an error, like a failed request. The last line on stdout is
//! `RESULT {json}` with every figure.

use anyhow::{Context, Result, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::json;
use shop_common::{
    api::{CreateOrder, Status},
    domain::Money,
};
use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};
use tools::{
    client::{Endpoints, ShopClient, User, Waited},
    workload::{self, Catalog, Mix, OrderKind, Planner, Population},
};

#[derive(Parser, Debug)]
#[command(about = "Load generator for the saga shop: completed sagas per second and latency")]
struct Args {
    /// Base URL of the shop (the gateway).
    #[arg(long, env = "BASE_URL", default_value = "http://127.0.0.1:8080")]
    base_url: String,
    /// Users to create (10% of them, at least one, are "poor" when the mix has no-money orders).
    #[arg(long, default_value_t = 50)]
    users: usize,
    /// Sign-ups in parallel.
    #[arg(long, default_value_t = 16)]
    signup_concurrency: usize,
    /// Open loop: start this many orders per second, whatever the latency.
    #[arg(long, conflicts_with = "concurrency")]
    rate: Option<f64>,
    /// Closed loop: keep this many orders in flight (default 64 when --rate is not given).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Stop sending after this long (default 30s unless --count is given).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Stop after sending this many orders.
    #[arg(long)]
    count: Option<u64>,
    /// Weights of the order kinds: success, no-money, no-item, no-slot.
    #[arg(long, default_value_t = Mix::default())]
    mix: Mix,
    /// Amount of each order that should be charged (currency units, 2 decimals at most).
    #[arg(long, default_value = "1.00")]
    amount: String,
    /// An order not final after this long counts as an error (timeout).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    order_timeout: Duration,
    /// Per-request HTTP timeout.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    request_timeout: Duration,
    /// Open loop only: never more than this many orders in flight (the excess waits).
    #[arg(long, default_value_t = 20_000)]
    max_in_flight: u64,
    /// Seed of the order mix (random by default).
    #[arg(long)]
    seed: Option<u64>,
    /// Exit with status 1 when any error (failed request, timeout, unexpected outcome) happened.
    #[arg(long)]
    strict: bool,
    /// Place each order with a plain POST, then wait with a long-poll GET (two requests, as a
    /// client of the original API does), instead of one POST that waits (`?wait_ms=`).
    #[arg(long)]
    two_requests: bool,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    errors: AtomicU64,
    in_flight: AtomicU64,
    /// HTTP requests of the orders that reached a final state: their POST and any long-poll GETs.
    requests: AtomicU64,
}

struct Recorder {
    latency_us: Histogram<u64>,
    failed_by_reason: BTreeMap<String, u64>,
    errors_by_kind: BTreeMap<String, u64>,
    unexpected_examples: Vec<String>,
    last_final: Option<Instant>,
}

struct Run {
    client: ShopClient,
    mix: Mix,
    planner: Planner,
    order_timeout: Duration,
    /// `--two-requests`.
    two_requests: bool,
    counters: Counters,
    recorder: Mutex<Recorder>,
}

impl Run {
    fn record<T>(&self, f: impl FnOnce(&mut Recorder) -> T) -> T {
        // Only plain data behind the lock: a poisoned one is still consistent.
        let mut r = self.recorder.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut r)
    }

    fn error(&self, kind: String, example: Option<String>) {
        self.counters.errors.fetch_add(1, Relaxed);
        self.record(|r| {
            *r.errors_by_kind.entry(kind).or_default() += 1;
            if let Some(e) = example
                && r.unexpected_examples.len() < 10
            {
                r.unexpected_examples.push(e);
            }
        });
    }

    /// One order, from POST to its final state.
    async fn one(&self, kind: OrderKind, user: User, order: CreateOrder) {
        let c = &self.counters;
        c.sent.fetch_add(1, Relaxed);
        c.in_flight.fetch_add(1, Relaxed);
        let started = Instant::now();
        let wait_in_post = if self.two_requests {
            Duration::ZERO
        } else {
            self.client.longest_poll()
        };
        let placed = self
            .client
            .create_order_waiting(&user, &order, None, wait_in_post)
            .await;
        match placed {
            Err(e) => self.error(format!("post-{}", e.kind()), Some(e.to_string())),
            Ok((_, placed)) => {
                let waited = if placed.status.is_final() {
                    Ok(Waited {
                        order: placed,
                        requests: 0,
                        transient_errors: 0,
                    })
                } else {
                    self.client
                        .wait_final(&user, placed.id, self.order_timeout)
                        .await
                };
                match waited {
                    Err(e) => self.error(format!("wait-{}", e.kind()), Some(e.to_string())),
                    Ok(w) => {
                        let latency = started.elapsed();
                        c.requests.fetch_add(1 + u64::from(w.requests), Relaxed);
                        let completed = w.order.status == Status::Completed;
                        if completed {
                            c.completed.fetch_add(1, Relaxed);
                        } else {
                            c.failed.fetch_add(1, Relaxed);
                        }
                        self.record(|r| {
                            r.latency_us
                                .saturating_record(latency.as_micros().max(1) as u64);
                            r.last_final = Some(Instant::now());
                            if !completed {
                                let reason =
                                    w.order.reason.clone().unwrap_or_else(|| "(none)".into());
                                *r.failed_by_reason.entry(reason).or_default() += 1;
                            }
                        });
                        if let Err(why) = kind.check(&w.order) {
                            self.error(format!("unexpected-{}", kind.name()), Some(why));
                        }
                    }
                }
            }
        }
        c.in_flight.fetch_sub(1, Relaxed);
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let amount_cents = Money::parse_positive(&args.amount)
        .map_err(|e| anyhow::anyhow!("--amount {}: {e}", args.amount))?
        .minor();
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("--rate must be a positive number");
    }
    if args.users == 0 {
        bail!("--users must be at least 1");
    }
    let duration = match (args.duration, args.count) {
        (None, None) => Some(Duration::from_secs(30)),
        (d, _) => d,
    };
    let concurrency = args.concurrency.unwrap_or(64).max(1);
    let client = ShopClient::new(Endpoints::gateway(&args.base_url), args.request_timeout)?;
    let seed = args.seed.unwrap_or_else(|| rand::rng().random());

    let catalog = Catalog::fetch(&client)
        .await
        .with_context(|| format!("is the shop running at {}?", args.base_url))?;
    let poor_n = if args.mix.weight(OrderKind::NoMoney) > 0 {
        (args.users / 10).max(1).min(args.users.saturating_sub(1))
    } else {
        0
    };
    let rich_n = args.users - poor_n;
    let prefix = format!("lg{:08x}u", rand::rng().random::<u32>());
    eprintln!(
        "loadgen: {} — signing up {} users ({rich_n} rich, {poor_n} poor), {} at a time",
        args.base_url, args.users, args.signup_concurrency
    );
    let t = Instant::now();
    let mut users = workload::register_users(
        &client,
        &prefix,
        args.users,
        args.signup_concurrency,
        "load-test-password",
    )
    .await
    .context("signing up the users")?;
    eprintln!(
        "loadgen: {} users ready in {:.1}s",
        users.len(),
        t.elapsed().as_secs_f64()
    );
    let poor = users.split_off(rich_n);
    let rich = users;

    // Money for every order that holds some (successes, and no-item/no-slot until compensated).
    let expected_orders = match (args.count, duration, args.rate) {
        (Some(n), _, _) => n as f64,
        (None, Some(d), Some(rate)) => rate * d.as_secs_f64(),
        (None, Some(d), None) => 5000.0 * d.as_secs_f64(),
        (None, None, _) => 0.0,
    };
    let charged_share = 1.0 - args.mix.share(OrderKind::NoMoney);
    let per_user = (expected_orders * charged_share / rich_n as f64 * 1.5).ceil() as i64 + 10;
    let top_up = per_user.saturating_mul(amount_cents);
    let t = Instant::now();
    workload::top_up(&client, &rich, top_up, args.signup_concurrency)
        .await
        .context("depositing into the wallets")?;
    eprintln!(
        "loadgen: deposited {} into each of {rich_n} wallets in {:.1}s",
        Money::from_minor(top_up),
        t.elapsed().as_secs_f64()
    );
    let successes = expected_orders * args.mix.share(OrderKind::Success);
    if successes > catalog.total_stock as f64 || successes > catalog.total_couriers as f64 {
        eprintln!(
            "loadgen: WARNING: ~{successes:.0} successful orders expected but only {} items in \
             stock and {} couriers free: later orders will fail (start the shop with a larger \
             ITEM_STOCK / SLOT_CAPACITY)",
            catalog.total_stock, catalog.total_couriers
        );
    }

    let run = Arc::new(Run {
        client,
        mix: args.mix.clone(),
        planner: Planner {
            catalog,
            users: Population { rich, poor },
            amount_cents: (amount_cents, amount_cents),
        },
        order_timeout: args.order_timeout,
        two_requests: args.two_requests,
        counters: Counters::default(),
        recorder: Mutex::new(Recorder {
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .context("creating the latency histogram")?,
            failed_by_reason: BTreeMap::new(),
            errors_by_kind: BTreeMap::new(),
            unexpected_examples: Vec::new(),
            last_final: None,
        }),
    });

    let mode = match args.rate {
        Some(rate) => format!("rate {rate}/s"),
        None => format!("concurrency {concurrency}"),
    };
    let limit = match (duration, args.count) {
        (Some(d), Some(n)) => format!("{d:?} or {n} orders"),
        (Some(d), None) => format!("{d:?}"),
        (None, Some(n)) => format!("{n} orders"),
        (None, None) => "ever".into(),
    };
    eprintln!(
        "loadgen: sending orders ({mode}, mix {}, for {limit}, seed {seed})",
        args.mix
    );

    let started = Instant::now();
    let stop_at = duration.map(|d| started + d);
    let count = args.count;
    let sending = Arc::new(AtomicBool::new(true));
    let progress = tokio::spawn(progress(run.clone(), started, sending.clone()));

    let may_send = move |sent: u64| {
        count.is_none_or(|n| sent < n) && stop_at.is_none_or(|t| Instant::now() < t)
    };
    match args.rate {
        None => {
            let tickets = Arc::new(AtomicU64::new(0));
            let mut workers = tokio::task::JoinSet::new();
            for w in 0..concurrency {
                let run = run.clone();
                let tickets = tickets.clone();
                let mut rng = StdRng::seed_from_u64(seed.wrapping_add(w as u64));
                workers.spawn(async move {
                    while may_send(tickets.fetch_add(1, Relaxed)) {
                        let kind = run.mix.pick(&mut rng);
                        let (user, order) = run.planner.plan(kind, &mut rng);
                        run.one(kind, user, order).await;
                    }
                });
            }
            while workers.join_next().await.is_some() {}
        }
        Some(rate) => {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut tasks = tokio::task::JoinSet::new();
            let interval = Duration::from_secs_f64(1.0 / rate);
            let mut i: u32 = 0;
            loop {
                let due = started + interval * i;
                tokio::time::sleep_until(due.into()).await;
                if !may_send(u64::from(i)) {
                    break;
                }
                while run.counters.in_flight.load(Relaxed) >= args.max_in_flight {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let kind = args.mix.pick(&mut rng);
                let (user, order) = run.planner.plan(kind, &mut rng);
                let r = run.clone();
                tasks.spawn(async move { r.one(kind, user, order).await });
                // Reap finished tasks as we go, so the set stays small.
                while tasks.try_join_next().is_some() {}
                i = i.saturating_add(1);
            }
            while tasks.join_next().await.is_some() {}
        }
    }
    sending.store(false, Relaxed);
    let _ = progress.await;

    let failed_run = report(&run, &args, &mode, started, seed)?;
    if args.strict && failed_run {
        std::process::exit(1);
    }
    Ok(())
}

async fn progress(run: Arc<Run>, started: Instant, sending: Arc<AtomicBool>) {
    let c = &run.counters;
    let mut last_final = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let done = c.completed.load(Relaxed) + c.failed.load(Relaxed);
        eprintln!(
            "[{:6.1}s] sent {:>7}  completed {:>7}  failed {:>6}  errors {:>5}  in flight {:>5}  {:>7.1} sagas/s",
            started.elapsed().as_secs_f64(),
            c.sent.load(Relaxed),
            c.completed.load(Relaxed),
            c.failed.load(Relaxed),
            c.errors.load(Relaxed),
            c.in_flight.load(Relaxed),
            (done - last_final) as f64
        );
        last_final = done;
        if !sending.load(Relaxed) && c.in_flight.load(Relaxed) == 0 {
            return;
        }
    }
}

/// Prints the summary and the RESULT line; true if any error happened.
fn report(run: &Run, args: &Args, mode: &str, started: Instant, seed: u64) -> Result<bool> {
    let c = &run.counters;
    let r = run.recorder.lock().unwrap_or_else(|e| e.into_inner());
    let end = r.last_final.unwrap_or_else(Instant::now);
    let wall = end
        .saturating_duration_since(started)
        .as_secs_f64()
        .max(1e-9);
    let (sent, completed, failed, errors) = (
        c.sent.load(Relaxed),
        c.completed.load(Relaxed),
        c.failed.load(Relaxed),
        c.errors.load(Relaxed),
    );
    let finals = completed + failed;
    let ms = |q: f64| r.latency_us.value_at_quantile(q) as f64 / 1000.0;
    let unexpected: u64 = r
        .errors_by_kind
        .iter()
        .filter(|(k, _)| k.starts_with("unexpected-"))
        .map(|(_, n)| n)
        .sum();
    println!("== loadgen result ({mode}, mix {}) ==", args.mix);
    println!("orders sent        {sent}");
    println!("completed          {completed}");
    println!("failed             {failed}");
    for (reason, n) in &r.failed_by_reason {
        println!("  {n:>8}  {reason}");
    }
    println!("errors             {errors} (unexpected outcomes {unexpected})");
    for (kind, n) in &r.errors_by_kind {
        println!("  {n:>8}  {kind}");
    }
    for e in &r.unexpected_examples {
        println!("  e.g. {e}");
    }
    println!("wall time          {wall:.2} s");
    println!(
        "sagas/s            {:.1} (final states / wall time)",
        finals as f64 / wall
    );
    println!(
        "latency ms         p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  (POST -> final state seen)",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        r.latency_us.max() as f64 / 1000.0
    );
    let requests_per_order = c.requests.load(Relaxed) as f64 / (finals.max(1)) as f64;
    println!(
        "requests per order {requests_per_order:.2} ({})",
        if args.two_requests {
            "the POST + long-poll GET /api/orders/{id}?wait_ms=; 2 is the least"
        } else {
            "the POST ?wait_ms=, then long-poll GETs if not final; 1 is the least"
        }
    );
    let result = json!({
        "base_url": args.base_url,
        "mode": if args.rate.is_some() { "rate" } else { "concurrency" },
        "rate": args.rate,
        "concurrency": if args.rate.is_some() { None } else { Some(args.concurrency.unwrap_or(64)) },
        "users": args.users,
        "mix": args.mix.to_string(),
        "seed": seed,
        "sent": sent,
        "completed": completed,
        "failed": failed,
        "failed_by_reason": r.failed_by_reason,
        "errors": errors,
        "unexpected_outcomes": unexpected,
        "errors_by_kind": r.errors_by_kind,
        "wall_s": (wall * 1000.0).round() / 1000.0,
        "sagas_per_s": ((finals as f64 / wall) * 10.0).round() / 10.0,
        "latency_ms": {
            "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99),
            "max": r.latency_us.max() as f64 / 1000.0,
            "mean": (r.latency_us.mean() / 10.0).round() / 100.0,
        },
        "requests_per_order": (requests_per_order * 100.0).round() / 100.0,
        "two_requests": args.two_requests,
    });
    println!("RESULT {result}");
    Ok(errors > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The duration flags take what `shop bench` passes (`BENCH_DURATION`, default 30s).
    #[test]
    fn duration_flags_take_human_durations() {
        let args = Args::try_parse_from([
            "loadgen",
            "--duration",
            "30s",
            "--request-timeout",
            "1500ms",
        ])
        .unwrap();
        assert_eq!(args.duration, Some(Duration::from_secs(30)));
        assert_eq!(args.request_timeout, Duration::from_millis(1500));
        assert_eq!(args.order_timeout, Duration::from_secs(60));
        assert!(Args::try_parse_from(["loadgen", "--duration", "-1s"]).is_err());
    }
}
