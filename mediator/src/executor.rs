//! Running one order's saga: load the order, follow what is recorded, perform what the state
//! machine ([`crate::saga`]) asks, and store the outcome with guarded transitions.
//!
//! Database work per saga: one statement that moves the status AND appends the saga log (so a
//! successful saga is 1 round trip and 1 commit, shared with the transitions of the sagas that
//! finish at the same time: [`Transitions`]), after one SELECT unless the stream entry carried
//! the order's terms (its first delivery, [`Executor::run_new`]). An abort adds exactly one
//! statement: the decision (`pending -> compensating`, with the log so far) is committed BEFORE
//! any compensation, and `compensating -> failed` (with the compensations) after the last one. An
//! order whose first step is refused goes `pending -> failed` at once: nothing is held.
//!
//! The customer's cancel (order_store::db::request_cancel) is an abort decision recorded by the
//! order API: `pending|completed -> cancelling`, and the order on the stream again. A run that
//! finds `cancelling` compensates every step and records `cancelling -> cancelled`; a forward run
//! still going meets the fence (its next action is refused once that step is compensated) or
//! loses its final guard, and follows the recorded status like after any lost race.
//!
//! Crash anywhere and the stream entry, never acknowledged, is run again from what is recorded:
//! - still `pending`: the forward steps run again; participants answer a repeated action with
//!   the recorded outcome, so nothing is taken twice and the same decision is reached;
//! - `compensating` or `cancelling`: every compensation runs again (no-ops for what is already
//!   undone), never a forward step;
//! - final: nothing to do but acknowledge (for `failed` and `cancelled`, see [`Executor::run`]).
//!
//! Two runs of the same order at once (a duplicate entry, an entry taken over from a consumer
//! that was merely slow) are safe: only one wins each guarded transition; a run that loses one
//! re-reads and follows the winner, and if the winner aborted, undoes everything (its own
//! actions may have gone further than the winner's).

use crate::{
    participants::{ActionOutcome, Participants},
    saga::{Event, STEPS, State},
};
use anyhow::{Result, bail};
use backon::{ExponentialBuilder, Retryable};
use order_store::{
    db::{self, NewStep, Order, Status, StepKind, StepOutcome, Transition},
    stream::Terms,
};
use shop_common::batched::{BatchFailed, Batched, Limits};
use sqlx::PgPool;
use std::{
    future::Future,
    time::{Duration, Instant},
};
use time::OffsetDateTime;
use uuid::Uuid;

/// The reason of an order whose stream entry could not be processed.
pub const UNPROCESSABLE_REASON: &str = "Saga could not be processed";

/// About 5 s of retries of a database statement.
const DB_BACKOFF: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(50))
    .with_max_delay(Duration::from_secs(1))
    .with_jitter()
    .with_max_times(8);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// The entry is being dead-lettered: undo everything and fail the order.
    DeadLetter,
}

/// What became of a run: whether its stream entry may be acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The order's final state is stored: acknowledge.
    Final(Status),
    /// No such order: dead-letter the entry.
    UnknownOrder,
    /// Shutdown interrupted the run before a final state: leave the entry pending.
    Abandoned,
}

/// The guarded transitions of many sagas, stored together (`shop_common::batched`): one
/// statement and one commit for whatever transitions wait while [`TRANSITIONS`]' statements run.
type Transitions = Batched<Transition, bool, BatchFailed>;

/// How the sagas' transitions are grouped: statements at once, and the most in one.
const TRANSITIONS: Limits = Limits {
    in_flight: 1,
    max: 64,
};

pub struct Executor {
    pool: PgPool,
    participants: Participants,
    transitions: Transitions,
}

impl Executor {
    pub fn new(pool: PgPool, participants: Participants) -> Self {
        let store = pool.clone();
        let transitions = Batched::start(TRANSITIONS, move |all: Vec<Transition>| {
            let pool = store.clone();
            async move { Ok(db::transitions(&pool, &all).await?) }
        });
        Self {
            pool,
            participants,
            transitions,
        }
    }

    /// The guarded transition `moving` (from, to) of `order_id` with `log` (retried as
    /// [`Self::retrying`] says), stored with the concurrent sagas' transitions: whether it moved.
    async fn transition(
        &self,
        order_id: Uuid,
        moving: (Status, Status),
        reason: Option<&str>,
        log: &[NewStep],
    ) -> Result<bool> {
        let transition = Transition::new(order_id, moving, reason, log);
        self.retrying(|| async { Ok(self.transitions.submit(transition.clone()).await?) })
            .await
    }

