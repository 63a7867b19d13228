//! The reservation step of the saga and the public catalog, over real HTTP and Postgres: idempotent
//! actions and compensations, tombstones, races for the last unit, rejections and the token guard.

mod common;

use common::{code, granted, spawn_app, spawn_on};
use futures::future::join_all;
use serde_json::json;
use uuid::Uuid;

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
    let with_slash = app
        .http
        .get(format!("{}/api/items/", app.base))
        .send()
        .await;
    let with_slash: Vec<serde_json::Value> = with_slash.unwrap().json().await.unwrap();
    assert_eq!(with_slash, items);
}

#[tokio::test]
async fn prices_are_listed_in_currency_units() {
    let app = spawn_app(1).await;
    let cents: Vec<i64> = sqlx::query_scalar("SELECT price FROM items ORDER BY id")
        .fetch_all(&app.pool)
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
    assert_eq!(app.reserve(order, "3", 1).await, granted(order, "3", 1));
    let items = app.catalog().await;
    assert_eq!(items[2]["id"], 3);
    assert_eq!(items[2]["stock"], 999);
    assert_eq!(items[3]["stock"], 1000);
    app.release(order).await;
    assert_eq!(app.catalog().await[2]["stock"], 1000);
}

#[tokio::test]
async fn a_restart_keeps_stock_and_reservations() {
    let app = spawn_app(5).await;
    let order = Uuid::new_v4();
    assert_eq!(app.reserve(order, "1", 2).await.0, 200);
    // A second instance on the same database, configured with another ITEM_STOCK.
    let again = spawn_on(app.database.clone(), 1000).await;
    let items = again.catalog().await;
    assert_eq!(items.len(), 10);
    assert_eq!(items[0]["stock"], 3);
    assert_eq!(items[1]["stock"], 5);
    assert_eq!(again.hold(order).await, granted(order, "1", 2));
}

#[tokio::test]
async fn a_repeated_reservation_takes_stock_once() {
    let app = spawn_app(10).await;
    let order = Uuid::new_v4();
    assert_eq!(app.reserve(order, "4", 3).await, granted(order, "4", 3));
    assert_eq!(app.reserve(order, "4", 3).await, granted(order, "4", 3));
    assert_eq!(app.stock(4).await, 7);
    assert_eq!(app.hold(order).await, granted(order, "4", 3));
}

#[tokio::test]
async fn a_repeated_release_gives_back_once() {
    let app = spawn_app(10).await;
    let order = Uuid::new_v4();
    app.reserve(order, "4", 3).await;
    let released = json!({"order_id": order, "state": "released", "resource": "4", "quantity": 3});
    assert_eq!(app.release(order).await, (200, released.clone()));
    assert_eq!(app.release(order).await, (200, released.clone()));
    assert_eq!(app.stock(4).await, 10);
    assert_eq!(app.hold(order).await, (200, released));
    // A late duplicate of the action must not take the stock again.
    let late = app.reserve(order, "4", 3).await;
    assert_eq!((late.0, code(&late)), (409, "order_cancelled"));
    assert_eq!(app.stock(4).await, 10);
}

