//! Produce: validate and append each partition's batches as produced, then (unless acks=0)
//! answer once they are durable. Appends happen in request order; the durability wait is the
//! deferred part, so pipelined requests share fsyncs (group commit).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chronik_log::{BatchHeader, LogError, PartitionLog, BATCH_HEADER_LEN};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};

use super::str_bytes;
use crate::error_codes;
use crate::registry::Reply;
use crate::replication::AckError;
use crate::Broker;

/// A write to a replicated partition: acks=all also waits for the high watermark; any write
/// may move it once durable (when the leader is the only in-sync replica).
struct ReplicatedAck {
    broker: Arc<Broker>,
    topic: String,
    partition: i32,
    acks_all: bool,
}

/// Outcome of the in-order part for one partition.
enum Appended {
    Stored {
        log: Arc<dyn PartitionLog>,
        base_offset: i64,
        last_offset: i64,
        log_start_offset: i64,
        /// acks=all on a replicated partition: also wait for the high watermark.
        replicated: Option<ReplicatedAck>,
    },
    /// Refused: the code, a message for v8+ clients, and the indexes of the offending records
    /// within the batch (record_errors) when only some records are at fault.
    Failed(ResponseError, Option<String>, Vec<i32>),
}

pub(crate) async fn handle(broker: &Arc<Broker>, request: ProduceRequest, version: i16) -> Reply {
    let acks = request.acks;
    let transactional_id = request
        .transactional_id
        .as_ref()
        .map(|t| t.0.to_string())
        .filter(|t| !t.is_empty());
    let acks_valid = matches!(acks, -1..=1);
    let mut state = broker.meta.state();
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        if acks_valid && !state.topics.contains_key(&name) {
            if let Ok(s) = broker.auto_create_topic(&name).await {
                state = s;
            }
        }
        let meta = state.topics.get(&name);
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let outcome = if !acks_valid {
                Appended::Failed(ResponseError::InvalidRequiredAcks, None, Vec::new())
            } else {
                match meta {
                    None => {
                        Appended::Failed(ResponseError::UnknownTopicOrPartition, None, Vec::new())
                    }
                    Some(meta) => {
                        let verified = match (&transactional_id, &data.records) {
                            (Some(id), Some(records)) => {
                                verify_transaction(broker, id, &name, data.index, records).await
                            }
                            _ => Ok(()),
                        };
                        match verified {
                            Ok(()) => append(broker, meta, data.index, data.records, acks),
                            Err(code) => Appended::Failed(
                                code,
                                Some(
                                    "the partition is not part of the producer's open transaction"
                                        .into(),
                                ),
                                Vec::new(),
                            ),
                        }
                    }
                }
            };
            partitions.push((data.index, outcome));
        }
        topics.push((name, partitions));
    }

    let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
    Box::pin(async move {
        if acks == 0 {
            return None;
        }
        // Partitions live in different files: wait for all of them at once.
        let mut responses = Vec::with_capacity(topics.len());
        for (name, partitions) in topics {
            let partition_responses = futures::future::join_all(
                partitions
                    .into_iter()
                    .map(|(index, outcome)| respond(index, outcome, timeout, version)),
            )
            .await;
            responses.push(
                TopicProduceResponse::default()
                    .with_name(kafka_protocol::messages::TopicName(str_bytes(name)))
                    .with_partition_responses(partition_responses),
            );
        }
        Some(ResponseKind::Produce(
            ProduceResponse::default().with_responses(responses),
        ))
    })
}

