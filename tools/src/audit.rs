//! The conservation audit: read straight from the stack's databases that the saga neither created
//! nor lost anything, once every order is final. Exact checks, all in integer cents and units.
//! Each database is read in ONE snapshot (a `REPEATABLE READ, READ ONLY` transaction per
//! database); the four snapshots are taken one after the other, so the audit is exact only once
//! nothing moves any more (every order final, and ideally the services stopped: `chaos` stops them
//! before its final audit).
//!
//! The checks, by the name they are counted under in [`Audit::violations`] (the README's
//! invariants: "What every participant guarantees" and the list under "`make chaos` figures"):
//!
//! - `reason`: a completed order has no reason, a cancelled one "Cancelled by the customer"; a
//!   failed one has one of the mediator's reasons, and
//!   a refusal reason only if that participant recorded the refusal (its `holds` row is
//!   `rejected`: "Not enough money" needs billing's, "Can not reserve the item" items',
//!   "Can not get the delivery slot" slots'). "Service unavailable: <participant>" and "Saga could
//!   not be processed" need nothing (an unknown outcome, a dead-lettered entry).
//! - `wallet`: per user, wallet + the billing ledger's `held` charges = initial wallet + deposits
//!   (the deposits table);
//! - `deposits` (only when the client says what it deposited, [`Known::deposits`]): per user, the
//!   deposits table = what the client deposited (a deposit applied AND recorded twice balances
//!   `wallet`; this is what catches it);
//! - `stock`: per item, stock + `held` reservations = the configured initial stock;
//! - `couriers`: per slot, free couriers + `held` bookings = the configured capacity (not the
//!   row's own `capacity` column, which is checked apart:)
//! - `capacity`: every slot's `capacity` column is the configured capacity;
//! - `orphan-hold`: nothing is held for an order that does not exist;
//! - `held-for-failed`: nothing is held for a failed order (a leaked hold);
//! - `held-for-cancelled`: nothing is held for a cancelled order;
//! - `missing-hold`: every completed order is held by each participant;
//! - `hold-mismatch`: ... for its own resource and quantity (the user and the amount, its item
//!   and 1, its slot and 1): a charge of another amount than the order's;
//! - `order-vs-sent` (only with [`Known::sent`]): every stored order has the user, amount, item
//!   and slot the client sent;
//! - `dead-letter` (only with [`Known::streams`]): an entry of the dead-letter stream whose order
//!   does not exist or did not end failed with "Saga could not be processed" or cancelled (the
//!   dead-letter path must fail the order, never drop it). Every dead-letter entry is also counted in
//!   [`Audit::dead_letters`], and pending (delivered, never acknowledged) entries of the saga
//!   stream in [`Audit::pending_entries`]: reported, not violations (an entry whose `XACK` was
//!   lost in a crash stays pending harmlessly once its order is final; unfinished orders are
//!   counted in [`Audit::not_final`]).
//!
//! What the README states and why it needs no check of its own:
//!
//! - "per user, wallet + charges of completed orders = initial + deposits" (and the same for
//!   stock and couriers) is `wallet` (`stock`, `couriers`) composed with `orphan-hold`,
//!   `held-for-failed`, `missing-hold` and `hold-mismatch`: together these make the `held` rows
//!   of a participant exactly the completed orders, one each, with the order's resource and
//!   quantity. Checking the sum against the completed orders as well would only report each
//!   per-order violation twice.
//! - "held exactly once", "no order charged twice": `holds.order_id` is the primary key of every
//!   participant's ledger, so one participant cannot hold an order twice; a second charge for the
//!   same client order would be a second order, which `campaign::verify` reports as unknown (and
//!   money taken without a `held` row is a `wallet` violation).
//! - Not covered: a deposit the client made but whose acknowledgement it never saw (the campaign
//!   retries deposits with their Idempotency-Key until acknowledged, so it knows every deposit);
//!   `saga_steps` (the mediator's log) is not cross-checked against the ledgers.

use crate::stack::{Streams, pending_counts};
use anyhow::{Context, Result};
use order_store::db::{CANCELLED_REASON, Status};
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgPool, Postgres, Transaction, postgres::PgRow};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use uuid::Uuid;

