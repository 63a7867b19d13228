//! The courier step of the saga and the public slot list, over real HTTP and Postgres: idempotent
//! bookings and releases, tombstones, races for the last courier, rejections and the token guard.

mod common;

use common::{code, granted, spawn_app, spawn_on};
use futures::future::join_all;
use serde_json::{Value, json};
use uuid::Uuid;

#[tokio::test]
async fn the_slot_list_shows_ten_hourly_slots_in_order() {
    let app = spawn_app(4).await;
    let slots = app.slots().await;
    let expected: Vec<Value> = (0..10)
        .map(|h| json!({"slot": format!("{h:02}:00"), "free_couriers": 4}))
        .collect();
    assert_eq!(slots, expected);
    let with_slash = app
        .http
        .get(format!("{}/api/slots/", app.base))
        .send()
        .await;
    let with_slash: Vec<Value> = with_slash.unwrap().json().await.unwrap();
    assert_eq!(with_slash, expected);
    let capacity: Vec<i64> = sqlx::query_scalar("SELECT capacity FROM slots")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(capacity, vec![4; 10]);
}

#[tokio::test]
async fn the_slot_list_reflects_bookings_and_releases() {
    let app = spawn_app(1000).await;
    let order = Uuid::new_v4();
    assert_eq!(
        app.book(order, "09:00", 1).await,
        granted(order, "09:00", 1)
    );
    let slots = app.slots().await;
    assert_eq!(slots[9], json!({"slot": "09:00", "free_couriers": 999}));
    assert_eq!(slots[8], json!({"slot": "08:00", "free_couriers": 1000}));
    app.release(order).await;
    assert_eq!(app.slots().await[9]["free_couriers"], 1000);
}

#[tokio::test]
async fn a_restart_keeps_bookings() {
    let app = spawn_app(5).await;
    let order = Uuid::new_v4();
    assert_eq!(app.book(order, "00:00", 1).await.0, 200);
    // A second instance on the same database, configured with another SLOT_CAPACITY.
    let again = spawn_on(app.database.clone(), 1000).await;
    let slots = again.slots().await;
    assert_eq!(slots.len(), 10);
    assert_eq!(slots[0]["free_couriers"], 4);
    assert_eq!(slots[1]["free_couriers"], 5);
    assert_eq!(again.hold(order).await, granted(order, "00:00", 1));
}

#[tokio::test]
async fn a_repeated_booking_takes_one_courier() {
    let app = spawn_app(10).await;
    let order = Uuid::new_v4();
    assert_eq!(
        app.book(order, "04:00", 1).await,
        granted(order, "04:00", 1)
    );
    assert_eq!(
        app.book(order, "04:00", 1).await,
        granted(order, "04:00", 1)
    );
    assert_eq!(app.free("04:00").await, 9);
    assert_eq!(app.hold(order).await, granted(order, "04:00", 1));
}

#[tokio::test]
async fn a_repeated_release_gives_back_once() {
    let app = spawn_app(10).await;
    let order = Uuid::new_v4();
    app.book(order, "04:00", 1).await;
    let released =
        json!({"order_id": order, "state": "released", "resource": "04:00", "quantity": 1});
    assert_eq!(app.release(order).await, (200, released.clone()));
    assert_eq!(app.release(order).await, (200, released.clone()));
    assert_eq!(app.free("04:00").await, 10);
    assert_eq!(app.hold(order).await, (200, released));
    let late = app.book(order, "04:00", 1).await;
    assert_eq!((late.0, code(&late)), (409, "order_cancelled"));
    assert_eq!(app.free("04:00").await, 10);
}

