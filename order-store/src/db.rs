//! All SQL on the `orders` database: the order API's and the mediator's. Both services reach it
//! only through these functions, so every status transition and its guard is written here, once.
//!
//! Inserts, transitions and reads come in batches (many requests' or sagas' in one statement,
//! grouped by the callers with `shop_common::batched`). The statements that join `orders` to the
//! rows of a batch come in two forms of one text: for a batch of one, the row is the parameters'
//! first elements and the order is found by its key (`id = $1[1]`), kept prepared; for a batch of
//! many, the rows are an `UNNEST` of the parameters, and the statement is not kept prepared (sqlx's
//! `persistent(false)`): planned on each run, with the batch's and the table's real sizes. A
//! prepared join to an `UNNEST` soon runs a generic plan, costed once; made while `orders` was
//! small, it hash-joins a sequential scan of the whole table, and goes on doing so as the table
//! grows (seen in `make bench`: a transition at 3 ms instead of 0.2, the orders database's CPU per
//! saga doubled). Planning each run costs ~0.2 ms, which a batch of many shares; the batch of one,
//! the usual one under a moderate load, does not pay it.

use crate::stream::Terms;
use anyhow::{Context, Result};
use serde::Serialize;
use shop_common::domain::Money;
use sqlx::{
    Arguments, FromRow, PgExecutor, PgPool, Row, error::BoxDynError, postgres::PgArguments,
};
use std::{collections::HashMap, time::Duration};
use time::OffsetDateTime;
use uuid::Uuid;

// The statuses and the saga log's rows are the API's types (an order view shows them as stored):
// re-exported, so that the order API and the mediator name them with the queries that use them.
pub use shop_common::api::{SagaStep, Status, StepKind, StepOutcome};

/// The reason of an order the customer cancelled.
pub const CANCELLED_REASON: &str = "Cancelled by the customer";

/// What a cancel request found.
#[derive(Debug)]
pub enum Cancel {
    /// Moved to `cancelling` now: the caller puts it on the saga stream.
    Requested(Order),
    /// Already cancelling or cancelled: nothing changed.
    Already(Order),
    /// Failed, or being aborted (it will fail): there is nothing to cancel.
    Final(Order),
    /// No such order of this user.
    NotFound,
}

/// How often [`request_cancel`] re-reads an order whose status moved under it (the saga moved it
/// on meanwhile). Each round is one transition further, and a saga has few.
const CANCEL_ROUNDS: usize = 5;

