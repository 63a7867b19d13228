//! The nemesis of `chaos` (Jepsen style): besides the `kill -9`s of [`crate::campaign::kill_loop`],
//! it injects, one at a time at random moments under load, a fixed number of each of:
//!
//! - `pause`: SIGSTOP a mediator that has entries in flight for longer than CLAIM_MIN_IDLE_MS, so
//!   another mediator takes them over, then SIGCONT it: two live owners of the same saga race;
//! - `lost_reply`: the fault proxy in front of one participant drops every reply for a while; the
//!   participant commits what it is asked, the mediator sees timeouts;
//! - `delay`: the fault proxy holds one participant's requests or replies back for longer than the
//!   mediator's per-attempt timeout (STEP_DEADLINE_MS / 3), for a while (sometimes past the step
//!   deadline: orders then fail with "Service unavailable");
//! - `redis_restart`: Redis killed and started again; every other time (the first included) with
//!   the last second of its append-only file cut while it is down, so that acknowledged writes —
//!   stream entries among them — are really lost, as after a machine crash with everysec fsync;
//! - `postgres_restart`: `pg_ctl restart`, alternately `-m fast` and `-m immediate`.
//!
//! Every fault is bounded in count and time, stays on loopback and only touches processes the
//! harness started. Two lanes run at once, each one fault at a time (process and store faults;
//! network faults), so faults of the two lanes overlap. In each lane fault `i` of `n` comes once
//! `(i+1)/(n+1)` of the orders are final (or 20 s without progress), after a random 0-500 ms
//! more. Store restarts take the `gate` exclusively,
//! which the kill loop takes shared around each kill-and-restart, so that a service is never
//! started while its store is down (that would be a fault of the harness, not of the saga), and
//! which the network lane takes shared while it reads a window's evidence from the databases.
//!
//! Each fault also records whether it LANDED, with the evidence: a pause took entries away from
//! the paused consumer (it stays stopped, bounded, until one is taken; aimed again, a few times at
//! most, when the mediator held none once stopped); a lost reply window saw
//! the participant commit holds (their replies dropped); a delay window saw a call to the
//! participant outlast the per-attempt timeout; a Redis restart changed the server (and a cut one
//! lost stream entries); a PostgreSQL restart changed the postmaster. A proxy window is checked
//! once its sagas have logged their steps (a step deadline later) and injected again, a few times
//! at most, while it shows no evidence; [`Nemesis::confirm`] checks them all again at the end.

use crate::{
    audit::Dbs,
    campaign::{between, final_count},
    stack::Stack,
    stores::{PgStop, PostgresStore, RedisStore},
};
use anyhow::{Context, Result};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde::Serialize;
use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};
use time::OffsetDateTime;
use tokio::sync::RwLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    Kill,
    Pause,
    LostReply,
    Delay,
    RedisRestart,
    PostgresRestart,
}

impl FaultKind {
    pub const ALL: [FaultKind; 6] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::LostReply,
        FaultKind::Delay,
        FaultKind::RedisRestart,
        FaultKind::PostgresRestart,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::LostReply => "lost_reply",
            FaultKind::Delay => "delay",
            FaultKind::RedisRestart => "redis_restart",
            FaultKind::PostgresRestart => "postgres_restart",
        }
    }
}

named!(FaultKind, "fault kind");

/// How many of each fault, and how long each lasts.
#[derive(Debug, Clone)]
pub struct NemesisConfig {
    /// Faults per kind (`Kill` is the kill loop's business and ignored here).
    pub counts: BTreeMap<FaultKind, usize>,
    /// The mediators' CLAIM_MIN_IDLE_MS: a pause lasts this plus `pause_extra`.
    pub claim_min_idle: Duration,
    pub pause_extra: (Duration, Duration),
    /// The mediators' STEP_DEADLINE_MS (their per-attempt timeout is a third of it).
    pub step_deadline: Duration,
    pub lost_reply_for: (Duration, Duration),
    pub delay_for: (Duration, Duration),
    /// Orders of the run: fault `i` of `n` waits for `(i+1)/(n+1)` of them to be final.
    pub pace_total: u64,
    pub seed: u64,
    pub redis: Option<RedisStore>,
    pub postgres: Option<PostgresStore>,
    pub verbose: bool,
}

