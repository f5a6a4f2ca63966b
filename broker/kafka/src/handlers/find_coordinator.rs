//! FindCoordinator: which broker coordinates a group (key type 0) or a transactional id (key
//! type 1): the leader of the key's partition of `__consumer_offsets` or `__transaction_state`.
//! v4+ looks up several keys at once.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::coordinator::{OFFSETS_TOPIC, TRANSACTION_TOPIC};
use crate::Broker;

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let key_type = if version >= 1 {
        request.key_type
    } else {
        GROUP
    };
    if version >= 4 {
        let mut coordinators = Vec::with_capacity(request.coordinator_keys.len());
        for key in request.coordinator_keys {
            coordinators.push(lookup(broker, key, key_type).await);
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = lookup(broker, request.key, key_type).await;
    FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_error_message(c.error_message)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port)
}

async fn lookup(broker: &Arc<Broker>, key: StrBytes, key_type: i8) -> Coordinator {
    let found = match key_type {
        GROUP => match broker.groups.start().await {
            Ok(()) => broker
                .groups
                .coordinator_of(&key, OFFSETS_TOPIC)
                .ok_or(ResponseError::CoordinatorNotAvailable),
            Err(e) => Err(crate::error_codes::for_coordinator(&e)),
        },
        TRANSACTION if key.is_empty() => Err(ResponseError::InvalidRequest),
        // Creates and loads `__transaction_state` on first use, as Kafka does.
        TRANSACTION => match broker.transactions.start(broker).await {
            Ok(()) => broker
                .groups
                .coordinator_of(&key, TRANSACTION_TOPIC)
                .ok_or(ResponseError::CoordinatorNotAvailable),
            Err(e) => Err(crate::error_codes::for_coordinator(&e)),
        },
        _ => Err(ResponseError::InvalidRequest),
    };
    let state = broker.meta.state();
    let base = Coordinator::default().with_key(key);
    match found.and_then(|node| {
        state
            .brokers
            .get(&node)
            .ok_or(ResponseError::CoordinatorNotAvailable)
    }) {
        Ok(b) => base
            .with_node_id(BrokerId(b.node_id))
            .with_host(str_bytes(b.host.clone()))
            .with_port(b.port),
        Err(e) => base
            .with_error_code(e.code())
            .with_error_message(Some(str_bytes(e.to_string())))
            .with_node_id(BrokerId(-1))
            .with_host(str_bytes(""))
            .with_port(-1),
    }
}
