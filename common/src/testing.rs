//! Test support (feature `testing`): a fresh database per test, the test Redis, fixed secrets.
//! Integration tests need the private Postgres and Redis that `make test` starts; without them a
//! test fails with a message saying so, it never skips silently.

use crate::config::{DatabaseConfig, HttpConfig, Secret};
use sqlx::{Connection, PgConnection, PgPool, migrate::Migrator};
use uuid::Uuid;

pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef0123456789";
pub const INTERNAL_TOKEN: &str = "test-internal-token-0123456789";

pub fn jwt_secret() -> Secret {
    Secret::new(JWT_SECRET)
}

pub fn internal_token() -> Secret {
    Secret::new(INTERNAL_TOKEN)
}

pub fn http() -> HttpConfig {
    HttpConfig::for_tests()
}

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "TEST_DATABASE_URL is not set: integration tests need a real Postgres. \
             Run `make test` (it starts a private one), or export \
             TEST_DATABASE_URL=postgres://postgres@127.0.0.1:<port>/postgres"
        )
    })
}

/// The test Redis, from `TEST_REDIS_URL`.
pub fn redis_url() -> Secret {
    Secret::new(std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "TEST_REDIS_URL is not set: integration tests need a real Redis. \
             Run `make test` (it starts a private one), or export \
             TEST_REDIS_URL=redis://127.0.0.1:<port>"
        )
    }))
}

/// Creates an empty database with a unique name and returns its config (not yet migrated).
pub async fn fresh_database() -> DatabaseConfig {
    let admin = admin_url();
    let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!("cannot connect to the test Postgres at TEST_DATABASE_URL ({e}); is it running?")
    });
    let name = format!("test_{}", Uuid::new_v4().simple());
    // `name` is generated here, never user input.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("creating a test database");
    let (base, _) = admin
        .rsplit_once('/')
        .expect("TEST_DATABASE_URL has a path");
    DatabaseConfig {
        url: Secret::new(format!("{base}/{name}")),
        max_connections: 10,
    }
}

/// A fresh database with `migrator` applied.
pub async fn migrated_pool(migrator: &Migrator) -> (PgPool, DatabaseConfig) {
    let config = fresh_database().await;
    let pool = crate::db::connect_and_migrate(&config, migrator)
        .await
        .expect("migrating the test database");
    (pool, config)
}

/// Serves `app` on a random loopback port for the rest of the test; returns its base URL.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a test port");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    tokio::spawn(crate::http::serve(listener, app, std::future::pending()));
    base
}

/// A bearer token for `username`, signed with the test secret.
pub fn access_token(username: &str) -> String {
    crate::auth::JwtKeys::new(&jwt_secret())
        .issue(
            username,
            crate::auth::TokenKind::Access,
            std::time::Duration::from_secs(600),
        )
        .expect("issuing a test token")
}
