//! Getting orders onto the saga stream without ever losing one. The POST stores the order, then
//! publishes it at once (XADD) and hands its id to a flusher that sets `published_at` in batches
//! (one UPDATE for many orders instead of one commit per order), each id [`FLUSH_DELAY`] after its
//! publication: by then most orders are final, and the mediator's final transition has already
//! set `published_at`, so the UPDATE skips them instead of rewriting the row (and every index of
//! it) once more. A sweep re-publishes whatever is
//! still unpublished after REPUBLISH_AFTER_SECS: Redis was down at the POST, the process died
//! between the INSERT and the XADD, or the flag write was lost. A second, slower net re-publishes
//! orders published long ago (REPUBLISH_STALE_AFTER_SECS) that are still not final: their entry
//! was lost with Redis's data (a Redis restarted without its append-only file), or never made
//! progress for a reason nobody foresaw. The cost of that safety is an occasional duplicate stream
//! entry, which the mediator tolerates (REPUBLISH_AFTER_SECS should stay well above
//! [`FLUSH_DELAY`], or unfinished orders are published twice).

use crate::db;
use anyhow::{Context, Result};
use shop_common::redis::RedisPool;
use sqlx::PgPool;
use std::{collections::VecDeque, sync::Arc, time::Duration};
use tokio::{sync::mpsc, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The stream entry's one field.
pub const FIELD: &str = "order_id";

/// The pub/sub channel on which the mediator announces orders that reached a final state.
pub fn final_channel(stream: &str) -> String {
    format!("{stream}.final")
}

/// A POST never waits longer than this for Redis: past it the order is left to the sweep.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);
const FLUSH_BATCH: usize = 1024;
/// How long a published order waits for its flag (see the module docs).
pub const FLUSH_DELAY: Duration = Duration::from_secs(1);
/// Ids waiting for their `published_at`; when full, the sweep publishes the overflow again.
const FLUSH_QUEUE: usize = 16 * 1024;
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);
const SWEEP_BATCH: i64 = 500;

#[derive(Clone)]
pub struct Outbox {
    redis: RedisPool,
    stream: Arc<str>,
    /// Published ids and when.
    published: mpsc::Sender<(Uuid, Instant)>,
}

impl Outbox {
    /// The outbox and its flusher task. The task ends, after writing everything it was sent, once
    /// every clone of the outbox is dropped.
    pub fn new(pool: PgPool, redis: RedisPool, stream: &str) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(FLUSH_QUEUE);
        let flusher = tokio::spawn(flush(pool, rx));
        let outbox = Self {
            redis,
            stream: stream.into(),
            published: tx,
        };
        (outbox, flusher)
    }

    pub fn redis(&self) -> &RedisPool {
        &self.redis
    }

    /// Puts the stored order `id` on the stream. An error leaves it to the sweep.
    pub async fn publish(&self, id: Uuid) -> Result<()> {
        xadd(&self.redis, &self.stream, &[id]).await?;
        if self.published.try_send((id, Instant::now())).is_err() {
            metrics::counter!("order_publish_flag_dropped_total").increment(1);
        }
        Ok(())
    }
}

/// XADDs one entry per id, in one round trip, within [`PUBLISH_TIMEOUT`].
pub async fn xadd(redis: &RedisPool, stream: &str, ids: &[Uuid]) -> Result<()> {
    let send = async {
        let mut conn = redis.get().await.context("taking a Redis connection")?;
        let mut pipe = ::redis::pipe();
        for id in ids {
            pipe.cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg(FIELD)
                .arg(id.to_string())
                .ignore();
        }
        pipe.query_async::<()>(&mut *conn)
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
            let due = waiting.front().map(|(_, at)| *at + FLUSH_DELAY);
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
    redis: &RedisPool,
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
    redis: &RedisPool,
    stream: &str,
    older_than: Duration,
) -> Result<usize> {
    let mut tx = pool.begin().await.context("starting a stale sweep")?;
    let ids = db::lock_stale(&mut *tx, older_than, SWEEP_BATCH).await?;
    if ids.is_empty() {
        return Ok(0);
    }
    xadd(redis, stream, &ids).await?;
    db::mark_republished(&mut *tx, &ids).await?;
    tx.commit().await.context("committing a stale sweep")?;
    metrics::counter!("order_republished_stale_total").increment(ids.len() as u64);
    tracing::warn!(
        orders = ids.len(),
        "re-published orders unfinished long after publication"
    );
    Ok(ids.len())
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
    redis: RedisPool,
    stream: String,
    after: SweepAfter,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
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
