//! The slots service on a fresh database, started through `slots::run` (migrations and seeding
//! included), and a client for its public slot list and its internal booking ledger.
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

pub async fn spawn_app(capacity: i64) -> TestApp {
    spawn_on(testing::fresh_database().await, capacity).await
}

/// Starts slots on `database`, which may already hold an earlier instance's data (a restart).
pub async fn spawn_on(database: DatabaseConfig, capacity: i64) -> TestApp {
    let config = slots::Config {
        http: testing::http(),
        database: database.clone(),
        internal_token: testing::internal_token(),
        slot_capacity: capacity,
    };
    let listener = TcpListener::bind(config.http.listen_addr)
        .await
        .expect("binding");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    let server = tokio::spawn(slots::run(listener, config, std::future::pending()));
    let http = reqwest::Client::new();
    // `run` migrates and seeds before serving; the bound listener holds this request until then.
    match http.get(format!("{base}/health/ready")).send().await {
        Ok(r) if r.status() == 200 => {}
        other => {
            let server = match server.is_finished() {
                true => format!("{:?}", server.await),
                false => "still running".into(),
            };
            panic!("slots did not start: {other:?}; server: {server}");
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
            .request(method, format!("{}/internal/bookings/{order}", self.base))
            .header("x-internal-token", testing::INTERNAL_TOKEN);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.expect("slots answered");
        let status = r.status().as_u16();
        (status, r.json().await.expect("a JSON body"))
    }

    pub async fn book(&self, order: Uuid, slot: &str, quantity: i64) -> Answer {
        let body = json!({"resource": slot, "quantity": quantity});
        self.call(Method::PUT, order, Some(body)).await
    }

    pub async fn release(&self, order: Uuid) -> Answer {
        self.call(Method::DELETE, order, None).await
    }

    pub async fn hold(&self, order: Uuid) -> Answer {
        self.call(Method::GET, order, None).await
    }

    /// `GET /api/slots`, as JSON.
    pub async fn slots(&self) -> Vec<Value> {
        let r = self
            .http
            .get(format!("{}/api/slots", self.base))
            .send()
            .await;
        let r = r.expect("slots answered");
        assert_eq!(r.status(), 200);
        r.json().await.expect("a JSON list")
    }

    /// The free couriers of `slot`, read from the database.
    pub async fn free(&self, slot: &str) -> i64 {
        sqlx::query_scalar("SELECT free_couriers FROM slots WHERE slot = $1")
            .bind(slot)
            .fetch_one(&self.pool)
            .await
            .expect("reading free couriers")
    }

    /// How many couriers of `slot` the ledger says are booked, read from the database.
    pub async fn booked(&self, slot: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT COALESCE(sum(quantity), 0)::bigint FROM holds \
             WHERE state = 'held' AND resource = $1",
        )
        .bind(slot)
        .fetch_one(&self.pool)
        .await
        .expect("summing holds")
    }
}

/// The answer to a granted booking, and to every repeat of it.
pub fn granted(order: Uuid, slot: &str, quantity: i64) -> Answer {
    let body = json!({"order_id": order, "state": "held", "resource": slot, "quantity": quantity});
    (200, body)
}

/// The `error` code of an answer.
pub fn code(answer: &Answer) -> &str {
    answer.1["error"].as_str().unwrap_or("")
}
