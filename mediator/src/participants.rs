//! Calling the participants over HTTP (the ledger contract: `PUT` = action, `DELETE` =
//! compensation, on `/internal/<route>/{order_id}`, request id = order id; under load the actions
//! go in batches, `crate::batcher`) and the retry policy.
//!
//! - An action answered 200 is held, 409 is a business refusal. Connection errors, timeouts, 5xx,
//!   408 and 429 are transient: retried with exponential backoff and jitter until the step's
//!   deadline, after which the outcome is unknown. Any other answer (a 4xx: a contract or
//!   configuration error) cannot get better by retrying and is unknown at once.
//! - A compensation is retried until it succeeds, however long that takes (capped delay): an
//!   aborted saga may only end once nothing is held.
//! - On shutdown no new attempt starts: the saga is abandoned without a decision, and its stream
//!   entry, never acknowledged, is recovered later.

use crate::{
    batcher::Batcher,
    config::ParticipantsConfig,
    saga::{Participant, STEPS, Step},
};
use anyhow::{Context, Result};
use backon::{ExponentialBuilder, Retryable};
use order_store::stream::Terms;
use reqwest::{Method, StatusCode};
use shop_common::{
    client::InternalClient,
    config::InternalTokenConfig,
    error::ErrorBody,
    ledger::{Answer, BatchedHold, HOLD_MISMATCH, HoldRequest},
};
use std::{sync::Mutex, time::Duration};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionOutcome {
    Held,
    /// The participant's rejection code.
    Rejected(String),
    /// Why the outcome is not known (the last error seen).
    Unknown(String),
    /// Shutdown stopped the retries.
    Abandoned,
}

/// Shutdown stopped a compensation's retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abandoned;

/// Why one attempt got no answer: retried (transient) or not.
#[derive(Debug, Clone)]
pub enum Failure {
    Transient(String),
    Permanent(String),
}

impl Failure {
    fn code(&self) -> &str {
        match self {
            Failure::Transient(c) | Failure::Permanent(c) => c,
        }
    }

    /// No HTTP answer.
    pub fn transport(e: &reqwest::Error) -> Self {
        Failure::Transient(transport_code(e))
    }

    /// An answer with an unexpected status.
    pub fn of_status(status: StatusCode) -> Self {
        classify(status)
    }
}

/// How the mediator reaches one participant: its client, and the batches of its forward actions
/// (none when PARTICIPANT_BATCH is 1: then each action is its own request).
struct Link {
    client: InternalClient,
    batcher: Option<Batcher>,
}

pub struct Participants {
    items: Link,
    slots: Link,
    billing: Link,
    step_deadline: Duration,
    broken_compensation: Option<Participant>,
    shutdown: CancellationToken,
}

/// Backoff of a forward step: quick first retries, bounded by the step deadline anyway.
const ACTION_BACKOFF: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(20))
    .with_max_delay(Duration::from_secs(1))
    .with_jitter()
    .without_max_times();

/// Backoff of a compensation: forever, at most one attempt every few seconds.
const COMPENSATION_BACKOFF: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(50))
    .with_max_delay(Duration::from_secs(5))
    .with_jitter()
    .without_max_times();

impl Participants {
    pub fn new(
        config: &ParticipantsConfig,
        token: &InternalTokenConfig,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        // A hung participant must leave time for retries within the step deadline.
        let attempt_timeout =
            (config.step_deadline / 3).clamp(Duration::from_millis(50), Duration::from_secs(5));
        let link = |participant: Participant, url: &str| -> Result<Link> {
            let client = InternalClient::new(url, token.secret.clone(), attempt_timeout)?;
            let route = STEPS
                .iter()
                .find(|s| s.participant == participant)
                .map(|s| s.route)
                .with_context(|| format!("{} has no saga step", participant.name()))?;
            let batcher =
                (config.batch > 1).then(|| Batcher::start(client.clone(), route, config.batch));
            Ok(Link { client, batcher })
        };
        Ok(Self {
            items: link(Participant::Items, &config.items_url)?,
            slots: link(Participant::Slots, &config.slots_url)?,
            billing: link(Participant::Billing, &config.billing_url)?,
            step_deadline: config.step_deadline,
            broken_compensation: config.broken_compensation,
            shutdown,
        })
    }

    fn link(&self, participant: Participant) -> &Link {
        match participant {
            Participant::Items => &self.items,
            Participant::Slots => &self.slots,
            Participant::Billing => &self.billing,
        }
    }

