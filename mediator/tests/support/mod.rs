//! Shared setup of the mediator's integration tests: a migrated `orders` database, orders, the
//! three fake participants, and executors or whole mediators wired to them.
#![allow(dead_code)]

pub mod fake_participant;

use fake_participant::{FakeParticipant, Journal};
use mediator::{
    config::{Config, ParticipantsConfig, StreamConfig},
    executor::Executor,
    participants::Participants,
};
use order::db::{self, Inserted, NewOrder};
use shop_common::{config::DatabaseConfig, domain::Money, testing};
use sqlx::PgPool;
use std::{future::Future, time::Duration};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct Fakes {
    pub items: FakeParticipant,
    pub slots: FakeParticipant,
    pub billing: FakeParticipant,
    pub journal: Journal,
}

impl Fakes {
    pub async fn start() -> Self {
        let journal = Journal::default();
        Self {
            items: FakeParticipant::start("items", journal.clone()).await,
            slots: FakeParticipant::start("slots", journal.clone()).await,
            billing: FakeParticipant::start("billing", journal.clone()).await,
            journal,
        }
    }

    /// Every call for `order_id`, as `"PUT items"`, in the order they arrived.
    pub fn calls(&self, order_id: Uuid) -> Vec<String> {
        self.journal
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.order_id == order_id)
            .map(|c| format!("{} {}", c.method, c.participant))
            .collect()
    }

    pub fn config(&self, step_deadline: Duration) -> ParticipantsConfig {
        ParticipantsConfig {
            billing_url: self.billing.url.clone(),
            items_url: self.items.url.clone(),
            slots_url: self.slots.url.clone(),
            step_deadline,
            broken_compensation: None,
        }
    }
}

pub async fn database() -> (PgPool, DatabaseConfig) {
    testing::migrated_pool(&order::MIGRATOR).await
}

/// A pending order of alice: 100.00 for item 1 at 09:00.
pub async fn new_order(pool: &PgPool) -> Uuid {
    let new = NewOrder {
        username: "alice",
        amount: Money::from_minor(10_000),
        item: 1,
        slot: "09:00",
        idempotency_key: None,
    };
    match db::insert_order(pool, &new).await.unwrap() {
        Inserted::Created(o) | Inserted::Existing(o) => o.id,
    }
}

pub fn executor(pool: &PgPool, participants: &ParticipantsConfig) -> Executor {
    let participants = Participants::new(
        participants,
        &testing::internal_token(),
        CancellationToken::new(),
    )
    .unwrap();
    Executor::new(pool.clone(), participants)
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::new_v4().simple())
}

pub fn mediator_config(
    database: DatabaseConfig,
    participants: ParticipantsConfig,
    stream: &str,
    consumer: &str,
) -> Config {
    Config {
        server: testing::server(database),
        redis_url: testing::redis_url(),
        internal_token: testing::internal_token(),
        stream: StreamConfig {
            orders_stream: stream.to_owned(),
            dead_letter_stream: format!("{stream}.dead"),
            group: "mediator".to_owned(),
            consumer: consumer.to_owned(),
            concurrency: 16,
            claim_min_idle: Duration::from_secs(60),
            max_deliveries: 5,
        },
        participants,
    }
}

/// Polls `check` until it holds, for at most `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn status(pool: &PgPool, id: Uuid) -> (db::Status, Option<String>) {
    let o = db::find_order(pool, id).await.unwrap().unwrap();
    (o.status, o.reason)
}