/// Pools on the databases the audit reads.
#[derive(Debug, Clone)]
pub struct Dbs {
    pub billing: PgPool,
    pub orders: PgPool,
    pub items: PgPool,
    pub slots: PgPool,
}

/// What the stack started with (its configuration, never read back from the rows checked).
#[derive(Debug, Clone, Copy)]
pub struct Baseline {
    pub initial_wallet_cents: i64,
    pub item_stock: i64,
    pub slot_capacity: i64,
}

/// One order as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentOrder {
    pub username: String,
    pub amount: i64,
    pub item: i64,
    pub slot: String,
}

/// What the audit knows besides the databases (each part optional: its checks run only when given).
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Accepted orders, by id, as the client sent them (`order-vs-sent`).
    pub sent: Option<HashMap<Uuid, SentOrder>>,
    /// Deposits per user as the client made them, in cents (`deposits`).
    pub deposits: Option<HashMap<String, i64>>,
    /// The Redis URL and the stack's streams (`dead-letter`, dead letters and pending entries).
    pub streams: Option<(String, Streams)>,
}

/// One order as stored by the order service.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderRow {
    pub id: Uuid,
    pub username: String,
    pub amount: i64,
    pub item: i64,
    pub slot: String,
    pub status: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct HoldRow {
    order_id: Uuid,
    resource: Option<String>,
    quantity: i64,
    state: String,
}

/// At most this many messages are kept per check (all are counted).
const MESSAGES_PER_CHECK: usize = 10;

/// The reasons the mediator gives (mediator::saga), by participant.
const REFUSALS: [(&str, &str); 3] = [
    ("items", "Can not reserve the item"),
    ("slots", "Can not get the delivery slot"),
    ("billing", "Not enough money"),
];
const UNAVAILABLE_PREFIX: &str = "Service unavailable: ";
/// The reason of an order whose stream entry was dead-lettered (mediator::executor).
pub const UNPROCESSABLE_REASON: &str = "Saga could not be processed";

#[derive(Debug, Default, Clone, Serialize)]
pub struct Audit {
    pub orders: usize,
    pub completed: usize,
    pub failed: usize,
    /// Orders the customer cancelled (and every step was given back).
    pub cancelled: usize,
    /// Orders still `pending`, `compensating` or `cancelling`.
    pub not_final: usize,
    /// Failed orders by reason.
    pub failed_by_reason: BTreeMap<String, usize>,
    /// Violations per check.
    pub violations: BTreeMap<&'static str, usize>,
    /// The first few violations of each check, readable.
    pub messages: Vec<String>,
    /// Entries of the dead-letter stream (when the streams were given).
    pub dead_letters: usize,
    /// Entries of the saga stream delivered and never acknowledged (when the streams were given).
    pub pending_entries: usize,
    /// A few of the dead letters and pending entries, readable.
    pub stream_notes: Vec<String>,
}

impl Audit {
    pub fn violation_count(&self) -> usize {
        self.violations.values().sum()
    }

    /// Every order final and no violation.
    pub fn ok(&self) -> bool {
        self.not_final == 0 && self.violation_count() == 0
    }

    fn violation(&mut self, check: &'static str, message: String) {
        let n = self.violations.entry(check).or_default();
        *n += 1;
        if *n <= MESSAGES_PER_CHECK {
            self.messages.push(format!("[{check}] {message}"));
        }
    }

    /// A readable multi-line summary.
    pub fn report(&self) -> String {
        let mut out = format!(
            "orders {} (completed {}, failed {}, cancelled {}, not final {}); violations {}; \
             dead letters {}, pending stream entries {}",
            self.orders,
            self.completed,
            self.failed,
            self.cancelled,
            self.not_final,
            self.violation_count(),
            self.dead_letters,
            self.pending_entries
        );
        for (reason, n) in &self.failed_by_reason {
            out.push_str(&format!("\n  failed {n:>6}  {reason}"));
        }
        for (check, n) in &self.violations {
            out.push_str(&format!("\n  VIOLATION {check}: {n}"));
        }
        for m in &self.messages {
            out.push_str(&format!("\n    {m}"));
        }
        for m in &self.stream_notes {
            out.push_str(&format!("\n  {m}"));
        }
        out
    }
}

