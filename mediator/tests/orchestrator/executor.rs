//! One order's saga, run by the executor against a real Postgres and REAL HTTP participants (the
//! fake participant test double): every path to completed, failed or cancelled, retries, unknown
//! outcomes, resumed compensations and concurrent duplicate runs.

use crate::{
    Fakes, database, executor, failed,
    fake_participant::{Answer, FakeParticipant, Hold},
    new_order, status,
};
use mediator::{
    executor::{Disposition, Executor, Mode, UNPROCESSABLE_REASON},
    saga::STEPS,
};
use order_store::db::{self, Status};
use shop_common::testing::eventually;
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// The step deadline of runs that must not reach it: far above any answer time of a loaded machine.
const DEADLINE: Duration = Duration::from_secs(10);
/// The step deadline of runs whose participant never answers in time: the test waits it out.
const EXPIRING_DEADLINE: Duration = Duration::from_millis(400);

const COMPLETED: Disposition = Disposition::Final(Status::Completed);
const FAILED: Disposition = Disposition::Final(Status::Failed);
const CANCELLED: Disposition = Disposition::Final(Status::Cancelled);
/// Every step compensated, in reverse order.
const UNDO_ALL: [&str; 3] = ["DELETE billing", "DELETE slots", "DELETE items"];

/// One pending order of a fresh database, and the fake participants its saga calls.
struct Saga {
    pool: PgPool,
    fakes: Fakes,
    id: Uuid,
}

impl Saga {
    async fn new() -> Self {
        let (pool, _) = database().await;
        let id = new_order(&pool).await;
        Self {
            pool,
            fakes: Fakes::start().await,
            id,
        }
    }

    fn executor(&self, step_deadline: Duration) -> Executor {
        executor(&self.pool, &self.fakes.config(step_deadline))
    }

    /// Runs the saga once, normally, with this step deadline.
    async fn run(&self, step_deadline: Duration) -> Disposition {
        self.executor(step_deadline)
            .run(self.id, Mode::Normal)
            .await
            .unwrap()
    }

    async fn status(&self) -> (Status, Option<String>) {
        status(&self.pool, self.id).await
    }

    /// What the order API does on the customer's cancel.
    async fn cancel(&self) {
        let cancel = db::request_cancel(&self.pool, "alice", self.id)
            .await
            .unwrap();
        assert!(matches!(cancel, db::Cancel::Requested(_)), "{cancel:?}");
    }

    fn calls(&self) -> Vec<String> {
        self.fakes.calls(self.id)
    }

    /// What each participant recorded, in the saga's order of steps.
    fn holds(&self) -> [Option<Hold>; 3] {
        self.fakes.all().map(|f| f.hold(self.id))
    }

    async fn log(&self) -> Vec<db::SagaStep> {
        db::saga_log(&self.pool, self.id).await.unwrap()
    }

    /// The saga log as `"1 action items ok"` rows.
    async fn log_rows(&self) -> Vec<String> {
        self.log()
            .await
            .iter()
            .map(|s| format!("{} {} {} {}", s.seq, s.kind, s.participant, s.outcome))
            .collect()
    }
}

#[tokio::test]
async fn success_path_completes_with_three_action_rows() {
    let saga = Saga::new().await;
    assert_eq!(saga.run(DEADLINE).await, COMPLETED);
    assert_eq!(saga.status().await, (Status::Completed, None));
    assert_eq!(saga.calls(), ["PUT items", "PUT slots", "PUT billing"]);
    assert_eq!(saga.holds(), [Some(Hold::Held); 3]);
    let bodies = saga
        .fakes
        .all()
        .map(|f| f.puts(saga.id)[0].body.clone().unwrap());
    assert_eq!(
        bodies,
        [
            serde_json::json!({"resource": "1", "quantity": 1}),
            serde_json::json!({"resource": "09:00", "quantity": 1}),
            serde_json::json!({"resource": "alice", "quantity": 10000}),
        ]
    );
    assert_eq!(
        saga.log_rows().await,
        [
            "1 action items ok",
            "2 action slots ok",
            "3 action billing ok"
        ]
    );
    assert!(
        saga.log()
            .await
            .iter()
            .all(|s| s.finished_at >= s.started_at)
    );
    let order = db::find_order(&saga.pool, saga.id).await.unwrap().unwrap();
    assert!(
        order.published_at.is_some(),
        "a finished order is never re-published"
    );
}

