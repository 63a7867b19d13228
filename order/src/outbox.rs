//! Getting orders onto the saga stream without ever losing one. The POST stores the order, then
//! publishes it at once (XADD) and hands its id to a flusher that sets `published_at` in batches
//! (one UPDATE for many orders instead of one commit per order), each id [`FLUSH_DELAY`] after its
//! publication (and up to [`FLUSH_GATHER`] more, to go with others): by then most orders are
//! final, and the mediator's final transition has already set `published_at`, so the UPDATE skips
//! them instead of rewriting the row (and every index of it) once more. A sweep re-publishes
//! whatever is still unpublished after REPUBLISH_AFTER_SECS: Redis was down at the POST, the process died
//! between the INSERT and the XADD, or the flag write was lost. A second, slower net re-publishes
//! orders published long ago (REPUBLISH_STALE_AFTER_SECS) that are still not final: their entry
//! never made progress for a reason nobody foresaw. Entries lost with Redis's data (a restart
//! that lost the tail of the append-only file, or all of it; the stream deleted) are not left to
//! that slow net: every sweep tick checks which Redis process holds the stream, and when it is
//! not the one recorded, or the stream is gone, every unfinished order is published again at once
//! ([`recover_lost_entries`]). The cost of that safety is an occasional duplicate stream entry,
//! which the mediator tolerates (REPUBLISH_AFTER_SECS should stay well above [`FLUSH_DELAY`], or
//! unfinished orders are published twice).

use anyhow::{Context, Result};
use order_store::{
    db::{self, Order},
    stream::FIELD,
};
use shop_common::redis::Redis;
use sqlx::PgPool;
use std::{collections::VecDeque, sync::Arc, time::Duration};
use time::OffsetDateTime;
use tokio::{sync::mpsc, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A POST never waits longer than this for Redis: past it the order is left to the sweep.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);
const FLUSH_BATCH: usize = 1024;
/// How long a published order waits for its flag (see the module docs).
pub const FLUSH_DELAY: Duration = Duration::from_secs(1);
/// Once the oldest waiting id is due, it waits this much longer for those due after it, so that
/// one UPDATE writes the flags of many: at a steady rate, ids fall due one by one.
const FLUSH_GATHER: Duration = Duration::from_millis(250);
/// Ids waiting for their `published_at`; when full, the sweep publishes the overflow again.
const FLUSH_QUEUE: usize = 16 * 1024;
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);
const SWEEP_BATCH: i64 = 500;

#[derive(Clone)]
pub struct Outbox {
    redis: Redis,
    stream: Arc<str>,
    /// Published ids and when.
    published: mpsc::Sender<(Uuid, Instant)>,
}

