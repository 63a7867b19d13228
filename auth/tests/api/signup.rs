//! Sign-up, tokens and refresh over real HTTP, with a real billing service behind auth; a login
//! flood beyond the password-hashing bound, and auth's database going down.

use crate::helpers::{
    OPERATOR, PASSWORD, credentials, new_user, posted, spawn_app, spawn_on, spawn_with, user,
};
use auth::PasswordConfig;
use reqwest::StatusCode;
use serde_json::json;
use shop_common::{
    auth::{JwtKeys, Role, TokenKind},
    testing::{self, outage::Link},
};
use std::time::Duration;

#[tokio::test]
async fn sign_up_then_token_then_the_wallet_is_there() {
    let app = spawn_app().await;
    let (status, _, body) = app.sign_up("alice").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        body,
        json!({"username": "alice", "email": "alice@example.com"})
    );
    let (status, _, tokens) = app.post("/api/token/", credentials("alice")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 60);
    let access = tokens["access"].as_str().unwrap();
    let account = app.shop.account(&user("alice", access)).await;
    assert_eq!(account.expect("alice's account").wallet.minor(), 10_000);

    // The refresh token is not an access token, but buys a new one.
    let refresh = tokens["refresh"].as_str().unwrap();
    let refused = app.shop.account(&user("alice", refresh)).await.unwrap_err();
    assert_eq!(refused.status(), Some(StatusCode::UNAUTHORIZED));
    let (status, _, fresh) = app
        .post("/api/token/refresh/", json!({"refresh": refresh}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let access = fresh["access"].as_str().unwrap();
    assert!(app.shop.account(&user("alice", access)).await.is_ok());
    let (status, _, _) = app
        .post("/api/token/refresh", json!({"refresh": access}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_taken_username_is_409_even_under_concurrency() {
    let app = spawn_app().await;
    let attempts = futures::future::join_all((0..5).map(|_| app.sign_up("alice"))).await;
    let count = |status| attempts.iter().filter(|a| a.0 == status).count();
    assert_eq!(
        (count(StatusCode::CREATED), count(StatusCode::CONFLICT)),
        (1, 4)
    );
    let (_, _, body) = app.sign_up("alice").await;
    assert_eq!(body["error"], "username_taken");
}

#[tokio::test]
async fn invalid_sign_ups_are_400_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"username": "al", "password": PASSWORD, "email": "a@example.com"}),
            "username",
        ),
        (
            json!({"username": "alice", "password": "short", "email": "a@example.com"}),
            "password",
        ),
        (
            json!({"username": "alice", "password": PASSWORD, "email": "nope"}),
            "email",
        ),
        (json!({"username": "alice", "password": PASSWORD}), "email"),
    ];
    for (body, field) in cases {
        let (status, _, answer) = app.post("/api/auth/users/", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer["field"], field, "{body}");
    }
    let malformed = app
        .auth
        .http
        .post(format!("{}/api/auth/users/", app.auth.base));
    let malformed = malformed.header("content-type", "application/json");
    let (status, _, body) = posted(malformed.body("{not json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "malformed_json");
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_401() {
    let app = spawn_app().await;
    app.sign_up("alice").await;
    let wrong = json!({"username": "alice", "password": "wrong-pass-1"});
    let unknown = json!({"username": "nobody", "password": "wrong-pass-1"});
    let (wrong_status, _, wrong) = app.post("/api/token/", wrong).await;
    let (unknown_status, _, unknown) = app.post("/api/token/", unknown).await;
    assert_eq!(wrong_status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown_status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong, unknown);
}

#[tokio::test]
async fn when_billing_is_down_sign_up_fails_and_leaves_no_user() {
    // Port 1 on loopback: connection refused.
    let database = testing::fresh_database().await;
    let app = spawn_on(database, "http://127.0.0.1:1", PasswordConfig::default()).await;
    let (status, _, body) = app.sign_up("alice").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "billing_unavailable");
    // No user was kept: the name is still free and no token can be had.
    let token = app.shop.token("alice", PASSWORD).await.unwrap_err();
    assert_eq!(token.status(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(
        app.sign_up("alice").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn a_login_flood_beyond_the_hashing_bound_gets_503_overloaded_never_500() {
    // One hash at a time and two waiting at most: 64 concurrent requests are far beyond that.
    let passwords = PasswordConfig {
        memory_budget_mib: 0,
        max_waiting: 2,
        max_wait: Duration::from_millis(200),
    };
    let app = spawn_with(passwords).await;
    let mut overloaded = 0;
    // A hash takes far longer than sending a request, so one wave overlaps; further waves only
    // guard against a machine too slow to send 64 requests within one hash.
    for wave in 0..10 {
        let answers = futures::future::join_all((0..64).map(|i| {
            let (path, body) = match i % 8 {
                0 => ("/api/auth/users/", new_user(&format!("flood{wave}x{i}"))),
                _ => ("/api/token/", credentials(&format!("nobody{i}"))),
            };
            app.post(path, body)
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
    let (status, _, body) = app.sign_up("carol").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = app.shop.token("carol", PASSWORD).await;
    assert!(!token.expect("a token for carol").is_empty());
}

#[tokio::test]
async fn with_its_database_down_auth_answers_503_unavailable_then_recovers() {
    let billing = crate::helpers::spawn_billing().await;
    let (link, database) = Link::to_database(&testing::fresh_database().await).await;
    let app = spawn_on(database, &billing, PasswordConfig::default()).await;
    assert_eq!(app.sign_up("alice").await.0, StatusCode::CREATED);

    link.cut().await;
    let (login, sign_up) = tokio::join!(
        app.post("/api/token/", credentials("alice")),
        app.sign_up("bob"),
    );
    for (status, retry_after, body) in [login, sign_up] {
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"], "unavailable", "{body}");
        assert_eq!(retry_after.as_deref(), Some("2"), "{body}");
    }

    link.restore().await;
    let (status, _, body) = app.post("/api/token/", credentials("alice")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // bob's sign-up was not half-done: the name is free.
    let (status, _, body) = app.sign_up("bob").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// The role claim of an access token, as every service reads it.
fn role_of(access: &str) -> Option<Role> {
    JwtKeys::new(&testing::jwt_secret())
        .verify(access, TokenKind::Access)
        .expect("a valid access token")
        .role
}

/// Only the users in ADMIN_USERS get the `admin` role, at login and at refresh; a customer's
/// token carries none.
#[tokio::test]
async fn an_operator_gets_the_admin_role_and_a_customer_none() {
    let app = spawn_app().await;
    for (username, role) in [(OPERATOR, Some(Role::Admin)), ("alice", None)] {
        let (status, _, _) = app.sign_up(username).await;
        assert_eq!(status, StatusCode::CREATED);
        let (_, _, tokens) = app.post("/api/token/", credentials(username)).await;
        assert_eq!(
            role_of(tokens["access"].as_str().unwrap()),
            role,
            "{username}"
        );
        let refresh = json!({"refresh": tokens["refresh"]});
        let (_, _, fresh) = app.post("/api/token/refresh/", refresh).await;
        assert_eq!(
            role_of(fresh["access"].as_str().unwrap()),
            role,
            "{username} refreshed"
        );
    }
}
