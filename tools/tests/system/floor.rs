//! The bench's floor scripts (tools/src/floor.pgbench, and floor-batched.pgbench of the
//! fewer-commits evaluation) run for real by pgbench against schemas the services' own migrators
//! made: every "saga" of them does a completed saga's durable work — the
//! order stored and completed with its three saga-log rows, one hold in each participant, the
//! resources taken — and none fails. A schema change the script no longer fits breaks this test.

use sqlx::{Connection, PgConnection, postgres::PgConnectOptions};
use std::str::FromStr;
use tools::floor::{self, Length, Script, Target};

const CLIENTS: u32 = 2;
const TRANSACTIONS_PER_CLIENT: u32 = 3;

#[tokio::test]
async fn every_floor_saga_does_a_completed_sagas_durable_work() {
    check(Script::PerSaga, 1).await;
}

/// The fewer-commits design of the evaluation: the same durable work, per saga, in batches.
#[tokio::test]
async fn every_batched_floor_saga_does_a_completed_sagas_durable_work() {
    check(Script::Batched(4), 4).await;
}

async fn check(script: Script, sagas_per_transaction: u32) {
    let url = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL (make test sets it)");
    let admin = PgConnectOptions::from_str(&url).expect("TEST_DATABASE_URL is a Postgres URL");
    let target = Target {
        host: admin.get_host().to_owned(),
        port: admin.get_port(),
        bin: tools::stores::find_pg_bin().expect("the PostgreSQL binaries"),
        database: format!("floor_test_{}", uuid::Uuid::new_v4().simple()),
    };
    floor::prepare(&target).await.expect("preparing the floor");
    let run = floor::run(
        &target,
        script,
        CLIENTS,
        Length::Transactions(TRANSACTIONS_PER_CLIENT),
    )
    .await
    .expect("running pgbench");
    assert_eq!(run.failed, 0);
    assert!(run.sagas_per_s > 0.0);

    let sagas = i64::from(CLIENTS * TRANSACTIONS_PER_CLIENT * sagas_per_transaction);
    let mut db = PgConnection::connect_with(&target.options(&target.database))
        .await
        .expect("connecting to the floor database");
    let scalar = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
    let completed = scalar("SELECT count(*) FROM orders.orders WHERE status = 'completed'");
    assert_eq!(completed.fetch_one(&mut db).await.unwrap(), sagas);
    let logged = scalar(
        "SELECT count(*) FROM orders.saga_steps s JOIN orders.orders o ON o.id = s.order_id \
         WHERE s.kind = 'action' AND s.outcome = 'ok'",
    );
    assert_eq!(logged.fetch_one(&mut db).await.unwrap(), 3 * sagas);
    // (participant, its resource table, how much of it is given out, the quantity per saga)
    for (schema, table, given_out, quantity) in [
        ("billing", "accounts", "100000000 - wallet", 100),
        ("items", "items", "100000000 - stock", 1),
        ("slots", "slots", "capacity - free_couriers", 1),
    ] {
        let held = format!(
            "SELECT count(*) FROM {schema}.holds WHERE state = 'held' AND quantity = {quantity}"
        );
        let held = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(held));
        assert_eq!(held.fetch_one(&mut db).await.unwrap(), sagas, "{schema}");
        let taken = format!("SELECT sum({given_out})::bigint FROM {schema}.{table}");
        let taken = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(taken));
        assert_eq!(
            taken.fetch_one(&mut db).await.unwrap(),
            quantity * sagas,
            "{schema}"
        );
    }
    drop(db);
    let mut admin = PgConnection::connect_with(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {} WITH (FORCE)",
        target.database
    )))
    .execute(&mut admin)
    .await
    .unwrap();
}
