//! Group commit for the forward steps: the actions many sagas ask of one participant at once go as
//! ONE `PUT /internal/<route>` with all of them, which the participant applies in one transaction
//! (`shop_common::ledger`): one request and one commit for a batch instead of one per saga.
//!
//! A batch is whatever is waiting when one of [`IN_FLIGHT`] sends is free, up to the configured
//! size: a lone saga goes at once, alone, and under load the batches grow while the previous ones
//! are in flight — no timer, no added wait. Each order's hold is still recorded and idempotent on
//! its own, and each saga keeps its own retries and deadline (`crate::participants`): a batch that
//! fails or times out fails every action in it, each then retried by its saga (in a later batch),
//! and a reply lost after the participant committed is found again by that retry, as one order's
//! is.

use crate::participants::Failure;
use shop_common::{
    client::InternalClient,
    ledger::{BatchedHold, HoldRecord},
};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// Batches on their way to one participant at once.
pub const IN_FLIGHT: usize = 4;

/// Actions waiting for a free send.
const QUEUE: usize = 4096;

type Reply = oneshot::Sender<Result<HoldRecord, Failure>>;

/// The batches of one participant's actions.
pub struct Batcher {
    queue: mpsc::Sender<(BatchedHold, Reply)>,
}

impl Batcher {
    /// Starts the task sending `route`'s batches of at most `max` actions through `client`.
    pub fn start(client: InternalClient, route: &'static str, max: usize) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE);
        tokio::spawn(gather(waiting, client, format!("/internal/{route}"), max));
        Self { queue }
    }

    /// One attempt of `hold`, in the next batch: its record, as the single action would answer.
    pub async fn act(&self, hold: BatchedHold) -> Result<HoldRecord, Failure> {
        let (reply, answer) = oneshot::channel();
        let gone = || Failure::Transient("batcher_stopped".to_owned());
        self.queue.send((hold, reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn gather(
    mut waiting: mpsc::Receiver<(BatchedHold, Reply)>,
    client: InternalClient,
    path: String,
    max: usize,
) {
    let sends = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // A free send first: meanwhile, what arrives waits and joins the next batch.
        let Ok(permit) = sends.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = waiting.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < max
            && let Ok(next) = waiting.try_recv()
        {
            batch.push(next);
        }
        tokio::spawn(send(client.clone(), path.clone(), batch, permit));
    }
}

async fn send(
    client: InternalClient,
    path: String,
    batch: Vec<(BatchedHold, Reply)>,
    _permit: OwnedSemaphorePermit,
) {
    let (holds, replies): (Vec<BatchedHold>, Vec<Reply>) = batch.into_iter().unzip();
    metrics::histogram!("participant_batch_size").record(holds.len() as f64);
    // The request id of a batch is its first order's: the participant's logs lead to it.
    let request_id = holds[0].order_id.to_string();
    let answered = async {
        let response = client
            .request(reqwest::Method::PUT, &path, &request_id)
            .json(&holds)
            .send()
            .await
            .map_err(|e| Failure::transport(&e))?;
        if !response.status().is_success() {
            return Err(Failure::of_status(response.status()));
        }
        let records: Vec<HoldRecord> = response.json().await.map_err(|e| Failure::transport(&e))?;
        if records.len() != holds.len() {
            return Err(Failure::Permanent("batch_reply_mismatch".to_owned()));
        }
        Ok(records)
    };
    match answered.await {
        Ok(records) => {
            for (reply, record) in replies.into_iter().zip(records) {
                let _ = reply.send(Ok(record));
            }
        }
        Err(failure) => {
            for reply in replies {
                let _ = reply.send(Err(failure.clone()));
            }
        }
    }
}
