//! Where commands become durable. [`MetadataStore`] is the seam a Raft-replicated store will
//! implement; [`LocalMetadataStore`] is the single-node implementation: a journal of commands
//! (one JSON line each, fsynced before the command counts) plus a periodic snapshot.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{ClusterState, Command, MetaError, Result};

/// Replicated (or at least durable) metadata.
///
/// To ensure correctness an implementation must:
/// - apply commands in one total order, the same on every node;
/// - return from `propose` only once the command is durable and applied to `state()`, so a
///   read after a successful write sees it (Kafka clients call Metadata right after CreateTopics);
/// - leave the state unchanged when `apply` refuses a command, and return that error.
#[async_trait]
pub trait MetadataStore: Send + Sync + std::fmt::Debug {
    async fn propose(&self, command: Command) -> Result<()>;
    /// The current state; cheap to call on every request.
    fn state(&self) -> Arc<ClusterState>;
    /// Fires with the applied index whenever the state changes.
    fn subscribe(&self) -> watch::Receiver<u64>;
    /// The replication quorum behind this store, for cluster status; `None` for a store that
    /// does not replicate.
    fn quorum(&self) -> Option<QuorumStatus> {
        None
    }
    /// Brokers this node found unreachable in the last moments (their cluster port refused a
    /// connection) and has not heard from since: probably crashed, not yet fenced. A hint for
    /// clients (see the Metadata handler), never an input to a decision.
    fn unreachable_brokers(&self) -> BTreeSet<i32> {
        BTreeSet::new()
    }
    /// Add a node (by its id and cluster-port address) to the replication quorum as a voter.
    async fn add_voter(&self, node_id: i32, address: String) -> Result<()> {
        let _ = (node_id, address);
        Err(MetaError::MembershipUnsupported(
            "this metadata store does not replicate".into(),
        ))
    }
}

/// What a replicated store knows about its quorum, as seen from this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumStatus {
    pub node_id: i32,
    /// The Raft leader this node follows (itself when it leads), if one is known.
    pub leader_id: Option<i32>,
    /// This node's Raft role: leader, follower, candidate or learner.
    pub role: String,
    pub term: u64,
    /// Last log index this node has and has applied.
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    pub members: Vec<QuorumMember>,
}

/// One member of the Raft membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumMember {
    pub node_id: i32,
    /// Address of its cluster port.
    pub address: String,
    /// true for a voter, false for a learner.
    pub voter: bool,
    /// Log entries it is behind the leader; known only on the leader.
    pub lag: Option<u64>,
    /// Last log index the leader knows it holds; known only on the leader.
    pub matched_index: Option<u64>,
}

const JOURNAL: &str = "journal.jsonl";
const SNAPSHOT: &str = "snapshot.json";
/// Journal length at which the state is snapshotted and the journal restarted.
const SNAPSHOT_EVERY: u64 = 1000;

#[derive(Serialize, Deserialize)]
struct JournalEntry {
    index: u64,
    command: Command,
}

#[derive(Debug)]
struct Inner {
    state: Arc<ClusterState>,
    journal: File,
    journal_entries: u64,
}

/// Single-node metadata journaled under a directory.
#[derive(Debug)]
pub struct LocalMetadataStore {
    dir: PathBuf,
    inner: Mutex<Inner>,
    changes: watch::Sender<u64>,
}

impl LocalMetadataStore {
    /// Open (or create) the store in `dir`, restoring the snapshot and replaying the journal. A
    /// torn final journal line (crash mid-write) is dropped: its command was never acknowledged.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        let mut state = match fs::read(dir.join(SNAPSHOT)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| MetaError::Storage(format!("unreadable metadata snapshot: {e}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ClusterState::default(),
            Err(e) => return Err(e.into()),
        };
        let journal_path = dir.join(JOURNAL);
        let (entries, valid_len) = replay(&journal_path, &mut state)?;
        let journal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)?;
        if journal.metadata()?.len() != valid_len {
            tracing::warn!(
                path = %journal_path.display(),
                kept_bytes = valid_len,
                "truncating torn metadata journal tail"
            );
            journal.set_len(valid_len)?;
            journal.sync_all()?;
        }
        let (changes, _) = watch::channel(state.applied_index);
        Ok(LocalMetadataStore {
            dir,
            inner: Mutex::new(Inner {
                state: Arc::new(state),
                journal,
                journal_entries: entries,
            }),
            changes,
        })
    }

    fn snapshot(&self, inner: &mut Inner) -> Result<()> {
        let tmp = self.dir.join(format!("{SNAPSHOT}.tmp"));
        let bytes = serde_json::to_vec(&*inner.state)
            .map_err(|e| MetaError::Storage(format!("cannot serialize snapshot: {e}")))?;
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, self.dir.join(SNAPSHOT))?;
        File::open(&self.dir)?.sync_all()?;
        // Entries up to the snapshot's applied index are now redundant.
        inner.journal.set_len(0)?;
        inner.journal.sync_all()?;
        inner.journal_entries = 0;
        Ok(())
    }
}

