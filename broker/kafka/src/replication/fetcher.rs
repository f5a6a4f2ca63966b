//! The follower side: one task per leader broker fetches every partition this broker follows
//! from it. Before a partition's first fetch under a leader epoch, the follower asks the leader
//! where its own latest epoch ended there (OffsetsForLeaderEpoch) and truncates to the last
//! offset both hold, so no divergent tail survives a leader change. Fetched batches are
//! appended byte for byte; the next fetch goes out while they are being synced, and once they
//! are durable the follower says so on the session (the leader counts only durable offsets
//! towards the high watermark). At most one answer is being synced at a time.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use chronik_log::{truncation_offset, FlushPolicy, PartitionLog};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use parking_lot::Mutex;
use tokio::sync::watch;

use super::{
    DurableOffset, EpochQuery, FetchAnswers, FetchPartition, FetchedPartition, FollowerMessage,
    LeaderLink, PartitionKey, ReplicaError,
};
use crate::partitions::log_config_for;
use crate::Broker;

/// Pause after a failed round (leader unreachable, not yet aware of its leadership).
const RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// A fetch that gets no answer in this long is abandoned and retried.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Followed partitions of one leader and the epoch followed.
type Followed = BTreeMap<PartitionKey, i32>;

#[derive(Debug)]
pub(crate) struct FetcherManager {
    broker: Weak<Broker>,
    /// This broker's id: the replica id its fetchers send.
    node_id: i32,
    link: Arc<dyn LeaderLink>,
    /// Per leader broker: what its fetcher should fetch.
    fetchers: Mutex<HashMap<i32, watch::Sender<Followed>>>,
}

impl FetcherManager {
    /// The link to other brokers' cluster ports (also used for transaction markers).
    pub(crate) fn link(&self) -> &Arc<dyn LeaderLink> {
        &self.link
    }

    pub(crate) fn new(broker: Weak<Broker>, node_id: i32, link: Arc<dyn LeaderLink>) -> Self {
        FetcherManager {
            broker,
            node_id,
            link,
            fetchers: Mutex::new(HashMap::new()),
        }
    }

    /// Hand every leader's fetcher its partitions; start fetchers for new leaders and idle
    /// those with nothing left to fetch.
    pub(crate) fn set_followed(&self, by_leader: BTreeMap<i32, Followed>) {
        let mut fetchers = self.fetchers.lock();
        for (leader, tx) in fetchers.iter() {
            if !by_leader.contains_key(leader) {
                tx.send_replace(Followed::new());
            }
        }
        for (leader, followed) in by_leader {
            match fetchers.get(&leader) {
                Some(tx) => {
                    tx.send_if_modified(|current| {
                        let changed = *current != followed;
                        *current = followed.clone();
                        changed
                    });
                }
                None => {
                    let (tx, rx) = watch::channel(followed);
                    fetchers.insert(leader, tx);
                    let fetcher = LeaderFetcher {
                        broker: self.broker.clone(),
                        me: self.node_id,
                        link: Arc::clone(&self.link),
                        leader,
                        followed: rx,
                        truncated: HashMap::new(),
                        start_at: HashMap::new(),
                        session: None,
                        durable: HashMap::new(),
                        syncing: None,
                    };
                    tokio::spawn(fetcher.run());
                }
            }
        }
    }
}

struct LeaderFetcher {
    broker: Weak<Broker>,
    /// This broker's id, the replica id sent to the leader.
    me: i32,
    link: Arc<dyn LeaderLink>,
    leader: i32,
    followed: watch::Receiver<Followed>,
    /// The epoch each partition was last truncated for; fetching starts after that.
    truncated: HashMap<PartitionKey, i32>,
    /// Where to fetch from when the leader's log starts past ours (retention there): the gap
    /// is kept, as compaction's gaps are.
    start_at: HashMap<PartitionKey, i64>,
    /// The open session with the leader, if any (reopened after any failure).
    session: Option<Session>,
    /// Per partition: everything below this is durable here, as last reported to the leader.
    durable: HashMap<PartitionKey, i64>,
    /// The last answer's appends while they are being synced.
    syncing: Option<Syncing>,
}

struct Session {
    messages: futures::channel::mpsc::UnboundedSender<FollowerMessage>,
    answers: FetchAnswers,
}

/// Appends of one answer on their way to disk.
struct Syncing {
    done: BoxFuture<'static, Result<(), String>>,
    appended: Vec<Appended>,
}

