//! The courier step of the saga and the public slot list, over real HTTP and Postgres. The ledger
//! contract (idempotent bookings and releases, tombstones, races for the last courier, rejections,
//! the token guard, a database outage) is the shared kit's, written by `ledger_contract_tests!` on
//! slots' own resources; what is slots' alone (the slot list, capacities, a restart) is here.

use crate::helpers::{client, spawn_app, spawn_on};
use serde_json::{Value, json};
use shop_common::testing::{
    self, code,
    ledger::{Participant, granted},
};
use uuid::Uuid;

shop_common::ledger_contract_tests! {
    spawn_on: crate::helpers::spawn_on,
    resources: ["05:00", "06:00"],
    quantity: 1,
    unknown: "19:00",
    // Only the hours 00:00 to 09:00 are served: a time off the hour, and keys that are no time.
    malformed: ["09:30", "24:00", "9:00", "nine", ""],
}

/// The migrations rendered from the ledger's templates are the files slots released (checksums
/// from the release), so a database migrated before keeps starting.
#[test]
fn the_released_migrations_are_rendered_byte_for_byte() {
    testing::assert_released(
        slots::BOOKINGS.migrator(),
        &[
            testing::Released {
                version: 1,
                description: "slots",
                checksum: "c832f53a36ae53586b7bba09424462fb42b02ce29b2d8b3936dde411a514c4b93b8e56372af61acecd023db0eadf9f09",
            },
            testing::Released {
                version: 2,
                description: "ledger functions",
                checksum: "eb942de68dfe18a0f1aeb663e77f28e8ce500b2150274bbee90543fd2113fb5defb6c2a59a7fc55dfb32bb70e52770b8",
            },
        ],
    );
}

#[tokio::test]
async fn the_slot_list_shows_ten_hourly_slots_in_order() {
    let app = spawn_app(4).await;
    let slots = app.list().await;
    let expected: Vec<Value> = (0..10)
        .map(|h| json!({"slot": format!("{h:02}:00"), "free_couriers": 4}))
        .collect();
    assert_eq!(slots, expected);
    let with_slash = app.service.get("/api/slots/").await;
    assert_eq!(with_slash, (200, Value::from(expected)));
    let capacity: Vec<i64> = sqlx::query_scalar("SELECT capacity FROM slots")
        .fetch_all(&app.service.pool)
        .await
        .unwrap();
    assert_eq!(capacity, vec![4; 10]);
}

#[tokio::test]
async fn the_slot_list_reflects_bookings_and_releases() {
    let app = spawn_app(1000).await;
    let shop = client(&app);
    let order = Uuid::new_v4();
    assert_eq!(
        app.ledger.hold(order, "09:00", 1).await,
        granted(order, "09:00", 1)
    );
    let slots = shop.slots().await.expect("the slot list");
    assert_eq!(
        (slots[9].slot.as_str(), slots[9].free_couriers),
        ("09:00", 999)
    );
    assert_eq!(
        (slots[8].slot.as_str(), slots[8].free_couriers),
        ("08:00", 1000)
    );
    app.ledger.release(order).await;
    assert_eq!(
        shop.slots().await.expect("the slot list")[9].free_couriers,
        1000
    );
}

#[tokio::test]
async fn a_restart_keeps_bookings() {
    let app = spawn_app(5).await;
    let order = Uuid::new_v4();
    assert_eq!(app.ledger.hold(order, "00:00", 1).await.0, 200);
    // A second instance on the same database, configured with another SLOT_CAPACITY.
    let again = spawn_on(app.service.database.clone(), 1000).await;
    let slots = client(&again).slots().await.expect("the slot list");
    assert_eq!(slots.len(), 10);
    assert_eq!(slots[0].free_couriers, 4);
    assert_eq!(slots[1].free_couriers, 5);
    assert_eq!(
        again.ledger.recorded(order).await,
        granted(order, "00:00", 1)
    );
}

#[tokio::test]
async fn a_slot_without_couriers_is_rejected() {
    let app = spawn_app(0).await;
    let a = app.ledger.hold(Uuid::new_v4(), "01:00", 1).await;
    assert_eq!((a.0, code(&a)), (409, "slot_unavailable"));
    assert_eq!(app.available("01:00").await, 0);
}
