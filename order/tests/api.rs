//! The order API against a real Postgres and Redis: creation and publication, validation,
//! idempotency, ownership, authentication, and the outbox sweep when Redis was down.

use order::{Config, db, outbox};
use reqwest::{Client, StatusCode};
use serde_json::{Value as Json, json};
use shop_common::{
    auth::{JwtKeys, TokenKind},
    config::{DatabaseConfig, SecretString},
    redis::RedisPool,
    testing::{
        self,
        outage::{Link, expect_unavailable},
    },
};
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

struct App {
    base: String,
    pool: PgPool,
    stream: String,
    http: Client,
}

async fn start_with_redis(redis_url: SecretString) -> App {
    let (pool, database) = testing::migrated_pool(&order::MIGRATOR).await;
    start_on(pool, database, redis_url).await
}

async fn start_on(pool: PgPool, database: DatabaseConfig, redis_url: SecretString) -> App {
    let stream = format!("orders-test-{}", Uuid::new_v4().simple());
    let config = Config {
        server: testing::server(database),
        jwt_secret: testing::jwt_secret(),
        redis_url,
        orders_stream: stream.clone(),
        republish_after: Duration::from_secs(5),
        republish_stale_after: Duration::from_secs(300),
    };
    let redis = shop_common::redis::pool(&config.redis_url).unwrap();
    let router = order::build_router(pool.clone(), redis, &config);
    let listener = shop_common::http::bind(&config.server.http).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(shop_common::http::serve(
        listener,
        router,
        std::future::pending(),
    ));
    App {
        base: format!("http://{addr}"),
        pool,
        stream,
        http: Client::new(),
    }
}

async fn start() -> App {
    start_with_redis(testing::redis_url()).await
}

fn token(user: &str) -> String {
    JwtKeys::new(&testing::jwt_secret())
        .issue(user, TokenKind::Access, Duration::from_secs(300))
        .unwrap()
}

fn good_order() -> Json {
    json!({"amount": 100, "details": {"item": 1, "slot": "09:00"}})
}

impl App {
    /// A good order of `user`, created; its id.
    async fn create_order(&self, user: &str) -> Uuid {
        let body: Json = self
            .post(user, &good_order(), None)
            .await
            .json()
            .await
            .unwrap();
        Uuid::parse_str(body["id"].as_str().unwrap()).unwrap()
    }

    async fn post(&self, user: &str, body: &Json, key: Option<&str>) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}/api/orders/", self.base))
            .bearer_auth(token(user))
            .json(body);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        req.send().await.unwrap()
    }

    async fn get(&self, user: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token(user))
            .send()
            .await
            .unwrap()
    }
}

fn redis_pool() -> RedisPool {
    shop_common::redis::pool(&testing::redis_url()).unwrap()
}

/// The `order_id` of every entry of `stream`.
async fn stream_order_ids(stream: &str) -> Vec<String> {
    let pool = redis_pool();
    let mut conn = pool.get().await.unwrap();
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(&mut *conn)
        .await
        .unwrap();
    reply
        .ids
        .iter()
        .map(|e| e.get::<String>("order_id").unwrap())
        .collect()
}

