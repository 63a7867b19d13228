//! `chaos` has teeth: the same small run (no faults, so that only the build differs) exits 0 on
//! the real mediator and 1 on a mediator whose item compensations are recorded as done without
//! being sent (the test-only `--broken-compensation items`, i.e. MEDIATOR_BROKEN_COMPENSATION).
//! Every order refused by slots or billing then leaves its item reserved, which the audit must
//! report as `held-for-failed` and nothing else.
//!
//! Runs the real `chaos` binary against `TEST_DATABASE_URL` / `TEST_REDIS_URL` (fails, never
//! skips, without them).

use serde_json::Value;
use std::process::Command;

/// Runs a short fault-free chaos with `extra` arguments; returns (exit code, RESULT json).
fn chaos(extra: &[&str]) -> (Option<i32>, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args([
            "--orders",
            "150",
            "--users",
            "10",
            "--mediators",
            "1",
            "--kills",
            "0",
            "--pauses",
            "0",
            "--lost-replies",
            "0",
            "--delays",
            "0",
            "--redis-restarts",
            "0",
            "--postgres-restarts",
            "0",
            "--seed",
            "1",
            // A loaded test machine may be slow; nothing here is about speed.
            "--resume-within",
            "120s",
        ])
        .args(extra)
        .output()
        .expect("running chaos");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "chaos printed no RESULT line:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    (output.status.code(), serde_json::from_str(result).unwrap())
}

#[test]
fn chaos_passes_the_real_mediator_and_fails_a_broken_compensation() {
    // Enough refusals by slots and billing (each compensates the item) among 150; no cancels.
    let failures = [
        "--mix",
        "success=50,no-money=25,no-slot=25",
        "--cancel-share",
        "0",
    ];
    let (code, result) = chaos(&failures);
    assert_eq!(code, Some(0), "the control run must pass: {result}");
    assert_eq!(result["violations"], 0, "{result}");

    let (code, result) = chaos(&[&failures[..], &["--broken-compensation", "items"]].concat());
    assert_eq!(
        code,
        Some(1),
        "a broken compensation must fail chaos: {result}"
    );
    let audit = result["audit_violations"]
        .as_object()
        .unwrap_or_else(|| panic!("no audit_violations: {result}"));
    let checks: Vec<&str> = audit.keys().map(String::as_str).collect();
    assert_eq!(checks, ["held-for-failed"], "{result}");
    let failed = result["failed"].as_u64().unwrap();
    assert!(failed > 0, "{result}");
    assert_eq!(
        audit["held-for-failed"].as_u64(),
        Some(failed),
        "every failed order (all refused after the item was reserved) left its item held: {result}"
    );
}

/// The same for the customer's cancels: every order succeeds unless cancelled, and with item
/// compensations broken a cancelled order keeps its item (unless the cancel came before the
/// saga took it) — `held-for-cancelled`, and nothing else; the real mediator gives everything
/// back.
#[test]
fn chaos_catches_a_cancel_that_gives_nothing_back() {
    let cancels = ["--mix", "success=100", "--cancel-share", "0.3"];
    let (code, result) = chaos(&cancels);
    assert_eq!(code, Some(0), "the control run must pass: {result}");
    assert!(result["cancelled"].as_u64().unwrap() > 0, "{result}");

    let (code, result) = chaos(&[&cancels[..], &["--broken-compensation", "items"]].concat());
    assert_eq!(
        code,
        Some(1),
        "a cancel that keeps the item must fail chaos: {result}"
    );
    let audit = result["audit_violations"].as_object().unwrap();
    let checks: Vec<&str> = audit.keys().map(String::as_str).collect();
    assert_eq!(checks, ["held-for-cancelled"], "{result}");
    let kept = audit["held-for-cancelled"].as_u64().unwrap();
    assert!(
        kept > 0 && kept <= result["cancelled"].as_u64().unwrap(),
        "{result}"
    );
}