impl NemesisConfig {
    /// The mediator's timeout of one call (its `Participants::new`).
    pub fn attempt_timeout(&self) -> Duration {
        (self.step_deadline / 3).clamp(Duration::from_millis(50), Duration::from_secs(5))
    }

    /// The longest pause.
    pub fn max_pause(&self) -> Duration {
        self.claim_min_idle + self.pause_extra.1
    }
}

/// One injected fault.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    pub kind: FaultKind,
    pub target: String,
    /// Seconds since the nemesis started.
    pub at_s: f64,
    pub duration_ms: u128,
    pub detail: String,
    pub landed: bool,
    pub evidence: String,
    /// Proxy windows, checked at the end.
    #[serde(skip)]
    window: Option<(OffsetDateTime, OffsetDateTime)>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct NemesisReport {
    pub faults: Vec<FaultRecord>,
    /// Faults that could not be injected (an error of the harness), with why.
    pub errors: Vec<String>,
}

impl NemesisReport {
    /// Landed faults per kind.
    pub fn landed_by_kind(&self) -> BTreeMap<FaultKind, usize> {
        let mut out = BTreeMap::new();
        for f in self.faults.iter().filter(|f| f.landed) {
            *out.entry(f.kind).or_default() += 1;
        }
        out
    }

    pub fn not_landed(&self) -> Vec<&FaultRecord> {
        self.faults.iter().filter(|f| !f.landed).collect()
    }
}

/// What the nemesis shares with the kill loop.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// Taken exclusively while a store is restarted, shared by each kill-and-restart.
    pub gate: Arc<RwLock<()>>,
    /// Processes the nemesis is holding (paused): the kill loop leaves them alone.
    pub busy: Arc<Mutex<HashSet<String>>>,
}

pub struct Nemesis<'a> {
    stack: &'a Stack,
    config: &'a NemesisConfig,
    shared: Shared,
    dbs: &'a Dbs,
    started: Instant,
}

const PARTICIPANTS: [&str; 3] = ["items", "slots", "billing"];
/// How much longer than planned a paused mediator may stay stopped, waiting for the others to
/// take over one of its entries (see `pause_for`).
const PAUSE_OVERTIME: Duration = Duration::from_secs(20);
/// How often a proxy fault is injected before its missing evidence counts (see
/// `landed_proxy_fault`).
const PROXY_FAULT_TRIES: usize = 3;
/// How often a pause is aimed again at a mediator still holding entries once stopped (see
/// `landed_pause`).
const PAUSE_TRIES: usize = 3;

impl<'a> Nemesis<'a> {
    pub fn new(stack: &'a Stack, config: &'a NemesisConfig, shared: Shared, dbs: &'a Dbs) -> Self {
        Self {
            stack,
            config,
            shared,
            dbs,
            started: Instant::now(),
        }
    }

