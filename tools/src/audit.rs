//! The conservation audit: read straight from the stack's databases that the saga neither created
//! nor lost anything, once every order is final. Exact checks, all in integer cents and units:
//!
//! - every order is final (`completed` or `failed`);
//! - per user: wallet + sum(amount of completed orders) = initial wallet + deposits, and the same
//!   with the billing ledger's own `held` charges instead of the completed orders;
//! - per item: stock + completed orders of it = initial stock (and + `held` reservations);
//! - per slot: free couriers + completed orders for it = capacity (and + `held` bookings);
//! - no participant holds anything (`held`) for a failed order, nor for an order that does not exist;
//! - every completed order is held exactly once by each participant, for its own resource and
//!   quantity (the user and the amount, its item and 1, its slot and 1);
//! - no order is charged twice.

use anyhow::{Context, Result};
use serde::Serialize;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// Pools on the databases the audit reads.
#[derive(Debug, Clone)]
pub struct Dbs {
    pub billing: PgPool,
    pub orders: PgPool,
    pub items: PgPool,
    pub slots: PgPool,
}

/// What the stack started with.
#[derive(Debug, Clone, Copy)]
pub struct Baseline {
    pub initial_wallet_cents: i64,
    pub item_stock: i64,
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

#[derive(Debug, Default, Clone, Serialize)]
pub struct Audit {
    pub orders: usize,
    pub completed: usize,
    pub failed: usize,
    /// Orders still `pending` or `compensating`.
    pub not_final: usize,
    /// Failed orders by reason.
    pub failed_by_reason: BTreeMap<String, usize>,
    /// Violations per check.
    pub violations: BTreeMap<&'static str, usize>,
    /// The first few violations of each check, readable.
    pub messages: Vec<String>,
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
            "orders {} (completed {}, failed {}, not final {}); violations {}",
            self.orders,
            self.completed,
            self.failed,
            self.not_final,
            self.violation_count()
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
        out
    }
}

pub async fn orders(pool: &PgPool) -> Result<Vec<OrderRow>> {
    sqlx::query_as::<_, OrderRow>(
        "SELECT id, username, amount, item, slot, status, reason FROM orders",
    )
    .fetch_all(pool)
    .await
    .context("reading orders")
}

/// How many orders are not final yet.
pub async fn not_final(pool: &PgPool) -> Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM orders WHERE status NOT IN ('completed', 'failed')")
        .fetch_one(pool)
        .await
        .context("counting unfinished orders")
}

async fn holds(pool: &PgPool, who: &str) -> Result<Vec<HoldRow>> {
    sqlx::query_as::<_, HoldRow>("SELECT order_id, resource, quantity, state FROM holds")
        .fetch_all(pool)
        .await
        .with_context(|| format!("reading {who} holds"))
}