    /// The step's action for `order`, retried until it has an answer or the deadline passes.
    pub async fn act(&self, step: &Step, order: &Terms) -> ActionOutcome {
        let Link { client, batcher } = self.link(step.participant);
        let path = format!("/internal/{}/{}", step.route, order.id);
        let request_id = order.id.to_string();
        let body = HoldRequest {
            resource: (step.resource)(order),
            quantity: (step.quantity)(order),
        };
        let last_error = Mutex::new(String::new());
        let attempt = || async {
            if let Some(batcher) = batcher {
                let hold = BatchedHold {
                    order_id: order.id,
                    resource: body.resource.clone(),
                    quantity: body.quantity,
                };
                let record = batcher.act(hold).await?;
                // As the single action's 200, 409 and 422 (a contract error) are read below.
                return match record.answer(&body.resource, body.quantity) {
                    Answer::Held => Ok(ActionOutcome::Held),
                    Answer::Rejected(code) => Ok(ActionOutcome::Rejected(code.to_owned())),
                    Answer::Mismatch => Err(Failure::Permanent(HOLD_MISMATCH.to_owned())),
                };
            }
            let response = client
                .request(Method::PUT, &path, &request_id)
                .json(&body)
                .send()
                .await
                .map_err(|e| Failure::Transient(transport_code(&e)))?;
            let status = response.status();
            if status.is_success() {
                Ok(ActionOutcome::Held)
            } else if status == StatusCode::CONFLICT {
                let code = match response.json::<ErrorBody>().await {
                    Ok(body) => body.error.into_owned(),
                    Err(_) => "rejected".to_owned(),
                };
                Ok(ActionOutcome::Rejected(code))
            } else {
                Err(classify(status))
            }
        };
        let retried = attempt
            .retry(ACTION_BACKOFF)
            .sleep(tokio::time::sleep)
            .when(|f| matches!(f, Failure::Transient(_)) && !self.shutdown.is_cancelled())
            .notify(|f, _| {
                note_retry(step, "action", f);
                if let Ok(mut last) = last_error.lock() {
                    f.code().clone_into(&mut last);
                }
            });
        match tokio::time::timeout(self.step_deadline, retried).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(Failure::Transient(_))) if self.shutdown.is_cancelled() => {
                ActionOutcome::Abandoned
            }
            Ok(Err(failure)) => ActionOutcome::Unknown(failure.code().to_owned()),
            Err(_) => {
                let last = last_error.lock().map(|l| l.clone()).unwrap_or_default();
                ActionOutcome::Unknown(if last.is_empty() {
                    "deadline_exceeded".to_owned()
                } else {
                    format!("deadline_exceeded: {last}")
                })
            }
        }
    }

    /// The step's compensation for `order_id`, retried until the participant confirms it.
    pub async fn compensate(&self, step: &Step, order_id: Uuid) -> Result<(), Abandoned> {
        if self.broken_compensation == Some(step.participant) {
            tracing::error!(%order_id, participant = step.participant.name(),
                "MEDIATOR_BROKEN_COMPENSATION: compensation NOT sent, recorded as done");
            return Ok(());
        }
        let client = &self.link(step.participant).client;
        let path = format!("/internal/{}/{}", step.route, order_id);
        let request_id = order_id.to_string();
        let attempt = || async {
            let response = client
                .request(Method::DELETE, &path, &request_id)
                .send()
                .await
                .map_err(|e| Failure::Transient(transport_code(&e)))?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(classify(response.status()))
            }
        };
        attempt
            .retry(COMPENSATION_BACKOFF)
            .sleep(tokio::time::sleep)
            .when(|_| !self.shutdown.is_cancelled())
            .notify(|f, after| {
                note_retry(step, "compensation", f);
                tracing::warn!(
                    %order_id, participant = step.participant.name(),
                    "compensation failed ({}), retrying in {after:?}", f.code()
                );
            })
            .await
            .map_err(|_| Abandoned)
    }
}

fn classify(status: StatusCode) -> Failure {
    let code = format!("http_{}", status.as_u16());
    let transient = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS;
    if transient {
        Failure::Transient(code)
    } else {
        Failure::Permanent(code)
    }
}

fn transport_code(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".to_owned()
    } else if e.is_connect() {
        "connect_error".to_owned()
    } else {
        "transport_error".to_owned()
    }
}

fn note_retry(step: &Step, kind: &'static str, failure: &Failure) {
    metrics::counter!(
        "saga_step_retries_total",
        "participant" => step.participant.name(),
        "kind" => kind,
    )
    .increment(1);
    tracing::debug!(
        participant = step.participant.name(),
        kind,
        "retrying after {}",
        failure.code()
    );
}
