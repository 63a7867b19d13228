//! Start-up of the real billing binary (it reads both secrets: it verifies JWTs and is a saga
//! participant) with a weak `JWT_SECRET` or `INTERNAL_TOKEN`: it must refuse to start, name the
//! variable, and never print the value.

use shop_common::testing;
use std::{process::Stdio, time::Duration};
use tokio::process::Command;

/// A refusal is immediate (it happens while parsing the configuration, before any connection).
const EXIT_WITHIN: Duration = Duration::from_secs(20);

struct Refusal {
    code: Option<i32>,
    said: String,
}

/// billing with the test secrets, `variable` set to `value`, and a malformed database URL: past
/// the configuration, start-up stops at once on that URL (exit 1), so every run ends quickly and
/// the exit status and message tell which check stopped it.
async fn start_billing_with(variable: &str, value: &str) -> Refusal {
    let child = Command::new(env!("CARGO_BIN_EXE_billing"))
        .env_clear()
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("DATABASE_URL", "not-a-url")
        .env("JWT_SECRET", testing::JWT_SECRET)
        .env("INTERNAL_TOKEN", testing::INTERNAL_TOKEN)
        .env(variable, value)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting the billing binary");
    let output = tokio::time::timeout(EXIT_WITHIN, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("billing started with {variable}={value:?} and did not exit"))
        .expect("waiting for billing");
    Refusal {
        code: output.status.code(),
        said: String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout),
    }
}

async fn assert_refused(variable: &str, value: &str, why: &str) {
    let refusal = start_billing_with(variable, value).await;
    assert_eq!(
        refusal.code,
        Some(2),
        "exit status; it said: {}",
        refusal.said
    );
    assert!(
        refusal
            .said
            .starts_with(&format!("error: environment variable {variable} {why}")),
        "{}",
        refusal.said
    );
    assert!(
        !refusal.said.contains(value),
        "printed the secret: {}",
        refusal.said
    );
}

#[tokio::test]
async fn a_placeholder_jwt_secret_is_refused() {
    assert_refused(
        "JWT_SECRET",
        "change-me-jwt-secret-this-placeholder-is-64-bytes-long-0123456789",
        "is a placeholder",
    )
    .await;
}

#[tokio::test]
async fn a_placeholder_internal_token_is_refused() {
    assert_refused(
        "INTERNAL_TOKEN",
        "Change-Me-internal-token-placeholder-0123456789",
        "is a placeholder",
    )
    .await;
}

#[tokio::test]
async fn a_regular_pattern_is_refused() {
    assert_refused("JWT_SECRET", &"01".repeat(32), "has only 2 distinct bytes").await;
    assert_refused(
        "INTERNAL_TOKEN",
        &"z".repeat(40),
        "has only 1 distinct bytes",
    )
    .await;
}

#[tokio::test]
async fn a_short_secret_is_refused() {
    assert_refused(
        "JWT_SECRET",
        "3f9a0c1e7b2d4f6a",
        "must be at least 32 bytes long",
    )
    .await;
}

/// The control: with the same harness and strong secrets, start-up gets past the configuration
/// and stops on the malformed database URL instead.
#[tokio::test]
async fn strong_secrets_pass_the_check() {
    let started = start_billing_with("JWT_SECRET", testing::JWT_SECRET).await;
    assert_eq!(started.code, Some(1), "{}", started.said);
    assert!(
        started
            .said
            .contains("DATABASE_URL is not a valid Postgres URL"),
        "{}",
        started.said
    );
    assert!(!started.said.contains("JWT_SECRET"), "{}", started.said);
}