    /// Database statements are retried for a few seconds before the run gives up (and its entry
    /// waits for CLAIM_MIN_IDLE_MS). Repeating one whose reply was lost is safe: a repeated guarded
    /// transition finds its guard lost and the run follows what is recorded — its own write.
    async fn retrying<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        call.retry(DB_BACKOFF)
            .sleep(tokio::time::sleep)
            .notify(|e, after| tracing::warn!("database call failed, retrying in {after:?}: {e:#}"))
            .await
    }

    async fn load(&self, order_id: Uuid) -> Result<Option<Order>> {
        self.retrying(|| db::find_order(&self.pool, order_id)).await
    }

    /// Drives `order_id` to a final state (or as far as it can until shutdown), from what is
    /// recorded.
    pub async fn run(&self, order_id: Uuid, mode: Mode) -> Result<Disposition> {
        let Some(order) = self.load(order_id).await? else {
            return Ok(Disposition::UnknownOrder);
        };
        match (order.status, mode) {
            (Status::Pending, Mode::DeadLetter) => self.abort_unprocessable(&order).await,
            (Status::Pending, Mode::Normal) => self.forward(&order.terms()).await,
            _ => self.follow(&order).await,
        }
    }

    /// Drives a new order, announced with its terms, to a final state without reading it: it
    /// was `pending` when announced. If it has moved on since (a cancel, another run), the
    /// forward steps meet the fence or the final transition's guard, and the run follows what is
    /// recorded — the same race as a cancel arriving just after [`Self::run`]'s read.
    pub async fn run_new(&self, order: &Terms) -> Result<Disposition> {
        self.forward(order).await
    }

    /// Does what the recorded status of an order that is not (or no longer) pending asks.
    async fn follow(&self, order: &Order) -> Result<Disposition> {
        match order.status {
            Status::Completed => Ok(Disposition::Final(Status::Completed)),
            // A duplicate of a failed or cancelled order. Another run of it may have crashed
            // after taking a step beyond what the winner undid, and this entry is the only trace
            // of that run: undo everything again (no-ops, in the usual case) before acknowledging.
            Status::Failed | Status::Cancelled => self.undo_all_of_final(order).await,
            Status::Compensating | Status::Cancelling => {
                let reason = recorded_reason(order);
                self.compensate_then_finish(order.id, order.status, State::compensating_all(reason))
                    .await
            }
            Status::Pending => bail!(
                "order {} is pending although a guarded move failed",
                order.id
            ),
        }
    }

    async fn forward(&self, order: &Terms) -> Result<Disposition> {
        metrics::counter!("sagas_started_total").increment(1);
        let started = Instant::now();
        let mut state = State::Pending.apply(Event::Start)?;
        let mut log = Vec::with_capacity(STEPS.len());
        while let State::Running(i) = state {
            let step = &STEPS[i];
            let (at, clock) = (OffsetDateTime::now_utc(), Instant::now());
            let (event, outcome, code) = match self.participants.act(step, order).await {
                ActionOutcome::Held => (Event::StepSucceeded, StepOutcome::Ok, None),
                ActionOutcome::Rejected(code) => (
                    Event::StepRejected(code.clone()),
                    StepOutcome::Rejected,
                    Some(code),
                ),
                ActionOutcome::Unknown(code) => {
                    (Event::StepUnknown, StepOutcome::Unknown, Some(code))
                }
                ActionOutcome::Abandoned => return Ok(Disposition::Abandoned),
            };
            log.push(logged(
                step.participant.name(),
                StepKind::Action,
                outcome,
                code,
                at,
                clock,
            ));
            state = state.apply(event)?;
        }
        let (to, reason) = match &state {
            State::Completed => (Status::Completed, None),
            State::Failed(reason) => (Status::Failed, Some(reason.as_ref())),
            State::Compensating { reason, .. } => (Status::Compensating, Some(reason.as_ref())),
            other => bail!("the saga of order {} stopped in {other:?}", order.id),
        };
        let moved = self
            .transition(order.id, (Status::Pending, to), reason, &log)
            .await?;
        let disposition = match to {
            _ if !moved => self.follow_recorded(order.id).await?,
            Status::Compensating => {
                self.compensate_then_finish(order.id, Status::Compensating, state.clone())
                    .await?
            }
            Status::Failed => {
                count_final(Status::Failed, reason.unwrap_or_default());
                Disposition::Final(Status::Failed)
            }
            _ => {
                metrics::counter!("sagas_completed_total").increment(1);
                Disposition::Final(Status::Completed)
            }
        };
        if let Disposition::Final(status) = disposition {
            metrics::histogram!("saga_duration_seconds", "status" => status.as_str())
                .record(started.elapsed().as_secs_f64());
        }
        Ok(disposition)
    }

    /// Runs the compensations `state` asks for, then records the end of the undoing the order is
    /// in (`from`): `compensating -> failed`, or, for the customer's cancel, `cancelling ->
    /// cancelled`.
    async fn compensate_then_finish(
        &self,
        order_id: Uuid,
        from: Status,
        mut state: State,
    ) -> Result<Disposition> {
        let log = match self.compensate(order_id, &mut state).await {
            Some(log) => log,
            None => return Ok(Disposition::Abandoned),
        };
        let State::Failed(reason) = &state else {
            bail!("compensations of order {order_id} ended in {state:?}");
        };
        let to = match from {
            Status::Cancelling => Status::Cancelled,
            Status::Compensating => Status::Failed,
            other => bail!("order {order_id} is undone from {other:?}, not from an abort"),
        };
        // The reason recorded with the abort decision (or the cancel) stays.
        if self.transition(order_id, (from, to), None, &log).await? {
            count_final(to, reason);
            return Ok(Disposition::Final(to));
        }
        // Another run of this order finished the compensations first.
        match self.load(order_id).await? {
            Some(o) if o.status == to => Ok(Disposition::Final(to)),
            other => bail!(
                "order {order_id} left {from:?} to {:?}",
                other.map(|o| o.status)
            ),
        }
    }

    /// Performs every compensation `state` asks for; `None` if shutdown interrupted them.
    async fn compensate(&self, order_id: Uuid, state: &mut State) -> Option<Vec<NewStep>> {
        let mut log = Vec::new();
        while let Some(i) = state.next_compensation() {
            let step = &STEPS[i];
            let (at, clock) = (OffsetDateTime::now_utc(), Instant::now());
            self.participants.compensate(step, order_id).await.ok()?;
            log.push(logged(
                step.participant.name(),
                StepKind::Compensation,
                StepOutcome::Ok,
                None,
                at,
                clock,
            ));
            // Only fails on a machine bug; `next_compensation` said there is one to do.
            let next = std::mem::replace(state, State::Pending).apply(Event::CompensationDone);
            match next {
                Ok(next) => *state = next,
                Err(e) => {
                    tracing::error!(%order_id, "{e}");
                    return None;
                }
            }
        }
        Some(log)
    }

    /// This run lost a guarded transition: do what the recorded status says.
    async fn follow_recorded(&self, order_id: Uuid) -> Result<Disposition> {
        let Some(order) = self.load(order_id).await? else {
            // Only a run on announced terms ([`Self::run_new`]) gets here without having read the
            // order: whatever it took for an order that does not exist is given back.
            let mut undo = State::compensating_all(UNPROCESSABLE_REASON);
            return Ok(match self.compensate(order_id, &mut undo).await {
                Some(_) => Disposition::UnknownOrder,
                None => Disposition::Abandoned,
            });
        };
        // Our actions may have gone past what the winner undid: `follow` undoes them.
        self.follow(&order).await
    }

    /// Compensates every step of an already failed or cancelled order (no status change).
    async fn undo_all_of_final(&self, order: &Order) -> Result<Disposition> {
        let mut state = State::compensating_all(recorded_reason(order));
        let Some(log) = self.compensate(order.id, &mut state).await else {
            return Ok(Disposition::Abandoned);
        };
        self.retrying(|| db::append_steps(&self.pool, order.id, &log))
            .await?;
        Ok(Disposition::Final(order.status))
    }

    /// A pending order whose entry is dead-lettered: abort it, undo everything, fail it.
    async fn abort_unprocessable(&self, order: &Order) -> Result<Disposition> {
        let decided = self
            .transition(
                order.id,
                (Status::Pending, Status::Compensating),
                Some(UNPROCESSABLE_REASON),
                &[],
            )
            .await?;
        if !decided {
            return self.follow_recorded(order.id).await;
        }
        let undo = State::compensating_all(UNPROCESSABLE_REASON);
        self.compensate_then_finish(order.id, Status::Compensating, undo)
            .await
    }
}

fn recorded_reason(order: &Order) -> String {
    order
        .reason
        .clone()
        .unwrap_or_else(|| UNPROCESSABLE_REASON.to_owned())
}

fn count_final(status: Status, reason: &str) {
    match status {
        Status::Cancelled => metrics::counter!("sagas_cancelled_total").increment(1),
        _ => metrics::counter!("sagas_failed_total", "reason" => reason.to_owned()).increment(1),
    }
}

fn logged(
    participant: &'static str,
    kind: StepKind,
    outcome: StepOutcome,
    error_code: Option<String>,
    started_at: OffsetDateTime,
    clock: Instant,
) -> NewStep {
    let elapsed = clock.elapsed();
    metrics::histogram!(
        "saga_step_duration_seconds",
        "participant" => participant,
        "kind" => kind.as_str(),
        "outcome" => outcome.as_str(),
    )
    .record(elapsed.as_secs_f64());
    NewStep {
        participant,
        kind,
        outcome,
        error_code,
        started_at,
        finished_at: started_at + elapsed,
    }
}
