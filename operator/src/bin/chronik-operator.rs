//! chronik-operator: reconciles ChronikCluster objects.
//!
//! Serves /metrics, /healthz and /readyz; with leader election on (the default), replicas wait
//! on a Lease and only the holder reconciles, so the Deployment can run two for availability.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chronik_operator::admin::HttpAdmin;
use chronik_operator::controller::{self, Context, RunOptions};
use chronik_operator::endpoints;
use chronik_operator::leader::{self, LeaseConfig};
use chronik_operator::metrics::Metrics;
use clap::Parser;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

#[derive(Parser, Debug)]
#[command(
    name = "chronik-operator",
    version,
    about = "Kubernetes operator for Chronik clusters"
)]
struct Args {
    /// Namespace to watch; every namespace when empty.
    #[arg(long, env = "WATCH_NAMESPACE", default_value = "")]
    watch_namespace: String,
    /// Address of the metrics and health endpoints.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Run without a Lease (a single replica, or local development).
    #[arg(long, env = "DISABLE_LEADER_ELECTION")]
    disable_leader_election: bool,
    /// Namespace of the Lease; the operator's own namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    #[arg(long, env = "LEASE_NAME", default_value = "chronik-operator")]
    lease_name: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME", default_value = "chronik-operator-local")]
    identity: String,
    /// `json` for log collectors, `text` for a terminal.
    #[arg(long, env = "LOG_FORMAT", default_value = "json")]
    log_format: String,
    /// Per-call timeout of the clusters' admin API, in seconds.
    #[arg(long, env = "ADMIN_TIMEOUT_SECS", default_value_t = 10)]
    admin_timeout_secs: u64,
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}

fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    ready: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind {addr}"))?;
    axum::serve(listener, endpoints::router(registry, ready))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logs(&args.log_format);

    let client = kube::Client::try_default()
        .await
        .context("connect to the kubernetes api")?;
    let metrics = Arc::new(Metrics::new());
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let (ready_tx, ready_rx) = watch::channel(false);
    let server = tokio::spawn(serve(args.metrics_addr, Arc::new(registry), ready_rx));
    ready_tx.send_replace(true);

    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(HttpAdmin::new(Duration::from_secs(args.admin_timeout_secs))),
        metrics.clone(),
    ));
    let opts = RunOptions {
        namespace: (!args.watch_namespace.is_empty()).then(|| args.watch_namespace.clone()),
    };

    if args.disable_leader_election {
        metrics.leader.set(1);
        tracing::info!(namespace = ?opts.namespace, "reconciling without leader election");
        controller::run(ctx, opts).await;
    } else {
        let cfg = LeaseConfig {
            namespace: args.lease_namespace.clone(),
            name: args.lease_name.clone(),
            identity: args.identity.clone(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        };
        let mut leading = leader::spawn(client.clone(), cfg.clone());
        tracing::info!(identity = %args.identity, "waiting for the leader lease");
        tokio::select! {
            r = leading.wait_for(|l| *l) => { r.context("leader election stopped")?; }
            _ = shutdown_signal() => { return Ok(()); }
        }
        metrics.leader.set(1);
        tracing::info!(namespace = ?opts.namespace, "leading; reconciling");
        tokio::select! {
            _ = controller::run(ctx, opts) => {}
            // Losing the Lease while reconciling means another replica may start: stop at once
            // and let Kubernetes restart this one as a standby.
            r = leading.wait_for(|l| !*l) => {
                metrics.leader.set(0);
                r.context("leader election stopped")?;
                anyhow::bail!("lost the leader lease");
            }
        }
        // Hand over at once instead of making the standby wait out the lease.
        if let Err(e) = leader::release(client, &cfg).await {
            tracing::warn!(error = %e, "releasing the leader lease failed");
        }
    }
    server.abort();
    tracing::info!("stopped");
    Ok(())
}
