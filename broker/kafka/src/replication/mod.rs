//! Partition replication, Kafka's ISR model, for partitions with more than one replica (a
//! single replica keeps the log's own durable-write high watermark, so a single node behaves
//! exactly as before).
//!
//! - Leader side ([`ReplicaManager`]): per partition led here, each follower's progress
//!   (from its fetches), the high watermark (minimum log end over the ISR), ISR shrink and
//!   expansion proposed through the metadata quorum (`AlterIsr`, fenced by epochs), and the
//!   wait of acks=all produces for the high watermark.
//! - Follower side (`fetcher`): one task per leader broker fetches every partition this
//!   broker follows from it, after truncating each to the end of the last leader epoch it
//!   shares with the leader; batches are appended byte for byte. Fetching and syncing
//!   overlap: the next fetch goes out while the last answer's appends are being synced, and
//!   the follower reports what became durable on the same session (only durable offsets
//!   count for the high watermark).
//! - Sessions (`session`): a follower and a leader keep one ordered stream of
//!   [`FollowerMessage`]s (fetches, durable-progress reports) and fetch answers.
//! - The wire is not here: [`LeaderLink`] is how a follower reaches a leader (the server
//!   implements it over the cluster port's gRPC), and [`Broker::serve_replica_session`] /
//!   [`Broker::serve_epoch_end_offsets`] are what the leader's gRPC service calls.
//!
//! The decisions themselves are chronik-meta's `replication` functions and chronik-log's
//! leader-epoch history; this module is the runtime around them.

mod committed_log;
mod fetcher;
mod session;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chronik_log::{FlushPolicy, PartitionLog};
use chronik_meta::replication::{self as decide, FollowerProgress};
use chronik_meta::{ClusterState, Command, MetadataStore, PartitionMeta, NO_LEADER};
use futures::stream::BoxStream;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::coordinator::now_ms;
use crate::partitions::log_config_for;
use crate::Broker;

pub(crate) use fetcher::FetcherManager;

/// Why a leader refused one partition of a replica fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaError {
    None,
    /// This broker does not lead the partition (or the asker is not one of its replicas).
    NotLeader,
    /// The follower's leader epoch is older than the leader's: its metadata is behind.
    FencedLeaderEpoch,
    /// The follower's leader epoch is newer: this broker has not applied it yet.
    UnknownLeaderEpoch,
    /// The fetch offset is outside the leader's log; `log_end_offset` and `log_start_offset`
    /// say where it is.
    OffsetOutOfRange,
    UnknownTopicOrPartition,
    Storage,
}

impl ReplicaError {
    pub fn code(self) -> i32 {
        self as i32
    }

    pub fn from_code(code: i32) -> ReplicaError {
        match code {
            0 => ReplicaError::None,
            1 => ReplicaError::NotLeader,
            2 => ReplicaError::FencedLeaderEpoch,
            3 => ReplicaError::UnknownLeaderEpoch,
            4 => ReplicaError::OffsetOutOfRange,
            5 => ReplicaError::UnknownTopicOrPartition,
            _ => ReplicaError::Storage,
        }
    }
}

/// One partition of a follower's fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartition {
    pub topic: String,
    pub partition: i32,
    /// The leader epoch the follower follows.
    pub leader_epoch: i32,
    /// The follower's log end offset: everything below it is stored there (not necessarily
    /// synced yet); the answer starts here.
    pub fetch_offset: i64,
    /// Everything below this is durable on the follower: what counts for the high watermark.
    pub durable_offset: i64,
    pub max_bytes: i32,
}

/// A partition's durable log end, reported by a follower between fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurableOffset {
    pub topic: String,
    pub partition: i32,
    /// The leader epoch the follower follows; a report for another epoch is ignored.
    pub leader_epoch: i32,
    pub offset: i64,
}

/// What a follower sends a leader on its replication session, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowerMessage {
    /// Answered with one [`FetchedPartition`] list, in order; held open up to `max_wait`
    /// when there is nothing new.
    Fetch {
        replica_id: i32,
        max_wait: Duration,
        partitions: Vec<FetchPartition>,
    },
    /// Not answered; taken into account at once, even while a fetch is held open.
    Durable {
        replica_id: i32,
        partitions: Vec<DurableOffset>,
    },
}

