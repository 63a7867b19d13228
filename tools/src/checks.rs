//! `make test` and `make chaos` behind `shop test` and `shop chaos`: every check of the project, in
//! order, failing fast, with a summary of each step's outcome and time.
//!
//! | step        | what                                                                          |
//! |-------------|-------------------------------------------------------------------------------|
//! | fmt         | `cargo fmt --all -- --check`                                                  |
//! | clippy      | `cargo clippy --workspace --all-targets -- -D warnings`                       |
//! | nextest     | `cargo nextest run --workspace --no-fail-fast` against a private PostgreSQL and Redis (`TEST_DATABASE_URL`, `TEST_REDIS_URL`) under `.state/test` |
//! | lint-deploy | `scripts/lint-deploy.sh` (the linters come from PyPI)                         |
//! | e2e         | the whole stack, as `make run` starts it, under `.state/e2e` on the 18xxx ports; a smoke test through its gateway |
//! | newman      | `scripts/newman.sh` against that stack's gateway                             |
//! | browser     | `scripts/browser.sh`: the shop page and the console walked in headless Chromium (browser/journey.mjs) against that stack |
//! | fuzz        | [`crate::fuzz`], short: schemathesis from that stack's OpenAPI document       |
//! | chaos       | [`chaos`] `--short`: faults under load, then the audit                       |
//!
//! `scripts/test.sh` installs the packages and builds the tests and binaries (the binaries the
//! debug e2e stack and chaos run are the ones that build made: a `cargo build` of the binaries alone
//! would resolve other dependency features and compile everything again), then hands over here.
//!
//! Steps to skip come from `--skip` / `TEST_SKIP` (local iterations); under CI (`CI` set) a skipped
//! step fails the run, so that a green CI means every kind of check ran. Every child runs in its
//! own process group: Ctrl-C or SIGTERM stops the running step's processes and every stack or store
//! a step started, then prints the summary.

use crate::{
    client::{CallError, Endpoints, ShopClient},
    fuzz::{self, FUZZ_OPERATOR, FuzzArgs},
    local::{self, repo_root},
    procs,
    stores::PrivateStores,
};
use anyhow::{Context, Result, ensure};
use clap::ValueEnum;
use std::{
    ffi::OsString,
    io::IsTerminal,
    path::PathBuf,
    process::ExitStatus,
    time::{Duration, Instant},
};
use tokio::{
    process::Command,
    signal::unix::{Signal, SignalKind, signal},
};

/// The steps of `make test`, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Step {
    Fmt,
    Clippy,
    Nextest,
    LintDeploy,
    E2e,
    Newman,
    Browser,
    Fuzz,
    Chaos,
}

impl Step {
    const ALL: [Step; 9] = [
        Step::Fmt,
        Step::Clippy,
        Step::Nextest,
        Step::LintDeploy,
        Step::E2e,
        Step::Newman,
        Step::Browser,
        Step::Fuzz,
        Step::Chaos,
    ];

    /// The last of the steps that run against the e2e stack: it is stopped after this one.
    const LAST_ON_E2E: Step = Step::Fuzz;

    fn needs_e2e(self) -> bool {
        matches!(self, Step::Newman | Step::Browser | Step::Fuzz)
    }

    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// The cargo profile of the binaries the e2e stack and chaos run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    /// What the test build already made: no second build.
    Debug,
    /// `cargo build --workspace --bins --release` first.
    Release,
}

/// `shop test`'s settings.
#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// Steps to skip, separated by spaces or commas (local iterations only: under CI a skipped
    /// step fails the run).
    #[arg(long, env = "TEST_SKIP", value_parser = parse_steps, default_value = "")]
    pub skip: Steps,
    /// Set by CI: every step must run.
    #[arg(long, env = "CI", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub ci: bool,
    /// The cargo profile of the e2e stack and of chaos.
    #[arg(long, env = "E2E_PROFILE", value_enum, default_value = "debug")]
    pub profile: Profile,
}

#[derive(Clone, Debug, Default)]
pub struct Steps(Vec<Step>);

fn parse_steps(text: &str) -> Result<Steps, String> {
    text.split([' ', ','])
        .filter(|name| !name.is_empty())
        .map(|name| Step::from_str(name, true))
        .collect::<Result<_, _>>()
        .map(Steps)
}

/// `shop chaos`'s settings.
#[derive(clap::Args, Debug)]
pub struct ChaosArgs {
    /// Where the binaries are (default: next to this program).
    #[arg(long, env = "BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Passed to `chaos` (e.g. `--short`, `--orders 20000 --kills 100`, `--seed N`; see `chaos --help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub chaos_args: Vec<OsString>,
}

