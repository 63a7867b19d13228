//! billing's public account API and internal account creation, over real HTTP and Postgres.

use crate::helpers::{alice_with, spawn_app};
use reqwest::StatusCode;
use serde_json::json;
use shop_common::testing::{INTERNAL_TOKEN, answer, code};

#[tokio::test]
async fn a_new_account_has_100_and_creation_is_idempotent() {
    let app = spawn_app(10_000).await;
    let create = || answer(app.account_creation("alice", Some(INTERNAL_TOKEN)));
    assert_eq!(create().await.0, 201);
    assert_eq!(create().await.0, 200);
    let account = json!({"username": "alice", "email": "alice@example.com", "wallet": 100.0});
    assert_eq!(
        app.get("/api/accounts/alice", Some("alice")).await,
        (200, account)
    );
}

#[tokio::test]
async fn accounts_are_private() {
    let app = alice_with(10_000).await;
    app.create_account("bob").await;
    let anonymous = app.get("/api/accounts/alice", None).await;
    assert_eq!((anonymous.0, code(&anonymous)), (401, "missing_token"));
    assert_eq!(app.get("/api/accounts/alice", Some("bob")).await.0, 403);
    let carol = app.shop.account(&app.user("carol")).await;
    assert_eq!(carol.unwrap_err().status(), Some(StatusCode::NOT_FOUND));
    let mut forged = app.user("alice");
    forged.token = "not-a-jwt".into();
    let forged = app.shop.account(&forged).await;
    assert_eq!(forged.unwrap_err().status(), Some(StatusCode::UNAUTHORIZED));
}

#[tokio::test]
async fn deposits_add_to_the_wallet_and_a_retried_key_applies_once() {
    let app = alice_with(10_000).await;
    let alice = app.user("alice");
    let deposit = |cents, key| app.shop.deposit(&alice, cents, key);
    assert_eq!(
        deposit(5000, Some("k1")).await.unwrap().wallet.minor(),
        15_000
    );
    assert_eq!(
        deposit(5000, Some("k1")).await.unwrap().wallet.minor(),
        15_000
    );
    let other_amount = deposit(700, Some("k1")).await.unwrap_err();
    assert_eq!(
        other_amount.status(),
        Some(StatusCode::UNPROCESSABLE_ENTITY)
    );
    assert_eq!(deposit(25, None).await.unwrap().wallet.minor(), 15_025);
}

#[tokio::test]
async fn bad_deposits_are_400_naming_the_field_and_change_nothing() {
    let app = alice_with(10_000).await;
    for bad in [
        json!({"amount": 0}),
        json!({"amount": -5}),
        json!({"amount": 1.005}),
        json!({"amount": "50"}),
        json!({}),
    ] {
        let (status, body) = answer(app.deposit_request("alice").json(&bad)).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["field"], "amount", "{bad}: {body}");
        assert!(body["detail"].as_str().unwrap().contains("amount"));
    }
    assert_eq!(app.wallet("alice").await, 10_000);
}

#[tokio::test]
async fn internal_endpoints_need_the_service_token() {
    let app = spawn_app(10_000).await;
    let missing = answer(app.account_creation("mallory", None)).await;
    assert_eq!(missing.0, 401);
    let wrong = answer(app.account_creation("mallory", Some("guess"))).await;
    assert_eq!(wrong.0, 403);
    assert_eq!(
        app.get("/api/accounts/mallory", Some("mallory")).await.0,
        404
    );
}

#[tokio::test]
async fn paths_answer_with_and_without_trailing_slash_and_health_reports_ready() {
    let app = alice_with(10_000).await;
    for path in ["/api/accounts/alice", "/api/accounts/alice/"] {
        assert_eq!(app.get(path, Some("alice")).await.0, 200, "{path}");
    }
    for path in ["/health/live", "/health/ready", "/metrics"] {
        let url = format!("{}{path}", app.service.base);
        let r = app.service.http.get(url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    let metrics = app
        .service
        .http
        .get(format!("{}/metrics", app.service.base));
    let metrics = metrics.send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    let unknown = app.get("/nope", None).await;
    assert_eq!((unknown.0, code(&unknown)), (404, "not_found"));
}

#[tokio::test]
async fn an_oversized_body_is_413_and_changes_nothing() {
    let app = alice_with(10_000).await;
    // Above the 64 KiB limit of the test config: refused before it is parsed.
    let padding = "x".repeat(100 * 1024);
    let body = json!({"amount": 50, "padding": padding});
    let r = answer(app.deposit_request("alice").json(&body)).await;
    assert_eq!((r.0, code(&r)), (413, "payload_too_large"));
    assert_eq!(app.wallet("alice").await, 10_000);
}