/// A participant refusing its step fails the order with that participant's reason; the steps
/// held before it are undone in reverse order, and no later step is called.
#[tokio::test]
async fn a_rejected_step_fails_the_order_and_undoes_the_earlier_steps() {
    struct Case {
        step: usize,
        code: &'static str,
        reason: &'static str,
        calls: &'static [&'static str],
        log: &'static [&'static str],
        holds: [Option<Hold>; 3],
    }
    let cases = [
        Case {
            step: 0,
            code: "item_unavailable",
            reason: "Can not reserve the item",
            // Nothing held, nothing to undo.
            calls: &["PUT items"],
            log: &["1 action items rejected"],
            holds: [Some(Hold::Rejected), None, None],
        },
        Case {
            step: 1,
            code: "slot_unavailable",
            reason: "Can not get the delivery slot",
            calls: &["PUT items", "PUT slots", "DELETE items"],
            log: &[
                "1 action items ok",
                "2 action slots rejected",
                "3 compensation items ok",
            ],
            // No money moved.
            holds: [Some(Hold::Released), Some(Hold::Rejected), None],
        },
        Case {
            step: 2,
            code: "insufficient_funds",
            reason: "Not enough money",
            calls: &[
                "PUT items",
                "PUT slots",
                "PUT billing",
                "DELETE slots",
                "DELETE items",
            ],
            log: &[
                "1 action items ok",
                "2 action slots ok",
                "3 action billing rejected",
                "4 compensation slots ok",
                "5 compensation items ok",
            ],
            holds: [
                Some(Hold::Released),
                Some(Hold::Released),
                Some(Hold::Rejected),
            ],
        },
    ];
    for case in cases {
        let saga = Saga::new().await;
        saga.fakes.all()[case.step].script_puts([Answer::Reject(case.code)]);
        assert_eq!(saga.run(DEADLINE).await, FAILED, "{}", case.code);
        assert_eq!(saga.status().await, failed(case.reason));
        assert_eq!(saga.calls(), case.calls, "{}", case.code);
        assert_eq!(saga.holds(), case.holds, "{}", case.code);
        assert_eq!(saga.log_rows().await, case.log, "{}", case.code);
        let rejected = &saga.log().await[case.step];
        assert_eq!(rejected.error_code.as_deref(), Some(case.code));
    }
}

#[tokio::test]
async fn transient_failures_are_retried_until_the_step_succeeds() {
    let saga = Saga::new().await;
    let fakes = &saga.fakes;
    fakes
        .slots
        .script_puts([Answer::Fail(500), Answer::Fail(503), Answer::Fail(429)]);
    fakes.billing.script_puts([Answer::Fail(502)]);
    assert_eq!(saga.run(Duration::from_secs(5)).await, COMPLETED);
    assert_eq!(fakes.slots.calls(saga.id).len(), 4);
    assert_eq!(fakes.billing.calls(saga.id).len(), 2);
    assert_eq!(fakes.billing.hold(saga.id), Some(Hold::Held));
    assert_eq!(
        saga.log().await.len(),
        3,
        "one row per step, not per attempt"
    );
}

#[tokio::test]
async fn a_participant_failing_past_the_deadline_fails_the_order_and_its_step_is_compensated() {
    let saga = Saga::new().await;
    let billing = &saga.fakes.billing;
    billing.always_put(Answer::Fail(500));
    let started = std::time::Instant::now();
    assert_eq!(saga.run(EXPIRING_DEADLINE).await, FAILED);
    assert!(started.elapsed() >= EXPIRING_DEADLINE);
    assert_eq!(saga.status().await, failed("Service unavailable: billing"));
    assert!(billing.puts(saga.id).len() > 1, "retried before giving up");
    let calls = saga.calls();
    assert_eq!(calls[calls.len() - 3..], UNDO_ALL);
    assert_eq!(billing.hold(saga.id), Some(Hold::Cancelled), "a tombstone");
    assert_eq!(
        saga.log_rows().await,
        [
            "1 action items ok",
            "2 action slots ok",
            "3 action billing unknown",
            "4 compensation billing ok",
            "5 compensation slots ok",
            "6 compensation items ok"
        ]
    );
    let code = saga.log().await[2].error_code.clone().unwrap();
    assert!(code.starts_with("deadline_exceeded"), "{code}");
}

#[tokio::test]
async fn a_lost_response_is_an_unknown_outcome_and_the_money_goes_back() {
    let saga = Saga::new().await;
    // The charge is taken, every answer is lost.
    saga.fakes.billing.always_put(Answer::ApplyThenFail(503));
    assert_eq!(saga.run(EXPIRING_DEADLINE).await, FAILED);
    // The money refunded, and everything else released.
    assert_eq!(saga.holds(), [Some(Hold::Released); 3]);
}