/// `shop test`: runs the steps, prints the summary; returns the exit code.
pub async fn test(args: TestArgs) -> Result<i32> {
    let skip = args.skip.0;
    let mut interrupt = Interrupt::new()?;
    let mut report = Report::new();
    let mut run = TestRun {
        profile: args.profile,
        e2e: None,
    };
    let mut code = 0;
    for step in Step::ALL {
        let why_skipped = if skip.contains(&step) {
            Some("TEST_SKIP")
        } else if step.needs_e2e() && run.e2e.is_none() {
            Some("no e2e stack")
        } else {
            None
        };
        if let Some(why) = why_skipped {
            report.skipped(step, why, args.ci);
            if args.ci {
                code = 1;
                break;
            }
            continue;
        }
        report.begin(step);
        let outcome = tokio::select! {
            outcome = run.step(step) => outcome,
            signal = interrupt.recv() => Err(Interrupted(signal).into()),
        };
        if let Err(e) = outcome {
            code = e.downcast_ref::<Interrupted>().map_or(1, |i| i.0);
            eprintln!("error: {e:#}");
            report.end(step, false);
            break;
        }
        report.end(step, true);
        if step == Step::LAST_ON_E2E {
            run.stop_e2e().await;
        }
    }
    run.stop_e2e().await;
    report.summary(code);
    Ok(code)
}

/// `shop chaos`: `chaos` with a private PostgreSQL and Redis under `.state/chaos` (which it
/// restarts as faults); returns chaos's exit code (1 = a violation).
pub async fn chaos(args: ChaosArgs) -> Result<i32> {
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => procs::default_bin_dir()?,
    };
    let mut interrupt = Interrupt::new()?;
    let stores = fresh_stores(".state/chaos").await?;
    println!(
        "==> chaos {} (PostgreSQL {}, Redis {}, binaries in {})",
        args.chaos_args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        stores.admin_url,
        stores.redis.url,
        bin_dir.display()
    );
    let mut command = Command::new(bin_dir.join("chaos"));
    let status = child_status(
        command
            .args(&args.chaos_args)
            .env("CHAOS_DATABASE_URL", &stores.admin_url)
            .env("CHAOS_REDIS_URL", &stores.redis.url)
            .env("CHAOS_REDIS_DIR", &stores.redis.dir)
            .env("CHAOS_PG_DATA", &stores.postgres.data)
            .env("PG_BIN", &stores.postgres.bin),
    );
    let status = tokio::select! {
        status = status => status?,
        signal = interrupt.recv() => return Ok(signal),
    };
    Ok(status.code().unwrap_or(1))
}

/// The e2e stack's operator (in its `ADMIN_USERS`, with the fuzzer's), whom the browser step signs
/// up and logs in to the console.
const E2E_OPERATOR: &str = "operator";

/// schemathesis' test cases per operation and phase in `make test` (`make fuzz` runs far more).
const SHORT_FUZZ_EXAMPLES: u32 = 15;

/// What the steps share: the e2e stack lives from its step to the end of the fuzzer's.
struct TestRun {
    profile: Profile,
    /// The e2e stack's state directory and gateway, while it runs.
    e2e: Option<(PathBuf, String)>,
}

impl TestRun {
    async fn step(&mut self, step: Step) -> Result<()> {
        match step {
            Step::Fmt => cargo(&["fmt", "--all", "--", "--check"]).await,
            Step::Clippy => {
                cargo(&[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ])
                .await
            }
            Step::Nextest => {
                let stores = fresh_stores(".state/test").await?;
                println!("TEST_DATABASE_URL={}", stores.admin_url);
                println!("TEST_REDIS_URL={}", stores.redis.url);
                succeed(
                    "cargo nextest run",
                    Command::new("cargo")
                        .args(["nextest", "run", "--workspace", "--no-fail-fast"])
                        .env("TEST_DATABASE_URL", &stores.admin_url)
                        .env("TEST_REDIS_URL", &stores.redis.url),
                )
                .await
            }
            Step::LintDeploy => {
                succeed(
                    "scripts/lint-deploy.sh",
                    Command::new("bash").arg(repo_root().join("scripts/lint-deploy.sh")),
                )
                .await
            }
            Step::E2e => {
                let (state, base_url) = self.start_e2e().await?;
                self.e2e = Some((state, base_url.clone()));
                smoke(&base_url).await
            }
            Step::Newman => self.script_on_e2e("scripts/newman.sh", &[]).await,
            Step::Browser => {
                let operator = [("ADMIN_USER", E2E_OPERATOR)];
                self.script_on_e2e("scripts/browser.sh", &operator).await
            }
            Step::Fuzz => {
                let (_, base_url) = self.e2e.as_ref().context("no e2e stack")?;
                let args = FuzzArgs {
                    base_url: Some(base_url.clone()),
                    max_examples: SHORT_FUZZ_EXAMPLES,
                    min_requests: 0,
                    seed: None,
                };
                fuzz::check(&fuzz::fuzz(base_url, &args).await?, 0)
            }
            Step::Chaos => {
                let code = chaos(ChaosArgs {
                    bin_dir: Some(self.bin_dir().await?),
                    chaos_args: vec!["--short".into()],
                })
                .await?;
                ensure!(code == 0, "chaos --short exited with {code}");
                Ok(())
            }
        }
    }

