//! The courier step of the saga and the public slot list, over real HTTP and Postgres: idempotent
//! bookings and releases, tombstones, races for the last courier, rejections and the token guard.
//! The ledger checks are the shared kit's (`shop_common::testing::ledger`), run on slots' own
//! resources; what is slots' alone (the slot list, capacities, a restart) is checked here.

mod common;

use common::{spawn_app, spawn_on};
use serde_json::{Value, json};
use shop_common::testing::{
    self, code,
    ledger::{self, granted},
    outage::Link,
};
use uuid::Uuid;

/// The migrations rendered from the ledger's templates are the files slots released (checksums
/// from the release), so a database migrated before keeps starting.
#[test]
fn the_released_migrations_are_rendered_byte_for_byte() {
    testing::assert_released(
        &slots::MIGRATOR,
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
    let slots = app.slots().await;
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
    let order = Uuid::new_v4();
    assert_eq!(
        app.ledger.hold(order, "09:00", 1).await,
        granted(order, "09:00", 1)
    );
    let slots = app.slots().await;
    assert_eq!(slots[9], json!({"slot": "09:00", "free_couriers": 999}));
    assert_eq!(slots[8], json!({"slot": "08:00", "free_couriers": 1000}));
    app.ledger.release(order).await;
    assert_eq!(app.slots().await[9]["free_couriers"], 1000);
}

#[tokio::test]
async fn a_restart_keeps_bookings() {
    let app = spawn_app(5).await;
    let order = Uuid::new_v4();
    assert_eq!(app.ledger.hold(order, "00:00", 1).await.0, 200);
    // A second instance on the same database, configured with another SLOT_CAPACITY.
    let again = spawn_on(app.service.database.clone(), 1000).await;
    let slots = again.slots().await;
    assert_eq!(slots.len(), 10);
    assert_eq!(slots[0]["free_couriers"], 4);
    assert_eq!(slots[1]["free_couriers"], 5);
    assert_eq!(
        again.ledger.recorded(order).await,
        granted(order, "00:00", 1)
    );
}

#[tokio::test]
async fn a_repeated_booking_takes_one_courier() {
    ledger::repeated_hold_takes_once(&spawn_app(10).await, "04:00", 1).await;
}

#[tokio::test]
async fn a_repeated_release_gives_back_once() {
    ledger::repeated_release_gives_back_once(&spawn_app(10).await, "04:00", 1).await;
}

#[tokio::test]
async fn a_release_before_the_booking_leaves_a_tombstone() {
    ledger::release_before_hold_leaves_a_tombstone(&spawn_app(10).await, "05:00", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_orders_race_for_the_last_courier_and_one_wins() {
    ledger::twenty_orders_race_for_the_last(&spawn_app(1).await, "06:00", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_booking_sent_ten_times_at_once_takes_one_courier() {
    ledger::the_same_hold_at_once_takes_once(&spawn_app(1000).await, "07:00", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_release_sent_ten_times_at_once_gives_back_once() {
    ledger::the_same_release_at_once_gives_back_once(&spawn_app(1000).await, "07:00", 1).await;
}

#[tokio::test]
async fn unknown_slots_are_rejected() {
    // Only the hours 00:00 to 09:00 are served: a time off the hour, and keys that are no time.
    let others = ["09:30", "24:00", "9:00", "nine", ""];
    ledger::unknown_resources_are_rejected(&spawn_app(10).await, "19:00", &others).await;
}

#[tokio::test]
async fn a_full_slot_is_rejected_and_the_rejection_is_final() {
    ledger::an_exhausted_rejection_is_final(&spawn_app(1).await, "08:00").await;
}

#[tokio::test]
async fn a_slot_without_couriers_is_rejected() {
    let app = spawn_app(0).await;
    let a = app.ledger.hold(Uuid::new_v4(), "01:00", 1).await;
    assert_eq!((a.0, code(&a)), (409, "slot_unavailable"));
    assert_eq!(app.free("01:00").await, 0);
}

#[tokio::test]
async fn a_non_positive_quantity_is_a_bad_request() {
    ledger::a_non_positive_quantity_is_a_bad_request(&spawn_app(2).await, "01:00").await;
}

#[tokio::test]
async fn an_unknown_order_is_not_found() {
    ledger::an_unknown_order_is_not_found(&spawn_app(2).await).await;
}

#[tokio::test]
async fn the_ledger_requires_the_internal_token() {
    ledger::the_ledger_requires_the_internal_token(&spawn_app(2).await, "01:00").await;
}

/// Regression: a booking and releases of the same order racing each other used to fail with 500s
/// (a deadlock, and a give-back computed from a stale snapshot tripping `free <= capacity`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bookings_racing_their_releases_never_fail() {
    ledger::holds_racing_their_releases_never_fail(&spawn_app(3).await, "03:00", 1).await;
}

#[tokio::test]
async fn a_replayed_booking_with_other_terms_is_refused() {
    ledger::a_replay_with_other_terms_is_refused(&spawn_app(10).await, "05:00", "06:00", 1).await;
}

#[tokio::test]
async fn with_its_database_down_slots_answers_503_unavailable() {
    let (link, database) = Link::to_database(&testing::fresh_database().await).await;
    let app = spawn_on(database, 10).await;
    let slots = app
        .service
        .http
        .get(format!("{}/api/slots", app.service.base));
    ledger::a_database_outage_is_503_until_it_is_back(&app, &link, slots, "09:00", 1).await;
}
