//! The runtime that feeds indexers from partition logs.
//!
//! A supervisor follows the metadata store: for every partition this broker leads whose topic
//! enables at least one index it runs one partition task, and it stops, restarts or drops
//! indexes as topics are created, reconfigured and deleted. What should run is decided by the
//! pure [`plan`]; the supervisor only starts and stops tasks to match it.
//!
//! A partition task reads stored batches up to the high watermark (so only acknowledged data is
//! indexed), decodes each batch once, and hands the same records to every index of the
//! partition, each from its own position. It publishes on a short cadence, persists
//! periodically and on shutdown, and follows the log start offset (retention) with
//! `forget_before`. It never touches the produce path: a slow index only makes this task (and
//! its lag metric) fall behind.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chronik_log::{LogError, PartitionLog};
use chronik_meta::{ClusterState, MetadataStore, TopicConfig, TopicMeta};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use crate::decode::decode_batches;
use crate::metrics::metrics;
use crate::{Indexer, RecordRun};

/// Where partition logs come from. The broker implements it so that a partition it leads is
/// opened (and recovered) on first use, exactly as a produce would open it.
pub trait PartitionLogs: Send + Sync + std::fmt::Debug {
    /// The log of `partition` of `topic`, or `None` when this broker cannot serve it now.
    fn log(&self, topic: &TopicMeta, partition: i32) -> Option<Arc<dyn PartitionLog>>;
}

/// Pipeline tuning; the defaults are what the server runs with.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// This broker: only partitions it leads are indexed here.
    pub node_id: i32,
    /// Longest time indexed records wait to be published while a backlog is being read.
    pub publish_interval: Duration,
    /// Shortest time between two publishes of a partition once it is caught up with the high
    /// watermark: a publish is a commit (a new segment, its files synced, later merged), so a
    /// steady stream published at every read step paid that per handful of records.
    pub publish_min_gap: Duration,
    /// How often each index of a partition is asked to persist.
    pub persist_interval: Duration,
    /// Bytes read from the log per step.
    pub read_bytes: usize,
    /// Pause before reopening an index whose call failed, and before retrying a log that
    /// could not be opened or read.
    pub retry_after: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            node_id: 1,
            publish_interval: Duration::from_millis(500),
            publish_min_gap: Duration::from_millis(250),
            persist_interval: Duration::from_secs(5),
            read_bytes: 4 * 1024 * 1024,
            retry_after: Duration::from_secs(1),
        }
    }
}

/// What should run for one partition: the topic's identity and the indexes (positions in the
/// pipeline's indexer list) enabled for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPlan {
    pub topic_id: Uuid,
    pub indexes: Vec<usize>,
}

/// The partitions to index on `node_id` and with which indexes: every partition it holds a
/// replica of (leader or follower) of every topic that enables at least one of the
/// `index_count` indexes (`enabled(i, config)`). Followers index too, so that a query on any
/// broker that hosts a partition covers it, and a new leader's indexes are already warm.
pub fn plan(
    state: &ClusterState,
    node_id: i32,
    index_count: usize,
    enabled: impl Fn(usize, &TopicConfig) -> bool,
) -> BTreeMap<(String, i32), PartitionPlan> {
    let mut out = BTreeMap::new();
    for topic in state.topics.values() {
        let config = topic.config();
        let indexes: Vec<usize> = (0..index_count).filter(|i| enabled(*i, &config)).collect();
        if indexes.is_empty() {
            continue;
        }
        for (p, meta) in topic.partitions.iter().enumerate() {
            if meta.replicas.contains(&node_id) {
                out.insert(
                    (topic.name.clone(), p as i32),
                    PartitionPlan {
                        topic_id: topic.id,
                        indexes: indexes.clone(),
                    },
                );
            }
        }
    }
    out
}

/// Indexes whose data for a topic must be dropped: enabled before (`had`, topic → (id, indexes))
/// and now disabled, or the topic is gone or was recreated under the same name.
pub fn drops(
    had: &BTreeMap<String, (Uuid, BTreeSet<usize>)>,
    now: &BTreeMap<String, (Uuid, BTreeSet<usize>)>,
) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (topic, (id, indexes)) in had {
        for i in indexes {
            let kept = now
                .get(topic)
                .is_some_and(|(now_id, now_indexes)| now_id == id && now_indexes.contains(i));
            if !kept {
                out.push((topic.clone(), *i));
            }
        }
    }
    out
}

