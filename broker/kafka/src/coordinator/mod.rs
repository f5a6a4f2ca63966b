//! The group coordinator: classic consumer groups and their committed offsets.
//!
//! [`group`] is the pure state machine of one group. This module is the thin runtime around
//! it: one lock over all groups, oneshot channels that complete deferred JoinGroup/SyncGroup
//! requests when the machine answers them, a 100 ms ticker that drives timeouts, and the
//! durable side, the internal compacted topic `__consumer_offsets`.
//!
//! Every committed offset and every group generation is a record in `__consumer_offsets`
//! (layouts in [`records`]), written with `PartitionLog::append` and acknowledged only after
//! `wait_durable`. At start-up the coordinator replays the partitions it leads to rebuild its
//! state. The coordinator of a group is the leader of partition
//! `(java_string_hash(group_id) & 0x7fffffff) % partitions` ([`placement`]), Kafka's own placement, so a
//! group maps to the same partition number as on a Kafka cluster with the same count.
//!
//! Where the rest lives: KIP-848 consumer groups in [`consumer_group`] (pure machine),
//! `consumer_assignor` and `consumer_protocol` (runtime); rebuilding state from
//! `__consumer_offsets` in `replay`; transactional offset commits in `transaction_offsets`;
//! the transaction coordinator (`__transaction_state`, markers) in [`transaction_coordinator`].
//! This file keeps the classic-group entry points (join, sync, heartbeat, leave, commit,
//! fetch, describe, list, delete) and what every part shares.

mod consumer_assignor;
pub(crate) mod consumer_group;
#[cfg(test)]
mod consumer_group_tests;
mod consumer_protocol;
pub(crate) mod group;

#[cfg(test)]
mod group_tests;
pub(crate) mod placement;
mod records;
mod replay;
pub(crate) mod transaction;
pub(crate) mod transaction_coordinator;
mod transaction_offsets;
mod transaction_records;
#[cfg(test)]
mod transaction_tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use chronik_log::{LogError, LogManager, PartitionLog};
use chronik_meta::plan::{self, CreateTopic};
use chronik_meta::{MetaError, MetadataStore};
use futures::future::BoxFuture;
use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error_codes;
use crate::replication::ReplicaManager;

/// A record (group state, or a transaction marker) appended to a log, and the offset to wait on
/// before answering: the coordinators reply only once what they wrote is durable.
pub(crate) type Appended = (Arc<dyn PartitionLog>, i64);
use consumer_group::{ConsumerGroup, ConsumerGroupConfig};
use group::{
    CommittedOffset, Group, GroupConfig, GroupState, JoinRequest, JoinResult, Output, SyncRequest,
    SyncResult, Token,
};
pub use placement::partition_for;
pub(crate) use placement::{internal_partition_log, led_partition, LedPartition};
use records::Key;
use transaction_offsets::PendingOffsets;

/// The internal topic holding offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The internal topic of the transaction coordinator.
pub const TRANSACTION_TOPIC: &str = "__transaction_state";

/// How often timeouts are checked. Session timeouts are seconds, so 100 ms is precise enough.
const TICK: Duration = Duration::from_millis(100);
/// Kafka's offsets.topic.segment.bytes: small segments let compaction clean up sooner.
const OFFSETS_SEGMENT_BYTES: &str = "104857600";

/// Failures of the coordinator's durable side; mapped to Kafka codes in `error_codes`.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("bad record in __consumer_offsets: {0}")]
    Record(String),
    #[error("__consumer_offsets: {0}")]
    Log(#[from] LogError),
    #[error("__consumer_offsets metadata: {0}")]
    Meta(#[from] MetaError),
    #[error("__consumer_offsets partition {0} is not led by this broker")]
    NotLeader(i32),
    /// Another broker could not do its part (transaction markers on partitions it leads).
    #[error("{0}")]
    Remote(String),
}

/// Coordinator settings (Kafka's group.* and offsets.* broker configs).
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub group: GroupConfig,
    /// KIP-848 consumer groups (group.consumer.*).
    pub consumer: ConsumerGroupConfig,
    /// offsets.topic.num.partitions, used when the topic is created.
    pub offsets_topic_partitions: i32,
    pub offsets_topic_replication_factor: i16,
    /// offsets.retention.minutes, in millis.
    pub offsets_retention_ms: i64,
    /// offsets.retention.check.interval.ms
    pub offsets_retention_check_ms: i64,
    /// offset.metadata.max.bytes: longer commit metadata is OFFSET_METADATA_TOO_LARGE.
    pub offset_metadata_max_bytes: usize,
}

