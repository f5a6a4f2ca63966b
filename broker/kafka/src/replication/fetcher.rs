//! The follower side: one task per leader broker fetches every partition this broker follows
//! from it. Before a partition's first fetch under a leader epoch, the follower asks the leader
//! where its own latest epoch ended there (OffsetsForLeaderEpoch) and truncates to the last
//! offset both hold, so no divergent tail survives a leader change. Fetched batches are
//! appended byte for byte and made durable before the next fetch reports the new log end
//! (the leader counts that offset towards the high watermark).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use chronik_log::{truncation_offset, FlushPolicy, PartitionLog};
use parking_lot::Mutex;
use tokio::sync::watch;

use super::{EpochQuery, FetchPartition, LeaderLink, PartitionKey, ReplicaError};
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
    link: Arc<dyn LeaderLink>,
    /// Per leader broker: what its fetcher should fetch.
    fetchers: Mutex<HashMap<i32, watch::Sender<Followed>>>,
}

impl FetcherManager {
    /// The link to other brokers' cluster ports (also used for transaction markers).
    pub(crate) fn link(&self) -> &Arc<dyn LeaderLink> {
        &self.link
    }

    pub(crate) fn new(broker: Weak<Broker>, link: Arc<dyn LeaderLink>) -> Self {
        FetcherManager {
            broker,
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
                        link: Arc::clone(&self.link),
                        leader,
                        followed: rx,
                        truncated: HashMap::new(),
                        start_at: HashMap::new(),
                    };
                    tokio::spawn(fetcher.run());
                }
            }
        }
    }
}

struct LeaderFetcher {
    broker: Weak<Broker>,
    link: Arc<dyn LeaderLink>,
    leader: i32,
    followed: watch::Receiver<Followed>,
    /// The epoch each partition was last truncated for; fetching starts after that.
    truncated: HashMap<PartitionKey, i32>,
    /// Where to fetch from when the leader's log starts past ours (retention there): the gap
    /// is kept, as compaction's gaps are.
    start_at: HashMap<PartitionKey, i64>,
}

impl LeaderFetcher {
    async fn run(mut self) {
        loop {
            let followed = self.followed.borrow_and_update().clone();
            if followed.is_empty() {
                self.truncated.clear();
                if self.followed.changed().await.is_err() {
                    return;
                }
                continue;
            }
            self.truncated.retain(|k, _| followed.contains_key(k));
            self.start_at.retain(|k, _| followed.contains_key(k));
            let Some(broker) = self.broker.upgrade() else {
                return;
            };
            let progressed = match self.round(&broker, &followed).await {
                Ok(progressed) => progressed,
                Err(e) => {
                    tracing::debug!(leader = self.leader, error = %e, "replica fetch failed");
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

    /// Truncate what needs it, then one fetch. `Ok(true)` when the round did useful work (so
    /// the next starts at once).
    async fn round(&mut self, broker: &Arc<Broker>, followed: &Followed) -> Result<bool, String> {
        let me = broker.config.node_id;
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
                    log.truncate_to(cut).map_err(|e| e.to_string())?;
                }
                self.truncated.insert(key, *epoch);
            }
        }
        let config = broker.config.replication.clone();
        let requests: Vec<FetchPartition> = followed
            .iter()
            .filter(|(k, epoch)| self.truncated.get(*k) == Some(epoch))
            .filter_map(|(k, epoch)| {
                Some(FetchPartition {
                    topic: k.0.clone(),
                    partition: k.1,
                    leader_epoch: *epoch,
                    fetch_offset: logs
                        .get(k)?
                        .log_end_offset()
                        .max(self.start_at.get(k).copied().unwrap_or(0)),
                    max_bytes: config.fetch_max_bytes,
                })
            })
            .collect();
        if requests.is_empty() {
            return Ok(false);
        }
        // A change of what this fetcher follows (a partition whose leadership just moved here)
        // abandons the long poll at once, so the new partition's first fetch, which the new
        // leader's acks=all writes wait for, is not held behind it. Only the request is
        // abandoned: appends below always finish and become durable before the next fetch.
        let mut changes = self.followed.clone();
        let fetched = tokio::select! {
            fetched = tokio::time::timeout(
                FETCH_TIMEOUT,
                self.link
                    .fetch(self.leader, me, config.fetch_max_wait, requests),
            ) => fetched.map_err(|_| "replica fetch timed out".to_string())??,
            changed = changes.changed() => {
                return changed.map(|()| true).map_err(|_| "fetcher stopped".to_string());
            }
        };
        let mut progressed = false;
        // Appended partitions, made durable together below: their fsyncs run side by side
        // instead of one after another, which is most of a replication round.
        let mut appended = Vec::new();
        // A failure stops the round, but only after what was appended is durable: the next
        // fetch reports the log end to the leader either way.
        let mut failure = None;
        for part in fetched {
            let key = (part.topic.clone(), part.partition);
            let Some(log) = logs.get(&key) else {
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
                        last_offset,
                        leader_high_watermark: part.high_watermark,
                        leader_log_start: part.log_start_offset,
                    });
                }
                ReplicaError::OffsetOutOfRange => {
                    let leo = log.log_end_offset();
                    if leo > part.log_end_offset && part.log_end_offset >= 0 {
                        // Ahead of the leader (it lost an unacknowledged tail): drop ours.
                        tracing::warn!(topic = %key.0, partition = key.1, from = leo, to = part.log_end_offset, "follower ahead of the leader, truncating");
                        if let Err(e) =
                            log.truncate_to(part.log_end_offset.max(log.log_start_offset()))
                        {
                            failure = Some(e.to_string());
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
        // Durable before the next fetch reports the new log ends to the leader; every wait
        // finishes, even when one fails.
        let waited = futures::future::join_all(
            appended
                .iter()
                .filter_map(|a| a.last_offset.map(|offset| a.log.wait_durable(offset))),
        )
        .await;
        if let Some(e) = waited.into_iter().find_map(Result::err) {
            return Err(e.to_string());
        }
        if let Some(failure) = failure {
            return Err(failure);
        }
        for a in appended {
            let log = &a.log;
            let hw = a.leader_high_watermark.min(log.log_end_offset());
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
        Ok(progressed)
    }
}

/// A partition of a fetch answer that was appended (or had nothing new), before it is durable.
struct Appended {
    key: PartitionKey,
    log: Arc<dyn PartitionLog>,
    /// The last offset appended, when anything was.
    last_offset: Option<i64>,
    leader_high_watermark: i64,
    leader_log_start: i64,
}
