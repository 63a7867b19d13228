//! Group commit for the forward steps: the actions many sagas ask of one participant at once go as
//! ONE `PUT /internal/<route>` with all of them, which the participant applies in one transaction
//! (`shop_common::ledger`): one request and one commit for a batch instead of one per saga.
//!
//! A batch is whatever is waiting when one of [`IN_FLIGHT`] sends is free, up to the configured
//! size (`shop_common::batched`). Each order's hold is still recorded and idempotent on
//! its own, and each saga keeps its own retries and deadline (`crate::participants`): a batch that
//! fails or times out fails every action in it, each then retried by its saga (in a later batch),
//! and a reply lost after the participant committed is found again by that retry, as one order's
//! is.

use crate::participants::Failure;
use shop_common::{
    batched::{BatchError, Batched, Limits},
    client::InternalClient,
    ledger::{BatchedHold, HoldRecord},
};

/// Batches on their way to one participant at once.
pub const IN_FLIGHT: usize = 2;

/// The batches of one participant's actions.
pub struct Batcher {
    group: Batched<BatchedHold, HoldRecord, Failure>,
}

impl Batcher {
    /// Starts the task sending `route`'s batches of at most `max` actions through `client`.
    pub fn start(client: InternalClient, route: &'static str, max: usize) -> Self {
        let path = format!("/internal/{route}");
        let limits = Limits {
            in_flight: IN_FLIGHT,
            max,
        };
        let group = Batched::start(limits, move |holds| {
            send(client.clone(), path.clone(), holds)
        });
        Self { group }
    }

    /// One attempt of `hold`, in the next batch: its record, as the single action would answer.
    pub async fn act(&self, hold: BatchedHold) -> Result<HoldRecord, Failure> {
        self.group.submit(hold).await
    }
}

impl From<BatchError> for Failure {
    fn from(e: BatchError) -> Self {
        match e {
            BatchError::Stopped => Failure::Transient("batcher_stopped".to_owned()),
            BatchError::Mismatch { .. } => Failure::Permanent("batch_reply_mismatch".to_owned()),
        }
    }
}

/// One request with every action of `holds`: their records, in order.
async fn send(
    client: InternalClient,
    path: String,
    holds: Vec<BatchedHold>,
) -> Result<Vec<HoldRecord>, Failure> {
    metrics::histogram!("participant_batch_size").record(holds.len() as f64);
    // The request id of a batch is its first order's: the participant's logs lead to it.
    let request_id = holds[0].order_id.to_string();
    let response = client
        .request(reqwest::Method::PUT, &path, &request_id)
        .json(&holds)
        .send()
        .await
        .map_err(|e| Failure::transport(&e))?;
    if !response.status().is_success() {
        return Err(Failure::of_status(response.status()));
    }
    response.json().await.map_err(|e| Failure::transport(&e))
}