/// The customer's cancel of order `id`: a guarded `pending|completed -> cancelling` (reason
/// [`CANCELLED_REASON`], a `cancel` row in the saga log, `published_at` back to NULL: the order
/// must go on the stream again). A saga finishing at the same moment either moves first (the
/// cancel then applies to what it recorded) or loses its own guard and follows the cancel.
pub async fn request_cancel(pool: &PgPool, username: &str, id: Uuid) -> Result<Cancel> {
    for _ in 0..CANCEL_ROUNDS {
        let Some(order) = find_order(pool, id).await? else {
            return Ok(Cancel::NotFound);
        };
        if order.username != username {
            return Ok(Cancel::NotFound);
        }
        match order.status {
            Status::Cancelling | Status::Cancelled => return Ok(Cancel::Already(order)),
            Status::Failed | Status::Compensating => return Ok(Cancel::Final(order)),
            Status::Pending | Status::Completed => {}
        }
        let now = OffsetDateTime::now_utc();
        let request = NewStep {
            participant: "customer",
            kind: StepKind::Cancel,
            outcome: StepOutcome::Ok,
            error_code: None,
            started_at: now,
            finished_at: now,
        };
        let cancel = Move {
            order_id: id,
            from: order.status,
            to: Status::Cancelling,
            reason: Some(CANCELLED_REASON),
            steps: &[request],
            publication: Publication::Again,
        };
        let moved = guarded_move(pool, &cancel).await?;
        if let Some(order) = moved {
            return Ok(Cancel::Requested(order));
        }
    }
    anyhow::bail!("order {id} kept changing while it was being cancelled")
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Order {
    pub id: Uuid,
    pub username: String,
    #[sqlx(try_from = "i64")]
    pub amount: Money,
    pub item: i64,
    pub slot: String,
    pub status: Status,
    pub reason: Option<String>,
    pub idempotency_key: Option<String>,
    pub published_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl Order {
    /// What its saga needs of it.
    pub fn terms(&self) -> Terms {
        Terms {
            id: self.id,
            username: self.username.clone(),
            amount: self.amount,
            item: self.item,
            slot: self.slot.clone(),
        }
    }
}

macro_rules! order_columns {
    () => {
        "id, username, amount, item, slot, status, reason, idempotency_key, published_at, \
         created_at, updated_at"
    };
}

/// An order to store, as its POST asked.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub username: String,
    pub amount: Money,
    pub item: i64,
    pub slot: String,
    pub idempotency_key: Option<String>,
}

pub enum Inserted {
    Created(Order),
    /// The caller's Idempotency-Key was used before: the order it created then.
    Existing(Order),
}

/// Stores a new pending order, or returns the one this user's Idempotency-Key already created.
pub async fn insert_order(pool: &PgPool, new: &NewOrder) -> Result<Inserted> {
    let stored = insert_orders(pool, std::slice::from_ref(new))
        .await?
        .pop()
        .flatten();
    inserted(pool, new, stored).await
}

/// Stores new pending orders in ONE statement (one commit for all of them): each one's stored
/// order, in `new`'s order, or `None` where its Idempotency-Key was used before (then see
/// [`inserted`]). Rows go in key order, so two such statements cannot deadlock on keys they share.
pub async fn insert_orders(pool: &PgPool, new: &[NewOrder]) -> Result<Vec<Option<Order>>> {
    let ids: Vec<Uuid> = new.iter().map(|_| Uuid::now_v7()).collect();
    let stored = sqlx::query_as::<_, Order>(concat!(
        "INSERT INTO orders (id, username, amount, item, slot, idempotency_key) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], \
                              $6::text[]) AS new(id, username, amount, item, slot, idempotency_key) \
         ORDER BY username, idempotency_key \
         ON CONFLICT (username, idempotency_key) DO NOTHING RETURNING ",
        order_columns!()
    ))
    .bind(&ids)
    .bind(new.iter().map(|n| n.username.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|n| n.amount.minor()).collect::<Vec<_>>())
    .bind(new.iter().map(|n| n.item).collect::<Vec<_>>())
    .bind(new.iter().map(|n| n.slot.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|n| n.idempotency_key.as_deref()).collect::<Vec<_>>())
    .fetch_all(pool)
    .await
    .context("inserting orders")?;
    let mut by_id: HashMap<Uuid, Order> = stored.into_iter().map(|o| (o.id, o)).collect();
    Ok(ids.iter().map(|id| by_id.remove(id)).collect())
}

/// What storing `new` did, given what its INSERT returned: `stored`, or, if it conflicted, the
/// order its Idempotency-Key created before.
pub async fn inserted(pool: &PgPool, new: &NewOrder, stored: Option<Order>) -> Result<Inserted> {
    if let Some(order) = stored {
        return Ok(Inserted::Created(order));
    }
    // Only a key can conflict. Read in a new statement: the conflicting row may have been
    // committed after the INSERT's snapshot was taken.
    let key = new
        .idempotency_key
        .as_deref()
        .context("an order without an Idempotency-Key conflicted")?;
    let existing = sqlx::query_as::<_, Order>(concat!(
        "SELECT ",
        order_columns!(),
        " FROM orders WHERE username = $1 AND idempotency_key = $2"
    ))
    .bind(&new.username)
    .bind(key)
    .fetch_optional(pool)
    .await
    .context("reading an order by Idempotency-Key")?
    .context("order vanished after a conflicting insert")?;
    Ok(Inserted::Existing(existing))
}

pub async fn find_order(pool: &PgPool, id: Uuid) -> Result<Option<Order>> {
    sqlx::query_as::<_, Order>(concat!(
        "SELECT ",
        order_columns!(),
        " FROM orders WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
    .context("reading an order")
}

/// The order, whoever's (an operator's view), with its saga log.
pub async fn find_any_order_with_log(
    pool: &PgPool,
    id: Uuid,
) -> Result<Option<(Order, Vec<SagaStep>)>> {
    let wanted = Wanted { id, owner: None };
    Ok(find_orders_with_log(pool, &[wanted]).await?.pop().flatten())
}

/// An order to read: `id`, if it belongs to `owner` (anyone's if `None`).
#[derive(Debug, Clone)]
pub struct Wanted {
    pub id: Uuid,
    pub owner: Option<String>,
}

/// An order with its saga log, as [`find_orders_with_log`] reads it.
pub type OrderWithLog = (Order, Vec<SagaStep>);

/// The read of a batch of orders with their logs, whose rows `w` (parameters $1 and $2, one array
/// per column) come from `$w`, as for [`MOVE_ONE`] and [`MOVE_MANY`].
macro_rules! orders_with_log {
    ($w:literal) => {
        concat!(
            "SELECT w.n, o.id, o.username, o.amount, o.item, o.slot, o.status, o.reason, \
                    o.idempotency_key, o.published_at, o.created_at, o.updated_at, \
                    s.seq, s.participant, s.kind, s.outcome, s.error_code, s.started_at, \
                    s.finished_at \
             FROM (",
            $w,
            ") w \
             JOIN orders o ON o.id = w.id AND (w.owner IS NULL OR o.username = w.owner) \
             LEFT JOIN saga_steps s ON s.order_id = o.id \
             ORDER BY w.n, s.seq"
        )
    };
}

const READ_ONE: &str =
    orders_with_log!("SELECT ($1::uuid[])[1] AS id, ($2::text[])[1] AS owner, 1::bigint AS n");

const READ_MANY: &str = orders_with_log!(
    "SELECT * FROM UNNEST($1::uuid[], $2::text[]) WITH ORDINALITY AS w(id, owner, n)"
);

/// The orders `wanted`, each with its saga log, in one query (a LEFT JOIN, one row per step, the
/// order's columns repeated): in `wanted`'s order, `None` where there is no such order (of that
/// owner).
pub async fn find_orders_with_log(
    pool: &PgPool,
    wanted: &[Wanted],
) -> Result<Vec<Option<OrderWithLog>>> {
    let statement = match wanted {
        [_] => READ_ONE,
        _ => READ_MANY,
    };
    let rows = sqlx::query(statement)
        .bind(wanted.iter().map(|w| w.id).collect::<Vec<_>>())
        .bind(
            wanted
                .iter()
                .map(|w| w.owner.as_deref())
                .collect::<Vec<_>>(),
        )
        .persistent(wanted.len() == 1)
        .fetch_all(pool)
        .await
        .context("reading orders and their saga logs")?;
    let mut found: Vec<Option<OrderWithLog>> = wanted.iter().map(|_| None).collect();
    for row in &rows {
        let n: i64 = row.try_get("n")?;
        let slot = usize::try_from(n - 1)
            .ok()
            .and_then(|i| found.get_mut(i))
            .context("a read order's number is out of range")?;
        let (_, log) = match slot {
            Some(found) => found,
            first_row => first_row.insert((
                Order::from_row(row).context("decoding an order")?,
                Vec::new(),
            )),
        };
        // NULL step columns: the order has no step yet.
        let Some(seq) = row.try_get::<Option<i32>, _>("seq")? else {
            continue;
        };
        log.push(SagaStep {
            seq,
            participant: row.try_get("participant")?,
            kind: row.try_get("kind")?,
            outcome: row.try_get("outcome")?,
            error_code: row.try_get("error_code")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
        });
    }
    Ok(found)
}

/// The user's orders, oldest first.
pub async fn list_user_orders(pool: &PgPool, username: &str) -> Result<Vec<Order>> {
    sqlx::query_as::<_, Order>(concat!(
        "SELECT ",
        order_columns!(),
        " FROM orders WHERE username = $1 ORDER BY created_at, id"
    ))
    .bind(username)
    .fetch_all(pool)
    .await
    .context("listing orders")
}

// ------------------------------------------------------------------ operators' views

/// Every user's orders, newest first, only those in `status` if given, at most `limit`.
pub async fn list_orders(pool: &PgPool, status: Option<Status>, limit: i64) -> Result<Vec<Order>> {
    sqlx::query_as::<_, Order>(concat!(
        "SELECT ",
        order_columns!(),
        " FROM orders WHERE ($1::text IS NULL OR status = $1) \
         ORDER BY created_at DESC, id DESC LIMIT $2"
    ))
    .bind(status)
    .bind(limit)
    .fetch_all(pool)
    .await
    .context("listing every user's orders")
}

/// How many orders are in each status (those with none are absent).
pub async fn count_by_status(pool: &PgPool) -> Result<Vec<(Status, i64)>> {
    sqlx::query_as("SELECT status, count(*) FROM orders GROUP BY status ORDER BY status")
        .fetch_all(pool)
        .await
        .context("counting orders by status")
}

/// The orders that reached a final state in a recent window, and how long each took from its
/// POST (`created_at`) to that state (`updated_at`).
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct RecentFinals {
    pub count: i64,
    /// Percentiles 50, 90 and 99 in milliseconds; `None` when there was none.
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// [`RecentFinals`] of the last `window`. A cancelled order counts once it is cancelled.
pub async fn recent_finals(pool: &PgPool, window: Duration) -> Result<RecentFinals> {
    sqlx::query_as::<_, RecentFinals>(
        "WITH recent AS ( \
            SELECT extract(epoch FROM updated_at - created_at) * 1000 AS ms FROM orders \
            WHERE status = ANY($2) AND updated_at > now() - make_interval(secs => $1)) \
         SELECT count(*) AS count, \
                percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::float8 AS p50_ms, \
                percentile_cont(0.9) WITHIN GROUP (ORDER BY ms)::float8 AS p90_ms, \
                percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::float8 AS p99_ms \
         FROM recent",
    )
    .bind(window.as_secs_f64())
    .bind(Status::finals())
    .fetch_one(pool)
    .await
    .context("reading the orders finished recently")
}

// ------------------------------------------------------------------ publication (the outbox)

/// Records that these orders are on the saga stream.
pub async fn mark_published(db: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<()> {
    sqlx::query(
        "UPDATE orders SET published_at = now() WHERE id = ANY($1) AND published_at IS NULL",
    )
    .bind(ids)
    .execute(db)
    .await
    .context("marking orders published")?;
    Ok(())
}

/// Locks up to `limit` orders that are unpublished for longer than `older_than` since their last
/// change (their creation, or a cancel, which publishes them again), skipping rows
/// another sweeper (another order replica) holds, so replicas do not publish the same order twice.
/// Call inside a transaction; the locks last until it ends.
pub async fn lock_unpublished(
    db: impl PgExecutor<'_>,
    older_than: Duration,
    limit: i64,
) -> Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT id FROM orders \
         WHERE published_at IS NULL AND updated_at < now() - make_interval(secs => $1) \
         ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(older_than.as_secs_f64())
    .bind(limit)
    .fetch_all(db)
    .await
    .context("finding unpublished orders")
}

/// Locks up to `limit` orders that are still not final and were published before `before` (or, with
/// `with_unflagged`, whose publication flag is not written yet), skipping rows another sweeper
/// holds. Call inside a transaction.
pub async fn lock_unfinished(
    db: impl PgExecutor<'_>,
    before: OffsetDateTime,
    with_unflagged: bool,
    limit: i64,
) -> Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT id FROM orders \
         WHERE status IN ('pending', 'compensating', 'cancelling') \
           AND (published_at < $1 OR ($2 AND published_at IS NULL)) \
         ORDER BY published_at NULLS LAST LIMIT $3 FOR UPDATE SKIP LOCKED",
    )
    .bind(before)
    .bind(with_unflagged)
    .bind(limit)
    .fetch_all(db)
    .await
    .context("finding unfinished orders")
}

/// The Redis run id recorded by [`record_redis_run`], if any.
pub async fn recorded_redis_run(db: impl PgExecutor<'_>) -> Result<Option<String>> {
    sqlx::query_scalar("SELECT run_id FROM outbox_redis_run")
        .fetch_optional(db)
        .await
        .context("reading the recorded Redis run id")
}

/// Records `run_id` as the Redis that holds every unfinished order's stream entry.
pub async fn record_redis_run(db: impl PgExecutor<'_>, run_id: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO outbox_redis_run (run_id) VALUES ($1) \
         ON CONFLICT (singleton) DO UPDATE SET run_id = EXCLUDED.run_id, seen_at = now()",
    )
    .bind(run_id)
    .execute(db)
    .await
    .context("recording the Redis run id")?;
    Ok(())
}

/// Records that these orders were just published again.
pub async fn mark_republished(db: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<()> {
    sqlx::query("UPDATE orders SET published_at = now() WHERE id = ANY($1)")
        .bind(ids)
        .execute(db)
        .await
        .context("marking orders re-published")?;
    Ok(())
}

// ------------------------------------------------------------------ the saga (mediator)

/// One participant call, to be appended to the saga log.
#[derive(Debug, Clone)]
pub struct NewStep {
    pub participant: &'static str,
    pub kind: StepKind,
    pub outcome: StepOutcome,
    pub error_code: Option<String>,
    pub started_at: OffsetDateTime,
    pub finished_at: OffsetDateTime,
}

pub async fn saga_log(pool: &PgPool, order_id: Uuid) -> Result<Vec<SagaStep>> {
    sqlx::query_as::<_, SagaStep>(
        "SELECT seq, participant, kind, outcome, error_code, started_at, finished_at \
         FROM saga_steps WHERE order_id = $1 ORDER BY seq",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await
    .context("reading the saga log")
}

/// Column arrays for `UNNEST`: the logs of many moves go in one INSERT. `n` is the move's number
/// in its statement (1-based, as `WITH ORDINALITY` numbers the moves) and `k` the step's within it.
struct StepColumns {
    n: Vec<i64>,
    k: Vec<i32>,
    participant: Vec<&'static str>,
    kind: Vec<&'static str>,
    outcome: Vec<&'static str>,
    error_code: Vec<Option<String>>,
    started_at: Vec<OffsetDateTime>,
    finished_at: Vec<OffsetDateTime>,
}

impl StepColumns {
    fn of<'s>(logs: impl IntoIterator<Item = &'s [NewStep]>) -> Self {
        let mut c = Self {
            n: vec![],
            k: vec![],
            participant: vec![],
            kind: vec![],
            outcome: vec![],
            error_code: vec![],
            started_at: vec![],
            finished_at: vec![],
        };
        for (n, steps) in (1..).zip(logs) {
            for (k, step) in (1..).zip(steps) {
                c.n.push(n);
                c.k.push(k);
                c.participant.push(step.participant);
                c.kind.push(step.kind.as_str());
                c.outcome.push(step.outcome.as_str());
                c.error_code.push(step.error_code.clone());
                c.started_at.push(step.started_at);
                c.finished_at.push(step.finished_at);
            }
        }
        c
    }

    /// The statement's arguments: the eight step columns of `logs` ($1 to $8, as [`insert_steps!`]
    /// reads them), then the `trailing` ones ($9 on).
    fn then<'s>(
        logs: impl IntoIterator<Item = &'s [NewStep]>,
        trailing: impl FnOnce(&mut PgArguments) -> Result<(), BoxDynError>,
    ) -> Result<PgArguments> {
        let c = Self::of(logs);
        let mut args = PgArguments::default();
        let add = || -> Result<(), BoxDynError> {
            args.add(&c.n)?;
            args.add(&c.k)?;
            args.add(&c.participant)?;
            args.add(&c.kind)?;
            args.add(&c.outcome)?;
            args.add(&c.error_code)?;
            args.add(&c.started_at)?;
            args.add(&c.finished_at)?;
            trailing(&mut args)
        };
        add()
            .map_err(anyhow::Error::from_boxed)
            .context("encoding the saga steps")?;
        Ok(args)
    }
}

/// The INSERT of saga-log rows, whose columns are the parameters $1 to $8
/// ([`StepColumns::then`]): move `n`'s steps for the order `base.id`, numbered on from `base.b`,
/// where `$base` provides `base(n, id, b)`.
macro_rules! insert_steps {
    ($base:literal) => {
        concat!(
            "INSERT INTO saga_steps \
                (order_id, seq, participant, kind, outcome, error_code, started_at, finished_at) \
             SELECT base.id, base.b + s.k, s.participant, s.kind, s.outcome, s.error_code, \
                    s.started_at, s.finished_at \
             FROM UNNEST($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], \
                         $7::timestamptz[], $8::timestamptz[]) \
                AS s(n, k, participant, kind, outcome, error_code, started_at, finished_at) \
             JOIN ",
            $base,
            " ON base.n = s.n"
        )
    };
}

/// The guarded status transition `from -> to`, with `steps` appended to the saga log, in ONE
/// statement (so one round trip and one commit). Returns false, changing nothing, unless the
/// order was in `from`: the caller lost a race and must re-read what is recorded. `reason`
/// `None` keeps the recorded one.
///
/// The log's `seq` continues after the rows already there. Reading them in this statement's
/// snapshot is safe because only the winner of a guarded transition writes, and a run only
/// attempts `compensating -> failed` after it saw (or made) the committed `compensating`.
/// Publication is implied too: an order that reached a saga transition was on the stream, so
/// the sweep must not re-publish it even if its `published_at` write was lost. The one writer
/// besides the mediator, [`request_cancel`], moves by the same guard.
pub async fn transition(
    pool: &PgPool,
    order_id: Uuid,
    from: Status,
    to: Status,
    reason: Option<&str>,
    steps: &[NewStep],
) -> Result<bool> {
    let transition = Transition::new(order_id, (from, to), reason, steps);
    Ok(transitions(pool, std::slice::from_ref(&transition)).await?[0])
}

/// A guarded status transition of one order, as [`transition`] makes it.
#[derive(Debug, Clone)]
pub struct Transition {
    pub order_id: Uuid,
    pub from: Status,
    pub to: Status,
    pub reason: Option<String>,
    pub steps: Vec<NewStep>,
}

impl Transition {
    pub fn new(
        order_id: Uuid,
        (from, to): (Status, Status),
        reason: Option<&str>,
        steps: &[NewStep],
    ) -> Self {
        Self {
            order_id,
            from,
            to,
            reason: reason.map(str::to_owned),
            steps: steps.to_vec(),
        }
    }
}

/// Many orders' [`transition`]s in ONE statement (one commit for all): whether each one moved,
/// in `all`'s order. Each is guarded on its own: one that lost its race changes nothing and the
/// others still move. Of two transitions of the same order, at most one moves.
pub async fn transitions(pool: &PgPool, all: &[Transition]) -> Result<Vec<bool>> {
    let moves: Vec<Move> = all
        .iter()
        .map(|t| Move {
            order_id: t.order_id,
            from: t.from,
            to: t.to,
            reason: t.reason.as_deref(),
            steps: &t.steps,
            publication: Publication::Implied,
        })
        .collect();
    Ok(guarded_moves(pool, &moves)
        .await?
        .iter()
        .map(Option::is_some)
        .collect())
}

/// One guarded move: `from -> to` of `order_id`, `steps` logged with it.
struct Move<'a> {
    order_id: Uuid,
    from: Status,
    to: Status,
    reason: Option<&'a str>,
    steps: &'a [NewStep],
    publication: Publication,
}