fn enabled_topics(
    plan: &BTreeMap<(String, i32), PartitionPlan>,
) -> BTreeMap<String, (Uuid, BTreeSet<usize>)> {
    let mut out: BTreeMap<String, (Uuid, BTreeSet<usize>)> = BTreeMap::new();
    for ((topic, _), p) in plan {
        out.entry(topic.clone())
            .or_insert_with(|| (p.topic_id, BTreeSet::new()))
            .1
            .extend(p.indexes.iter().copied());
    }
    out
}

/// The running pipeline; [`Pipeline::shutdown`] stops it after every index persisted.
#[derive(Debug)]
pub struct Pipeline {
    stop: watch::Sender<bool>,
    supervisor: JoinHandle<()>,
}

impl Pipeline {
    /// Start following `meta` and feeding `indexers` (one per index kind).
    pub fn start(
        meta: Arc<dyn MetadataStore>,
        logs: Arc<dyn PartitionLogs>,
        indexers: Vec<Arc<dyn Indexer>>,
        config: PipelineConfig,
    ) -> Pipeline {
        let (stop, stop_rx) = watch::channel(false);
        let supervisor = tokio::spawn(supervise(meta, logs, indexers, config, stop_rx));
        Pipeline { stop, supervisor }
    }

    /// Stop every partition task (each persists and closes its indexes) and wait for them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.supervisor.await {
            tracing::error!(error = %e, "index pipeline supervisor panicked");
        }
    }
}

struct Running {
    plan: PartitionPlan,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

async fn supervise(
    meta: Arc<dyn MetadataStore>,
    logs: Arc<dyn PartitionLogs>,
    indexers: Vec<Arc<dyn Indexer>>,
    config: PipelineConfig,
    mut stop: watch::Receiver<bool>,
) {
    let mut changes = meta.subscribe();
    let mut running: HashMap<(String, i32), Running> = HashMap::new();
    let mut had = BTreeMap::new();
    // Data of topics deleted or disabled while the broker was down.
    let state = meta.state();
    let wanted = current_plan(&state, &indexers, config.node_id);
    let now = enabled_topics(&wanted);
    for (i, indexer) in indexers.iter().enumerate() {
        match indexer.known_topics().await {
            Ok(topics) => {
                for topic in topics {
                    if !now.get(&topic).is_some_and(|(_, on)| on.contains(&i)) {
                        drop_topic(indexer.as_ref(), &topic).await;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(index = indexer.kind(), error = %e, "cannot list indexed topics")
            }
        }
    }
    loop {
        changes.borrow_and_update();
        let state = meta.state();
        let wanted = current_plan(&state, &indexers, config.node_id);
        let now = enabled_topics(&wanted);

        let stale: Vec<(String, i32)> = running
            .iter()
            .filter(|(key, r)| wanted.get(*key) != Some(&r.plan))
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            if let Some(r) = running.remove(&key) {
                stop_task(r).await;
            }
        }
        for (topic, i) in drops(&had, &now) {
            drop_topic(indexers[i].as_ref(), &topic).await;
        }
        had = now;

        let mut missing = false;
        for (key, p) in &wanted {
            if running.contains_key(key) {
                continue;
            }
            let Ok(topic) = state.topic(&key.0) else {
                continue;
            };
            let Some(log) = logs.log(topic, key.1) else {
                missing = true;
                continue;
            };
            let (stop_tx, stop_rx) = watch::channel(false);
            let task = PartitionTask {
                topic: key.0.clone(),
                partition: key.1,
                config: topic.config(),
                log,
                indexers: p.indexes.iter().map(|i| indexers[*i].clone()).collect(),
                settings: config.clone(),
            };
            running.insert(
                key.clone(),
                Running {
                    plan: p.clone(),
                    stop: stop_tx,
                    handle: tokio::spawn(task.run(stop_rx)),
                },
            );
        }

        let retry = tokio::time::sleep(if missing {
            config.retry_after
        } else {
            Duration::from_secs(3600)
        });
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            _ = stop.changed() => break,
            _ = retry => {}
        }
        if *stop.borrow() {
            break;
        }
    }
    for (_, r) in running.drain() {
        let _ = r.stop.send(true);
        if let Err(e) = r.handle.await {
            tracing::error!(error = %e, "index partition task panicked");
        }
    }
}

fn current_plan(
    state: &ClusterState,
    indexers: &[Arc<dyn Indexer>],
    node_id: i32,
) -> BTreeMap<(String, i32), PartitionPlan> {
    plan(state, node_id, indexers.len(), |i, config| {
        indexers[i].enabled(config)
    })
}

async fn stop_task(r: Running) {
    let _ = r.stop.send(true);
    if let Err(e) = r.handle.await {
        tracing::error!(error = %e, "index partition task panicked");
    }
}

async fn drop_topic(indexer: &dyn Indexer, topic: &str) {
    tracing::info!(topic, index = indexer.kind(), "dropping index data");
    if let Err(e) = indexer.drop_topic(topic).await {
        tracing::warn!(topic, index = indexer.kind(), error = %e, "dropping index data failed");
    }
}

/// One index of a partition task, at its own position.
struct Cursor {
    indexer: Arc<dyn Indexer>,
    /// Offset of the next record this index needs.
    next: i64,
    open: bool,
    /// A call failed while open: close before reopening so the index drops partial state.
    needs_close: bool,
    retry_at: Option<Instant>,
    /// Open, but not fed until then: its last run was deferred.
    paused_until: Option<Instant>,
    unpublished: bool,
}

impl Cursor {
    /// Open and not paused: records can be handed to it.
    fn ready(&self, now: Instant) -> bool {
        self.open && self.paused_until.is_none_or(|t| t <= now)
    }
}

struct PartitionTask {
    topic: String,
    partition: i32,
    config: TopicConfig,
    log: Arc<dyn PartitionLog>,
    indexers: Vec<Arc<dyn Indexer>>,
    settings: PipelineConfig,
}

impl PartitionTask {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut cursors: Vec<Cursor> = self
            .indexers
            .iter()
            .map(|indexer| Cursor {
                indexer: indexer.clone(),
                next: 0,
                open: false,
                needs_close: false,
                retry_at: None,
                paused_until: None,
                unpublished: false,
            })
            .collect();
        let mut hw_changes = self.log.subscribe();
        let mut log_start = self.log.log_start_offset();
        // Nothing published yet: the first records need not wait for a gap.
        let mut last_publish = Instant::now()
            .checked_sub(
                self.settings
                    .publish_interval
                    .max(self.settings.publish_min_gap),
            )
            .unwrap_or_else(Instant::now);
        let mut last_persist = Instant::now();
        let partition_label = self.partition.to_string();
        let mut log_retry_at: Option<Instant> = None;
        tracing::debug!(topic = %self.topic, partition = self.partition, "indexing partition");

