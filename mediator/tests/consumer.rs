//! The whole mediator against a real Postgres and Redis and the fake participants: stream entries
//! run to a final state and are acknowledged only then, duplicates, dead letters, taking over a
//! dead consumer's entries, graceful shutdown, and (with the real binary) recovery after kill -9.

mod support;

use order::db::{self, Status};
use redis::streams::{StreamPendingCountReply, StreamPendingReply, StreamRangeReply};
use shop_common::config::ExposeSecret;
use shop_common::{redis::RedisPool, testing};
use sqlx::PgPool;
use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};
use support::{
    Fakes, database, eventually,
    fake_participant::{Answer, Hold},
    mediator_config, new_order, status, unique,
};
use tokio::sync::oneshot;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(15);

fn redis_pool() -> RedisPool {
    shop_common::redis::pool(&testing::redis_url()).unwrap()
}

async fn xadd(redis: &RedisPool, stream: &str, fields: &[(&str, &str)]) -> String {
    let mut conn = redis.get().await.unwrap();
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg("*");
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    cmd.query_async(&mut *conn).await.unwrap()
}

async fn publish(redis: &RedisPool, stream: &str, id: Uuid) {
    xadd(redis, stream, &[("order_id", &id.to_string())]).await;
}

async fn pending(redis: &RedisPool, stream: &str) -> usize {
    let mut conn = redis.get().await.unwrap();
    let reply: StreamPendingReply = redis::cmd("XPENDING")
        .arg(stream)
        .arg("mediator")
        .query_async(&mut *conn)
        .await
        .unwrap();
    reply.count()
}

async fn entries(redis: &RedisPool, stream: &str) -> StreamRangeReply {
    let mut conn = redis.get().await.unwrap();
    redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(&mut *conn)
        .await
        .unwrap()
}

async fn create_group(redis: &RedisPool, stream: &str) {
    let mut conn = redis.get().await.unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg("mediator")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut *conn)
        .await
        .unwrap();
}

/// A consumer that reads (and so owns) every new entry, then dies without acknowledging them.
async fn read_as_ghost(redis: &RedisPool, stream: &str) {
    let mut conn = redis.get().await.unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("mediator")
        .arg("ghost")
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query_async(&mut *conn)
        .await
        .unwrap();
}

async fn is_final(pool: &PgPool, id: Uuid) -> bool {
    status(pool, id).await.0.is_final()
}

struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the mediator stops promptly")
            .unwrap()
    }
}

async fn start(config: mediator::Config) -> Running {
    let listener = shop_common::http::bind(&config.server.http).await.unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(mediator::run(listener, config, async {
        let _ = rx.await;
    }));
    Running {
        stop: Some(tx),
        task,
    }
}

#[tokio::test]
async fn stream_entries_are_run_to_completion_and_acknowledged() {
    let (pool, database) = database().await;
    let fakes = Fakes::start().await;
    let redis = redis_pool();
    let stream = unique("orders");
    let mut ids = Vec::new();
    // Published before the mediator (and its group) exists: still consumed.
    for _ in 0..5 {
        let id = new_order(&pool).await;
        publish(&redis, &stream, id).await;
        ids.push(id);
    }
    let config = mediator_config(
        database,
        fakes.config(Duration::from_secs(2)),
        &stream,
        "c1",
    );
    let mediator = start(config).await;
    for _ in 0..15 {
        let id = new_order(&pool).await;
        publish(&redis, &stream, id).await;
        ids.push(id);
    }
    for &id in &ids {
        eventually(WAIT, "every order completed", || is_final(&pool, id)).await;
        assert_eq!(status(&pool, id).await.0, Status::Completed);
    }
    eventually(WAIT, "every entry acknowledged", || async {
        pending(&redis, &stream).await == 0
    })
    .await;
    mediator.stop().await.unwrap();
}