/// What a guarded move does to `published_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Publication {
    /// Set if missing: an order that reached a saga transition was on the stream.
    Implied,
    /// NULL: the order must be published again (the sweep does it if the caller cannot).
    Again,
}

/// [`transition`], returning the moved order.
async fn guarded_move(pool: &PgPool, m: &Move<'_>) -> Result<Option<Order>> {
    Ok(guarded_moves(pool, std::slice::from_ref(m))
        .await?
        .pop()
        .flatten())
}

/// The guarded moves of a batch, whose rows `m` (parameters $9 to $13, one array per column) come
/// from `$m` (see [`MOVE_ONE`], [`MOVE_MANY`]), with their steps ($1 to $8, [`insert_steps!`]).
macro_rules! guarded_moves {
    ($m:literal) => {
        concat!(
            "WITH m AS (",
            $m,
            "), \
             moved AS ( \
                UPDATE orders o SET status = m.to_status, reason = COALESCE(m.reason, o.reason), \
                    updated_at = now(), \
                    published_at = CASE WHEN m.again THEN NULL \
                                        ELSE COALESCE(o.published_at, now()) END \
                FROM m WHERE o.id = m.id AND o.status = m.from_status \
                RETURNING m.n, o.*), \
             base AS (SELECT moved.n, moved.id, \
                        (SELECT COALESCE(max(seq), 0) FROM saga_steps WHERE order_id = moved.id) \
                            AS b \
                      FROM moved), \
             logged AS (",
            insert_steps!("base"),
            ") SELECT n, ",
            order_columns!(),
            " FROM moved"
        )
    };
}

