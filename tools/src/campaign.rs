//! Fault campaigns against a [`Stack`]: what the crash tests and the `chaos` tool share.
//!
//! 1. [`prepare`]: sign up users (rich and poor, see `workload`), top up the rich ones, read the
//!    catalog;
//! 2. [`send_orders`]: POST a mixed stream of orders, each with its own Idempotency-Key and retried
//!    while the order API is down (only accepted POSTs count; a retried POST that was in fact
//!    accepted the first time returns the same order);
//! 3. meanwhile [`kill_loop`]: `kill -9` processes at random moments and restart them after a
//!    random delay, counting kills and recoveries;
//! 4. [`wait_quiescent`]: every order final within a bound after the faults stop;
//! 5. [`verify`]: the conservation audit, plus what only the client knows: no accepted order
//!    lost, no order created twice, and each order ended as its kind must.

use crate::{
    audit::{self, Audit, Baseline, Dbs, Known, OrderRow, SentOrder},
    client::{ShopClient, User},
    stack::Stack,
    workload::{self, Catalog, Mix, OrderKind, Planner, Population},
};
use anyhow::{Context, Result};
use futures::{StreamExt, stream, stream::FuturesUnordered};
use order_store::db::{CANCELLED_REASON, Status};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;
use shop_common::api::CreateOrder;
use sqlx::PgPool;
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    time::{Duration, Instant},
};
use time::OffsetDateTime;
use uuid::Uuid;

/// Users and money for a campaign.
#[derive(Debug, Clone)]
pub struct Setup {
    pub rich: usize,
    pub poor: usize,
    /// Deposited into every rich wallet (cents).
    pub deposit_cents: i64,
    /// Amounts of orders meant to be charged (cents, inclusive).
    pub amount_cents: (i64, i64),
}

pub async fn prepare(client: &ShopClient, setup: &Setup, prefix: &str) -> Result<Planner> {
    let users = workload::register_users(
        client,
        prefix,
        setup.rich + setup.poor,
        8,
        "campaign-password",
    )
    .await
    .context("signing up the campaign's users")?;
    let (rich, poor) = users.split_at(setup.rich);
    if setup.deposit_cents > 0 {
        workload::top_up(client, rich, setup.deposit_cents, 8)
            .await
            .context("topping up the wallets")?;
    }
    let catalog = Catalog::fetch(client).await?;
    Ok(Planner {
        catalog,
        users: Population {
            rich: rich.to_vec(),
            poor: poor.to_vec(),
        },
        amount_cents: setup.amount_cents,
    })
}

/// What the campaign's users deposited, in cents (each rich user `setup.deposit_cents`, acknowledged
/// by billing; the poor ones nothing): the audit's `deposits` check compares it with the deposits
/// table.
pub fn deposits(setup: &Setup, planner: &Planner) -> HashMap<String, i64> {
    let rich = planner.users.rich.iter().map(|u| (u, setup.deposit_cents));
    let poor = planner.users.poor.iter().map(|u| (u, 0));
    rich.chain(poor)
        .filter(|(_, cents)| *cents > 0)
        .map(|(u, cents)| (u.username.clone(), cents))
        .collect()
}

/// One accepted order: what was asked and the id the API gave it.
#[derive(Debug, Clone)]
pub struct Sent {
    pub kind: OrderKind,
    pub username: String,
    pub id: Uuid,
    pub key: String,
    /// What the POST asked for (the audit compares the stored order with it).
    pub amount_cents: i64,
    pub item: i64,
    pub slot: String,
    /// The customer's cancel, when one was sent, and its answer.
    pub cancel: Option<CancelAnswer>,
}

/// What a cancel (`POST /api/orders/{id}/cancel`, retried while the order API is down) got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelAnswer {
    /// 202: the order must end `cancelled`.
    Accepted,
    /// 409 `order_final`: the order had failed first.
    Refused,
    /// No answer within the retry window: either end is right.
    Unknown,
}

