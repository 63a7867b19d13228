//! The operators' API: every user's orders with a status filter, any order with its saga log, the
//! last minute's figures, the dead letters — for the `admin` role only (403 `admin_only` for a
//! customer's token).

use crate::{REDIS_DOWN, spawn_app, spawn_app_with};
use order_store::db::{self, Status};
use reqwest::StatusCode;
use serde_json::Value as Json;
use shop_common::{
    config::SecretString,
    testing::{self, outage::expect_unavailable},
};

impl crate::App {
    /// `GET <path>` with `token`: (status, body).
    async fn get_with(&self, token: &str, path: &str) -> (StatusCode, Json) {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (res.status(), res.json().await.unwrap())
    }
}

const PATHS: [&str; 4] = [
    "/api/admin/orders",
    "/api/admin/stats",
    "/api/admin/dead-letters",
    "/api/admin/orders/",
];

#[tokio::test]
async fn a_customers_token_is_403_and_no_token_401_on_every_admin_endpoint() {
    let app = spawn_app().await;
    let id = app.create_order("alice").await;
    let customer = testing::access_token("alice");
    for path in PATHS {
        let path = if path.ends_with('/') {
            format!("{path}{id}")
        } else {
            path.to_owned()
        };
        let (status, body) = app.get_with(&customer, &path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(body["error"], "admin_only", "{path}");
        let res = app.get_anonymous(&path).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn an_operator_sees_every_users_orders_newest_first_and_filters_by_status() {
    let app = spawn_app().await;
    let first = app.create_order("alice").await;
    let second = app.create_order("bob").await;
    let third = app.create_order("alice").await;
    app.complete(second).await;
    let admin = testing::admin_token("operator");

    let (status, all) = app.get_with(&admin, "/api/admin/orders").await;
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<(&str, &str, &str)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let field = |k: &str| o[k].as_str().unwrap();
            (field("id"), field("username"), field("status"))
        })
        .collect();
    let (a, b, c) = (first.to_string(), second.to_string(), third.to_string());
    assert_eq!(
        listed,
        [
            (&*c, "alice", "pending"),
            (&*b, "bob", "completed"),
            (&*a, "alice", "pending")
        ]
    );

    let (_, completed) = app
        .get_with(&admin, "/api/admin/orders?status=completed")
        .await;
    assert_eq!(completed.as_array().unwrap().len(), 1);
    assert_eq!(completed[0]["id"], b);
    let (_, one) = app.get_with(&admin, "/api/admin/orders?limit=1").await;
    assert_eq!(one[0]["id"], c);
    for bad in ["?limit=0", "?limit=1001", "?status=lost"] {
        let (status, body) = app
            .get_with(&admin, &format!("/api/admin/orders{bad}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}

#[tokio::test]
async fn an_operator_reads_any_order_with_its_saga_log() {
    let app = spawn_app().await;
    let id = app.create_order("bob").await;
    app.complete(id).await;
    let admin = testing::admin_token("operator");
    let (status, order) = app
        .get_with(&admin, &format!("/api/admin/orders/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(order["username"], "bob");
    assert_eq!(order["status"], "completed");
    assert_eq!(order["saga"], serde_json::json!([]));
    let unknown = uuid::Uuid::now_v7();
    let (status, _) = app
        .get_with(&admin, &format!("/api/admin/orders/{unknown}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_stats_count_every_status_and_the_last_minutes_finished_orders() {
    let app = spawn_app().await;
    let done = app.create_order("alice").await;
    let _running = app.create_order("bob").await;
    app.complete(done).await;
    let failed = app.create_order("bob").await;
    let moved = db::transition(
        &app.pool,
        failed,
        Status::Pending,
        Status::Failed,
        Some("Not enough money"),
        &[],
    );
    assert!(moved.await.unwrap());

    let (status, stats) = app
        .get_with(&testing::admin_token("operator"), "/api/admin/stats")
        .await;
    assert_eq!(status, StatusCode::OK);
    let by_status = &stats["by_status"];
    assert_eq!(by_status["completed"], 1, "{stats}");
    assert_eq!(by_status["failed"], 1, "{stats}");
    assert_eq!(by_status["pending"], 1, "{stats}");
    assert_eq!(by_status["cancelled"], 0, "every status is listed: {stats}");
    let recent = &stats["last_minute"];
    assert_eq!(recent["finished"], 2, "{stats}");
    assert!(
        recent["latency_ms"]["p99"].as_f64().unwrap() >= 0.0,
        "{stats}"
    );
    assert!(recent["sagas_per_s"].as_f64().unwrap() > 0.0, "{stats}");
}

#[tokio::test]
async fn an_operator_reads_the_dead_letters_newest_first() {
    let app = spawn_app().await;
    let admin = testing::admin_token("operator");
    let (status, none) = app.get_with(&admin, "/api/admin/dead-letters").await;
    assert_eq!((status, none), (StatusCode::OK, serde_json::json!([])));

    let dead = format!("{}.dead", app.stream);
    let order = uuid::Uuid::now_v7().to_string();
    let mut redis = app.redis.connection();
    for (order_id, reason) in [
        ("", "malformed entry: no valid order_id"),
        (order.as_str(), "delivered 11 times"),
    ] {
        let _: String = redis::cmd("XADD")
            .arg(&dead)
            .arg("*")
            .arg(&[
                ("order_id", order_id),
                ("stream_id", "1-0"),
                ("reason", reason),
                ("payload", "{}"),
            ])
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    let (status, letters) = app.get_with(&admin, "/api/admin/dead-letters").await;
    assert_eq!(status, StatusCode::OK);
    let letters = letters.as_array().unwrap();
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(letters[0]["order_id"], order.as_str());
    assert_eq!(letters[0]["reason"], "delivered 11 times");
    assert_eq!(letters[0]["stream_id"], "1-0");
    assert!(
        letters[0]["at"].as_str().unwrap().contains('T'),
        "{letters:?}"
    );
    assert_eq!(
        letters[1]["order_id"],
        Json::Null,
        "an empty order id is none"
    );

    let (_, newest) = app
        .get_with(&admin, "/api/admin/dead-letters?limit=1")
        .await;
    assert_eq!(newest.as_array().unwrap().len(), 1);
    assert_eq!(newest[0]["entry"], letters[0]["entry"]);
    let (status, refused) = app
        .get_with(&admin, "/api/admin/dead-letters?limit=0")
        .await;
    assert_eq!(
        (status, &refused["field"]),
        (StatusCode::BAD_REQUEST, &Json::from("limit"))
    );
}

#[tokio::test]
async fn with_redis_down_the_dead_letters_are_503_with_retry_after() {
    let app = spawn_app_with(
        testing::fresh_database().await,
        SecretString::from(REDIS_DOWN),
    )
    .await;
    let request = app
        .http
        .get(format!("{}/api/admin/dead-letters", app.base))
        .bearer_auth(testing::admin_token("operator"));
    expect_unavailable(request).await;
}
