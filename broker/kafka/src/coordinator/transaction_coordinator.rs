//! The transaction coordinator: the runtime around [`super::transaction`]'s state machine.
//!
//! Each transactional id has its own async lock, held for the whole of a request (validate,
//! persist, write markers, persist again), so one id's steps never interleave while different
//! ids proceed in parallel. Every change is a record in the internal compacted topic
//! `__transaction_state` (layout in [`super::transaction_records`]) and is durable before the
//! request is answered; the coordinator of an id is the leader of partition
//! `partition_for(transactional_id)` of that topic, which start-up replays.
//!
//! Markers (Kafka's WriteTxnMarkers, `markers`): the coordinator appends the COMMIT/ABORT
//! control batch itself to partitions it leads (to `__consumer_offsets` partitions through the
//! group coordinator, which applies the pending offsets) and sends the others to their leaders
//! over the cluster port. A prepared state whose markers could not all be written stays prepared
//! and a 1 s timer finishes it; the same timer aborts transactions past their timeout. After a
//! restart the replayed prepared states are finished and open transactions time out from
//! their recorded start, so every transaction ends.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use chronik_log::{BatchHeader, LogManager, PartitionLog};
use chronik_meta::plan::{self, CreateTopic};
use chronik_meta::{MetaError, MetadataStore};
use kafka_protocol::error::ResponseError;
use tokio::sync::Mutex as AsyncMutex;

use super::transaction::{EndStep, InitStep, TxnError, TxnMetadata, TxnState};
use super::transaction_records as txn_records;
use super::{
    internal_partition_log, led_partition, now_ms, partition_for, records, CoordinatorError,
    LedPartition, OFFSETS_TOPIC, TRANSACTION_TOPIC,
};
use crate::error_codes;
use crate::replication::ReplicaManager;
use crate::Broker;

/// How often prepared transactions are finished and timeouts checked (Kafka's
/// transaction.abort.timed.out.transaction.cleanup.interval.ms is 10 s; 1 s keeps timeouts
/// close to what clients configure).
const TICK: Duration = Duration::from_secs(1);
/// Bytes read per step when replaying a partition.
const REPLAY_READ_BYTES: usize = 4 << 20;
/// Kafka's transaction.state.log.segment.bytes.
const SEGMENT_BYTES: &str = "104857600";

/// Transaction coordinator settings (Kafka's transaction.* broker configs).
#[derive(Debug, Clone)]
pub struct TransactionConfig {
    /// transaction.state.log.num.partitions, used when the topic is created.
    pub partitions: i32,
    pub replication_factor: i16,
    /// transaction.max.timeout.ms: a longer transaction.timeout.ms is refused.
    pub max_timeout_ms: i32,
    /// transactional.id.expiration.ms: an id idle this long (no transaction open or being
    /// completed) is forgotten, so ids used once do not accumulate for good.
    pub id_expiration_ms: i64,
}

mod markers;

type Slot = Arc<AsyncMutex<Option<TxnMetadata>>>;

pub struct TransactionCoordinator {
    node_id: i32,
    config: TransactionConfig,
    meta: Arc<dyn MetadataStore>,
    logs: Arc<LogManager>,
    replicas: Arc<ReplicaManager>,
    /// One slot per transactional id; `None` until InitProducerId creates the id.
    slots: parking_lot::Mutex<HashMap<String, Slot>>,
    loaded: tokio::sync::OnceCell<()>,
    /// `__transaction_state` partitions whose ids are loaded, and the leader epoch they were
    /// loaded at; a new epoch (leadership moved here) loads them again from the log.
    loaded_epochs: parking_lot::Mutex<HashMap<i32, i32>>,
}

impl std::fmt::Debug for TransactionCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionCoordinator")
            .field("node_id", &self.node_id)
            .field("loaded", &self.loaded.initialized())
            .finish_non_exhaustive()
    }
}

/// The identity InitProducerId answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