/// Issue #9: an unknown outcome at ANY step aborts with every step compensated, later ones
/// included, so that the tombstones refuse a late action of any other owner of the order.
#[tokio::test]
async fn after_an_unknown_outcome_a_late_action_of_any_step_is_refused() {
    for (k, step) in STEPS.iter().enumerate() {
        let saga = Saga::new().await;
        let fakes = saga.fakes.all();
        // Step k applies, then answers 503 until the deadline: its outcome is unknown.
        fakes[k].always_put(Answer::ApplyThenFail(503));
        assert_eq!(saga.run(EXPIRING_DEADLINE).await, FAILED, "step {k}");
        let reason = format!("Service unavailable: {}", step.participant.name());
        assert_eq!(saga.status().await, failed(&reason));
        let deletes: Vec<_> = saga
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("DELETE"))
            .collect();
        assert_eq!(
            deletes, UNDO_ALL,
            "unknown at step {k}: every step compensated, in reverse order"
        );
        // Another owner of the order, still running, now tries each step.
        for (fake, step) in fakes.iter().zip(STEPS.iter()) {
            fake.always_put(Answer::Ok);
            assert_eq!(
                fake.late_action(step.route, saga.id).await,
                (409, Some("order_cancelled".to_owned())),
                "unknown at step {k}: a late {} action must be refused",
                step.route
            );
            let hold = fake.hold(saga.id);
            assert!(
                matches!(hold, Some(Hold::Released | Hold::Cancelled)),
                "unknown at step {k}: {} holds {hold:?}",
                step.route
            );
        }
    }
}

#[tokio::test]
async fn a_hanging_participant_times_out_into_an_unknown_outcome() {
    let saga = Saga::new().await;
    let fakes = &saga.fakes;
    fakes.items.always_put(Answer::Hang);
    assert_eq!(saga.run(EXPIRING_DEADLINE).await, FAILED);
    assert_eq!(saga.status().await, failed("Service unavailable: items"));
    assert_eq!(saga.calls().last().unwrap(), "DELETE items");
    for later in [&fakes.slots, &fakes.billing] {
        assert!(
            later.puts(saga.id).is_empty(),
            "no step after the unknown one"
        );
        assert_eq!(later.hold(saga.id), Some(Hold::Cancelled), "fenced");
    }
}

#[tokio::test]
async fn a_participant_down_is_compensated_once_it_is_back() {
    let saga = Saga::new().await;
    // Billing is down: nothing listens on its address.
    let (billing_socket, billing_url) = FakeParticipant::reserve_address();
    let mut config = saga.fakes.config(EXPIRING_DEADLINE);
    config.billing_url = billing_url;
    let exec = executor(&saga.pool, &config);
    let id = saga.id;
    let run = tokio::spawn(async move { exec.run(id, Mode::Normal).await });
    // Past the deadline the order is aborted, and the charge's compensation keeps trying.
    crate::eventually(Duration::from_secs(5), "the abort decision", async || {
        saga.status().await.0 == Status::Compensating
    })
    .await;
    assert_eq!(
        saga.status().await.1.as_deref(),
        Some("Service unavailable: billing")
    );
    assert!(!run.is_finished(), "cannot finish while billing is down");
    let billing = FakeParticipant::start_on("billing", saga.fakes.journal.clone(), billing_socket);
    let run = tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("compensation resumes once billing is back")
        .unwrap();
    assert_eq!(run.unwrap(), FAILED);
    assert_eq!(billing.hold(id), Some(Hold::Cancelled));
    assert_eq!(
        saga.calls(),
        [
            "PUT items",
            "PUT slots",
            "DELETE billing",
            "DELETE slots",
            "DELETE items"
        ]
    );
}

#[tokio::test]
async fn a_compensation_is_retried_until_the_participant_confirms_it() {
    let saga = Saga::new().await;
    let items = &saga.fakes.items;
    saga.fakes
        .slots
        .script_puts([Answer::Reject("slot_unavailable")]);
    items.script_deletes([Answer::Fail(500), Answer::Fail(500), Answer::Fail(403)]);
    assert_eq!(saga.run(DEADLINE).await, FAILED);
    assert_eq!(
        items.calls(saga.id),
        ["PUT", "DELETE", "DELETE", "DELETE", "DELETE"]
    );
    assert_eq!(items.hold(saga.id), Some(Hold::Released));
}

