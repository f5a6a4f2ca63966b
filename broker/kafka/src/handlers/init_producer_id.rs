//! InitProducerId: give a producer its identity, a producer id and epoch.
//!
//! With a transactional id the transaction coordinator answers (see
//! `coordinator::transaction_coordinator`): the id keeps its producer id and gets the next
//! epoch, which fences any older producer of the same id, and a transaction it left open is
//! aborted first. PRODUCER_FENCED exists from v4; older versions get INVALID_PRODUCER_EPOCH.
//!
//! Behaviour follows Kafka's transaction coordinator for requests without a transactional id:
//! every request gets a fresh producer id with epoch 0, whatever producer id and epoch a v3+
//! request carries. (KIP-360's epoch bump applies to transactional ids only; an idempotent Java
//! producer bumps its epoch locally, and librdkafka asks for a new id, which is what this
//! answers.) Ids come from blocks reserved through the metadata state machine
//! ([`Command::AllocateProducerIds`]), so they are unique across restarts and, later, brokers.

use std::sync::Arc;

use chronik_meta::{Command, MetaError};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::error_codes;
use crate::Broker;

/// Ids reserved per metadata command: one journal write serves this many producers (Kafka
/// reserves blocks of 1000 too). Ids of a block unused at shutdown are skipped, never reused.
const BLOCK_SIZE: i64 = 1000;

/// Hands out producer ids from this broker's current block, reserving a new block through the
/// metadata store when it runs out.
#[derive(Debug, Default)]
pub(crate) struct ProducerIdAllocator {
    /// `next..end` of the current block. The async lock also serialises reservations, so the
    /// block read back from the state after a proposal is the one this broker just reserved.
    block: tokio::sync::Mutex<Option<(i64, i64)>>,
}

impl ProducerIdAllocator {
    pub(crate) async fn next(&self, broker: &Broker) -> Result<i64, MetaError> {
        let mut block = self.block.lock().await;
        if let Some((next, end)) = block.as_mut() {
            if *next < *end {
                let id = *next;
                *next += 1;
                return Ok(id);
            }
        }
        let node_id = broker.config.node_id;
        broker
            .meta
            .propose(Command::AllocateProducerIds {
                node_id,
                size: BLOCK_SIZE,
            })
            .await?;
        let reserved = broker
            .meta
            .state()
            .producer_id_blocks
            .get(&node_id)
            .copied()
            .ok_or_else(|| MetaError::Storage("reserved producer id block not found".into()))?;
        *block = Some((reserved.first + 1, reserved.first + reserved.size));
        Ok(reserved.first)
    }
}

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    match init(broker, &request, version).await {
        Ok((producer_id, epoch)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch),
        Err(code) => InitProducerIdResponse::default()
            .with_error_code(code.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    }
}

async fn init(
    broker: &Arc<Broker>,
    request: &InitProducerIdRequest,
    version: i16,
) -> Result<(i64, i16), ResponseError> {
    // Kafka refuses a producer id without an epoch or the reverse (v3+ carry both).
    if version >= 3 && ((request.producer_id.0 < 0) != (request.producer_epoch < 0)) {
        return Err(ResponseError::InvalidRequest);
    }
    match request.transactional_id.as_ref().map(|t| t.0.as_str()) {
        None => {}
        // Kafka: an empty transactional id is a malformed request, not a transactional one.
        Some("") => return Err(ResponseError::InvalidRequest),
        Some(id) => {
            let expected = (version >= 3 && request.producer_id.0 >= 0)
                .then_some((request.producer_id.0, request.producer_epoch));
            let identity = broker
                .transactions
                .init_producer_id(
                    broker,
                    id,
                    request.transaction_timeout_ms,
                    expected,
                    error_codes::fenced_code(version, 4),
                )
                .await?;
            return Ok((identity.producer_id, identity.producer_epoch));
        }
    }
    let producer_id = broker.producer_ids.next(broker).await.map_err(|e| {
        tracing::warn!(error = %e, "cannot reserve producer ids");
        error_codes::for_meta(&e)
    })?;
    Ok((producer_id, 0))
}
