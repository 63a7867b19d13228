//! The audit's checks, each shown to fire. Every test builds the same small, consistent world in
//! fresh databases (the stack harness's `create_databases`, migrated with the services' own
//! migrations; the participants' holds and releases go through their real `ledger_hold` /
//! `ledger_release` functions), then corrupts it in ONE way and asserts that the audit reports
//! exactly that: one violation of the expected check and nothing else. No service runs, nothing
//! waits: no test depends on timing.
//!
//! Needs `TEST_DATABASE_URL` and `TEST_REDIS_URL` (fails without them, never skips).

use sqlx::{PgPool, migrate::Migrator, postgres::PgPoolOptions};
use std::collections::HashMap;
use tools::{
    audit::{self, Audit, Baseline, Dbs, Known, SentOrder},
    stack::{self, Database, Streams},
};
use uuid::Uuid;

const INITIAL_WALLET: i64 = 10_000;
const STOCK: i64 = 10;
const CAPACITY: i64 = 5;
const DEPOSIT: i64 = 5_000;

const BASELINE: Baseline = Baseline {
    initial_wallet_cents: INITIAL_WALLET,
    item_stock: STOCK,
    slot_capacity: CAPACITY,
};

/// The orders of the world, by what happened to them.
struct Orders {
    /// alice, 15.00, item 1, slot 10:00: completed.
    completed_alice: Uuid,
    /// bob, 7.00, item 2, slot 11:00: completed.
    completed_bob: Uuid,
    /// bob, more than his wallet: item and slot held then released, charge refused.
    no_money: Uuid,
    /// alice, item 99 (no such item): refused by items, nothing else called.
    no_item: Uuid,
    /// alice, slot 23:00 (no such slot): item held then released, slot refused.
    no_slot: Uuid,
    /// bob, 2.00, item 3, slot 10:00: completed, then cancelled by him (everything given back).
    cancelled: Uuid,
    /// alice, 4.00: all three held, the charge's reply lost past the deadline: all released.
    unavailable: Uuid,
}

struct World {
    admin: String,
    databases: std::collections::BTreeMap<Database, (String, String)>,
    dbs: Dbs,
    known: Known,
    orders: Orders,
    redis: redis::Client,
    streams: Streams,
}

fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: the audit tests need the test Postgres and Redis (`make test`)")
    })
}

async fn pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .unwrap()
}

async fn migrate(pool: &PgPool, migrator: &Migrator, service: &str) {
    migrator
        .run(pool)
        .await
        .unwrap_or_else(|e| panic!("migrating {service}: {e}"));
}