fn append(
    broker: &Arc<Broker>,
    topic: &chronik_meta::TopicMeta,
    partition: i32,
    records: Option<Bytes>,
    acks: i16,
) -> Appended {
    let log = match broker.partition_log(topic, partition) {
        Ok(log) => log,
        Err(code) => return Appended::Failed(code, None, Vec::new()),
    };
    let placement = topic.partitions.get(partition as usize);
    let replicated = placement
        .is_some_and(|p| p.replicas.len() > 1)
        .then(|| ReplicatedAck {
            broker: Arc::clone(broker),
            topic: topic.name.clone(),
            partition,
            acks_all: acks == -1,
        });
    if replicated.as_ref().is_some_and(|r| r.acks_all) {
        let min_isr = topic.config().min_insync_replicas.max(1) as usize;
        let isr = placement.map_or(&[][..], |p| &p.isr[..]);
        if isr.len() < min_isr {
            return Appended::Failed(
                ResponseError::NotEnoughReplicas,
                Some(format!(
                    "{} in-sync replicas, min.insync.replicas is {min_isr}; nothing was written",
                    isr.len()
                )),
                Vec::new(),
            );
        }
        let reachable = broker.reachable_isr(&topic.name, partition, isr);
        if reachable < min_isr {
            return Appended::Failed(
                ResponseError::NotEnoughReplicas,
                Some(format!(
                    "{reachable} of {} in-sync replicas fetched within replica.lag.time.max.ms, \
                     min.insync.replicas is {min_isr}; nothing was written",
                    isr.len()
                )),
                Vec::new(),
            );
        }
    }
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return Appended::Failed(
            ResponseError::InvalidRecord,
            Some("produce request carries no records".into()),
            Vec::new(),
        );
    };
    if let Some(reason) = refuse_from_client(&records) {
        return Appended::Failed(ResponseError::InvalidRecord, Some(reason), Vec::new());
    }
    let leader_epoch = topic
        .partitions
        .get(partition as usize)
        .map_or(0, |p| p.leader_epoch);
    match log.append(records, leader_epoch) {
        Ok(info) => Appended::Stored {
            log,
            base_offset: info.base_offset,
            last_offset: info.last_offset,
            log_start_offset: info.log_start_offset,
            replicated,
        },
        // A retry of a batch already stored: Kafka (since 1.1) answers NONE with the original
        // offsets, which every client takes as delivered (librdkafka would accept
        // DUPLICATE_SEQUENCE_NUMBER too, but then reports no offset). The answer still waits
        // for the original to be durable, as the first attempt's would have.
        Err(LogError::DuplicateSequence {
            base_offset,
            last_offset,
            ..
        }) => {
            tracing::debug!(
                topic = %topic.name,
                partition,
                base_offset,
                "duplicate batch answered with its original offsets"
            );
            let log_start_offset = log.log_start_offset();
            Appended::Stored {
                log,
                base_offset,
                last_offset,
                log_start_offset,
                replicated,
            }
        }
        Err(e) => {
            tracing::debug!(topic = %topic.name, partition, error = %e, "produce refused");
            let record_errors = match &e {
                LogError::InvalidRecords { indexes, .. } => indexes.clone(),
                _ => Vec::new(),
            };
            Appended::Failed(error_codes::for_log(&e), Some(e.to_string()), record_errors)
        }
    }
}