/// A `REPEATABLE READ, READ ONLY` transaction: every read through it sees one snapshot.
async fn snapshot(pool: &PgPool, what: &str) -> Result<Transaction<'static, Postgres>> {
    let mut tx = pool
        .begin()
        .await
        .with_context(|| format!("opening a transaction on the {what} database"))?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .with_context(|| format!("making the {what} transaction a read-only snapshot"))?;
    Ok(tx)
}

/// Every row `sql` returns in the snapshot `tx`.
async fn rows<T>(tx: &mut PgConnection, sql: &'static str, what: &str) -> Result<Vec<T>>
where
    T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
{
    sqlx::query_as(sql)
        .fetch_all(tx)
        .await
        .with_context(|| format!("reading {what}"))
}

const ORDERS_SQL: &str = "SELECT id, username, amount, item, slot, status, reason FROM orders";
const HOLDS_SQL: &str = "SELECT order_id, resource, quantity, state FROM holds";

pub async fn orders(pool: &PgPool) -> Result<Vec<OrderRow>> {
    sqlx::query_as::<_, OrderRow>(ORDERS_SQL)
        .fetch_all(pool)
        .await
        .context("reading orders")
}

/// How many orders are not final yet.
pub async fn not_final(pool: &PgPool) -> Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM orders WHERE status <> ALL($1)")
        .bind(Status::finals())
        .fetch_one(pool)
        .await
        .context("counting unfinished orders")
}

/// Everything the audit reads, each database from one snapshot.
struct World {
    orders: Vec<OrderRow>,
    accounts: Vec<(String, i64)>,
    deposits: HashMap<String, i64>,
    charges: Vec<HoldRow>,
    items: Vec<(i64, i64)>,
    reservations: Vec<HoldRow>,
    slots: Vec<(String, i64, i64)>,
    bookings: Vec<HoldRow>,
}

async fn read(dbs: &Dbs) -> Result<World> {
    let mut tx = snapshot(&dbs.orders, "orders").await?;
    let orders = rows(&mut tx, ORDERS_SQL, "orders").await?;
    tx.commit().await?;

    let mut tx = snapshot(&dbs.billing, "billing").await?;
    let deposits = rows::<(String, i64)>(
        &mut tx,
        "SELECT username, sum(amount)::bigint FROM deposits GROUP BY username",
        "deposits",
    )
    .await?
    .into_iter()
    .collect();
    let accounts = rows(&mut tx, "SELECT username, wallet FROM accounts", "accounts").await?;
    let charges = rows(&mut tx, HOLDS_SQL, "billing holds").await?;
    tx.commit().await?;

    let mut tx = snapshot(&dbs.items, "items").await?;
    let items = rows(&mut tx, "SELECT id, stock FROM items", "items").await?;
    let reservations = rows(&mut tx, HOLDS_SQL, "items holds").await?;
    tx.commit().await?;

    let mut tx = snapshot(&dbs.slots, "slots").await?;
    let slots = rows(
        &mut tx,
        "SELECT slot, capacity, free_couriers FROM slots",
        "slots",
    )
    .await?;
    let bookings = rows(&mut tx, HOLDS_SQL, "slots holds").await?;
    tx.commit().await?;

    Ok(World {
        orders,
        accounts,
        deposits,
        charges,
        items,
        reservations,
        slots,
        bookings,
    })
}

/// Reads everything and runs every check.
pub async fn audit(dbs: &Dbs, baseline: Baseline, known: &Known) -> Result<Audit> {
    Ok(audit_with_orders(dbs, baseline, known).await?.0)
}

/// [`audit`], also returning the orders it read (from the same snapshot).
pub async fn audit_with_orders(
    dbs: &Dbs,
    baseline: Baseline,
    known: &Known,
) -> Result<(Audit, Vec<OrderRow>)> {
    let world = read(dbs).await?;
    let mut a = check(&world, baseline, known);
    if let Some((url, streams)) = &known.streams {
        let state = read_streams(url, streams).await?;
        check_streams(&mut a, &world.orders, &state);
    }
    Ok((a, world.orders))
}