async fn exec(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A participant's action through its ledger function; returns the recorded state.
async fn hold(pool: &PgPool, order: Uuid, resource: &str, quantity: i64) -> String {
    sqlx::query_scalar("SELECT r_state FROM ledger_hold($1, $2, $3)")
        .bind(order)
        .bind(resource)
        .bind(quantity)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn release(pool: &PgPool, order: Uuid) -> String {
    sqlx::query_scalar("SELECT r_state FROM ledger_release($1)")
        .bind(order)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn store_order(world: &Dbs, id: Uuid, o: &SentOrder, status: &str, reason: Option<&str>) {
    sqlx::query(
        "INSERT INTO orders (id, username, amount, item, slot, status, reason, published_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, now())",
    )
    .bind(id)
    .bind(&o.username)
    .bind(o.amount)
    .bind(o.item)
    .bind(&o.slot)
    .bind(status)
    .bind(reason)
    .execute(&world.orders)
    .await
    .unwrap();
}

fn sent(username: &str, amount: i64, item: i64, slot: &str) -> SentOrder {
    SentOrder {
        username: username.into(),
        amount,
        item,
        slot: slot.into(),
    }
}

/// Runs one saga by hand: the steps in the mediator's order (items, slots, billing), each held
/// through the ledger; on a refusal (or a lost reply, `lost_at`) the steps are released as the
/// mediator does; then stores the order, final, with its reason.
async fn saga(dbs: &Dbs, id: Uuid, o: &SentOrder, lost_at: Option<usize>) {
    let steps: [(&PgPool, String, i64, &str, &str); 3] = [
        (
            &dbs.items,
            o.item.to_string(),
            1,
            "items",
            "Can not reserve the item",
        ),
        (
            &dbs.slots,
            o.slot.clone(),
            1,
            "slots",
            "Can not get the delivery slot",
        ),
        (
            &dbs.billing,
            o.username.clone(),
            o.amount,
            "billing",
            "Not enough money",
        ),
    ];
    let mut end = None;
    for (i, (pool, resource, quantity, who, refusal)) in steps.iter().enumerate() {
        let state = hold(pool, id, resource, *quantity).await;
        if state != "held" {
            // A refusal: undo the steps before it.
            for (pool, ..) in steps[..i].iter().rev() {
                assert_eq!(release(pool, id).await, "released");
            }
            end = Some(refusal.to_string());
            break;
        }
        if lost_at == Some(i) {
            // The outcome is unknown past the deadline: every step is compensated.
            for (pool, ..) in steps.iter().rev() {
                release(pool, id).await;
            }
            end = Some(format!("Service unavailable: {who}"));
            break;
        }
    }
    match end {
        None => store_order(dbs, id, o, "completed", None).await,
        Some(reason) => store_order(dbs, id, o, "failed", Some(&reason)).await,
    }
}

async fn world() -> World {
    let admin = env("TEST_DATABASE_URL");
    let redis_url = env("TEST_REDIS_URL");
    let id = format!("audit{}", &Uuid::new_v4().simple().to_string()[..12]);
    let databases = stack::create_databases(&admin, &id).await.unwrap();
    let url = |db: Database| databases[&db].1.clone();
    let dbs = Dbs {
        billing: pool(&url(Database::Billing)).await,
        orders: pool(&url(Database::Orders)).await,
        items: pool(&url(Database::Items)).await,
        slots: pool(&url(Database::Slots)).await,
    };
    migrate(&dbs.billing, billing::CHARGES.migrator(), "billing").await;
    migrate(&dbs.orders, &order_store::MIGRATOR, "order").await;
    migrate(&dbs.items, items::RESERVATIONS.migrator(), "items").await;
    migrate(&dbs.slots, slots::BOOKINGS.migrator(), "slots").await;

    // What the services seed at startup and sign-up makes; alice deposits once.
    exec(
        &dbs.items,
        &format!(
            "INSERT INTO items (id, name, price, stock) VALUES \
             (1, 'one', 100, {STOCK}), (2, 'two', 100, {STOCK}), (3, 'three', 100, {STOCK})"
        ),
    )
    .await;
    exec(
        &dbs.slots,
        &format!(
            "INSERT INTO slots (slot, capacity, free_couriers) VALUES \
             ('10:00', {CAPACITY}, {CAPACITY}), ('11:00', {CAPACITY}, {CAPACITY})"
        ),
    )
    .await;
    exec(
        &dbs.billing,
        &format!(
            "INSERT INTO accounts (username, email, wallet) VALUES \
             ('alice', 'a@x', {INITIAL_WALLET}), ('bob', 'b@x', {INITIAL_WALLET}); \
             INSERT INTO deposits (username, idempotency_key, amount) VALUES ('alice', 'k1', {DEPOSIT}); \
             UPDATE accounts SET wallet = wallet + {DEPOSIT} WHERE username = 'alice'"
        ),
    )
    .await;

    let orders = Orders {
        completed_alice: Uuid::now_v7(),
        completed_bob: Uuid::now_v7(),
        no_money: Uuid::now_v7(),
        no_item: Uuid::now_v7(),
        no_slot: Uuid::now_v7(),
        unavailable: Uuid::now_v7(),
        cancelled: Uuid::now_v7(),
    };
    let plan = [
        (
            orders.completed_alice,
            sent("alice", 1500, 1, "10:00"),
            None,
        ),
        (orders.completed_bob, sent("bob", 700, 2, "11:00"), None),
        (orders.no_money, sent("bob", 999_999, 1, "10:00"), None),
        (orders.no_item, sent("alice", 300, 99, "10:00"), None),
        (orders.no_slot, sent("alice", 300, 2, "23:00"), None),
        (orders.unavailable, sent("alice", 400, 3, "11:00"), Some(2)),
        (orders.cancelled, sent("bob", 200, 3, "10:00"), None),
    ];
    for (id, o, lost_at) in &plan {
        saga(&dbs, *id, o, *lost_at).await;
    }
    // The customer's cancel of a completed order: every step given back, in reverse order.
    for pool in [&dbs.billing, &dbs.slots, &dbs.items] {
        assert_eq!(release(pool, orders.cancelled).await, "released");
    }
    let cancel = format!(
        "UPDATE orders SET status = 'cancelled', reason = 'Cancelled by the customer' \
         WHERE id = '{}'",
        orders.cancelled
    );
    exec(&dbs.orders, &cancel).await;

    let tag = Uuid::new_v4().simple().to_string();
    let streams = Streams {
        orders: format!("audit-test-{tag}"),
        dead_letters: format!("audit-test-{tag}.dead"),
        group: "mediator".into(),
    };
    let known = Known {
        sent: Some(plan.iter().map(|(id, o, _)| (*id, o.clone())).collect()),
        deposits: Some(HashMap::from([("alice".to_owned(), DEPOSIT)])),
        streams: Some((redis_url.clone(), streams.clone())),
    };
    World {
        admin,
        databases,
        dbs,
        known,
        orders,
        redis: redis::Client::open(redis_url).unwrap(),
        streams,
    }
}

impl World {
    /// Audits, then removes the databases and streams (before any assertion can fail).
    async fn audit_and_drop(self) -> Audit {
        let audit = audit::audit(&self.dbs, BASELINE, &self.known).await;
        for pool in [
            &self.dbs.billing,
            &self.dbs.orders,
            &self.dbs.items,
            &self.dbs.slots,
        ] {
            pool.close().await;
        }
        stack::drop_databases(&self.admin, &self.databases)
            .await
            .unwrap();
        let mut conn = self.redis.get_multiplexed_async_connection().await.unwrap();
        let _: i64 = redis::cmd("DEL")
            .arg(&self.streams.orders)
            .arg(&self.streams.dead_letters)
            .query_async(&mut conn)
            .await
            .unwrap();
        audit.unwrap()
    }

    async fn redis_cmd(&self, cmd: &redis::Cmd) {
        let mut conn = self.redis.get_multiplexed_async_connection().await.unwrap();
        let _: redis::Value = cmd.query_async(&mut conn).await.unwrap();
    }
}

/// The audit reports exactly one violation, of `check`, and everything else is as clean.
async fn assert_only(world: World, check: &str) {
    let a = world.audit_and_drop().await;
    let expected: std::collections::BTreeMap<&str, usize> = [(check, 1)].into_iter().collect();
    assert_eq!(a.violations, expected, "{}", a.report());
    assert_eq!(a.not_final, 0, "{}", a.report());
}

#[tokio::test]
async fn the_consistent_world_is_clean() {
    let a = world().await.audit_and_drop().await;
    assert!(a.ok(), "{}", a.report());
    assert!(a.violations.is_empty(), "{}", a.report());
    assert_eq!(
        (a.orders, a.completed, a.failed, a.cancelled),
        (7, 2, 4, 1),
        "{}",
        a.report()
    );
    assert_eq!((a.dead_letters, a.pending_entries), (0, 0));
    let reasons: Vec<&str> = a.failed_by_reason.keys().map(String::as_str).collect();
    assert_eq!(
        reasons,
        [
            "Can not get the delivery slot",
            "Can not reserve the item",
            "Not enough money",
            "Service unavailable: billing"
        ]
    );
}

#[tokio::test]
async fn a_double_refund_is_a_wallet_violation() {
    let w = world().await;
    // The charge of the unavailable order was refunded once by the ledger; a second credit:
    exec(
        &w.dbs.billing,
        "UPDATE accounts SET wallet = wallet + 400 WHERE username = 'alice'",
    )
    .await;
    assert_only(w, "wallet").await;
}

#[tokio::test]
async fn a_deposit_applied_and_recorded_twice_is_a_deposits_violation() {
    let w = world().await;
    exec(
        &w.dbs.billing,
        &format!(
            "INSERT INTO deposits (username, idempotency_key, amount) VALUES ('alice', 'k1-again', {DEPOSIT}); \
             UPDATE accounts SET wallet = wallet + {DEPOSIT} WHERE username = 'alice'"
        ),
    )
    .await;
    assert_only(w, "deposits").await;
}

#[tokio::test]
async fn a_leaked_hold_is_held_for_failed() {
    let w = world().await;
    // The no-slot order's item was taken and its release "never happened".
    let sql = format!(
        "UPDATE holds SET state = 'held' WHERE order_id = '{}'; \
         UPDATE items SET stock = stock - 1 WHERE id = 2",
        w.orders.no_slot
    );
    exec(&w.dbs.items, &sql).await;
    assert_only(w, "held-for-failed").await;
}

#[tokio::test]
async fn a_hold_kept_for_a_cancelled_order_is_held_for_cancelled() {
    let w = world().await;
    // The cancelled order's booking "was never given back".
    let sql = format!(
        "UPDATE holds SET state = 'held' WHERE order_id = '{}'; \
         UPDATE slots SET free_couriers = free_couriers - 1 WHERE slot = '10:00'",
        w.orders.cancelled
    );
    exec(&w.dbs.slots, &sql).await;
    assert_only(w, "held-for-cancelled").await;
}

#[tokio::test]
async fn a_cancelled_order_with_another_reason_is_a_reason_violation() {
    let w = world().await;
    let sql = format!(
        "UPDATE orders SET reason = 'Not enough money' WHERE id = '{}'",
        w.orders.cancelled
    );
    exec(&w.dbs.orders, &sql).await;
    assert_only(w, "reason").await;
}

#[tokio::test]
async fn a_hold_for_no_order_is_an_orphan() {
    let w = world().await;
    assert_eq!(hold(&w.dbs.items, Uuid::now_v7(), "3", 1).await, "held");
    assert_only(w, "orphan-hold").await;
}

#[tokio::test]
async fn a_reason_of_another_kind_is_a_reason_violation() {
    let w = world().await;
    // The item was refused; slots never saw the order.
    let sql = format!(
        "UPDATE orders SET reason = 'Can not get the delivery slot' WHERE id = '{}'",
        w.orders.no_item
    );
    exec(&w.dbs.orders, &sql).await;
    assert_only(w, "reason").await;
}

#[tokio::test]
async fn a_failed_order_without_a_reason_is_a_reason_violation() {
    let w = world().await;
    let sql = format!(
        "UPDATE orders SET reason = NULL WHERE id = '{}'",
        w.orders.no_money
    );
    exec(&w.dbs.orders, &sql).await;
    assert_only(w, "reason").await;
}

#[tokio::test]
async fn a_completed_order_with_a_reason_is_a_reason_violation() {
    let w = world().await;
    let sql = format!(
        "UPDATE orders SET reason = 'Not enough money' WHERE id = '{}'",
        w.orders.completed_alice
    );
    exec(&w.dbs.orders, &sql).await;
    assert_only(w, "reason").await;
}

#[tokio::test]
async fn a_stock_unit_created_is_a_stock_violation() {
    let w = world().await;
    exec(
        &w.dbs.items,
        "UPDATE items SET stock = stock + 1 WHERE id = 3",
    )
    .await;
    assert_only(w, "stock").await;
}

#[tokio::test]
async fn a_courier_lost_is_a_couriers_violation() {
    let w = world().await;
    exec(
        &w.dbs.slots,
        "UPDATE slots SET free_couriers = free_couriers - 1 WHERE slot = '10:00'",
    )
    .await;
    assert_only(w, "couriers").await;
}

#[tokio::test]
async fn a_slot_capacity_changed_is_a_capacity_violation() {
    // The old audit read the capacity from the row it checked: this went unseen.
    let w = world().await;
    exec(
        &w.dbs.slots,
        "UPDATE slots SET capacity = capacity + 1 WHERE slot = '10:00'",
    )
    .await;
    assert_only(w, "capacity").await;
}

#[tokio::test]
async fn an_order_stored_with_another_amount_than_sent_is_an_order_vs_sent_violation() {
    let w = world().await;
    // Stored as 7.01 and consistently charged 7.01: only the client knows it sent 7.00.
    let id = w.orders.completed_bob;
    exec(
        &w.dbs.orders,
        &format!("UPDATE orders SET amount = 701 WHERE id = '{id}'"),
    )
    .await;
    exec(
        &w.dbs.billing,
        &format!(
            "UPDATE holds SET quantity = 701 WHERE order_id = '{id}'; \
             UPDATE accounts SET wallet = wallet - 1 WHERE username = 'bob'"
        ),
    )
    .await;
    assert_only(w, "order-vs-sent").await;
}

#[tokio::test]
async fn a_completed_order_missing_its_charge_is_a_missing_hold() {
    let w = world().await;
    // Refunded through the ledger, so the wallet balances: only the order has no charge.
    assert_eq!(
        release(&w.dbs.billing, w.orders.completed_bob).await,
        "released"
    );
    assert_only(w, "missing-hold").await;
}

#[tokio::test]
async fn an_order_charged_another_amount_is_a_hold_mismatch() {
    let w = world().await;
    let sql = format!(
        "UPDATE holds SET quantity = 1600 WHERE order_id = '{}'; \
         UPDATE accounts SET wallet = wallet - 100 WHERE username = 'alice'",
        w.orders.completed_alice
    );
    exec(&w.dbs.billing, &sql).await;
    assert_only(w, "hold-mismatch").await;
}

#[tokio::test]
async fn a_dead_letter_for_a_completed_order_is_a_dead_letter_violation() {
    let w = world().await;
    let mut cmd = redis::cmd("XADD");
    cmd.arg(&w.streams.dead_letters)
        .arg("*")
        .arg("order_id")
        .arg(w.orders.completed_alice.to_string())
        .arg("reason")
        .arg("delivered 11 times");
    w.redis_cmd(&cmd).await;
    let a = {
        let expected: std::collections::BTreeMap<&str, usize> =
            [("dead-letter", 1)].into_iter().collect();
        let a = w.audit_and_drop().await;
        assert_eq!(a.violations, expected, "{}", a.report());
        a
    };
    assert_eq!(a.dead_letters, 1, "{}", a.report());
}

#[tokio::test]
async fn pending_entries_are_reported_not_counted_as_violations() {
    let w = world().await;
    let mut cmd = redis::cmd("XGROUP");
    cmd.arg("CREATE")
        .arg(&w.streams.orders)
        .arg(&w.streams.group)
        .arg("0")
        .arg("MKSTREAM");
    w.redis_cmd(&cmd).await;
    let mut cmd = redis::cmd("XADD");
    cmd.arg(&w.streams.orders)
        .arg("*")
        .arg("order_id")
        .arg(w.orders.completed_alice.to_string());
    w.redis_cmd(&cmd).await;
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(&w.streams.group)
        .arg("gone-consumer")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(&w.streams.orders)
        .arg(">");
    w.redis_cmd(&cmd).await;
    let a = w.audit_and_drop().await;
    assert!(a.ok(), "{}", a.report());
    assert_eq!(a.pending_entries, 1, "{}", a.report());
    assert!(a.report().contains("gone-consumer"), "{}", a.report());
}
