//! chronik-server: the broker binary. Parses the command line, loads and validates the
//! configuration, and hands over to [`node`], the composition root.

mod cluster;
mod config;
mod indexing;
mod node;
mod replication;
mod search;
mod sql;
mod vector;

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
    /// Show the Raft leader, each node's role, state and replication lag, and partition health
    /// (asks the local broker's HTTP API, GET /admin/cluster).
    Status {
        /// The broker's configuration file (for its HTTP port and admin key); environment
        /// variables override it as for `start`.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the raw JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a running broker (started with its CHRONIK_NODE_ID, waiting to be added) to the Raft
    /// voters: it joins as a learner, catches up, then is promoted.
    AddNode {
        /// The new broker's CHRONIK_NODE_ID.
        #[arg(long)]
        node_id: i32,
        /// host:port of the new broker's cluster port.
        #[arg(long)]
        address: String,
        /// This (existing) broker's configuration file, for its HTTP port and admin key.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Drain a broker and remove it: its partition replicas move to the other brokers (each
    /// move completes once the new replicas are in sync), then it leaves the Raft voters.
    /// Waits until it is gone unless --no-wait. Stop the broker's process afterwards.
    RemoveNode {
        /// The CHRONIK_NODE_ID of the broker to remove.
        #[arg(long)]
        node_id: i32,
        /// Return once the drain has started.
        #[arg(long)]
        no_wait: bool,
        /// This (existing) broker's configuration file, for its HTTP port and admin key.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Commands::Version => {
            println!("chronik-server {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Commands::Cluster {
            action: ClusterAction::Status { config, json },
        } => {
            let config = ServerConfig::load(config.as_deref(), |k| std::env::var(k).ok())?;
            cluster::print_status(&config, json)
        }
        Commands::Cluster {
            action:
                ClusterAction::AddNode {
                    node_id,
                    address,
                    config,
                },
        } => {
            let config = ServerConfig::load(config.as_deref(), |k| std::env::var(k).ok())?;
            cluster::add_node(&config, node_id, &address)
        }
        Commands::Cluster {
            action:
                ClusterAction::RemoveNode {
                    node_id,
                    no_wait,
                    config,
                },
        } => {
            let config = ServerConfig::load(config.as_deref(), |k| std::env::var(k).ok())?;
            cluster::remove_node(&config, node_id, !no_wait)
        }
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
    // openraft narrates every vote and membership step at info; its warnings are what an
    // operator needs unless RUST_LOG asks for it by name.
    let mut spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "info".into());
    if !spec.contains("openraft") {
        spec.push_str(",openraft=warn");
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