/// Sums of `held` quantities per resource.
fn held_sum(holds: &[HoldRow]) -> HashMap<String, i64> {
    let mut m = HashMap::new();
    for h in holds.iter().filter(|h| h.state == "held") {
        *m.entry(h.resource.clone().unwrap_or_default()).or_default() += h.quantity;
    }
    m
}

fn check(w: &World, baseline: Baseline, known: &Known) -> Audit {
    let orders = &w.orders;
    let mut a = Audit {
        orders: orders.len(),
        ..Audit::default()
    };
    let by_id: HashMap<Uuid, &OrderRow> = orders.iter().map(|o| (o.id, o)).collect();
    let ledgers: [(&str, &[HoldRow]); 3] = [
        ("billing", &w.charges),
        ("items", &w.reservations),
        ("slots", &w.bookings),
    ];
    let state_of = |who: &str, id: Uuid| -> Option<&str> {
        let (_, holds) = ledgers.iter().find(|(p, _)| *p == who)?;
        holds
            .iter()
            .find(|h| h.order_id == id)
            .map(|h| h.state.as_str())
    };

    // Orders: final, and each with the reason its end must have.
    for o in orders {
        match (o.status.as_str(), o.reason.as_deref()) {
            ("completed", None) => a.completed += 1,
            ("completed", Some(r)) => {
                a.completed += 1;
                a.violation(
                    "reason",
                    format!("completed order {} has a reason {r:?}", o.id),
                );
            }
            ("failed", reason) => {
                a.failed += 1;
                let label = reason.unwrap_or("(no reason)").to_owned();
                *a.failed_by_reason.entry(label).or_default() += 1;
                if let Some(why) = wrong_reason(reason, |who| state_of(who, o.id)) {
                    a.violation("reason", format!("failed order {}: {why}", o.id));
                }
            }
            ("cancelled", reason) => {
                a.cancelled += 1;
                if reason != Some(CANCELLED_REASON) {
                    a.violation(
                        "reason",
                        format!("cancelled order {} has the reason {reason:?}", o.id),
                    );
                }
            }
            _ => a.not_final += 1,
        }
    }

    // What the client sent.
    if let Some(sent) = &known.sent {
        for o in orders {
            let Some(s) = sent.get(&o.id) else { continue };
            let stored = SentOrder {
                username: o.username.clone(),
                amount: o.amount,
                item: o.item,
                slot: o.slot.clone(),
            };
            if &stored != s {
                a.violation(
                    "order-vs-sent",
                    format!(
                        "order {} is stored as {stored:?} but was sent as {s:?}",
                        o.id
                    ),
                );
            }
        }
    }

    // Money: wallet + held charges = initial + deposits, per user (with an account or a charge).
    let held_money = held_sum(&w.charges);
    let wallets: HashMap<&str, i64> = w.accounts.iter().map(|(u, v)| (u.as_str(), *v)).collect();
    let users: BTreeSet<&str> = wallets
        .keys()
        .copied()
        .chain(held_money.keys().map(String::as_str))
        .collect();
    for user in &users {
        let deposited = w.deposits.get(*user).copied().unwrap_or(0);
        let held = held_money.get(*user).copied().unwrap_or(0);
        match wallets.get(user) {
            None => a.violation(
                "wallet",
                format!("{user}: charges of {held} held but no account"),
            ),
            Some(wallet) => {
                let start = baseline.initial_wallet_cents + deposited;
                if wallet + held != start {
                    a.violation(
                        "wallet",
                        format!(
                            "{user}: wallet {wallet} + held charges {held} = {} != initial + deposits {start} (cents)",
                            wallet + held
                        ),
                    );
                }
            }
        }
    }
    if let Some(client) = &known.deposits {
        let users: BTreeSet<&str> = client
            .keys()
            .chain(w.deposits.keys())
            .map(String::as_str)
            .collect();
        for user in users {
            let recorded = w.deposits.get(user).copied().unwrap_or(0);
            let made = client.get(user).copied().unwrap_or(0);
            if recorded != made {
                a.violation(
                    "deposits",
                    format!("{user}: deposits recorded {recorded} != deposited by the client {made} (cents)"),
                );
            }
        }
    }

    // Stock.
    let held_items = held_sum(&w.reservations);
    let stock: BTreeMap<String, i64> = w.items.iter().map(|(id, s)| (id.to_string(), *s)).collect();
    let item_ids: BTreeSet<&String> = stock.keys().chain(held_items.keys()).collect();
    for id in item_ids {
        let held = held_items.get(id).copied().unwrap_or(0);
        match stock.get(id) {
            None => a.violation(
                "stock",
                format!("item {id:?}: {held} held but no such item"),
            ),
            Some(s) if s + held != baseline.item_stock => a.violation(
                "stock",
                format!(
                    "item {id}: stock {s} + held reservations {held} = {} != initial {}",
                    s + held,
                    baseline.item_stock
                ),
            ),
            Some(_) => {}
        }
    }

    // Couriers.
    let held_slots = held_sum(&w.bookings);
    let free: BTreeMap<&str, (i64, i64)> = w
        .slots
        .iter()
        .map(|(s, capacity, free)| (s.as_str(), (*capacity, *free)))
        .collect();
    let slot_ids: BTreeSet<&str> = free
        .keys()
        .copied()
        .chain(held_slots.keys().map(String::as_str))
        .collect();
    for slot in slot_ids {
        let held = held_slots.get(slot).copied().unwrap_or(0);
        let Some((capacity, free)) = free.get(slot) else {
            a.violation(
                "couriers",
                format!("slot {slot:?}: {held} held but no such slot"),
            );
            continue;
        };
        if free + held != baseline.slot_capacity {
            a.violation(
                "couriers",
                format!(
                    "slot {slot}: free {free} + held bookings {held} = {} != capacity {}",
                    free + held,
                    baseline.slot_capacity
                ),
            );
        }
        if *capacity != baseline.slot_capacity {
            a.violation(
                "capacity",
                format!(
                    "slot {slot}: capacity column {capacity} != configured {}",
                    baseline.slot_capacity
                ),
            );
        }
    }

    // Holds against orders, participant by participant: the `held` rows of each participant are
    // exactly the completed orders, with their resource and quantity.
    type Expect = fn(&OrderRow) -> (String, i64);
    let expectations: [Expect; 3] = [
        |o| (o.username.clone(), o.amount),
        |o| (o.item.to_string(), 1),
        |o| (o.slot.clone(), 1),
    ];
    for ((who, holds), expect) in ledgers.iter().zip(expectations) {
        let held: HashMap<Uuid, &HoldRow> = holds
            .iter()
            .filter(|h| h.state == "held")
            .map(|h| (h.order_id, h))
            .collect();
        let mut ids: Vec<&Uuid> = held.keys().collect();
        ids.sort();
        for id in ids {
            let h = held[id];
            match by_id.get(id) {
                None => a.violation(
                    "orphan-hold",
                    format!(
                        "{who} holds {:?} x{} for order {id}, which does not exist",
                        h.resource, h.quantity
                    ),
                ),
                Some(o) if o.status == "failed" => a.violation(
                    "held-for-failed",
                    format!(
                        "{who} still holds {:?} x{} for failed order {id} ({:?})",
                        h.resource, h.quantity, o.reason
                    ),
                ),
                Some(o) if o.status == "cancelled" => a.violation(
                    "held-for-cancelled",
                    format!(
                        "{who} still holds {:?} x{} for cancelled order {id}",
                        h.resource, h.quantity
                    ),
                ),
                Some(o) if o.status == "completed" => {
                    let (resource, quantity) = expect(o);
                    if h.resource.as_deref() != Some(resource.as_str()) || h.quantity != quantity {
                        a.violation(
                            "hold-mismatch",
                            format!(
                                "{who} holds {:?} x{} for order {id}, which is for {resource:?} x{quantity}",
                                h.resource, h.quantity
                            ),
                        );
                    }
                }
                Some(_) => {} // in flight: counted as not final
            }
        }
        for o in orders.iter().filter(|o| o.status == "completed") {
            if !held.contains_key(&o.id) {
                let state = holds
                    .iter()
                    .find(|h| h.order_id == o.id)
                    .map(|h| h.state.as_str())
                    .unwrap_or("no row");
                a.violation(
                    "missing-hold",
                    format!("completed order {} is not held by {who} ({state})", o.id),
                );
            }
        }
    }
    a
}