        loop {
            if *stop.borrow() {
                break;
            }
            let now = Instant::now();
            for c in cursors.iter_mut().filter(|c| !c.open) {
                if c.retry_at.is_some_and(|t| t > now) {
                    continue;
                }
                self.open(c).await;
            }

            let start = self.log.log_start_offset();
            if start > log_start {
                log_start = start;
                for c in cursors.iter_mut().filter(|c| c.open) {
                    match c
                        .indexer
                        .forget_before(&self.topic, self.partition, start)
                        .await
                    {
                        Ok(()) => {
                            c.next = c.next.max(start);
                            c.unpublished = true;
                        }
                        Err(e) => self.fail(c, "forget_before", &e),
                    }
                }
            }

            hw_changes.borrow_and_update();
            // Indexes show what a read_committed consumer sees: nothing of an open transaction
            // (so the bound is the last stable offset) and nothing of an aborted one.
            let hw = self.log.last_stable_offset();
            let from = cursors
                .iter()
                .filter(|c| c.ready(now) && c.next < hw)
                .map(|c| c.next)
                .min();
            let mut read_more = false;
            if let (Some(from), None) = (from, log_retry_at.filter(|t| *t > now)) {
                log_retry_at = None;
                match self.log.read_committed(from, self.settings.read_bytes) {
                    Ok(read) => {
                        match decode_batches(&read.records, from, &read.aborted_transactions) {
                            Ok(decoded) if decoded.next_offset > from => {
                                self.index(&mut cursors, &decoded.records, decoded.next_offset)
                                    .await;
                                read_more = decoded.next_offset < hw;
                            }
                            // Nothing readable below the high watermark yet.
                            Ok(_) => {}
                            Err(e) => {
                                tracing::error!(topic = %self.topic, partition = self.partition, error = %e, "cannot decode stored batches; indexing of this partition is paused");
                                log_retry_at = Some(now + self.settings.retry_after);
                            }
                        }
                    }
                    Err(LogError::OffsetOutOfRange { .. }) => {
                        // Retention moved the log start past our position: the next round
                        // sees the new start and forgets what is gone.
                        let start = self.log.log_start_offset();
                        for c in cursors.iter_mut().filter(|c| c.open && c.next < start) {
                            c.next = start;
                        }
                        if from >= start {
                            tracing::warn!(topic = %self.topic, partition = self.partition, from, "index position past the log end");
                            log_retry_at = Some(now + self.settings.retry_after);
                        }
                        read_more = true;
                    }
                    Err(LogError::Closed) => break,
                    Err(e) => {
                        tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "reading the log for indexing failed");
                        log_retry_at = Some(now + self.settings.retry_after);
                    }
                }
            }

