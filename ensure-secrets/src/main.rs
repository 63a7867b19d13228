//! ensure-secrets: the install Job's entry point (see the library for what it guarantees).

use clap::Parser;
use ensure_secrets::Cli;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let outcome = ensure_secrets::ensure(&cli)?;
    println!("{}", outcome.describe(&cli.secret));
    Ok(())
}