#[tokio::test]
async fn an_order_already_compensating_runs_only_compensations() {
    let saga = Saga::new().await;
    // A previous run took the item and the slot, decided to abort, and died.
    saga.fakes.items.force_hold(saga.id);
    saga.fakes.slots.force_hold(saga.id);
    let decided = db::transition(
        &saga.pool,
        saga.id,
        Status::Pending,
        Status::Compensating,
        Some("Not enough money"),
        &[],
    )
    .await
    .unwrap();
    assert!(decided);
    assert_eq!(saga.run(DEADLINE).await, FAILED);
    assert_eq!(
        saga.calls(),
        UNDO_ALL,
        "no forward step, every compensation in reverse order"
    );
    assert_eq!(saga.status().await, failed("Not enough money"));
    assert_eq!(
        saga.holds(),
        [
            Some(Hold::Released),
            Some(Hold::Released),
            Some(Hold::Cancelled)
        ]
    );
}

#[tokio::test]
async fn a_completed_order_is_left_alone() {
    let saga = Saga::new().await;
    let exec = saga.executor(DEADLINE);
    assert_eq!(exec.run(saga.id, Mode::Normal).await.unwrap(), COMPLETED);
    let calls = saga.calls().len();
    assert_eq!(exec.run(saga.id, Mode::Normal).await.unwrap(), COMPLETED);
    assert_eq!(saga.calls().len(), calls, "no call for a duplicate");
    assert_eq!(saga.log().await.len(), 3);
}

#[tokio::test]
async fn a_duplicate_of_a_failed_order_undoes_a_stragglers_hold() {
    let saga = Saga::new().await;
    saga.fakes
        .slots
        .script_puts([Answer::Reject("slot_unavailable")]);
    let exec = saga.executor(DEADLINE);
    assert_eq!(exec.run(saga.id, Mode::Normal).await.unwrap(), FAILED);
    // A concurrent run of the same order charged the customer, then crashed.
    saga.fakes.billing.force_hold(saga.id);
    assert_eq!(exec.run(saga.id, Mode::Normal).await.unwrap(), FAILED);
    assert_eq!(saga.fakes.billing.hold(saga.id), Some(Hold::Released));
    assert_eq!(saga.status().await, failed("Can not get the delivery slot"));
}

/// Two runs of one order at once (a duplicate entry, a taken-over one): one result, each step
/// held once, and for an aborting order nothing left held.
#[tokio::test]
async fn concurrent_runs_of_one_order_have_one_result() {
    let cases = [
        (None, COMPLETED, [Some(Hold::Held); 3]),
        (
            Some("insufficient_funds"),
            FAILED,
            [
                Some(Hold::Released),
                Some(Hold::Released),
                Some(Hold::Rejected),
            ],
        ),
    ];
    for (billing_refuses, result, holds) in cases {
        let saga = Saga::new().await;
        if let Some(code) = billing_refuses {
            saga.fakes.billing.script_puts([Answer::Reject(code)]);
        }
        let (a, b) = (saga.executor(DEADLINE), saga.executor(DEADLINE));
        let (ra, rb) = tokio::join!(a.run(saga.id, Mode::Normal), b.run(saga.id, Mode::Normal));
        assert_eq!(
            (ra.unwrap(), rb.unwrap()),
            (result, result),
            "{billing_refuses:?}"
        );
        assert_eq!(saga.holds(), holds, "{billing_refuses:?}");
        match billing_refuses {
            None => {
                for fake in saga.fakes.all() {
                    assert!(!fake.calls(saga.id).contains(&"DELETE"));
                }
                assert_eq!(saga.log().await.len(), 3, "the winner's log");
            }
            Some(_) => assert_eq!(saga.status().await, failed("Not enough money")),
        }
    }
}

#[tokio::test]
async fn dead_letter_mode_undoes_everything_and_fails_the_order() {
    let saga = Saga::new().await;
    saga.fakes.items.force_hold(saga.id);
    let run = saga.executor(DEADLINE).run(saga.id, Mode::DeadLetter).await;
    assert_eq!(run.unwrap(), FAILED);
    assert_eq!(saga.status().await, failed(UNPROCESSABLE_REASON));
    assert_eq!(saga.calls(), UNDO_ALL);
    assert_eq!(saga.fakes.items.hold(saga.id), Some(Hold::Released));
}

#[tokio::test]
async fn an_unknown_order_is_reported() {
    let saga = Saga::new().await;
    let run = saga
        .executor(DEADLINE)
        .run(Uuid::now_v7(), Mode::Normal)
        .await;
    assert_eq!(run.unwrap(), Disposition::UnknownOrder);
    assert!(saga.fakes.journal.lock().unwrap().is_empty());
}

fn cancelled() -> (Status, Option<String>) {
    (Status::Cancelled, Some(db::CANCELLED_REASON.to_owned()))
}

