//! The reservation step of the saga and the public catalog, over real HTTP and Postgres. The
//! ledger contract (idempotent actions and compensations, tombstones, races for the last unit,
//! rejections, the token guard, a database outage) is the shared kit's, written by
//! `ledger_contract_tests!` on items' own resources; what is items' alone (the catalog, stock in
//! units, a restart) is checked here.

use crate::helpers::{client, spawn_app, spawn_on};
use serde_json::Value;
use shop_common::testing::{
    self, code,
    ledger::{Participant, granted},
};
use uuid::Uuid;

shop_common::ledger_contract_tests! {
    spawn_on: crate::helpers::spawn_on,
    resources: ["4", "5"],
    quantity: 2,
    unknown: "999",
    // Ids that are not positive, not numbers, or too large for one.
    malformed: ["0", "-1", "abc", "", "99999999999999999999"],
}

/// The migrations rendered from the ledger's templates are the files items released (checksums
/// from the release), so a database migrated before keeps starting.
#[test]
fn the_released_migrations_are_rendered_byte_for_byte() {
    testing::assert_released(
        items::RESERVATIONS.migrator(),
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
    let items = app.list().await;
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
    let items = client(&app).items().await.expect("the catalog");
    let listed: Vec<i64> = items.iter().map(|i| i.price.minor()).collect();
    assert_eq!(listed, cents);
}

#[tokio::test]
async fn the_catalog_reflects_reservations_and_releases() {
    let app = spawn_app(1000).await;
    let shop = client(&app);
    let order = Uuid::new_v4();
    assert_eq!(app.ledger.hold(order, "3", 1).await, granted(order, "3", 1));
    let items = shop.items().await.expect("the catalog");
    assert_eq!((items[2].id.get(), items[2].stock), (3, 999));
    assert_eq!(items[3].stock, 1000);
    app.ledger.release(order).await;
    assert_eq!(shop.items().await.expect("the catalog")[2].stock, 1000);
}

#[tokio::test]
async fn a_restart_keeps_stock_and_reservations() {
    let app = spawn_app(5).await;
    let order = Uuid::new_v4();
    assert_eq!(app.ledger.hold(order, "1", 2).await.0, 200);
    // A second instance on the same database, configured with another ITEM_STOCK.
    let again = spawn_on(app.service.database.clone(), 1000).await;
    let items = client(&again).items().await.expect("the catalog");
    assert_eq!(items.len(), 10);
    assert_eq!(items[0].stock, 3);
    assert_eq!(items[1].stock, 5);
    assert_eq!(again.ledger.recorded(order).await, granted(order, "1", 2));
}

#[tokio::test]
async fn more_than_the_stock_is_rejected_without_taking_any() {
    let app = spawn_app(2).await;
    let a = app.ledger.hold(Uuid::new_v4(), "9", 3).await;
    assert_eq!((a.0, code(&a)), (409, "item_unavailable"));
    assert_eq!(app.available("9").await, 2);
    assert_eq!(app.held("9").await, 0);
}
