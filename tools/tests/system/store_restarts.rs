//! The README promises that every service rides out a restart of Redis or PostgreSQL: nothing
//! exits, every pool reconnects, and orders placed around the restart complete. This test gives
//! the whole stack stores of its own (`tools::stores::PrivateStores`, started like every other
//! store of the project), so that restarting them disturbs no other test:
//!
//! 1. an order completes (the baseline);
//! 2. Redis is killed (`SIGKILL`) and started again; an order POSTed while it is down is accepted
//!    (the outbox) and completes once it is back, and so does one placed after;
//! 3. PostgreSQL is stopped `immediate` (crash recovery at start) and started again; a new user
//!    signs up (auth), and an order placed after it completes (order, mediator, billing, items,
//!    slots);
//!
//! then no service died on its own and the books balance.

use shop_common::{
    api::{CreateOrder, Details, Status},
    domain::{ItemId, Money, SlotTime},
};
use std::time::Duration;
use tools::{
    audit::{self, Baseline, Known},
    client::{ShopClient, User},
    stack::{Stack, StackConfig},
    stores::{PgStop, PrivateStores},
};
use uuid::Uuid;

/// Bound for an order to become final, stores restarts included.
const FINAL_WITHIN: Duration = Duration::from_secs(60);

async fn order_completes(client: &ShopClient, user: &User, id: Uuid) {
    let waited = client
        .wait_final(user, id, FINAL_WITHIN)
        .await
        .unwrap_or_else(|e| panic!("order {id} did not become final: {e}"));
    assert_eq!(
        (waited.order.status, waited.order.success),
        (Status::Completed, Some(true)),
        "{:?}",
        waited.order
    );
}

async fn place(client: &ShopClient, user: &User) -> Uuid {
    let new = CreateOrder {
        amount: Money::from_minor(100),
        details: Details {
            item: ItemId::try_from(1).unwrap(),
            slot: SlotTime::try_from("09:00".to_owned()).unwrap(),
        },
    };
    let (status, order) = client.create_order(user, &new, None).await.unwrap();
    assert_eq!(status, reqwest::StatusCode::CREATED, "{order:?}");
    order.id
}

/// Waits (bounded) until Redis no longer answers PING.
async fn until_redis_is_down(url: &str) {
    let client = redis::Client::open(url).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let up = match client.get_multiplexed_async_connection().await {
            Ok(mut conn) => redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_ok(),
            Err(_) => false,
        };
        if !up {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Redis still up 10 s after its kill"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_reconnect_after_redis_and_postgres_restarts() {
    let dir = std::env::temp_dir().join(format!("saga-store-restarts-{}", uuid::Uuid::new_v4()));
    let stores = PrivateStores::start(&dir)
        .await
        .expect("starting private stores");
    let mut config = StackConfig::new(&stores.admin_url, &stores.redis.url);
    config.db_max_connections = 6;
    let stack = Stack::start(config).await.expect("starting the stack");
    let client = ShopClient::new(stack.endpoints(), Duration::from_secs(10)).unwrap();
    let alice = client.register("alice", "secret-pass-1").await.unwrap();
    let first = place(&client, &alice).await;
    order_completes(&client, &alice, first).await;

    // Redis: killed, and an order POSTed while it is down.
    let orders_stream = stack.streams().orders.clone();
    let restart = stores
        .redis
        .restart(&orders_stream, None, Duration::from_secs(2));
    let during = async {
        until_redis_is_down(&stores.redis.url).await;
        place(&client, &alice).await
    };
    let (restarted, during) = tokio::join!(restart, during);
    restarted.expect("restarting Redis");
    order_completes(&client, &alice, during).await;
    let after_redis = place(&client, &alice).await;
    order_completes(&client, &alice, after_redis).await;

    // PostgreSQL: aborted (crash recovery), then a new user and an order.
    stores
        .postgres
        .restart(PgStop::Immediate)
        .await
        .expect("restarting PostgreSQL");
    let bob = client.register("bob", "secret-pass-1").await.unwrap();
    let after_postgres = place(&client, &bob).await;
    order_completes(&client, &bob, after_postgres).await;

    let crashed = stack.crashed();
    assert!(
        crashed.is_empty(),
        "services died on their own: {crashed:?}"
    );
    let config = stack.config();
    let report = audit::audit(
        &stack.dbs().await.unwrap(),
        Baseline {
            initial_wallet_cents: config.initial_wallet_cents,
            item_stock: config.item_stock,
            slot_capacity: config.slot_capacity,
        },
        &Known::default(),
    )
    .await
    .unwrap();
    assert!(report.ok(), "{}", report.report());
    assert_eq!(
        (report.completed, report.failed),
        (4, 0),
        "{}",
        report.report()
    );
    stack.shutdown().await;
    drop(stores);
}
