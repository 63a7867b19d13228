//! ensure-secrets: the install Job's entry point (see the library for what it guarantees).

use anyhow::anyhow;
use clap::Parser;
use ensure_secrets::Cli;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow!("a TLS crypto provider was already installed"))?;
    let cli = Cli::parse();
    let outcome = ensure_secrets::ensure(&cli).await?;
    println!("{}", outcome.describe(&cli.secret));
    Ok(())
}
