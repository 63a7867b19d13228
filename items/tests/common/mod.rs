//! The items service on a fresh database, started through `items::run` (migrations and seeding
//! included), and a client for its public catalog and its internal reservation ledger.
#![allow(dead_code)] // each test binary uses a different part of it

use reqwest::Method;
use serde_json::{Value, json};
use shop_common::{config::DatabaseConfig, testing};
use sqlx::PgPool;
use tokio::net::TcpListener;
use uuid::Uuid;

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    /// The service's database, for checks behind its back.
    pub pool: PgPool,
    pub database: DatabaseConfig,
}

/// A response reduced to what the tests compare.
pub type Answer = (u16, Value);

pub async fn spawn_app(stock: i64) -> TestApp {
    spawn_on(testing::fresh_database().await, stock).await
}

/// Starts items on `database`, which may already hold an earlier instance's data (a restart).
pub async fn spawn_on(database: DatabaseConfig, stock: i64) -> TestApp {
    let config = items::Config {
        http: testing::http(),
        database: database.clone(),
        internal_token: testing::internal_token(),
        item_stock: stock,
    };
    let listener = TcpListener::bind(config.http.listen_addr)
        .await
        .expect("binding");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    let server = tokio::spawn(items::run(listener, config, std::future::pending()));
    let http = reqwest::Client::new();
    // `run` migrates and seeds before serving; the bound listener holds this request until then.
    match http.get(format!("{base}/health/ready")).send().await {
        Ok(r) if r.status() == 200 => {}
        other => {
            let server = match server.is_finished() {
                true => format!("{:?}", server.await),
                false => "still running".into(),
            };
            panic!("items did not start: {other:?}; server: {server}");
        }
    }
    let pool = PgPool::connect(database.url.expose())
        .await
        .expect("test pool");
    TestApp {
        base,
        http,
        pool,
        database,
    }
}

impl TestApp {
    async fn call(&self, method: Method, order: Uuid, body: Option<Value>) -> Answer {
        let mut req = self
            .http
            .request(
                method,
                format!("{}/internal/reservations/{order}", self.base),
            )
            .header("x-internal-token", testing::INTERNAL_TOKEN);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.expect("items answered");
        let status = r.status().as_u16();
        (status, r.json().await.expect("a JSON body"))
    }

    pub async fn reserve(&self, order: Uuid, item: &str, quantity: i64) -> Answer {
        let body = json!({"resource": item, "quantity": quantity});
        self.call(Method::PUT, order, Some(body)).await
    }

    pub async fn release(&self, order: Uuid) -> Answer {
        self.call(Method::DELETE, order, None).await
    }

    pub async fn hold(&self, order: Uuid) -> Answer {
        self.call(Method::GET, order, None).await
    }

    /// `GET /api/items`, as JSON.
    pub async fn catalog(&self) -> Vec<Value> {
        let r = self
            .http
            .get(format!("{}/api/items", self.base))
            .send()
            .await;
        let r = r.expect("items answered");
        assert_eq!(r.status(), 200);
        r.json().await.expect("a JSON list")
    }

    /// The stock of `item`, read from the database.
    pub async fn stock(&self, item: i64) -> i64 {
        sqlx::query_scalar("SELECT stock FROM items WHERE id = $1")
            .bind(item)
            .fetch_one(&self.pool)
            .await
            .expect("reading stock")
    }

    /// How much of `item` the ledger says is held, read from the database.
    pub async fn held(&self, item: i64) -> i64 {
        sqlx::query_scalar(
            "SELECT COALESCE(sum(quantity), 0)::bigint FROM holds \
             WHERE state = 'held' AND resource = $1",
        )
        .bind(item.to_string())
        .fetch_one(&self.pool)
        .await
        .expect("summing holds")
    }
}

/// The answer to a granted reservation, and to every repeat of it.
pub fn granted(order: Uuid, item: &str, quantity: i64) -> Answer {
    let body = json!({"order_id": order, "state": "held", "resource": item, "quantity": quantity});
    (200, body)
}

/// The `error` code of an answer.
pub fn code(answer: &Answer) -> &str {
    answer.1["error"].as_str().unwrap_or("")
}
