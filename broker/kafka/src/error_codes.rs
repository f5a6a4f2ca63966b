//! The one place where internal errors become Kafka error codes. Clients' retry logic depends on
//! these, so each mapping follows the meaning Kafka gives the code.

use chronik_log::LogError;
use chronik_meta::MetaError;
use kafka_protocol::error::ResponseError;

use crate::coordinator::transaction::TxnError;
use crate::coordinator::CoordinatorError;

pub fn for_log(e: &LogError) -> ResponseError {
    match e {
        LogError::CorruptBatch(_) => ResponseError::CorruptMessage,
        LogError::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
        LogError::InvalidBatch(_) => ResponseError::InvalidRecord,
        LogError::InvalidRecords { .. } => ResponseError::InvalidRecord,
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        // A closed log belongs to a topic that is being deleted.
        LogError::Closed => ResponseError::UnknownTopicOrPartition,
        LogError::Io(_) => ResponseError::KafkaStorageError,
        // Produce answers a duplicate as success with the original offsets (as Kafka does since
        // 1.1); the code is what the error itself means, for any other caller.
        LogError::DuplicateSequence { .. } => ResponseError::DuplicateSequenceNumber,
        LogError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        // Not PRODUCER_FENCED: since Kafka 2.7 a produce with an old epoch gets
        // INVALID_PRODUCER_EPOCH, which librdkafka and Java treat as a fencing error.
        LogError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        LogError::InvalidTxnState { .. } => ResponseError::InvalidTxnState,
        #[allow(unreachable_patterns)]
        _ => ResponseError::UnknownServerError,
    }
}

pub fn for_meta(e: &MetaError) -> ResponseError {
    match e {
        MetaError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
        MetaError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        MetaError::InvalidTopicName { .. } => ResponseError::InvalidTopicException,
        MetaError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        MetaError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        MetaError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        MetaError::InvalidConfig { .. } => ResponseError::InvalidConfig,
        MetaError::Storage(_) => ResponseError::KafkaStorageError,
        MetaError::ProducerIdsExhausted(_) => ResponseError::UnknownServerError,
        MetaError::UnknownBroker(_) => ResponseError::BrokerNotAvailable,
        // Leadership moved while the change was being made: retriable against the new state.
        MetaError::StalePartitionState(_) => ResponseError::NotLeaderOrFollower,
        // Retriable: clients try again once the Raft quorum has a leader.
        MetaError::Unavailable(_) => ResponseError::RequestTimedOut,
        // Membership is not changed through Kafka APIs.
        MetaError::NoReassignmentInProgress(_) => ResponseError::NoReassignmentInProgress,
        MetaError::AlreadyMember(_)
        | MetaError::MembershipUnsupported(_)
        | MetaError::CannotDrain(_) => ResponseError::UnknownServerError,
    }
}

/// A transaction coordinator refusal. `fenced` is what a fenced producer gets at the request's
/// version: PRODUCER_FENCED where the client knows it (InitProducerId v4+, AddPartitionsToTxn,
/// AddOffsetsToTxn and EndTxn v2+), INVALID_PRODUCER_EPOCH before, which older clients handle
/// the same way (Kafka's KafkaApis downgrades it likewise).
pub fn for_txn(e: TxnError, fenced: ResponseError) -> ResponseError {
    match e {
        TxnError::ProducerFenced => fenced,
        TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
        TxnError::InvalidTxnState => ResponseError::InvalidTxnState,
        TxnError::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
    }
}

/// The fencing code for a request version: PRODUCER_FENCED from `since`, INVALID_PRODUCER_EPOCH
/// before.
pub fn fenced_code(version: i16, since: i16) -> ResponseError {
    if version >= since {
        ResponseError::ProducerFenced
    } else {
        ResponseError::InvalidProducerEpoch
    }
}

pub fn for_coordinator(e: &CoordinatorError) -> ResponseError {
    match e {
        // Kafka answers failed writes to __consumer_offsets with retriable coordinator errors
        // so that clients retry (and look the coordinator up again) instead of giving up.
        CoordinatorError::Log(LogError::BatchTooLarge { .. }) => ResponseError::UnknownServerError,
        CoordinatorError::Log(_) | CoordinatorError::Meta(_) | CoordinatorError::Remote(_) => {
            ResponseError::CoordinatorNotAvailable
        }
        CoordinatorError::NotLeader(_) => ResponseError::NotCoordinator,
        CoordinatorError::Record(_) => ResponseError::UnknownServerError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_kafka() {
        assert_eq!(for_log(&LogError::CorruptBatch("crc".into())).code(), 2);
        assert_eq!(
            for_log(&LogError::BatchTooLarge { size: 2, max: 1 }).code(),
            10
        );
        assert_eq!(
            for_log(&LogError::OffsetOutOfRange {
                offset: 9,
                start: 0,
                end: 1
            })
            .code(),
            1
        );
        assert_eq!(for_meta(&MetaError::UnknownTopic("t".into())).code(), 3);
        let (pid, reason) = (1, String::new());
        assert_eq!(
            for_log(&LogError::OutOfOrderSequence {
                producer_id: pid,
                reason
            })
            .code(),
            45
        );
        let dup = LogError::DuplicateSequence {
            producer_id: pid,
            base_offset: 0,
            last_offset: 0,
        };
        assert_eq!(for_log(&dup).code(), 46);
        let fenced = LogError::InvalidProducerEpoch {
            producer_id: pid,
            epoch: 0,
            current: 1,
        };
        assert_eq!(for_log(&fenced).code(), 47);
        assert_eq!(
            for_txn(TxnError::ProducerFenced, fenced_code(1, 2)).code(),
            47
        );
        assert_eq!(
            for_txn(TxnError::ProducerFenced, fenced_code(2, 2)).code(),
            90
        );
        assert_eq!(
            for_txn(TxnError::InvalidProducerIdMapping, fenced_code(0, 2)).code(),
            49
        );
        assert_eq!(
            for_txn(TxnError::InvalidTxnState, fenced_code(0, 2)).code(),
            48
        );
        assert_eq!(
            for_txn(TxnError::ConcurrentTransactions, fenced_code(0, 2)).code(),
            51
        );
        assert_eq!(
            for_meta(&MetaError::TopicAlreadyExists("t".into())).code(),
            36
        );
        assert_eq!(
            for_meta(&MetaError::InvalidConfig {
                key: "k".into(),
                reason: "r".into()
            })
            .code(),
            40
        );
    }
}
