//! The sagas' transitions stored together (`order_store::db::transitions`, which the executor
//! groups): in one statement, each transition is still guarded and logged on its own — one that
//! lost its race changes nothing, the others move; of two of the same order one moves; each log
//! is numbered on from that order's own rows — and a batch of transitions or reads finds its
//! orders by key however small the table was when the statement first ran.

use crate::{database, new_order};
use order_store::db::{self, NewStep, Status, StepKind, StepOutcome, Transition};
use shop_common::config::DatabaseConfig;
use time::OffsetDateTime;
use uuid::Uuid;

fn step(participant: &'static str, kind: StepKind) -> NewStep {
    let now = OffsetDateTime::now_utc();
    NewStep {
        participant,
        kind,
        outcome: StepOutcome::Ok,
        error_code: None,
        started_at: now,
        finished_at: now,
    }
}

fn action(participant: &'static str) -> NewStep {
    step(participant, StepKind::Action)
}

fn moving(
    order_id: Uuid,
    from_to: (Status, Status),
    reason: Option<&str>,
    steps: Vec<NewStep>,
) -> Transition {
    Transition::new(order_id, from_to, reason, &steps)
}

/// `id`'s status and reason, and its log as `"1 action items"` rows.
async fn recorded(pool: &sqlx::PgPool, id: Uuid) -> (Status, Option<String>, Vec<String>) {
    let order = db::find_order(pool, id).await.unwrap().unwrap();
    let log = db::saga_log(pool, id).await.unwrap();
    let rows = log
        .iter()
        .map(|s| format!("{} {} {}", s.seq, s.kind, s.participant))
        .collect();
    (order.status, order.reason, rows)
}

#[tokio::test]
async fn transitions_stored_together_are_each_guarded_and_logged_on_their_own() {
    let (pool, _) = database().await;
    let (completing, failing, finished, undone, twice) = (
        new_order(&pool).await,
        new_order(&pool).await,
        new_order(&pool).await,
        new_order(&pool).await,
        new_order(&pool).await,
    );
    // Before the batch: one order already completed by another run, one aborted with its log.
    let done = (Status::Pending, Status::Completed);
    assert!(
        db::transition(&pool, finished, done.0, done.1, None, &[action("items")])
            .await
            .unwrap()
    );
    let abort = (Status::Pending, Status::Compensating);
    let log = [action("items"), action("slots")];
    assert!(
        db::transition(&pool, undone, abort.0, abort.1, Some("No courier"), &log)
            .await
            .unwrap()
    );

    let all = [
        moving(
            completing,
            done,
            None,
            vec![action("items"), action("slots"), action("billing")],
        ),
        moving(
            failing,
            (Status::Pending, Status::Failed),
            Some("Out of stock"),
            vec![action("items")],
        ),
        moving(
            finished,
            done,
            None,
            vec![action("items"), action("slots"), action("billing")],
        ),
        moving(
            undone,
            (Status::Compensating, Status::Failed),
            None,
            vec![step("items", StepKind::Compensation)],
        ),
        moving(twice, done, None, vec![action("items")]),
        moving(
            twice,
            (Status::Pending, Status::Failed),
            Some("Out of stock"),
            vec![action("slots")],
        ),
    ];
    let moved = db::transitions(&pool, &all).await.unwrap();

    assert_eq!(moved[..4], [true, true, false, true]);
    assert_eq!(
        recorded(&pool, completing).await,
        (
            Status::Completed,
            None,
            vec![
                "1 action items".into(),
                "2 action slots".into(),
                "3 action billing".into()
            ]
        )
    );
    assert_eq!(
        recorded(&pool, failing).await,
        (
            Status::Failed,
            Some("Out of stock".into()),
            vec!["1 action items".into()]
        )
    );
    assert_eq!(
        recorded(&pool, finished).await,
        (Status::Completed, None, vec!["1 action items".into()]),
        "a transition whose guard did not hold changes nothing"
    );
    assert_eq!(
        recorded(&pool, undone).await,
        (
            Status::Failed,
            Some("No courier".into()),
            vec![
                "1 action items".into(),
                "2 action slots".into(),
                "3 compensation items".into()
            ]
        ),
        "numbered on from the order's own rows, the abort's reason kept"
    );
    // Of the two transitions of one order, exactly one moved it, with its own log alone.
    let (status, _, log) = recorded(&pool, twice).await;
    match moved[4..] {
        [true, false] => assert_eq!(
            (status, log),
            (Status::Completed, vec!["1 action items".into()])
        ),
        [false, true] => assert_eq!(
            (status, log),
            (Status::Failed, vec!["1 action slots".into()])
        ),
        ref other => panic!("both or neither of one order's transitions moved: {other:?}"),
    }
}

/// Sequential scans of `orders` so far, this connection's (of a one-connection `pool`) included.
async fn orders_scanned(pool: &sqlx::PgPool) -> i64 {
    // A backend sends its counts when it next goes idle, at most once a second unless asked.
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query_scalar("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'orders'")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Reads the orders of `batch` together (as the order API's long polls do): how many it found.
async fn read_all(pool: &sqlx::PgPool, batch: &[Transition]) -> usize {
    let wanted: Vec<db::Wanted> = batch
        .iter()
        .map(|t| db::Wanted {
            id: t.order_id,
            owner: Some("alice".to_owned()),
        })
        .collect();
    let found = db::find_orders_with_log(pool, &wanted).await.unwrap();
    found.iter().flatten().count()
}

/// A prepared statement soon runs a generic plan, costed once: one made while `orders` held a few
/// rows would hash-join a sequential scan of the whole table, forever after on that connection.
#[tokio::test]
async fn batches_find_their_orders_by_key_however_small_the_table_was_when_first_run() {
    let (_, config) = database().await;
    // One connection, so that whatever it kept from the first runs is what the last one uses.
    let one = DatabaseConfig {
        max_connections: 1,
        ..config
    };
    let pool = shop_common::db::connect_and_migrate(&one, &order_store::MIGRATOR)
        .await
        .unwrap();
    let done = (Status::Pending, Status::Completed);
    // Batches of two and of one (two forms of the statements), each moved, then read.
    let moved_and_read = async |size: usize| {
        let mut batch = Vec::new();
        for _ in 0..size {
            batch.push(moving(
                new_order(&pool).await,
                done,
                None,
                vec![action("items")],
            ));
        }
        assert_eq!(
            db::transitions(&pool, &batch).await.unwrap(),
            vec![true; size]
        );
        assert_eq!(read_all(&pool, &batch).await, size);
    };
    for _ in 0..10 {
        moved_and_read(2).await;
        moved_and_read(1).await;
    }
    sqlx::query(
        "INSERT INTO orders (id, username, amount, item, slot) \
         SELECT gen_random_uuid(), 'u' || g % 50, 100, 1, '09:00' FROM generate_series(1, 20000) g",
    )
    .execute(&pool)
    .await
    .unwrap();
    let before = orders_scanned(&pool).await;
    moved_and_read(2).await;
    moved_and_read(1).await;
    assert_eq!(
        orders_scanned(&pool).await,
        before,
        "a batch scanned the whole orders table instead of looking its orders up"
    );
}
