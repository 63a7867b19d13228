//! The slots service on a fresh database, started through `slots::run` (migrations and seeding
//! included), with its public slot list, its free couriers in the database, and its booking ledger
//! as the shared ledger kit sees it.
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

/// The booking step as docs/ARCHITECTURE.md states it: a slot that is not served and a slot
/// without free couriers are refused alike.
pub static BOOKINGS: Contract = Contract {
    route: "bookings",
    unknown_code: "slot_unavailable",
    exhausted_code: "slot_unavailable",
};

pub struct TestApp {
    pub service: Service,
    pub ledger: LedgerClient,
}

pub async fn spawn_app(capacity: i64) -> TestApp {
    spawn_on(testing::fresh_database().await, capacity).await
}

/// Starts slots on `database`, which may already hold an earlier instance's data (a restart).
pub async fn spawn_on(database: DatabaseConfig, capacity: i64) -> TestApp {
    let config = slots::Config {
        participant: testing::participant(database.clone()),
        slot_capacity: capacity,
    };
    let run = |listener| slots::run(listener, config, std::future::pending());
    let service = testing::start("slots", database, run).await;
    let ledger = LedgerClient::new(&service, &BOOKINGS);
    TestApp { service, ledger }
}

impl TestApp {
    /// `GET /api/slots`.
    pub async fn slots(&self) -> Vec<Value> {
        let (status, slots) = self.service.get("/api/slots").await;
        assert_eq!(status, 200, "{slots}");
        serde_json::from_value(slots).expect("a JSON list")
    }

    /// The free couriers of `slot`, read from the database.
    pub async fn free(&self, slot: &str) -> i64 {
        sqlx::query_scalar("SELECT free_couriers FROM slots WHERE slot = $1")
            .bind(slot)
            .fetch_one(&self.service.pool)
            .await
            .expect("reading free couriers")
    }
}

impl Participant for TestApp {
    fn ledger(&self) -> &LedgerClient {
        &self.ledger
    }

    fn pool(&self) -> &PgPool {
        &self.service.pool
    }

    async fn available(&self, slot: &str) -> i64 {
        self.free(slot).await
    }

    async fn listed(&self) -> Vec<(String, i64)> {
        let free = |s: &Value| {
            let slot = s["slot"].as_str().expect("a slot").to_owned();
            (slot, s["free_couriers"].as_i64().expect("free couriers"))
        };
        self.slots().await.iter().map(free).collect()
    }
}
