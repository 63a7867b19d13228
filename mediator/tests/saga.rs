//! One order's saga, run by the executor against a real Postgres and REAL HTTP participants (the
//! fake participant test double): every path to completed or failed, retries, unknown outcomes,
//! resumed compensations and concurrent duplicate runs.

mod support;

use mediator::{
    executor::{Disposition, Mode, UNPROCESSABLE_REASON},
    saga::STEPS,
};
use order::db::{self, Status};
use std::time::Duration;
use support::{
    Fakes, database, executor,
    fake_participant::{Answer, FakeParticipant, Hold},
    new_order, status,
};
use uuid::Uuid;

/// The step deadline of runs that must not reach it: far above any answer time of a loaded machine.
const DEADLINE: Duration = Duration::from_secs(10);
/// The step deadline of runs whose participant never answers in time: the test waits it out.
const EXPIRING_DEADLINE: Duration = Duration::from_millis(400);

fn log_rows(log: &[db::SagaStep]) -> Vec<String> {
    log.iter()
        .map(|s| format!("{} {} {} {}", s.seq, s.kind, s.participant, s.outcome))
        .collect()
}

#[tokio::test]
async fn success_path_completes_with_three_action_rows() {
    let (pool, _) = database().await;
    let fakes = Fakes::start().await;
    let id = new_order(&pool).await;
    let run = executor(&pool, &fakes.config(DEADLINE))
        .run(id, Mode::Normal)
        .await;
    assert_eq!(run.unwrap(), Disposition::Final(Status::Completed));
    assert_eq!(status(&pool, id).await, (Status::Completed, None));
    assert_eq!(fakes.calls(id), ["PUT items", "PUT slots", "PUT billing"]);
    for fake in [&fakes.items, &fakes.slots, &fakes.billing] {
        assert_eq!(fake.hold(id), Some(Hold::Held), "{}", fake.name);
    }
    let body = |f: &FakeParticipant| f.puts(id)[0].body.clone().unwrap();
    assert_eq!(
        body(&fakes.items),
        serde_json::json!({"resource": "1", "quantity": 1})
    );
    assert_eq!(
        body(&fakes.slots),
        serde_json::json!({"resource": "09:00", "quantity": 1})
    );
    assert_eq!(
        body(&fakes.billing),
        serde_json::json!({"resource": "alice", "quantity": 10000})
    );
    let log = db::saga_log(&pool, id).await.unwrap();
    assert_eq!(
        log_rows(&log),
        [
            "1 action items ok",
            "2 action slots ok",
            "3 action billing ok"
        ]
    );
    assert!(log.iter().all(|s| s.finished_at >= s.started_at));
    let order = db::find_order(&pool, id).await.unwrap().unwrap();
    assert!(
        order.published_at.is_some(),
        "a finished order is never re-published"
    );
}

#[tokio::test]
async fn item_rejection_fails_without_calling_slots_or_billing() {
    let (pool, _) = database().await;
    let fakes = Fakes::start().await;
    fakes
        .items
        .script_puts([Answer::Reject("item_unavailable")]);
    let id = new_order(&pool).await;
    let run = executor(&pool, &fakes.config(DEADLINE))
        .run(id, Mode::Normal)
        .await;
    assert_eq!(run.unwrap(), Disposition::Final(Status::Failed));
    assert_eq!(
        status(&pool, id).await,
        (Status::Failed, Some("Can not reserve the item".into()))
    );
    assert_eq!(
        fakes.calls(id),
        ["PUT items"],
        "nothing held, nothing to undo"
    );
    let log = db::saga_log(&pool, id).await.unwrap();
    assert_eq!(log_rows(&log), ["1 action items rejected"]);
    assert_eq!(log[0].error_code.as_deref(), Some("item_unavailable"));
}

