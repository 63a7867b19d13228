//! Consuming the orders stream: a consumer group shared by any number of mediator processes, each
//! running up to MEDIATOR_CONCURRENCY sagas at once, with at-least-once delivery and nothing
//! dropped silently.
//!
//! - New entries: `XREADGROUP ... BLOCK` on a dedicated connection (a blocking read would stall a
//!   pooled multiplexed connection), `COUNT` = free saga slots. Every other command uses the pool.
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

use crate::{
    config::StreamConfig,
    executor::{Disposition, Executor, Mode},
};
use anyhow::{Context, Result};
use backon::BackoffBuilder;
use redis::{RedisResult, Value, aio::MultiplexedConnection};
use shop_common::{config::SecretString, redis::RedisPool};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long one blocking read waits for new entries; also bounds how late shutdown is noticed.
const READ_BLOCK: Duration = Duration::from_millis(1000);
const RECOVER_BATCH: usize = 100;
/// Pause after a Redis error in the read loop.
const REDIS_RETRY: Duration = Duration::from_millis(500);
/// Heartbeats per CLAIM_MIN_IDLE_MS: a couple may fail (a Redis blip) before an entry is claimable.
const HEARTBEATS_PER_CLAIM_IDLE: u32 = 4;
const MIN_HEARTBEAT: Duration = Duration::from_millis(25);

/// `XCLAIM <stream> <group> <consumer> 0 <id> JUSTID` for each id still pending for this consumer,
/// checked and claimed atomically; returns the ids that are not (claimed by another consumer, or
/// no longer pending). JUSTID: not counted as a delivery.
/// KEYS: stream. ARGV: group, consumer, ids...
static HEARTBEAT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
        local lost = {}
        for i = 3, #ARGV do
            local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
            if p[1] and p[1][2] == ARGV[2] then
                redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
            else
                lost[#lost + 1] = ARGV[i]
            end
        end
        return lost
        ",
    )
});

/// One stream entry, fields as text.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub fields: Vec<(String, String)>,
}

impl Entry {
    pub fn order_id(&self) -> Option<Uuid> {
        let (_, value) = self
            .fields
            .iter()
            .find(|(k, _)| k == order::outbox::FIELD)?;
        Uuid::parse_str(value).ok()
    }

    fn payload(&self) -> String {
        let map: BTreeMap<_, _> = self.fields.iter().cloned().collect();
        serde_json::to_string(&map).unwrap_or_default()
    }
}

#[derive(Clone)]
pub struct Consumer(Arc<Inner>);

