//! shop: starts and stops the local stack — private PostgreSQL and Redis, the six services, the
//! nginx gateway — for `make run`, `make stop` (`tools::local`; the integration tests start theirs
//! through `tools::stack`, on the same process code, `tools::procs`), and runs the checks of
//! `make test` and `make chaos` (`tools::checks`) and the benchmark of `make bench`
//! (`tools::bench`).
//!
//!   shop run                      everything, in the foreground until Ctrl-C / SIGTERM
//!   shop run --background         the same, detached; returns once the stack is ready
//!   shop run --stores-only ...    only PostgreSQL and Redis
//!   shop stop [--purge]           stop the stack of SAGA_STATE_DIR (default .state/run)
//!   shop stop --all | --clean     every stack under .state/ (--clean: then remove .state/)
//!   shop test [--skip STEPS]      every check of `make test`, in order, with a summary
//!   shop chaos [CHAOS ARGS...]    `chaos` against private stores (`make chaos`)
//!   shop bench                    loadgen against a release stack tuned for this machine (`make bench`)
//!   shop fuzz [--base-url URL]    schemathesis from the OpenAPI document against a stack (`make fuzz`)
//!
//! Ports, the state directory and the stores' tuning come from the environment (`shop run
//! --help`); the services get the caller's environment (ITEM_STOCK, RUST_LOG, ...).

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use tools::{
    bench::{self, BenchArgs},
    checks::{self, ChaosArgs, TestArgs},
    fuzz::{self, FuzzArgs},
    local::{self, RunArgs},
};

#[derive(Parser, Debug)]
#[command(about = "Start and stop the local saga shop (stores, services, gateway); run its checks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the stack and supervise it until SIGINT / SIGTERM, then stop everything it started.
    Run(RunArgs),
    /// Stop a stack started by `shop run` (its supervisor first, then whatever is left).
    Stop {
        /// The stack's state directory (default: <repo>/.state/run).
        #[arg(long, env = "SAGA_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// Also remove the state directory (and a PostgreSQL fallback directory in /var/tmp).
        #[arg(long)]
        purge: bool,
        /// Every stack under <repo>/.state.
        #[arg(long, conflicts_with = "state_dir")]
        all: bool,
        /// --all, then remove <repo>/.state.
        #[arg(long, conflicts_with = "state_dir")]
        clean: bool,
    },
    /// Every check of `make test`, in order, failing fast: fmt, clippy, nextest, lint-deploy, e2e,
    /// newman, browser, fuzz, chaos. Expects the tests and binaries built (scripts/test.sh builds them).
    Test(TestArgs),
    /// `chaos` with a private PostgreSQL and Redis under .state/chaos (`make chaos`).
    Chaos(ChaosArgs),
    /// Throughput and latency through the gateway of a release stack (`make bench`).
    Bench(BenchArgs),
    /// schemathesis against a stack: requests derived from its OpenAPI document (`make fuzz`).
    Fuzz(FuzzArgs),
}

// One thread: the services are spawned from it, and their parent-death signal follows the
// spawning thread (tools::procs).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let code = match Cli::parse().command {
        Command::Run(args) => local::run(args).await?,
        Command::Test(args) => checks::test(args).await?,
        Command::Chaos(args) => checks::chaos(args).await?,
        Command::Bench(args) => bench::run(args).await?,
        Command::Fuzz(args) => fuzz::run(args).await?,
        Command::Stop {
            state_dir,
            purge,
            all,
            clean,
        } => {
            if all || clean {
                let mut failed = Vec::new();
                for dir in local::all_state_dirs() {
                    if let Err(e) = local::stop(&dir, clean).await {
                        eprintln!("error: {e:#}");
                        failed.push(dir);
                    }
                }
                anyhow::ensure!(
                    failed.is_empty(),
                    "not everything stopped; .state left in place"
                );
                if clean {
                    let state = local::repo_root().join(".state");
                    if state.exists() {
                        std::fs::remove_dir_all(&state)?;
                        eprintln!("==> removed .state");
                    }
                }
            } else {
                let dir = state_dir.unwrap_or_else(|| local::repo_root().join(".state/run"));
                local::stop(&dir, purge).await?;
            }
            0
        }
    };
    std::process::exit(code)
}