/// Where a deferred request's answer goes.
enum Waiter {
    Join(oneshot::Sender<JoinResult>),
    Sync(oneshot::Sender<SyncResult>),
}

/// An answer ready to send.
enum Delivery {
    Join(oneshot::Sender<JoinResult>, JoinResult),
    Sync(oneshot::Sender<SyncResult>, SyncResult),
}

impl Delivery {
    fn send(self) {
        // A closed receiver means the client went away; there is no one left to tell.
        match self {
            Delivery::Join(tx, r) => drop(tx.send(r)),
            Delivery::Sync(tx, r) => drop(tx.send(r)),
        }
    }

    fn fail(self, error: ResponseError) {
        match self {
            Delivery::Join(tx, r) => drop(tx.send(JoinResult::failed(error, &r.member_id))),
            Delivery::Sync(tx, _) => drop(tx.send(SyncResult::failed(error))),
        }
    }
}

#[derive(Default)]
struct Inner {
    groups: HashMap<String, Group>,
    /// KIP-848 consumer groups; their offsets live in `groups` like any group's.
    consumer_groups: HashMap<String, ConsumerGroup>,
    waiters: HashMap<Token, Waiter>,
    /// Offsets committed by transactions whose marker has not arrived yet.
    pending_txn: PendingOffsets,
    /// `__consumer_offsets` partitions whose groups are loaded, and the leader epoch they were
    /// loaded at; a new epoch (leadership moved and came back) loads them again.
    loaded_epochs: HashMap<i32, i32>,
}

/// What DescribeGroups reports about one group.
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<MemberDescription>,
}

pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// The two group protocols (ListGroups v5's group type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    Classic,
    Consumer,
}

impl GroupKind {
    pub fn name(self) -> &'static str {
        match self {
            GroupKind::Classic => "classic",
            GroupKind::Consumer => "consumer",
        }
    }
}

/// What ListGroups reports about one group.
pub struct ListedGroup {
    pub id: String,
    pub protocol_type: String,
    pub state: &'static str,
    pub kind: GroupKind,
}

/// The offsets of one topic answered by OffsetFetch: `None` where nothing is committed.
pub type TopicOffsets = (String, Vec<(i32, Option<CommittedOffset>)>);

pub struct Coordinator {
    node_id: i32,
    config: CoordinatorConfig,
    meta: Arc<dyn MetadataStore>,
    logs: Arc<LogManager>,
    replicas: Arc<ReplicaManager>,
    inner: Mutex<Inner>,
    /// Set once `__consumer_offsets` exists and has been replayed.
    loaded: tokio::sync::OnceCell<()>,
    next_token: AtomicU64,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("node_id", &self.node_id)
            .field("loaded", &self.loaded.initialized())
            .finish_non_exhaustive()
    }
}

