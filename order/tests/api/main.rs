//! The order service's integration tests, one binary: the API started through its real `run`
//! against a real Postgres (a fresh database per test) and Redis (a fresh stream per test).
//!
//! - `orders`: creation and publication, validation, idempotency, ownership, authentication, the
//!   saga log, long polls;
//! - `cancel`: the customer's cancel, of a pending, completed or failed order;
//! - `admin`: the operators' API and its role check;
//! - `outbox`: publication when Redis was down, the sweeps, recovery of lost stream entries;
//! - `outages`: readiness and a database outage under a running API;
//! - `startup`: waiting for the database and migrating at start-up.

mod admin;
mod cancel;
mod orders;
mod outages;
mod outbox;
mod pages;
mod startup;

use order::Config;
use order_store::{
    db::{self, Status},
    stream::Streams,
};
use reqwest::{Client, Response};
use serde_json::{Value as Json, json};
use shop_common::config::ExposeSecret;
use shop_common::{
    config::{DatabaseConfig, SecretString},
    redis::Redis,
    testing::{self, eventually},
};
use sqlx::PgPool;
use std::time::Duration;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// A Redis URL nothing answers on: the API's Redis is down.
pub const REDIS_DOWN: &str = "redis://127.0.0.1:1";

pub struct App {
    pub base: String,
    pub http: Client,
    /// The API's database, for checks behind its back.
    pub pool: PgPool,
    pub stream: String,
    /// The test's own connection to the test Redis, whichever Redis the API was given.
    pub redis: Redis,
}

/// The API on a fresh database and the test Redis.
pub async fn spawn_app() -> App {
    spawn_app_with(testing::fresh_database().await, testing::redis_url()).await
}

/// The API through its real `run` on `database` and `redis_url`, once it is ready.
pub async fn spawn_app_with(database: DatabaseConfig, redis_url: SecretString) -> App {
    let stream = format!("orders-test-{}", Uuid::new_v4().simple());
    let redis = shop_common::redis::connect(&testing::redis_url()).unwrap();
    // The stream exists before the API starts, as once the mediator has created its group: the
    // outbox's loss detection then sees nothing lost, and publishes nothing twice.
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("mediator")
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut redis.connection())
        .await
        .unwrap();
    let redis_up = redis_url.expose_secret() != REDIS_DOWN;
    let config = Config {
        server: testing::server(database.clone()),
        jwt_secret: testing::jwt_secret(),
        redis_url,
        streams: Streams {
            orders_stream: stream.clone(),
            dead_letter_stream: format!("{stream}.dead"),
        },
        republish_after: Duration::from_secs(5),
        republish_stale_after: Duration::from_secs(300),
    };
    let service = testing::start("order", database, |listener| {
        order::run(listener, config, std::future::pending())
    })
    .await;
    let app = App {
        base: service.base,
        http: service.http,
        pool: service.pool,
        stream,
        redis,
    };
    if redis_up {
        // Until the sweeper's first check has recorded this Redis, it may take an order being
        // created for one published into a lost stream, and publish it twice.
        eventually(
            Duration::from_secs(10),
            "the outbox knows this Redis",
            async || db::recorded_redis_run(&app.pool).await.unwrap().is_some(),
        )
        .await;
    }
    app
}

pub fn good_order() -> Json {
    json!({"amount": 100, "details": {"item": 1, "slot": "09:00"}})
}

impl App {
    pub async fn post(&self, user: &str, body: &Json, key: Option<&str>) -> Response {
        self.post_text(user, body.to_string(), key).await
    }

    /// POSTs `body`, JSON or meant to be, as `user`.
    pub async fn post_text(&self, user: &str, body: String, key: Option<&str>) -> Response {
        self.post_with_query(user, "", body, key).await
    }

    /// POSTs `body` to `/api/orders/?<query>` as `user` (no query when empty).
    pub async fn post_with_query(
        &self,
        user: &str,
        query: &str,
        body: String,
        key: Option<&str>,
    ) -> Response {
        let url = match query {
            "" => format!("{}/api/orders/", self.base),
            query => format!("{}/api/orders/?{query}", self.base),
        };
        let mut req = self.http.post(url).bearer_auth(testing::access_token(user));
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        let json = req.header(reqwest::header::CONTENT_TYPE, "application/json");
        json.body(body).send().await.unwrap()
    }

    /// A POST of a good order as `user` with `Idempotency-Key: key`, not yet sent (to send it
    /// again, or to hand it to a helper that checks its answer).
    pub fn good_order_request(&self, user: &str, key: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/api/orders/", self.base))
            .bearer_auth(testing::access_token(user))
            .header("Idempotency-Key", key)
            .json(&good_order())
    }

    /// `GET /api/orders/` as `user`, not yet sent.
    pub fn list_request(&self, user: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}/api/orders/", self.base))
            .bearer_auth(testing::access_token(user))
    }

    /// What the mediator does once `id` is final: PUBLISH it on the final channel — again and
    /// again until `waiting` has answered, for at most 10 s (well before the 20 s the tests' long
    /// polls ask for). A request may not be parked yet when a signal is sent: the signal is a
    /// hint, and a reader that misses it answers at its deadline.
    pub async fn signal_final_until_answered<T>(&self, id: Uuid, waiting: &JoinHandle<T>) {
        let mut conn = self.redis.connection();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !waiting.is_finished() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the signal of {id} did not end the wait within 10 s"
            );
            let _: i64 = redis::cmd("PUBLISH")
                .arg(order_store::stream::final_channel(&self.stream))
                .arg(id.to_string())
                .query_async(&mut conn)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A good order of `user`, created; its id.
    pub async fn create_order(&self, user: &str) -> Uuid {
        let body: Json = self
            .post(user, &good_order(), None)
            .await
            .json()
            .await
            .unwrap();
        Uuid::parse_str(body["id"].as_str().unwrap()).unwrap()
    }

    /// `GET <base><path>` without credentials.
    pub async fn get_anonymous(&self, path: &str) -> Response {
        let url = format!("{}{path}", self.base);
        self.http.get(url).send().await.unwrap()
    }

    pub async fn get(&self, user: &str, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(testing::access_token(user))
            .send()
            .await
            .unwrap()
    }

    /// The `order_id` of every entry of the stream.
    pub async fn stream_order_ids(&self) -> Vec<String> {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&self.stream)
            .arg("-")
            .arg("+")
            .query_async(&mut self.redis.connection())
            .await
            .unwrap();
        reply
            .ids
            .iter()
            .map(|e| e.get::<String>(order_store::stream::FIELD).unwrap())
            .collect()
    }

    pub async fn is_published(&self, id: Uuid) -> bool {
        let order = db::find_order(&self.pool, id).await.unwrap().unwrap();
        order.published_at.is_some()
    }

    /// Waits for the publication flag, written `outbox::FLUSH_DELAY` (1 s) after publication, and
    /// up to `FLUSH_GATHER` (0.25 s) more.
    pub async fn wait_published(&self, id: Uuid) {
        eventually(
            Duration::from_secs(5),
            "the order flagged published",
            async || self.is_published(id).await,
        )
        .await;
    }

    /// What the mediator does when a saga succeeds at once: `pending -> completed`.
    pub async fn complete(&self, id: Uuid) {
        let moved = db::transition(
            &self.pool,
            id,
            Status::Pending,
            Status::Completed,
            None,
            &[],
        )
        .await
        .unwrap();
        assert!(moved, "{id} was not pending");
    }
}