/// What a follower sends on a session, in order.
pub type FollowerMessages = futures::channel::mpsc::UnboundedReceiver<FollowerMessage>;
/// The answers to a session's fetches, in order; an error ends the session.
pub type FetchAnswers = BoxStream<'static, Result<Vec<FetchedPartition>, String>>;

/// The leader's answer for one partition.
#[derive(Debug, Clone)]
pub struct FetchedPartition {
    pub topic: String,
    pub partition: i32,
    pub error: ReplicaError,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// Whole stored batches from the fetch offset, exactly as on the leader's disk.
    pub records: Bytes,
}

/// OffsetsForLeaderEpoch for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochQuery {
    pub topic: String,
    pub partition: i32,
    /// The leader epoch the follower follows (fencing, as in a fetch).
    pub leader_epoch: i32,
    /// The epoch whose end offset is asked for: the follower's latest.
    pub requested_epoch: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochAnswer {
    pub topic: String,
    pub partition: i32,
    pub error: ReplicaError,
    /// The largest epoch <= the requested one on the leader, and where it ended there.
    pub epoch: i32,
    pub end_offset: i64,
}

/// Kafka's WriteTxnMarkers: a transaction's COMMIT (or ABORT) marker for partitions that
/// another broker leads, sent there by the transaction coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMarkers {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub partitions: Vec<(String, i32)>,
}

/// What writing one partition's marker came to on its leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkerOutcome {
    /// Durable there (below the high watermark on a replicated partition), or the partition
    /// no longer exists.
    Written,
    /// That broker does not lead the partition (any more).
    NotLeader,
    Failed(String),
}

/// How a broker reaches the leader of partitions it does not lead (another broker's cluster
/// port): a follower fetching, a transaction coordinator sending markers.
#[async_trait]
pub trait LeaderLink: Send + Sync + std::fmt::Debug {
    /// Open a replication session with `leader`: `messages` go to it in order and each fetch
    /// among them is answered, in order, on the returned stream. Dropping either end closes
    /// the session.
    async fn replicate(
        &self,
        leader: i32,
        messages: FollowerMessages,
    ) -> Result<FetchAnswers, String>;

    async fn epoch_end_offsets(
        &self,
        leader: i32,
        replica_id: i32,
        queries: Vec<EpochQuery>,
    ) -> Result<Vec<EpochAnswer>, String>;

    /// One outcome per partition asked, in the same order.
    async fn write_txn_markers(
        &self,
        leader: i32,
        markers: TxnMarkers,
    ) -> Result<Vec<MarkerOutcome>, String>;
}

/// Replication settings of one broker.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    /// replica.lag.time.max.ms: a follower not caught up for this long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    /// How long a leader holds an empty replica fetch open for new data.
    pub fetch_max_wait: Duration,
    /// replica.fetch.max.bytes per partition.
    pub fetch_max_bytes: i32,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            replica_lag_time_max_ms: 30_000,
            fetch_max_wait: Duration::from_millis(500),
            fetch_max_bytes: 1 << 20,
        }
    }
}

type PartitionKey = (String, i32);

/// A partition this broker leads with more than one replica.
#[derive(Debug)]
pub(crate) struct LeaderPartition {
    pub(crate) log: Arc<dyn PartitionLog>,
    pub(crate) leader_epoch: i32,
    topic_id: uuid::Uuid,
    /// The log end when this leadership began: a follower below it may still hold a divergent
    /// tail, so it cannot rejoin the ISR yet.
    epoch_start_offset: i64,
    followers: Mutex<BTreeMap<i32, FollowerProgress>>,
    /// The ISR proposed and not yet committed (one change at a time; the next is decided on
    /// the committed result). Until it commits, the high watermark counts the union of both
    /// (Kafka's "maximal ISR"): a follower being added must hold everything below the high
    /// watermark by the time it is an ISR member and so eligible as leader.
    pending_isr: Mutex<Option<Vec<i32>>>,
    /// Set when this leadership ends, so acks=all waiters stop waiting.
    resigned: watch::Sender<bool>,
}

