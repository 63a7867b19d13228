//! The API under outages of what it depends on: readiness follows the database, not Redis; a POST
//! refused while the database is down writes nothing, and its retry creates the order once.

use crate::{REDIS_DOWN, eventually, good_order, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value as Json, json};
use shop_common::config::ExposeSecret;
use shop_common::{
    config::SecretString,
    testing::{
        self,
        outage::{Link, expect_unavailable},
    },
};
use sqlx::PgPool;
use std::time::Duration;

#[tokio::test]
async fn with_the_database_down_a_post_is_503_and_its_retry_creates_the_order_once() {
    let database = testing::fresh_database().await;
    let direct = PgPool::connect(database.url.expose_secret()).await.unwrap();
    let (link, via_link) = Link::to_database(&database).await;
    let app = spawn_app_with(via_link, testing::redis_url()).await;
    let post = |key: &str| {
        app.http
            .post(format!("{}/api/orders/", app.base))
            .bearer_auth(testing::access_token("alice"))
            .header("Idempotency-Key", key)
            .json(&good_order())
    };
    assert_eq!(
        post("before").send().await.unwrap().status(),
        StatusCode::CREATED
    );

    link.cut().await;
    let list = app
        .http
        .get(format!("{}/api/orders/", app.base))
        .bearer_auth(testing::access_token("alice"));
    tokio::join!(expect_unavailable(post("k1")), expect_unavailable(list));
    // Nothing of the refused POST was written.
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM orders WHERE idempotency_key = 'k1'")
            .fetch_one(&direct)
            .await
            .unwrap();
    assert_eq!(stored, 0);

    link.restore().await;
    let created = post("k1").send().await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Json = created.json().await.unwrap();
    let replay = post("k1").send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::OK);
    assert_eq!(replay.json::<Json>().await.unwrap()["id"], created["id"]);
    let orders: Json = app.get("alice", "/api/orders").await.json().await.unwrap();
    assert_eq!(orders.as_array().unwrap().len(), 2, "{orders}");
}

/// The order API needs its database to serve, not Redis (a POST is stored and published later by
/// the sweep): a Redis outage keeps it in the Ingress, a database outage takes it out.
#[tokio::test]
async fn readiness_follows_the_database_not_redis() {
    let (link, via_link) = Link::to_database(&testing::fresh_database().await).await;
    let app = spawn_app_with(via_link, SecretString::from(REDIS_DOWN)).await;
    let ready = async || {
        let r = app.get_anonymous("/health/ready").await;
        (r.status(), r.json::<Json>().await.unwrap())
    };
    let (status, body) = ready().await;
    assert_eq!(status, StatusCode::OK, "Redis down, database up: {body}");
    assert_eq!(body, json!({"status": "ready"}));

    link.cut().await;
    let (status, body) = ready().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "not_ready");

    link.restore().await;
    // The pool reconnects on its next use; bounded.
    eventually(
        Duration::from_secs(10),
        "ready once the database is back",
        async || ready().await.0 == StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn health_is_ready_with_database_and_redis() {
    let app = spawn_app().await;
    for path in ["/health/live", "/health/ready", "/metrics"] {
        let status = app.get_anonymous(path).await.status();
        assert_eq!(status, StatusCode::OK, "{path}");
    }
}
