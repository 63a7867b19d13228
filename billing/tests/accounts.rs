//! billing's public account API and internal account creation, over real HTTP and Postgres.

use reqwest::StatusCode;
use serde_json::{Value, json};
use shop_common::{domain::Money, testing};

struct App {
    base: String,
    http: reqwest::Client,
}

async fn spawn_app() -> App {
    let (pool, database) = testing::migrated_pool(&billing::MIGRATOR).await;
    let config = billing::Config {
        participant: testing::participant(database),
        jwt_secret: testing::jwt_secret(),
        initial_wallet: Money::from_minor(10_000),
    };
    App {
        base: testing::serve(billing::build_router(pool, &config)).await,
        http: reqwest::Client::new(),
    }
}

impl App {
    async fn create_account(&self, username: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/internal/accounts", self.base))
            .header("x-internal-token", testing::INTERNAL_TOKEN)
            .json(&json!({"username": username, "email": format!("{username}@example.com")}))
            .send()
            .await
            .unwrap()
    }

    async fn account(&self, username: &str, as_user: Option<&str>) -> reqwest::Response {
        let mut req = self
            .http
            .get(format!("{}/api/accounts/{username}", self.base));
        if let Some(u) = as_user {
            req = req.bearer_auth(testing::access_token(u));
        }
        req.send().await.unwrap()
    }

    async fn deposit(&self, username: &str, body: Value, key: Option<&str>) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}/api/accounts/{username}/deposits", self.base))
            .bearer_auth(testing::access_token(username))
            .json(&body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        req.send().await.unwrap()
    }
}

#[tokio::test]
async fn a_new_account_has_100_and_creation_is_idempotent() {
    let app = spawn_app().await;
    assert_eq!(
        app.create_account("alice").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(app.create_account("alice").await.status(), StatusCode::OK);
    let r = app.account("alice", Some("alice")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"username": "alice", "email": "alice@example.com", "wallet": 100.0})
    );
}

#[tokio::test]
async fn accounts_are_private() {
    let app = spawn_app().await;
    app.create_account("alice").await;
    app.create_account("bob").await;
    let r = app.account("alice", None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "missing_token");
    assert_eq!(
        app.account("alice", Some("bob")).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.account("carol", Some("carol")).await.status(),
        StatusCode::NOT_FOUND
    );
    let forged = app
        .http
        .get(format!("{}/api/accounts/alice", app.base))
        .bearer_auth("not-a-jwt")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn deposits_add_to_the_wallet_and_a_retried_key_applies_once() {
    let app = spawn_app().await;
    app.create_account("alice").await;
    let r = app
        .deposit("alice", json!({"amount": 50}), Some("k1"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["wallet"], 150.0);
    let again = app
        .deposit("alice", json!({"amount": 50}), Some("k1"))
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap()["wallet"], 150.0);
    let other_amount = app.deposit("alice", json!({"amount": 7}), Some("k1")).await;
    assert_eq!(other_amount.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let no_key = app.deposit("alice", json!({"amount": 0.25}), None).await;
    assert_eq!(no_key.json::<Value>().await.unwrap()["wallet"], 150.25);
}

#[tokio::test]
async fn bad_deposits_are_400_naming_the_field_and_change_nothing() {
    let app = spawn_app().await;
    app.create_account("alice").await;
    for bad in [
        json!({"amount": 0}),
        json!({"amount": -5}),
        json!({"amount": 1.005}),
        json!({"amount": "50"}),
        json!({}),
    ] {
        let r = app.deposit("alice", bad.clone(), None).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["field"], "amount", "{bad}: {body}");
        assert!(body["detail"].as_str().unwrap().contains("amount"));
    }
    let wallet: Value = app
        .account("alice", Some("alice"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(wallet["wallet"], 100.0);
}

#[tokio::test]
async fn internal_endpoints_need_the_service_token() {
    let app = spawn_app().await;
    let body = json!({"username": "mallory", "email": "m@example.com"});
    let missing = app
        .http
        .post(format!("{}/internal/accounts", app.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let wrong = app
        .http
        .post(format!("{}/internal/accounts", app.base))
        .header("x-internal-token", "guess")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.account("mallory", Some("mallory")).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn paths_answer_with_and_without_trailing_slash_and_health_reports_ready() {
    let app = spawn_app().await;
    app.create_account("alice").await;
    for path in ["/api/accounts/alice", "/api/accounts/alice/"] {
        let r = app
            .http
            .get(format!("{}{path}", app.base))
            .bearer_auth(testing::access_token("alice"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    for path in ["/health/live", "/health/ready", "/metrics"] {
        let r = app
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    let unknown = app
        .http
        .get(format!("{}/nope", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.json::<Value>().await.unwrap()["error"], "not_found");
}

#[tokio::test]
async fn an_oversized_body_is_413_and_changes_nothing() {
    let app = spawn_app().await;
    app.create_account("alice").await;
    // Above the 64 KiB limit of the test config: refused before it is parsed.
    let padding = "x".repeat(100 * 1024);
    let r = app
        .deposit("alice", json!({"amount": 50, "padding": padding}), None)
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "payload_too_large"
    );
    let wallet: Value = app
        .account("alice", Some("alice"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(wallet["wallet"], 100.0);
}
