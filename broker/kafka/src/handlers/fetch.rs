//! Fetch: return stored batches exactly as written, up to the high watermark (read_uncommitted)
//! or the last stable offset with the aborted transactions to skip (read_committed), honouring
//! the request's byte limits; when less than `min_bytes` is available, wait (long poll) until more
//! arrives or `max_wait_ms` passes. Fetch sessions are not kept: session id 0 tells clients to
//! send full fetch requests.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chronik_log::{LogError, ReadResult};
use futures::future::{select_all, BoxFuture, FutureExt};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::ProducerId;
use kafka_protocol::messages::{FetchRequest, FetchResponse, ResponseKind};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error_codes;
use crate::registry::Reply;
use crate::Broker;

pub(crate) async fn handle(broker: &Arc<Broker>, request: FetchRequest, _version: i16) -> Reply {
    let broker = broker.clone();
    Box::pin(async move { Some(ResponseKind::Fetch(fetch(&broker, &request).await)) })
}

async fn fetch(broker: &Broker, request: &FetchRequest) -> FetchResponse {
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    loop {
        let round = read_round(broker, request);
        let done = round.bytes >= request.min_bytes.max(0) as usize
            || round.has_error
            || round.watches.is_empty()
            || Instant::now() >= deadline;
        if done {
            return FetchResponse::default().with_responses(round.topics);
        }
        if !wait_for_data(round.watches, deadline).await {
            // Deadline passed: one last read so the answer reflects the newest state.
            return FetchResponse::default().with_responses(read_round(broker, request).topics);
        }
    }
}

struct Round {
    topics: Vec<FetchableTopicResponse>,
    bytes: usize,
    has_error: bool,
    /// High-watermark watches of the partitions read, subscribed before reading so no append
    /// between the read and the wait can be missed.
    watches: Vec<watch::Receiver<i64>>,
}

/// Kafka's isolation level READ_COMMITTED.
const READ_COMMITTED: i8 = 1;

fn read_round(broker: &Broker, request: &FetchRequest) -> Round {
    let state = broker.meta.state();
    let committed = request.isolation_level == READ_COMMITTED;
    let mut remaining = request.max_bytes.max(0) as usize;
    let mut round = Round {
        topics: Vec::with_capacity(request.topics.len()),
        bytes: 0,
        has_error: false,
        watches: Vec::new(),
    };
    for topic in &request.topics {
        let name = topic.topic.0.to_string();
        let meta = state.topics.get(&name);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let response = PartitionData::default()
                .with_partition_index(p.partition)
                .with_aborted_transactions(Some(Vec::new()));
            let log = match meta.ok_or(ResponseError::UnknownTopicOrPartition) {
                Ok(meta) => broker.partition_log(meta, p.partition),
                Err(code) => Err(code),
            };
            let log = match log {
                Ok(log) => log,
                Err(code) => {
                    round.has_error = true;
                    partitions.push(error_partition(response, code));
                    continue;
                }
            };
            round.watches.push(log.subscribe());
            // The first batch is always whole, so a consumer makes progress even when a batch
            // is larger than its limits; later partitions only get what still fits.
            let limit = (p.partition_max_bytes.max(0) as usize).min(remaining);
            if limit == 0 && round.bytes > 0 {
                partitions.push(
                    response
                        .with_high_watermark(log.high_watermark())
                        .with_last_stable_offset(log.last_stable_offset())
                        .with_log_start_offset(log.log_start_offset())
                        .with_records(Some(Bytes::new())),
                );
                continue;
            }
            let read = if committed {
                log.read_committed(p.fetch_offset, limit.max(1))
            } else {
                log.read(p.fetch_offset, limit.max(1), true)
            };
            match read {
                // Only the response's first batch may exceed the limits (KIP-74); a later
                // partition whose next batch does not fit gets nothing this time.
                Ok(read) if round.bytes > 0 && read.records.len() > limit => {
                    partitions.push(
                        response
                            .with_high_watermark(read.high_watermark)
                            .with_last_stable_offset(read.last_stable_offset)
                            .with_log_start_offset(read.log_start_offset)
                            .with_records(Some(Bytes::new())),
                    );
                }
                Ok(read) => {
                    round.bytes += read.records.len();
                    remaining = remaining.saturating_sub(read.records.len());
                    let aborted = committed.then(|| aborted_list(&read));
                    partitions.push(
                        response
                            .with_high_watermark(read.high_watermark)
                            .with_last_stable_offset(read.last_stable_offset)
                            .with_log_start_offset(read.log_start_offset)
                            .with_aborted_transactions(aborted.or(Some(Vec::new())))
                            .with_records(Some(read.records)),
                    );
                }
                Err(e) => {
                    round.has_error = true;
                    if !matches!(e, LogError::OffsetOutOfRange { .. }) {
                        tracing::warn!(topic = %name, partition = p.partition, error = %e, "fetch failed");
                    }
                    partitions.push(
                        error_partition(response, error_codes::for_log(&e))
                            .with_high_watermark(log.high_watermark())
                            .with_last_stable_offset(log.last_stable_offset())
                            .with_log_start_offset(log.log_start_offset()),
                    );
                }
            }
        }
        round.topics.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions),
        );
    }
    round
}

fn aborted_list(read: &ReadResult) -> Vec<AbortedTransaction> {
    read.aborted_transactions
        .iter()
        .map(|a| {
            AbortedTransaction::default()
                .with_producer_id(ProducerId(a.producer_id))
                .with_first_offset(a.first_offset)
        })
        .collect()
}

fn error_partition(response: PartitionData, code: ResponseError) -> PartitionData {
    response
        .with_error_code(code.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(Some(Bytes::new()))
}

/// Wait until any watched partition's high watermark moves. False when the deadline passed.
async fn wait_for_data(watches: Vec<watch::Receiver<i64>>, deadline: Instant) -> bool {
    let changes: Vec<BoxFuture<'static, ()>> = watches
        .into_iter()
        .map(|mut rx| {
            async move {
                // A closed channel (partition deleted) counts as a change worth re-reading.
                let _ = rx.changed().await;
            }
            .boxed()
        })
        .collect();
    tokio::select! {
        _ = select_all(changes) => true,
        _ = tokio::time::sleep_until(deadline) => false,
    }
}