/// A batch of one move: its row is the arrays' first elements, so the order is found by its key
/// whatever plan the statement keeps (it is prepared once per connection).
const MOVE_ONE: &str = guarded_moves!(
    "SELECT ($9::uuid[])[1] AS id, ($10::text[])[1] AS from_status, \
            ($11::text[])[1] AS to_status, ($12::text[])[1] AS reason, \
            ($13::bool[])[1] AS again, 1::bigint AS n"
);

/// A batch of many: one row per element, planned on each run (see the module docs).
const MOVE_MANY: &str = guarded_moves!(
    "SELECT * FROM UNNEST($9::uuid[], $10::text[], $11::text[], $12::text[], $13::bool[]) \
        WITH ORDINALITY AS m(id, from_status, to_status, reason, again, n)"
);

/// The guarded moves `ms`, in one statement: each moved order, in `ms`' order (`None`: its guard
/// did not hold). An order's row is updated once per statement, so of two moves of the same order
/// in `ms` at most one is returned — the one whose guard held and was applied.
async fn guarded_moves(pool: &PgPool, ms: &[Move<'_>]) -> Result<Vec<Option<Order>>> {
    let args = StepColumns::then(ms.iter().map(|m| m.steps), |args| {
        args.add(ms.iter().map(|m| m.order_id).collect::<Vec<_>>())?;
        args.add(ms.iter().map(|m| m.from.as_str()).collect::<Vec<_>>())?;
        args.add(ms.iter().map(|m| m.to.as_str()).collect::<Vec<_>>())?;
        args.add(ms.iter().map(|m| m.reason).collect::<Vec<_>>())?;
        args.add(
            ms.iter()
                .map(|m| m.publication == Publication::Again)
                .collect::<Vec<_>>(),
        )
    })?;
    let statement = match ms {
        [_] => MOVE_ONE,
        _ => MOVE_MANY,
    };
    let rows = sqlx::query_with(statement, args)
        .persistent(ms.len() == 1)
        .fetch_all(pool)
        .await
        .with_context(|| match ms {
            [m] => format!(
                "moving order {} from {:?} to {:?}",
                m.order_id, m.from, m.to
            ),
            _ => format!("moving {} orders", ms.len()),
        })?;
    let mut moved: Vec<Option<Order>> = ms.iter().map(|_| None).collect();
    for row in rows {
        let n: i64 = row.try_get("n")?;
        let slot = usize::try_from(n - 1)
            .ok()
            .and_then(|i| moved.get_mut(i))
            .context("a moved order's number is out of range")?;
        *slot = Some(Order::from_row(&row).context("decoding a moved order")?);
    }
    Ok(moved)
}

/// Appends `steps` to the log without a transition: compensations a run made for an order that
/// another run had already failed. Best effort: a concurrent append may take the same `seq`, and
/// then these rows are dropped (the calls were idempotent no-ops or are logged by the other run).
pub async fn append_steps(pool: &PgPool, order_id: Uuid, steps: &[NewStep]) -> Result<()> {
    if steps.is_empty() {
        return Ok(());
    }
    let args = StepColumns::then([steps], |args| args.add(order_id))?;
    sqlx::query_with(
        concat!(
            insert_steps!(
                "(SELECT 1::bigint AS n, $9::uuid AS id, COALESCE(max(seq), 0) AS b \
                  FROM saga_steps WHERE order_id = $9) base"
            ),
            " ON CONFLICT (order_id, seq) DO NOTHING"
        ),
        args,
    )
    .execute(pool)
    .await
    .context("appending to the saga log")?;
    Ok(())
}
