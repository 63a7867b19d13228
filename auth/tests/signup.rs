//! Sign-up, tokens and refresh over real HTTP, with a real billing service behind auth.

use reqwest::StatusCode;
use serde_json::{Value, json};
use shop_common::{domain::Money, testing};
use std::time::Duration;

struct App {
    auth: String,
    billing: String,
    http: reqwest::Client,
}

async fn spawn_billing() -> String {
    let (pool, database) = testing::migrated_pool(&billing::MIGRATOR).await;
    let config = billing::Config {
        http: testing::http(),
        database,
        jwt_secret: testing::jwt_secret(),
        internal_token: testing::internal_token(),
        initial_wallet: Money::from_minor(10_000),
    };
    testing::serve(billing::build_router(pool, &config)).await
}

async fn spawn_auth(billing_url: &str) -> String {
    let (pool, database) = testing::migrated_pool(&auth::MIGRATOR).await;
    let config = auth::Config {
        http: testing::http(),
        database,
        jwt_secret: testing::jwt_secret(),
        internal_token: testing::internal_token(),
        billing_url: billing_url.to_owned(),
        access_ttl: Duration::from_secs(60),
        refresh_ttl: Duration::from_secs(600),
    };
    testing::serve(auth::build_router(pool, &config).unwrap()).await
}

async fn spawn_app() -> App {
    let billing = spawn_billing().await;
    App {
        auth: spawn_auth(&billing).await,
        billing,
        http: reqwest::Client::new(),
    }
}

impl App {
    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.auth))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn sign_up(&self, username: &str) -> reqwest::Response {
        self.post(
            "/api/auth/users/",
            json!({"username": username, "password": "secret-pass-1", "email": format!("{username}@example.com")}),
        )
        .await
    }

    async fn wallet(&self, username: &str, token: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/api/accounts/{username}", self.billing))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn sign_up_then_token_then_the_wallet_is_there() {
    let app = spawn_app().await;
    let r = app.sign_up("alice").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"username": "alice", "email": "alice@example.com"})
    );
    let r = app
        .post(
            "/api/token/",
            json!({"username": "alice", "password": "secret-pass-1"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let tokens: Value = r.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 60);
    let access = tokens["access"].as_str().unwrap();
    let wallet = app.wallet("alice", access).await;
    assert_eq!(wallet.status(), StatusCode::OK);
    assert_eq!(wallet.json::<Value>().await.unwrap()["wallet"], 100.0);

    // The refresh token is not an access token, but buys a new one.
    let refresh = tokens["refresh"].as_str().unwrap();
    assert_eq!(
        app.wallet("alice", refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .post("/api/token/refresh/", json!({"refresh": refresh}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let fresh: Value = r.json().await.unwrap();
    let access = fresh["access"].as_str().unwrap();
    assert_eq!(app.wallet("alice", access).await.status(), StatusCode::OK);
    let r = app
        .post("/api/token/refresh", json!({"refresh": access}))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_taken_username_is_409_even_under_concurrency() {
    let app = spawn_app().await;
    let attempts = futures::future::join_all((0..5).map(|_| app.sign_up("alice"))).await;
    let created = attempts
        .iter()
        .filter(|r| r.status() == StatusCode::CREATED)
        .count();
    let taken = attempts
        .iter()
        .filter(|r| r.status() == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, taken), (1, 4));
    let r = app.sign_up("alice").await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "username_taken");
}

#[tokio::test]
async fn invalid_sign_ups_are_400_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"username": "al", "password": "secret-pass-1", "email": "a@example.com"}),
            "username",
        ),
        (
            json!({"username": "alice", "password": "short", "email": "a@example.com"}),
            "password",
        ),
        (
            json!({"username": "alice", "password": "secret-pass-1", "email": "nope"}),
            "email",
        ),
        (
            json!({"username": "alice", "password": "secret-pass-1"}),
            "email",
        ),
    ];
    for (body, field) in cases {
        let r = app.post("/api/auth/users/", body.clone()).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.json::<Value>().await.unwrap()["field"], field, "{body}");
    }
    let r = app
        .http
        .post(format!("{}/api/auth/users/", app.auth))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "malformed_json");
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_401() {
    let app = spawn_app().await;
    app.sign_up("alice").await;
    let wrong = app
        .post(
            "/api/token/",
            json!({"username": "alice", "password": "wrong-pass-1"}),
        )
        .await;
    let unknown = app
        .post(
            "/api/token/",
            json!({"username": "nobody", "password": "wrong-pass-1"}),
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong.json::<Value>().await.unwrap(),
        unknown.json::<Value>().await.unwrap()
    );
}

#[tokio::test]
async fn when_billing_is_down_sign_up_fails_and_leaves_no_user() {
    // Port 1 on loopback: connection refused.
    let auth = spawn_auth("http://127.0.0.1:1").await;
    let http = reqwest::Client::new();
    let sign_up = || {
        http.post(format!("{auth}/api/auth/users/"))
            .json(&json!({"username": "alice", "password": "secret-pass-1", "email": "a@example.com"}))
            .send()
    };
    let r = sign_up().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "billing_unavailable"
    );
    // No user was kept: the name is still free and no token can be had.
    let token = http
        .post(format!("{auth}/api/token/"))
        .json(&json!({"username": "alice", "password": "secret-pass-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        sign_up().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}
