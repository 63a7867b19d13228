//! The batcher's own behaviour (`mediator::batcher`), against a participant that answers batches
//! and holds them until the test lets them go: actions that wait while every send is busy leave
//! together, at most `max` to a request, each answered with its own order's record; a batch that
//! fails fails each of its actions, and each succeeds when tried again.
//!
//! The real participants' batch route is checked by their contract tests
//! (`a_batch_answers_each_order_as_its_own_action`); here the participant only echoes.

use axum::{Json, Router, extract::State, http::StatusCode, routing::put};
use futures::{StreamExt, stream::FuturesOrdered};
use mediator::{
    batcher::{Batcher, IN_FLIGHT},
    participants::Failure,
};
use shop_common::{
    client::InternalClient,
    config::SecretString,
    ledger::{BatchedHold, HoldRecord, HoldState},
    testing,
};
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::Duration,
};
use tokio::{net::TcpListener, sync::Semaphore};
use uuid::Uuid;

/// A participant whose batch route records each request's size, waits for a permit of `gate`,
/// then holds every order (or, with `failing`, answers 503).
struct EchoParticipant {
    batch_sizes: Mutex<Vec<usize>>,
    gate: Semaphore,
    failing: AtomicBool,
}

impl EchoParticipant {
    /// Closed: every request waits for [`Self::open`].
    fn new() -> Self {
        Self {
            batch_sizes: Mutex::default(),
            gate: Semaphore::new(0),
            failing: AtomicBool::new(false),
        }
    }

    fn sizes(&self) -> Vec<usize> {
        self.batch_sizes.lock().unwrap().clone()
    }

    /// Lets every request, waiting or to come, through.
    fn open(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

async fn answer(
    State(participant): State<Arc<EchoParticipant>>,
    Json(batch): Json<Vec<BatchedHold>>,
) -> Result<Json<Vec<HoldRecord>>, StatusCode> {
    participant.batch_sizes.lock().unwrap().push(batch.len());
    let _permit = participant.gate.acquire().await.unwrap();
    if participant.failing.load(Relaxed) {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    Ok(Json(
        batch
            .into_iter()
            .map(|hold| HoldRecord {
                order_id: hold.order_id,
                state: HoldState::Held,
                resource: Some(hold.resource),
                quantity: hold.quantity,
                error_code: None,
            })
            .collect(),
    ))
}

/// The participant, serving, and a batcher of at most `max` actions sending to it.
async fn batcher_to_echo(max: usize) -> (Arc<EchoParticipant>, Batcher) {
    let participant = Arc::new(EchoParticipant::new());
    let app = Router::new()
        .route("/internal/reservations", put(answer))
        .with_state(participant.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = InternalClient::new(
        &base,
        SecretString::from(testing::INTERNAL_TOKEN.to_owned()),
        Duration::from_secs(10),
    )
    .unwrap();
    (participant, Batcher::start(client, "reservations", max))
}

fn hold(n: i64) -> BatchedHold {
    BatchedHold {
        order_id: Uuid::now_v7(),
        resource: format!("item-{n}"),
        quantity: n,
    }
}

/// Waits (bounded) until the participant has received `n` requests.
async fn until_received(participant: &EchoParticipant, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while participant.sizes().len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} requests expected, got {:?}",
            participant.sizes()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn actions_waiting_for_a_send_leave_together_each_answered_with_its_own_record() {
    let (participant, batcher) = batcher_to_echo(4).await;
    // Every send busy: one action each, held by the participant.
    let mut busy = FuturesOrdered::new();
    for n in 0..IN_FLIGHT {
        busy.push_back(batcher.act(hold(n as i64)));
        // Polled once, so that it is queued and sent before the next one is queued.
        assert!(futures::poll!(busy.next()).is_pending());
        until_received(&participant, n + 1).await;
    }
    // Ten more, all queued (one poll each) while no send is free.
    let waiting_holds: Vec<BatchedHold> = (10..20).map(hold).collect();
    let mut waiting: FuturesOrdered<_> = waiting_holds
        .iter()
        .map(|h| batcher.act(h.clone()))
        .collect();
    assert!(futures::poll!(waiting.next()).is_pending());
    assert_eq!(participant.sizes(), vec![1; IN_FLIGHT]);

    participant.open();
    while let Some(answered) = busy.next().await {
        assert!(answered.is_ok(), "{answered:?}");
    }
    let mut answers = Vec::new();
    while let Some(answered) = waiting.next().await {
        answers.push(answered.expect("held"));
    }
    // The ten left in batches of at most `max`, as they waited: 4, 4, 2.
    assert_eq!(participant.sizes()[IN_FLIGHT..], [4, 4, 2]);
    for (asked, record) in waiting_holds.iter().zip(&answers) {
        assert_eq!(record.order_id, asked.order_id, "another order's record");
        assert_eq!(record.resource.as_deref(), Some(asked.resource.as_str()));
        assert_eq!(record.quantity, asked.quantity);
    }
}

#[tokio::test]
async fn a_failed_batch_fails_each_of_its_actions_and_each_succeeds_when_tried_again() {
    let (participant, batcher) = batcher_to_echo(32).await;
    participant.failing.store(true, Relaxed);
    participant.open();
    let holds: Vec<BatchedHold> = (0..6).map(hold).collect();
    let answers: Vec<_> = holds
        .iter()
        .map(|h| batcher.act(h.clone()))
        .collect::<FuturesOrdered<_>>()
        .collect()
        .await;
    for answered in &answers {
        assert!(
            matches!(answered, Err(Failure::Transient(_))),
            "a 503 is transient, for each action of the batch: {answered:?}"
        );
    }
    participant.failing.store(false, Relaxed);
    for asked in &holds {
        let record = batcher
            .act(asked.clone())
            .await
            .expect("held when tried again");
        assert_eq!(record.order_id, asked.order_id);
    }
}