/// What ended the wait for a fetch answer.
enum Awaited {
    Answer(Result<Vec<FetchedPartition>, String>),
    Synced(Result<(), String>),
    FollowedChanged(bool),
}

impl LeaderFetcher {
    async fn run(mut self) {
        loop {
            let followed = self.followed.borrow_and_update().clone();
            if followed.is_empty() {
                self.session = None;
                if let Err(e) = self.finish_syncing().await {
                    tracing::debug!(leader = self.leader, error = %e, "replicated appends failed to sync");
                }
                self.truncated.clear();
                self.durable.clear();
                if self.followed.changed().await.is_err() {
                    return;
                }
                continue;
            }
            self.truncated.retain(|k, _| followed.contains_key(k));
            self.start_at.retain(|k, _| followed.contains_key(k));
            self.durable.retain(|k, _| followed.contains_key(k));
            let Some(broker) = self.broker.upgrade() else {
                return;
            };
            let progressed = match self.round(&broker, &followed).await {
                Ok(progressed) => progressed,
                Err(e) => {
                    tracing::debug!(leader = self.leader, error = %e, "replica fetch failed");
                    self.session = None;
                    false
                }
            };
            drop(broker);
            if !progressed {
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_BACKOFF) => {}
                    r = self.followed.changed() => if r.is_err() { return },
                }
            }
        }
    }

    fn open(broker: &Broker, key: &PartitionKey) -> Option<Arc<dyn PartitionLog>> {
        let state = broker.meta.state();
        let topic = state.topics.get(&key.0)?;
        let config = log_config_for(&topic.config(), FlushPolicy::Group);
        match broker.logs.get_or_create(&key.0, key.1, config) {
            Ok(log) => {
                log.set_auto_high_watermark(false);
                Some(log)
            }
            Err(e) => {
                tracing::error!(topic = %key.0, partition = key.1, error = %e, "cannot open follower log");
                None
            }
        }
    }

    /// Wait for the appends being synced, then record them as durable and tell the leader.
    async fn finish_syncing(&mut self) -> Result<(), String> {
        let Some(syncing) = self.syncing.take() else {
            return Ok(());
        };
        let result = syncing.done.await;
        self.synced(syncing.appended, result)
    }

    /// The appends of one answer are durable (or failed to become so).
    fn synced(
        &mut self,
        appended: Vec<Appended>,
        result: Result<(), String>,
    ) -> Result<(), String> {
        result?;
        let mut reports = Vec::new();
        for a in appended {
            let log = &a.log;
            if let Some(end) = a.end {
                self.durable.insert(a.key.clone(), end);
                reports.push(DurableOffset {
                    topic: a.key.0.clone(),
                    partition: a.key.1,
                    leader_epoch: a.leader_epoch,
                    offset: end,
                });
            }
            let durable = self.durable.get(&a.key).copied().unwrap_or(0);
            let hw = a.leader_high_watermark.min(durable);
            if hw > log.high_watermark() {
                let _ = log.set_high_watermark(hw);
            }
            // The leader's log start (DeleteRecords, retention) moves ours too, as far as our
            // high watermark allows, so records deleted there do not come back if this replica
            // leads later.
            let start = a.leader_log_start.min(log.high_watermark());
            if start > log.log_start_offset() {
                if let Err(e) = log.delete_records_before(start) {
                    tracing::debug!(topic = %a.key.0, partition = a.key.1, error = %e, "cannot follow the leader's log start");
                }
            }
        }
        if let (Some(session), false) = (&self.session, reports.is_empty()) {
            // A closed session fails its next fetch; nothing to do here.
            let _ = session.messages.unbounded_send(FollowerMessage::Durable {
                replica_id: self.me,
                partitions: reports,
            });
        }
        Ok(())
    }

    /// Cut a log back to `offset`, after whatever is being synced (a sync waiting for a cut
    /// offset would fail).
    async fn truncate(
        &mut self,
        key: &PartitionKey,
        log: &Arc<dyn PartitionLog>,
        offset: i64,
    ) -> Result<(), String> {
        self.finish_syncing().await?;
        log.truncate_to(offset).map_err(|e| e.to_string())?;
        if let Some(durable) = self.durable.get_mut(key) {
            *durable = (*durable).min(offset);
        }
        Ok(())
    }

    /// Truncate what needs it, then one fetch. `Ok(true)` when the round did useful work (so
    /// the next starts at once).
    async fn round(&mut self, broker: &Arc<Broker>, followed: &Followed) -> Result<bool, String> {
        let me = self.me;
        let mut logs = BTreeMap::new();
        for key in followed.keys() {
            if let Some(log) = Self::open(broker, key) {
                logs.insert(key.clone(), log);
            }
        }
        let queries: Vec<EpochQuery> = followed
            .iter()
            .filter(|(k, epoch)| self.truncated.get(*k) != Some(epoch) && logs.contains_key(*k))
            .map(|(k, epoch)| EpochQuery {
                topic: k.0.clone(),
                partition: k.1,
                leader_epoch: *epoch,
                requested_epoch: logs[k].leader_epochs().latest().map_or(-1, |e| e.epoch),
            })
            .collect();
        if !queries.is_empty() {
            let answers = self
                .link
                .epoch_end_offsets(self.leader, me, queries)
                .await?;
            for a in answers {
                let key = (a.topic.clone(), a.partition);
                let (Some(log), Some(epoch)) = (logs.get(&key), followed.get(&key)) else {
                    continue;
                };
                if a.error != ReplicaError::None {
                    tracing::debug!(topic = %a.topic, partition = a.partition, error = ?a.error, "leader cannot answer epoch end yet");
                    continue;
                }
                let leo = log.log_end_offset();
                let cut = truncation_offset(
                    &log.leader_epochs(),
                    leo,
                    log.high_watermark(),
                    (a.epoch, a.end_offset),
                )
                .max(log.log_start_offset());
                if cut < leo {
                    tracing::info!(topic = %a.topic, partition = a.partition, from = leo, to = cut, leader = self.leader, "truncating divergent follower log");
                    self.truncate(&key, log, cut).await?;
                }
                self.truncated.insert(key, *epoch);
            }
        }
        // A log this fetcher has not reported yet is durable as far as a sync says: what an
        // earlier fetcher or run left there may not be.
        for (key, log) in &logs {
            if !self.durable.contains_key(key) {
                let leo = log.log_end_offset();
                if leo > log.log_start_offset() {
                    log.wait_durable(leo - 1).await.map_err(|e| e.to_string())?;
                }
                self.durable.insert(key.clone(), leo);
            }
        }
        let config = broker.config.replication.clone();
        let requests: Vec<FetchPartition> = followed
            .iter()
            .filter(|(k, epoch)| self.truncated.get(*k) == Some(epoch))
            .filter_map(|(k, epoch)| {
                let log = logs.get(k)?;
                Some(FetchPartition {
                    topic: k.0.clone(),
                    partition: k.1,
                    leader_epoch: *epoch,
                    fetch_offset: log
                        .log_end_offset()
                        .max(self.start_at.get(k).copied().unwrap_or(0)),
                    durable_offset: self.durable.get(k).copied().unwrap_or(0),
                    max_bytes: config.fetch_max_bytes,
                })
            })
            .collect();
        if requests.is_empty() {
            return Ok(false);
        }
        let session = match &mut self.session {
            Some(session) => session,
            None => {
                let (messages, outgoing) = futures::channel::mpsc::unbounded();
                let answers = self.link.replicate(self.leader, outgoing).await?;
                self.session.insert(Session { messages, answers })
            }
        };
        session
            .messages
            .unbounded_send(FollowerMessage::Fetch {
                replica_id: me,
                max_wait: config.fetch_max_wait,
                partitions: requests,
            })
            .map_err(|_| "replication session closed".to_string())?;
        // While the answer is awaited, the last answer's appends finish syncing and are
        // reported. A change of what this fetcher follows (a partition whose leadership just
        // moved here) abandons the fetch, and with it the session, at once, so the new
        // partition's first fetch, which the new leader's acks=all writes wait for, is not held
        // behind a long poll.
        let mut changes = self.followed.clone();
        let deadline = tokio::time::Instant::now() + FETCH_TIMEOUT;
        let fetched = loop {
            let awaited = {
                let Some(session) = &mut self.session else {
                    return Err("no replication session".to_string());
                };
                let syncing = self.syncing.as_mut().map(|s| &mut s.done);
                let syncing = async move {
                    match syncing {
                        Some(done) => done.await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    answer = tokio::time::timeout_at(deadline, session.answers.next()) => {
                        Awaited::Answer(match answer {
                            Ok(Some(answer)) => answer,
                            Ok(None) => Err("the leader closed the replication session".to_string()),
                            Err(_) => Err("replica fetch timed out".to_string()),
                        })
                    }
                    result = syncing => Awaited::Synced(result),
                    changed = changes.changed() => Awaited::FollowedChanged(changed.is_ok()),
                }
            };
            match awaited {
                Awaited::Answer(answer) => break answer?,
                Awaited::Synced(result) => {
                    if let Some(syncing) = self.syncing.take() {
                        self.synced(syncing.appended, result)?;
                    }
                }
                Awaited::FollowedChanged(open) => {
                    self.session = None;
                    return if open {
                        Ok(true)
                    } else {
                        Err("fetcher stopped".to_string())
                    };
                }
            }
        };
        // One answer is synced at a time.
        self.finish_syncing().await?;
        let mut progressed = false;
        let mut appended = Vec::new();
        // A failure stops the round, but what was appended is still synced and reported.
        let mut failure = None;
        for part in fetched {
            let key = (part.topic.clone(), part.partition);
            let (Some(log), Some(epoch)) = (logs.get(&key), followed.get(&key)) else {
                continue;
            };
            match part.error {
                ReplicaError::None => {
                    progressed = true;
                    let last_offset = if part.records.is_empty() {
                        None
                    } else {
                        match log.append_replicated(part.records) {
                            Ok(info) => Some(info.last_offset),
                            Err(e) => {
                                failure = Some(format!(
                                    "cannot append replicated batches to {}-{}: {e}",
                                    key.0, key.1
                                ));
                                break;
                            }
                        }
                    };
                    appended.push(Appended {
                        key,
                        log: Arc::clone(log),
                        leader_epoch: *epoch,
                        end: last_offset.map(|last| last + 1),
                        leader_high_watermark: part.high_watermark,
                        leader_log_start: part.log_start_offset,
                    });
                }
                ReplicaError::OffsetOutOfRange => {
                    let leo = log.log_end_offset();
                    if leo > part.log_end_offset && part.log_end_offset >= 0 {
                        // Ahead of the leader (it lost an unacknowledged tail): drop ours.
                        tracing::warn!(topic = %key.0, partition = key.1, from = leo, to = part.log_end_offset, "follower ahead of the leader, truncating");
                        let cut = part.log_end_offset.max(log.log_start_offset());
                        let log = Arc::clone(log);
                        if let Err(e) = self.truncate(&key, &log, cut).await {
                            failure = Some(e);
                            break;
                        }
                        progressed = true;
                    } else if leo < part.log_start_offset {
                        tracing::info!(topic = %key.0, partition = key.1, leo, leader_start = part.log_start_offset, "leader's log starts past ours, fetching from its start");
                        self.start_at.insert(key, part.log_start_offset);
                        progressed = true;
                    }
                }
                ReplicaError::FencedLeaderEpoch
                | ReplicaError::UnknownLeaderEpoch
                | ReplicaError::NotLeader => {
                    // Metadata is moving; a new epoch makes this partition truncate again.
                    self.truncated.remove(&key);
                }
                other => {
                    tracing::debug!(topic = %key.0, partition = key.1, error = ?other, "replica fetch refused");
                }
            }
        }
        // Synced together (their fsyncs run side by side) while the next fetch is out.
        let waits: Vec<_> = appended
            .iter()
            .filter_map(|a| {
                let log = Arc::clone(&a.log);
                a.end
                    .map(|end| async move { log.wait_durable(end - 1).await })
            })
            .collect();
        let done = async move {
            let waited = futures::future::join_all(waits).await;
            waited
                .into_iter()
                .find_map(Result::err)
                .map_or(Ok(()), |e| Err(e.to_string()))
        }
        .boxed();
        self.syncing = Some(Syncing { done, appended });
        if let Some(failure) = failure {
            return Err(failure);
        }
        Ok(progressed)
    }
}

/// A partition of a fetch answer that was appended (or had nothing new), before it is durable.
struct Appended {
    key: PartitionKey,
    log: Arc<dyn PartitionLog>,
    /// The leader epoch the partition was fetched under.
    leader_epoch: i32,
    /// One past the last offset appended, when anything was.
    end: Option<i64>,
    leader_high_watermark: i64,
    leader_log_start: i64,
}