#[tokio::test]
async fn duplicate_entries_give_one_saga_result() {
    let (pool, database) = database().await;
    let fakes = Fakes::start().await;
    let redis = redis_pool();
    let stream = unique("orders");
    let id = new_order(&pool).await;
    for _ in 0..3 {
        publish(&redis, &stream, id).await;
    }
    let config = mediator_config(
        database,
        fakes.config(Duration::from_secs(2)),
        &stream,
        "c1",
    );
    let mediator = start(config).await;
    eventually(WAIT, "the order is final", || is_final(&pool, id)).await;
    eventually(WAIT, "all three entries acknowledged", || async {
        pending(&redis, &stream).await == 0
    })
    .await;
    assert_eq!(status(&pool, id).await.0, Status::Completed);
    for fake in [&fakes.items, &fakes.slots, &fakes.billing] {
        assert_eq!(fake.hold(id), Some(Hold::Held), "held once: {}", fake.name);
        assert!(!fake.calls(id).contains(&"DELETE"));
    }
    assert_eq!(db::saga_log(&pool, id).await.unwrap().len(), 3);
    mediator.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_and_unknown_entries_are_dead_lettered_then_acknowledged() {
    let (_pool, database) = database().await;
    let fakes = Fakes::start().await;
    let redis = redis_pool();
    let stream = unique("orders");
    let unknown = Uuid::now_v7().to_string();
    let no_id = xadd(&redis, &stream, &[("something", "else")]).await;
    let bad_id = xadd(&redis, &stream, &[("order_id", "not-a-uuid")]).await;
    let unknown_id = xadd(&redis, &stream, &[("order_id", &unknown)]).await;
    let config = mediator_config(
        database,
        fakes.config(Duration::from_secs(2)),
        &stream,
        "c1",
    );
    let dead = config.stream.dead_letter_stream.clone();
    let mediator = start(config).await;
    eventually(WAIT, "three dead letters", || async {
        entries(&redis, &dead).await.ids.len() == 3
    })
    .await;
    eventually(WAIT, "all acknowledged", || async {
        pending(&redis, &stream).await == 0
    })
    .await;
    let letters = entries(&redis, &dead).await;
    let find = |stream_id: &str| {
        letters
            .ids
            .iter()
            .find(|e| e.get::<String>("stream_id").as_deref() == Some(stream_id))
            .unwrap_or_else(|| panic!("no dead letter for {stream_id}"))
            .clone()
    };
    let e = find(&no_id);
    assert_eq!(e.get::<String>("order_id").unwrap(), "");
    assert!(e.get::<String>("reason").unwrap().contains("malformed"));
    assert_eq!(
        e.get::<String>("payload").unwrap(),
        r#"{"something":"else"}"#
    );
    assert!(
        find(&bad_id)
            .get::<String>("reason")
            .unwrap()
            .contains("malformed")
    );
    let e = find(&unknown_id);
    assert_eq!(e.get::<String>("order_id").unwrap(), unknown);
    assert_eq!(e.get::<String>("reason").unwrap(), "unknown order");
    assert!(fakes.journal.lock().unwrap().is_empty());
    mediator.stop().await.unwrap();
}

#[tokio::test]
async fn a_dead_consumers_entries_are_taken_over() {
    let (pool, database) = database().await;
    let fakes = Fakes::start().await;
    let redis = redis_pool();
    let stream = unique("orders");
    create_group(&redis, &stream).await;
    let id = new_order(&pool).await;
    publish(&redis, &stream, id).await;
    read_as_ghost(&redis, &stream).await;
    let mut config = mediator_config(
        database,
        fakes.config(Duration::from_secs(2)),
        &stream,
        "live",
    );
    config.stream.claim_min_idle = Duration::from_millis(300);
    let mediator = start(config).await;
    eventually(WAIT, "the ghost's order completed", || is_final(&pool, id)).await;
    assert_eq!(status(&pool, id).await.0, Status::Completed);
    eventually(WAIT, "acknowledged", || async {
        pending(&redis, &stream).await == 0
    })
    .await;
    mediator.stop().await.unwrap();
}

/// The consumer and delivery count of the one pending entry of `stream`.
async fn pending_owner(redis: &RedisPool, stream: &str) -> Option<(String, usize)> {
    let mut conn = redis.get().await.unwrap();
    let reply: StreamPendingCountReply = redis::cmd("XPENDING")
        .arg(stream)
        .arg("mediator")
        .arg("-")
        .arg("+")
        .arg(10)
        .query_async(&mut *conn)
        .await
        .unwrap();
    assert!(reply.ids.len() <= 1, "one entry at most: {:?}", reply.ids);
    reply
        .ids
        .first()
        .map(|p| (p.consumer.clone(), p.times_delivered))
}

/// Issue #9: heartbeats never wait for a saga slot. With its only slot held by a saga whose
/// compensation keeps failing, a consumer still keeps its entry fresh, so no other consumer takes
/// it over (a second live owner, and a delivery counted each time).
#[tokio::test]
async fn an_entry_stuck_in_compensation_retries_stays_with_its_consumer() {
    let (pool, database) = database().await;
    let fakes = Fakes::start().await;
    // The item's outcome is unknown (503 until the step deadline), and undoing it fails for now.
    fakes.items.always_put(Answer::Fail(503));
    fakes.items.always_delete(Answer::Fail(503));
    let redis = redis_pool();
    let stream = unique("orders");
    create_group(&redis, &stream).await;
    let claim_min_idle = Duration::from_millis(300);
    let mut mediators = Vec::new();
    for name in ["first", "second"] {
        let mut config = mediator_config(
            database.clone(),
            fakes.config(Duration::from_millis(200)),
            &stream,
            name,
        );
        config.stream.concurrency = 1;
        config.stream.claim_min_idle = claim_min_idle;
        mediators.push(start(config).await);
    }
    let id = new_order(&pool).await;
    publish(&redis, &stream, id).await;
    eventually(WAIT, "the order is compensating", || async {
        status(&pool, id).await.0 == Status::Compensating
    })
    .await;
    let owner = pending_owner(&redis, &stream)
        .await
        .expect("a pending entry");
    assert_eq!(owner.1, 1, "{owner:?}");
    // Nothing may change while the compensation keeps failing: checked all through ten claim
    // periods (an absence has no event to wait for; every look must find it unchanged).
    let watch_until = tokio::time::Instant::now() + claim_min_idle * 10;
    while tokio::time::Instant::now() < watch_until {
        assert_eq!(status(&pool, id).await.0, Status::Compensating);
        assert_eq!(
            pending_owner(&redis, &stream).await.as_ref(),
            Some(&owner),
            "the entry was taken over from a live consumer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fakes.items.always_delete(Answer::Ok);
    eventually(WAIT, "the order failed", || is_final(&pool, id)).await;
    assert_eq!(status(&pool, id).await.0, Status::Failed);
    assert_eq!(fakes.items.hold(id), Some(Hold::Cancelled));
    eventually(WAIT, "acknowledged", || async {
        pending(&redis, &stream).await == 0
    })
    .await;
    for mediator in mediators {
        mediator.stop().await.unwrap();
    }
}

#[tokio::test]
async fn an_entry_delivered_too_often_is_dead_lettered_and_its_order_failed_with_nothing_held() {
    let (pool, database) = database().await;
    let fakes = Fakes::start().await;
    let redis = redis_pool();
    let stream = unique("orders");
    create_group(&redis, &stream).await;
    let id = new_order(&pool).await;
    // Earlier deliveries that died mid-saga, after reserving the item.
    fakes.items.force_hold(id);
    publish(&redis, &stream, id).await;
    read_as_ghost(&redis, &stream).await;
    let mut config = mediator_config(
        database,
        fakes.config(Duration::from_secs(2)),
        &stream,
        "live",
    );
    config.stream.claim_min_idle = Duration::from_millis(200);
    config.stream.max_deliveries = 1;
    let dead = config.stream.dead_letter_stream.clone();
    let mediator = start(config).await;
    eventually(WAIT, "the order failed", || is_final(&pool, id)).await;
    assert_eq!(
        status(&pool, id).await,
        (
            Status::Failed,
            Some("Saga could not be processed".to_owned())
        )
    );
    assert_eq!(fakes.items.hold(id), Some(Hold::Released));
    assert!(fakes.items.puts(id).is_empty(), "no forward step was run");
    eventually(WAIT, "acknowledged", || async {
        pending(&redis, &stream).await == 0
    })
    .await;
    let letters = entries(&redis, &dead).await;
    assert_eq!(letters.ids.len(), 1);
    assert_eq!(
        letters.ids[0].get::<String>("order_id").unwrap(),
        id.to_string()
    );
    assert!(
        letters.ids[0]
            .get::<String>("reason")
            .unwrap()
            .contains("delivered 2 times")
    );
    mediator.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_finishes_the_sagas_in_flight_and_leaves_the_group() {
    let (pool, database) = database().await;
    let fakes = Fakes::start().await;
    fakes.billing.script_puts([Answer::Gated]);
    let redis = redis_pool();
    let stream = unique("orders");
    let config = mediator_config(
        database,
        fakes.config(Duration::from_secs(5)),
        &stream,
        "c1",
    );
    let mediator = start(config).await;
    let id = new_order(&pool).await;
    publish(&redis, &stream, id).await;
    eventually(WAIT, "the charge is in flight", || async {
        !fakes.billing.puts(id).is_empty()
    })
    .await;
    assert_eq!(
        pending(&redis, &stream).await,
        1,
        "not acknowledged before the end"
    );
    assert_eq!(status(&pool, id).await.0, Status::Pending);
    let stopping = tokio::spawn(mediator.stop());
    // Stopping waits for the charge held at the gate.
    fakes.billing.open_gate();
    stopping.await.unwrap().unwrap();
    assert_eq!(status(&pool, id).await.0, Status::Completed);
    assert_eq!(pending(&redis, &stream).await, 0);
    let mut conn = redis.get().await.unwrap();
    let consumers: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&stream)
        .arg("mediator")
        .query_async(&mut *conn)
        .await
        .unwrap();
    assert!(consumers.consumers.is_empty(), "left the group");
}

#[tokio::test]
async fn acknowledged_entries_are_trimmed_from_the_stream() {
    let (pool, database) = database().await;
    let fakes = Fakes::start().await;
    let redis = redis_pool();
    let stream = unique("orders");
    let mut config = mediator_config(
        database,
        fakes.config(Duration::from_secs(2)),
        &stream,
        "c1",
    );
    config.stream.claim_min_idle = Duration::from_millis(200);
    let mediator = start(config).await;
    let mut last = Uuid::nil();
    for _ in 0..300 {
        last = new_order(&pool).await;
        publish(&redis, &stream, last).await;
    }
    // 300 sagas on a debug build sharing two cores: a bound for a slow machine.
    let slow = Duration::from_secs(120);
    eventually(slow, "the last order final", || is_final(&pool, last)).await;
    eventually(slow, "all acknowledged", || async {
        pending(&redis, &stream).await == 0
    })
    .await;
    // Trimming is approximate (`MINID ~`): whole stream nodes go, so at most the newest node,
    // 100 entries at most (stream-node-max-entries), is left once every entry is acknowledged.
    eventually(slow, "the stream trimmed to its last node", || async {
        entries(&redis, &stream).await.ids.len() <= 100
    })
    .await;
    mediator.stop().await.unwrap();
}

// ------------------------------------------------------------------ the real binary

struct Process(Child);

/// The mediator binary, configured for `fakes` and `stream`, quiet (RUST_LOG=warn).
fn mediator_command(
    database: &shop_common::config::DatabaseConfig,
    fakes: &Fakes,
    stream: &str,
    consumer: &str,
) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mediator"));
    command
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("DATABASE_URL", database.url.expose_secret())
        .env("REDIS_URL", testing::redis_url().expose_secret())
        .env("INTERNAL_TOKEN", testing::INTERNAL_TOKEN)
        .env("ORDERS_STREAM", stream)
        .env("DEAD_LETTER_STREAM", format!("{stream}.dead"))
        .env("CONSUMER_GROUP", "mediator")
        .env("CONSUMER_NAME", consumer)
        .env("ITEMS_URL", &fakes.items.url)
        .env("SLOTS_URL", &fakes.slots.url)
        .env("BILLING_URL", &fakes.billing.url)
        .env("STEP_DEADLINE_MS", "10000")
        .env("RUST_LOG", "warn");
    command
}

/// Whether the mediator has created its consumer group on `stream`.
async fn group_exists(redis: &RedisPool, stream: &str) -> bool {
    let mut conn = redis.get().await.unwrap();
    let groups: redis::RedisResult<redis::streams::StreamInfoGroupsReply> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(&mut *conn)
        .await;
    groups.is_ok_and(|g| !g.groups.is_empty())
}

impl Process {
    fn start(
        database: &shop_common::config::DatabaseConfig,
        fakes: &Fakes,
        stream: &str,
        consumer: &str,
    ) -> Self {
        let child = mediator_command(database, fakes, stream, consumer)
            .stdout(Stdio::null())
            .spawn()
            .expect("starting the mediator binary");
        Self(child)
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.0.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the process did not exit"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn after_kill_9_mid_saga_the_restarted_process_recovers_its_pending_entry() {
    let (pool, database) = database().await;
    let fakes = Fakes::start().await;
    fakes.billing.always_put(Answer::Hang);
    let redis = redis_pool();
    let stream = unique("orders");
    let mut first = Process::start(&database, &fakes, &stream, "pod-0");
    let id = new_order(&pool).await;
    publish(&redis, &stream, id).await;
    eventually(WAIT, "the charge is in flight", || async {
        !fakes.billing.puts(id).is_empty()
    })
    .await;
    assert_eq!(pending(&redis, &stream).await, 1);
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5)).await;
    assert_eq!(
        status(&pool, id).await.0,
        Status::Pending,
        "no decision was stored"
    );
    assert_eq!(pending(&redis, &stream).await, 1, "never acknowledged");

    fakes.billing.always_put(Answer::Ok);
    let mut second = Process::start(&database, &fakes, &stream, "pod-0");
    eventually(WAIT, "the recovered order completed", || {
        is_final(&pool, id)
    })
    .await;
    assert_eq!(status(&pool, id).await.0, Status::Completed);
    assert_eq!(fakes.items.hold(id), Some(Hold::Held));
    assert_eq!(fakes.billing.hold(id), Some(Hold::Held));
    eventually(WAIT, "acknowledged", || async {
        pending(&redis, &stream).await == 0
    })
    .await;
    second.signal("TERM");
    assert!(second.wait_exit(Duration::from_secs(5)).await.success());
}

#[tokio::test]
async fn sigterm_exits_promptly_with_status_0() {
    let (_pool, database) = database().await;
    let fakes = Fakes::start().await;
    let redis = redis_pool();
    let stream = unique("orders");
    let mut process = Process::start(&database, &fakes, &stream, "pod-0");
    eventually(WAIT, "the consumer group exists", || {
        group_exists(&redis, &stream)
    })
    .await;
    let asked = std::time::Instant::now();
    process.signal("TERM");
    let status = process.wait_exit(Duration::from_secs(5)).await;
    assert!(status.success(), "{status}");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
}

/// Start-up refuses a secret too short to be safe, says which variable, and never prints the
/// secret itself — neither when refusing it nor in a normal run's debug log.
#[tokio::test]
async fn a_short_internal_token_is_refused_at_start_up_and_never_logged() {
    let (_pool, database) = database().await;
    let fakes = Fakes::start().await;
    let stream = unique("orders");
    let short = "tiny-token-42";
    let refused = mediator_command(&database, &fakes, &stream, "pod-0")
        .env("INTERNAL_TOKEN", short)
        .env("RUST_LOG", "debug")
        .output()
        .expect("running the mediator binary");
    assert!(!refused.status.success(), "started with a short token");
    let said = String::from_utf8_lossy(&refused.stderr).into_owned()
        + &String::from_utf8_lossy(&refused.stdout);
    assert!(
        said.contains("INTERNAL_TOKEN"),
        "does not name the variable: {said}"
    );
    assert!(!said.contains(short), "printed the secret: {said}");

    // A normal start at debug level, until it has joined the group, then SIGTERM. Its output is
    // read from the start (a full pipe would block its logging).
    let child = mediator_command(&database, &fakes, &stream, "pod-0")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the mediator binary");
    let pid = child.id().to_string();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output());
    let redis = redis_pool();
    eventually(WAIT, "the consumer group exists", || {
        group_exists(&redis, &stream)
    })
    .await;
    let termed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(termed.success());
    let output = tokio::time::timeout(WAIT, output)
        .await
        .expect("it exits on SIGTERM")
        .unwrap()
        .unwrap();
    let output = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(!output.is_empty(), "a debug log was written");
    assert!(
        !output.contains(testing::INTERNAL_TOKEN),
        "the internal token is in the log"
    );
}