/// Apply every whole, parseable journal line newer than the state; returns the count of entries
/// and the byte length of the valid prefix.
fn replay(path: &Path, state: &mut ClusterState) -> Result<(u64, u64)> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e.into()),
    };
    let mut reader = BufReader::new(file);
    let (mut entries, mut valid_len) = (0u64, 0u64);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        let Ok(entry) = serde_json::from_str::<JournalEntry>(line.trim_end()) else {
            break;
        };
        if entry.index > state.applied_index {
            // A journaled command was valid when written; refusing it now would mean the code
            // changed underneath, and the state must still follow the journal.
            if let Err(e) = state.apply(entry.index, &entry.command) {
                tracing::warn!(index = entry.index, error = %e, "journaled command no longer applies");
                state.applied_index = entry.index;
            }
        }
        entries += 1;
        valid_len += n as u64;
    }
    Ok((entries, valid_len))
}

#[async_trait]
impl MetadataStore for LocalMetadataStore {
    async fn propose(&self, command: Command) -> Result<()> {
        let index = {
            let mut inner = self.inner.lock();
            let mut next = (*inner.state).clone();
            let index = next.applied_index + 1;
            next.apply(index, &command)?;
            let mut line = serde_json::to_vec(&JournalEntry { index, command })
                .map_err(|e| MetaError::Storage(format!("cannot serialize command: {e}")))?;
            line.push(b'\n');
            // Metadata changes are rare; an fsync under the lock keeps the order trivial.
            inner.journal.write_all(&line)?;
            inner.journal.sync_data()?;
            inner.state = Arc::new(next);
            inner.journal_entries += 1;
            if inner.journal_entries >= SNAPSHOT_EVERY {
                self.snapshot(&mut inner)?;
            }
            index
        };
        self.changes.send_replace(index);
        Ok(())
    }

    fn state(&self) -> Arc<ClusterState> {
        self.inner.lock().state.clone()
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BrokerInfo;
    use std::collections::BTreeMap;

    fn broker() -> Command {
        Command::RegisterBroker(BrokerInfo {
            node_id: 1,
            host: "localhost".into(),
            port: 9092,
            rack: None,
        })
    }

    fn topic(name: &str) -> Command {
        Command::CreateTopic {
            name: name.into(),
            id: uuid::Uuid::new_v4(),
            assignments: vec![vec![1]],
            configs: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = LocalMetadataStore::open(dir.path()).unwrap();
            store.propose(broker()).await.unwrap();
            store.propose(topic("a")).await.unwrap();
            assert!(store.propose(topic("a")).await.is_err());
        }
        let store = LocalMetadataStore::open(dir.path()).unwrap();
        let state = store.state();
        assert!(state.topics.contains_key("a"));
        assert_eq!(state.applied_index, 2);
    }

    #[tokio::test]
    async fn torn_journal_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = LocalMetadataStore::open(dir.path()).unwrap();
            store.propose(broker()).await.unwrap();
            store.propose(topic("a")).await.unwrap();
        }
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL))
            .unwrap();
        f.write_all(b"{\"index\":3,\"command\":{\"DeleteTo")
            .unwrap();
        drop(f);
        let store = LocalMetadataStore::open(dir.path()).unwrap();
        assert!(store.state().topics.contains_key("a"));
        store.propose(topic("b")).await.unwrap();
        drop(store);
        let store = LocalMetadataStore::open(dir.path()).unwrap();
        assert!(store.state().topics.contains_key("b"));
        assert_eq!(store.state().applied_index, 3);
    }

    #[tokio::test]
    async fn snapshot_then_journal_restores_everything() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = LocalMetadataStore::open(dir.path()).unwrap();
            store.propose(broker()).await.unwrap();
            for i in 0..SNAPSHOT_EVERY + 5 {
                store.propose(topic(&format!("t{i}"))).await.unwrap();
            }
        }
        assert!(dir.path().join(SNAPSHOT).exists());
        let store = LocalMetadataStore::open(dir.path()).unwrap();
        assert_eq!(store.state().topics.len() as u64, SNAPSHOT_EVERY + 5);
    }

    #[tokio::test]
    async fn subscribers_see_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalMetadataStore::open(dir.path()).unwrap();
        let mut rx = store.subscribe();
        store.propose(broker()).await.unwrap();
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow(), 1);
    }
}