#[tokio::test]
async fn slot_rejection_releases_the_item() {
    let (pool, _) = database().await;
    let fakes = Fakes::start().await;
    fakes
        .slots
        .script_puts([Answer::Reject("slot_unavailable")]);
    let id = new_order(&pool).await;
    let run = executor(&pool, &fakes.config(DEADLINE))
        .run(id, Mode::Normal)
        .await;
    assert_eq!(run.unwrap(), Disposition::Final(Status::Failed));
    assert_eq!(
        status(&pool, id).await,
        (Status::Failed, Some("Can not get the delivery slot".into()))
    );
    assert_eq!(fakes.calls(id), ["PUT items", "PUT slots", "DELETE items"]);
    assert_eq!(fakes.items.hold(id), Some(Hold::Released));
    assert!(fakes.billing.calls(id).is_empty(), "no money moved");
    let log = db::saga_log(&pool, id).await.unwrap();
    assert_eq!(
        log_rows(&log),
        [
            "1 action items ok",
            "2 action slots rejected",
            "3 compensation items ok"
        ]
    );
}

#[tokio::test]
async fn money_rejection_compensates_in_reverse_order() {
    let (pool, _) = database().await;
    let fakes = Fakes::start().await;
    fakes
        .billing
        .script_puts([Answer::Reject("insufficient_funds")]);
    let id = new_order(&pool).await;
    let run = executor(&pool, &fakes.config(DEADLINE))
        .run(id, Mode::Normal)
        .await;
    assert_eq!(run.unwrap(), Disposition::Final(Status::Failed));
    assert_eq!(
        status(&pool, id).await,
        (Status::Failed, Some("Not enough money".into()))
    );
    assert_eq!(
        fakes.calls(id),
        [
            "PUT items",
            "PUT slots",
            "PUT billing",
            "DELETE slots",
            "DELETE items"
        ]
    );
    assert_eq!(fakes.items.hold(id), Some(Hold::Released));
    assert_eq!(fakes.slots.hold(id), Some(Hold::Released));
    assert_eq!(fakes.billing.hold(id), Some(Hold::Rejected));
    let log = db::saga_log(&pool, id).await.unwrap();
    assert_eq!(
        log_rows(&log),
        [
            "1 action items ok",
            "2 action slots ok",
            "3 action billing rejected",
            "4 compensation slots ok",
            "5 compensation items ok"
        ]
    );
}

#[tokio::test]
async fn transient_failures_are_retried_until_the_step_succeeds() {
    let (pool, _) = database().await;
    let fakes = Fakes::start().await;
    fakes
        .slots
        .script_puts([Answer::Fail(500), Answer::Fail(503), Answer::Fail(429)]);
    fakes.billing.script_puts([Answer::Fail(502)]);
    let id = new_order(&pool).await;
    let run = executor(&pool, &fakes.config(Duration::from_secs(5)))
        .run(id, Mode::Normal)
        .await;
    assert_eq!(run.unwrap(), Disposition::Final(Status::Completed));
    assert_eq!(fakes.slots.calls(id).len(), 4);
    assert_eq!(fakes.billing.calls(id).len(), 2);
    assert_eq!(fakes.billing.hold(id), Some(Hold::Held));
    let log = db::saga_log(&pool, id).await.unwrap();
    assert_eq!(log.len(), 3, "one row per step, not per attempt");
}

#[tokio::test]
async fn a_participant_failing_past_the_deadline_fails_the_order_and_its_step_is_compensated() {
    let (pool, _) = database().await;
    let fakes = Fakes::start().await;
    fakes.billing.always_put(Answer::Fail(500));
    let id = new_order(&pool).await;
    let started = std::time::Instant::now();
    let run = executor(&pool, &fakes.config(EXPIRING_DEADLINE))
        .run(id, Mode::Normal)
        .await;
    assert_eq!(run.unwrap(), Disposition::Final(Status::Failed));
    assert!(started.elapsed() >= EXPIRING_DEADLINE);
    assert_eq!(
        status(&pool, id).await,
        (Status::Failed, Some("Service unavailable: billing".into()))
    );
    assert!(fakes.billing.puts(id).len() > 1, "retried before giving up");
    let calls = fakes.calls(id);
    assert_eq!(
        calls[calls.len() - 3..],
        ["DELETE billing", "DELETE slots", "DELETE items"]
    );
    assert_eq!(fakes.billing.hold(id), Some(Hold::Cancelled), "a tombstone");
    let log = db::saga_log(&pool, id).await.unwrap();
    assert_eq!(
        log_rows(&log),
        [
            "1 action items ok",
            "2 action slots ok",
            "3 action billing unknown",
            "4 compensation billing ok",
            "5 compensation slots ok",
            "6 compensation items ok"
        ]
    );
    let code = log[2].error_code.as_deref().unwrap();
    assert!(code.starts_with("deadline_exceeded"), "{code}");
}