    /// Runs `script` against the e2e stack's gateway (`BASE_URL`), with `env` besides.
    async fn script_on_e2e(&self, script: &str, env: &[(&str, &str)]) -> Result<()> {
        let (_, base_url) = self.e2e.as_ref().context("no e2e stack")?;
        let mut command = Command::new("bash");
        command
            .arg(repo_root().join(script))
            .env("BASE_URL", base_url)
            .envs(env.iter().copied());
        succeed(script, &mut command).await
    }

    /// The binaries of the chosen profile, built first for release.
    async fn bin_dir(&self) -> Result<PathBuf> {
        match self.profile {
            Profile::Debug => procs::default_bin_dir(),
            Profile::Release => {
                cargo(&["build", "--workspace", "--bins", "--release"]).await?;
                Ok(target_dir().join("release"))
            }
        }
    }

    /// The whole stack in the background, on the 18xxx ports; returns its state directory and
    /// gateway URL.
    async fn start_e2e(&self) -> Result<(PathBuf, String)> {
        let state = repo_root().join(".state/e2e");
        let bin_dir = self.bin_dir().await?;
        let operators = [("ADMIN_USERS", format!("{E2E_OPERATOR},{FUZZ_OPERATOR}"))];
        let env = local::start_in_background(&bin_dir, &state, 18_000, &operators).await?;
        let base_url = env
            .get("BASE_URL")
            .context("the e2e stack's env has no BASE_URL")?
            .clone();
        println!("BASE_URL={base_url}");
        Ok((state, base_url))
    }

    async fn stop_e2e(&mut self) {
        if let Some((state, _)) = self.e2e.take() {
            println!("==> stopping the e2e stack");
            if let Err(e) = local::stop(&state, false).await {
                eprintln!("error: stopping the e2e stack: {e:#}");
            }
        }
    }
}

/// Private stores under `dir` (relative to the repository), after removing what an interrupted
/// run may have left there; stopped and removed when dropped.
async fn fresh_stores(dir: &str) -> Result<PrivateStores> {
    let dir = repo_root().join(dir);
    local::stop(&dir, true).await?;
    PrivateStores::start(dir).await
}

/// Through the e2e stack's gateway: `/internal/` is not routed, and sign-up -> token -> account
/// works. (Every Ingress route against the services' own answers: the nextest step's gateway
/// tests.)
async fn smoke(base_url: &str) -> Result<()> {
    let internal = reqwest::get(format!("{base_url}/internal/charges/x"))
        .await
        .context("GET /internal/ through the gateway")?;
    let status = internal.status();
    let body = internal.text().await.unwrap_or_default();
    ensure!(
        status == reqwest::StatusCode::NOT_FOUND && body.contains("\"not_found\""),
        "/internal/ through the gateway gave {status} {body}, want 404 not_found"
    );
    let client = ShopClient::new(Endpoints::gateway(base_url), Duration::from_secs(15))?;
    let username = format!("smoke{}", procs::random_secret().get(..12).unwrap_or("0"));
    let user = client.register(&username, "secret-pass-1").await?;
    // billing opens the account when it hears of the sign-up: moments later, not at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.account(&user).await {
            Ok(_) => break,
            Err(e @ CallError::Status { .. }) if Instant::now() >= deadline => {
                return Err(e).context("the new user's account");
            }
            Err(CallError::Status { .. }) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => return Err(e).context("the new user's account"),
        }
    }
    println!("smoke: /internal/ is a 404 at the gateway; sign-up -> token -> account OK");
    Ok(())
}

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