async fn respond(
    index: i32,
    outcome: Appended,
    timeout: Duration,
    version: i16,
) -> PartitionProduceResponse {
    let base = PartitionProduceResponse::default()
        .with_index(index)
        .with_log_append_time_ms(-1);
    let (code, message, record_errors) = match outcome {
        Appended::Stored {
            log,
            base_offset,
            last_offset,
            log_start_offset,
            replicated,
        } => {
            let started = tokio::time::Instant::now();
            match tokio::time::timeout(timeout, log.wait_durable(last_offset)).await {
                Ok(Ok(())) => match replicated {
                    None => {
                        return base
                            .with_base_offset(base_offset)
                            .with_log_start_offset(log_start_offset)
                    }
                    Some(r) if !r.acks_all => {
                        r.broker.advance_high_watermark(&r.topic, r.partition);
                        return base
                            .with_base_offset(base_offset)
                            .with_log_start_offset(log_start_offset);
                    }
                    Some(r) => {
                        let left = timeout.saturating_sub(started.elapsed());
                        match r
                            .broker
                            .wait_replicated(&r.topic, r.partition, last_offset, left)
                            .await
                        {
                            Ok(()) => {
                                return base
                                    .with_base_offset(base_offset)
                                    .with_log_start_offset(log_start_offset)
                            }
                            Err(e) => ack_failure(e),
                        }
                    }
                },
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "durability wait failed");
                    (error_codes::for_log(&e), Some(e.to_string()), Vec::new())
                }
                Err(_) => (
                    ResponseError::RequestTimedOut,
                    Some("timed out waiting for the write to become durable".to_string()),
                    Vec::new(),
                ),
            }
        }
        Appended::Failed(code, message, record_errors) => (code, message, record_errors),
    };
    let response = base
        .with_error_code(code.code())
        .with_base_offset(-1)
        .with_log_start_offset(-1);
    // error_message and record_errors exist from v8; clients fail the listed records with the
    // code and the rest of the batch as collateral (librdkafka: _INVALID_DIFFERENT_RECORD).
    if version >= 8 {
        response
            .with_record_errors(
                record_errors
                    .into_iter()
                    .map(|i| {
                        BatchIndexAndErrorMessage::default()
                            .with_batch_index(i)
                            .with_batch_index_error_message(message.clone().map(str_bytes))
                    })
                    .collect(),
            )
            .with_error_message(message.map(str_bytes))
    } else {
        response
    }
}

/// Why an acks=all write on a replicated partition is not acknowledged.
fn ack_failure(e: AckError) -> (ResponseError, Option<String>, Vec<i32>) {
    let (code, message) = match e {
        AckError::NotLeader => (
            ResponseError::NotLeaderOrFollower,
            "leadership moved before the write was replicated",
        ),
        AckError::TimedOut => (
            ResponseError::RequestTimedOut,
            "timed out waiting for the in-sync replicas",
        ),
        AckError::NotEnoughReplicasAfterAppend => (
            ResponseError::NotEnoughReplicasAfterAppend,
            "written, but the in-sync replicas fell below min.insync.replicas",
        ),
    };
    (code, Some(message.to_string()), Vec::new())
}

/// A transactional producer's batch must belong to its open transaction (see
/// `TransactionCoordinator::verify_produce`). Requests without a transactional id, the plain
/// and idempotent produce path, never get here.
async fn verify_transaction(
    broker: &Arc<Broker>,
    transactional_id: &str,
    topic: &str,
    partition: i32,
    records: &[u8],
) -> Result<(), ResponseError> {
    let Some(header) = BatchHeader::parse(records)
        .ok()
        .filter(|h| h.is_transactional() && h.has_producer_id())
    else {
        return Ok(());
    };
    broker
        .transactions
        .verify_produce(
            transactional_id,
            header.producer_id,
            header.producer_epoch,
            (topic.to_string(), partition),
        )
        .await
}

/// Control batches (transaction markers) are written by the transaction coordinator, never by
/// clients; and a client batch with a producer id must carry a sequence (the log lets
/// transactional batches go without one only because the group coordinator writes such batches
/// for TxnOffsetCommit). Only headers are looked at; full validation is the log's.
fn refuse_from_client(records: &[u8]) -> Option<String> {
    let mut pos = 0;
    while pos + BATCH_HEADER_LEN <= records.len() {
        let header = BatchHeader::parse(&records[pos..]).ok()?;
        if header.is_control() {
            return Some("clients may not produce control batches".into());
        }
        if header.has_producer_id() && header.base_sequence < 0 {
            return Some(format!(
                "batch of producer {} has no sequence number",
                header.producer_id
            ));
        }
        // A nonsense length stops the walk; the log's validation reports it properly.
        pos = pos.checked_add(header.total_len().max(BATCH_HEADER_LEN))?;
    }
    None
}
