//! billing on a fresh database, started through `billing::run` (migrations included), as its
//! clients see it — the internal account creation, the owner's wallet and deposits through the
//! shared [`ShopClient`] — and as the ledger kit's [`Participant`] for its charges.

use serde_json::json;
use shop_client::{Endpoints, ShopClient, User};
use shop_common::{
    config::DatabaseConfig,
    domain::Money,
    testing::{
        self, Answer, INTERNAL_TOKEN, Service, answer,
        ledger::{Contract, LedgerClient, Participant},
        outage::Link,
    },
};
use sqlx::PgPool;
use std::time::Duration;

/// The charge step as docs/ARCHITECTURE.md states it.
pub static CHARGES: Contract = Contract {
    route: "charges",
    unknown_code: "account_not_found",
    exhausted_code: "insufficient_funds",
};

pub struct App {
    pub service: Service,
    pub ledger: LedgerClient,
    /// The public API as a client sees it.
    pub shop: ShopClient,
}

/// billing on a fresh database; new wallets start with `initial` cents.
pub async fn spawn_app(initial: i64) -> App {
    spawn_on(testing::fresh_database().await, initial).await
}

pub async fn spawn_on(database: DatabaseConfig, initial: i64) -> App {
    let config = billing::Config {
        participant: testing::participant(database.clone()),
        jwt_secret: testing::jwt_secret(),
        initial_wallet: Money::from_minor(initial),
    };
    let run = |listener| billing::run(listener, config, std::future::pending());
    let service = testing::start("billing", database, run).await;
    let endpoints = Endpoints::gateway(&service.base);
    let shop = ShopClient::new(endpoints, Duration::from_secs(10)).expect("an HTTP client");
    let ledger = LedgerClient::new(&service, &CHARGES);
    App {
        service,
        ledger,
        shop,
    }
}

/// billing reaching its database through a [`Link`] the test can cut.
pub async fn behind_a_link(initial: i64) -> (Link, App) {
    let (link, database) = Link::to_database(&testing::fresh_database().await).await;
    (link, spawn_on(database, initial).await)
}

/// billing whose new wallets hold `initial` cents, with an account for alice.
pub async fn alice_with(initial: i64) -> App {
    let app = spawn_app(initial).await;
    app.create_account("alice").await;
    app
}

impl App {
    /// `POST /internal/accounts` as auth sends it at sign-up, unsent; `token` is the internal
    /// token, if any.
    pub fn account_creation(&self, username: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let url = format!("{}/internal/accounts", self.service.base);
        let body = json!({"username": username, "email": format!("{username}@example.com")});
        let request = self.service.http.post(url).json(&body);
        match token {
            Some(token) => request.header("x-internal-token", token),
            None => request,
        }
    }

    /// Creates the account of `username`: 201.
    pub async fn create_account(&self, username: &str) {
        let created = answer(self.account_creation(username, Some(INTERNAL_TOKEN))).await;
        assert_eq!(created.0, 201, "{created:?}");
    }

    /// `username`, with a token the test issued.
    pub fn user(&self, username: &str) -> User {
        User {
            username: username.to_owned(),
            token: testing::access_token(username),
        }
    }

    /// A deposit of `cents` by the owner under the Idempotency-Key `key`, as a raw [`Answer`]
    /// (the ledger kit's mixes compare answers).
    pub async fn deposit(&self, username: &str, cents: i64, key: &str) -> Answer {
        let request = self
            .deposit_request(username)
            .header("Idempotency-Key", key);
        answer(request.json(&json!({"amount": Money::from_minor(cents)}))).await
    }

    /// `POST /api/accounts/{username}/deposits` by the owner, without a body yet.
    pub fn deposit_request(&self, username: &str) -> reqwest::RequestBuilder {
        let url = format!("{}/api/accounts/{username}/deposits", self.service.base);
        let request = self.service.http.post(url);
        request.bearer_auth(testing::access_token(username))
    }

    /// The wallet in cents, as its owner sees it through the public API.
    pub async fn wallet(&self, username: &str) -> i64 {
        let account = self.shop.account(&self.user(username)).await;
        account.expect("the owner's account").wallet.minor()
    }

    /// The wallet in cents, read from the database.
    pub async fn wallet_in_db(&self, username: &str) -> i64 {
        sqlx::query_scalar("SELECT wallet FROM accounts WHERE username = $1")
            .bind(username)
            .fetch_one(&self.service.pool)
            .await
            .expect("reading a wallet")
    }

    /// `GET <base><path>` with `username`'s token, if any.
    pub async fn get(&self, path: &str, username: Option<&str>) -> Answer {
        let request = self
            .service
            .http
            .get(format!("{}{path}", self.service.base));
        match username {
            Some(u) => answer(request.bearer_auth(testing::access_token(u))).await,
            None => answer(request).await,
        }
    }
}

impl Participant for App {
    fn ledger(&self) -> &LedgerClient {
        &self.ledger
    }

    fn pool(&self) -> &PgPool {
        &self.service.pool
    }

    async fn available(&self, username: &str) -> i64 {
        self.wallet_in_db(username).await
    }

    /// There is no public list of accounts: the wallet of every account, each as its owner sees it.
    async fn listed(&self) -> Vec<(String, i64)> {
        let accounts: Vec<String> =
            sqlx::query_scalar("SELECT username FROM accounts ORDER BY username")
                .fetch_all(&self.service.pool)
                .await
                .expect("listing accounts");
        let mut wallets = Vec::new();
        for account in accounts {
            let wallet = self.wallet(&account).await;
            wallets.push((account, wallet));
        }
        wallets
    }
}