            let hw = self.log.last_stable_offset();
            let caught_up = cursors.iter().all(|c| !c.ready(now) || c.next >= hw);
            let publish_after = if caught_up {
                self.settings.publish_min_gap
            } else {
                self.settings.publish_interval
            };
            if cursors.iter().any(|c| c.unpublished) && last_publish.elapsed() >= publish_after {
                for c in cursors.iter_mut().filter(|c| c.open && c.unpublished) {
                    match c.indexer.publish(&self.topic, self.partition).await {
                        Ok(()) => c.unpublished = false,
                        Err(e) => self.fail(c, "publish", &e),
                    }
                }
                last_publish = Instant::now();
            }
            if last_persist.elapsed() >= self.settings.persist_interval {
                for c in cursors.iter_mut().filter(|c| c.open) {
                    if let Err(e) = c.indexer.persist(&self.topic, self.partition).await {
                        self.fail(c, "persist", &e);
                    }
                }
                last_persist = Instant::now();
            }
            for c in &cursors {
                metrics()
                    .lag_records
                    .with_label_values(&[&self.topic, &partition_label, c.indexer.kind()])
                    .set((hw - c.next).max(0));
            }

            if read_more || !caught_up && log_retry_at.is_none() {
                tokio::task::yield_now().await;
                continue;
            }
            let mut deadline = last_persist + self.settings.persist_interval;
            if cursors.iter().any(|c| c.unpublished) {
                deadline = deadline.min(last_publish + publish_after);
            }
            for t in cursors
                .iter()
                .filter_map(|c| c.retry_at.filter(|_| !c.open))
                .chain(
                    cursors
                        .iter()
                        .filter_map(|c| c.paused_until.filter(|t| c.open && *t > now)),
                )
                .chain(log_retry_at)
            {
                deadline = deadline.min(t);
            }
            tokio::select! {
                changed = hw_changes.changed() => if changed.is_err() { break },
                _ = stop.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }

        for c in cursors.iter_mut().filter(|c| c.open) {
            if c.unpublished {
                let _ = c.indexer.publish(&self.topic, self.partition).await;
            }
            if let Err(e) = c.indexer.persist(&self.topic, self.partition).await {
                tracing::warn!(topic = %self.topic, partition = self.partition, index = c.indexer.kind(), error = %e, "persisting an index on shutdown failed");
            }
            if let Err(e) = c.indexer.close_partition(&self.topic, self.partition).await {
                tracing::warn!(topic = %self.topic, partition = self.partition, index = c.indexer.kind(), error = %e, "closing an index failed");
            }
        }
        for c in &cursors {
            let _ = metrics().lag_records.remove_label_values(&[
                &self.topic,
                &partition_label,
                c.indexer.kind(),
            ]);
        }
    }

    async fn open(&self, c: &mut Cursor) {
        if std::mem::take(&mut c.needs_close) {
            let _ = c.indexer.close_partition(&self.topic, self.partition).await;
        }
        let log_start = self.log.log_start_offset();
        match c
            .indexer
            .open_partition(&self.topic, self.partition, &self.config, log_start)
            .await
        {
            Ok(resume) => {
                c.next = resume.max(log_start);
                c.open = true;
                c.retry_at = None;
                c.paused_until = None;
                c.unpublished = true;
                tracing::debug!(topic = %self.topic, partition = self.partition, index = c.indexer.kind(), resume, "index opened");
            }
            Err(e) => self.fail(c, "open_partition", &e),
        }
    }