async fn cargo(args: &[&str]) -> Result<()> {
    succeed(
        &format!("cargo {}", args.join(" ")),
        Command::new("cargo").args(args),
    )
    .await
}

pub(crate) async fn succeed(what: &str, command: &mut Command) -> Result<()> {
    let status = child_status(command).await?;
    ensure!(status.success(), "{what} failed ({status})");
    Ok(())
}

/// Runs a child in the repository, in its own process group; if the caller stops waiting (an
/// interrupted step), the whole group is killed.
pub(crate) async fn child_status(command: &mut Command) -> Result<ExitStatus> {
    let mut child = command
        .current_dir(repo_root())
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {:?}", command.as_std().get_program()))?;
    let group = KillGroupOnDrop(child.id());
    let status = child.wait().await.context("waiting for a child")?;
    std::mem::forget(group);
    Ok(status)
}

struct KillGroupOnDrop(Option<u32>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            procs::kill_group(pid);
        }
    }
}

/// SIGINT or SIGTERM, as the exit code a shell gives it.
pub(crate) struct Interrupt {
    interrupt: Signal,
    terminate: Signal,
}

#[derive(Debug, thiserror::Error)]
#[error("interrupted (exit {0})")]
struct Interrupted(i32);

impl Interrupt {
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("handling SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("handling SIGTERM")?,
        })
    }

    pub(crate) async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.interrupt.recv() => 130,
            _ = self.terminate.recv() => 143,
        }
    }
}

/// The step banners and the summary table.
struct Report {
    rows: Vec<(Step, &'static str, Duration)>,
    current: Option<(Step, Instant)>,
    started: Instant,
    bold: &'static str,
    red: &'static str,
    green: &'static str,
    plain: &'static str,
}

impl Report {
    fn new() -> Self {
        let tty = std::io::stdout().is_terminal();
        let pick = |code| if tty { code } else { "" };
        Self {
            rows: Vec::new(),
            current: None,
            started: Instant::now(),
            bold: pick("\x1b[1m"),
            red: pick("\x1b[1;31m"),
            green: pick("\x1b[1;32m"),
            plain: pick("\x1b[0m"),
        }
    }

    fn begin(&mut self, step: Step) {
        println!(
            "\n{}======== [{}] ========{}",
            self.bold,
            step.name(),
            self.plain
        );
        self.current = Some((step, Instant::now()));
    }

    fn end(&mut self, step: Step, passed: bool) {
        let took = self
            .current
            .take()
            .map_or(Duration::ZERO, |(_, t)| t.elapsed());
        self.rows
            .push((step, if passed { "PASS" } else { "FAIL" }, took));
    }

    fn skipped(&mut self, step: Step, why: &str, ci: bool) {
        println!(
            "\n{}======== [{}] skipped: {why} ========{}",
            self.bold,
            step.name(),
            self.plain
        );
        if ci {
            eprintln!(
                "error: CI is set: no step may be skipped, but [{}] was ({why})",
                step.name()
            );
        }
        self.rows
            .push((step, if ci { "FAIL" } else { "SKIP" }, Duration::ZERO));
    }

    fn summary(&self, code: i32) {
        println!("\n{}======== summary ========{}", self.bold, self.plain);
        for (step, result, took) in &self.rows {
            println!("  {:<12} {result:<4} {:>5}s", step.name(), took.as_secs());
        }
        println!("  total {}s", self.started.elapsed().as_secs());
        let count = |r: &str| self.rows.iter().filter(|row| row.1 == r).count();
        match self.rows.iter().find(|row| row.1 == "FAIL") {
            Some((step, ..)) => println!(
                "{}make test FAILED at step {} (exit {code}){}",
                self.red,
                step.name(),
                self.plain
            ),
            None if code != 0 => {
                println!("{}make test FAILED (exit {code}){}", self.red, self.plain)
            }
            None => println!("{}make test passed{}", self.green, self.plain),
        }
        println!(
            "steps: {} passed, {} failed, {} skipped",
            count("PASS"),
            count("FAIL"),
            count("SKIP")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        test: TestArgs,
    }

    #[test]
    fn skipped_steps_are_read_space_or_comma_separated_and_unknown_ones_refused() {
        let cli = Cli::try_parse_from(["shop", "--skip", "chaos newman,clippy"]).unwrap();
        assert_eq!(cli.test.skip.0, [Step::Chaos, Step::Newman, Step::Clippy]);
        let unknown = Cli::try_parse_from(["shop", "--skip", "chaos bench"]);
        assert!(unknown.is_err(), "an unknown step must be refused");
    }
}
