//! auth on a fresh database, started through `auth::run` (migrations included), with a real
//! billing (started through `billing::run`) behind it for the accounts sign-up creates; seen by
//! the tests as raw answers where the exact body matters, through the shared [`ShopClient`]
//! elsewhere.

use auth::PasswordConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};
use shop_client::{Endpoints, ShopClient, User};
use shop_common::{
    config::DatabaseConfig,
    domain::Money,
    testing::{self, Service},
};
use std::time::Duration;

/// The password every test user has.
pub const PASSWORD: &str = "secret-pass-1";
/// The one username in the test auth's ADMIN_USERS.
pub const OPERATOR: &str = "operator";

pub struct App {
    pub auth: Service,
    /// auth and billing as a client sees them.
    pub shop: ShopClient,
}

/// billing on a fresh database, for auth to create accounts in; its base URL.
pub async fn spawn_billing() -> String {
    let database = testing::fresh_database().await;
    let config = billing::Config {
        participant: testing::participant(database.clone()),
        jwt_secret: testing::jwt_secret(),
        initial_wallet: Money::from_minor(10_000),
    };
    let run = |listener| billing::run(listener, config, std::future::pending());
    testing::start("billing", database, run).await.base
}

/// auth and billing, each on a fresh database.
pub async fn spawn_app() -> App {
    spawn_with(PasswordConfig::default()).await
}

/// auth with `passwords` and billing, each on a fresh database.
pub async fn spawn_with(passwords: PasswordConfig) -> App {
    let billing = spawn_billing().await;
    spawn_on(testing::fresh_database().await, &billing, passwords).await
}

/// auth on `database`, creating accounts in the billing at `billing_url`.
pub async fn spawn_on(
    database: DatabaseConfig,
    billing_url: &str,
    passwords: PasswordConfig,
) -> App {
    let config = auth::Config {
        server: testing::server(database.clone()),
        internal_token: testing::internal_token(),
        billing_url: billing_url.to_owned(),
        jwt_secret: testing::jwt_secret(),
        access_ttl: Duration::from_secs(60),
        refresh_ttl: Duration::from_secs(600),
        passwords,
        admin_users: vec![OPERATOR.to_owned()],
    };
    let run = |listener| auth::run(listener, config, std::future::pending());
    let auth = testing::start("auth", database, run).await;
    let endpoints = Endpoints {
        billing: billing_url.to_owned(),
        ..Endpoints::gateway(&auth.base)
    };
    let shop = ShopClient::new(endpoints, Duration::from_secs(10)).expect("an HTTP client");
    App { auth, shop }
}

/// A sign-up body for `username`.
pub fn new_user(username: &str) -> Value {
    json!({"username": username, "password": PASSWORD, "email": format!("{username}@example.com")})
}

/// A login body for `username`.
pub fn credentials(username: &str) -> Value {
    json!({"username": username, "password": PASSWORD})
}

/// `username` holding `token`.
pub fn user(username: &str, token: &str) -> User {
    User {
        username: username.to_owned(),
        token: token.to_owned(),
    }
}

/// What a client sees of a POST: the status, `Retry-After`, the JSON body.
pub type Posted = (StatusCode, Option<String>, Value);

impl App {
    /// `POST <auth><path>` with a JSON `body`.
    pub async fn post(&self, path: &str, body: Value) -> Posted {
        let request = self.auth.http.post(format!("{}{path}", self.auth.base));
        posted(request.json(&body)).await
    }

    /// `POST /api/auth/users/` for `username`.
    pub async fn sign_up(&self, username: &str) -> Posted {
        self.post("/api/auth/users/", new_user(username)).await
    }
}

/// Sends `request` and reduces the response to what a client sees.
pub async fn posted(request: reqwest::RequestBuilder) -> Posted {
    let r = request.send().await.expect("auth answered");
    let retry_after = r.headers().get("retry-after");
    let retry_after = retry_after.map(|v| v.to_str().expect("ASCII").to_owned());
    (
        r.status(),
        retry_after,
        r.json().await.expect("a JSON body"),
    )
}
