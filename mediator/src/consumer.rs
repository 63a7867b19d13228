//! Consuming the orders stream: a consumer group shared by any number of mediator processes, each
//! running up to MEDIATOR_CONCURRENCY sagas at once, with at-least-once delivery and nothing
//! dropped silently.
//!
//! - New entries: `XREADGROUP ... BLOCK` on a dedicated connection (a blocking read would stall a
//!   shared multiplexed connection), `COUNT` = free saga slots. Every other command uses the
//!   process's shared connection (`shop_common::redis::Redis`).
//! - An entry is acknowledged only once its order's final state is stored. A crash before that
//!   leaves it pending: on start a process first re-reads its own pending entries (a restarted
//!   pod keeps its CONSUMER_NAME), and periodically `XAUTOCLAIM`s entries idle for longer than
//!   CLAIM_MIN_IDLE_MS (a dead consumer's, or its own whose run failed on an error). In-flight
//!   entries are kept fresh by a heartbeat (`XCLAIM ... JUSTID`, which does not count as a
//!   delivery) so that a long saga is not taken over while it runs. The heartbeat is a task of its
//!   own, started before anything else and stopped after the last saga: it never waits for a saga
//!   slot or for recovery, so sagas stuck in compensation retries (holding every slot) or a large
//!   backlog at start-up cannot starve it. It refreshes only entries this consumer still owns (one
//!   atomic script), so it never takes back an entry another consumer claimed while this one was
//!   paused; that other owner's run and this one then race safely (see `crate::executor`).
//! - An entry without a valid order id, for an unknown order, or delivered more than
//!   MAX_DELIVERIES times goes to the dead-letter stream before it is acknowledged; the order of
//!   a repeatedly failing entry is undone and failed (see [`Mode::DeadLetter`]).
//! - Acknowledged entries are trimmed from the stream (`XTRIM MINID` below the oldest entry any
//!   group still needs), so the stream does not grow without bound.
//! - Shutdown: stop reading, let in-flight sagas finish (their retries stop, leaving a saga that
//!   cannot finish pending for recovery), leave the group if nothing is pending, return.
//!
//! This module only schedules: the Redis commands and their replies are `crate::orders_stream`'s.

use crate::{
    config::StreamConfig,
    executor::{Disposition, Executor, Mode},
    orders_stream::{Entry, OrdersStream},
};
use anyhow::Result;
use backon::BackoffBuilder;
use order_store::stream::Terms;
use shop_common::{config::SecretString, redis::Redis};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long one blocking read waits for new entries; also bounds how late shutdown is noticed.
const READ_BLOCK: Duration = Duration::from_millis(1000);
const RECOVER_BATCH: usize = 100;
/// Pause after a Redis error in the read loop.
const REDIS_RETRY: Duration = Duration::from_millis(500);
/// Heartbeats per CLAIM_MIN_IDLE_MS: a couple may fail (a Redis blip) before an entry is claimable.
const HEARTBEATS_PER_CLAIM_IDLE: u32 = 4;
const MIN_HEARTBEAT: Duration = Duration::from_millis(25);

#[derive(Clone)]
pub struct Consumer(Arc<Inner>);

struct Inner {
    cfg: StreamConfig,
    redis_url: SecretString,
    stream: OrdersStream,
    executor: Arc<Executor>,
    permits: Arc<Semaphore>,
    /// Stream ids of the entries this process is running, and since when.
    in_flight: Mutex<HashMap<String, Instant>>,
    shutdown: CancellationToken,
}

impl Consumer {
    pub fn new(
        cfg: StreamConfig,
        redis_url: SecretString,
        redis: Redis,
        executor: Arc<Executor>,
        shutdown: CancellationToken,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(cfg.concurrency));
        Self(Arc::new(Inner {
            stream: OrdersStream::new(cfg.clone(), redis),
            cfg,
            redis_url,
            executor,
            permits,
            in_flight: Mutex::new(HashMap::new()),
            shutdown,
        }))
    }

    /// Consumes until shutdown, then waits for the sagas in flight.
    pub async fn run(self) -> Result<()> {
        let this = self.0;
        if !this.create_group_until_done().await {
            return Ok(());
        }
        // Until the last saga has ended, shutdown included.
        let drained = CancellationToken::new();
        let heartbeat = tokio::spawn(this.clone().heartbeat_loop(drained.clone()));
        if let Err(e) = this.recover_own().await {
            // Not fatal: the periodic claim takes them over once they are idle long enough.
            tracing::warn!("could not re-read this consumer's pending entries: {e:#}");
        }
        let claimer = tokio::spawn(this.clone().claim_loop());
        this.clone().read_loop().await;
        let _ = claimer.await;
        tracing::info!("stopped reading; waiting for the sagas in flight");
        let all = u32::try_from(this.cfg.concurrency).unwrap_or(u32::MAX);
        let _drained = this.permits.acquire_many(all).await;
        drained.cancel();
        let _ = heartbeat.await;
        if let Err(e) = this.stream.leave_group_if_idle().await {
            tracing::warn!("could not leave the consumer group: {e:#}");
        }
        tracing::info!("consumer stopped");
        Ok(())
    }
}