    /// Injects every scheduled fault (unless `stop` is set first); returns what happened.
    ///
    /// Two lanes run at once, each one fault at a time: the process and store faults (pause,
    /// restarts) and the network faults (lost reply, delay). So a pause may overlap a network
    /// fault — the interleaving where a taken-over saga fails on an unknown outcome while its
    /// first owner sleeps mid-step.
    pub async fn run(&self, stop: &AtomicBool) -> NemesisReport {
        let lane = |kinds: &[FaultKind], salt: u64| {
            let mut schedule: Vec<FaultKind> = Vec::new();
            for (kind, n) in &self.config.counts {
                if kinds.contains(kind) {
                    schedule.extend(std::iter::repeat_n(*kind, *n));
                }
            }
            let mut rng = StdRng::seed_from_u64(self.config.seed ^ salt);
            schedule.shuffle(&mut rng);
            self.run_lane(schedule, rng, stop)
        };
        let (a, b) = tokio::join!(
            lane(
                &[
                    FaultKind::Pause,
                    FaultKind::RedisRestart,
                    FaultKind::PostgresRestart
                ],
                0x006e_656d_6573_6973
            ),
            lane(
                &[FaultKind::LostReply, FaultKind::Delay],
                0x6e65_7477_6f72_6b00
            ),
        );
        let mut report = a;
        report.faults.extend(b.faults);
        report.errors.extend(b.errors);
        report.faults.sort_by(|x, y| {
            x.at_s
                .partial_cmp(&y.at_s)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        report
    }

    async fn run_lane(
        &self,
        schedule: Vec<FaultKind>,
        mut rng: StdRng,
        stop: &AtomicBool,
    ) -> NemesisReport {
        // The first store restart of each kind is the harsher variant (a cut AOF, a fast
        // PostgreSQL stop): a short run with one of each still gets it.
        let mut report = NemesisReport::default();
        let mut nth: BTreeMap<FaultKind, usize> = BTreeMap::new();
        let n = schedule.len() as u64;
        for (i, kind) in schedule.into_iter().enumerate() {
            self.wait_turn(i as u64, n, stop).await;
            if stop.load(Relaxed) {
                break;
            }
            let gap = Duration::from_millis(rng.random_range(0..500));
            tokio::time::sleep(gap).await;
            let k = nth.entry(kind).or_default();
            let index = *k;
            *k += 1;
            let at = self.started.elapsed().as_secs_f64();
            let t = Instant::now();
            let result = match kind {
                FaultKind::Pause => self.landed_pause(&mut rng, &mut report).await,
                FaultKind::LostReply | FaultKind::Delay => {
                    self.landed_proxy_fault(kind, &mut rng, &mut report).await
                }
                FaultKind::RedisRestart => self.redis_restart(index, &mut rng).await,
                FaultKind::PostgresRestart => self.postgres_restart(index).await,
                FaultKind::Kill => continue,
            };
            match result {
                Ok(mut record) => {
                    record.at_s = (at * 10.0).round() / 10.0;
                    record.duration_ms = t.elapsed().as_millis();
                    if self.config.verbose {
                        eprintln!(
                            "nemesis {}/{n}: {} {} ({}) {} ms{}",
                            i + 1,
                            record.kind,
                            record.target,
                            record.detail,
                            record.duration_ms,
                            if record.window.is_some() {
                                String::new()
                            } else {
                                format!("; landed {}: {}", record.landed, record.evidence)
                            }
                        );
                    }
                    report.faults.push(record);
                }
                Err(e) => report.errors.push(format!("{kind}: {e:#}")),
            }
        }
        report
    }

    async fn wait_turn(&self, i: u64, n: u64, stop: &AtomicBool) {
        let due = self.config.pace_total * (i + 1) / (n + 1);
        let mut last = (final_count(&self.dbs.orders).await, Instant::now());
        while !stop.load(Relaxed) && last.0 < due && last.1.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let done = final_count(&self.dbs.orders).await;
            if done > last.0 {
                last = (done, Instant::now());
            }
        }
    }

    fn record(&self, kind: FaultKind, target: &str, detail: String) -> FaultRecord {
        FaultRecord {
            kind,
            target: target.to_owned(),
            at_s: 0.0,
            duration_ms: 0,
            detail,
            landed: false,
            evidence: String::new(),
            window: None,
        }
    }

    /// Stream ids pending for `consumer`.
    async fn pending_of(&self, consumer: &str) -> Result<HashSet<String>> {
        let client = redis::Client::open(self.stack.config().redis_url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let streams = self.stack.streams();
        let reply: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&streams.orders)
            .arg(&streams.group)
            .arg("-")
            .arg("+")
            .arg(100_000)
            .arg(consumer)
            .query_async(&mut conn)
            .await
            .context("XPENDING of one consumer")?;
        Ok(reply.ids.into_iter().map(|p| p.id).collect())
    }

    /// A pause, aimed again (at most [`PAUSE_TRIES`] times) when its mediator held no entry once
    /// stopped: picked while it held a few, it may finish them between the pick and the SIGSTOP,
    /// and a stopped mediator reads no new ones, so nothing could be taken over. Such an attempt
    /// is resumed at once and kept in the report, not counted.
    async fn landed_pause(
        &self,
        rng: &mut StdRng,
        report: &mut NemesisReport,
    ) -> Result<FaultRecord> {
        let mut tries = 1;
        loop {
            let (mut record, held_nothing) = self.pause(rng).await?;
            if !held_nothing || tries >= PAUSE_TRIES {
                return Ok(record);
            }
            tries += 1;
            record.evidence += " (aimed again)";
            report.faults.push(record);
        }
    }

    /// The pause's record, and whether its mediator held nothing once stopped.
    async fn pause(&self, rng: &mut StdRng) -> Result<(FaultRecord, bool)> {
        // A mediator with entries in flight (else there is nothing to take over), not being
        // killed, not already held.
        let mut target = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        while target.is_none() && Instant::now() < deadline {
            let pending = self.stack.pending_per_consumer().await.unwrap_or_default();
            let mut candidates: Vec<String> = {
                let busy = self.shared.busy.lock().unwrap_or_else(|e| e.into_inner());
                self.stack
                    .mediators()
                    .into_iter()
                    .filter(|m| self.stack.is_running(m) && !busy.contains(m))
                    .filter(|m| pending.get(m).copied().unwrap_or(0) > 0)
                    .collect()
            };
            candidates.sort();
            if candidates.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let pick = candidates[rng.random_range(0..candidates.len())].clone();
            self.shared
                .busy
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(pick.clone());
            target = Some(pick);
        }
        let target = target.context("no running mediator had entries in flight for 20 s")?;
        let extra = between(rng, self.config.pause_extra);
        let length = self.config.claim_min_idle + extra;
        let result = self.pause_for(&target, length).await;
        self.shared
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&target);
        result
    }

