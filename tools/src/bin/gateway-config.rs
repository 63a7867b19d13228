//! gateway-config: the local nginx gateway's config, rendered from the Kubernetes Ingress
//! (`tools::gateway`). `make run` renders the same config as a library call
//! (`tools::local::start_gateway`).
//!
//!   gateway-config render --upstream auth=127.0.0.1:8001 ... --set LISTEN=127.0.0.1:8080 ... \
//!       --output <state>/nginx.conf
//!   gateway-config routes          # the public routes, one per line: PATH PATHTYPE SERVICE INGRESS

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};
use tools::gateway::{Routes, Upstreams};

#[derive(Parser, Debug)]
#[command(about = "Render the local nginx gateway from the Ingress of the Kubernetes manifest")]
struct Cli {
    /// The manifest whose Ingresses are the public routes (paths are relative to the repo root).
    #[arg(long, global = true, default_value = "deploy-services.yml")]
    manifest: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write the nginx config: the template with the routes, upstreams and values filled in.
    Render {
        #[arg(long, default_value = "deploy/gateway.nginx.conf.template")]
        template: PathBuf,
        /// Where a routed Service listens locally, `name=host:port` (one per service; others ignored).
        #[arg(long = "upstream", value_parser = parse_upstream)]
        upstreams: Vec<(String, SocketAddr)>,
        /// A value for the template's `@NAME@`, `NAME=value`.
        #[arg(long = "set", value_parser = parse_value)]
        values: Vec<(String, String)>,
        /// The config file to write (default: stdout).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Print the public routes, one per line: PATH PATHTYPE SERVICE INGRESS.
    Routes,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let routes = Routes::from_manifest_file(&cli.manifest)?;
    match cli.command {
        Command::Render {
            template,
            upstreams,
            values,
            output,
        } => {
            let template_text = std::fs::read_to_string(&template)
                .with_context(|| format!("reading {}", template.display()))?;
            let upstreams: Upstreams = upstreams.into_iter().collect();
            let values: BTreeMap<String, String> = values.into_iter().collect();
            let config = routes
                .render(&template_text, &upstreams, &values)
                .with_context(|| format!("rendering {}", template.display()))?;
            let config = format!(
                "# rendered by gateway-config from {} (routes) and {}: edit those, not this file\n{config}",
                cli.manifest.display(),
                template.display()
            );
            match output {
                Some(path) => std::fs::write(&path, config)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{config}"),
            }
        }
        Command::Routes => {
            for route in &routes.routes {
                println!(
                    "{} {:?} {} {}",
                    route.path, route.path_type, route.service, route.ingress
                );
            }
        }
    }
    Ok(())
}

fn parse_upstream(arg: &str) -> Result<(String, SocketAddr), String> {
    let (name, addr) = arg
        .split_once('=')
        .ok_or_else(|| format!("{arg:?}: want name=host:port"))?;
    let addr = addr
        .parse()
        .map_err(|e| format!("{arg:?}: {addr:?} is not an address ip:port ({e})"))?;
    Ok((name.to_string(), addr))
}

fn parse_value(arg: &str) -> Result<(String, String), String> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("{arg:?}: want NAME=value"))?;
    Ok((name.to_string(), value.to_string()))
}
