//! The API under outages of what it depends on: readiness follows the database, not Redis; a POST
//! refused while the database is down writes nothing, and its retry creates the order once; a
//! statement stuck behind a lock is cancelled and answered 503, not held to the request timeout.

use crate::{REDIS_DOWN, eventually, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value as Json, json};
use shop_common::config::ExposeSecret;
use shop_common::{
    config::{DatabaseConfig, SecretString},
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
    let post = |key: &str| app.good_order_request("alice", key);
    assert_eq!(
        post("before").send().await.unwrap().status(),
        StatusCode::CREATED
    );

    link.cut().await;
    let list = app.list_request("alice");
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

/// A statement that cannot finish — here the orders table locked by someone else, as a long
/// migration or a VACUUM FULL would — is cancelled by Postgres after `DB_STATEMENT_TIMEOUT_MS`:
/// the POST and the read waiting on it (batched with it, or queued behind its batch) are each a
/// 503 with Retry-After, long before the request timeout, nothing is half-written, and once the
/// lock is gone the API serves again.
#[tokio::test]
async fn a_statement_stuck_behind_a_lock_is_cancelled_and_answered_503() {
    let database = DatabaseConfig {
        statement_timeout: Duration::from_millis(300),
        ..testing::fresh_database().await
    };
    let app = spawn_app_with(database, testing::redis_url()).await;
    assert!(testing::http().request_timeout >= Duration::from_secs(10));
    let post = |key: &str| app.good_order_request("alice", key);
    let list = app.list_request("alice");

    let mut lock = app.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let answered = tokio::time::timeout(
        Duration::from_secs(8),
        futures::future::join(expect_unavailable(post("k1")), expect_unavailable(list)),
    )
    .await;
    lock.rollback().await.unwrap();
    answered.expect("answered once the statements were cancelled, not at the request timeout");

    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM orders WHERE idempotency_key = 'k1'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, 0);
    assert_eq!(
        post("k1").send().await.unwrap().status(),
        StatusCode::CREATED
    );
}
