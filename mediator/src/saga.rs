//! The order saga as data: its steps, in order, and a pure state machine (no I/O) that says what
//! comes next. The executor performs what the machine asks and feeds it the outcomes.
//!
//! # Steps, and why in this order
//!
//! 1. **reserve the item** (items, `reservations`, resource = item id, quantity 1)
//! 2. **book the delivery slot** (slots, `bookings`, resource = `"HH:MM"`, quantity 1)
//! 3. **charge the customer** (billing, `charges`, resource = username, quantity = cents)
//!
//! The charge is the pivot and goes last: money is the hardest thing to undo. A refund is visible
//! to the customer (and, with a real payment provider, costs fees), while releasing a reservation
//! or a booking is invisible. With the charge last, no money moves for an order that fails on the
//! item or the slot, and a charge is only ever refunded when the charge itself had an unknown
//! outcome.
//!
//! # States
//!
//! `Pending -> Running(0) -> Running(1) -> Running(2) -> Completed`, or, on a rejection or an
//! unknown outcome at step `k`: `-> Compensating -> Failed(reason)`.
//!
//! - **Rejected at `k`**: steps `k-1 .. 0` are compensated, in reverse order. The rejected step
//!   held nothing, and no run of this order can ever get past it: the participant recorded the
//!   refusal and answers every later action for the order with it. If nothing at all is to be
//!   undone (the first step was rejected) the saga goes straight to `Failed`.
//! - **Unknown at `k`** (no answer until the step's deadline): EVERY step of the saga is
//!   compensated, in reverse order, including those after `k` that this run never called. Step
//!   `k` may have acted, and another run of the same order (an owner that was paused past its
//!   claim time, a duplicate entry) may be going on beyond it. A compensation of a step that never
//!   acted leaves a tombstone, and the tombstone is the fence: once the abort is recorded, any
//!   later action of any run for this order is refused with `order_cancelled`, so nothing can be
//!   taken after the order failed, whoever is still running.

use order_store::stream::Terms;
use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Participant {
    Items,
    Slots,
    Billing,
}

impl Participant {
    pub const fn name(self) -> &'static str {
        match self {
            Participant::Items => "items",
            Participant::Slots => "slots",
            Participant::Billing => "billing",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Participant::Items, Participant::Slots, Participant::Billing]
            .into_iter()
            .find(|p| p.name() == name)
    }
}

/// One step: a ledger action (`PUT /internal/<route>/{order_id}`) and its compensation (`DELETE`).
#[derive(Debug)]
pub struct Step {
    pub participant: Participant,
    pub route: &'static str,
    /// The order's reason when the participant refuses (409).
    pub rejection_reason: &'static str,
    pub resource: fn(&Terms) -> String,
    pub quantity: fn(&Terms) -> i64,
}

pub static STEPS: [Step; 3] = [
    Step {
        participant: Participant::Items,
        route: "reservations",
        rejection_reason: "Can not reserve the item",
        resource: |o| o.item.to_string(),
        quantity: |_| 1,
    },
    Step {
        participant: Participant::Slots,
        route: "bookings",
        rejection_reason: "Can not get the delivery slot",
        resource: |o| o.slot.clone(),
        quantity: |_| 1,
    },
    Step {
        participant: Participant::Billing,
        route: "charges",
        rejection_reason: "Not enough money",
        resource: |o| o.username.clone(),
        quantity: |o| o.amount.minor(),
    },
];

/// The reason of an order aborted because a participant could not be reached in time.
pub fn unavailable_reason(participant: Participant) -> String {
    format!("Service unavailable: {}", participant.name())
}