impl LeaderPartition {
    /// Recompute the high watermark from the committed ISR and publish it if it moved.
    fn advance_high_watermark(&self, node_id: i32, isr: &[i32]) {
        let mut maximal = isr.to_vec();
        if let Some(pending) = &*self.pending_isr.lock() {
            maximal.extend(pending.iter().filter(|r| !isr.contains(r)));
        }
        let followers = self.followers.lock();
        let current = self.log.high_watermark();
        let hw = decide::high_watermark(
            node_id,
            self.log.log_end_offset(),
            &maximal,
            &followers,
            current,
        );
        drop(followers);
        if hw > current {
            if let Err(e) = self.log.set_high_watermark(hw) {
                tracing::debug!(error = %e, "could not advance the high watermark");
            }
        }
    }
}

/// The leader side of replication on one broker.
#[derive(Debug, Default)]
pub(crate) struct ReplicaManager {
    leaders: Mutex<HashMap<PartitionKey, Arc<LeaderPartition>>>,
}

impl ReplicaManager {
    pub(crate) fn leader(&self, topic: &str, partition: i32) -> Option<Arc<LeaderPartition>> {
        self.leaders
            .lock()
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    /// The log of a replicated partition led here, as internal writers (the coordinators) see
    /// it: appends carry the leader epoch and `wait_durable` also waits for the in-sync
    /// replicas. `None` until this broker has taken up the leadership.
    pub(crate) fn committed_log(
        &self,
        node_id: i32,
        meta: &Arc<dyn MetadataStore>,
        topic: &str,
        partition: i32,
    ) -> Option<Arc<dyn PartitionLog>> {
        let leader = self.leader(topic, partition)?;
        Some(Arc::new(committed_log::CommittedLog {
            leader,
            node_id,
            topic: topic.to_string(),
            partition,
            meta: Arc::clone(meta),
        }))
    }
}

/// This broker's role for every replicated partition it holds, as decided by metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    /// The topic id tells a topic deleted and created again under the same name apart.
    Leader {
        epoch: i32,
        topic_id: uuid::Uuid,
    },
    Follower {
        leader: i32,
        epoch: i32,
    },
}

fn roles(state: &ClusterState, node_id: i32) -> BTreeMap<PartitionKey, Role> {
    let mut out = BTreeMap::new();
    for topic in state.topics.values() {
        for (index, p) in topic.partitions.iter().enumerate() {
            if p.replicas.len() < 2 || !p.replicas.contains(&node_id) {
                continue;
            }
            let key = (topic.name.clone(), index as i32);
            if p.leader == node_id {
                out.insert(
                    key,
                    Role::Leader {
                        epoch: p.leader_epoch,
                        topic_id: topic.id,
                    },
                );
            } else if p.leader != NO_LEADER {
                out.insert(
                    key,
                    Role::Follower {
                        leader: p.leader,
                        epoch: p.leader_epoch,
                    },
                );
            }
        }
    }
    out
}

impl Broker {
    /// Bring this broker's replica roles in line with metadata: become leader (fresh follower
    /// tracking, leader epoch recorded at the log end, high watermark driven by the ISR) or
    /// follower (fetched by the fetcher tasks) of every replicated partition it holds.
    pub(crate) fn sync_replica_roles(&self, state: &ClusterState) {
        let node_id = self.config.node_id;
        let wanted = roles(state, node_id);
        let mut followed: BTreeMap<i32, BTreeMap<PartitionKey, i32>> = BTreeMap::new();
        {
            let mut leaders = self.replicas.leaders.lock();
            leaders.retain(|key, lp| {
                let keep = matches!(
                    wanted.get(key),
                    Some(Role::Leader { epoch, topic_id })
                        if *epoch == lp.leader_epoch && *topic_id == lp.topic_id
                );
                if !keep {
                    lp.resigned.send_replace(true);
                }
                keep
            });
            for (key, role) in &wanted {
                match role {
                    Role::Leader { epoch, .. } => {
                        if leaders.contains_key(key) {
                            continue;
                        }
                        match self.become_leader(state, key, *epoch) {
                            Ok(lp) => {
                                tracing::info!(topic = %key.0, partition = key.1, epoch, "leading partition");
                                leaders.insert(key.clone(), Arc::new(lp));
                            }
                            Err(e) => {
                                tracing::error!(topic = %key.0, partition = key.1, error = %e, "cannot become leader")
                            }
                        }
                    }
                    Role::Follower { leader, epoch } => {
                        followed
                            .entry(*leader)
                            .or_default()
                            .insert(key.clone(), *epoch);
                    }
                }
            }
        }
        // A partition down to this one replica (a reassignment shrank it) is back on the
        // single-replica path: durability moves its high watermark again.
        for topic in state.topics.values() {
            for (index, p) in topic.partitions.iter().enumerate() {
                if p.leader == node_id && p.replicas.len() == 1 {
                    if let Some(log) = self.logs.get(&topic.name, index as i32) {
                        log.set_auto_high_watermark(true);
                    }
                }
            }
        }
        // The ISR may have shrunk: recompute high watermarks against the committed ISRs.
        for ((topic, partition), lp) in self.replicas.leaders.lock().iter() {
            if let Some(p) = state.partition(topic, *partition) {
                lp.advance_high_watermark(node_id, &p.isr);
            }
        }
        if let Some(fetchers) = self.fetchers.get() {
            fetchers.set_followed(followed);
        }
    }