#[tokio::test]
async fn a_release_before_the_reservation_leaves_a_tombstone() {
    let app = spawn_app(10).await;
    let order = Uuid::new_v4();
    let (status, body) = app.release(order).await;
    assert_eq!((status, &body["state"]), (200, &json!("cancelled")));
    let late = app.reserve(order, "5", 1).await;
    assert_eq!((late.0, code(&late)), (409, "order_cancelled"));
    assert_eq!(app.stock(5).await, 10);
    assert_eq!(app.held(5).await, 0);
    assert_eq!(app.hold(order).await.1["state"], "cancelled");
    assert_eq!(app.release(order).await.1["state"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_orders_race_for_the_last_unit_and_one_wins() {
    let app = spawn_app(1).await;
    let orders: Vec<Uuid> = (0..20).map(|_| Uuid::new_v4()).collect();
    let answers = join_all(orders.iter().map(|&o| app.reserve(o, "6", 1))).await;
    let winners = answers.iter().filter(|a| a.0 == 200).count();
    assert_eq!(winners, 1, "{answers:?}");
    for a in answers.iter().filter(|a| a.0 != 200) {
        assert_eq!((a.0, code(a)), (409, "item_unavailable"), "{a:?}");
    }
    assert_eq!(app.stock(6).await, 0);
    assert_eq!(app.held(6).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_reservation_sent_ten_times_at_once_takes_one_unit() {
    let app = spawn_app(1000).await;
    let order = Uuid::new_v4();
    let answers = join_all((0..10).map(|_| app.reserve(order, "7", 1))).await;
    for a in answers {
        assert_eq!(a, granted(order, "7", 1));
    }
    assert_eq!(app.stock(7).await, 999);
    assert_eq!(app.held(7).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_release_sent_ten_times_at_once_gives_back_once() {
    let app = spawn_app(1000).await;
    let order = Uuid::new_v4();
    app.reserve(order, "7", 2).await;
    let answers = join_all((0..10).map(|_| app.release(order))).await;
    for a in answers {
        assert_eq!((a.0, &a.1["state"]), (200, &json!("released")), "{a:?}");
    }
    assert_eq!(app.stock(7).await, 1000);
}

#[tokio::test]
async fn unknown_items_are_rejected() {
    let app = spawn_app(10).await;
    for item in ["999", "0", "-1", "abc", "", "99999999999999999999"] {
        let order = Uuid::new_v4();
        let a = app.reserve(order, item, 1).await;
        assert_eq!(
            (a.0, code(&a)),
            (409, "item_unavailable"),
            "{item:?}: {a:?}"
        );
        assert_eq!(
            app.reserve(order, item, 1).await,
            a,
            "{item:?}: a retry changed"
        );
    }
    let order = Uuid::new_v4();
    app.reserve(order, "999", 1).await;
    let recorded = app.hold(order).await.1;
    assert_eq!(recorded["state"], "rejected");
    assert_eq!(recorded["error_code"], "item_unavailable");
}

#[tokio::test]
async fn a_sold_out_item_is_rejected_and_the_rejection_is_final() {
    let app = spawn_app(2).await;
    let first = Uuid::new_v4();
    assert_eq!(app.reserve(first, "8", 2).await.0, 200);
    let late = Uuid::new_v4();
    let refused = app.reserve(late, "8", 1).await;
    assert_eq!((refused.0, code(&refused)), (409, "item_unavailable"));
    // Even with stock back, the recorded outcome of `late` is its answer.
    app.release(first).await;
    assert_eq!(app.stock(8).await, 2);
    assert_eq!(app.reserve(late, "8", 1).await, refused);
    assert_eq!(app.stock(8).await, 2);
    // Compensating a rejected order gives nothing back.
    let (status, body) = app.release(late).await;
    assert_eq!((status, &body["state"]), (200, &json!("rejected")));
    assert_eq!(app.stock(8).await, 2);
}

#[tokio::test]
async fn more_than_the_stock_is_rejected_without_taking_any() {
    let app = spawn_app(2).await;
    let a = app.reserve(Uuid::new_v4(), "9", 3).await;
    assert_eq!((a.0, code(&a)), (409, "item_unavailable"));
    assert_eq!(app.stock(9).await, 2);
}

#[tokio::test]
async fn a_non_positive_quantity_is_a_bad_request() {
    let app = spawn_app(2).await;
    for quantity in [0, -1] {
        let a = app.reserve(Uuid::new_v4(), "1", quantity).await;
        assert_eq!((a.0, code(&a)), (400, "invalid_field"), "{a:?}");
    }
    assert_eq!(app.stock(1).await, 2);
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
    let url = format!("{}/internal/reservations/{order}", app.base);
    let body = json!({"resource": "1", "quantity": 1});
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
    assert_eq!(app.stock(1).await, 2);
    assert_eq!(app.hold(order).await.0, 404);
}

/// Regression: a reservation and releases of the same order racing each other used to deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reservations_racing_their_releases_never_fail() {
    let app = spawn_app(3).await;
    for _ in 0..30 {
        let order = Uuid::new_v4();
        let reserves = (0..3).map(|_| app.reserve(order, "2", 1));
        let releases = (0..3).map(|_| app.release(order));
        let (reserves, releases) = futures::join!(join_all(reserves), join_all(releases));
        for a in reserves.iter().chain(&releases) {
            assert!(a.0 == 200 || code(a) == "order_cancelled", "{a:?}");
        }
        let state = app.hold(order).await.1["state"].clone();
        assert!(state == "released" || state == "cancelled", "{state}");
    }
    assert_eq!(app.stock(2).await, 3);
    assert_eq!(app.held(2).await, 0);
}