pub type Reason = Cow<'static, str>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Pending,
    /// Step `i` is (about to be) called.
    Running(usize),
    Completed,
    /// Undoing: steps `remaining - 1` down to `0` are still to be compensated.
    Compensating {
        remaining: usize,
        reason: Reason,
    },
    Failed(Reason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Start,
    StepSucceeded,
    /// A business refusal (409) with the participant's code.
    StepRejected(String),
    /// Transient failures until the step's deadline: the step may or may not have acted.
    StepUnknown,
    CompensationDone,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid saga transition: {event:?} in state {state:?}")]
pub struct InvalidTransition {
    pub state: State,
    pub event: Event,
}

impl State {
    /// Where a saga resumes when an earlier run already decided to abort: every step is
    /// compensated, in reverse order (a compensation of a step never taken is a no-op).
    pub fn compensating_all(reason: impl Into<Reason>) -> Self {
        State::Compensating {
            remaining: STEPS.len(),
            reason: reason.into(),
        }
    }

    pub fn is_final(&self) -> bool {
        matches!(self, State::Completed | State::Failed(_))
    }

    /// The step to compensate now, when compensating.
    pub fn next_compensation(&self) -> Option<usize> {
        match self {
            State::Compensating { remaining, .. } if *remaining > 0 => Some(remaining - 1),
            _ => None,
        }
    }

    pub fn apply(self, event: Event) -> Result<State, InvalidTransition> {
        let next = match (&self, &event) {
            (State::Pending, Event::Start) => Some(State::Running(0)),
            (State::Running(i), Event::StepSucceeded) if i + 1 < STEPS.len() => {
                Some(State::Running(i + 1))
            }
            (State::Running(i), Event::StepSucceeded) if i + 1 == STEPS.len() => {
                Some(State::Completed)
            }
            (State::Running(i), Event::StepRejected(_)) if *i < STEPS.len() => {
                Some(Self::abort(*i, STEPS[*i].rejection_reason.into()))
            }
            // Every step, not just 0..=i: see the module docs (the tombstones fence later steps).
            (State::Running(i), Event::StepUnknown) if *i < STEPS.len() => Some(Self::abort(
                STEPS.len(),
                unavailable_reason(STEPS[*i].participant).into(),
            )),
            (State::Compensating { remaining, reason }, Event::CompensationDone)
                if *remaining > 0 =>
            {
                Some(Self::abort(remaining - 1, reason.clone()))
            }
            _ => None,
        };
        next.ok_or(InvalidTransition { state: self, event })
    }

    /// `to_undo` steps (from the first) need compensating; none means the saga has failed.
    fn abort(to_undo: usize, reason: Reason) -> State {
        if to_undo == 0 {
            State::Failed(reason)
        } else {
            State::Compensating {
                remaining: to_undo,
                reason,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(events: impl IntoIterator<Item = Event>) -> Result<State, InvalidTransition> {
        events
            .into_iter()
            .try_fold(State::Pending, |state, event| state.apply(event))
    }

    /// The steps compensated, in call order, from `state` until the saga fails.
    fn compensations(mut state: State) -> (Vec<usize>, State) {
        let mut done = Vec::new();
        while let Some(i) = state.next_compensation() {
            done.push(i);
            state = state.apply(Event::CompensationDone).unwrap();
        }
        (done, state)
    }

    /// The saga started, its first `k` steps succeeded, then step `k` ends with `last`.
    fn after_steps(k: usize, last: Event) -> Vec<Event> {
        let mut events = vec![Event::Start];
        events.extend((0..k).map(|_| Event::StepSucceeded));
        events.push(last);
        events
    }

    fn failed(reason: &str) -> State {
        State::Failed(reason.to_owned().into())
    }

    #[test]
    fn the_steps_are_item_slot_then_charge() {
        let order: Vec<_> = STEPS.iter().map(|s| s.participant).collect();
        assert_eq!(
            order,
            [Participant::Items, Participant::Slots, Participant::Billing]
        );
        let routes: Vec<_> = STEPS.iter().map(|s| s.route).collect();
        assert_eq!(routes, ["reservations", "bookings", "charges"]);
    }

    #[test]
    fn every_step_succeeding_completes() {
        let mut state = State::Pending.apply(Event::Start).unwrap();
        for i in 0..STEPS.len() {
            assert_eq!(state, State::Running(i));
            state = state.apply(Event::StepSucceeded).unwrap();
        }
        assert_eq!(state, State::Completed);
        assert!(state.is_final());
    }

    /// A rejected step fails the saga with that step's reason, once the steps before it are
    /// undone in reverse order (the rejected one untouched).
    #[test]
    fn a_rejected_step_undoes_the_earlier_steps_in_reverse() {
        let cases: [(usize, &str, &[usize], &str); 3] = [
            (0, "item_unavailable", &[], "Can not reserve the item"),
            (1, "slot_unavailable", &[0], "Can not get the delivery slot"),
            (2, "insufficient_funds", &[1, 0], "Not enough money"),
        ];
        for (k, code, undo, reason) in cases {
            let rejected = run(after_steps(k, Event::StepRejected(code.into()))).unwrap();
            let (undone, end) = compensations(rejected);
            assert_eq!(undone, undo, "{code}");
            assert_eq!(end, failed(reason), "{code}");
        }
    }

    #[test]
    fn an_unknown_outcome_compensates_every_step_later_ones_included() {
        for (k, step) in STEPS.iter().enumerate() {
            let (undone, end) = compensations(run(after_steps(k, Event::StepUnknown)).unwrap());
            assert_eq!(undone, [2, 1, 0], "unknown at step {k}: all, in reverse");
            let reason = unavailable_reason(step.participant);
            assert_eq!(end, State::Failed(reason.into()));
        }
        let (_, end) =
            compensations(run([Event::Start, Event::StepSucceeded, Event::StepUnknown]).unwrap());
        assert_eq!(end, failed("Service unavailable: slots"));
    }

    #[test]
    fn resuming_an_abort_compensates_every_step_in_reverse() {
        let (undone, end) = compensations(State::compensating_all("Not enough money"));
        assert_eq!(undone, [2, 1, 0]);
        assert_eq!(end, failed("Not enough money"));
    }

    #[test]
    fn invalid_transitions_are_refused() {
        let running = State::Running(1);
        let compensating = State::compensating_all("x");
        let cases = [
            (State::Pending, Event::StepSucceeded),
            (State::Pending, Event::StepUnknown),
            (State::Pending, Event::CompensationDone),
            (running.clone(), Event::Start),
            (running.clone(), Event::CompensationDone),
            (State::Running(STEPS.len()), Event::StepSucceeded),
            (State::Running(STEPS.len()), Event::StepRejected("x".into())),
            (compensating.clone(), Event::StepSucceeded),
            (compensating.clone(), Event::StepRejected("x".into())),
            (compensating.clone(), Event::Start),
            (State::Completed, Event::StepSucceeded),
            (State::Completed, Event::CompensationDone),
            (State::Completed, Event::Start),
            (failed("x"), Event::CompensationDone),
            (failed("x"), Event::Start),
            (
                State::Compensating {
                    remaining: 0,
                    reason: "x".into(),
                },
                Event::CompensationDone,
            ),
        ];
        for (state, event) in cases {
            let err = state.clone().apply(event.clone()).unwrap_err();
            assert_eq!(err, InvalidTransition { state, event });
        }
    }

    #[test]
    fn a_failed_saga_has_nothing_left_to_compensate() {
        assert_eq!(failed("x").next_compensation(), None);
        assert_eq!(State::Completed.next_compensation(), None);
        assert_eq!(State::Running(0).next_compensation(), None);
    }
}
