//! Issue acceptance, end to end: the six real service binaries as processes, on a real Postgres
//! and Redis (`TEST_DATABASE_URL`, `TEST_REDIS_URL`; without them these tests fail, they never
//! skip). Each test has its own stack: fresh databases, its own Redis stream.
//!
//! A successful order takes the amount from the wallet, one unit of the item and one courier of
//! the slot; a failed one (unknown slot, unknown item, amount above the wallet) carries the reason
//! the API promises and leaves wallet, stock and couriers exactly as they were before it. After
//! every test the conservation audit runs on the databases.

use shop_common::{
    api::{CreateOrder, Details, OrderView, Status, StepKind, StepOutcome},
    domain::{ItemId, Money, SlotTime},
};
use std::{collections::BTreeMap, time::Duration};
use tools::{
    audit::{self, Baseline},
    client::{ShopClient, User},
    stack::{Stack, StackConfig},
    workload::{CANNOT_RESERVE_ITEM, NO_DELIVERY_SLOT, NOT_ENOUGH_MONEY},
};
use uuid::Uuid;

struct Shop {
    stack: Stack,
    client: ShopClient,
}

impl Shop {
    async fn start() -> Shop {
        let stack = Stack::start(StackConfig::from_test_env())
            .await
            .expect("starting the stack");
        let client = ShopClient::new(stack.endpoints(), Duration::from_secs(10)).unwrap();
        Shop { stack, client }
    }

    async fn user(&self, name: &str) -> User {
        self.client.register(name, "secret-pass-1").await.unwrap()
    }

    /// Wallet (cents), stock per item, free couriers per slot.
    async fn snapshot(&self, user: &User) -> Snapshot {
        let wallet = self.client.account(user).await.unwrap().wallet.minor();
        let stock = self
            .client
            .items()
            .await
            .unwrap()
            .into_iter()
            .map(|i| (i.id.get(), i.stock))
            .collect();
        let free = self
            .client
            .slots()
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.slot.to_string(), s.free_couriers))
            .collect();
        Snapshot {
            wallet,
            stock,
            free,
        }
    }

    async fn order(&self, user: &User, amount_cents: i64, item: i64, slot: &str) -> OrderView {
        let (status, created) = self
            .client
            .create_order(user, &new_order(amount_cents, item, slot), None)
            .await
            .unwrap();
        assert_eq!(status, reqwest::StatusCode::CREATED);
        assert_eq!(
            created.status,
            Status::Pending,
            "a new order is pending: {created:?}"
        );
        assert_eq!(created.success, None);
        self.wait(user, created.id).await
    }

    async fn wait(&self, user: &User, id: Uuid) -> OrderView {
        self.client
            .wait_final(user, id, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("order {id} did not become final: {e}"))
            .order
    }

    /// The conservation audit must pass; then the stack goes away cleanly.
    async fn finish(self) {
        let dbs = self.stack.dbs().await.unwrap();
        let config = self.stack.config();
        let report = audit::audit(
            &dbs,
            Baseline {
                initial_wallet_cents: config.initial_wallet_cents,
                item_stock: config.item_stock,
                slot_capacity: config.slot_capacity,
            },
            &audit::Known::default(),
        )
        .await
        .unwrap();
        assert!(
            report.ok(),
            "conservation audit failed:\n{}",
            report.report()
        );
        let crashed = self.stack.crashed();
        assert!(
            crashed.is_empty(),
            "services died on their own: {crashed:?}"
        );
        self.stack.shutdown().await;
    }
}

