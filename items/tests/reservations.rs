//! The reservation step of the saga and the public catalog, over real HTTP and Postgres: idempotent
//! actions and compensations, tombstones, races for the last unit, rejections and the token guard.
//! The ledger checks are the shared kit's (`shop_common::testing::ledger`), run on items' own
//! resources; what is items' alone (the catalog, stock in units, a restart) is checked here.

mod common;

use common::{spawn_app, spawn_on};
use serde_json::Value;
use shop_common::testing::{
    self, code,
    ledger::{self, Participant, granted},
    outage::Link,
};
use uuid::Uuid;

/// The migrations rendered from the ledger's templates are the files items released (checksums
/// from the release), so a database migrated before keeps starting.
#[test]
fn the_released_migrations_are_rendered_byte_for_byte() {
    testing::assert_released(
        &items::MIGRATOR,
        &[
            testing::Released {
                version: 1,
                description: "items",
                checksum: "96d2e5e710c9d97b3e4cb6b6a0dd34a64fc46a56ae5787322de84faea1423ff5c3d45e011ae7038b87ec7f21e5767105",
            },
            testing::Released {
                version: 2,
                description: "ledger functions",
                checksum: "d6eb3384dc36e603b8c2da6df52bd7dd939b5806708b85256cc312b94ba6e2069f39b2a89d772cde639cae5f91f9b7c0",
            },
        ],
    );
}

#[tokio::test]
async fn the_catalog_lists_the_seeded_items_by_id() {
    let app = spawn_app(7).await;
    let items = app.catalog().await;
    let ids: Vec<i64> = items.iter().filter_map(|i| i["id"].as_i64()).collect();
    assert_eq!(ids, (1..=10).collect::<Vec<_>>());
    for item in &items {
        assert!(!item["name"].as_str().unwrap_or("").is_empty(), "{item}");
        assert!(item["price"].as_f64().is_some_and(|p| p > 0.0), "{item}");
        assert_eq!(item["stock"], 7, "{item}");
        assert_eq!(item.as_object().map(|o| o.len()), Some(4), "{item}");
    }
    let with_slash = app.service.get("/api/items/").await;
    assert_eq!(with_slash, (200, Value::from(items)));
}

#[tokio::test]
async fn prices_are_listed_in_currency_units() {
    let app = spawn_app(1).await;
    let cents: Vec<i64> = sqlx::query_scalar("SELECT price FROM items ORDER BY id")
        .fetch_all(&app.service.pool)
        .await
        .unwrap();
    let listed: Vec<i64> = app
        .catalog()
        .await
        .iter()
        .map(|i| (i["price"].as_f64().unwrap() * 100.0).round() as i64)
        .collect();
    assert_eq!(listed, cents);
}

#[tokio::test]
async fn the_catalog_reflects_reservations_and_releases() {
    let app = spawn_app(1000).await;
    let order = Uuid::new_v4();
    assert_eq!(app.ledger.hold(order, "3", 1).await, granted(order, "3", 1));
    let items = app.catalog().await;
    assert_eq!(items[2]["id"], 3);
    assert_eq!(items[2]["stock"], 999);
    assert_eq!(items[3]["stock"], 1000);
    app.ledger.release(order).await;
    assert_eq!(app.catalog().await[2]["stock"], 1000);
}

#[tokio::test]
async fn a_restart_keeps_stock_and_reservations() {
    let app = spawn_app(5).await;
    let order = Uuid::new_v4();
    assert_eq!(app.ledger.hold(order, "1", 2).await.0, 200);
    // A second instance on the same database, configured with another ITEM_STOCK.
    let again = spawn_on(app.service.database.clone(), 1000).await;
    let items = again.catalog().await;
    assert_eq!(items.len(), 10);
    assert_eq!(items[0]["stock"], 3);
    assert_eq!(items[1]["stock"], 5);
    assert_eq!(again.ledger.recorded(order).await, granted(order, "1", 2));
}

#[tokio::test]
async fn a_repeated_reservation_takes_stock_once() {
    ledger::repeated_hold_takes_once(&spawn_app(10).await, "4", 3).await;
}

#[tokio::test]
async fn a_repeated_release_gives_back_once() {
    ledger::repeated_release_gives_back_once(&spawn_app(10).await, "4", 3).await;
}

#[tokio::test]
async fn a_release_before_the_reservation_leaves_a_tombstone() {
    ledger::release_before_hold_leaves_a_tombstone(&spawn_app(10).await, "5", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_orders_race_for_the_last_unit_and_one_wins() {
    ledger::twenty_orders_race_for_the_last(&spawn_app(1).await, "6", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_reservation_sent_ten_times_at_once_takes_one_unit() {
    ledger::the_same_hold_at_once_takes_once(&spawn_app(1000).await, "7", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_release_sent_ten_times_at_once_gives_back_once() {
    ledger::the_same_release_at_once_gives_back_once(&spawn_app(1000).await, "7", 2).await;
}

#[tokio::test]
async fn unknown_items_are_rejected() {
    // Ids that are not positive, not numbers, or too large for one.
    let others = ["0", "-1", "abc", "", "99999999999999999999"];
    ledger::unknown_resources_are_rejected(&spawn_app(10).await, "999", &others).await;
}

#[tokio::test]
async fn a_sold_out_item_is_rejected_and_the_rejection_is_final() {
    ledger::an_exhausted_rejection_is_final(&spawn_app(2).await, "8").await;
}

#[tokio::test]
async fn more_than_the_stock_is_rejected_without_taking_any() {
    let app = spawn_app(2).await;
    let a = app.ledger.hold(Uuid::new_v4(), "9", 3).await;
    assert_eq!((a.0, code(&a)), (409, "item_unavailable"));
    assert_eq!(app.stock(9).await, 2);
    assert_eq!(app.held("9").await, 0);
}

#[tokio::test]
async fn a_non_positive_quantity_is_a_bad_request() {
    ledger::a_non_positive_quantity_is_a_bad_request(&spawn_app(2).await, "1").await;
}

#[tokio::test]
async fn an_unknown_order_is_not_found() {
    ledger::an_unknown_order_is_not_found(&spawn_app(2).await).await;
}

#[tokio::test]
async fn the_ledger_requires_the_internal_token() {
    ledger::the_ledger_requires_the_internal_token(&spawn_app(2).await, "1").await;
}

/// Regression: a reservation and releases of the same order racing each other used to deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reservations_racing_their_releases_never_fail() {
    ledger::holds_racing_their_releases_never_fail(&spawn_app(3).await, "2", 1).await;
}

#[tokio::test]
async fn a_replayed_reservation_with_other_terms_is_refused() {
    ledger::a_replay_with_other_terms_is_refused(&spawn_app(10).await, "4", "5", 2).await;
}

#[tokio::test]
async fn with_its_database_down_items_answers_503_unavailable() {
    let (link, database) = Link::to_database(&testing::fresh_database().await).await;
    let app = spawn_on(database, 10).await;
    let catalog = app
        .service
        .http
        .get(format!("{}/api/items", app.service.base));
    ledger::a_database_outage_is_503_until_it_is_back(&app, &link, catalog, "3", 1).await;
}
