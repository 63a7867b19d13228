//! Getting every order onto the stream: published later when Redis was down at the POST,
//! re-published when unfinished long after publication, and at once when the stream's entries
//! may have been lost with Redis's data.

use crate::{App, REDIS_DOWN, eventually, good_order, spawn_app, spawn_app_with};
use order::outbox::{self, SweepAfter};
use order_store::db;
use reqwest::StatusCode;
use serde_json::Value as Json;
use shop_common::{config::SecretString, testing};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

async fn spawn_app_without_redis() -> App {
    spawn_app_with(
        testing::fresh_database().await,
        SecretString::from(REDIS_DOWN),
    )
    .await
}

#[tokio::test]
async fn with_redis_down_the_order_is_stored_and_the_sweep_publishes_it_later() {
    let app = spawn_app_without_redis().await;
    let res = app.post("alice", &good_order(), None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Json = res.json().await.unwrap();
    let id = Uuid::parse_str(body["id"].as_str().unwrap()).unwrap();

    // The POST tried to publish before answering (and failed): nothing to wait for.
    assert!(!app.is_published(id).await);

    let sweep = |older_than| outbox::sweep_once(&app.pool, &app.redis, &app.stream, older_than);
    assert_eq!(
        sweep(Duration::from_secs(60)).await.unwrap(),
        0,
        "not yet old enough for the sweep"
    );
    assert_eq!(sweep(Duration::ZERO).await.unwrap(), 1);
    assert_eq!(app.stream_order_ids().await, [id.to_string()]);
    assert!(app.is_published(id).await);
    assert_eq!(sweep(Duration::ZERO).await.unwrap(), 0, "published once");
}

#[tokio::test]
async fn the_sweeper_task_publishes_in_the_background() {
    let app = spawn_app_without_redis().await;
    let id = app.create_order("alice").await;
    let stop = CancellationToken::new();
    let sweeper = tokio::spawn(outbox::run_sweeper(
        app.pool.clone(),
        app.redis.clone(),
        app.stream.clone(),
        SweepAfter {
            unpublished: Duration::ZERO,
            stale: Duration::from_secs(300),
        },
        stop.clone(),
    ));
    app.wait_published(id).await;
    stop.cancel();
    sweeper.await.unwrap();
    assert_eq!(app.stream_order_ids().await, [id.to_string()]);
}

#[tokio::test]
async fn an_order_unfinished_long_after_publication_is_published_again() {
    let app = spawn_app().await;
    let id = app.create_order("alice").await;
    app.wait_published(id).await;
    let sweep =
        |older_than| outbox::sweep_stale_once(&app.pool, &app.redis, &app.stream, older_than);
    assert_eq!(
        sweep(Duration::from_secs(60)).await.unwrap(),
        0,
        "not stale yet"
    );
    // As if its stream entry had been lost with Redis's data.
    assert_eq!(sweep(Duration::ZERO).await.unwrap(), 1);
    assert_eq!(app.stream_order_ids().await.len(), 2);

    app.complete(id).await;
    assert_eq!(
        sweep(Duration::ZERO).await.unwrap(),
        0,
        "a final order is never published again"
    );
}

/// Issue #9: when the stream's entries may be lost — another Redis process than the one recorded
/// (restarted, possibly without the tail of its append-only file), or the stream deleted under a
/// running outbox — the running API's sweeper publishes every unfinished order again at once, not
/// after REPUBLISH_STALE_AFTER_SECS, and never a finished one.
#[tokio::test]
async fn when_stream_entries_may_be_lost_unfinished_orders_are_published_again_at_once() {
    // (the Redis run recorded before the loss, if another one than this Redis's)
    for recorded_before in [Some("a-redis-before-its-restart"), None] {
        let app = spawn_app().await;
        let (unfinished, finished) = (
            app.create_order("alice").await,
            app.create_order("alice").await,
        );
        for id in [unfinished, finished] {
            app.wait_published(id).await;
        }
        app.complete(finished).await;
        if let Some(run) = recorded_before {
            db::record_redis_run(&app.pool, run).await.unwrap();
        }
        let _: i64 = redis::cmd("DEL")
            .arg(&app.stream)
            .query_async(&mut app.redis.connection())
            .await
            .unwrap();
        // The sweep publishes again, then records this Redis's run: wait for both.
        eventually(
            Duration::from_secs(10),
            "the unfinished order published again and this Redis's run recorded",
            async || {
                let recorded = db::recorded_redis_run(&app.pool).await.unwrap();
                let republished = app
                    .stream_order_ids()
                    .await
                    .contains(&unfinished.to_string());
                republished && recorded.is_some() && recorded.as_deref() != recorded_before
            },
        )
        .await;
        assert_eq!(
            app.stream_order_ids().await,
            [unfinished.to_string()],
            "{recorded_before:?}: once, and never the finished order"
        );
    }
}