/// A completed order cancelled: every step compensated, in reverse order, then `cancelled`; the
/// log shows the actions, the customer's request and the compensations.
#[tokio::test]
async fn a_cancelled_completed_order_is_undone_in_reverse() {
    let saga = Saga::new().await;
    assert_eq!(saga.run(DEADLINE).await, COMPLETED);
    saga.cancel().await;
    assert_eq!(saga.status().await.0, Status::Cancelling);
    assert_eq!(saga.run(DEADLINE).await, CANCELLED);
    assert_eq!(saga.status().await, cancelled());
    assert_eq!(saga.calls()[3..], UNDO_ALL);
    assert_eq!(saga.holds(), [Some(Hold::Released); 3]);
    assert_eq!(
        saga.log_rows().await,
        [
            "1 action items ok",
            "2 action slots ok",
            "3 action billing ok",
            "4 cancel customer ok",
            "5 compensation billing ok",
            "6 compensation slots ok",
            "7 compensation items ok",
        ]
    );
    // A duplicate entry of the cancelled order: compensations again (no-ops), nothing taken.
    assert_eq!(saga.run(DEADLINE).await, CANCELLED);
    assert_eq!(saga.holds(), [Some(Hold::Released); 3]);
    assert_eq!(saga.status().await, cancelled());
}

/// A cancel while the saga is at its second step: the cancel's run compensates everything; the
/// running saga's next action meets the fence (refused), it calls no later step and follows the
/// recorded cancel. One final state, nothing held.
#[tokio::test]
async fn a_cancel_during_the_saga_stops_it_at_the_fence() {
    let saga = Saga::new().await;
    saga.fakes.slots.script_puts([Answer::Gated]);
    let running = tokio::spawn({
        let exec = saga.executor(DEADLINE);
        let id = saga.id;
        async move { exec.run(id, Mode::Normal).await.unwrap() }
    });
    eventually(crate::WAIT, "the slot step under way", async || {
        saga.calls().contains(&"PUT slots".to_owned())
    })
    .await;
    saga.cancel().await;
    assert_eq!(saga.run(DEADLINE).await, CANCELLED);
    saga.fakes.slots.open_gate();
    assert_eq!(running.await.unwrap(), CANCELLED);
    assert_eq!(saga.status().await, cancelled());
    assert!(
        !saga.calls().contains(&"PUT billing".to_owned()),
        "no step after the cancel: {:?}",
        saga.calls()
    );
    assert_eq!(
        saga.holds(),
        [
            Some(Hold::Released),
            Some(Hold::Cancelled),
            Some(Hold::Cancelled)
        ]
    );
}

/// The cancel and the saga's last transition race: whichever moves first, the order ends
/// `cancelled` with every step given back.
#[tokio::test]
async fn a_cancel_racing_the_saga_ends_cancelled_with_nothing_held() {
    for _ in 0..5 {
        let saga = Saga::new().await;
        let exec = saga.executor(DEADLINE);
        let (ran, cancel) = tokio::join!(
            exec.run(saga.id, Mode::Normal),
            db::request_cancel(&saga.pool, "alice", saga.id)
        );
        let ran = ran.unwrap();
        assert!(
            matches!(cancel.unwrap(), db::Cancel::Requested(_)),
            "pending or completed: the cancel applies"
        );
        assert!(ran == COMPLETED || ran == CANCELLED, "{ran:?}");
        // The cancel's own entry.
        assert_eq!(saga.run(DEADLINE).await, CANCELLED);
        assert_eq!(saga.status().await, cancelled());
        for (fake, hold) in saga.fakes.all().iter().zip(saga.holds()) {
            assert!(
                matches!(hold, Some(Hold::Released | Hold::Cancelled)),
                "{}: {hold:?}",
                fake.name
            );
        }
    }
}

/// A failed order, or one being aborted, is not cancelled.
#[tokio::test]
async fn a_failed_order_is_not_cancelled() {
    let saga = Saga::new().await;
    saga.fakes
        .items
        .script_puts([Answer::Reject("item_unavailable")]);
    assert_eq!(saga.run(DEADLINE).await, FAILED);
    let cancel = db::request_cancel(&saga.pool, "alice", saga.id)
        .await
        .unwrap();
    assert!(matches!(cancel, db::Cancel::Final(_)), "{cancel:?}");
    assert_eq!(saga.status().await, failed("Can not reserve the item"));
    let unknown = db::request_cancel(&saga.pool, "bob", saga.id)
        .await
        .unwrap();
    assert!(
        matches!(unknown, db::Cancel::NotFound),
        "someone else's: {unknown:?}"
    );
}
