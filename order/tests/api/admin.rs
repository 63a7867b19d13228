//! The operators' API: every user's orders with a status filter, any order with its saga log, the
//! last minute's figures — for the `admin` role only (403 `admin_only` for a customer's token).

use crate::spawn_app;
use order_store::db::{self, Status};
use reqwest::StatusCode;
use serde_json::Value as Json;
use shop_common::testing;

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

const PATHS: [&str; 3] = [
    "/api/admin/orders",
    "/api/admin/stats",
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
