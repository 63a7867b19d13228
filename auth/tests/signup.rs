//! Sign-up, tokens and refresh over real HTTP, with a real billing service behind auth; a login
//! flood beyond the password-hashing bound, and auth's database going down.

use auth::PasswordConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};
use shop_common::{
    config::DatabaseConfig,
    domain::Money,
    testing::{self, outage::Link},
};
use sqlx::PgPool;
use std::time::Duration;

struct App {
    auth: String,
    billing: String,
    http: reqwest::Client,
}

async fn spawn_billing() -> String {
    let (pool, database) = testing::migrated_pool(&billing::MIGRATOR).await;
    let config = billing::Config {
        participant: testing::participant(database),
        jwt_secret: testing::jwt_secret(),
        initial_wallet: Money::from_minor(10_000),
    };
    testing::serve(billing::build_router(pool, &config)).await
}

async fn spawn_auth(billing_url: &str) -> String {
    spawn_auth_with(billing_url, PasswordConfig::default()).await
}

async fn spawn_auth_with(billing_url: &str, passwords: PasswordConfig) -> String {
    let (pool, database) = testing::migrated_pool(&auth::MIGRATOR).await;
    serve_auth(billing_url, pool, database, passwords).await
}

async fn serve_auth(
    billing_url: &str,
    pool: PgPool,
    database: DatabaseConfig,
    passwords: PasswordConfig,
) -> String {
    let config = auth::Config {
        server: testing::server(database),
        internal_token: testing::internal_token(),
        billing_url: billing_url.to_owned(),
        jwt_secret: testing::jwt_secret(),
        access_ttl: Duration::from_secs(60),
        refresh_ttl: Duration::from_secs(600),
        passwords,
    };
    testing::serve(auth::build_router(pool, &config).unwrap()).await
}

/// `POST <base><path>` reduced to what a client sees: status, `Retry-After`, JSON body.
async fn post_json(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Option<String>, Value) {
    let r = http
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        r.status(),
        retry_after,
        r.json().await.expect("a JSON body"),
    )
}

fn credentials(username: &str) -> Value {
    json!({"username": username, "password": "secret-pass-1"})
}

fn new_user(username: &str) -> Value {
    json!({"username": username, "password": "secret-pass-1", "email": format!("{username}@example.com")})
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

#[tokio::test]
async fn a_login_flood_beyond_the_hashing_bound_gets_503_overloaded_never_500() {
    let billing = spawn_billing().await;
    // One hash at a time and two waiting at most: 64 concurrent requests are far beyond that.
    let passwords = PasswordConfig {
        memory_budget_mib: 0,
        max_waiting: 2,
        max_wait: Duration::from_millis(200),
    };
    let auth = spawn_auth_with(&billing, passwords).await;
    let http = reqwest::Client::new();
    let mut overloaded = 0;
    // A hash takes far longer than sending a request, so one wave overlaps; further waves only
    // guard against a machine too slow to send 64 requests within one hash.
    for wave in 0..10 {
        let answers = futures::future::join_all((0..64).map(|i| {
            let (path, body) = match i % 8 {
                0 => ("/api/auth/users/", new_user(&format!("flood{wave}x{i}"))),
                _ => ("/api/token/", credentials(&format!("nobody{i}"))),
            };
            post_json(&http, &auth, path, body)
        }))
        .await;
        let mut served = 0;
        for (status, retry_after, body) in answers {
            match status {
                StatusCode::UNAUTHORIZED | StatusCode::CREATED => served += 1,
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert_eq!(body["error"], "overloaded", "{body}");
                    assert!(body["detail"].is_string(), "{body}");
                    assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
                    overloaded += 1;
                }
                other => panic!("a flood request got {other}: {body}"),
            }
        }
        assert!(served >= 1, "the first request of a wave finds a free slot");
        if overloaded > 0 {
            break;
        }
    }
    assert!(overloaded > 0, "no request was ever refused as overloaded");

    // The flood is over: a normal sign-up and login go through at once.
    let (status, _, body) = post_json(&http, &auth, "/api/auth/users/", new_user("carol")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _, body) = post_json(&http, &auth, "/api/token/", credentials("carol")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["access"].is_string());
}

#[tokio::test]
async fn with_its_database_down_auth_answers_503_unavailable_then_recovers() {
    let billing = spawn_billing().await;
    let (_, database) = testing::migrated_pool(&auth::MIGRATOR).await;
    let (link, via_link) = Link::to_database(&database).await;
    let pool = shop_common::db::connect_and_migrate(&via_link, &auth::MIGRATOR)
        .await
        .unwrap();
    let auth = serve_auth(&billing, pool, via_link, PasswordConfig::default()).await;
    let http = reqwest::Client::new();
    let (status, _, _) = post_json(&http, &auth, "/api/auth/users/", new_user("alice")).await;
    assert_eq!(status, StatusCode::CREATED);

    link.cut().await;
    let (login, sign_up) = tokio::join!(
        post_json(&http, &auth, "/api/token/", credentials("alice")),
        post_json(&http, &auth, "/api/auth/users/", new_user("bob")),
    );
    for (status, retry_after, body) in [login, sign_up] {
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"], "unavailable", "{body}");
        assert_eq!(retry_after.as_deref(), Some("2"), "{body}");
    }

    link.restore().await;
    let (status, _, body) = post_json(&http, &auth, "/api/token/", credentials("alice")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // bob's sign-up was not half-done: the name is free.
    let (status, _, body) = post_json(&http, &auth, "/api/auth/users/", new_user("bob")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