impl CancelAnswer {
    /// Whether `status` (with `reason`) is the end this answer allows; `kind_ok` is whether it
    /// is the end of the order's kind.
    pub fn allows(self, status: &str, reason: Option<&str>, kind_ok: bool) -> bool {
        let cancelled = status == "cancelled" && reason == Some(CANCELLED_REASON);
        match self {
            CancelAnswer::Accepted => cancelled,
            CancelAnswer::Refused => status == "failed" && kind_ok,
            CancelAnswer::Unknown => cancelled || kind_ok,
        }
    }
}

/// Sends the customer's cancel of `id`, retried on transient failures until `timeout`; with the
/// answer, why the last failed attempt failed.
async fn cancel(
    client: &ShopClient,
    user: &User,
    id: Uuid,
    timeout: Duration,
) -> (CancelAnswer, Option<String>) {
    let deadline = Instant::now() + timeout;
    let mut last_failure = None;
    loop {
        let answer = match client.cancel_order(user, id).await {
            Ok(_) => CancelAnswer::Accepted,
            Err(e) if e.status() == Some(reqwest::StatusCode::CONFLICT) => CancelAnswer::Refused,
            Err(e) if (e.is_transient() || e.status().is_none()) && Instant::now() < deadline => {
                last_failure = Some(e.with_causes());
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(_) => CancelAnswer::Unknown,
        };
        return (answer, last_failure);
    }
}

#[derive(Debug, Default)]
pub struct SendReport {
    pub accepted: Vec<Sent>,
    /// POSTs given up on (not accepted within the retry window), with why.
    pub rejected: Vec<String>,
    /// POST attempts beyond the first, over all orders.
    pub retries: u64,
    /// POSTs and cancels (with their retries) that took [`SLOW_REQUEST`] or longer: a customer
    /// kept waiting. Faults explain some (a killed order API is retried until it is back); an
    /// order API that holds a request without answering shows here first.
    pub slow: Vec<SlowRequest>,
}

/// A POST or cancel this slow is reported in [`SendReport::slow`].
pub const SLOW_REQUEST: Duration = Duration::from_secs(3);

/// One request of [`SendReport::slow`].
#[derive(Debug, Clone, Serialize)]
pub struct SlowRequest {
    /// `POST` or `cancel`.
    pub request: &'static str,
    /// The order's Idempotency-Key.
    pub key: String,
    #[serde(with = "time::serde::rfc3339")]
    pub sent_at: OffsetDateTime,
    pub took_ms: u128,
    /// How it ended (`accepted`, `refused`, `unknown` or the error), with the failure of the
    /// attempt before the last.
    pub outcome: String,
}

impl SlowRequest {
    /// Records the request started at `started` (and `sent_at`) if it was slow, and says so on
    /// stderr at once (to be read beside the services' logs).
    fn note(
        slow: &std::sync::Mutex<Vec<SlowRequest>>,
        request: &'static str,
        key: &str,
        (started, sent_at): (Instant, OffsetDateTime),
        outcome: impl FnOnce() -> String,
    ) {
        let took = started.elapsed();
        if took < SLOW_REQUEST {
            return;
        }
        let slow_request = SlowRequest {
            request,
            key: key.to_owned(),
            sent_at,
            took_ms: took.as_millis(),
            outcome: outcome(),
        };
        eprintln!(
            "slow {request} {key}: sent {sent_at}, {:.2}s, {}",
            took.as_secs_f64(),
            slow_request.outcome
        );
        slow.lock().expect("slow list").push(slow_request);
    }
}

/// How to send.
#[derive(Debug, Clone)]
pub struct Sending {
    pub orders: usize,
    /// POSTs in flight at once.
    pub concurrency: usize,
    /// Pause of each sender between two POSTs (spreads the orders over time).
    pub pause: Duration,
    /// How long one order's POST is retried while the order API is down.
    pub post_timeout: Duration,
    /// At most this many accepted orders not final yet (needs the `finals` counter of
    /// [`send_orders`], kept up to date by [`track_finals`]): like that many clients each waiting
    /// for their order. A sender waits at most 30 s for room, so stuck orders cannot stall a run.
    pub max_unfinished: Option<u64>,
    /// The share of orders the customer cancels, each at a random moment up to
    /// [`CANCEL_WITHIN`] after its POST was answered: often mid-saga, sometimes after it.
    pub cancel_share: f64,
    pub seed: u64,
}

/// A cancelled order's cancel comes this long after its POST at most.
pub const CANCEL_WITHIN: Duration = Duration::from_millis(500);

/// Sends `sending.orders` orders of `mix`; `progress` counts accepted ones (the kill loop may pace
/// itself on it); `finals`, if given, is the number of final orders (for `max_unfinished`).
pub async fn send_orders(
    client: &ShopClient,
    planner: &Planner,
    mix: &Mix,
    sending: &Sending,
    progress: &AtomicU64,
    finals: Option<&AtomicU64>,
) -> SendReport {
    let mut rng = StdRng::seed_from_u64(sending.seed);
    let run = format!("{:08x}", rng.random::<u32>());
    let plans: Vec<(OrderKind, User, CreateOrder, Option<Duration>)> = (0..sending.orders)
        .map(|_| {
            let kind = mix.pick(&mut rng);
            let (user, order) = planner.plan(kind, &mut rng);
            let cancel_after = rng
                .random_bool(sending.cancel_share.clamp(0.0, 1.0))
                .then(|| between(&mut rng, (Duration::ZERO, CANCEL_WITHIN)));
            (kind, user, order, cancel_after)
        })
        .collect();
    let slow = std::sync::Mutex::new(Vec::new());
    let slow = &slow;
    let results: Vec<Result<(Sent, u32), String>> = stream::iter(plans.into_iter().enumerate())
        .map(|(i, (kind, user, order, cancel_after))| {
            let key = format!("campaign-{run}-{i}");
            async move {
                if let (Some(limit), Some(finals)) = (sending.max_unfinished, finals) {
                    let since = Instant::now();
                    while progress.load(Relaxed).saturating_sub(finals.load(Relaxed)) >= limit
                        && since.elapsed() < Duration::from_secs(30)
                    {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                let started = (Instant::now(), OffsetDateTime::now_utc());
                let r = client
                    .create_order_retrying(&user, &order, &key, sending.post_timeout)
                    .await;
                SlowRequest::note(slow, "POST", &key, started, || match &r {
                    Ok(a) => format!(
                        "accepted after {} attempts (the one before: {})",
                        a.attempts,
                        a.last_failure.as_deref().unwrap_or("-")
                    ),
                    Err(e) => e.to_string(),
                });
                if !sending.pause.is_zero() {
                    tokio::time::sleep(sending.pause).await;
                }
                match r {
                    Ok(accepted) => {
                        progress.fetch_add(1, Relaxed);
                        let id = accepted.order.id;
                        let cancel = match cancel_after {
                            Some(after) => {
                                tokio::time::sleep(after).await;
                                let started = (Instant::now(), OffsetDateTime::now_utc());
                                let (answer, last_failure) =
                                    cancel(client, &user, id, sending.post_timeout).await;
                                SlowRequest::note(slow, "cancel", &key, started, || {
                                    format!(
                                        "{} (the attempt before: {})",
                                        format!("{answer:?}").to_lowercase(),
                                        last_failure.as_deref().unwrap_or("-")
                                    )
                                });
                                Some(answer)
                            }
                            None => None,
                        };
                        Ok((
                            Sent {
                                kind,
                                username: user.username.clone(),
                                id,
                                key,
                                amount_cents: order.amount.minor(),
                                item: order.details.item.get(),
                                slot: order.details.slot.to_string(),
                                cancel,
                            },
                            accepted.attempts,
                        ))
                    }
                    Err(e) => Err(format!("{kind} order {key}: {e}")),
                }
            }
        })
        .buffer_unordered(sending.concurrency.max(1))
        .collect()
        .await;
    let mut report = SendReport {
        slow: std::mem::take(&mut *slow.lock().expect("slow list")),
        ..SendReport::default()
    };
    for r in results {
        match r {
            Ok((sent, attempts)) => {
                report.retries += u64::from(attempts.saturating_sub(1));
                report.accepted.push(sent);
            }
            Err(e) => report.rejected.push(e),
        }
    }
    report
}

/// Keeps `finals` at the number of final orders (polling every `every`) until `done` is set.
pub async fn track_finals(db: &PgPool, finals: &AtomicU64, done: &AtomicBool, every: Duration) {
    while !done.load(Relaxed) {
        finals.store(final_count(db).await, Relaxed);
        tokio::time::sleep(every).await;
    }
}

/// What to kill, how often and for how long.
#[derive(Debug, Clone)]
pub struct Faults {
    pub kills: usize,
    /// Process names to pick from (uniformly), e.g. `["mediator"]`.
    pub targets: Vec<String>,
    /// Random pause before each kill.
    pub gap: (Duration, Duration),
    /// Random time a killed process stays down before it is restarted.
    pub down: (Duration, Duration),
    /// When set, each kill also waits for progress (see [`Pace`]), which spreads the kills over
    /// the run whatever its speed; `total` is the number of orders of the run.
    pub pace: Option<(Pace, u64)>,
    pub seed: u64,
    /// At most this many processes down at once (restarts overlap with the next kills).
    pub max_down: usize,
    /// Print each kill and recovery on stderr.
    pub verbose: bool,
    /// With a nemesis: its store-restart gate (held shared from each kill to its restart's
    /// readiness) and the processes it holds (never killed meanwhile).
    pub shared: Option<crate::nemesis::Shared>,
}

/// What a kill waits for, besides its random gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Kill `i` (0-based) waits until `(i + 1) / (kills + 1)` of the orders were accepted (the
    /// `progress` counter of [`send_orders`]).
    Accepted,
    /// Kill `i` waits until `(i + 1) / (kills + 1)` of the orders are final (read from the orders
    /// database given to [`kill_loop`]), or until no order became final for 20 s (a stall the
    /// kills must not wait on forever).
    Final,
    /// Each kill waits until a random `min..=max` more orders are final than at the previous kill
    /// (read from the orders database given to [`kill_loop`]): every kill hits a mediator that has
    /// been working since its restart. No wait once every order is final.
    FinalStep { min: u64, max: u64 },
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct KillReport {
    pub kills: usize,
    pub recoveries: usize,
    /// Kills per process name.
    pub by_target: BTreeMap<String, usize>,
    /// Restarts that did not get ready, and processes found dead that nobody killed.
    pub problems: Vec<String>,
    /// Longest time from a restart's spawn to ready.
    pub slowest_recovery_ms: u128,
    /// Orders not final at the moment of each kill (when the loop was given the orders database).
    pub unfinished_at_kills: Vec<i64>,
    /// Kills made when no candidate held anything for [`VICTIM_WAIT`] (victims are drawn among
    /// those holding something): a kill that tested nothing. See [`victim_holds`].
    pub idle_kills: Vec<String>,
}

/// How long a kill waits for some candidate to hold something before it kills one anyway (and
/// reports an idle kill).
const VICTIM_WAIT: Duration = Duration::from_secs(10);

/// What `victim` holds that its death puts at risk: a mediator, the stream entries it owns
/// (read from `XPENDING`) or, owning none, the sagas it is running (its
/// `mediator_sagas_in_flight`); any other service, the orders not yet final (the sagas it may be
/// serving). `None` when that cannot be read (a store down): the kill is not held against.
pub async fn victim_holds(stack: &Stack, victim: &str, orders_db: Option<&PgPool>) -> Option<u64> {
    if stack.mediators().iter().any(|m| m == victim) {
        let pending = stack.pending_per_consumer().await.ok()?;
        let own = pending.get(victim).copied().unwrap_or(0);
        if own > 0 {
            return Some(own);
        }
        // Entries taken over while it was paused (or lost from the group with a Redis restart)
        // are no longer its own, but it still runs their sagas, racing the new owners: killing
        // it then is a crash mid-saga all the same.
        return stack.sagas_in_flight(victim).await.ok();
    }
    let unfinished = audit::not_final(orders_db?).await.ok()?;
    Some(unfinished.max(0) as u64)
}

/// Waits, at most [`VICTIM_WAIT`] or until `stop`, for some of `candidates` to hold something;
/// returns those that do at the end, or, when none does, the candidates whose holdings could not
/// be read (`victim_holds` gave `None`: not held against). Empty: every candidate held nothing
/// for the whole wait.
async fn holders_among<'a>(
    stack: &Stack,
    candidates: &[&'a String],
    orders_db: Option<&PgPool>,
    stop: &AtomicBool,
) -> Vec<&'a String> {
    let deadline = Instant::now() + VICTIM_WAIT;
    loop {
        let mut holding = Vec::new();
        let mut unknown = Vec::new();
        for &candidate in candidates {
            match victim_holds(stack, candidate, orders_db).await {
                Some(0) => {}
                Some(_) => holding.push(candidate),
                None => unknown.push(candidate),
            }
        }
        if !holding.is_empty() {
            return holding;
        }
        if !unknown.is_empty() || Instant::now() >= deadline || stop.load(Relaxed) {
            return unknown;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Kills and restarts per `faults` until done, or until `stop` is set; returns once everything it
/// killed is back. Restarts overlap with the next kills (at most `faults.max_down` processes are
/// down at once), so the kills keep coming while something is still restarting. Processes that
/// die on their own are reported and restarted.
pub async fn kill_loop(stack: &Stack, faults: &Faults, watch: Watch<'_>) -> KillReport {
    let Watch {
        stop, orders_db, ..
    } = watch;
    let mut rng = StdRng::seed_from_u64(faults.seed);
    let mut finals_at_last_kill = 0;
    let mut r = Restarting {
        restarts: FuturesUnordered::new(),
        report: KillReport::default(),
        down: HashSet::new(),
        faults,
    };
    for i in 0..faults.kills {
        let step = match faults.pace {
            Some((Pace::FinalStep { min, max }, _)) => rng.random_range(min..=max.max(min)),
            _ => 0,
        };
        let gap = between(&mut rng, faults.gap);
        let turn = Turn {
            index: i as u64,
            faults,
            watch,
            step_due: finals_at_last_kill + step,
        };
        r.meanwhile(turn.wait(gap)).await;
        if stop.load(Relaxed) {
            break;
        }
        // Room to kill something not already down.
        while r.down.len() >= faults.max_down.max(1)
            || faults.targets.iter().all(|t| r.down.contains(t))
        {
            if !r.next_back().await {
                break;
            }
        }
        restart_crashed(stack, &mut r.report).await;
        // No kill while a store restarts: the restart would then fail for want of its store.
        // The restarts in flight hold the gate too (a store restart waiting for them waits
        // for this wait to drive them).
        let gate = match &faults.shared {
            Some(shared) => Some(r.meanwhile(shared.gate.clone().read_owned()).await),
            None => None,
        };
        let held: HashSet<String> = match &faults.shared {
            Some(shared) => shared
                .busy
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            None => HashSet::new(),
        };
        let candidates: Vec<&String> = faults
            .targets
            .iter()
            .filter(|t| !r.down.contains(*t) && !held.contains(*t))
            .collect();
        if candidates.is_empty() {
            continue;
        }
        // The victim is drawn among the candidates holding something: a mediator idle between
        // two sagas is no test of a crash mid-saga, while its busy sibling is.
        let holders = r
            .meanwhile(holders_among(stack, &candidates, orders_db, stop))
            .await;
        if stop.load(Relaxed) {
            break;
        }
        let target = if holders.is_empty() {
            let target = candidates[rng.random_range(0..candidates.len())].clone();
            r.report.idle_kills.push(target.clone());
            target
        } else {
            holders[rng.random_range(0..holders.len())].clone()
        };
        if let Some(db) = orders_db {
            let (unfinished, finals) = r
                .meanwhile(async { (audit::not_final(db).await, final_count(db).await) })
                .await;
            if let Ok(n) = unfinished {
                r.report.unfinished_at_kills.push(n);
            }
            finals_at_last_kill = finals;
        }
        if let Err(e) = r.meanwhile(stack.kill9(&target)).await {
            r.report.problems.push(format!("kill -9 {target}: {e:#}"));
            continue;
        }
        r.report.kills += 1;
        *r.report.by_target.entry(target.clone()).or_default() += 1;
        r.down.insert(target.clone());
        let downtime = between(&mut rng, faults.down);
        let kill = r.report.kills;
        r.restarts
            .push(restart_after(stack, target, kill, downtime, gate));
    }
    while r.next_back().await {}
    restart_crashed(stack, &mut r.report).await;
    r.report
}

/// The kill loop's restarts in flight, driven whatever else it waits on: a killed process must
/// come back after its downtime. (The victim search waits up to [`VICTIM_WAIT`] for a process
/// holding something; a killed order API not restarted meanwhile made sure nothing was — its
/// restart waited on the search, the search on its restart.)
struct Restarting<'a, R> {
    restarts: FuturesUnordered<R>,
    report: KillReport,
    /// Killed and not back yet.
    down: HashSet<String>,
    faults: &'a Faults,
}

impl<R: Future<Output = Restarted>> Restarting<'_, R> {
    /// `work`'s output, each restart that ends meanwhile recorded.
    async fn meanwhile<T>(&mut self, work: impl Future<Output = T>) -> T {
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                Some(done) = self.restarts.next(), if !self.restarts.is_empty() => {
                    record(&mut self.report, &mut self.down, self.faults, done);
                }
            }
        }
    }

    /// Waits for the next restart and records it; `false` when none is in flight.
    async fn next_back(&mut self) -> bool {
        match self.restarts.next().await {
            Some(done) => {
                record(&mut self.report, &mut self.down, self.faults, done);
                true
            }
            None => false,
        }
    }
}

/// A random duration in `lo..hi` (`lo` when the range is empty).
pub fn between(rng: &mut StdRng, (lo, hi): (Duration, Duration)) -> Duration {
    if hi <= lo {
        lo
    } else {
        rng.random_range(lo..hi)
    }
}

/// What the kill loop watches while it paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Watch<'a> {
    /// Orders accepted so far (for [`Pace::Accepted`]).
    pub progress: &'a AtomicU64,
    /// Set once the run is over: no more kills.
    pub stop: &'a AtomicBool,
    /// The orders database, for the paces on final orders and to pick victims that hold some.
    pub orders_db: Option<&'a PgPool>,
}