/// Why a failed order's reason is wrong, if it is; `state` gives a participant's `holds` state
/// for the order.
fn wrong_reason<'s>(
    reason: Option<&str>,
    state: impl Fn(&str) -> Option<&'s str>,
) -> Option<String> {
    let Some(reason) = reason else {
        return Some("no reason".into());
    };
    if let Some((who, _)) = REFUSALS.iter().find(|(_, r)| *r == reason) {
        return match state(who) {
            Some("rejected") => None,
            other => Some(format!(
                "reason {reason:?} but {who} did not refuse it (its hold: {})",
                other.unwrap_or("no row")
            )),
        };
    }
    if let Some(who) = reason.strip_prefix(UNAVAILABLE_PREFIX) {
        return if REFUSALS.iter().any(|(p, _)| *p == who) {
            None
        } else {
            Some(format!("reason {reason:?} names no participant"))
        };
    }
    if reason == UNPROCESSABLE_REASON {
        return None;
    }
    Some(format!("reason {reason:?} is none the mediator gives"))
}

/// The saga streams as Redis has them.
#[derive(Debug, Default)]
struct StreamState {
    /// (entry id, order id field, reason field) of every dead-letter entry.
    dead: Vec<(String, String, String)>,
    /// Pending entries per consumer.
    pending: BTreeMap<String, u64>,
}

