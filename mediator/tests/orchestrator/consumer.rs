//! The whole mediator, started through its real `run`, consuming a stream: entries run to a final
//! state and are acknowledged only then, duplicates, dead letters, taking over a dead consumer's
//! entries, heartbeats, graceful shutdown, trimming.

use crate::{
    WAIT, World, eventually, failed,
    fake_participant::{Answer, Hold},
    spawn_app,
};
use mediator::executor::UNPROCESSABLE_REASON;
use order_store::{
    db::{self, Status},
    stream::dead_letter,
};
use redis::streams::{StreamId, StreamPendingCountReply};
use std::time::Duration;
use uuid::Uuid;

#[tokio::test]
async fn stream_entries_are_run_to_completion_and_acknowledged() {
    let world = World::new().await;
    let mut ids = Vec::new();
    // Published before the mediator (and its group) exists: still consumed.
    for _ in 0..5 {
        let id = world.new_order().await;
        world.publish(id).await;
        ids.push(id);
    }
    let mediator = spawn_app(world.config("c1")).await;
    for _ in 0..15 {
        let id = world.new_order().await;
        world.publish(id).await;
        ids.push(id);
    }
    for &id in &ids {
        assert_eq!(world.wait_final(id).await, (Status::Completed, None));
    }
    world.wait_all_acknowledged().await;
    mediator.stop().await.unwrap();
}

#[tokio::test]
async fn duplicate_entries_give_one_saga_result() {
    let world = World::new().await;
    let id = world.new_order().await;
    for _ in 0..3 {
        world.publish(id).await;
    }
    let mediator = spawn_app(world.config("c1")).await;
    assert_eq!(world.wait_final(id).await.0, Status::Completed);
    world.wait_all_acknowledged().await;
    for fake in world.fakes.all() {
        assert_eq!(fake.hold(id), Some(Hold::Held), "held once: {}", fake.name);
        assert!(!fake.calls(id).contains(&"DELETE"));
    }
    assert_eq!(db::saga_log(&world.pool, id).await.unwrap().len(), 3);
    mediator.stop().await.unwrap();
}

/// A field of a dead letter.
fn field(letter: &StreamId, name: &str) -> String {
    letter
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {letter:?}"))
}