impl Outbox {
    /// The outbox and its flusher task. The task ends, after writing everything it was sent, once
    /// every clone of the outbox is dropped.
    pub fn new(pool: PgPool, redis: Redis, stream: &str) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(FLUSH_QUEUE);
        let flusher = tokio::spawn(flush(pool, rx));
        let outbox = Self {
            redis,
            stream: stream.into(),
            published: tx,
        };
        (outbox, flusher)
    }

    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// Puts a newly stored order on the stream, with its saga's terms (the mediator's first run
    /// need not read them back). An error leaves it to the sweep.
    pub async fn publish_new(&self, order: &Order) -> Result<()> {
        self.publish_entry(order.id, order.terms().fields()).await
    }

    /// Puts the stored order `id` on the stream again, the id alone: the mediator reads what is
    /// recorded (a cancel). An error leaves it to the sweep.
    pub async fn publish(&self, id: Uuid) -> Result<()> {
        self.publish_entry(id, [(FIELD, id.to_string())]).await
    }

    async fn publish_entry<const N: usize>(
        &self,
        id: Uuid,
        fields: [(&'static str, String); N],
    ) -> Result<()> {
        send(&self.redis, &self.stream, [fields]).await?;
        if self.published.try_send((id, Instant::now())).is_err() {
            metrics::counter!("order_publish_flag_dropped_total").increment(1);
        }
        Ok(())
    }
}

/// XADDs one entry per id, the id alone (the mediator reads the order), in one round trip, within
/// [`PUBLISH_TIMEOUT`].
pub async fn xadd(redis: &Redis, stream: &str, ids: &[Uuid]) -> Result<()> {
    send(
        redis,
        stream,
        ids.iter().map(|id| [(FIELD, id.to_string())]),
    )
    .await
}

/// XADDs one entry per item of `entries`, in one round trip, within [`PUBLISH_TIMEOUT`].
async fn send<E>(redis: &Redis, stream: &str, entries: impl IntoIterator<Item = E>) -> Result<()>
where
    E: IntoIterator<Item = (&'static str, String)>,
{
    let mut pipe = ::redis::pipe();
    for fields in entries {
        let xadd = pipe.cmd("XADD").arg(stream).arg("*");
        for (name, value) in fields {
            xadd.arg(name).arg(value);
        }
        xadd.ignore();
    }
    let send = async {
        pipe.query_async::<()>(&mut redis.connection())
            .await
            .context("XADD to the orders stream")
    };
    tokio::time::timeout(PUBLISH_TIMEOUT, send)
        .await
        .context("Redis did not answer in time")?
}

async fn flush(pool: PgPool, mut rx: mpsc::Receiver<(Uuid, Instant)>) {
    // In publication order, so the oldest is first.
    let mut waiting = VecDeque::new();
    let mut received = Vec::with_capacity(FLUSH_BATCH);
    let mut open = true;
    while open || !waiting.is_empty() {
        // Once the outbox is gone (shutdown), what is left is written at once.
        if open {
            let due = waiting
                .front()
                .map(|(_, at)| *at + FLUSH_DELAY + FLUSH_GATHER);
            tokio::select! {
                n = rx.recv_many(&mut received, FLUSH_BATCH) => {
                    open = n > 0;
                    waiting.extend(received.drain(..));
                    continue;
                }
                _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {}
            }
        }
        let now = Instant::now();
        let mut batch = Vec::with_capacity(FLUSH_BATCH);
        while batch.len() < FLUSH_BATCH
            && let Some((id, at)) = waiting.front()
            && (*at + FLUSH_DELAY <= now || !open)
        {
            batch.push(*id);
            waiting.pop_front();
        }
        if batch.is_empty() {
            continue;
        }
        if let Err(e) = db::mark_published(&pool, &batch).await {
            // Harmless: the sweep publishes these again and the mediator skips the duplicates.
            tracing::warn!(orders = batch.len(), "could not record publication: {e:#}");
        }
    }
}

/// Publishes one batch of orders unpublished for longer than `older_than`; returns how many.
pub async fn sweep_once(
    pool: &PgPool,
    redis: &Redis,
    stream: &str,
    older_than: Duration,
) -> Result<usize> {
    let mut tx = pool.begin().await.context("starting a sweep")?;
    let ids = db::lock_unpublished(&mut *tx, older_than, SWEEP_BATCH).await?;
    if ids.is_empty() {
        return Ok(0);
    }
    // Published before the flag is committed: a crash in between only duplicates entries.
    xadd(redis, stream, &ids).await?;
    db::mark_published(&mut *tx, &ids).await?;
    tx.commit().await.context("committing a sweep")?;
    metrics::counter!("order_republished_total").increment(ids.len() as u64);
    tracing::info!(
        orders = ids.len(),
        "re-published orders that had not reached the stream"
    );
    Ok(ids.len())
}

/// Publishes again one batch of orders published longer than `older_than` ago and still not
/// final; returns how many.
pub async fn sweep_stale_once(
    pool: &PgPool,
    redis: &Redis,
    stream: &str,
    older_than: Duration,
) -> Result<usize> {
    let before = OffsetDateTime::now_utc() - older_than;
    let n = republish_unfinished(pool, redis, stream, before, false).await?;
    if n > 0 {
        metrics::counter!("order_republished_stale_total").increment(n as u64);
        tracing::warn!(
            orders = n,
            "re-published orders unfinished long after publication"
        );
    }
    Ok(n)
}

/// Publishes again one batch of unfinished orders published before `before` (and, with
/// `with_unflagged`, those whose publication flag is not written yet); returns how many.
async fn republish_unfinished(
    pool: &PgPool,
    redis: &Redis,
    stream: &str,
    before: OffsetDateTime,
    with_unflagged: bool,
) -> Result<usize> {
    let mut tx = pool.begin().await.context("starting a re-publication")?;
    let ids = db::lock_unfinished(&mut *tx, before, with_unflagged, SWEEP_BATCH).await?;
    if ids.is_empty() {
        return Ok(0);
    }
    xadd(redis, stream, &ids).await?;
    db::mark_republished(&mut *tx, &ids).await?;
    tx.commit().await.context("committing a re-publication")?;
    Ok(ids.len())
}

/// Where the stream's entries live: the Redis process (its run id, new at every start) and
/// whether the stream exists in it.
async fn stream_home(redis: &Redis, stream: &str) -> Result<(String, bool)> {
    let mut conn = redis.connection();
    let (info, exists): (String, bool) = ::redis::pipe()
        .cmd("INFO")
        .arg("server")
        .cmd("EXISTS")
        .arg(stream)
        .query_async(&mut conn)
        .await
        .context("INFO server + EXISTS")?;
    let run_id = info
        .lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .context("no run_id in INFO server")?;
    Ok((run_id.trim().to_owned(), exists))
}

/// Notices that Redis may have lost stream entries, and then publishes every unfinished order
/// again at once. Evidence of a loss: the stream is gone (deleted, or Redis restarted without
/// its data), or Redis is another process than the one last recorded in the database (a restart
/// may lose the last second of the append-only file; a fail-over, whatever the replica had not
/// received). A restart that lost nothing costs one duplicate entry per unfinished order, which
/// the mediator skips. `known` is the run id this process last checked.
pub async fn recover_lost_entries(
    pool: &PgPool,
    redis: &Redis,
    stream: &str,
    known: &mut Option<String>,
) -> Result<usize> {
    let (run_id, exists) = stream_home(redis, stream).await?;
    if exists && known.as_deref() == Some(run_id.as_str()) {
        return Ok(0);
    }
    if exists && db::recorded_redis_run(pool).await?.as_deref() == Some(run_id.as_str()) {
        *known = Some(run_id);
        return Ok(0);
    }
    // Everything published before now; entries published meanwhile are in this Redis already.
    // Orders whose flag is not written yet may have been published into the lost tail, too.
    let before = OffsetDateTime::now_utc();
    let mut total = 0;
    loop {
        let n = republish_unfinished(pool, redis, stream, before, true).await?;
        total += n;
        if (n as i64) < SWEEP_BATCH {
            break;
        }
    }
    // Recorded only once all are out again: a failure above retries everything next tick.
    db::record_redis_run(pool, &run_id).await?;
    *known = Some(run_id);
    if total > 0 {
        metrics::counter!("order_republished_after_loss_total").increment(total as u64);
        tracing::warn!(
            orders = total,
            stream_existed = exists,
            "Redis may have lost stream entries (new Redis process or no stream): \
             re-published every unfinished order"
        );
    }
    Ok(total)
}

/// When each sweep considers an order.
#[derive(Debug, Clone, Copy)]
pub struct SweepAfter {
    /// Unpublished for this long.
    pub unpublished: Duration,
    /// Published this long ago and still not final.
    pub stale: Duration,
}

/// Sweeps every [`SWEEP_EVERY`] until `shutdown`.
pub async fn run_sweeper(
    pool: PgPool,
    redis: Redis,
    stream: String,
    after: SweepAfter,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut known_redis: Option<String> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = recover_lost_entries(&pool, &redis, &stream, &mut known_redis).await {
            tracing::warn!(
                "checking Redis for lost stream entries failed, retrying next tick: {e:#}"
            );
        }
        loop {
            match sweep_once(&pool, &redis, &stream, after.unpublished).await {
                Ok(n) if n as i64 == SWEEP_BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!("sweep failed, retrying next tick: {e:#}");
                    break;
                }
            }
        }
        if let Err(e) = sweep_stale_once(&pool, &redis, &stream, after.stale).await {
            tracing::warn!("stale sweep failed, retrying next tick: {e:#}");
        }
    }
}