async fn read_streams(url: &str, streams: &Streams) -> Result<StreamState> {
    let client = redis::Client::open(url)?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to Redis")?;
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&streams.dead_letters)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .context("XRANGE of the dead-letter stream")?;
    let field = |fields: &[(String, String)], name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let dead = entries
        .into_iter()
        .map(|(id, fields)| {
            let order = field(&fields, "order_id");
            let reason = field(&fields, "reason");
            (id, order, reason)
        })
        .collect();
    // XPENDING summary: [count, first id, last id, [[consumer, count], ...]]; an error when the
    // stream or the group does not exist (nothing was ever published): nothing pending.
    let summary: redis::RedisResult<redis::Value> = redis::cmd("XPENDING")
        .arg(&streams.orders)
        .arg(&streams.group)
        .query_async(&mut conn)
        .await;
    let pending = match summary {
        Ok(summary) => pending_counts(&summary)?,
        Err(_) => BTreeMap::new(),
    };
    Ok(StreamState { dead, pending })
}

fn check_streams(a: &mut Audit, orders: &[OrderRow], state: &StreamState) {
    let by_id: HashMap<String, &OrderRow> = orders.iter().map(|o| (o.id.to_string(), o)).collect();
    a.dead_letters = state.dead.len();
    for (entry, order, reason) in &state.dead {
        if a.stream_notes.len() < MESSAGES_PER_CHECK {
            a.stream_notes
                .push(format!("dead letter {entry}: order {order:?} ({reason})"));
        }
        match by_id.get(order) {
            None => a.violation(
                "dead-letter",
                format!("dead letter {entry} ({reason}) is for order {order:?}, which does not exist"),
            ),
            Some(o)
                if o.status == "failed" && o.reason.as_deref() == Some(UNPROCESSABLE_REASON) => {}
            // Its entry could not be processed, and the customer's cancel undid it all the same.
            Some(o) if o.status == "cancelled" => {}
            Some(o) if o.status == "completed" || o.status == "failed" => a.violation(
                "dead-letter",
                format!(
                    "dead letter {entry} ({reason}): order {order} ended {} ({:?}), not failed with {UNPROCESSABLE_REASON:?}",
                    o.status, o.reason
                ),
            ),
            Some(_) => {} // not final: counted as such
        }
    }
    a.pending_entries = state.pending.values().sum::<u64>() as usize;
    for (consumer, n) in &state.pending {
        a.stream_notes.push(format!(
            "{n} entries pending (never acknowledged) at {consumer}"
        ));
    }
}
