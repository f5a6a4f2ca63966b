//! chronik-server: the broker binary. Parses the command line, loads and validates the
//! configuration, and hands over to [`node`], the composition root.

mod config;
mod node;
mod sql;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::ServerConfig;

#[derive(Parser)]
#[command(
    name = "chronik-server",
    version,
    about = "Kafka-compatible event platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Start a broker.
    Start(StartArgs),
    /// Print the version.
    Version,
    /// Inspect or change cluster membership.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
}

#[derive(clap::Args)]
struct StartArgs {
    /// TOML configuration file; environment variables and flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Overrides CHRONIK_DATA_DIR.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Overrides CHRONIK_KAFKA_PORT.
    #[arg(long)]
    kafka_port: Option<u16>,
    /// Overrides CHRONIK_BIND_ADDR.
    #[arg(long)]
    bind_addr: Option<String>,
    /// Overrides CHRONIK_ADVERTISED_ADDR.
    #[arg(long)]
    advertised_addr: Option<String>,
    /// Overrides CHRONIK_NODE_ID.
    #[arg(long)]
    node_id: Option<i32>,
    /// Overrides CHRONIK_FLUSH.
    #[arg(long)]
    flush: Option<String>,
}

#[derive(Subcommand)]
enum ClusterAction {
    Status,
    AddNode,
    RemoveNode,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Commands::Version => {
            println!("chronik-server {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Commands::Cluster { .. } => anyhow::bail!(
            "cluster commands need a multi-node cluster, which is not available in this build yet"
        ),
        Commands::Start(args) => {
            init_tracing();
            let mut config = ServerConfig::load(args.config.as_deref(), |k| std::env::var(k).ok())?;
            if let Some(v) = args.data_dir {
                config.data_dir = v;
            }
            if let Some(v) = args.kafka_port {
                config.kafka_port = v;
            }
            if let Some(v) = args.bind_addr {
                config.bind_addr = v;
            }
            if let Some(v) = args.advertised_addr {
                config.advertised_addr = Some(v);
            }
            if let Some(v) = args.node_id {
                config.node_id = v;
            }
            if let Some(v) = args.flush {
                config.flush = v;
            }
            config.validate()?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(node::run(config))
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
