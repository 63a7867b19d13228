//! The items service on a fresh database, started through `items::run` (migrations and seeding
//! included), with its public catalog, its stock in the database, and its reservation ledger as the
//! shared ledger kit sees it.
#![allow(dead_code)] // each test binary uses a different part of it

use serde_json::Value;
use shop_common::{
    config::DatabaseConfig,
    testing::{
        self, Service,
        ledger::{Contract, LedgerClient, Participant},
    },
};
use sqlx::PgPool;

/// The reservation step as docs/ARCHITECTURE.md states it: a missing and a sold-out item are
/// refused alike.
pub static RESERVATIONS: Contract = Contract {
    route: "reservations",
    unknown_code: "item_unavailable",
    exhausted_code: "item_unavailable",
};

pub struct TestApp {
    pub service: Service,
    pub ledger: LedgerClient,
}

pub async fn spawn_app(stock: i64) -> TestApp {
    spawn_on(testing::fresh_database().await, stock).await
}

/// Starts items on `database`, which may already hold an earlier instance's data (a restart).
pub async fn spawn_on(database: DatabaseConfig, stock: i64) -> TestApp {
    let config = items::Config {
        participant: testing::participant(database.clone()),
        item_stock: stock,
    };
    let run = |listener| items::run(listener, config, std::future::pending());
    let service = testing::start("items", database, run).await;
    let ledger = LedgerClient::new(&service, &RESERVATIONS);
    TestApp { service, ledger }
}

impl TestApp {
    /// `GET /api/items`.
    pub async fn catalog(&self) -> Vec<Value> {
        let (status, items) = self.service.get("/api/items").await;
        assert_eq!(status, 200, "{items}");
        serde_json::from_value(items).expect("a JSON list")
    }

    /// The stock of `item`, read from the database.
    pub async fn stock(&self, item: i64) -> i64 {
        sqlx::query_scalar("SELECT stock FROM items WHERE id = $1")
            .bind(item)
            .fetch_one(&self.service.pool)
            .await
            .expect("reading stock")
    }
}

impl Participant for TestApp {
    fn ledger(&self) -> &LedgerClient {
        &self.ledger
    }

    fn pool(&self) -> &PgPool {
        &self.service.pool
    }

    async fn available(&self, item: &str) -> i64 {
        self.stock(item.parse().expect("an item id")).await
    }

    async fn listed(&self) -> Vec<(String, i64)> {
        let stock = |i: &Value| (i["id"].to_string(), i["stock"].as_i64().expect("a stock"));
        self.catalog().await.iter().map(stock).collect()
    }
}