/// Within 5 s: the flag is written `outbox::FLUSH_DELAY` (1 s) after the publication.
async fn eventually_published(pool: &PgPool, id: Uuid) -> bool {
    for _ in 0..250 {
        let order = db::find_order(pool, id).await.unwrap().unwrap();
        if order.published_at.is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn create_returns_201_with_location_and_publishes_the_order() {
    let app = start().await;
    let res = app.post("alice", &good_order(), None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let body: Json = res.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/orders/{id}"));
    assert_eq!(body["amount"], json!(100.0));
    assert_eq!(body["details"], json!({"item": 1, "slot": "09:00"}));
    assert_eq!(body["status"], "pending");
    assert_eq!(body["success"], Json::Null);
    assert_eq!(body["reason"], Json::Null);
    for ts in ["created_at", "updated_at"] {
        let text = body[ts].as_str().unwrap();
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{ts} = {text} is not RFC 3339: {e}"));
    }
    let uuid = Uuid::parse_str(&id).unwrap();
    assert_eq!(uuid.get_version_num(), 7);

    assert_eq!(
        stream_order_ids(&app.stream).await,
        std::slice::from_ref(&id)
    );
    assert!(eventually_published(&app.pool, uuid).await);

    let shown: Json = app.get("alice", &location).await.json().await.unwrap();
    assert_eq!(shown["id"], json!(id));
    assert_eq!(shown["saga"], json!([]));
}

#[tokio::test]
async fn amounts_with_cents_are_kept_exactly() {
    let app = start().await;
    let body = json!({"amount": 12.34, "details": {"item": 7, "slot": "23:59"}});
    let res = app.post("alice", &body, None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Json = res.json().await.unwrap();
    assert_eq!(body["amount"], json!(12.34));
    let id = Uuid::parse_str(body["id"].as_str().unwrap()).unwrap();
    let stored = db::find_order(&app.pool, id).await.unwrap().unwrap();
    assert_eq!(stored.amount.minor(), 1234);
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let app = start().await;
    let cases = [
        (
            json!({"amount": 0, "details": {"item": 1, "slot": "09:00"}}),
            "amount",
        ),
        (
            json!({"amount": -5, "details": {"item": 1, "slot": "09:00"}}),
            "amount",
        ),
        (
            json!({"amount": 1.005, "details": {"item": 1, "slot": "09:00"}}),
            "amount",
        ),
        (
            json!({"amount": "5", "details": {"item": 1, "slot": "09:00"}}),
            "amount",
        ),
        (json!({"details": {"item": 1, "slot": "09:00"}}), "amount"),
        (
            json!({"amount": 5, "details": {"item": 0, "slot": "09:00"}}),
            "details.item",
        ),
        (
            json!({"amount": 5, "details": {"item": -2, "slot": "09:00"}}),
            "details.item",
        ),
        (
            json!({"amount": 5, "details": {"item": 1.5, "slot": "09:00"}}),
            "details.item",
        ),
        (
            json!({"amount": 5, "details": {"item": "1", "slot": "09:00"}}),
            "details.item",
        ),
        (
            json!({"amount": 5, "details": {"item": 1, "slot": "24:00"}}),
            "details.slot",
        ),
        (
            json!({"amount": 5, "details": {"item": 1, "slot": "9:00"}}),
            "details.slot",
        ),
        (json!({"amount": 5}), "details"),
    ];
    for (body, field) in cases {
        let res = app.post("alice", &body, None).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
        let err: Json = res.json().await.unwrap();
        assert_eq!(err["field"], json!(field), "{body} -> {err}");
        assert!(err["detail"].as_str().unwrap().contains(field), "{err}");
    }
    let res = app
        .http
        .post(format!("{}/api/orders", app.base))
        .bearer_auth(token("alice"))
        .header("content-type", "application/json")
        .body("{\"amount\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let orders: Json = app.get("alice", "/api/orders").await.json().await.unwrap();
    assert_eq!(orders, json!([]), "nothing stored");
    assert!(stream_order_ids(&app.stream).await.is_empty());
}

#[tokio::test]
async fn a_retried_post_with_the_same_key_returns_the_same_order() {
    let app = start().await;
    let first = app.post("alice", &good_order(), Some("key-1")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Json = first.json().await.unwrap();

    let again = app.post("alice", &good_order(), Some("key-1")).await;
    assert_eq!(again.status(), StatusCode::OK, "a replay is 200");
    assert_eq!(
        again.headers()["location"].to_str().unwrap(),
        format!("/api/orders/{}", first["id"].as_str().unwrap())
    );
    let again: Json = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);

    // The same key of another user is another order.
    let bob = app.post("bob", &good_order(), Some("key-1")).await;
    assert_eq!(bob.status(), StatusCode::CREATED);

    let orders: Json = app.get("alice", "/api/orders").await.json().await.unwrap();
    assert_eq!(orders.as_array().unwrap().len(), 1);
    assert_eq!(
        stream_order_ids(&app.stream).await.len(),
        2,
        "published once each"
    );

    // Concurrent retries still make one order.
    let body = good_order();
    let posts = (0..8).map(|_| app.post("carol", &body, Some("key-2")));
    let answers = futures::future::join_all(posts).await;
    let mut ids: Vec<String> = Vec::new();
    let mut statuses = Vec::new();
    for res in answers {
        statuses.push(res.status());
        let body: Json = res.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1);
    // Exactly one of them created it; the others replayed it.
    statuses.sort();
    let mut expected = vec![StatusCode::OK; 7];
    expected.push(StatusCode::CREATED);
    expected.sort();
    assert_eq!(statuses, expected);
}

#[tokio::test]
async fn with_the_database_down_a_post_is_503_and_its_retry_creates_the_order_once() {
    let (direct, database) = testing::migrated_pool(&order::MIGRATOR).await;
    let (link, via_link) = Link::to_database(&database).await;
    let pool = shop_common::db::connect_and_migrate(&via_link, &order::MIGRATOR)
        .await
        .unwrap();
    let app = start_on(pool, via_link, testing::redis_url()).await;
    let post = |key: &str| {
        app.http
            .post(format!("{}/api/orders/", app.base))
            .bearer_auth(token("alice"))
            .header("Idempotency-Key", key)
            .json(&good_order())
    };
    assert_eq!(
        post("before").send().await.unwrap().status(),
        StatusCode::CREATED
    );

    link.cut().await;
    let list = app
        .http
        .get(format!("{}/api/orders/", app.base))
        .bearer_auth(token("alice"));
    tokio::join!(expect_unavailable(post("k1")), expect_unavailable(list));
    // Nothing of the refused POST was written.
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM orders WHERE idempotency_key = 'k1'")
            .fetch_one(&direct)
            .await
            .unwrap();
    assert_eq!(stored, 0);

    link.restore().await;
    let created = post("k1").send().await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Json = created.json().await.unwrap();
    let replay = post("k1").send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::OK);
    assert_eq!(replay.json::<Json>().await.unwrap()["id"], created["id"]);
    let orders: Json = app.get("alice", "/api/orders").await.json().await.unwrap();
    assert_eq!(orders.as_array().unwrap().len(), 2, "{orders}");
}

#[tokio::test]
async fn a_reused_key_with_another_body_is_refused() {
    let app = start().await;
    let res = app.post("alice", &good_order(), Some("key-1")).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let other = json!({"amount": 5, "details": {"item": 1, "slot": "09:00"}});
    let res = app.post("alice", &other, Some("key-1")).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let err: Json = res.json().await.unwrap();
    assert_eq!(err["error"], "idempotency_key_reused");
}

#[tokio::test]
async fn listing_shows_only_the_callers_orders_oldest_first() {
    let app = start().await;
    let mut mine = Vec::new();
    for (i, user) in ["alice", "bob", "alice", "alice", "bob"].iter().enumerate() {
        let body = json!({"amount": i + 1, "details": {"item": 1, "slot": "09:00"}});
        let res: Json = app.post(user, &body, None).await.json().await.unwrap();
        if *user == "alice" {
            mine.push(res["id"].clone());
        }
    }
    let listed: Json = app.get("alice", "/api/orders/").await.json().await.unwrap();
    let ids: Vec<Json> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].clone())
        .collect();
    assert_eq!(ids, mine);
    assert_eq!(listed[0]["amount"], json!(1.0));
    assert!(listed[0].get("saga").is_none());
}

#[tokio::test]
async fn someone_elses_or_a_malformed_order_is_not_found() {
    let app = start().await;
    let id = app.create_order("alice").await;
    let path = format!("/api/orders/{id}");
    assert_eq!(app.get("alice", &path).await.status(), StatusCode::OK);
    assert_eq!(app.get("bob", &path).await.status(), StatusCode::NOT_FOUND);
    let unknown = format!("/api/orders/{}", Uuid::now_v7());
    assert_eq!(
        app.get("alice", &unknown).await.status(),
        StatusCode::NOT_FOUND
    );
    let malformed = app.get("alice", "/api/orders/not-a-uuid").await;
    assert_eq!(malformed.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn without_a_valid_token_it_is_401() {
    let app = start().await;
    let url = format!("{}/api/orders", app.base);
    let res = app
        .http
        .post(&url)
        .json(&good_order())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app.http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .http
        .get(&url)
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(stream_order_ids(&app.stream).await.is_empty());
}

#[tokio::test]
async fn the_saga_log_is_shown_with_the_order() {
    let app = start().await;
    let id = app.create_order("alice").await;
    let now = time::OffsetDateTime::now_utc();
    let step = |participant, outcome, code: Option<&str>| db::NewStep {
        participant,
        kind: db::StepKind::Action,
        outcome,
        error_code: code.map(str::to_owned),
        started_at: now,
        finished_at: now,
    };
    let steps = [
        step("items", db::StepOutcome::Ok, None),
        step("slots", db::StepOutcome::Rejected, Some("slot_unavailable")),
    ];
    let moved = db::transition(
        &app.pool,
        id,
        db::Status::Pending,
        db::Status::Compensating,
        Some("Can not get the delivery slot"),
        &steps,
    )
    .await
    .unwrap();
    assert!(moved);
    let again = db::transition(
        &app.pool,
        id,
        db::Status::Pending,
        db::Status::Completed,
        None,
        &steps,
    )
    .await
    .unwrap();
    assert!(!again, "the guard refuses a second move from pending");

    let path = format!("/api/orders/{id}");
    let shown: Json = app.get("alice", &path).await.json().await.unwrap();
    assert_eq!(shown["status"], "compensating");
    assert_eq!(shown["success"], Json::Null);
    assert_eq!(shown["reason"], "Can not get the delivery slot");
    let saga = shown["saga"].as_array().unwrap();
    assert_eq!(saga.len(), 2);
    assert_eq!(saga[0]["seq"], 1);
    assert_eq!(saga[0]["participant"], "items");
    assert_eq!(saga[0]["kind"], "action");
    assert_eq!(saga[0]["outcome"], "ok");
    assert_eq!(saga[1]["outcome"], "rejected");
    assert_eq!(saga[1]["error_code"], "slot_unavailable");

    let undo = [db::NewStep {
        kind: db::StepKind::Compensation,
        ..step("items", db::StepOutcome::Ok, None)
    }];
    let failed = db::transition(
        &app.pool,
        id,
        db::Status::Compensating,
        db::Status::Failed,
        None,
        &undo,
    )
    .await
    .unwrap();
    assert!(failed);
    let shown: Json = app.get("alice", &path).await.json().await.unwrap();
    assert_eq!(shown["status"], "failed");
    assert_eq!(shown["success"], false);
    assert_eq!(
        shown["reason"], "Can not get the delivery slot",
        "the reason is kept"
    );
    assert_eq!(shown["saga"][2]["seq"], 3);
    assert_eq!(shown["saga"][2]["kind"], "compensation");
}

#[tokio::test]
async fn with_redis_down_the_order_is_stored_and_the_sweep_publishes_it_later() {
    let app = start_with_redis(SecretString::from("redis://127.0.0.1:1")).await;
    let res = app.post("alice", &good_order(), None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Json = res.json().await.unwrap();
    let id = Uuid::parse_str(body["id"].as_str().unwrap()).unwrap();

    // The POST tried to publish before answering (and failed): nothing to wait for.
    let stored = db::find_order(&app.pool, id).await.unwrap().unwrap();
    assert!(stored.published_at.is_none());

    let redis = redis_pool();
    // Not yet old enough for the sweep.
    let swept = outbox::sweep_once(&app.pool, &redis, &app.stream, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(swept, 0);
    let swept = outbox::sweep_once(&app.pool, &redis, &app.stream, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(swept, 1);
    assert_eq!(stream_order_ids(&app.stream).await, [id.to_string()]);
    let stored = db::find_order(&app.pool, id).await.unwrap().unwrap();
    assert!(stored.published_at.is_some());
    let swept = outbox::sweep_once(&app.pool, &redis, &app.stream, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(swept, 0, "published once");
}

#[tokio::test]
async fn the_sweeper_task_publishes_in_the_background() {
    let app = start_with_redis(SecretString::from("redis://127.0.0.1:1")).await;
    let id = app.create_order("alice").await;
    let stop = tokio_util::sync::CancellationToken::new();
    let sweeper = tokio::spawn(outbox::run_sweeper(
        app.pool.clone(),
        redis_pool(),
        app.stream.clone(),
        outbox::SweepAfter {
            unpublished: Duration::ZERO,
            stale: Duration::from_secs(300),
        },
        stop.clone(),
    ));
    assert!(eventually_published(&app.pool, id).await);
    stop.cancel();
    sweeper.await.unwrap();
    assert_eq!(stream_order_ids(&app.stream).await, [id.to_string()]);
}

impl App {
    async fn ready(&self) -> (StatusCode, Json) {
        let r = self
            .http
            .get(format!("{}/health/ready", self.base))
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }
}

/// The order API needs its database to serve, not Redis (a POST is stored and published later by
/// the sweep): a Redis outage keeps it in the Ingress, a database outage takes it out.
#[tokio::test]
async fn readiness_follows_the_database_not_redis() {
    let (direct, database) = testing::migrated_pool(&order::MIGRATOR).await;
    drop(direct);
    let (link, via_link) = Link::to_database(&database).await;
    let pool = shop_common::db::connect_and_migrate(&via_link, &order::MIGRATOR)
        .await
        .unwrap();
    let app = start_on(pool, via_link, SecretString::from("redis://127.0.0.1:1")).await;
    let (status, body) = app.ready().await;
    assert_eq!(status, StatusCode::OK, "Redis down, database up: {body}");
    assert_eq!(body, json!({"status": "ready"}));

    link.cut().await;
    let (status, body) = app.ready().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "not_ready");

    link.restore().await;
    // The pool reconnects on its next use; bounded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.ready().await.0 != StatusCode::OK {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready 10 s after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn health_is_ready_with_database_and_redis() {
    let app = start().await;
    for path in ["/health/live", "/health/ready", "/metrics"] {
        let res = app
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn an_order_unfinished_long_after_publication_is_published_again() {
    let app = start().await;
    let id = app.create_order("alice").await;
    assert!(eventually_published(&app.pool, id).await);
    let redis = redis_pool();
    let swept = outbox::sweep_stale_once(&app.pool, &redis, &app.stream, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(swept, 0, "not stale yet");
    // As if its stream entry had been lost with Redis's data.
    let swept = outbox::sweep_stale_once(&app.pool, &redis, &app.stream, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(swept, 1);
    assert_eq!(stream_order_ids(&app.stream).await.len(), 2);

    // A final order is never published again.
    let moved = db::transition(
        &app.pool,
        id,
        db::Status::Pending,
        db::Status::Completed,
        None,
        &[],
    )
    .await
    .unwrap();
    assert!(moved);
    let swept = outbox::sweep_stale_once(&app.pool, &redis, &app.stream, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(swept, 0);
}

/// Starts the sweeper of `app` (stale re-publication far off, as by default).
fn sweeper(
    app: &App,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(outbox::run_sweeper(
        app.pool.clone(),
        redis_pool(),
        app.stream.clone(),
        outbox::SweepAfter {
            unpublished: Duration::from_secs(5),
            stale: Duration::from_secs(300),
        },
        stop.clone(),
    ));
    (stop, task)
}

/// Polls the stream until `id` has `n` entries in it, for at most 10 s (the sweep runs every
/// second); false if it never does.
async fn eventually_entries(stream: &str, id: Uuid, n: usize) -> bool {
    for _ in 0..100 {
        let ids = stream_order_ids(stream).await;
        if ids.iter().filter(|e| **e == id.to_string()).count() >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A published order, and one completed.
async fn unfinished_and_finished(app: &App) -> (Uuid, Uuid) {
    let mut ids = Vec::new();
    for _ in 0..2 {
        let id = app.create_order("alice").await;
        assert!(eventually_published(&app.pool, id).await);
        ids.push(id);
    }
    let (unfinished, finished) = (ids[0], ids[1]);
    let completed = db::transition(
        &app.pool,
        finished,
        db::Status::Pending,
        db::Status::Completed,
        None,
        &[],
    );
    assert!(completed.await.unwrap());
    (unfinished, finished)
}

/// Issue #9: a Redis other than the one that held the stream (restarted, possibly without the
/// tail of its append-only file) gets every unfinished order again at once, not after
/// REPUBLISH_STALE_AFTER_SECS.
#[tokio::test]
async fn after_a_redis_restart_unfinished_orders_are_published_again_at_once() {
    let app = start().await;
    let (unfinished, finished) = unfinished_and_finished(&app).await;
    // The outbox last saw another Redis process, and this one lost the entries.
    db::record_redis_run(&app.pool, "a-redis-before-its-restart")
        .await
        .unwrap();
    redis_del(&app.stream).await;
    let (stop, task) = sweeper(&app);
    assert!(
        eventually_entries(&app.stream, unfinished, 1).await,
        "the unfinished order was not published again"
    );
    let recorded = db::recorded_redis_run(&app.pool).await.unwrap().unwrap();
    assert_ne!(recorded, "a-redis-before-its-restart");
    stop.cancel();
    task.await.unwrap();
    assert_eq!(
        stream_order_ids(&app.stream).await,
        [unfinished.to_string()]
    );
    assert!(
        !stream_order_ids(&app.stream)
            .await
            .contains(&finished.to_string())
    );
}

/// Issue #9: the stream deleted under a running outbox (same Redis process): every unfinished
/// order is published again at once.
#[tokio::test]
async fn after_the_stream_is_lost_unfinished_orders_are_published_again_at_once() {
    let app = start().await;
    let (unfinished, finished) = unfinished_and_finished(&app).await;
    let (stop, task) = sweeper(&app);
    // The sweeper has recorded this Redis (its first check may publish once more: it had none).
    for _ in 0..100 {
        if db::recorded_redis_run(&app.pool).await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(db::recorded_redis_run(&app.pool).await.unwrap().is_some());
    redis_del(&app.stream).await;
    assert!(
        eventually_entries(&app.stream, unfinished, 1).await,
        "the unfinished order was not published again"
    );
    stop.cancel();
    task.await.unwrap();
    assert!(
        !stream_order_ids(&app.stream)
            .await
            .contains(&finished.to_string())
    );
}

async fn redis_del(key: &str) {
    let pool = redis_pool();
    let mut conn = pool.get().await.unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(key)
        .query_async(&mut *conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_long_poll_answers_when_the_order_becomes_final() {
    let app = start().await;
    let id = app.create_order("alice").await;
    let path = format!("/api/orders/{id}?wait_ms=20000");
    let waiting = tokio::spawn({
        let (http, base) = (app.http.clone(), app.base.clone());
        async move {
            http.get(format!("{base}{path}"))
                .bearer_auth(token("alice"))
                .send()
                .await
                .unwrap()
                .json::<Json>()
                .await
                .unwrap()
        }
    });
    // What the mediator does: store the final state, then signal it.
    let moved = db::transition(
        &app.pool,
        id,
        db::Status::Pending,
        db::Status::Completed,
        None,
        &[],
    )
    .await
    .unwrap();
    assert!(moved);
    // The poll may not be listening yet when a signal is sent (the signal is a hint: a reader
    // that misses it answers at its deadline), so signal until it answers, for at most 10 s:
    // well before its own 20 s deadline.
    let mut conn = redis_pool().get().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !waiting.is_finished() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the signal did not end the long poll within 10 s"
        );
        let _: i64 = redis::cmd("PUBLISH")
            .arg(outbox::final_channel(&app.stream))
            .arg(id.to_string())
            .query_async(&mut *conn)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = waiting.await.unwrap();
    assert_eq!(answer["status"], "completed");
    assert_eq!(answer["success"], true);
}

#[tokio::test]
async fn a_long_poll_without_a_signal_answers_the_stored_state_at_its_deadline() {
    let app = start().await;
    let id = app.create_order("alice").await;
    let r = app
        .get("alice", &format!("/api/orders/{id}?wait_ms=100"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Json>().await.unwrap()["status"], "pending");
    let bad = app
        .get("alice", &format!("/api/orders/{id}?wait_ms=soon"))
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(bad.json::<Json>().await.unwrap()["error"], "invalid_query");
}

/// A long poll may wait longer than REQUEST_TIMEOUT_MS (10 s here, as by default): its route runs
/// under that timeout plus the longest wait, so an order still unfinished at the deadline is
/// answered 200 with its state, not 503 `timeout`.
#[tokio::test]
async fn a_long_poll_longer_than_the_request_timeout_answers_the_unfinished_order() {
    let app = start().await;
    assert_eq!(testing::http().request_timeout, Duration::from_secs(10));
    let id = app.create_order("alice").await;
    let started = std::time::Instant::now();
    let r = app
        .get("alice", &format!("/api/orders/{id}?wait_ms=15000"))
        .await;
    let waited = started.elapsed();
    let status = r.status();
    let body: Json = r.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "pending");
    assert_eq!(body["success"], Json::Null);
    assert!(
        waited >= Duration::from_secs(15),
        "answered after {waited:?}, before its 15 s"
    );
}