#[tokio::test]
async fn malformed_and_unknown_entries_are_dead_lettered_then_acknowledged() {
    let world = World::new().await;
    let unknown = Uuid::now_v7().to_string();
    let no_id = world.xadd(&[("something", "else")]).await;
    let bad_id = world.xadd(&[("order_id", "not-a-uuid")]).await;
    let unknown_id = world.xadd(&[("order_id", &unknown)]).await;
    let mediator = spawn_app(world.config("c1")).await;
    let dead = world.dead_letter_stream();
    eventually(WAIT, "three dead letters", async || {
        world.entries(&dead).await.ids.len() == 3
    })
    .await;
    world.wait_all_acknowledged().await;
    let letters = world.entries(&dead).await;
    let find = |stream_id: &str| {
        letters
            .ids
            .iter()
            .find(|e| field(e, dead_letter::STREAM_ID) == stream_id)
            .unwrap_or_else(|| panic!("no dead letter for {stream_id}"))
    };
    let e = find(&no_id);
    assert_eq!(field(e, dead_letter::ORDER_ID), "");
    assert!(field(e, dead_letter::REASON).contains("malformed"));
    assert_eq!(field(e, dead_letter::PAYLOAD), r#"{"something":"else"}"#);
    assert!(field(find(&bad_id), dead_letter::REASON).contains("malformed"));
    let e = find(&unknown_id);
    assert_eq!(field(e, dead_letter::ORDER_ID), unknown);
    assert_eq!(field(e, dead_letter::REASON), "unknown order");
    assert!(world.fakes.journal.lock().unwrap().is_empty());
    mediator.stop().await.unwrap();
}

#[tokio::test]
async fn a_dead_consumers_entries_are_taken_over() {
    let world = World::new().await;
    world.create_group().await;
    let id = world.new_order().await;
    world.publish(id).await;
    world.read_as_ghost().await;
    let mut config = world.config("live");
    config.stream.claim_min_idle = Duration::from_millis(300);
    let mediator = spawn_app(config).await;
    assert_eq!(world.wait_final(id).await.0, Status::Completed);
    world.wait_all_acknowledged().await;
    mediator.stop().await.unwrap();
}

/// The consumer and delivery count of the one pending entry of the stream.
async fn pending_owner(world: &World) -> Option<(String, usize)> {
    let mut conn = world.redis.connection();
    let reply: StreamPendingCountReply = redis::cmd("XPENDING")
        .arg(&world.stream)
        .arg(crate::GROUP)
        .arg("-")
        .arg("+")
        .arg(10)
        .query_async(&mut conn)
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
    let world = World::new().await;
    let items = &world.fakes.items;
    // The item's outcome is unknown (503 until the step deadline), and undoing it fails for now.
    items.always_put(Answer::Fail(503));
    items.always_delete(Answer::Fail(503));
    world.create_group().await;
    let claim_min_idle = Duration::from_millis(300);
    let mut mediators = Vec::new();
    for name in ["first", "second"] {
        let mut config = world.config(name);
        config.participants.step_deadline = Duration::from_millis(200);
        config.stream.concurrency = 1;
        config.stream.claim_min_idle = claim_min_idle;
        mediators.push(spawn_app(config).await);
    }
    let id = world.new_order().await;
    world.publish(id).await;
    eventually(WAIT, "the order is compensating", async || {
        world.status(id).await.0 == Status::Compensating
    })
    .await;
    let owner = pending_owner(&world).await.expect("a pending entry");
    assert_eq!(owner.1, 1, "{owner:?}");
    // Nothing may change while the compensation keeps failing: checked all through ten claim
    // periods (an absence has no event to wait for; every look must find it unchanged).
    let watch_until = tokio::time::Instant::now() + claim_min_idle * 10;
    while tokio::time::Instant::now() < watch_until {
        assert_eq!(world.status(id).await.0, Status::Compensating);
        assert_eq!(
            pending_owner(&world).await.as_ref(),
            Some(&owner),
            "the entry was taken over from a live consumer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    items.always_delete(Answer::Ok);
    assert_eq!(world.wait_final(id).await.0, Status::Failed);
    assert_eq!(items.hold(id), Some(Hold::Cancelled));
    world.wait_all_acknowledged().await;
    for mediator in mediators {
        mediator.stop().await.unwrap();
    }
}

#[tokio::test]
async fn an_entry_delivered_too_often_is_dead_lettered_and_its_order_failed_with_nothing_held() {
    let world = World::new().await;
    let items = &world.fakes.items;
    world.create_group().await;
    let id = world.new_order().await;
    // Earlier deliveries that died mid-saga, after reserving the item.
    items.force_hold(id);
    world.publish(id).await;
    world.read_as_ghost().await;
    let mut config = world.config("live");
    config.stream.claim_min_idle = Duration::from_millis(200);
    config.stream.max_deliveries = 1;
    let mediator = spawn_app(config).await;
    assert_eq!(world.wait_final(id).await, failed(UNPROCESSABLE_REASON));
    assert_eq!(items.hold(id), Some(Hold::Released));
    assert!(items.puts(id).is_empty(), "no forward step was run");
    world.wait_all_acknowledged().await;
    let letters = world.entries(&world.dead_letter_stream()).await;
    assert_eq!(letters.ids.len(), 1);
    assert_eq!(
        field(&letters.ids[0], dead_letter::ORDER_ID),
        id.to_string()
    );
    assert!(field(&letters.ids[0], dead_letter::REASON).contains("delivered 2 times"));
    mediator.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_finishes_the_sagas_in_flight_and_leaves_the_group() {
    let world = World::new().await;
    let billing = &world.fakes.billing;
    billing.script_puts([Answer::Gated]);
    let mut config = world.config("c1");
    config.participants.step_deadline = Duration::from_secs(5);
    let mediator = spawn_app(config).await;
    let id = world.new_order().await;
    world.publish(id).await;
    eventually(WAIT, "the charge is in flight", async || {
        !billing.puts(id).is_empty()
    })
    .await;
    assert_eq!(world.pending().await, 1, "not acknowledged before the end");
    assert_eq!(world.status(id).await.0, Status::Pending);
    let stopping = tokio::spawn(mediator.stop());
    // Stopping waits for the charge held at the gate.
    billing.open_gate();
    stopping.await.unwrap().unwrap();
    assert_eq!(world.status(id).await.0, Status::Completed);
    assert_eq!(world.pending().await, 0);
    let mut conn = world.redis.connection();
    let consumers: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&world.stream)
        .arg(crate::GROUP)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(consumers.consumers.is_empty(), "left the group");
}

#[tokio::test]
async fn acknowledged_entries_are_trimmed_from_the_stream() {
    let world = World::new().await;
    let mut config = world.config("c1");
    config.stream.claim_min_idle = Duration::from_millis(200);
    let mediator = spawn_app(config).await;
    let mut last = Uuid::nil();
    for _ in 0..300 {
        last = world.new_order().await;
        world.publish(last).await;
    }
    // 300 sagas on a debug build sharing two cores: a bound for a slow machine.
    let slow = Duration::from_secs(120);
    eventually(slow, "the last order final", async || {
        world.is_final(last).await
    })
    .await;
    eventually(slow, "all acknowledged", async || {
        world.pending().await == 0
    })
    .await;
    // Trimming is approximate (`MINID ~`): whole stream nodes go, so at most the newest node,
    // 100 entries at most (stream-node-max-entries), is left once every entry is acknowledged.
    eventually(slow, "the stream trimmed to its last node", async || {
        world.entries(&world.stream).await.ids.len() <= 100
    })
    .await;
    mediator.stop().await.unwrap();
}

/// A new order's entry carries its terms and the mediator runs on them; an announcement that is
/// stale by the time it is read (a duplicate of an order since completed and cancelled) takes
/// nothing for good: the fence refuses its actions and the order stays as recorded.
#[tokio::test]
async fn announced_orders_run_on_their_terms_and_a_stale_announcement_takes_nothing() {
    let world = World::new().await;
    let mediator = spawn_app(world.config("c1")).await;
    let id = world.new_order().await;
    let terms = world.terms(id).await;
    world.announce(&terms).await;
    assert_eq!(world.wait_final(id).await, (Status::Completed, None));
    for fake in world.fakes.all() {
        assert_eq!(fake.hold(id), Some(Hold::Held), "{}", fake.name);
    }

    let cancel = db::request_cancel(&world.pool, &terms.username, id)
        .await
        .unwrap();
    assert!(matches!(cancel, db::Cancel::Requested(_)), "{cancel:?}");
    world.publish(id).await;
    assert_eq!(world.wait_final(id).await.0, Status::Cancelled);
    world.wait_all_acknowledged().await;

    world.announce(&terms).await;
    world.wait_all_acknowledged().await;
    assert_eq!(world.status(id).await.0, Status::Cancelled);
    for fake in world.fakes.all() {
        assert_eq!(fake.hold(id), Some(Hold::Released), "{}", fake.name);
    }
    mediator.stop().await.unwrap();
}

/// An entry announcing an order that is not stored: what its run took is given back, and the
/// entry is dead-lettered.
#[tokio::test]
async fn an_announced_order_that_is_not_stored_holds_nothing() {
    let world = World::new().await;
    let mediator = spawn_app(world.config("c1")).await;
    let mut terms = world.terms(world.new_order().await).await;
    terms.id = Uuid::now_v7();
    world.announce(&terms).await;
    let dead = world.dead_letter_stream();
    eventually(WAIT, "a dead letter", async || {
        world.entries(&dead).await.ids.len() == 1
    })
    .await;
    world.wait_all_acknowledged().await;
    for fake in world.fakes.all() {
        assert_ne!(fake.hold(terms.id), Some(Hold::Held), "{}", fake.name);
    }
    let letters = world.entries(&dead).await;
    assert_eq!(field(&letters.ids[0], dead_letter::REASON), "unknown order");
    mediator.stop().await.unwrap();
}