/// An order's body; the values must be well-formed (the API may still refuse them).
fn new_order(amount_cents: i64, item: i64, slot: &str) -> CreateOrder {
    CreateOrder {
        amount: Money::from_minor(amount_cents),
        details: Details {
            item: ItemId::try_from(item).expect("a positive item id"),
            slot: SlotTime::try_from(slot.to_owned()).expect("an \"HH:MM\" slot"),
        },
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    wallet: i64,
    stock: BTreeMap<i64, i64>,
    free: BTreeMap<String, i64>,
}

/// A failed order: the reason, and nothing taken.
async fn assert_failed_cleanly(
    shop: &Shop,
    user: &User,
    order: OrderView,
    reason: &str,
    before: Snapshot,
) {
    assert_eq!(order.status, Status::Failed, "{order:?}");
    assert_eq!(order.success, Some(false), "{order:?}");
    assert_eq!(order.reason.as_deref(), Some(reason), "{order:?}");
    let after = shop.snapshot(user).await;
    assert_eq!(
        after, before,
        "a failed order must give back everything it took"
    );
}

#[tokio::test]
async fn successful_order_takes_money_stock_and_a_courier() {
    let shop = Shop::start().await;
    let alice = shop.user("alice").await;
    let before = shop.snapshot(&alice).await;
    assert_eq!(before.wallet, 10_000, "a new wallet holds 100.00");

    let order = shop.order(&alice, 3000, 1, "09:00").await;
    assert_eq!(order.status, Status::Completed, "{order:?}");
    assert_eq!(order.success, Some(true));
    assert_eq!(order.reason, None);
    assert!(
        order.saga.as_ref().is_some_and(|s| !s.is_empty()),
        "a completed order shows its saga log: {order:?}"
    );

    let after = shop.snapshot(&alice).await;
    assert_eq!(after.wallet, before.wallet - 3000);
    let mut expected = before.clone();
    expected.wallet -= 3000;
    *expected.stock.get_mut(&1).unwrap() -= 1;
    *expected.free.get_mut("09:00").unwrap() -= 1;
    assert_eq!(after, expected, "exactly one unit and one courier taken");

    let listed = shop.client.orders(&alice).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, order.id);
    shop.finish().await;
}

/// `POST /api/orders/?wait_ms=N` on the real stack: one request places the order and answers it
/// final — completed with its saga log (the three actions), or failed with its reason.
#[tokio::test]
async fn a_waiting_post_answers_the_final_order_in_one_request() {
    let shop = Shop::start().await;
    let erin = shop.user("erin").await;
    let wait = Duration::from_secs(10);
    let (status, order) = shop
        .client
        .create_order_waiting(&erin, &new_order(2500, 1, "09:00"), None, wait)
        .await
        .unwrap();
    assert_eq!(status, reqwest::StatusCode::CREATED);
    assert_eq!(order.status, Status::Completed, "{order:?}");
    assert_eq!(order.success, Some(true));
    let log: Vec<(&str, StepKind, StepOutcome)> = order
        .saga
        .iter()
        .flatten()
        .map(|s| (s.participant.as_str(), s.kind, s.outcome))
        .collect();
    let action = |p| (p, StepKind::Action, StepOutcome::Ok);
    assert_eq!(log, [action("items"), action("slots"), action("billing")]);

    let before = shop.snapshot(&erin).await;
    let (_, refused) = shop
        .client
        .create_order_waiting(&erin, &new_order(2500, 1, "19:00"), None, wait)
        .await
        .unwrap();
    assert_failed_cleanly(&shop, &erin, refused, NO_DELIVERY_SLOT, before).await;
    shop.finish().await;
}

#[tokio::test]
async fn unknown_slot_fails_and_gives_everything_back() {
    let shop = Shop::start().await;
    let bob = shop.user("bob").await;
    let before = shop.snapshot(&bob).await;
    assert!(
        !before.free.contains_key("19:00"),
        "19:00 must not be a slot"
    );
    let order = shop.order(&bob, 2500, 1, "19:00").await;
    assert_failed_cleanly(&shop, &bob, order, NO_DELIVERY_SLOT, before).await;
    shop.finish().await;
}

#[tokio::test]
async fn unknown_item_fails_and_gives_everything_back() {
    let shop = Shop::start().await;
    let carol = shop.user("carol").await;
    let before = shop.snapshot(&carol).await;
    assert!(!before.stock.contains_key(&999), "999 must not be an item");
    let order = shop.order(&carol, 2500, 999, "09:00").await;
    assert_failed_cleanly(&shop, &carol, order, CANNOT_RESERVE_ITEM, before).await;
    shop.finish().await;
}