    async fn pause_for(&self, target: &str, length: Duration) -> Result<(FaultRecord, bool)> {
        let mut record = self.record(
            FaultKind::Pause,
            target,
            format!("SIGSTOP for {} ms", length.as_millis()),
        );
        self.stack.pause(target)?;
        let t = Instant::now();
        // Replies already on their way when it stopped have landed by now.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = self.pending_of(target).await;
        if before.as_ref().is_ok_and(HashSet::is_empty) {
            let resumed = self.stack.resume(target);
            record.detail = format!("SIGSTOP for {} ms", t.elapsed().as_millis());
            record.evidence = match resumed {
                Ok(()) => "it held no pending entry once stopped: resumed at once".to_string(),
                Err(e) => format!("it held no pending entry once stopped; SIGCONT failed: {e:#}"),
            };
            return Ok((record, true));
        }
        tokio::time::sleep(length.saturating_sub(t.elapsed())).await;
        let mut after = self.pending_of(target).await;
        // The other mediators take its entries over once idle AND once they have a free saga slot:
        // right after a store restart every slot may still be retrying. Stay stopped until they
        // have taken at least one (bounded): a pause that wakes before that tests nothing.
        let overtime = Instant::now() + PAUSE_OVERTIME;
        while let (Ok(b), Ok(a)) = (&before, &after) {
            if b.difference(a).next().is_some() || Instant::now() >= overtime {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            after = self.pending_of(target).await;
        }
        // A process killed meanwhile (it should not be: it is marked busy) has nothing to resume.
        let resumed = self.stack.resume(target);
        record.detail = format!("SIGSTOP for {} ms", t.elapsed().as_millis());
        let (before, after) = (before?, after?);
        let taken = before.difference(&after).count();
        record.landed = taken > 0 && resumed.is_ok();
        record.evidence = format!(
            "{} of its {} pending entries taken over while it was stopped{}",
            taken,
            before.len(),
            match resumed {
                Ok(()) => String::new(),
                Err(e) => format!("; SIGCONT failed: {e:#}"),
            }
        );
        Ok((record, false))
    }

    /// A proxy fault, injected again (at most [`PROXY_FAULT_TRIES`] times) while its window shows
    /// no evidence: with every saga slot busy elsewhere (a participant down, a store restarting)
    /// no call may cross the proxy in a short window. The attempts that did not land are kept in
    /// the report (they are not faults the run can count).
    async fn landed_proxy_fault(
        &self,
        kind: FaultKind,
        rng: &mut StdRng,
        report: &mut NemesisReport,
    ) -> Result<FaultRecord> {
        let mut tries = 1;
        loop {
            let mut record = self.proxy_fault(kind, rng).await?;
            // The sagas the window touched reach the log once they are final: past their deadline.
            tokio::time::sleep(self.config.step_deadline + Duration::from_secs(1)).await;
            // The other lane may be restarting a store right now: the evidence is read once it
            // is back (and no restart begins while it is read), not taken for a fault of ours.
            let gate = self.shared.gate.read().await;
            self.confirm_window(&mut record).await?;
            drop(gate);
            if record.landed || tries >= PROXY_FAULT_TRIES {
                return Ok(record);
            }
            tries += 1;
            record.evidence += " (tried again)";
            report.faults.push(record);
        }
    }

    async fn proxy_fault(&self, kind: FaultKind, rng: &mut StdRng) -> Result<FaultRecord> {
        let participant = PARTICIPANTS[rng.random_range(0..PARTICIPANTS.len())];
        let proxy = self
            .stack
            .proxy(participant)
            .context("the stack has no fault proxies")?;
        let name = format!("nemesis-{kind}");
        let (toxic, length, detail) = if kind == FaultKind::LostReply {
            let length = between(rng, self.config.lost_reply_for);
            (
                crate::proxy::lost_reply(&name),
                length,
                format!("replies dropped for {} ms", length.as_millis()),
            )
        } else {
            let length = between(rng, self.config.delay_for);
            let latency =
                self.config.attempt_timeout() + Duration::from_millis(rng.random_range(200..1500));
            let direction = if rng.random_bool(0.5) {
                crate::proxy::Direction::Upstream
            } else {
                crate::proxy::Direction::Downstream
            };
            (
                crate::proxy::latency(&name, direction, latency.as_millis() as u64),
                length,
                format!(
                    "{direction} latency {} ms for {} ms",
                    latency.as_millis(),
                    length.as_millis()
                ),
            )
        };
        let mut record = self.record(kind, participant, detail);
        let from = OffsetDateTime::now_utc();
        proxy.add(toxic).await?;
        tokio::time::sleep(length).await;
        proxy.clear().await?;
        record.window = Some((from, OffsetDateTime::now_utc()));
        Ok(record)
    }

    async fn redis_restart(&self, index: usize, rng: &mut StdRng) -> Result<FaultRecord> {
        let redis = self
            .config
            .redis
            .as_ref()
            .context("no Redis to restart (give --redis-dir)")?;
        let cut = index.is_multiple_of(2);
        let down = Duration::from_millis(rng.random_range(200..1500));
        let stream = self.stack.streams().orders.clone();
        let _gate = self.shared.gate.write().await;
        let cut_to = if cut {
            let file = redis.aof_tail_file()?;
            let size = std::fs::metadata(&file)
                .with_context(|| format!("stat {}", file.display()))?
                .len();
            // What is written from now on is "the last second": lost with the cut. It must hold
            // new stream entries (an idle second of XACKs only would lose no order), so wait on
            // until one was added (at most 10 s).
            let sampled = redis.stream_state(&stream).await.ok();
            let t = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let now = redis.stream_state(&stream).await.ok();
                let added = match (&sampled, &now) {
                    (Some((_, a)), Some((_, b))) => a != b,
                    _ => false,
                };
                if (added && t.elapsed() >= Duration::from_secs(1))
                    || t.elapsed() > Duration::from_secs(10)
                {
                    break;
                }
            }
            Some((file, size))
        } else {
            None
        };
        let r = redis.restart(&stream, cut_to, down).await?;
        let mut record = self.record(
            FaultKind::RedisRestart,
            "redis",
            if cut {
                format!(
                    "kill -9, last second of the AOF cut ({} bytes)",
                    r.cut_bytes
                )
            } else {
                "kill -9".to_owned()
            },
        );
        record.landed = r.after.is_some() && (!cut || (r.cut_bytes > 0 && r.lost_entries()));
        record.evidence = format!(
            "down {} ms; orders stream (length, last id) before {:?}, after {:?}; last entry \
             before the kill {}",
            r.down_ms,
            r.before,
            r.after,
            if r.last_entry_lost { "lost" } else { "kept" }
        );
        Ok(record)
    }