/// What one kill waits for before it comes.
struct Turn<'a> {
    index: u64,
    faults: &'a Faults,
    watch: Watch<'a>,
    /// For [`Pace::FinalStep`]: the final count to reach.
    step_due: u64,
}

impl Turn<'_> {
    async fn wait(&self, gap: Duration) {
        let stopped = || self.watch.stop.load(Relaxed);
        let kills = self.faults.kills as u64 + 1;
        match (self.faults.pace, self.watch.orders_db) {
            (Some((Pace::Accepted, total)), _) => {
                let due = total * (self.index + 1) / kills;
                while self.watch.progress.load(Relaxed) < due && !stopped() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            (Some((Pace::Final, total)), Some(db)) => {
                let due = total * (self.index + 1) / kills;
                let mut last = (final_count(db).await, Instant::now());
                while !stopped() && last.0 < due && last.1.elapsed() < Duration::from_secs(20) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let done = final_count(db).await;
                    if done > last.0 {
                        last = (done, Instant::now());
                    }
                }
            }
            (Some((Pace::FinalStep { .. }, total)), Some(db)) => {
                while !stopped() && final_count(db).await < self.step_due.min(total) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            _ => {}
        }
        let deadline = Instant::now() + gap;
        while Instant::now() < deadline && !stopped() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

struct Restarted {
    target: String,
    kill: usize,
    down: Duration,
    ready: Duration,
    result: Result<()>,
}

async fn restart_after(
    stack: &Stack,
    target: String,
    kill: usize,
    down: Duration,
    gate: Option<tokio::sync::OwnedRwLockReadGuard<()>>,
) -> Restarted {
    tokio::time::sleep(down).await;
    let t = Instant::now();
    let result = stack.start_instance(&target).await;
    drop(gate);
    Restarted {
        target,
        kill,
        down,
        ready: t.elapsed(),
        result,
    }
}

fn record(report: &mut KillReport, down: &mut HashSet<String>, faults: &Faults, r: Restarted) {
    down.remove(&r.target);
    match r.result {
        Ok(()) => {
            report.recoveries += 1;
            report.slowest_recovery_ms = report.slowest_recovery_ms.max(r.ready.as_millis());
            if faults.verbose {
                eprintln!(
                    "kill {:>3}/{}: kill -9 {}, down {} ms, ready {} ms after restart",
                    r.kill,
                    faults.kills,
                    r.target,
                    r.down.as_millis(),
                    r.ready.as_millis()
                );
            }
        }
        Err(e) => report
            .problems
            .push(format!("{} did not recover: {e:#}", r.target)),
    }
}

/// Orders in a final state (0 if the database cannot be read right now).
pub async fn final_count(db: &PgPool) -> u64 {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM orders WHERE status = ANY($1)")
        .bind(Status::finals())
        .fetch_one(db)
        .await
        .map(|n| n.max(0) as u64)
        .unwrap_or(0)
}

async fn restart_crashed(stack: &Stack, report: &mut KillReport) {
    for (name, status) in stack.crashed() {
        report.problems.push(format!(
            "{name} died on its own ({status}): a crash, not a kill"
        ));
        if let Err(e) = stack.start_instance(&name).await {
            report
                .problems
                .push(format!("{name} did not restart after its crash: {e:#}"));
        }
    }
}

/// Waits until no order is pending or compensating; returns how long that took, or the number
/// still unfinished at `timeout`.
pub async fn wait_quiescent(dbs: &Dbs, timeout: Duration) -> Result<Result<Duration, i64>> {
    let t = Instant::now();
    loop {
        let left = audit::not_final(&dbs.orders).await?;
        if left == 0 {
            return Ok(Ok(t.elapsed()));
        }
        if t.elapsed() > timeout {
            return Ok(Err(left));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Everything a campaign checks at the end.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub audit: Audit,
    /// Accepted orders the database does not have.
    pub lost: Vec<String>,
    /// Accepted orders not final.
    pub stuck: Vec<String>,
    /// Orders in the database nobody accepted (a duplicate made by a retried POST, or worse).
    pub unknown: Vec<String>,
    /// Final orders that did not end as their kind must (kind, count).
    pub unexpected: BTreeMap<String, usize>,
    pub unexpected_examples: Vec<String>,
    /// Of those, the ones no fault explains (see [`explained_by_faults`]), with examples.
    pub unexplained: BTreeMap<String, usize>,
    pub unexplained_examples: Vec<String>,
}

/// Failure reasons a fault can cause whatever the order's kind: a participant unreachable past the
/// step deadline, or an entry dead-lettered after too many deliveries. Any other surprise — a
/// `success` order failing "Not enough money", a `no-item` order completing — is a bug.
pub fn explained_by_faults(status: &str, reason: Option<&str>) -> bool {
    status == "failed"
        && reason.is_some_and(|r| {
            r.starts_with("Service unavailable: ") || r == "Saga could not be processed"
        })
}

impl Verdict {
    /// The violations: audit, lost, stuck, unknown. Unexpected outcomes are reported apart (under
    /// faults a step may legitimately run out of time and fail an order that could have succeeded).
    pub fn violations(&self) -> usize {
        self.audit.violation_count() + self.audit.not_final + self.lost.len() + self.unknown.len()
    }

    pub fn report(&self) -> String {
        let mut out = self.audit.report();
        out.push_str(&format!(
            "\nlost {}, stuck {}, unknown orders {}, unexpected outcomes {}",
            self.lost.len(),
            self.stuck.len(),
            self.unknown.len(),
            self.unexpected.values().sum::<usize>()
        ));
        for id in self.lost.iter().take(10) {
            out.push_str(&format!("\n  LOST {id}"));
        }
        for id in self.stuck.iter().take(10) {
            out.push_str(&format!("\n  STUCK {id}"));
        }
        for id in self.unknown.iter().take(10) {
            out.push_str(&format!("\n  UNKNOWN {id}"));
        }
        for (k, n) in &self.unexpected {
            out.push_str(&format!("\n  unexpected {k}: {n}"));
        }
        for e in &self.unexpected_examples {
            out.push_str(&format!("\n    {e}"));
        }
        for (k, n) in &self.unexplained {
            out.push_str(&format!("\n  UNEXPLAINED {k}: {n}"));
        }
        for e in &self.unexplained_examples {
            out.push_str(&format!("\n    {e}"));
        }
        out
    }
}

/// What the client knows of `accepted`, for the audit's `order-vs-sent` check.
pub fn sent_orders(accepted: &[Sent]) -> HashMap<Uuid, SentOrder> {
    accepted
        .iter()
        .map(|s| {
            let sent = SentOrder {
                username: s.username.clone(),
                amount: s.amount_cents,
                item: s.item,
                slot: s.slot.clone(),
            };
            (s.id, sent)
        })
        .collect()
}

/// The audit (with `known`, to which the accepted orders are added) and what only the client
/// knows: lost, stuck, unknown orders and outcomes against the kinds. The orders are read once,
/// in the audit's snapshot.
pub async fn verify(
    dbs: &Dbs,
    baseline: Baseline,
    accepted: &[Sent],
    mut known: Known,
) -> Result<Verdict> {
    known.sent = Some(sent_orders(accepted));
    let (audit, rows) = audit::audit_with_orders(dbs, baseline, &known).await?;
    let by_id: HashMap<Uuid, &OrderRow> = rows.iter().map(|o| (o.id, o)).collect();
    let mut lost = Vec::new();
    let mut stuck = Vec::new();
    let mut unexpected: BTreeMap<String, usize> = BTreeMap::new();
    let mut unexpected_examples = Vec::new();
    let mut unexplained: BTreeMap<String, usize> = BTreeMap::new();
    let mut unexplained_examples = Vec::new();
    for s in accepted {
        let Some(row) = by_id.get(&s.id) else {
            lost.push(format!("{} ({} order of {})", s.id, s.kind, s.username));
            continue;
        };
        if row.username != s.username {
            lost.push(format!(
                "{} belongs to {}, not {}",
                s.id, row.username, s.username
            ));
        }
        let success = match row.status.as_str() {
            "completed" => Some(true),
            "failed" | "cancelled" => Some(false),
            _ => {
                stuck.push(format!("{} ({})", s.id, row.status));
                continue;
            }
        };
        let reason = row.reason.as_deref();
        let outcome = s.kind.check_outcome(s.id, &row.status, success, reason);
        let outcome = match s.cancel {
            None => outcome,
            Some(answer) if answer.allows(&row.status, reason, outcome.is_ok()) => Ok(()),
            Some(answer) => Err(format!(
                "{} order {} ended {} ({reason:?}) after its cancel was {answer:?}",
                s.kind, s.id, row.status
            )),
        };
        // No fault excuses an accepted cancel that did not end the order cancelled.
        let excusable = s.cancel != Some(CancelAnswer::Accepted);
        if let Err(why) = outcome {
            let label = format!(
                "{} -> {}",
                s.kind,
                row.reason.as_deref().unwrap_or(&row.status)
            );
            if !(excusable && explained_by_faults(&row.status, reason)) {
                *unexplained.entry(label.clone()).or_default() += 1;
                if unexplained_examples.len() < 10 {
                    unexplained_examples.push(why.clone());
                }
            }
            *unexpected.entry(label).or_default() += 1;
            if unexpected_examples.len() < 10 {
                unexpected_examples.push(why);
            }
        }
    }
    let known: std::collections::HashSet<Uuid> = accepted.iter().map(|s| s.id).collect();
    let unknown = rows
        .iter()
        .filter(|o| !known.contains(&o.id))
        .map(|o| o.id.to_string())
        .collect();
    Ok(Verdict {
        audit,
        lost,
        stuck,
        unknown,
        unexpected,
        unexpected_examples,
        unexplained,
        unexplained_examples,
    })
}

/// A compact, shareable seed for a run (printed so a failing run can be replayed).
pub fn seed_from_env_or_random(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random())
}