impl Inner {
    fn in_flight(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        // A panic while holding this lock leaves the map consistent: plain inserts and removes.
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleeps `d` unless shutdown comes first; true if it did.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.shutdown.cancelled() => true,
            _ = tokio::time::sleep(d) => false,
        }
    }

    /// A saga slot, unless shutdown comes first.
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        tokio::select! {
            _ = self.shutdown.cancelled() => None,
            permit = self.permits.clone().acquire_owned() => permit.ok(),
        }
    }

    /// Creates the consumer group (see `OrdersStream::create_group`). False if shutdown came first.
    ///
    /// Waits for Redis as long as it takes, unlike start-up's bounded wait for the database: the
    /// health server is already up (live, and unready while Redis is down), exactly as when Redis
    /// goes away later, so there is nothing a restart would do better — giving up would only
    /// turn a Redis outage into a crash loop.
    async fn create_group_until_done(&self) -> bool {
        let redis = shop_common::redis::describe(&self.redis_url);
        let mut delays = shop_common::db::DEPENDENCY_BACKOFF.build();
        for attempt in 1u32.. {
            let error = match self.stream.create_group().await {
                Ok(()) => return true,
                Err(e) => e,
            };
            let delay = delays.next().unwrap_or(Duration::from_secs(2));
            tracing::warn!(
                redis = %redis,
                attempt,
                retry_in_ms = delay.as_millis() as u64,
                "cannot create the consumer group yet: {error:#}"
            );
            if self.pause(delay).await {
                return false;
            }
        }
        false
    }

    /// This consumer's pending entries: those a previous process of the same name left behind.
    async fn recover_own(self: &Arc<Self>) -> Result<()> {
        let mut cursor = "0".to_owned();
        loop {
            let entries = self.stream.own_pending(&cursor, RECOVER_BATCH).await?;
            let Some(last) = entries.last() else {
                return Ok(());
            };
            cursor = last.id.clone();
            tracing::info!(
                entries = entries.len(),
                "recovering this consumer's pending entries"
            );
            let counts = self.stream.delivery_counts(&entries).await?;
            for entry in entries {
                if self.shutdown.is_cancelled() {
                    return Ok(());
                }
                let deliveries = counts.get(&entry.id).copied().unwrap_or(1);
                self.dispatch(entry, deliveries, None).await;
            }
        }
    }

    async fn read_loop(self: Arc<Self>) {
        let mut reader = self.stream.reader(self.redis_url.clone(), READ_BLOCK);
        while !self.shutdown.is_cancelled() {
            let Some(first) = self.slot().await else {
                return;
            };
            let want = self.permits.available_permits() + 1;
            match reader.read_new(want).await {
                Ok(entries) => {
                    let mut first = Some(first);
                    for entry in entries {
                        // A first delivery: no need to ask for its count.
                        self.dispatch(entry, 1, first.take()).await;
                    }
                }
                Err(e) => {
                    tracing::warn!("{e:#}");
                    drop(first);
                    self.pause(REDIS_RETRY).await;
                }
            }
        }
    }

    /// Runs `entry` in a task of its own, holding a saga slot, unless it is already in flight here.
    async fn dispatch(
        self: &Arc<Self>,
        entry: Entry,
        deliveries: u64,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        let permit = match permit {
            Some(p) => p,
            None => match self.permits.clone().acquire_owned().await {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let Some(guard) = InFlight::enter(self, &entry.id) else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let _slot = permit;
            let _guard = guard;
            if let Err(e) = this.process(&entry, deliveries).await {
                tracing::error!(
                    stream_id = %entry.id,
                    "entry left pending, to be retried once idle: {e:#}"
                );
            }
        });
    }

    async fn process(&self, entry: &Entry, deliveries: u64) -> Result<()> {
        let order_id = entry.order_id();
        let poisoned = deliveries > self.cfg.max_deliveries;
        if poisoned {
            let reason = format!("delivered {deliveries} times");
            self.stream.dead_letter(entry, order_id, &reason).await?;
        }
        let Some(order_id) = order_id else {
            if !poisoned {
                self.stream
                    .dead_letter(entry, None, "malformed entry: no valid order_id")
                    .await?;
            }
            return self.stream.ack(&entry.id).await;
        };
        let mode = if poisoned {
            Mode::DeadLetter
        } else {
            Mode::Normal
        };
        // Only a first delivery runs on the terms it carries: any later one follows what is
        // recorded, since a run of it has begun before.
        let announced = (deliveries == 1 && !poisoned)
            .then(|| Terms::from_fields(&entry.fields))
            .flatten();
        let disposition = match announced {
            Some(terms) => self.executor.run_new(&terms).await?,
            None => self.executor.run(order_id, mode).await?,
        };
        match disposition {
            Disposition::Final(_) => self.stream.ack_final(&entry.id, order_id).await,
            Disposition::UnknownOrder => {
                if !poisoned {
                    self.stream
                        .dead_letter(entry, Some(order_id), "unknown order")
                        .await?;
                }
                self.stream.ack(&entry.id).await
            }
            Disposition::Abandoned => Ok(()),
        }
    }

    /// Refreshes the entries in flight here, a few times per CLAIM_MIN_IDLE_MS, until `drained`.
    async fn heartbeat_loop(self: Arc<Self>, drained: CancellationToken) {
        let every = (self.cfg.claim_min_idle / HEARTBEATS_PER_CLAIM_IDLE).max(MIN_HEARTBEAT);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = drained.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.heartbeat(every).await {
                tracing::warn!("heartbeat of in-flight entries failed: {e:#}");
            }
        }
    }

    async fn claim_loop(self: Arc<Self>) {
        let every = (self.cfg.claim_min_idle / 2).max(Duration::from_millis(50));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.claim_idle().await {
                tracing::warn!("claiming idle entries failed: {e:#}");
            }
            if let Err(e) = self.stream.trim().await {
                tracing::warn!("trimming the orders stream failed: {e:#}");
            }
        }
    }

    /// Resets the idle time of the entries in flight here for at least `age` that this consumer
    /// still owns, so that no other consumer takes them over while their saga runs.
    async fn heartbeat(&self, age: Duration) -> Result<()> {
        let ids: Vec<String> = self
            .in_flight()
            .iter()
            .filter(|(_, since)| since.elapsed() >= age)
            .map(|(id, _)| id.clone())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let lost = self.stream.heartbeat(&ids).await?;
        if !lost.is_empty() {
            // Taken over while this process was paused (or acknowledged by another owner): its run
            // here goes on, racing the other owner's safely.
            tracing::warn!(entries = ?lost, "in-flight entries no longer owned by this consumer");
            metrics::counter!("mediator_heartbeat_lost_entries_total").increment(lost.len() as u64);
        }
        Ok(())
    }

    /// Takes over entries idle for longer than CLAIM_MIN_IDLE_MS, as many as there are free slots.
    /// It waits for at least one slot: the read loop holds one while it blocks, and with every slot
    /// busy a dead consumer's entries would otherwise never be taken over.
    async fn claim_idle(self: &Arc<Self>) -> Result<()> {
        let mut cursor = "0-0".to_owned();
        loop {
            let Some(first) = self.slot().await else {
                return Ok(());
            };
            let free = self.permits.available_permits() + 1;
            let claimed = self.stream.claim_idle(&cursor, free).await?;
            let entries: Vec<Entry> = {
                let in_flight = self.in_flight();
                claimed
                    .entries
                    .into_iter()
                    .filter(|e| !in_flight.contains_key(&e.id))
                    .collect()
            };
            if !entries.is_empty() {
                tracing::info!(entries = entries.len(), "took over idle entries");
                metrics::counter!("mediator_claimed_entries_total").increment(entries.len() as u64);
                let counts = self.stream.delivery_counts(&entries).await?;
                let mut first = Some(first);
                for entry in entries {
                    let deliveries = counts.get(&entry.id).copied().unwrap_or(1);
                    self.dispatch(entry, deliveries, first.take()).await;
                }
            }
            match claimed.next {
                Some(next) if next != "0-0" => cursor = next,
                _ => return Ok(()),
            }
        }
    }
}

/// Marks a stream id as in flight in this process for as long as it lives.
struct InFlight {
    inner: Arc<Inner>,
    id: String,
}

impl InFlight {
    fn enter(inner: &Arc<Inner>, id: &str) -> Option<Self> {
        let mut in_flight = inner.in_flight();
        if in_flight.contains_key(id) {
            return None;
        }
        in_flight.insert(id.to_owned(), Instant::now());
        metrics::gauge!("mediator_sagas_in_flight").set(in_flight.len() as f64);
        Some(Self {
            inner: inner.clone(),
            id: id.to_owned(),
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut in_flight = self.inner.in_flight();
        in_flight.remove(&self.id);
        metrics::gauge!("mediator_sagas_in_flight").set(in_flight.len() as f64);
    }
}