    async fn postgres_restart(&self, index: usize) -> Result<FaultRecord> {
        let pg = self
            .config
            .postgres
            .as_ref()
            .context("no PostgreSQL to restart (give --pg-data and --pg-bin)")?;
        let mode = if index.is_multiple_of(2) {
            PgStop::Fast
        } else {
            PgStop::Immediate
        };
        let _gate = self.shared.gate.write().await;
        let before = pg.pid()?;
        let took = pg.restart(mode).await?;
        let after = pg.pid();
        let mut record = self.record(
            FaultKind::PostgresRestart,
            "postgres",
            format!("pg_ctl restart -m {}", mode.as_str()),
        );
        record.landed = after.as_ref().is_ok_and(|a| *a != before);
        record.evidence = format!(
            "postmaster {before} -> {:?}, back after {} ms",
            after.ok(),
            took.as_millis()
        );
        Ok(record)
    }

    /// Checks the evidence of the proxy faults in the databases (once every order is final).
    pub async fn confirm(&self, report: &mut NemesisReport) -> Result<()> {
        for f in report.faults.iter_mut() {
            self.confirm_window(f).await?;
        }
        Ok(())
    }

    /// Sets `landed` and `evidence` of a proxy fault from the saga log and the participant's
    /// holds in its window; nothing for other faults. Sagas still running are not in the log yet.
    async fn confirm_window(&self, f: &mut FaultRecord) -> Result<()> {
        let Some((from, to)) = f.window else {
            return Ok(());
        };
        let attempt = self.config.attempt_timeout().as_secs_f64() * 0.9;
        // Calls to the participant that started before the window closed, ended after it
        // opened, and outlasted one attempt (or gave up): the mediator saw the fault.
        let slow: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM saga_steps WHERE participant = $1 AND kind = 'action' \
             AND started_at < $3 AND finished_at > $2 \
             AND (outcome = 'unknown' \
                  OR extract(epoch FROM finished_at - started_at) >= $4)",
        )
        .bind(&f.target)
        .bind(from)
        .bind(to)
        .bind(attempt)
        .fetch_one(&self.dbs.orders)
        .await
        .context("reading the saga steps of a fault window")?;
        if f.kind == FaultKind::LostReply {
            let db = match f.target.as_str() {
                "billing" => &self.dbs.billing,
                "items" => &self.dbs.items,
                _ => &self.dbs.slots,
            };
            let committed: i64 =
                sqlx::query_scalar("SELECT count(*) FROM holds WHERE created_at BETWEEN $1 AND $2")
                    .bind(from)
                    .bind(to)
                    .fetch_one(db)
                    .await
                    .context("reading the holds of a fault window")?;
            // A hold committed in the window had its reply dropped (every reply in it is, and
            // the proxy cuts the connections at both ends of the window): that is the fault.
            // Whether the mediator then waited out an attempt or retried on a cut connection
            // (and got the recorded outcome) depends on where in the window the call fell.
            f.landed = committed > 0;
            f.evidence = format!(
                "{committed} holds committed by {} while its replies were dropped; \
                 {slow} calls to it outlasted an attempt",
                f.target
            );
        } else {
            f.landed = slow > 0;
            f.evidence = format!("{slow} calls to {} outlasted an attempt", f.target);
        }
        Ok(())
    }
}
