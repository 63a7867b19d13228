//! `make fuzz` and the fuzz step of `make test` behind `shop fuzz`: schemathesis derives requests
//! from the stack's own OpenAPI document (`/api/openapi.json`) — examples, boundary values, random
//! data, and stateful sequences that follow the document's links (sign up -> log in, order ->
//! read -> cancel) — and checks every answer: no 5xx, only documented statuses and content types,
//! bodies that match their schemas. It runs with an operator's token (an `ADMIN_USERS` name), so
//! that the customers' and the operators' authorised paths are really exercised, not just their
//! 401s.
//!
//! It prints one `RESULT {...}` line: requests made (from the HAR record), operations tested,
//! test cases, failures. Any failure, or fewer requests than `--min-requests`, fails the run.

use crate::{
    checks::child_status,
    local::{self, repo_root},
    procs,
};
use anyhow::{Context, Result, ensure};
use shop_client::{Endpoints, ShopClient};
use std::{path::Path, time::Duration};
use tokio::process::Command;

/// The operator the fuzzer signs up and runs as: the stack must list it in `ADMIN_USERS`.
pub const FUZZ_OPERATOR: &str = "fuzzer";

/// What schemathesis checks on every answer.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

#[derive(clap::Args, Debug)]
pub struct FuzzArgs {
    /// The gateway of a running stack whose ADMIN_USERS include `fuzzer` (default: start one
    /// under .state/fuzz on the 19xxx ports and stop it afterwards).
    #[arg(long, env = "FUZZ_BASE_URL")]
    pub base_url: Option<String>,
    /// Test cases per operation and phase (schemathesis `--max-examples`).
    #[arg(long, default_value_t = 1000)]
    pub max_examples: u32,
    /// Fail unless the run made at least this many requests.
    #[arg(long, default_value_t = 10_000)]
    pub min_requests: usize,
    /// schemathesis' seed, to repeat a run.
    #[arg(long)]
    pub seed: Option<String>,
}

/// What one run found.
#[derive(Debug, serde::Serialize)]
pub struct FuzzResult {
    pub requests: usize,
    pub operations: u64,
    pub test_cases: u64,
    pub failures: u64,
    pub seconds: f64,
    pub seed: String,
}

/// `shop fuzz`: the exit code.
pub async fn run(args: FuzzArgs) -> Result<i32> {
    let (base_url, stack) = match args.base_url.clone() {
        Some(url) => (url, None),
        None => {
            let state = repo_root().join(".state/fuzz");
            let bin_dir = procs::default_bin_dir()?;
            let operators = [("ADMIN_USERS", FUZZ_OPERATOR.to_owned())];
            let env = local::start_in_background(&bin_dir, &state, 19_000, &operators).await?;
            let url = env
                .get("BASE_URL")
                .context("the fuzz stack's env has no BASE_URL")?
                .clone();
            (url, Some(state))
        }
    };
    let outcome = fuzz(&base_url, &args).await;
    if let Some(state) = stack {
        println!("==> stopping the fuzz stack");
        local::stop(&state, false).await?;
    }
    let result = outcome?;
    let verdict = check(&result, args.min_requests);
    if let Err(e) = &verdict {
        eprintln!("error: {e:#}");
    }
    Ok(if verdict.is_ok() { 0 } else { 1 })
}

/// One schemathesis run against `base_url`, as the operator.
pub async fn fuzz(base_url: &str, args: &FuzzArgs) -> Result<FuzzResult> {
    let client = ShopClient::new(Endpoints::gateway(base_url), Duration::from_secs(15))?;
    let password = procs::random_secret();
    let operator = client
        .register(FUZZ_OPERATOR, &password)
        .await
        .context("signing up the fuzzing operator (is it already taken on this stack?)")?;
    let reports = repo_root().join(".state/fuzz-report");
    std::fs::create_dir_all(&reports).with_context(|| format!("creating {}", reports.display()))?;
    let (json, har) = (reports.join("run.json"), reports.join("requests.har"));
    let mut command = Command::new("bash");
    command
        .arg(repo_root().join("scripts/schemathesis.sh"))
        .arg("run")
        .arg(format!("{base_url}/api/openapi.json"))
        .args([
            "--header",
            &format!("Authorization: Bearer {}", operator.token),
        ])
        .args(["--checks", CHECKS])
        .args(["--max-examples", &args.max_examples.to_string()])
        .args(["--report", "json,har"])
        .arg("--report-json-path")
        .arg(&json)
        .arg("--report-har-path")
        .arg(&har)
        .arg("--no-color");
    if let Some(seed) = &args.seed {
        command.args(["--seed", seed]);
    }
    let status = child_status(&mut command).await?;
    let result = read_reports(&json, &har)?;
    println!("RESULT {}", serde_json::to_string(&result)?);
    ensure!(
        result.failures > 0 || status.success(),
        "schemathesis exited with {status} (see its output above)"
    );
    Ok(result)
}

fn read_reports(json: &Path, har: &Path) -> Result<FuzzResult> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    };
    let parse = |path: &Path, text: &str| -> Result<serde_json::Value> {
        serde_json::from_str(text).with_context(|| format!("parsing {}", path.display()))
    };
    let run_text = read(json)?;
    let (run, requests) = (parse(json, &run_text)?, parse(har, &read(har)?)?);
    // The seed is a 128-bit integer: as written, not as a JSON number (an f64) would read it.
    let seed: String = run_text
        .split_once("\"seed\":")
        .map(|(_, after)| {
            after
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect()
        })
        .unwrap_or_default();
    let number = |pointer: &str| {
        run.pointer(pointer)
            .and_then(serde_json::Value::as_u64)
            .with_context(|| format!("{pointer} in {}", json.display()))
    };
    Ok(FuzzResult {
        requests: requests
            .pointer("/log/entries")
            .and_then(serde_json::Value::as_array)
            .map_or(0, Vec::len),
        operations: number("/operations/tested")?,
        test_cases: number("/test_cases/generated")?,
        failures: number("/test_cases/unique_failures")?,
        seconds: run["running_time"].as_f64().unwrap_or_default(),
        seed,
    })
}

/// A run passes with no failure and at least `min_requests` requests.
pub fn check(result: &FuzzResult, min_requests: usize) -> Result<()> {
    ensure!(
        result.failures == 0,
        "schemathesis found {} failure(s): fix the code or the spec (its output above says where)",
        result.failures
    );
    ensure!(
        result.requests >= min_requests,
        "only {} requests, fewer than {min_requests}",
        result.requests
    );
    Ok(())
}
