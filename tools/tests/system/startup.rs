//! The real order binary started while its PostgreSQL is not running (as in Kubernetes, where the
//! services may start before the database, whose headless Service does not even resolve yet):
//!
//! 1. with a tiny DB_STARTUP_WAIT_SECS it gives up: exits non-zero, saying what it waited for and
//!    for how long, never the password;
//! 2. with the default bound it waits — saying for what, staying alive, and answering every
//!    request (customers' and probes') at once with a 503 `starting` and Retry-After, never
//!    leaving a connection unanswered — while PostgreSQL is started ~10 s later, then reaches
//!    `/health/ready` 200 without ever exiting.
//!
//! The stores are the test's own (`PrivateStores`, started by `tools::stores`), so stopping PostgreSQL
//! disturbs no other test.

use shop_common::testing::outage::expect_retry_later;
use std::time::Duration;
use tokio::time::Instant;
use tools::{
    stack::{LoneService, Service},
    stores::PrivateStores,
};

/// How long PostgreSQL stays down after the service started (the acceptance: ~10 s).
const POSTGRES_LATE_BY: Duration = Duration::from_secs(10);

fn order_env(
    stores: &PrivateStores,
    database_url: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let stream = format!("orders-startup-{}", uuid::Uuid::new_v4().simple());
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut env: Vec<(String, String)> = [
        ("DATABASE_URL", database_url),
        ("REDIS_URL", stores.redis.url.as_str()),
        ("JWT_SECRET", secret.as_str()),
        ("ORDERS_STREAM", stream.as_str()),
        ("RUST_LOG", "info"),
        ("LOG_FORMAT", "pretty"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for key in ["PATH", "HOME"] {
        if let Ok(value) = std::env::var(key) {
            env.push((key.to_owned(), value));
        }
    }
    env
}

/// Waits (at most `limit`) until the service's output contains `text`, failing if it exits.
async fn until_it_says(service: &mut LoneService, text: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !service.output().contains(text) {
        if let Some(status) = service.exited().unwrap() {
            panic!(
                "exited ({status}) before saying {text:?}:\n{}",
                service.output()
            );
        }
        assert!(
            Instant::now() < deadline,
            "did not say {text:?} within {limit:?}:\n{}",
            service.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_started_before_its_postgres_waits_for_it_and_gets_ready() {
    let dir = std::env::temp_dir().join(format!("saga-startup-{}", uuid::Uuid::new_v4()));
    let stores = PrivateStores::start(&dir)
        .await
        .expect("starting private stores");
    stores.stop_postgres().await.expect("stopping PostgreSQL");
    let port = stores.postgres_port;
    // A password in the URL (trust auth ignores it) that must never be printed.
    let database_url = format!("postgres://postgres:pw-never-logged@127.0.0.1:{port}/postgres");
    let target = format!("Postgres postgres@127.0.0.1:{port}/postgres");

    // 1. A tiny bound: it gives up, clearly.
    let mut impatient = LoneService::start(
        Service::Order,
        order_env(&stores, &database_url, &[("DB_STARTUP_WAIT_SECS", "1")]),
        dir.join("order-impatient.log"),
    )
    .expect("starting order");
    let status = impatient
        .wait_exit(Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e:#}:\n{}", impatient.output()));
    let output = impatient.output();
    assert!(!status.success(), "{output}");
    assert!(
        output.contains(&format!("gave up waiting for {target} after 1s")),
        "{output}"
    );
    assert!(!output.contains("pw-never-logged"), "{output}");

    // 2. The default bound: PostgreSQL comes ~10 s later, the service waits and gets ready.
    let mut order = LoneService::start(
        Service::Order,
        order_env(&stores, &database_url, &[]),
        dir.join("order.log"),
    )
    .expect("starting order");
    let started = Instant::now();
    until_it_says(
        &mut order,
        "waiting for the database",
        Duration::from_secs(10),
    )
    .await;
    assert!(order.output().contains(&target), "{}", order.output());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    for path in ["/api/orders", "/health/ready", "/health/live"] {
        expect_retry_later(http.get(format!("{}{path}", order.url())), "starting").await;
    }
    while started.elapsed() < POSTGRES_LATE_BY {
        if let Some(status) = order.exited().unwrap() {
            panic!(
                "exited ({status}) while PostgreSQL was down:\n{}",
                order.output()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stores.start_postgres().await.expect("starting PostgreSQL");

    let ready = format!("{}/health/ready", order.url());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = order.exited().unwrap() {
            panic!(
                "exited ({status}) instead of getting ready:\n{}",
                order.output()
            );
        }
        if let Ok(r) = http.get(&ready).send().await
            && r.status() == reqwest::StatusCode::OK
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready 30 s after PostgreSQL started:\n{}",
            order.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        order.output().contains("the database is reachable"),
        "{}",
        order.output()
    );
    assert!(!order.output().contains("pw-never-logged"));
    drop(order);
    drop(stores);
}
