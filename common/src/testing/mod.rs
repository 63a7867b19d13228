//! Test support (feature `testing`): a fresh database per test, the test Redis, fixed secrets, a
//! service started for a test through its real `run` ([`start`]), the [`ledger`] kit the three saga
//! participants' tests share, and [`outage`]: a store that goes down in the middle of a test.
//! Each service's integration tests are one binary (`tests/api/main.rs`) whose `helpers` module
//! only builds the service's configuration and calls [`start`]; the public API is driven through
//! the shared `shop-client` where a test acts as a client.
//! Integration tests need the private Postgres and Redis that `make test` starts; without them a
//! test fails with a message saying so, it never skips silently.

pub mod ledger;
pub mod outage;

use crate::config::ExposeSecret;
use crate::config::{
    DatabaseConfig, HttpConfig, InternalTokenConfig, JwtSecretConfig, ParticipantConfig,
    SecretString, ServerConfig,
};
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool, migrate::Migrator};
use std::{fmt::Debug, future::Future};
use tokio::net::TcpListener;
use uuid::Uuid;

pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef0123456789";
pub const INTERNAL_TOKEN: &str = "test-internal-token-0123456789";

/// Strong enough for start-up's checks (`config::check_secret_strength`); see its test below.
pub fn jwt_secret() -> JwtSecretConfig {
    JwtSecretConfig {
        secret: SecretString::from(JWT_SECRET),
    }
}

pub fn internal_token() -> InternalTokenConfig {
    InternalTokenConfig {
        secret: SecretString::from(INTERNAL_TOKEN),
    }
}

pub fn http() -> HttpConfig {
    HttpConfig::for_tests()
}

/// A service's server on loopback (port 0) and `database`.
pub fn server(database: DatabaseConfig) -> ServerConfig {
    ServerConfig {
        http: http(),
        database,
    }
}

/// A saga participant on loopback (port 0), `database` and the test token.
pub fn participant(database: DatabaseConfig) -> ParticipantConfig {
    ParticipantConfig {
        http: http(),
        database,
        internal_token: internal_token(),
    }
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
pub fn redis_url() -> SecretString {
    SecretString::from(std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| {
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
        url: SecretString::from(format!("{base}/{name}")),
        max_connections: 10,
        // The test Postgres is up: a test that finds it down fails soon, saying so.
        startup_wait: std::time::Duration::from_secs(5),
        statement_timeout: std::time::Duration::from_secs(5),
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

/// A migration as it was released: what sqlx recorded in `_sqlx_migrations` of every database
/// that applied it (the checksum is the SHA-384 of its SQL, in hex).
#[derive(Debug)]
pub struct Released {
    pub version: i64,
    pub description: &'static str,
    pub checksum: &'static str,
}

/// Asserts that `migrator` starts with exactly the `released` migrations: sqlx refuses to start on
/// a database where an applied migration's checksum differs ("previously applied but has been
/// modified"), so a database migrated by an older build keeps working only if they match.
pub fn assert_released(migrator: &Migrator, released: &[Released]) {
    let ours: Vec<(i64, String, String)> = migrator
        .iter()
        .take(released.len())
        .map(|m| {
            let checksum = m.checksum.iter().map(|b| format!("{b:02x}")).collect();
            (m.version, m.description.to_string(), checksum)
        })
        .collect();
    let expected: Vec<(i64, String, String)> = released
        .iter()
        .map(|r| (r.version, r.description.into(), r.checksum.into()))
        .collect();
    assert_eq!(ours, expected, "a released migration was modified");
}

/// A bearer token for `username`, signed with the test secret.
pub fn access_token(username: &str) -> String {
    token_with_role(username, None)
}

/// A bearer token for the operator `username` (the `admin` role).
pub fn admin_token(username: &str) -> String {
    token_with_role(username, Some(crate::auth::Role::Admin))
}

fn token_with_role(username: &str, role: Option<crate::auth::Role>) -> String {
    crate::auth::JwtKeys::new(&jwt_secret())
        .issue_with_role(
            username,
            role,
            crate::auth::TokenKind::Access,
            std::time::Duration::from_secs(600),
        )
        .expect("issuing a test token")
}

/// A response reduced to what tests compare: the status and the JSON body.
pub type Answer = (u16, Value);

/// Sends `request` and reduces the response to an [`Answer`]; every endpoint answers JSON, errors
/// included, so a body that is not JSON fails the test.
pub async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let r = request.send().await.expect("the service answered");
    let status = r.status().as_u16();
    (status, r.json().await.expect("a JSON body"))
}

/// The machine `error` code of an answer, `""` for a success.
pub fn code(answer: &Answer) -> &str {
    answer.1["error"].as_str().unwrap_or("")
}

/// A service started for a test: where it listens, and its database for checks behind its back.
pub struct Service {
    pub base: String,
    pub http: reqwest::Client,
    pub pool: PgPool,
    pub database: DatabaseConfig,
}

impl Service {
    /// `GET <base><path>`, without credentials.
    pub async fn get(&self, path: &str) -> Answer {
        answer(self.http.get(format!("{}{path}", self.base))).await
    }
}

/// How long [`start`] waits for a service to get ready.
const STARTUP_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// Starts a service through its real entry point, `run(listener)` (so migrations and seeding are
/// under test too), on a loopback port; waits until it is ready and connects a pool to `database`,
/// which may already hold an earlier instance's data (a restart).
pub async fn start<F>(
    name: &str,
    database: DatabaseConfig,
    run: impl FnOnce(TcpListener) -> F,
) -> Service
where
    F: Future + Send + 'static,
    F::Output: Debug + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a test port");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    let server = tokio::spawn(run(listener));
    let http = reqwest::Client::new();
    // `run` answers 503 `starting` until it has migrated and seeded.
    let ready = format!("{base}/health/ready");
    let deadline = tokio::time::Instant::now() + STARTUP_WITHIN;
    loop {
        let answer = http.get(&ready).send().await;
        if matches!(&answer, Ok(r) if r.status() == 200) {
            break;
        }
        if server.is_finished() || tokio::time::Instant::now() > deadline {
            let server = match server.is_finished() {
                true => format!("{:?}", server.await),
                false => "still running".into(),
            };
            panic!("{name} did not start within {STARTUP_WITHIN:?}: {answer:?}; server: {server}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let pool = PgPool::connect(database.url.expose_secret())
        .await
        .expect("test pool");
    Service {
        base,
        http,
        pool,
        database,
    }
}

/// Polls `check` until it holds, for at most `within`: a test waits, bounded, for what must
/// happen, and fails naming `what` if it does not.
pub async fn eventually(
    within: std::time::Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> bool,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Runs `future` on a fresh multi-threaded runtime, for tests that are not `#[tokio::test]`s
/// (proptest cases); several workers so that concurrent requests really overlap on the server.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{INTERNAL_TOKEN_MIN_BYTES, JWT_SECRET_MIN_BYTES, check_secret_strength};

    #[test]
    fn the_test_secrets_pass_the_start_up_checks() {
        assert_eq!(
            check_secret_strength(JWT_SECRET, JWT_SECRET_MIN_BYTES),
            Ok(())
        );
        assert_eq!(
            check_secret_strength(INTERNAL_TOKEN, INTERNAL_TOKEN_MIN_BYTES),
            Ok(())
        );
    }
}