/// Reads everything and runs every check.
pub async fn audit(dbs: &Dbs, baseline: Baseline) -> Result<Audit> {
    let orders = orders(&dbs.orders).await?;
    let accounts: Vec<(String, i64)> = sqlx::query_as("SELECT username, wallet FROM accounts")
        .fetch_all(&dbs.billing)
        .await
        .context("reading accounts")?;
    let deposits: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT username, sum(amount)::bigint FROM deposits GROUP BY username",
    )
    .fetch_all(&dbs.billing)
    .await
    .context("reading deposits")?
    .into_iter()
    .collect();
    let items: Vec<(i64, i64)> = sqlx::query_as("SELECT id, stock FROM items")
        .fetch_all(&dbs.items)
        .await
        .context("reading items")?;
    let slots: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT slot, capacity, free_couriers FROM slots")
            .fetch_all(&dbs.slots)
            .await
            .context("reading slots")?;
    let charges = holds(&dbs.billing, "billing").await?;
    let reservations = holds(&dbs.items, "items").await?;
    let bookings = holds(&dbs.slots, "slots").await?;

    let mut a = Audit {
        orders: orders.len(),
        ..Audit::default()
    };
    let by_id: HashMap<Uuid, &OrderRow> = orders.iter().map(|o| (o.id, o)).collect();
    let mut charged: HashMap<&str, i64> = HashMap::new();
    let mut items_taken: HashMap<i64, i64> = HashMap::new();
    let mut slots_taken: HashMap<&str, i64> = HashMap::new();
    for o in &orders {
        match o.status.as_str() {
            "completed" => {
                a.completed += 1;
                *charged.entry(&o.username).or_default() += o.amount;
                *items_taken.entry(o.item).or_default() += 1;
                *slots_taken.entry(&o.slot).or_default() += 1;
            }
            "failed" => {
                a.failed += 1;
                let reason = o.reason.clone().unwrap_or_else(|| "(no reason)".into());
                *a.failed_by_reason.entry(reason).or_default() += 1;
            }
            _ => a.not_final += 1,
        }
    }

    let held_sum = |holds: &[HoldRow]| -> HashMap<String, i64> {
        let mut m = HashMap::new();
        for h in holds.iter().filter(|h| h.state == "held") {
            *m.entry(h.resource.clone().unwrap_or_default()).or_default() += h.quantity;
        }
        m
    };

    // Money.
    let held_money = held_sum(&charges);
    for (user, wallet) in &accounts {
        let start = baseline.initial_wallet_cents + deposits.get(user).copied().unwrap_or(0);
        let spent = charged.get(user.as_str()).copied().unwrap_or(0);
        if wallet + spent != start {
            a.violation(
                "wallet",
                format!(
                    "{user}: wallet {wallet} + completed orders {spent} = {} != initial + deposits {start} (cents)",
                    wallet + spent
                ),
            );
        }
        let held = held_money.get(user).copied().unwrap_or(0);
        if wallet + held != start {
            a.violation(
                "billing-ledger",
                format!(
                    "{user}: wallet {wallet} + held charges {held} = {} != initial + deposits {start} (cents)",
                    wallet + held
                ),
            );
        }
    }
    for user in charged.keys() {
        if !accounts.iter().any(|(u, _)| u == user) {
            a.violation(
                "wallet",
                format!("{user} has completed orders but no account"),
            );
        }
    }

    // Stock.
    let held_items = held_sum(&reservations);
    for (id, stock) in &items {
        let taken = items_taken.get(id).copied().unwrap_or(0);
        if stock + taken != baseline.item_stock {
            a.violation(
                "stock",
                format!(
                    "item {id}: stock {stock} + completed orders {taken} != initial {}",
                    baseline.item_stock
                ),
            );
        }
        let held = held_items.get(&id.to_string()).copied().unwrap_or(0);
        if stock + held != baseline.item_stock {
            a.violation(
                "items-ledger",
                format!(
                    "item {id}: stock {stock} + held reservations {held} != initial {}",
                    baseline.item_stock
                ),
            );
        }
    }

    // Couriers.
    let held_slots = held_sum(&bookings);
    for (slot, capacity, free) in &slots {
        let taken = slots_taken.get(slot.as_str()).copied().unwrap_or(0);
        if free + taken != *capacity {
            a.violation(
                "couriers",
                format!(
                    "slot {slot}: free {free} + completed orders {taken} != capacity {capacity}"
                ),
            );
        }
        let held = held_slots.get(slot).copied().unwrap_or(0);
        if free + held != *capacity {
            a.violation(
                "slots-ledger",
                format!("slot {slot}: free {free} + held bookings {held} != capacity {capacity}"),
            );
        }
    }

    // Holds against orders, participant by participant.
    type Expect = fn(&OrderRow) -> (String, i64);
    let participants: [(&str, &[HoldRow], Expect); 3] = [
        ("billing", &charges, |o| (o.username.clone(), o.amount)),
        ("items", &reservations, |o| (o.item.to_string(), 1)),
        ("slots", &bookings, |o| (o.slot.clone(), 1)),
    ];
    for (who, holds, expect) in participants {
        let mut held_per_order: HashMap<Uuid, Vec<&HoldRow>> = HashMap::new();
        for h in holds.iter().filter(|h| h.state == "held") {
            held_per_order.entry(h.order_id).or_default().push(h);
        }
        for (id, rows) in &held_per_order {
            if rows.len() > 1 {
                let check = if who == "billing" {
                    "double-charge"
                } else {
                    "double-hold"
                };
                a.violation(
                    check,
                    format!("{who} holds order {id} {} times", rows.len()),
                );
            }
            match by_id.get(id) {
                None => a.violation(
                    "orphan-hold",
                    format!(
                        "{who} holds {:?} for order {id}, which does not exist",
                        rows[0].resource
                    ),
                ),
                Some(o) if o.status == "failed" => a.violation(
                    "held-for-failed",
                    format!(
                        "{who} still holds {:?} x{} for failed order {id} ({:?})",
                        rows[0].resource, rows[0].quantity, o.reason
                    ),
                ),
                Some(o) if o.status == "completed" => {
                    let (resource, quantity) = expect(o);
                    let h = rows[0];
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
            if !held_per_order.contains_key(&o.id) {
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
    Ok(a)
}