struct Inner {
    cfg: StreamConfig,
    redis_url: SecretString,
    redis: RedisPool,
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
        redis: RedisPool,
        executor: Arc<Executor>,
        shutdown: CancellationToken,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(cfg.concurrency));
        Self(Arc::new(Inner {
            cfg,
            redis_url,
            redis,
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
        if let Err(e) = this.leave_group_if_idle().await {
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

    async fn conn(&self) -> Result<deadpool_redis::Connection> {
        self.redis.get().await.context("taking a Redis connection")
    }

    /// `XGROUP CREATE <stream> <group> 0 MKSTREAM`: from 0, so nothing published before the group
    /// existed is missed. False if shutdown came first.
    ///
    /// Waits for Redis as long as it takes, unlike start-up's bounded wait for the database: the
    /// health server is already up (live, and unready while Redis is down), exactly as when Redis
    /// goes away later, so there is nothing a restart would do better — giving up would only
    /// turn a Redis outage into a crash loop.
    async fn create_group_until_done(&self) -> bool {
        let redis = shop_common::redis::describe(&self.redis_url);
        let mut delays = shop_common::db::DEPENDENCY_BACKOFF.build();
        for attempt in 1u32.. {
            let error = match self.create_group().await {
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

    async fn create_group(&self) -> Result<()> {
        let mut conn = self.conn().await?;
        let created: RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.cfg.orders_stream)
            .arg(&self.cfg.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut *conn)
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e).context("XGROUP CREATE"),
            _ => Ok(()),
        }
    }

    /// This consumer's pending entries: those a previous process of the same name left behind.
    async fn recover_own(self: &Arc<Self>) -> Result<()> {
        let mut cursor = "0".to_owned();
        loop {
            let reply: Value = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&self.cfg.group)
                .arg(&self.cfg.consumer)
                .arg("COUNT")
                .arg(RECOVER_BATCH)
                .arg("STREAMS")
                .arg(&self.cfg.orders_stream)
                .arg(&cursor)
                .query_async(&mut *self.conn().await?)
                .await
                .context("reading own pending entries")?;
            let entries = read_reply_entries(&reply);
            let Some(last) = entries.last() else {
                return Ok(());
            };
            cursor = last.id.clone();
            tracing::info!(
                entries = entries.len(),
                "recovering this consumer's pending entries"
            );
            let counts = self.delivery_counts(&entries).await?;
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
        let mut blocking: Option<MultiplexedConnection> = None;
        while !self.shutdown.is_cancelled() {
            let first = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                permit = self.permits.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let conn = match &mut blocking {
                Some(conn) => conn,
                None => match shop_common::redis::dedicated_connection(&self.redis_url, READ_BLOCK)
                    .await
                {
                    Ok(conn) => blocking.insert(conn),
                    Err(e) => {
                        tracing::warn!("Redis unavailable for reading: {e:#}");
                        drop(first);
                        self.pause(REDIS_RETRY).await;
                        continue;
                    }
                },
            };
            let want = self.permits.available_permits() + 1;
            let read: RedisResult<Value> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&self.cfg.group)
                .arg(&self.cfg.consumer)
                .arg("COUNT")
                .arg(want)
                .arg("BLOCK")
                .arg(READ_BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&self.cfg.orders_stream)
                .arg(">")
                .query_async(conn)
                .await;
            match read {
                Ok(reply) => {
                    let mut first = Some(first);
                    for entry in read_reply_entries(&reply) {
                        // A first delivery: no need to ask for its count.
                        self.dispatch(entry, 1, first.take()).await;
                    }
                }
                Err(e) => {
                    tracing::warn!("reading the orders stream failed: {e}");
                    blocking = None;
                    drop(first);
                    if e.code() == Some("NOGROUP") {
                        // The stream was deleted under us: start over from its beginning.
                        let _ = self.create_group().await;
                    }
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
            self.dead_letter(entry, order_id, &reason).await?;
        }
        let Some(order_id) = order_id else {
            if !poisoned {
                self.dead_letter(entry, None, "malformed entry: no valid order_id")
                    .await?;
            }
            return self.ack(&entry.id).await;
        };
        let mode = if poisoned {
            Mode::DeadLetter
        } else {
            Mode::Normal
        };
        match self.executor.run(order_id, mode).await? {
            Disposition::Final(_) => self.ack_final(&entry.id, order_id).await,
            Disposition::UnknownOrder => {
                if !poisoned {
                    self.dead_letter(entry, Some(order_id), "unknown order")
                        .await?;
                }
                self.ack(&entry.id).await
            }
            Disposition::Abandoned => Ok(()),
        }
    }

    async fn dead_letter(&self, entry: &Entry, order_id: Option<Uuid>, reason: &str) -> Result<()> {
        tracing::warn!(stream_id = %entry.id, ?order_id, reason, "dead-lettering a stream entry");
        let order_id = order_id.map(|id| id.to_string()).unwrap_or_default();
        let _: String = redis::cmd("XADD")
            .arg(&self.cfg.dead_letter_stream)
            .arg("*")
            .arg("order_id")
            .arg(order_id)
            .arg("stream_id")
            .arg(&entry.id)
            .arg("reason")
            .arg(reason)
            .arg("payload")
            .arg(entry.payload())
            .query_async(&mut *self.conn().await?)
            .await
            .context("XADD to the dead-letter stream")?;
        metrics::counter!("mediator_dead_letters_total").increment(1);
        Ok(())
    }

    /// XACK plus the "order is final" signal that long-polling readers of the order API wait on,
    /// in one round trip. The signal is a hint: a reader that misses it re-reads at its deadline.
    async fn ack_final(&self, stream_id: &str, order_id: Uuid) -> Result<()> {
        let _: () = redis::pipe()
            .cmd("XACK")
            .arg(&self.cfg.orders_stream)
            .arg(&self.cfg.group)
            .arg(stream_id)
            .ignore()
            .cmd("PUBLISH")
            .arg(order::outbox::final_channel(&self.cfg.orders_stream))
            .arg(order_id.to_string())
            .ignore()
            .query_async(&mut *self.conn().await?)
            .await
            .context("XACK + PUBLISH")?;
        Ok(())
    }

    async fn ack(&self, stream_id: &str) -> Result<()> {
        let _: i64 = redis::cmd("XACK")
            .arg(&self.cfg.orders_stream)
            .arg(&self.cfg.group)
            .arg(stream_id)
            .query_async(&mut *self.conn().await?)
            .await
            .context("XACK")?;
        Ok(())
    }

    /// How often each entry (now this consumer's) has been delivered.
    async fn delivery_counts(&self, entries: &[Entry]) -> Result<HashMap<String, u64>> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(HashMap::new());
        };
        let pending: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&self.cfg.orders_stream)
            .arg(&self.cfg.group)
            .arg(&first.id)
            .arg(&last.id)
            .arg(entries.len() + self.cfg.concurrency)
            .arg(&self.cfg.consumer)
            .query_async(&mut *self.conn().await?)
            .await
            .context("XPENDING")?;
        Ok(pending
            .ids
            .into_iter()
            .map(|p| (p.id, p.times_delivered as u64))
            .collect())
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
            if let Err(e) = self.trim().await {
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
        let lost: Vec<String> = HEARTBEAT
            .key(&self.cfg.orders_stream)
            .arg(&self.cfg.group)
            .arg(&self.cfg.consumer)
            .arg(&ids)
            .invoke_async(&mut *self.conn().await?)
            .await
            .context("heartbeat script")?;
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
            let first = tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                permit = self.permits.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => return Ok(()),
                },
            };
            let free = self.permits.available_permits() + 1;
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(&self.cfg.orders_stream)
                .arg(&self.cfg.group)
                .arg(&self.cfg.consumer)
                .arg(self.cfg.claim_min_idle.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(free)
                .query_async(&mut *self.conn().await?)
                .await
                .context("XAUTOCLAIM")?;
            let (next, claimed) = autoclaim_reply(&reply);
            let entries: Vec<Entry> = {
                let in_flight = self.in_flight();
                claimed
                    .into_iter()
                    .filter(|e| !in_flight.contains_key(&e.id))
                    .collect()
            };
            if !entries.is_empty() {
                tracing::info!(entries = entries.len(), "took over idle entries");
                metrics::counter!("mediator_claimed_entries_total").increment(entries.len() as u64);
                let counts = self.delivery_counts(&entries).await?;
                let mut first = Some(first);
                for entry in entries {
                    let deliveries = counts.get(&entry.id).copied().unwrap_or(1);
                    self.dispatch(entry, deliveries, first.take()).await;
                }
            }
            match next {
                Some(next) if next != "0-0" => cursor = next,
                _ => return Ok(()),
            }
        }
    }

    /// Deletes the entries every consumer group of the stream is done with: those before the
    /// oldest pending entry, or before the last delivered one when nothing is pending.
    async fn trim(&self) -> Result<()> {
        let mut conn = self.conn().await?;
        let groups: redis::streams::StreamInfoGroupsReply = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.cfg.orders_stream)
            .query_async(&mut *conn)
            .await
            .context("XINFO GROUPS")?;
        let mut keep_from: Option<(u64, u64)> = None;
        for group in &groups.groups {
            let oldest_needed = if group.pending > 0 {
                let summary: redis::streams::StreamPendingReply = redis::cmd("XPENDING")
                    .arg(&self.cfg.orders_stream)
                    .arg(&group.name)
                    .query_async(&mut *conn)
                    .await
                    .context("XPENDING summary")?;
                match summary {
                    redis::streams::StreamPendingReply::Data(d) => d.start_id,
                    _ => group.last_delivered_id.clone(),
                }
            } else {
                group.last_delivered_id.clone()
            };
            let Some(id) = parse_stream_id(&oldest_needed) else {
                return Ok(());
            };
            keep_from = Some(keep_from.map_or(id, |k| k.min(id)));
        }
        let Some((ms, seq)) = keep_from.filter(|k| *k > (0, 0)) else {
            return Ok(());
        };
        let _: i64 = redis::cmd("XTRIM")
            .arg(&self.cfg.orders_stream)
            .arg("MINID")
            .arg("~")
            .arg(format!("{ms}-{seq}"))
            .query_async(&mut *conn)
            .await
            .context("XTRIM")?;
        Ok(())
    }

    /// Removes this consumer from the group, unless entries are still pending for it (removing
    /// it would drop them from the group's pending list: they would never be recovered).
    async fn leave_group_if_idle(&self) -> Result<()> {
        let mut conn = self.conn().await?;
        let pending: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&self.cfg.orders_stream)
            .arg(&self.cfg.group)
            .arg("-")
            .arg("+")
            .arg(1)
            .arg(&self.cfg.consumer)
            .query_async(&mut *conn)
            .await
            .context("XPENDING")?;
        if !pending.ids.is_empty() {
            tracing::info!("entries still pending for this consumer: staying in the group");
            return Ok(());
        }
        let _: i64 = redis::cmd("XGROUP")
            .arg("DELCONSUMER")
            .arg(&self.cfg.orders_stream)
            .arg(&self.cfg.group)
            .arg(&self.cfg.consumer)
            .query_async(&mut *conn)
            .await
            .context("XGROUP DELCONSUMER")?;
        Ok(())
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