#[tokio::test]
async fn a_release_before_the_booking_leaves_a_tombstone() {
    let app = spawn_app(10).await;
    let order = Uuid::new_v4();
    let (status, body) = app.release(order).await;
    assert_eq!((status, &body["state"]), (200, &json!("cancelled")));
    let late = app.book(order, "05:00", 1).await;
    assert_eq!((late.0, code(&late)), (409, "order_cancelled"));
    assert_eq!(app.free("05:00").await, 10);
    assert_eq!(app.booked("05:00").await, 0);
    assert_eq!(app.hold(order).await.1["state"], "cancelled");
    assert_eq!(app.release(order).await.1["state"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_orders_race_for_the_last_courier_and_one_wins() {
    let app = spawn_app(1).await;
    let orders: Vec<Uuid> = (0..20).map(|_| Uuid::new_v4()).collect();
    let answers = join_all(orders.iter().map(|&o| app.book(o, "06:00", 1))).await;
    let winners = answers.iter().filter(|a| a.0 == 200).count();
    assert_eq!(winners, 1, "{answers:?}");
    for a in answers.iter().filter(|a| a.0 != 200) {
        assert_eq!((a.0, code(a)), (409, "slot_unavailable"), "{a:?}");
    }
    assert_eq!(app.free("06:00").await, 0);
    assert_eq!(app.booked("06:00").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_booking_sent_ten_times_at_once_takes_one_courier() {
    let app = spawn_app(1000).await;
    let order = Uuid::new_v4();
    let answers = join_all((0..10).map(|_| app.book(order, "07:00", 1))).await;
    for a in answers {
        assert_eq!(a, granted(order, "07:00", 1));
    }
    assert_eq!(app.free("07:00").await, 999);
    assert_eq!(app.booked("07:00").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_release_sent_ten_times_at_once_gives_back_once() {
    let app = spawn_app(1000).await;
    let order = Uuid::new_v4();
    app.book(order, "07:00", 1).await;
    let answers = join_all((0..10).map(|_| app.release(order))).await;
    for a in answers {
        assert_eq!((a.0, &a.1["state"]), (200, &json!("released")), "{a:?}");
    }
    assert_eq!(app.free("07:00").await, 1000);
}

#[tokio::test]
async fn unknown_slots_are_rejected() {
    let app = spawn_app(10).await;
    for slot in ["19:00", "09:30", "24:00", "9:00", "nine", ""] {
        let order = Uuid::new_v4();
        let a = app.book(order, slot, 1).await;
        assert_eq!(
            (a.0, code(&a)),
            (409, "slot_unavailable"),
            "{slot:?}: {a:?}"
        );
        assert_eq!(
            app.book(order, slot, 1).await,
            a,
            "{slot:?}: a retry changed"
        );
    }
    let order = Uuid::new_v4();
    app.book(order, "19:00", 1).await;
    let recorded = app.hold(order).await.1;
    assert_eq!(recorded["state"], "rejected");
    assert_eq!(recorded["error_code"], "slot_unavailable");
}

#[tokio::test]
async fn a_full_slot_is_rejected_and_the_rejection_is_final() {
    let app = spawn_app(1).await;
    let first = Uuid::new_v4();
    assert_eq!(app.book(first, "08:00", 1).await.0, 200);
    let late = Uuid::new_v4();
    let refused = app.book(late, "08:00", 1).await;
    assert_eq!((refused.0, code(&refused)), (409, "slot_unavailable"));
    // Even with the courier back, the recorded outcome of `late` is its answer.
    app.release(first).await;
    assert_eq!(app.free("08:00").await, 1);
    assert_eq!(app.book(late, "08:00", 1).await, refused);
    assert_eq!(app.free("08:00").await, 1);
    let (status, body) = app.release(late).await;
    assert_eq!((status, &body["state"]), (200, &json!("rejected")));
    assert_eq!(app.free("08:00").await, 1);
}

#[tokio::test]
async fn a_slot_without_couriers_is_rejected() {
    let app = spawn_app(0).await;
    let a = app.book(Uuid::new_v4(), "01:00", 1).await;
    assert_eq!((a.0, code(&a)), (409, "slot_unavailable"));
    assert_eq!(app.free("01:00").await, 0);
}

#[tokio::test]
async fn a_non_positive_quantity_is_a_bad_request() {
    let app = spawn_app(2).await;
    for quantity in [0, -1] {
        let a = app.book(Uuid::new_v4(), "01:00", quantity).await;
        assert_eq!((a.0, code(&a)), (400, "invalid_field"), "{a:?}");
    }
    assert_eq!(app.free("01:00").await, 2);
}

#[tokio::test]
async fn an_unknown_order_is_not_found() {
    let app = spawn_app(2).await;
    let a = app.hold(Uuid::new_v4()).await;
    assert_eq!((a.0, code(&a)), (404, "not_found"));
}

#[tokio::test]
async fn the_ledger_requires_the_internal_token() {
    let app = spawn_app(2).await;
    let order = Uuid::new_v4();
    let url = format!("{}/internal/bookings/{order}", app.base);
    let body = json!({"resource": "01:00", "quantity": 1});
    for token in [None, Some("wrong-token-0123456789")] {
        for method in [
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
            reqwest::Method::GET,
        ] {
            let mut req = app.http.request(method.clone(), &url).json(&body);
            if let Some(t) = token {
                req = req.header("x-internal-token", t);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let answer = (status, r.json().await.unwrap());
            let expected = match token {
                None => (401, "missing_internal_token"),
                Some(_) => (403, "bad_internal_token"),
            };
            assert_eq!((answer.0, code(&answer)), expected, "{method} {token:?}");
        }
    }
    assert_eq!(app.free("01:00").await, 2);
    assert_eq!(app.hold(order).await.0, 404);
}

/// Regression: a booking and releases of the same order racing each other used to fail with 500s
/// (a deadlock, and a give-back computed from a stale snapshot tripping `free <= capacity`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bookings_racing_their_releases_never_fail() {
    let app = spawn_app(3).await;
    for _ in 0..30 {
        let order = Uuid::new_v4();
        let books = (0..3).map(|_| app.book(order, "03:00", 1));
        let releases = (0..3).map(|_| app.release(order));
        let (books, releases) = futures::join!(join_all(books), join_all(releases));
        for a in books.iter().chain(&releases) {
            assert!(a.0 == 200 || code(a) == "order_cancelled", "{a:?}");
        }
        let state = app.hold(order).await.1["state"].clone();
        assert!(state == "released" || state == "cancelled", "{state}");
    }
    assert_eq!(app.free("03:00").await, 3);
    assert_eq!(app.booked("03:00").await, 0);
}