/// Wall-clock millis: offsets' commit timestamps must mean the same after a restart.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Coordinator {
    pub fn new(
        node_id: i32,
        config: CoordinatorConfig,
        meta: Arc<dyn MetadataStore>,
        logs: Arc<LogManager>,
        replicas: Arc<ReplicaManager>,
    ) -> Coordinator {
        Coordinator {
            node_id,
            config,
            meta,
            logs,
            replicas,
            inner: Mutex::new(Inner::default()),
            loaded: tokio::sync::OnceCell::new(),
            next_token: AtomicU64::new(1),
        }
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// Create `__consumer_offsets` if needed, replay it, and start the timers. Idempotent;
    /// every request calls it, so a coordinator that could not load retries on the next one.
    pub async fn start(self: &Arc<Self>) -> Result<(), CoordinatorError> {
        self.loaded
            .get_or_try_init(|| async {
                self.ensure_offsets_topic().await?;
                self.replay()?;
                let weak = Arc::downgrade(self);
                tokio::spawn(run_timers(weak));
                Ok::<(), CoordinatorError>(())
            })
            .await
            .map(|_| ())
    }

    async fn ready(self: &Arc<Self>) -> Result<(), ResponseError> {
        self.start().await.map_err(|e| {
            tracing::warn!(error = %e, "group coordinator not available");
            error_codes::for_coordinator(&e)
        })
    }

    async fn ensure_offsets_topic(&self) -> Result<(), CoordinatorError> {
        let state = self.meta.state();
        if state.topics.contains_key(OFFSETS_TOPIC) {
            return Ok(());
        }
        let replication_factor = self
            .config
            .offsets_topic_replication_factor
            .min(state.placeable_brokers().count().max(1) as i16);
        let req = CreateTopic {
            name: OFFSETS_TOPIC.to_string(),
            partitions: self.config.offsets_topic_partitions,
            replication_factor,
            assignments: None,
            configs: [
                ("cleanup.policy".to_string(), "compact".to_string()),
                (
                    "segment.bytes".to_string(),
                    OFFSETS_SEGMENT_BYTES.to_string(),
                ),
            ]
            .into_iter()
            .collect(),
        };
        let command = plan::plan_create_topic(&state, &req, uuid::Uuid::new_v4())?;
        match self.meta.propose(command).await {
            Ok(()) | Err(MetaError::TopicAlreadyExists(_)) => {
                tracing::info!(topic = OFFSETS_TOPIC, "created internal topic");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Partition of `__consumer_offsets` owning `group`, from the topic's actual size.
    pub(crate) fn offsets_partition(&self, group: &str) -> i32 {
        let count = self
            .meta
            .state()
            .topics
            .get(OFFSETS_TOPIC)
            .map_or(self.config.offsets_topic_partitions, |t| {
                t.partitions.len() as i32
            });
        partition_for(group, count)
    }

    /// The broker coordinating `key` (a group id, or a transactional id when `topic` is the
    /// transaction topic): the leader of the key's partition of that internal topic.
    pub fn coordinator_of(&self, key: &str, topic: &str) -> Option<i32> {
        let state = self.meta.state();
        let t = state.topics.get(topic)?;
        let p = partition_for(key, t.partitions.len() as i32);
        t.partitions.get(p as usize).map(|p| p.leader)
    }

    /// NOT_COORDINATOR unless this broker leads the group's partition. The first request
    /// after this broker took up that leadership (a failover, or a restart) loads the
    /// partition's groups from the log, which the previous leader replicated here.
    fn check_owner(&self, group: &str) -> Result<(), ResponseError> {
        let LedPartition {
            partition,
            leader_epoch,
            partitions,
        } = led_partition(&self.meta.state(), OFFSETS_TOPIC, group, self.node_id)?;
        if self.inner.lock().loaded_epochs.get(&partition) == Some(&leader_epoch) {
            return Ok(());
        }
        self.load_partition(partition, leader_epoch, partitions)
            .map_err(|e| {
                tracing::info!(partition, error = %e, "__consumer_offsets partition not loadable yet");
                ResponseError::CoordinatorLoadInProgress
            })
    }

    /// Forget the groups of partitions this broker no longer leads (their new coordinator
    /// loads them from the replicated log).
    fn drop_unowned(&self, inner: &mut Inner) {
        let state = self.meta.state();
        let Some(topic) = state.topics.get(OFFSETS_TOPIC) else {
            return;
        };
        let count = topic.partitions.len() as i32;
        let owned = |partition: i32| {
            topic
                .partitions
                .get(partition as usize)
                .is_some_and(|p| p.leader == self.node_id)
        };
        inner.loaded_epochs.retain(|p, _| owned(*p));
        inner
            .consumer_groups
            .retain(|id, _| owned(partition_for(id, count)));
        if inner
            .groups
            .keys()
            .all(|id| owned(partition_for(id, count)))
        {
            return;
        }
        let dropped: Vec<String> = inner
            .groups
            .keys()
            .filter(|id| !owned(partition_for(id, count)))
            .cloned()
            .collect();
        for id in dropped {
            let Some(group) = inner.groups.remove(&id) else {
                continue;
            };
            // Deferred joins and syncs learn at once that the group moved.
            for token in group.waiting_tokens() {
                match inner.waiters.remove(&token) {
                    Some(Waiter::Join(tx)) => {
                        drop(tx.send(JoinResult::failed(ResponseError::NotCoordinator, "")))
                    }
                    Some(Waiter::Sync(tx)) => {
                        drop(tx.send(SyncResult::failed(ResponseError::NotCoordinator)))
                    }
                    None => {}
                }
            }
            tracing::info!(group = %id, "group moved to another coordinator");
        }
        for by_group in inner.pending_txn.values_mut() {
            by_group.retain(|id, _| owned(partition_for(id, count)));
        }
    }

    fn offsets_log(&self, partition: i32) -> Result<Arc<dyn PartitionLog>, CoordinatorError> {
        internal_partition_log(
            &self.logs,
            &self.meta,
            &self.replicas,
            self.node_id,
            OFFSETS_TOPIC,
            partition,
        )
    }

    /// Append records for `group` to its partition (in the caller's lock, so the log's order
    /// is the order the state changed in). Returns what to wait on for durability.
    fn append(
        &self,
        group: &str,
        records: &[(Bytes, Option<Bytes>)],
    ) -> Result<(Arc<dyn PartitionLog>, i64), CoordinatorError> {
        let log = self.offsets_log(self.offsets_partition(group))?;
        let batch = records::batch(records, now_ms())?;
        let info = log.append(batch, 0)?;
        Ok((log, info.last_offset))
    }

    // ---- request entry points -------------------------------------------------------------

    fn token(&self) -> Token {
        self.next_token.fetch_add(1, Ordering::Relaxed)
    }

    /// Run one step of a group's machine and route its outputs. Groups that a failed first
    /// request created but never used are dropped again.
    fn step<R>(
        self: &Arc<Self>,
        inner: &mut Inner,
        group_id: &str,
        f: impl FnOnce(&mut Group, &mut Vec<Output>) -> R,
    ) -> R {
        let now = now_ms();
        let group = inner
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id, self.config.group.clone(), now));
        let mut out = Vec::new();
        let result = f(group, &mut out);
        let store = group.take_needs_store();
        let record = store.then(|| group.stored());
        if group.is_removable() && group.generation() == 0 {
            inner.groups.remove(group_id);
        }
        self.route(inner, group_id, out, record);
        result
    }

    /// Deliver outputs, after persisting the group's new metadata first if it changed.
    fn route(
        self: &Arc<Self>,
        inner: &mut Inner,
        group_id: &str,
        out: Vec<Output>,
        record: Option<group::StoredGroup>,
    ) {
        let deliveries: Vec<Delivery> = out
            .into_iter()
            .filter_map(|o| match o {
                Output::Join(t, r) => match inner.waiters.remove(&t) {
                    Some(Waiter::Join(tx)) => Some(Delivery::Join(tx, r)),
                    _ => None,
                },
                Output::Sync(t, r) => match inner.waiters.remove(&t) {
                    Some(Waiter::Sync(tx)) => Some(Delivery::Sync(tx, r)),
                    _ => None,
                },
            })
            .collect();
        let Some(record) = record else {
            deliveries.into_iter().for_each(Delivery::send);
            return;
        };
        let key = Key::Group {
            group: group_id.to_string(),
        }
        .encode();
        match self.append(group_id, &[(key, Some(records::encode_group(&record)))]) {
            Ok((log, last)) => {
                tokio::spawn(async move {
                    match log.wait_durable(last).await {
                        Ok(()) => deliveries.into_iter().for_each(Delivery::send),
                        Err(e) => {
                            tracing::warn!(error = %e, "group metadata not durable");
                            let code = error_codes::for_coordinator(&e.into());
                            deliveries.into_iter().for_each(|d| d.fail(code));
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(group = group_id, error = %e, "cannot store group metadata");
                let code = error_codes::for_coordinator(&e);
                deliveries.into_iter().for_each(|d| d.fail(code));
            }
        }
    }

    pub async fn join(
        self: &Arc<Self>,
        group_id: &str,
        req: JoinRequest,
    ) -> BoxFuture<'static, JoinResult> {
        let member_id = req.member_id.clone();
        if let Err(e) = self.ready().await.and_then(|()| self.check_owner(group_id)) {
            return Box::pin(std::future::ready(JoinResult::failed(e, &member_id)));
        }
        let (tx, rx) = oneshot::channel();
        let token = self.token();
        {
            let mut inner = self.inner.lock();
            if inner.active_consumer_group(group_id).is_some() {
                return Box::pin(std::future::ready(JoinResult::failed(
                    ResponseError::InconsistentGroupProtocol,
                    &member_id,
                )));
            }
            inner.waiters.insert(token, Waiter::Join(tx));
            self.step(&mut inner, group_id, |g, out| {
                g.join(req, token, now_ms(), out)
            });
        }
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                JoinResult::failed(ResponseError::CoordinatorNotAvailable, &member_id)
            })
        })
    }

    pub async fn sync(
        self: &Arc<Self>,
        group_id: &str,
        req: SyncRequest,
    ) -> BoxFuture<'static, SyncResult> {
        if let Err(e) = self.ready().await.and_then(|()| self.check_owner(group_id)) {
            return Box::pin(std::future::ready(SyncResult::failed(e)));
        }
        let (tx, rx) = oneshot::channel();
        let token = self.token();
        {
            let mut inner = self.inner.lock();
            if !inner.groups.contains_key(group_id) {
                return Box::pin(std::future::ready(SyncResult::failed(
                    ResponseError::UnknownMemberId,
                )));
            }
            inner.waiters.insert(token, Waiter::Sync(tx));
            self.step(&mut inner, group_id, |g, out| {
                g.sync(req, token, now_ms(), out)
            });
        }
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| SyncResult::failed(ResponseError::CoordinatorNotAvailable))
        })
    }

    pub async fn heartbeat(
        self: &Arc<Self>,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Option<ResponseError> {
        if let Err(e) = self.ready().await.and_then(|()| self.check_owner(group_id)) {
            return Some(e);
        }
        let mut inner = self.inner.lock();
        if !inner.groups.contains_key(group_id) {
            return Some(ResponseError::UnknownMemberId);
        }
        self.step(&mut inner, group_id, |g, _| {
            g.heartbeat(member_id, instance_id, generation, now_ms())
        })
    }

    /// LeaveGroup for each (member id, instance id); the outer error applies to all.
    pub async fn leave(
        self: &Arc<Self>,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        self.ready().await?;
        self.check_owner(group_id)?;
        let mut inner = self.inner.lock();
        match inner.groups.get(group_id).map(Group::state) {
            None => return Ok(vec![Some(ResponseError::UnknownMemberId); members.len()]),
            Some(GroupState::Dead) => return Err(ResponseError::CoordinatorNotAvailable),
            Some(_) => {}
        }
        Ok(self.step(&mut inner, group_id, |g, out| {
            members
                .iter()
                .map(|(m, i)| g.leave(m, i.as_deref(), now_ms(), out))
                .collect()
        }))
    }

    /// Commit offsets. The in-memory state changes at append time (so a fetch right after on
    /// the same connection sees it); the returned future resolves once the records are durable.
    pub async fn commit(
        self: &Arc<Self>,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Result<BoxFuture<'static, Result<(), ResponseError>>, ResponseError> {
        self.ready().await?;
        self.check_owner(group_id)?;
        let now = now_ms();
        let mut inner = self.inner.lock();
        if let Some(consumer) = inner.active_consumer_group(group_id) {
            // KIP-848 members commit with their member epoch as the generation.
            consumer.check_commit(member_id, generation)?;
            inner
                .groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id, self.config.group.clone(), now));
        } else if !inner.groups.contains_key(group_id) {
            if generation >= 0 {
                // A member of a generation this coordinator does not know.
                return Err(ResponseError::IllegalGeneration);
            }
            // Standalone consumers use the coordinator as offset storage only.
            let group = Group::new(group_id, self.config.group.clone(), now);
            inner.groups.insert(group_id.to_string(), group);
        }
        let is_consumer_group = inner.active_consumer_group(group_id).is_some();
        let Some(group) = inner.groups.get_mut(group_id) else {
            return Err(ResponseError::CoordinatorNotAvailable);
        };
        if !is_consumer_group {
            group.check_commit(member_id, instance_id, generation, now)?;
        }
        if offsets.is_empty() {
            return Ok(Box::pin(std::future::ready(Ok(()))));
        }
        let records: Vec<(Bytes, Option<Bytes>)> = offsets
            .iter()
            .map(|(topic, partition, o)| {
                let key = Key::Offset {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                };
                (key.encode(), Some(records::encode_offset(o)))
            })
            .collect();
        let (log, last) = self
            .append(group_id, &records)
            .map_err(|e| error_codes::for_coordinator(&e))?;
        if let Some(group) = inner.groups.get_mut(group_id) {
            for (topic, partition, o) in offsets {
                group.set_offset(&topic, partition, o);
            }
        }
        drop(inner);
        Ok(Box::pin(async move {
            log.wait_durable(last)
                .await
                .map_err(|e| error_codes::for_coordinator(&e.into()))
        }))
    }

    /// Committed offsets of a group: of the listed topics and partitions, or (`None`) all.
    pub async fn fetch_offsets(
        self: &Arc<Self>,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<TopicOffsets>, ResponseError> {
        self.ready().await?;
        self.check_owner(group_id)?;
        let inner = self.inner.lock();
        let group = inner.groups.get(group_id);
        Ok(match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let found = partitions
                        .into_iter()
                        .map(|p| (p, group.and_then(|g| g.offset(&topic, p)).cloned()))
                        .collect();
                    (topic, found)
                })
                .collect(),
            None => {
                let mut by_topic: Vec<TopicOffsets> = Vec::new();
                for ((topic, partition), o) in
                    group.map(|g| g.offsets().iter()).into_iter().flatten()
                {
                    match by_topic.last_mut() {
                        Some((t, list)) if t == topic => list.push((*partition, Some(o.clone()))),
                        _ => by_topic.push((topic.clone(), vec![(*partition, Some(o.clone()))])),
                    }
                }
                by_topic
            }
        })
    }

    pub async fn describe(
        self: &Arc<Self>,
        group_id: &str,
    ) -> Result<GroupDescription, ResponseError> {
        self.ready().await?;
        self.check_owner(group_id)?;
        let inner = self.inner.lock();
        if inner.active_consumer_group(group_id).is_some() {
            // As Kafka: DescribeGroups is for classic groups; clients then use
            // ConsumerGroupDescribe.
            return Err(ResponseError::GroupIdNotFound);
        }
        let Some(g) = inner.groups.get(group_id) else {
            // Kafka describes an unknown group as Dead, without an error.
            return Ok(GroupDescription {
                state: GroupState::Dead,
                protocol_type: String::new(),
                protocol_name: String::new(),
                members: Vec::new(),
            });
        };
        let stable = g.state() == GroupState::Stable;
        let protocol = g.protocol_name().unwrap_or_default().to_string();
        Ok(GroupDescription {
            state: g.state(),
            protocol_type: g.protocol_type().unwrap_or_default().to_string(),
            // Metadata and assignments are only meaningful once the generation is complete.
            protocol_name: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: g
                .members()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata_for(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        })
    }

    /// (group id, protocol type, state) of every group this broker coordinates.
    pub async fn list(self: &Arc<Self>) -> Result<Vec<ListedGroup>, ResponseError> {
        self.ready().await?;
        let inner = self.inner.lock();
        let mut groups: Vec<ListedGroup> = inner
            .groups
            .values()
            .filter(|g| g.state() != GroupState::Dead && !inner.consumer_groups.contains_key(&g.id))
            .map(|g| ListedGroup {
                id: g.id.clone(),
                protocol_type: g.protocol_type().unwrap_or_default().to_string(),
                state: g.state().name(),
                kind: GroupKind::Classic,
            })
            .chain(inner.consumer_groups.values().map(|g| ListedGroup {
                id: g.id.clone(),
                protocol_type: "consumer".to_string(),
                state: g.state().name(),
                kind: GroupKind::Consumer,
            }))
            .collect();
        groups.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(groups)
    }

    /// DeleteGroups for one group: tombstones for its offsets and metadata, durable before
    /// the answer.
    pub async fn delete_group(self: &Arc<Self>, group_id: &str) -> Result<(), ResponseError> {
        self.ready().await?;
        self.check_owner(group_id)?;
        let wait = {
            let mut inner = self.inner.lock();
            if inner.active_consumer_group(group_id).is_some() {
                return Err(ResponseError::NonEmptyGroup);
            }
            let had_consumer_group = inner.consumer_groups.remove(group_id).is_some();
            let offsets = match inner.groups.get_mut(group_id) {
                Some(group) => group.delete(now_ms())?,
                None if had_consumer_group => Vec::new(),
                None => return Err(ResponseError::GroupIdNotFound),
            };
            inner.groups.remove(group_id);
            let records = tombstones(group_id, &offsets, true);
            self.append(group_id, &records)
                .map_err(|e| error_codes::for_coordinator(&e))?
        };
        wait.0
            .wait_durable(wait.1)
            .await
            .map_err(|e| error_codes::for_coordinator(&e.into()))
    }

    /// OffsetDelete: per partition, `None` if deleted or the error that kept it.
    pub async fn delete_offsets(
        self: &Arc<Self>,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        self.ready().await?;
        self.check_owner(group_id)?;
        let wait = {
            let mut inner = self.inner.lock();
            let consumer_topics: Option<Vec<bool>> =
                inner.active_consumer_group(group_id).map(|g| {
                    partitions
                        .iter()
                        .map(|(t, _)| g.is_subscribed_to(t))
                        .collect()
                });
            let Some(group) = inner.groups.get_mut(group_id) else {
                return Err(ResponseError::GroupIdNotFound);
            };
            let is_consumer = group.protocol_type() == Some("consumer");
            let results: Vec<Option<ResponseError>> = match group.state() {
                GroupState::Dead => return Err(ResponseError::GroupIdNotFound),
                _ if consumer_topics.is_some() => consumer_topics
                    .unwrap_or_default()
                    .into_iter()
                    .map(|subscribed| subscribed.then_some(ResponseError::GroupSubscribedToTopic))
                    .collect(),
                GroupState::Empty => vec![None; partitions.len()],
                _ if is_consumer => partitions
                    .iter()
                    .map(|(t, _)| {
                        group
                            .is_subscribed_to(t)
                            .then_some(ResponseError::GroupSubscribedToTopic)
                    })
                    .collect(),
                _ => return Err(ResponseError::NonEmptyGroup),
            };
            let mut removed = Vec::new();
            for ((topic, partition), result) in partitions.iter().zip(&results) {
                if result.is_none() && group.remove_offset(topic, *partition) {
                    removed.push((topic.clone(), *partition));
                }
            }
            if removed.is_empty() {
                return Ok(results);
            }
            let records = tombstones(group_id, &removed, false);
            let wait = self
                .append(group_id, &records)
                .map_err(|e| error_codes::for_coordinator(&e))?;
            (wait, results)
        };
        let ((log, last), results) = wait;
        log.wait_durable(last)
            .await
            .map_err(|e| error_codes::for_coordinator(&e.into()))?;
        Ok(results)
    }

    // ---- timers ---------------------------------------------------------------------------

    fn tick(self: &Arc<Self>, now: i64) {
        let mut inner = self.inner.lock();
        self.drop_unowned(&mut inner);
        self.tick_consumer_groups(&mut inner, now);
        let ids: Vec<String> = inner.groups.keys().cloned().collect();
        for id in ids {
            self.step(&mut inner, &id, |g, out| g.tick(now, out));
        }
    }

    /// Expire offsets past retention and remove empty groups that hold nothing any more,
    /// writing tombstones so compaction forgets them too.
    /// A KIP-848 group's offsets follow its classic entry's rules, except that topics its
    /// members subscribe to do not expire while it has members; an empty consumer group goes
    /// with the last of its offsets.
    fn expire_offsets(self: &Arc<Self>, now: i64) {
        let mut inner = self.inner.lock();
        let mut ids: Vec<String> = inner.groups.keys().cloned().collect();
        ids.extend(
            inner
                .consumer_groups
                .iter()
                .filter(|(id, g)| g.is_empty() && !inner.groups.contains_key(*id))
                .map(|(id, _)| id.clone()),
        );
        for id in ids {
            let Inner {
                groups,
                consumer_groups,
                ..
            } = &mut *inner;
            let active = consumer_groups.get(&id).filter(|g| !g.is_empty());
            let expired = match groups.get_mut(&id) {
                Some(group) => {
                    let mut expired = group.expired_offsets(now, self.config.offsets_retention_ms);
                    if let Some(consumer) = active {
                        expired.retain(|(topic, _)| !consumer.is_subscribed_to(topic));
                    }
                    for (topic, partition) in &expired {
                        group.remove_offset(topic, *partition);
                    }
                    expired
                }
                None => Vec::new(),
            };
            let remove_group = active.is_none() && groups.get(&id).is_none_or(Group::is_removable);
            if expired.is_empty() && !remove_group {
                continue;
            }
            if remove_group {
                inner.groups.remove(&id);
                inner.consumer_groups.remove(&id);
            }
            let records = tombstones(&id, &expired, remove_group);
            if let Err(e) = self.append(&id, &records) {
                tracing::warn!(group = %id, error = %e, "cannot write offset expiry");
            } else {
                tracing::debug!(group = %id, offsets = expired.len(), removed = remove_group, "expired offsets");
            }
        }
    }
}

fn tombstones(
    group: &str,
    offsets: &[(String, i32)],
    with_group: bool,
) -> Vec<(Bytes, Option<Bytes>)> {
    let mut records: Vec<(Bytes, Option<Bytes>)> = offsets
        .iter()
        .map(|(topic, partition)| {
            let key = Key::Offset {
                group: group.to_string(),
                topic: topic.clone(),
                partition: *partition,
            };
            (key.encode(), None)
        })
        .collect();
    if with_group {
        let keys = [
            Key::Group {
                group: group.to_string(),
            },
            Key::ConsumerGroup {
                group: group.to_string(),
            },
        ];
        records.extend(keys.iter().map(|k| (k.encode(), None)));
    }
    records
}

async fn run_timers(coordinator: Weak<Coordinator>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_expiry = 0i64;
    loop {
        interval.tick().await;
        let Some(c) = coordinator.upgrade() else {
            return;
        };
        let now = now_ms();
        c.tick(now);
        if now >= next_expiry {
            c.expire_offsets(now);
            next_expiry = now + c.config.offsets_retention_check_ms.max(1);
        }
    }
}