// ------------------------------------------------------------------ reply parsing
// Parsed by hand: an entry deleted from the stream comes back from the pending list with a nil
// field list, which must surface as a malformed entry (dead-lettered), not as a reply error.

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// `[[id, [field, value, ...] | nil], ...]`
fn entries(v: &Value) -> Vec<Entry> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(parts) = item else {
                return None;
            };
            let id = text(parts.first()?)?;
            let fields = match parts.get(1) {
                Some(Value::Array(kv)) => kv
                    .chunks(2)
                    .filter_map(|pair| Some((text(pair.first()?)?, text(pair.get(1)?)?)))
                    .collect(),
                Some(Value::Map(kv)) => kv
                    .iter()
                    .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
                    .collect(),
                _ => Vec::new(),
            };
            Some(Entry { id, fields })
        })
        .collect()
}

/// An XREADGROUP reply: nil, `[[stream, entries]]`, or (RESP3) `{stream: entries}`.
fn read_reply_entries(v: &Value) -> Vec<Entry> {
    match v {
        Value::Array(streams) => streams
            .iter()
            .flat_map(|s| match s {
                Value::Array(parts) => parts.get(1).map(entries).unwrap_or_default(),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams.iter().flat_map(|(_, e)| entries(e)).collect(),
        _ => Vec::new(),
    }
}

/// An XAUTOCLAIM reply: `[next cursor, entries, deleted ids]`.
fn autoclaim_reply(v: &Value) -> (Option<String>, Vec<Entry>) {
    let Value::Array(parts) = v else {
        return (None, Vec::new());
    };
    let next = parts.first().and_then(text);
    let claimed = parts.get(1).map(entries).unwrap_or_default();
    (next, claimed)
}

fn parse_stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_read_replies_including_deleted_entries() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("orders"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("order_id"), bulk("x")]),
                ]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ]),
        ])]);
        let e = read_reply_entries(&reply);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].id, "1-0");
        assert_eq!(e[0].fields, [("order_id".to_string(), "x".to_string())]);
        assert!(e[1].fields.is_empty());
        assert!(e[1].order_id().is_none());
        assert!(read_reply_entries(&Value::Nil).is_empty());
    }

    #[test]
    fn parses_stream_ids() {
        assert_eq!(
            parse_stream_id("1700000000000-3"),
            Some((1_700_000_000_000, 3))
        );
        assert_eq!(parse_stream_id("0-0"), Some((0, 0)));
        assert_eq!(parse_stream_id("x"), None);
    }
}