#[tokio::test]
async fn amount_above_the_wallet_fails_and_gives_everything_back() {
    let shop = Shop::start().await;
    let dave = shop.user("dave").await;
    let before = shop.snapshot(&dave).await;
    let order = shop.order(&dave, before.wallet + 1, 1, "09:00").await;
    assert_failed_cleanly(&shop, &dave, order, NOT_ENOUGH_MONEY, before).await;
    shop.finish().await;
}

#[tokio::test]
async fn a_repeated_post_with_the_same_idempotency_key_makes_one_order() {
    let shop = Shop::start().await;
    let erin = shop.user("erin").await;
    let before = shop.snapshot(&erin).await;
    let order = new_order(1000, 2, "08:00");
    let key = Some("erin-order-1");
    let (first_status, first) = shop.client.create_order(&erin, &order, key).await.unwrap();
    let (second_status, second) = shop.client.create_order(&erin, &order, key).await.unwrap();
    assert_eq!(first_status, reqwest::StatusCode::CREATED);
    assert_eq!(second_status, reqwest::StatusCode::OK, "a replay");
    assert_eq!(first.id, second.id, "the same key gives the same order");
    let done = shop.wait(&erin, first.id).await;
    assert_eq!(done.status, Status::Completed, "{done:?}");
    // A replay after the saga ended still answers with the same order, and charges nothing more.
    let (_, third) = shop.client.create_order(&erin, &order, key).await.unwrap();
    assert_eq!(third.id, first.id);
    let orders = shop.client.orders(&erin).await.unwrap();
    assert_eq!(orders.len(), 1, "one order for one key: {orders:?}");
    let after = shop.snapshot(&erin).await;
    assert_eq!(after.wallet, before.wallet - 1000, "charged once");
    assert_eq!(after.stock[&2], before.stock[&2] - 1);
    assert_eq!(after.free["08:00"], before.free["08:00"] - 1);
    shop.finish().await;
}

#[tokio::test]
async fn another_users_order_is_not_found() {
    let shop = Shop::start().await;
    let frank = shop.user("frank").await;
    let grace = shop.user("grace").await;
    let order = shop.order(&frank, 500, 3, "07:00").await;
    let (status, body) = shop.client.order_raw(&grace, order.id).await.unwrap();
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "not_found", "{body}");
    assert!(shop.client.orders(&grace).await.unwrap().is_empty());
    let (status, _) = shop.client.order_raw(&frank, order.id).await.unwrap();
    assert_eq!(status, reqwest::StatusCode::OK);
    shop.finish().await;
}

/// The order API died between its INSERT's commit and its XADD: the order is stored, never
/// published. The sweep of the real order binary (REPUBLISH_AFTER_SECS, 5 s by default) publishes
/// it, and the saga runs as for any order.
#[tokio::test]
async fn an_order_stored_but_never_published_is_published_by_the_sweep() {
    let shop = Shop::start().await;
    let frank = shop.user("frank").await;
    let before = shop.snapshot(&frank).await;
    let orders = shop
        .stack
        .connect(tools::stack::Database::Orders)
        .await
        .unwrap();
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO orders (id, username, amount, item, slot) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(&frank.username)
    .bind(1000_i64)
    .bind(3_i64)
    .bind("09:00")
    .execute(&orders)
    .await
    .unwrap();
    let done = shop.wait(&frank, id).await;
    assert_eq!(done.status, Status::Completed, "{done:?}");
    let after = shop.snapshot(&frank).await;
    assert_eq!(after.wallet, before.wallet - 1000);
    assert_eq!(after.stock[&3], before.stock[&3] - 1);
    assert_eq!(after.free["09:00"], before.free["09:00"] - 1);
    shop.finish().await;
}