    /// Hand `records` (everything up to `next_offset`) to each open index from its position.
    async fn index(
        &self,
        cursors: &mut [Cursor],
        records: &[crate::IndexRecord],
        next_offset: i64,
    ) {
        let now = Instant::now();
        let calls = cursors
            .iter()
            .enumerate()
            .filter(|(_, c)| c.ready(now) && c.next < next_offset)
            .map(|(i, c)| {
                let first = records.partition_point(|r| r.offset < c.next);
                let run = RecordRun {
                    topic: &self.topic,
                    partition: self.partition,
                    records: &records[first..],
                    next_offset,
                };
                let indexer = c.indexer.clone();
                async move { (i, run.records.len(), indexer.index(run).await) }
            });
        let results = futures::future::join_all(calls).await;
        for (i, count, result) in results {
            let c = &mut cursors[i];
            match result {
                Ok(()) => {
                    c.next = next_offset;
                    c.unpublished = true;
                    metrics()
                        .indexed_records
                        .with_label_values(&[&self.topic, c.indexer.kind()])
                        .inc_by(count as u64);
                }
                Err(crate::IndexError::Deferred { reason, resume, .. }) => {
                    tracing::warn!(topic = %self.topic, partition = self.partition, index = c.indexer.kind(), resume, %reason, "index deferred records; offering them again after a pause");
                    metrics()
                        .failures
                        .with_label_values(&[&self.topic, c.indexer.kind()])
                        .inc();
                    if resume > c.next {
                        c.next = resume;
                        c.unpublished = true;
                    }
                    c.paused_until = Some(Instant::now() + self.settings.retry_after);
                }
                Err(e) => self.fail(c, "index", &e),
            }
        }
    }

    /// An index call failed: the index may hold part of a run, so it is reopened (from its
    /// durable checkpoint) after a pause rather than fed further.
    fn fail(&self, c: &mut Cursor, call: &str, e: &crate::IndexError) {
        tracing::warn!(topic = %self.topic, partition = self.partition, index = c.indexer.kind(), call, error = %e, "index call failed; reopening after a pause");
        metrics()
            .failures
            .with_label_values(&[&self.topic, c.indexer.kind()])
            .inc();
        c.needs_close |= c.open;
        c.open = false;
        c.unpublished = false;
        c.retry_at = Some(Instant::now() + self.settings.retry_after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronik_meta::PartitionMeta;

    fn partition(leader: i32, replicas: &[i32]) -> PartitionMeta {
        PartitionMeta {
            leader,
            ..PartitionMeta::new(replicas)
        }
    }

    fn topic(name: &str, indexed: bool, partitions: Vec<PartitionMeta>) -> TopicMeta {
        TopicMeta {
            name: name.into(),
            id: Uuid::new_v4(),
            partitions,
            configs: BTreeMap::from([("searchable.enabled".into(), indexed.to_string())]),
        }
    }

    #[test]
    fn every_hosted_partition_of_an_indexed_topic_is_planned_led_or_followed() {
        let mut state = ClusterState::default();
        for t in [
            topic(
                "events",
                true,
                vec![
                    partition(1, &[1, 2]),
                    partition(2, &[2, 1]),
                    partition(3, &[3, 2]),
                ],
            ),
            topic("plain", false, vec![partition(1, &[1])]),
        ] {
            state.topics.insert(t.name.clone(), t);
        }
        let enabled = |_: usize, c: &TopicConfig| c.searchable_enabled;
        let on_1: Vec<_> = plan(&state, 1, 1, enabled).into_keys().collect();
        assert_eq!(on_1, [("events".to_string(), 0), ("events".to_string(), 1)]);
        let on_3: Vec<_> = plan(&state, 3, 1, enabled).into_keys().collect();
        assert_eq!(on_3, [("events".to_string(), 2)]);
        // A partition whose leader is gone is still indexed where a replica lives.
        state.topics.get_mut("events").unwrap().partitions[2].leader = chronik_meta::NO_LEADER;
        assert_eq!(plan(&state, 2, 1, enabled).len(), 3);
        assert_eq!(
            state.topics["events"].partitions_not_on(3),
            vec![0, 1],
            "what a query on broker 3 cannot see"
        );
    }
}
