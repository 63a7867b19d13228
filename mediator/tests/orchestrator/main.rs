//! The mediator's integration tests, one binary, against a real Postgres (a fresh database per
//! test), a real Redis (a fresh stream per test) and the fake participants over real HTTP:
//!
//! - `executor`: one order's saga, run by the executor: every path to completed, failed or
//!   cancelled;
//! - `consumer`: the whole mediator through its real `run` ([`spawn_app`]) consuming a stream;
//! - `process`: the real binary: kill -9, SIGTERM, start-up refusals.

mod batcher;
mod consumer;
mod executor;
mod fake_participant;
mod process;
mod transitions;

use fake_participant::{FakeParticipant, Journal};
use mediator::{
    config::{Config, ParticipantsConfig, StreamConfig},
    executor::Executor,
    participants::Participants,
};
use order_store::{
    db::{self, Inserted, NewOrder, Status},
    stream::{Streams, Terms},
};
use redis::streams::{StreamPendingReply, StreamRangeReply};
use shop_common::{
    config::DatabaseConfig,
    domain::Money,
    redis::Redis,
    testing::{self, eventually},
};
use sqlx::PgPool;
use std::time::Duration;
use tokio::{sync::oneshot, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a test waits for what must happen (an order final, entries acknowledged).
pub const WAIT: Duration = Duration::from_secs(15);
/// The mediators' consumer group.
pub const GROUP: &str = "mediator";

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

    /// The three, in the saga's order of steps.
    pub fn all(&self) -> [&FakeParticipant; 3] {
        [&self.items, &self.slots, &self.billing]
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
            // One request per action: the fakes answer, and fail, order by order. Batches are
            // run against the real participants (tools' end-to-end tests and chaos).
            batch: 1,
            broken_compensation: None,
        }
    }
}

pub async fn database() -> (PgPool, DatabaseConfig) {
    testing::migrated_pool(&order_store::MIGRATOR).await
}

/// A pending order of alice: 100.00 for item 1 at 09:00.
pub async fn new_order(pool: &PgPool) -> Uuid {
    let new = NewOrder {
        username: "alice".to_owned(),
        amount: Money::from_minor(10_000),
        item: 1,
        slot: "09:00".to_owned(),
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

pub async fn status(pool: &PgPool, id: Uuid) -> (Status, Option<String>) {
    let o = db::find_order(pool, id).await.unwrap().unwrap();
    (o.status, o.reason)
}

pub fn failed(reason: &str) -> (Status, Option<String>) {
    (Status::Failed, Some(reason.to_owned()))
}

/// What a mediator runs against: a fresh database, the fake participants, and a fresh stream on
/// the test Redis.
pub struct World {
    pub pool: PgPool,
    pub database: DatabaseConfig,
    pub fakes: Fakes,
    pub redis: Redis,
    pub stream: String,
}

impl World {
    pub async fn new() -> Self {
        let (pool, database) = database().await;
        Self {
            pool,
            database,
            fakes: Fakes::start().await,
            redis: shop_common::redis::connect(&testing::redis_url()).unwrap(),
            stream: format!("orders-{}", Uuid::new_v4().simple()),
        }
    }

    /// A mediator's configuration: consumer `consumer`, a step deadline of 2 s.
    pub fn config(&self, consumer: &str) -> Config {
        Config {
            server: testing::server(self.database.clone()),
            redis_url: testing::redis_url(),
            internal_token: testing::internal_token(),
            stream: StreamConfig {
                names: Streams {
                    orders_stream: self.stream.clone(),
                    dead_letter_stream: self.dead_letter_stream(),
                },
                group: GROUP.to_owned(),
                consumer: consumer.to_owned(),
                concurrency: 16,
                claim_min_idle: Duration::from_secs(60),
                max_deliveries: 5,
            },
            participants: self.fakes.config(Duration::from_secs(2)),
        }
    }

    pub fn dead_letter_stream(&self) -> String {
        format!("{}.dead", self.stream)
    }

    pub async fn new_order(&self) -> Uuid {
        new_order(&self.pool).await
    }

    pub async fn status(&self, id: Uuid) -> (Status, Option<String>) {
        status(&self.pool, id).await
    }

    pub async fn is_final(&self, id: Uuid) -> bool {
        self.status(id).await.0.is_final()
    }

    /// Waits until `id` is final; its final status.
    pub async fn wait_final(&self, id: Uuid) -> (Status, Option<String>) {
        eventually(WAIT, "the order final", async || self.is_final(id).await).await;
        self.status(id).await
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        cmd.query_async(&mut self.redis.connection()).await.unwrap()
    }

    /// Adds an entry with `fields` to the stream; its id.
    pub async fn xadd(&self, fields: &[(&str, &str)]) -> String {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.stream).arg("*");
        for (k, v) in fields {
            cmd.arg(*k).arg(*v);
        }
        self.query(&cmd).await
    }

    /// Publishes `id` as the order API does again (a cancel, the sweep): the id alone.
    pub async fn publish(&self, id: Uuid) {
        self.xadd(&[(order_store::stream::FIELD, &id.to_string())])
            .await;
    }

    /// Publishes `terms` as the order API does for a new order: with the saga's terms.
    pub async fn announce(&self, terms: &Terms) {
        let fields = terms.fields();
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.xadd(&fields).await;
    }

    /// The terms of the stored order `id`.
    pub async fn terms(&self, id: Uuid) -> Terms {
        db::find_order(&self.pool, id)
            .await
            .unwrap()
            .expect("the order is stored")
            .terms()
    }

    pub async fn create_group(&self) {
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(&self.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM");
        self.query::<()>(&cmd).await;
    }

    /// A consumer that reads (and so owns) every new entry, then dies without acknowledging them.
    pub async fn read_as_ghost(&self) {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg("ghost")
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">");
        self.query::<redis::Value>(&cmd).await;
    }

    /// How many entries of the stream the group has not acknowledged.
    pub async fn pending(&self) -> usize {
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(&self.stream).arg(GROUP);
        self.query::<StreamPendingReply>(&cmd).await.count()
    }

    pub async fn wait_all_acknowledged(&self) {
        eventually(WAIT, "every entry acknowledged", async || {
            self.pending().await == 0
        })
        .await;
    }

    /// Every entry of `stream`.
    pub async fn entries(&self, stream: &str) -> StreamRangeReply {
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(stream).arg("-").arg("+");
        self.query(&cmd).await
    }

    /// Whether a mediator has created its consumer group on the stream.
    pub async fn group_exists(&self) -> bool {
        let mut cmd = redis::cmd("XINFO");
        cmd.arg("GROUPS").arg(&self.stream);
        let groups: redis::RedisResult<redis::streams::StreamInfoGroupsReply> =
            cmd.query_async(&mut self.redis.connection()).await;
        groups.is_ok_and(|g| !g.groups.is_empty())
    }
}

/// A mediator started by [`spawn_app`], stopped as by SIGTERM with [`TestApp::stop`].
pub struct TestApp {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Starts a mediator through its real `run`.
pub async fn spawn_app(config: Config) -> TestApp {
    let listener = shop_common::http::bind(&config.server.http).await.unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(mediator::run(listener, config, async {
        let _ = rx.await;
    }));
    TestApp {
        stop: Some(tx),
        task,
    }
}

impl TestApp {
    /// Shuts down, waits (bounded) for the end of `run`, and returns its result.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the mediator stops promptly")
            .unwrap()
    }
}
