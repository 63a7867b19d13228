//! Start-up against a real Postgres (shown on order's migrations; every service starts through the
//! same `shop_common::db::connect_and_migrate`): a database that is not there yet is waited for,
//! within DB_STARTUP_WAIT_SECS, then given up with an error naming it (never its password); an
//! error waiting cannot fix is not waited for; replicas starting together apply each migration
//! once. (The whole binary started before its Postgres: tools/tests/system/startup.rs.)

use shop_common::{
    config::{DatabaseConfig, SecretString},
    db::connect_and_migrate,
    testing::{self, outage::Link},
};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A loopback port nobody listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn database(url: String, startup_wait: Duration) -> DatabaseConfig {
    DatabaseConfig {
        url: SecretString::from(url),
        max_connections: 4,
        startup_wait,
        statement_timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn a_database_that_never_comes_is_given_up_after_the_bound_with_a_clear_error() {
    let port = closed_port();
    let unreachable = [
        // connection refused
        (
            format!("postgres://orders:s3cret-pw@127.0.0.1:{port}/orders"),
            format!("Postgres orders@127.0.0.1:{port}/orders"),
        ),
        // a host name that does not resolve (as a headless Service before its pod is Ready)
        (
            "postgres://orders:s3cret-pw@postgres.invalid:5432/orders".to_owned(),
            "Postgres orders@postgres.invalid:5432/orders".to_owned(),
        ),
    ];
    for (url, target) in unreachable {
        let started = Instant::now();
        let error = connect_and_migrate(
            &database(url, Duration::from_secs(1)),
            &order_store::MIGRATOR,
        )
        .await
        .expect_err("nothing listens there");
        let waited = started.elapsed();
        let message = format!("{error:#}");
        assert!(
            message.starts_with(&format!("gave up waiting for {target} after 1s (")),
            "{message}"
        );
        assert!(message.contains("DB_STARTUP_WAIT_SECS"), "{message}");
        assert!(
            !message.contains("s3cret-pw"),
            "the password leaked: {message}"
        );
        assert!(
            waited >= Duration::from_secs(1),
            "gave up after {waited:?}, before the bound"
        );
        assert!(
            waited < Duration::from_secs(10),
            "gave up only after {waited:?}"
        );
    }
}

#[tokio::test]
async fn a_missing_database_is_not_waited_for() {
    let admin = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL (see testing)");
    let (server, _) = admin.rsplit_once('/').expect("a database in the URL");
    let name = format!("no_such_db_{}", Uuid::new_v4().simple());
    let started = Instant::now();
    let error = connect_and_migrate(
        &database(format!("{server}/{name}"), Duration::from_secs(60)),
        &order_store::MIGRATOR,
    )
    .await
    .expect_err("the database does not exist");
    let message = format!("{error:#}");
    assert!(message.contains("not retried"), "{message}");
    assert!(
        message.contains(&format!("database \"{name}\" does not exist")),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "waited {:?} for something waiting cannot fix",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_database_that_comes_later_is_waited_for() {
    let fresh = testing::fresh_database().await;
    let (link, via_link) = Link::to_database(&fresh).await;
    link.cut().await;
    let starting = tokio::spawn(async move {
        let config = DatabaseConfig {
            startup_wait: Duration::from_secs(60),
            ..via_link
        };
        connect_and_migrate(&config, &order_store::MIGRATOR).await
    });
    // Refused for a while: still waiting, not failed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !starting.is_finished(),
        "gave up while the database was down"
    );
    link.restore().await;
    let pool = tokio::time::timeout(Duration::from_secs(30), starting)
        .await
        .expect("connected within 30 s of the database coming back")
        .unwrap()
        .expect("connected and migrated");
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(orders, 0, "migrated");
}

/// Several replicas (and order + mediator, which share the database) starting at once: sqlx's
/// advisory lock serialises them, so every one starts and each migration is applied once.
#[tokio::test]
async fn replicas_starting_together_apply_each_migration_once() {
    let fresh = testing::fresh_database().await;
    let starts = (0..6).map(|_| connect_and_migrate(&fresh, &order_store::MIGRATOR));
    let pools: Vec<_> = futures::future::join_all(starts)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("every replica started");
    let (applied, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT version) FROM _sqlx_migrations WHERE success",
    )
    .fetch_one(&pools[0])
    .await
    .unwrap();
    let expected = order_store::MIGRATOR.iter().count() as i64;
    assert_eq!((applied, distinct), (expected, expected));
}