    fn become_leader(
        &self,
        state: &ClusterState,
        key: &PartitionKey,
        epoch: i32,
    ) -> Result<LeaderPartition, chronik_log::LogError> {
        let topic = state
            .topics
            .get(&key.0)
            .ok_or(chronik_log::LogError::Closed)?;
        let config = log_config_for(&topic.config(), FlushPolicy::Group);
        let log = self.logs.get_or_create(&key.0, key.1, config)?;
        log.set_auto_high_watermark(false);
        log.assign_leader_epoch(epoch)?;
        let now = now_ms();
        let followers = topic
            .partitions
            .get(key.1 as usize)
            .map(|p| {
                p.replicas
                    .iter()
                    .filter(|r| **r != self.config.node_id)
                    .map(|r| (*r, FollowerProgress::new(now)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(LeaderPartition {
            epoch_start_offset: log.log_end_offset(),
            log,
            leader_epoch: epoch,
            topic_id: topic.id,
            followers: Mutex::new(followers),
            pending_isr: Mutex::new(None),
            resigned: watch::Sender::new(false),
        })
    }

    /// Propose an ISR change for a partition led here, unless one is in flight. Fenced by the
    /// leader and partition epochs: a change decided on stale state is refused by the quorum.
    fn propose_isr(
        self: &Arc<Self>,
        lp: &Arc<LeaderPartition>,
        key: PartitionKey,
        p: &PartitionMeta,
        isr: Vec<i32>,
    ) {
        {
            let mut pending = lp.pending_isr.lock();
            if pending.is_some() {
                return;
            }
            *pending = Some(isr.clone());
        }
        let command = Command::AlterIsr {
            topic: key.0.clone(),
            partition: key.1,
            leader: self.config.node_id,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: isr.clone(),
        };
        let broker = Arc::clone(self);
        let lp = Arc::clone(lp);
        tokio::spawn(async move {
            match broker.meta.propose(command).await {
                Ok(()) => {
                    tracing::info!(topic = %key.0, partition = key.1, ?isr, "ISR changed")
                }
                Err(e) => {
                    tracing::debug!(topic = %key.0, partition = key.1, error = %e, "ISR change refused")
                }
            }
            // Committed (and applied here, so the state now shows it) or refused.
            *lp.pending_isr.lock() = None;
        });
    }

    /// The periodic leader duty: drop followers that lag for longer than
    /// replica.lag.time.max.ms from the ISR.
    pub(crate) fn check_isr_lag(self: &Arc<Self>) {
        let state = self.meta.state();
        let now = now_ms();
        let leaders: Vec<_> = self
            .replicas
            .leaders
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        for (key, lp) in leaders {
            let Some(p) = state.partition(&key.0, key.1) else {
                continue;
            };
            if p.leader != self.config.node_id || p.leader_epoch != lp.leader_epoch {
                continue;
            }
            let lagging = decide::isr_to_shrink(
                self.config.node_id,
                &p.isr,
                &lp.followers.lock(),
                now,
                self.config.replication.replica_lag_time_max_ms,
            );
            if !lagging.is_empty() {
                let isr: Vec<i32> = p
                    .isr
                    .iter()
                    .copied()
                    .filter(|r| !lagging.contains(r))
                    .collect();
                tracing::warn!(topic = %key.0, partition = key.1, ?lagging, "followers fell out of sync");
                self.propose_isr(&lp, key, p, isr);
            } else {
                lp.advance_high_watermark(self.config.node_id, &p.isr);
            }
        }
    }

    /// Start the replication runtime: roles for the current metadata, the follower fetchers
    /// (over `link`) and the ISR lag check. Metadata changes reach it through the partition
    /// sync task.
    pub fn start_replication(
        self: &Arc<Self>,
        link: Arc<dyn LeaderLink>,
    ) -> tokio::task::JoinHandle<()> {
        let _ = self.fetchers.set(FetcherManager::new(
            Arc::downgrade(self),
            self.config.node_id,
            link,
        ));
        self.sync_replica_roles(&self.meta.state());
        let broker = Arc::downgrade(self);
        let period = Duration::from_millis(
            (self.config.replication.replica_lag_time_max_ms / 4).clamp(100, 1_000) as u64,
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Some(broker) = broker.upgrade() else {
                    return;
                };
                broker.check_isr_lag();
            }
        })
    }

    /// A follower's fetch, served by the leader: record each follower's progress (which may
    /// advance the high watermark or let it rejoin the ISR), then return stored bytes from
    /// its fetch offset. Waits up to `max_wait` when there is nothing new at all.
    pub(crate) async fn serve_replica_fetch(
        self: &Arc<Self>,
        replica_id: i32,
        max_wait: Duration,
        partitions: Vec<FetchPartition>,
    ) -> Vec<FetchedPartition> {
        let mut watches = Vec::new();
        let first = self.replica_fetch_pass(replica_id, &partitions, true, &mut watches);
        let nothing_new = first
            .iter()
            .all(|p| p.error == ReplicaError::None && p.records.is_empty());
        if !nothing_new || max_wait.is_zero() || watches.is_empty() {
            return first;
        }
        let changed =
            futures::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        if tokio::time::timeout(max_wait, changed).await.is_err() {
            return first;
        }
        self.replica_fetch_pass(replica_id, &partitions, false, &mut Vec::new())
    }

    fn replica_fetch_pass(
        self: &Arc<Self>,
        replica_id: i32,
        partitions: &[FetchPartition],
        record_progress: bool,
        watches: &mut Vec<watch::Receiver<i64>>,
    ) -> Vec<FetchedPartition> {
        let state = self.meta.state();
        let now = now_ms();
        partitions
            .iter()
            .map(|req| {
                let mut out = FetchedPartition {
                    topic: req.topic.clone(),
                    partition: req.partition,
                    error: ReplicaError::None,
                    high_watermark: -1,
                    log_start_offset: -1,
                    log_end_offset: -1,
                    records: Bytes::new(),
                };
                let Some(p) = state.partition(&req.topic, req.partition) else {
                    out.error = ReplicaError::UnknownTopicOrPartition;
                    return out;
                };
                if p.leader != self.config.node_id || !p.replicas.contains(&replica_id) {
                    out.error = ReplicaError::NotLeader;
                    return out;
                }
                if req.leader_epoch < p.leader_epoch {
                    out.error = ReplicaError::FencedLeaderEpoch;
                    return out;
                }
                let lp = match self.replicas.leader(&req.topic, req.partition) {
                    Some(lp) if req.leader_epoch == p.leader_epoch && lp.leader_epoch == p.leader_epoch => lp,
                    _ => {
                        out.error = ReplicaError::UnknownLeaderEpoch;
                        return out;
                    }
                };
                let log = &lp.log;
                if record_progress {
                    // Subscribed before the ends are read, so a write in between still wakes
                    // a long poll.
                    watches.push(log.subscribe_log_end());
                    watches.push(log.subscribe());
                }
                let leo = log.log_end_offset();
                out.log_end_offset = leo;
                out.log_start_offset = log.log_start_offset();
                if req.fetch_offset > leo || req.fetch_offset < out.log_start_offset {
                    out.error = ReplicaError::OffsetOutOfRange;
                    out.high_watermark = log.high_watermark();
                    return out;
                }
                if record_progress {
                    // Nothing past what it fetched can be durable there.
                    let durable = req.durable_offset.min(req.fetch_offset);
                    self.record_follower_progress(&state, p, &lp, (&req.topic, req.partition), replica_id, |f| {
                        f.on_fetch(req.fetch_offset, durable, leo, now);
                    });
                }
                out.high_watermark = log.high_watermark();
                if req.fetch_offset < leo {
                    match log.read(req.fetch_offset, req.max_bytes.max(1) as usize, false) {
                        Ok(read) => out.records = read.records,
                        Err(e) => {
                            tracing::warn!(topic = %req.topic, partition = req.partition, error = %e, "replica read failed");
                            out.error = ReplicaError::Storage;
                        }
                    }
                }
                out
            })
            .collect()
    }

    /// Update what the leader knows of `replica_id`'s progress on a partition it leads, then
    /// advance the high watermark and let the follower rejoin the ISR if it may.
    fn record_follower_progress(
        self: &Arc<Self>,
        state: &ClusterState,
        p: &PartitionMeta,
        lp: &Arc<LeaderPartition>,
        (topic, partition): (&str, i32),
        replica_id: i32,
        update: impl FnOnce(&mut FollowerProgress),
    ) {
        let expand = {
            let mut followers = lp.followers.lock();
            update(
                followers
                    .entry(replica_id)
                    .or_insert_with(|| FollowerProgress::new(now_ms())),
            );
            drop(followers);
            lp.advance_high_watermark(self.config.node_id, &p.isr);
            decide::isr_to_expand(
                &p.replicas,
                &p.isr,
                &lp.followers.lock(),
                lp.log.high_watermark(),
                lp.epoch_start_offset,
            )
        };
        let expand: Vec<i32> = expand.into_iter().filter(|r| state.is_live(*r)).collect();
        if !expand.is_empty() {
            let mut isr = p.isr.clone();
            isr.extend(expand);
            self.propose_isr(lp, (topic.to_string(), partition), p, isr);
        }
    }

    /// A follower's report of what became durable on it since its last fetch: counted at
    /// once, so acks=all produces waiting on the high watermark need not wait for the
    /// follower's next fetch. Reports for another leader epoch, or past this leader's log
    /// end, are ignored.
    pub(crate) fn record_durable_offsets(
        self: &Arc<Self>,
        replica_id: i32,
        reports: &[DurableOffset],
    ) {
        let state = self.meta.state();
        for report in reports {
            let Some(p) = state.partition(&report.topic, report.partition) else {
                continue;
            };
            if p.leader != self.config.node_id
                || !p.replicas.contains(&replica_id)
                || report.leader_epoch != p.leader_epoch
            {
                continue;
            }
            let Some(lp) = self.replicas.leader(&report.topic, report.partition) else {
                continue;
            };
            if lp.leader_epoch != p.leader_epoch || report.offset > lp.log.log_end_offset() {
                continue;
            }
            self.record_follower_progress(
                &state,
                p,
                &lp,
                (&report.topic, report.partition),
                replica_id,
                |f| {
                    f.on_durable(report.offset);
                },
            );
        }
    }

    /// OffsetsForLeaderEpoch, served by the leader to a follower about to truncate.
    pub fn serve_epoch_end_offsets(
        &self,
        replica_id: i32,
        queries: Vec<EpochQuery>,
    ) -> Vec<EpochAnswer> {
        let state = self.meta.state();
        queries
            .into_iter()
            .map(|q| {
                let mut answer = EpochAnswer {
                    topic: q.topic.clone(),
                    partition: q.partition,
                    error: ReplicaError::None,
                    epoch: -1,
                    end_offset: -1,
                };
                let Some(p) = state.partition(&q.topic, q.partition) else {
                    answer.error = ReplicaError::UnknownTopicOrPartition;
                    return answer;
                };
                if p.leader != self.config.node_id || !p.replicas.contains(&replica_id) {
                    answer.error = ReplicaError::NotLeader;
                    return answer;
                }
                if q.leader_epoch < p.leader_epoch {
                    answer.error = ReplicaError::FencedLeaderEpoch;
                    return answer;
                }
                match self.replicas.leader(&q.topic, q.partition) {
                    Some(lp)
                        if q.leader_epoch == p.leader_epoch
                            && lp.leader_epoch == p.leader_epoch =>
                    {
                        let (epoch, end) = lp
                            .log
                            .leader_epochs()
                            .end_offset_for(q.requested_epoch, lp.log.log_end_offset());
                        answer.epoch = epoch;
                        answer.end_offset = end;
                    }
                    _ => answer.error = ReplicaError::UnknownLeaderEpoch,
                }
                answer
            })
            .collect()
    }

    /// For acks=all on a replicated partition led here: wait until the high watermark passes
    /// `last_offset`. `Err` says why the write cannot be acknowledged as replicated.
    pub(crate) async fn wait_replicated(
        &self,
        topic: &str,
        partition: i32,
        last_offset: i64,
        timeout: Duration,
    ) -> Result<(), AckError> {
        let Some(lp) = self.replicas.leader(topic, partition) else {
            return Err(AckError::NotLeader);
        };
        let mut resigned = lp.resigned.subscribe();
        let mut hw = lp.log.subscribe();
        // The ISR may be just the leader: its own (now durable) write can move the HW.
        self.advance_high_watermark(topic, partition);
        let wait = async {
            loop {
                if *resigned.borrow_and_update() {
                    return Err(AckError::NotLeader);
                }
                if *hw.borrow_and_update() > last_offset {
                    return Ok(());
                }
                tokio::select! {
                    r = hw.changed() => if r.is_err() { return Err(AckError::NotLeader) },
                    r = resigned.changed() => if r.is_err() { return Err(AckError::NotLeader) },
                }
            }
        };
        let waited = tokio::time::timeout(timeout, wait).await;
        // Kafka's check once the high watermark passed: if the ISR shrank below
        // min.insync.replicas meanwhile, the write is replicated but not as required. On a
        // timeout the same check, against the followers still fetching, tells a client that
        // the replicas are gone rather than slow.
        let state = self.meta.state();
        let Ok(topic_meta) = state.topic(topic) else {
            return Err(AckError::NotLeader);
        };
        let min_isr = topic_meta.config().min_insync_replicas.max(1) as usize;
        let Some(p) = state.partition(topic, partition) else {
            return Err(AckError::NotLeader);
        };
        match waited {
            Ok(result) => result?,
            Err(_) if self.reachable_isr(topic, partition, &p.isr) < min_isr => {
                return Err(AckError::NotEnoughReplicasAfterAppend)
            }
            Err(_) => return Err(AckError::TimedOut),
        }
        if p.isr.len() < min_isr {
            return Err(AckError::NotEnoughReplicasAfterAppend);
        }
        Ok(())
    }

    /// Recompute a led partition's high watermark now (after a durable local write, which
    /// moves it when the leader is the only in-sync replica).
    pub(crate) fn advance_high_watermark(&self, topic: &str, partition: i32) {
        if let (Some(lp), Some(p)) = (
            self.replicas.leader(topic, partition),
            self.meta.state().partition(topic, partition),
        ) {
            lp.advance_high_watermark(self.config.node_id, &p.isr);
        }
    }

    /// How many members of the committed `isr` this leader can count on now: itself and the
    /// followers caught up within replica.lag.time.max.ms. Below the committed size only while
    /// a shrink is on its way through the metadata quorum, or for as long as that quorum is
    /// lost (two of three brokers down): the committed ISR cannot shrink then, and an acks=all
    /// write would wait for followers that never fetch. Refusing it is always safe.
    pub(crate) fn reachable_isr(&self, topic: &str, partition: i32, isr: &[i32]) -> usize {
        let Some(lp) = self.replicas.leader(topic, partition) else {
            return isr.len();
        };
        let lagging = decide::isr_to_shrink(
            self.config.node_id,
            isr,
            &lp.followers.lock(),
            now_ms(),
            self.config.replication.replica_lag_time_max_ms,
        );
        isr.len() - lagging.len()
    }

    /// Whether this broker has taken up the leadership of this replicated partition.
    pub(crate) fn leads_replicated(&self, topic: &str, partition: i32) -> bool {
        self.replicas.leader(topic, partition).is_some()
    }
}

/// Why an acks=all write was not acknowledged as replicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckError {
    NotLeader,
    TimedOut,
    NotEnoughReplicasAfterAppend,
}