#[tokio::test]
async fn a_lost_response_is_an_unknown_outcome_and_the_money_goes_back() {
    let (pool, _) = database().await;
    let fakes = Fakes::start().await;
    // The charge is taken, every answer is lost.
    fakes.billing.always_put(Answer::ApplyThenFail(503));
    let id = new_order(&pool).await;
    let run = executor(&pool, &fakes.config(EXPIRING_DEADLINE))
        .run(id, Mode::Normal)
        .await;
    assert_eq!(run.unwrap(), Disposition::Final(Status::Failed));
    assert_eq!(fakes.billing.hold(id), Some(Hold::Released), "refunded");
    assert_eq!(fakes.slots.hold(id), Some(Hold::Released));
    assert_eq!(fakes.items.hold(id), Some(Hold::Released));
}

/// Issue #9: an unknown outcome at ANY step aborts with every step compensated, later ones
/// included, so that the tombstones refuse a late action of any other owner of the order.
#[tokio::test]
async fn after_an_unknown_outcome_a_late_action_of_any_step_is_refused() {
    let (pool, _) = database().await;
    for (k, step) in STEPS.iter().enumerate() {
        let fakes = Fakes::start().await;
        let fake = |i: usize| [&fakes.items, &fakes.slots, &fakes.billing][i];
        // Step k applies, then answers 503 until the deadline: its outcome is unknown.
        fake(k).always_put(Answer::ApplyThenFail(503));
        let id = new_order(&pool).await;
        let run = executor(&pool, &fakes.config(EXPIRING_DEADLINE))
            .run(id, Mode::Normal)
            .await;
        assert_eq!(run.unwrap(), Disposition::Final(Status::Failed), "step {k}");
        let reason = format!("Service unavailable: {}", step.participant.name());
        assert_eq!(status(&pool, id).await, (Status::Failed, Some(reason)));
        let deletes: Vec<_> = fakes
            .calls(id)
            .into_iter()
            .filter(|c| c.starts_with("DELETE"))
            .collect();
        assert_eq!(
            deletes,
            ["DELETE billing", "DELETE slots", "DELETE items"],
            "unknown at step {k}: every step compensated, in reverse order"
        );
        // Another owner of the order, still running, now tries each step.
        for (i, step) in STEPS.iter().enumerate() {
            fake(i).always_put(Answer::Ok);
            assert_eq!(
                fake(i).late_action(step.route, id).await,
                (409, Some("order_cancelled".to_owned())),
                "unknown at step {k}: a late {} action must be refused",
                step.route
            );
            let hold = fake(i).hold(id);
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
    let (pool, _) = database().await;
    let fakes = Fakes::start().await;
    fakes.items.always_put(Answer::Hang);
    let id = new_order(&pool).await;
    let run = executor(&pool, &fakes.config(EXPIRING_DEADLINE))
        .run(id, Mode::Normal)
        .await;
    assert_eq!(run.unwrap(), Disposition::Final(Status::Failed));
    assert_eq!(
        status(&pool, id).await,
        (Status::Failed, Some("Service unavailable: items".into()))
    );
    assert_eq!(fakes.calls(id).last().unwrap(), "DELETE items");
    assert!(
        fakes.slots.puts(id).is_empty(),
        "no step after the unknown one"
    );
    assert!(
        fakes.billing.puts(id).is_empty(),
        "no step after the unknown one"
    );
    assert_eq!(fakes.billing.hold(id), Some(Hold::Cancelled), "fenced");
    assert_eq!(fakes.slots.hold(id), Some(Hold::Cancelled), "fenced");
}

#[tokio::test]
async fn a_participant_down_is_compensated_once_it_is_back() {
    let (pool, _) = database().await;
    let fakes = Fakes::start().await;
    // Billing is down: nothing listens on its address.
    let (billing_socket, billing_url) = FakeParticipant::reserve_address();
    let mut config = fakes.config(EXPIRING_DEADLINE);
    config.billing_url = billing_url;
    let id = new_order(&pool).await;
    let exec = executor(&pool, &config);
    let run = tokio::spawn(async move { exec.run(id, Mode::Normal).await });
    // Past the deadline the order is aborted, and the charge's compensation keeps trying.
    support::eventually(Duration::from_secs(5), "the abort decision", || async {
        status(&pool, id).await.0 == Status::Compensating
    })
    .await;
    assert_eq!(
        status(&pool, id).await.1.as_deref(),
        Some("Service unavailable: billing")
    );
    assert!(!run.is_finished(), "cannot finish while billing is down");
    let billing = FakeParticipant::start_on("billing", fakes.journal.clone(), billing_socket);
    let run = tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .expect("compensation resumes once billing is back")
        .unwrap();
    assert_eq!(run.unwrap(), Disposition::Final(Status::Failed));
    assert_eq!(billing.hold(id), Some(Hold::Cancelled));
    assert_eq!(
        fakes.calls(id),
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
    let (pool, _) = database().await;
    let fakes = Fakes::start().await;
    fakes
        .slots
        .script_puts([Answer::Reject("slot_unavailable")]);
    fakes
        .items
        .script_deletes([Answer::Fail(500), Answer::Fail(500), Answer::Fail(403)]);
    let id = new_order(&pool).await;
    let run = executor(&pool, &fakes.config(DEADLINE))
        .run(id, Mode::Normal)
        .await;
    assert_eq!(run.unwrap(), Disposition::Final(Status::Failed));
    assert_eq!(
        fakes.items.calls(id),
        ["PUT", "DELETE", "DELETE", "DELETE", "DELETE"]
    );
    assert_eq!(fakes.items.hold(id), Some(Hold::Released));
}

#[tokio::test]
async fn an_order_already_compensating_runs_only_compensations() {
    let (pool, _) = database().await;
    let fakes = Fakes::start().await;
    let id = new_order(&pool).await;
    // A previous run took the item and the slot, decided to abort, and died.
    fakes.items.force_hold(id);
    fakes.slots.force_hold(id);
    let decided = db::transition(
        &pool,
        id,
        Status::Pending,
        Status::Compensating,
        Some("Not enough money"),
        &[],
    )
    .await
    .unwrap();
    assert!(decided);
    let run = executor(&pool, &fakes.config(DEADLINE))
        .run(id, Mode::Normal)
        .await;
    assert_eq!(run.unwrap(), Disposition::Final(Status::Failed));
    assert_eq!(
        fakes.calls(id),
        ["DELETE billing", "DELETE slots", "DELETE items"],
        "no forward step, every compensation in reverse order"
    );
    assert_eq!(
        status(&pool, id).await,
        (Status::Failed, Some("Not enough money".into()))
    );
    assert_eq!(fakes.items.hold(id), Some(Hold::Released));
    assert_eq!(fakes.slots.hold(id), Some(Hold::Released));
    assert_eq!(fakes.billing.hold(id), Some(Hold::Cancelled));
}

#[tokio::test]
async fn a_completed_order_is_left_alone() {
    let (pool, _) = database().await;
    let fakes = Fakes::start().await;
    let id = new_order(&pool).await;
    let exec = executor(&pool, &fakes.config(DEADLINE));
    assert_eq!(
        exec.run(id, Mode::Normal).await.unwrap(),
        Disposition::Final(Status::Completed)
    );
    let calls = fakes.calls(id).len();
    assert_eq!(
        exec.run(id, Mode::Normal).await.unwrap(),
        Disposition::Final(Status::Completed)
    );
    assert_eq!(fakes.calls(id).len(), calls, "no call for a duplicate");
    assert_eq!(db::saga_log(&pool, id).await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_duplicate_of_a_failed_order_undoes_a_stragglers_hold() {
    let (pool, _) = database().await;
    let fakes = Fakes::start().await;
    fakes
        .slots
        .script_puts([Answer::Reject("slot_unavailable")]);
    let id = new_order(&pool).await;
    let exec = executor(&pool, &fakes.config(DEADLINE));
    assert_eq!(
        exec.run(id, Mode::Normal).await.unwrap(),
        Disposition::Final(Status::Failed)
    );
    // A concurrent run of the same order charged the customer, then crashed.
    fakes.billing.force_hold(id);
    assert_eq!(
        exec.run(id, Mode::Normal).await.unwrap(),
        Disposition::Final(Status::Failed)
    );
    assert_eq!(fakes.billing.hold(id), Some(Hold::Released));
    assert_eq!(
        status(&pool, id).await,
        (Status::Failed, Some("Can not get the delivery slot".into()))
    );
}

#[tokio::test]
async fn concurrent_runs_of_one_order_have_one_result_and_hold_once() {
    let (pool, _) = database().await;
    let fakes = Fakes::start().await;
    let id = new_order(&pool).await;
    let a = executor(&pool, &fakes.config(DEADLINE));
    let b = executor(&pool, &fakes.config(DEADLINE));
    let (ra, rb) = tokio::join!(a.run(id, Mode::Normal), b.run(id, Mode::Normal));
    assert_eq!(ra.unwrap(), Disposition::Final(Status::Completed));
    assert_eq!(rb.unwrap(), Disposition::Final(Status::Completed));
    for fake in [&fakes.items, &fakes.slots, &fakes.billing] {
        assert_eq!(fake.hold(id), Some(Hold::Held));
        assert!(!fake.calls(id).contains(&"DELETE"));
    }
    assert_eq!(
        db::saga_log(&pool, id).await.unwrap().len(),
        3,
        "the winner's log"
    );
}

#[tokio::test]
async fn concurrent_runs_of_an_aborting_order_leave_nothing_held() {
    let (pool, _) = database().await;
    let fakes = Fakes::start().await;
    fakes
        .billing
        .script_puts([Answer::Reject("insufficient_funds")]);
    let id = new_order(&pool).await;
    let a = executor(&pool, &fakes.config(DEADLINE));
    let b = executor(&pool, &fakes.config(DEADLINE));
    let (ra, rb) = tokio::join!(a.run(id, Mode::Normal), b.run(id, Mode::Normal));
    assert_eq!(ra.unwrap(), Disposition::Final(Status::Failed));
    assert_eq!(rb.unwrap(), Disposition::Final(Status::Failed));
    assert_eq!(
        status(&pool, id).await,
        (Status::Failed, Some("Not enough money".into()))
    );
    assert_eq!(fakes.items.hold(id), Some(Hold::Released));
    assert_eq!(fakes.slots.hold(id), Some(Hold::Released));
    assert_eq!(fakes.billing.hold(id), Some(Hold::Rejected));
}

#[tokio::test]
async fn dead_letter_mode_undoes_everything_and_fails_the_order() {
    let (pool, _) = database().await;
    let fakes = Fakes::start().await;
    let id = new_order(&pool).await;
    fakes.items.force_hold(id);
    let run = executor(&pool, &fakes.config(DEADLINE))
        .run(id, Mode::DeadLetter)
        .await;
    assert_eq!(run.unwrap(), Disposition::Final(Status::Failed));
    assert_eq!(
        status(&pool, id).await,
        (Status::Failed, Some(UNPROCESSABLE_REASON.into()))
    );
    assert_eq!(
        fakes.calls(id),
        ["DELETE billing", "DELETE slots", "DELETE items"]
    );
    assert_eq!(fakes.items.hold(id), Some(Hold::Released));
}

#[tokio::test]
async fn an_unknown_order_is_reported() {
    let (pool, _) = database().await;
    let fakes = Fakes::start().await;
    let run = executor(&pool, &fakes.config(DEADLINE))
        .run(Uuid::now_v7(), Mode::Normal)
        .await;
    assert_eq!(run.unwrap(), Disposition::UnknownOrder);
    assert!(fakes.journal.lock().unwrap().is_empty());
}
