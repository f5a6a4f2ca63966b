//! Accepting Kafka connections. Each connection gets its own task; a failure in one never
//! affects another.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::connection;
use crate::Broker;

/// Serve Kafka clients on `listener` until `shutdown` becomes true.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Typically EMFILE; keep serving the connections we have.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let broker = broker.clone();
                tokio::spawn(async move {
                    connection::run(broker, stream, peer).await;
                });
            }
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return Ok(());
                }
            }
        }
    }
}