impl TransactionCoordinator {
    pub fn new(
        node_id: i32,
        config: TransactionConfig,
        meta: Arc<dyn MetadataStore>,
        logs: Arc<LogManager>,
        replicas: Arc<ReplicaManager>,
    ) -> TransactionCoordinator {
        TransactionCoordinator {
            node_id,
            config,
            meta,
            logs,
            replicas,
            slots: parking_lot::Mutex::new(HashMap::new()),
            loaded: tokio::sync::OnceCell::new(),
            loaded_epochs: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// Create `__transaction_state` if needed, replay it and start the timer. Idempotent;
    /// every transactional request calls it.
    pub async fn start(&self, broker: &Arc<Broker>) -> Result<(), CoordinatorError> {
        self.loaded
            .get_or_try_init(|| async {
                // Markers to __consumer_offsets need the group coordinator loaded first.
                broker.groups.start().await?;
                self.ensure_topic().await?;
                self.replay()?;
                tokio::spawn(run_timer(Arc::downgrade(broker)));
                Ok::<(), CoordinatorError>(())
            })
            .await
            .map(|_| ())
    }

    /// At broker start: load only if the topic exists (transactions were used before), so a
    /// broker never used transactionally does not create the topic.
    pub async fn start_if_present(&self, broker: &Arc<Broker>) -> Result<(), CoordinatorError> {
        if self.meta.state().topics.contains_key(TRANSACTION_TOPIC) {
            self.start(broker).await?;
        }
        Ok(())
    }

    async fn ready(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
    ) -> Result<(), ResponseError> {
        self.start(broker).await.map_err(|e| {
            tracing::warn!(error = %e, "transaction coordinator not available");
            error_codes::for_coordinator(&e)
        })?;
        let led = led_partition(
            &self.meta.state(),
            TRANSACTION_TOPIC,
            transactional_id,
            self.node_id,
        )?;
        self.ensure_loaded(led)
    }

    /// The first request for an id after this broker took up the leadership of its
    /// partition (a failover, or a restart) loads that partition's ids from its log, which
    /// the previous leader replicated here.
    fn ensure_loaded(&self, led: LedPartition) -> Result<(), ResponseError> {
        let LedPartition {
            partition,
            leader_epoch,
            partitions,
        } = led;
        if self.loaded_epochs.lock().get(&partition) == Some(&leader_epoch) {
            return Ok(());
        }
        self.load_partition(partition, leader_epoch, partitions)
            .map_err(|e| {
                tracing::info!(partition, error = %e, "__transaction_state partition not loadable yet");
                ResponseError::CoordinatorLoadInProgress
            })
    }

    /// Replace the ids of one `__transaction_state` partition with what its log holds.
    fn load_partition(
        &self,
        partition: i32,
        leader_epoch: i32,
        partitions: i32,
    ) -> Result<(), CoordinatorError> {
        let log = self.state_log(partition)?;
        let mut found: HashMap<String, TxnMetadata> = HashMap::new();
        replay_partition(&*log, &mut found)?;
        let ids = found.len();
        let mut slots = self.slots.lock();
        slots.retain(|id, _| partition_for(id, partitions) != partition);
        for (id, m) in found {
            slots.insert(id, Arc::new(AsyncMutex::new(Some(m))));
        }
        self.loaded_epochs.lock().insert(partition, leader_epoch);
        tracing::info!(
            partition,
            leader_epoch,
            ids,
            "loaded __transaction_state partition"
        );
        Ok(())
    }

    /// Forget the ids of partitions this broker no longer leads (the new coordinator loads
    /// them from the replicated log), so the timer never acts on them here.
    fn drop_unowned(&self) {
        let state = self.meta.state();
        let Some(topic) = state.topics.get(TRANSACTION_TOPIC) else {
            return;
        };
        let count = topic.partitions.len() as i32;
        let owned = |partition: i32| {
            topic
                .partitions
                .get(partition as usize)
                .is_some_and(|p| p.leader == self.node_id)
        };
        self.loaded_epochs.lock().retain(|p, _| owned(*p));
        self.slots
            .lock()
            .retain(|id, _| owned(partition_for(id, count)));
    }

    async fn ensure_topic(&self) -> Result<(), CoordinatorError> {
        let state = self.meta.state();
        if state.topics.contains_key(TRANSACTION_TOPIC) {
            return Ok(());
        }
        let req = CreateTopic {
            name: TRANSACTION_TOPIC.to_string(),
            partitions: self.config.partitions,
            replication_factor: self
                .config
                .replication_factor
                .min(state.placeable_brokers().count().max(1) as i16),
            assignments: None,
            configs: [
                ("cleanup.policy".to_string(), "compact".to_string()),
                ("segment.bytes".to_string(), SEGMENT_BYTES.to_string()),
            ]
            .into_iter()
            .collect(),
        };
        let command = plan::plan_create_topic(&state, &req, uuid::Uuid::new_v4())?;
        match self.meta.propose(command).await {
            Ok(()) | Err(MetaError::TopicAlreadyExists(_)) => {
                tracing::info!(topic = TRANSACTION_TOPIC, "created internal topic");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn state_log(&self, partition: i32) -> Result<Arc<dyn PartitionLog>, CoordinatorError> {
        internal_partition_log(
            &self.logs,
            &self.meta,
            &self.replicas,
            self.node_id,
            TRANSACTION_TOPIC,
            partition,
        )
    }

    fn partition_of(&self, transactional_id: &str) -> i32 {
        let count = self
            .meta
            .state()
            .topics
            .get(TRANSACTION_TOPIC)
            .map_or(self.config.partitions, |t| t.partitions.len() as i32);
        partition_for(transactional_id, count)
    }

    /// The slot of an id, created empty for InitProducerId.
    fn slot(&self, transactional_id: &str) -> Slot {
        self.slots
            .lock()
            .entry(transactional_id.to_string())
            .or_default()
            .clone()
    }

    /// The slot of an id InitProducerId has seen; other requests never create one, so unknown
    /// ids cost no memory.
    fn existing_slot(&self, transactional_id: &str) -> Result<Slot, TxnError> {
        self.slots
            .lock()
            .get(transactional_id)
            .cloned()
            .ok_or(TxnError::InvalidProducerIdMapping)
    }

    /// Append `m` to `__transaction_state`; returns what to wait on for durability.
    fn append_state(
        &self,
        m: &TxnMetadata,
    ) -> Result<(Arc<dyn PartitionLog>, i64), CoordinatorError> {
        self.append_record(&m.transactional_id, Some(txn_records::encode_value(m)))
    }

    /// Append the id's record (`None`: a tombstone) to its `__transaction_state` partition.
    fn append_record(
        &self,
        transactional_id: &str,
        value: Option<bytes::Bytes>,
    ) -> Result<(Arc<dyn PartitionLog>, i64), CoordinatorError> {
        let log = self.state_log(self.partition_of(transactional_id))?;
        let key = txn_records::encode_key(transactional_id);
        let batch = records::batch(&[(key, value)], now_ms())?;
        let info = log.append(batch, 0)?;
        Ok((log, info.last_offset))
    }

    /// Write a tombstone for the id to `__transaction_state` and wait until it is durable: a
    /// replay (restart, new coordinator) then no longer knows it.
    async fn forget(&self, transactional_id: &str) -> Result<(), CoordinatorError> {
        let (log, offset) = self.append_record(transactional_id, None)?;
        log.wait_durable(offset).await?;
        Ok(())
    }

    /// Write `m` to `__transaction_state` and wait until it is durable.
    async fn persist(&self, m: &TxnMetadata) -> Result<(), CoordinatorError> {
        let (log, offset) = self.append_state(m)?;
        log.wait_durable(offset).await?;
        Ok(())
    }

    /// Write the prepared transaction's marker to each of its partitions and wait until all
    /// are durable: those led here directly, the others through their leaders (`markers`). A partition whose topic was deleted needs no marker. Any
    /// failure leaves the transaction prepared for the timer to finish.
    async fn write_markers(
        &self,
        broker: &Broker,
        m: &TxnMetadata,
    ) -> Result<(), CoordinatorError> {
        let Some(kind) = m.marker() else {
            return Ok(());
        };
        let state = self.meta.state();
        let mut here = Vec::new();
        let mut elsewhere: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
        for (topic, partition) in &m.partitions {
            match state.partition(topic, *partition).map(|p| p.leader) {
                // Deleted (markers to __consumer_offsets are checked where they are written).
                None if topic != OFFSETS_TOPIC => {}
                Some(chronik_meta::NO_LEADER) => {
                    return Err(CoordinatorError::NotLeader(*partition));
                }
                Some(l) if l != self.node_id => {
                    elsewhere
                        .entry(l)
                        .or_default()
                        .push((topic.clone(), *partition));
                }
                _ => here.push((topic.clone(), *partition)),
            }
        }
        let local = self.write_markers_here(broker, m.producer_id, m.producer_epoch, kind, &here);
        let remote = self.send_markers(broker, m, kind, elsewhere);
        let (local, remote) = futures::future::join(local, remote).await;
        for result in local {
            result?;
        }
        remote
    }

    /// Finish a prepared transaction: markers, durable, then the Complete state. The Complete
    /// record is not waited for: if a crash loses it, replay finds the prepared state and
    /// writes the markers again, which is harmless (a marker without an open transaction
    /// changes nothing), and the id's next change is persisted after it anyway.
    async fn complete_prepared(
        &self,
        broker: &Broker,
        m: &mut TxnMetadata,
    ) -> Result<(), CoordinatorError> {
        self.write_markers(broker, m).await?;
        let mut done = m.clone();
        done.complete(now_ms());
        self.append_state(&done)?;
        tracing::debug!(
            transactional_id = %m.transactional_id,
            state = ?done.state,
            "transaction completed"
        );
        *m = done;
        Ok(())
    }

    /// Persist a prepared state computed on a copy, adopt it, and finish it. An error after the
    /// prepared state is durable leaves it for the timer to finish.
    async fn prepare_and_complete(
        &self,
        broker: &Broker,
        slot: &mut TxnMetadata,
        prepared: TxnMetadata,
    ) -> Result<(), CoordinatorError> {
        self.persist(&prepared).await?;
        *slot = prepared;
        self.complete_prepared(broker, slot).await
    }

    // ---- request entry points -------------------------------------------------------------

    /// InitProducerId with a transactional id. `fenced` is the code a fenced producer gets at
    /// this request version.
    pub async fn init_producer_id(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        fenced: ResponseError,
    ) -> Result<ProducerIdentity, ResponseError> {
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        self.ready(broker, transactional_id).await?;
        let slot = self.slot(transactional_id);
        let mut guard = slot.lock().await;
        let now = now_ms();
        let Some(m) = guard.as_mut() else {
            let producer_id = allocate_producer_id(broker).await?;
            let fresh = TxnMetadata::new(transactional_id, producer_id, timeout_ms, now);
            self.persist(&fresh)
                .await
                .map_err(|e| coordinator_failure(&e))?;
            *guard = Some(fresh);
            return Ok(ProducerIdentity {
                producer_id,
                producer_epoch: 0,
            });
        };
        // At most: abort the open transaction, then hand out the new epoch.
        for _ in 0..3 {
            match m
                .check_init(expected)
                .map_err(|e| error_codes::for_txn(e, fenced))?
            {
                InitStep::Ready => {
                    let new_pid = if m.epoch_exhausted() {
                        Some(allocate_producer_id(broker).await?)
                    } else {
                        None
                    };
                    let mut next = m.clone();
                    next.bump_for_init(new_pid, timeout_ms, now_ms());
                    self.persist(&next)
                        .await
                        .map_err(|e| coordinator_failure(&e))?;
                    *m = next;
                    return Ok(ProducerIdentity {
                        producer_id: m.producer_id,
                        producer_epoch: m.producer_epoch,
                    });
                }
                InitStep::AbortOpen => {
                    let mut prepared = m.clone();
                    prepared.prepare_abort_for_init(now_ms());
                    tracing::info!(
                        transactional_id,
                        producer_id = m.producer_id,
                        "aborting the open transaction of a re-initialised transactional id"
                    );
                    if let Err(e) = self.prepare_and_complete(broker, m, prepared).await {
                        tracing::warn!(transactional_id, error = %e, "cannot abort open transaction");
                        return Err(ResponseError::ConcurrentTransactions);
                    }
                }
                InitStep::CompletePrepared => {
                    if let Err(e) = self.complete_prepared(broker, m).await {
                        tracing::warn!(transactional_id, error = %e, "cannot complete prepared transaction");
                        return Err(ResponseError::ConcurrentTransactions);
                    }
                }
            }
        }
        Err(ResponseError::ConcurrentTransactions)
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: the partitions join the open transaction.
    pub async fn add_partitions(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
        fenced: ResponseError,
    ) -> Result<(), ResponseError> {
        self.ready(broker, transactional_id).await?;
        let slot = self
            .existing_slot(transactional_id)
            .map_err(|e| error_codes::for_txn(e, fenced))?;
        let mut guard = slot.lock().await;
        let Some(m) = guard.as_mut() else {
            return Err(ResponseError::InvalidProducerIdMapping);
        };
        self.finish_if_prepared(broker, m).await;
        let mut next = m.clone();
        let changed = next
            .add_partitions(producer_id, producer_epoch, partitions, now_ms())
            .map_err(|e| error_codes::for_txn(e, fenced))?;
        if changed {
            self.persist(&next)
                .await
                .map_err(|e| coordinator_failure(&e))?;
            *m = next;
        }
        Ok(())
    }

    /// EndTxn: commit or abort. Answered once the decision is durable; the markers are written
    /// before that unless a partition fails, in which case the timer finishes them.
    pub async fn end_txn(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        fenced: ResponseError,
    ) -> Result<(), ResponseError> {
        self.ready(broker, transactional_id).await?;
        let slot = self
            .existing_slot(transactional_id)
            .map_err(|e| error_codes::for_txn(e, fenced))?;
        let mut guard = slot.lock().await;
        let Some(m) = guard.as_mut() else {
            return Err(ResponseError::InvalidProducerIdMapping);
        };
        self.finish_if_prepared(broker, m).await;
        let mut prepared = m.clone();
        match prepared
            .prepare_end(producer_id, producer_epoch, commit, now_ms())
            .map_err(|e| error_codes::for_txn(e, fenced))?
        {
            EndStep::AlreadyDone => Ok(()),
            EndStep::WriteMarkers => {
                self.persist(&prepared)
                    .await
                    .map_err(|e| coordinator_failure(&e))?;
                *m = prepared;
                if let Err(e) = self.complete_prepared(broker, m).await {
                    tracing::warn!(transactional_id, error = %e, "markers not written yet; retrying in the background");
                }
                Ok(())
            }
        }
    }

    /// Check that `producer_id`/`producer_epoch` own `transactional_id` and that its open
    /// transaction includes `partition` (TxnOffsetCommit is sent to the group coordinator,
    /// which asks here before storing offsets: offsets outside the transaction would never get
    /// a marker and stay pending for good). An id coordinated by another broker is not
    /// checked, as Kafka's group coordinator does not: its coordinator's markers settle the
    /// pending offsets (AddOffsetsToTxn put this partition in the transaction there).
    pub async fn check_producer(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partition: (String, i32),
    ) -> Result<(), TxnError> {
        let coordinated_elsewhere = matches!(
            led_partition(
                &self.meta.state(),
                TRANSACTION_TOPIC,
                transactional_id,
                self.node_id
            ),
            Err(ResponseError::NotCoordinator)
        );
        if coordinated_elsewhere {
            return Ok(());
        }
        let slot = self.existing_slot(transactional_id)?;
        let guard = slot.lock().await;
        match guard.as_ref() {
            None => Err(TxnError::InvalidProducerIdMapping),
            Some(m) if m.producer_id != producer_id => Err(TxnError::InvalidProducerIdMapping),
            Some(m) if m.producer_epoch != producer_epoch => Err(TxnError::ProducerFenced),
            Some(m) if m.state != TxnState::Ongoing || !m.partitions.contains(&partition) => {
                Err(TxnError::InvalidTxnState)
            }
            Some(_) => Ok(()),
        }
    }

    /// Produce of a transactional batch (KIP-890's verification, done locally): the producer
    /// must own the id at this epoch and have added the partition to its open transaction.
    /// Without this a batch written outside the transaction would never get a marker and hold
    /// the partition's last stable offset for good (a hanging transaction). Ids coordinated
    /// elsewhere are not checked here.
    pub async fn verify_produce(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partition: (String, i32),
    ) -> Result<(), ResponseError> {
        let Ok(led) = led_partition(
            &self.meta.state(),
            TRANSACTION_TOPIC,
            transactional_id,
            self.node_id,
        ) else {
            return Ok(());
        };
        self.ensure_loaded(led)?;
        let slot = self
            .existing_slot(transactional_id)
            .map_err(|_| ResponseError::InvalidProducerIdMapping)?;
        let guard = slot.lock().await;
        match guard.as_ref() {
            None => Err(ResponseError::InvalidProducerIdMapping),
            Some(m) if m.producer_id != producer_id => Err(ResponseError::InvalidProducerIdMapping),
            Some(m) if m.producer_epoch != producer_epoch => {
                Err(ResponseError::InvalidProducerEpoch)
            }
            Some(m) if m.state != TxnState::Ongoing || !m.partitions.contains(&partition) => {
                Err(ResponseError::InvalidTxnState)
            }
            Some(_) => Ok(()),
        }
    }

    /// DescribeTransactions of one id.
    pub async fn describe(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
    ) -> Result<TxnMetadata, ResponseError> {
        self.ready(broker, transactional_id).await?;
        let slot = self
            .existing_slot(transactional_id)
            .map_err(|_| ResponseError::TransactionalIdNotFound)?;
        let guard = slot.lock().await;
        guard.clone().ok_or(ResponseError::TransactionalIdNotFound)
    }

    /// ListTransactions: every transactional id this broker coordinates, by id.
    pub async fn list(&self, broker: &Arc<Broker>) -> Result<Vec<TxnMetadata>, ResponseError> {
        self.start(broker).await.map_err(|e| {
            tracing::warn!(error = %e, "transaction coordinator not available");
            error_codes::for_coordinator(&e)
        })?;
        let slots: Vec<Slot> = self.slots.lock().values().cloned().collect();
        let mut out = Vec::with_capacity(slots.len());
        for slot in slots {
            if let Some(m) = slot.lock().await.clone() {
                out.push(m);
            }
        }
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(out)
    }

    async fn finish_if_prepared(&self, broker: &Broker, m: &mut TxnMetadata) {
        if m.state.is_prepared() {
            if let Err(e) = self.complete_prepared(broker, m).await {
                tracing::warn!(transactional_id = %m.transactional_id, error = %e, "cannot complete prepared transaction");
            }
        }
    }

    // ---- timer and replay -----------------------------------------------------------------

    /// Finish prepared transactions and abort expired ones. Ids busy with a request are left
    /// for the next tick.
    async fn tick(&self, broker: &Broker) {
        self.drop_unowned();
        let slots: Vec<Slot> = self.slots.lock().values().cloned().collect();
        for slot in slots {
            let Ok(mut guard) = slot.try_lock() else {
                continue;
            };
            let Some(m) = guard.as_mut() else { continue };
            if m.state.is_prepared() {
                self.finish_if_prepared(broker, m).await;
                continue;
            }
            if m.expired(now_ms(), self.config.id_expiration_ms) {
                let id = m.transactional_id.clone();
                match self.forget(&id).await {
                    Ok(()) => {
                        tracing::info!(transactional_id = %id, "transactional id expired");
                        *guard = None;
                        drop(guard);
                        self.slots
                            .lock()
                            .retain(|k, s| k != &id || !Arc::ptr_eq(s, &slot));
                    }
                    Err(e) => {
                        tracing::warn!(transactional_id = %id, error = %e, "cannot expire transactional id")
                    }
                }
                continue;
            }
            let mut prepared = m.clone();
            if !prepared.prepare_abort_on_timeout(now_ms()) {
                continue;
            }
            tracing::info!(
                transactional_id = %m.transactional_id,
                producer_id = m.producer_id,
                timeout_ms = m.timeout_ms,
                "aborting transaction past its timeout"
            );
            if let Err(e) = self.prepare_and_complete(broker, m, prepared).await {
                tracing::warn!(transactional_id = %m.transactional_id, error = %e, "cannot abort expired transaction");
            }
        }
    }

    /// Rebuild every transactional id from the `__transaction_state` partitions this broker
    /// leads.
    fn replay(&self) -> Result<(), CoordinatorError> {
        let state = self.meta.state();
        let topic = state.topic(TRANSACTION_TOPIC)?;
        let mut found: HashMap<String, TxnMetadata> = HashMap::new();
        for (index, p) in topic.partitions.iter().enumerate() {
            if p.leader != self.node_id {
                continue;
            }
            let log = match self.state_log(index as i32) {
                Ok(log) => log,
                // A replicated partition whose leadership is still being set up here: its
                // first request loads it.
                Err(CoordinatorError::NotLeader(_)) => continue,
                Err(e) => return Err(e),
            };
            replay_partition(&*log, &mut found)?;
            self.loaded_epochs
                .lock()
                .insert(index as i32, p.leader_epoch);
        }
        let open = found.values().filter(|m| m.start_timestamp >= 0).count();
        let mut slots = self.slots.lock();
        for (id, m) in found {
            slots.insert(id, Arc::new(AsyncMutex::new(Some(m))));
        }
        tracing::info!(
            transactional_ids = slots.len(),
            open,
            "transaction coordinator loaded"
        );
        Ok(())
    }
}

async fn allocate_producer_id(broker: &Broker) -> Result<i64, ResponseError> {
    broker.producer_ids.next(broker).await.map_err(|e| {
        tracing::warn!(error = %e, "cannot reserve producer ids");
        error_codes::for_meta(&e)
    })
}

fn coordinator_failure(e: &CoordinatorError) -> ResponseError {
    tracing::warn!(error = %e, "transaction state not stored");
    error_codes::for_coordinator(e)
}

fn replay_partition(
    log: &dyn PartitionLog,
    found: &mut HashMap<String, TxnMetadata>,
) -> Result<(), CoordinatorError> {
    let mut position = log.log_start_offset();
    let end = log.log_end_offset();
    while position < end {
        let read = log.read(position, REPLAY_READ_BYTES, false)?;
        if read.records.is_empty() {
            break;
        }
        let bytes = read.records;
        let mut at = 0usize;
        while at < bytes.len() {
            let header = BatchHeader::parse(&bytes[at..])?;
            let len = header.total_len();
            if len == 0 || at + len > bytes.len() {
                break;
            }
            let mut batch = bytes.slice(at..at + len);
            at += len;
            position = header.next_offset();
            if header.is_control() {
                continue;
            }
            let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut batch)
                .map_err(|e| CoordinatorError::Record(format!("cannot decode batch: {e}")))?;
            for record in set.records {
                let Some(key) = record.key else { continue };
                let Some(id) = txn_records::decode_key(key)? else {
                    continue;
                };
                match record.value {
                    Some(v) => {
                        let m = txn_records::decode_value(&id, v)?;
                        found.insert(id, m);
                    }
                    None => {
                        found.remove(&id);
                    }
                }
            }
        }
    }
    Ok(())
}

async fn run_timer(broker: Weak<Broker>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(b) = broker.upgrade() else {
            return;
        };
        b.transactions.tick(&b).await;
    }
}
