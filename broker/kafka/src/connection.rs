//! One client connection: read length-prefixed frames, decode, dispatch, and write responses
//! back in request order. Requests are worked on in order; deferred work (durability waits,
//! fetch long polls) overlaps with reading later requests, up to a per-connection bound.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use chronik_protocol::{
    api_versions_response, decode_request, encode_response, frame_length, peek_request_header,
    ProtocolError,
};
use futures::stream::{FuturesOrdered, StreamExt};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::metrics::metrics;

use crate::registry::{self, Reply};
use crate::Broker;

/// A response on its way out, with what is needed to frame it.
struct Pending {
    /// Held until the response is written, bounding the work in flight per connection.
    _permit: OwnedSemaphorePermit,
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    reply: Reply,
    /// When the request's frame was read, for the latency histogram.
    started: Instant,
}

pub(crate) async fn run(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr) {
    let (mut reader, writer) = stream.into_split();
    let in_flight = broker.config.max_in_flight_per_connection.max(1);
    let (tx, rx) = mpsc::channel::<Pending>(in_flight);
    let permits = Arc::new(Semaphore::new(in_flight));
    let writer_task = tokio::spawn(write_responses(writer, rx, peer));
    metrics().connections.inc();
    let max = broker.config.max_request_bytes;
    loop {
        let mut prefix = [0u8; 4];
        match reader.read_exact(&mut prefix).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "connection read failed");
                break;
            }
        }
        let size = match frame_length(prefix, max) {
            Ok(size) => size,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection: bad frame");
                metrics().rejected_connections.inc();
                break;
            }
        };
        // Read into spare capacity: zero-filling each frame first (a produce request is about
        // a megabyte under load) was 5% of a single node's CPU.
        let mut frame = BytesMut::with_capacity(size);
        if let Err(e) = read_frame(&mut reader, &mut frame, size).await {
            tracing::debug!(%peer, error = %e, "connection closed mid-frame");
            break;
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let pending = match handle_frame(&broker, frame, permit, peer).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection: bad request");
                metrics().rejected_connections.inc();
                break;
            }
        };
        if tx.send(pending).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer_task.await;
    metrics().connections.dec();
}

/// Fill `frame` with the next `size` bytes of `reader`.
async fn read_frame(
    reader: &mut OwnedReadHalf,
    frame: &mut BytesMut,
    size: usize,
) -> std::io::Result<()> {
    let mut body = reader.take(size as u64);
    while frame.len() < size {
        if body.read_buf(frame).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

async fn handle_frame(
    broker: &Arc<Broker>,
    frame: BytesMut,
    permit: OwnedSemaphorePermit,
    peer: SocketAddr,
) -> Result<Pending, ProtocolError> {
    let started = Instant::now();
    let frame_len = frame.len() as u64;
    let prefix = peek_request_header(&frame)?;
    let key = ApiKey::try_from(prefix.api_key)
        .map_err(|()| ProtocolError::UnknownApiKey(prefix.api_key))?;
    let supported = registry::supported(key);
    if !supported.is_some_and(|api| api.supports(prefix.api_version)) {
        if key == ApiKey::ApiVersions {
            // KIP-511: answer an unknown ApiVersions version with a v0 response carrying
            // UNSUPPORTED_VERSION and our versions, so the client can pick one and retry.
            let body = api_versions_response(
                registry::supported_apis(),
                ResponseError::UnsupportedVersion.code(),
            );
            return Ok(Pending {
                _permit: permit,
                correlation_id: prefix.correlation_id,
                api_key: key,
                version: 0,
                reply: registry::ready(ResponseKind::ApiVersions(body)),
                started,
            });
        }
        return Err(ProtocolError::UnsupportedVersion {
            api: key,
            version: prefix.api_version,
        });
    }
    let request = decode_request(frame.freeze())?;
    metrics()
        .request_bytes
        .with_label_values(&[api_label(key)])
        .inc_by(frame_len);
    let client = registry::ClientInfo {
        client_id: request
            .header
            .client_id
            .as_deref()
            .unwrap_or("")
            .to_string(),
        client_host: format!("/{}", peer.ip()),
    };
    let reply = registry::dispatch(broker, request.body, request.version, &client)
        .await
        .ok_or(ProtocolError::UnsupportedVersion {
            api: key,
            version: request.version,
        })?;
    Ok(Pending {
        _permit: permit,
        correlation_id: request.header.correlation_id,
        api_key: key,
        version: request.version,
        reply,
        started,
    })
}

async fn write_responses(
    mut writer: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Pending>,
    peer: SocketAddr,
) {
    let mut in_flight = FuturesOrdered::new();
    let mut open = true;
    loop {
        tokio::select! {
            next = rx.recv(), if open => match next {
                Some(p) => in_flight.push_back(async move {
                    let response = p.reply.await;
                    (p._permit, p.started, p.correlation_id, p.api_key, p.version, response)
                }),
                None => open = false,
            },
            Some((_permit, started, correlation_id, api_key, version, response)) = in_flight.next() => {
                let Some(response) = response else { continue };
                let frame = match encode_response(correlation_id, api_key, version, &response) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::error!(%peer, error = %e, "closing connection: cannot encode response");
                        return;
                    }
                };
                if let Err(e) = writer.write_all(&frame).await {
                    tracing::debug!(%peer, error = %e, "connection write failed");
                    return;
                }
                let api = api_label(api_key);
                let m = metrics();
                m.requests.with_label_values(&[api]).inc();
                m.response_bytes.with_label_values(&[api]).inc_by(frame.len() as u64);
                m.request_seconds
                    .with_label_values(&[api])
                    .observe(started.elapsed().as_secs_f64());
            },
            else => return,
        }
    }
}

/// Metric label of an API: its name as Kafka spells it in code (e.g. "Produce").
fn api_label(key: ApiKey) -> &'static str {
    registry::api_name(key)
}
