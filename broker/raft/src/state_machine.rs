//! The metadata state machine as openraft sees it: [`ClusterState`] plus the last applied log
//! id and membership, and its snapshot.
//!
//! Applying is chronik-meta's pure `ClusterState::apply`; a refused command (topic already
//! exists, ...) is committed in the log but leaves the state unchanged, and its error is the
//! entry's response, returned to whoever proposed it. The state is not written on every apply:
//! at start it is the last snapshot plus the committed entries openraft re-applies from the
//! log. Snapshots are written atomically (`snapshot.json`) before openraft may purge the log
//! they cover.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chronik_meta::ClusterState;
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    BasicNode, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError, StoredMembership,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{ApplyResult, Entry, LogId, NodeId, StorageError, TypeConfig};

const SNAPSHOT: &str = "snapshot.json";

type Meta = SnapshotMeta<NodeId, BasicNode>;
type Membership = StoredMembership<NodeId, BasicNode>;

/// What `snapshot.json` holds.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: Meta,
    /// The state as serialized for transfer (ClusterState JSON).
    data: ClusterState,
}

#[derive(Debug, Default)]
struct Applied {
    state: Arc<ClusterState>,
    last_applied: Option<LogId>,
    membership: Membership,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    applied: Mutex<Applied>,
    /// The last snapshot (meta and serialized state), kept in memory; metadata is small.
    snapshot: Mutex<Option<(Meta, Vec<u8>)>>,
    /// Raft index of the last applied entry; what `MetadataStore::subscribe` hands out.
    changes: watch::Sender<u64>,
    snapshots_built: std::sync::atomic::AtomicU64,
}

/// The state machine handed to openraft; clones share state (the snapshot builder is one).
#[derive(Debug, Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn write_snapshot_file(dir: &Path, file: &SnapshotFile) -> io::Result<()> {
    use std::io::Write;
    let bytes = serde_json::to_vec(file).map_err(io_err)?;
    let path = dir.join(SNAPSHOT);
    let tmp = dir.join(format!("{SNAPSHOT}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()
}

impl StateMachine {
    /// Open the state machine under `dir`, starting from the last snapshot if there is one.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<StateMachine> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(SNAPSHOT);
        let (applied, snapshot) = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: SnapshotFile = serde_json::from_slice(&bytes)
                    .map_err(|e| io_err(format!("{}: {e}", path.display())))?;
                let data = serde_json::to_vec(&file.data).map_err(io_err)?;
                (
                    Applied {
                        state: Arc::new(file.data),
                        last_applied: file.meta.last_log_id,
                        membership: file.meta.last_membership.clone(),
                    },
                    Some((file.meta, data)),
                )
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Applied::default(), None),
            Err(e) => return Err(e),
        };
        let (changes, _) = watch::channel(applied.last_applied.map_or(0, |l| l.index));
        Ok(StateMachine {
            shared: Arc::new(Shared {
                dir,
                applied: Mutex::new(applied),
                snapshot: Mutex::new(snapshot),
                changes,
                snapshots_built: Default::default(),
            }),
        })
    }

    pub fn state(&self) -> Arc<ClusterState> {
        self.shared.applied.lock().state.clone()
    }

    pub fn last_applied_index(&self) -> Option<u64> {
        self.shared.applied.lock().last_applied.map(|l| l.index)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (state, last_applied, membership) = {
            let a = self.shared.applied.lock();
            (a.state.clone(), a.last_applied, a.membership.clone())
        };
        let n = self
            .shared
            .snapshots_built
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{n}", l.leader_id, l.index),
            None => format!("empty-{n}"),
        };
        let meta = Meta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        let data = serde_json::to_vec(&*state)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &io_err(e)))?;
        let file = SnapshotFile {
            meta: meta.clone(),
            data: (*state).clone(),
        };
        let dir = self.shared.dir.clone();
        tokio::task::spawn_blocking(move || write_snapshot_file(&dir, &file))
            .await
            .map_err(io_err)
            .and_then(|r| r)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        *self.shared.snapshot.lock() = Some((meta.clone(), data.clone()));
        tracing::debug!(snapshot = %meta.snapshot_id, "raft snapshot written");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        let a = self.shared.applied.lock();
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let last_index = {
            let mut a = self.shared.applied.lock();
            // One copy per batch; `apply` leaves the state unchanged when it refuses.
            let mut next: Option<ClusterState> = None;
            for entry in entries {
                let index = entry.log_id.index;
                a.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => responses.push(Ok(())),
                    EntryPayload::Normal(command) => {
                        let state = next.get_or_insert_with(|| (*a.state).clone());
                        let result = state.apply(index, &command);
                        if let Err(e) = &result {
                            tracing::debug!(index, error = %e, "metadata command refused");
                        }
                        responses.push(result);
                    }
                    EntryPayload::Membership(m) => {
                        a.membership = StoredMembership::new(Some(entry.log_id), m);
                        responses.push(Ok(()));
                    }
                }
            }
            if let Some(next) = next {
                a.state = Arc::new(next);
            }
            a.last_applied.map_or(0, |l| l.index)
        };
        self.shared.changes.send_replace(last_index);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let state: ClusterState = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &io_err(e)))?;
        let file = SnapshotFile {
            meta: meta.clone(),
            data: state.clone(),
        };
        let dir = self.shared.dir.clone();
        tokio::task::spawn_blocking(move || write_snapshot_file(&dir, &file))
            .await
            .map_err(io_err)
            .and_then(|r| r)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        {
            let mut a = self.shared.applied.lock();
            a.state = Arc::new(state);
            a.last_applied = meta.last_log_id;
            a.membership = meta.last_membership.clone();
        }
        *self.shared.snapshot.lock() = Some((meta.clone(), data));
        self.shared
            .changes
            .send_replace(meta.last_log_id.map_or(0, |l| l.index));
        tracing::info!(snapshot = %meta.snapshot_id, "installed raft snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self
            .shared
            .snapshot
            .lock()
            .as_ref()
            .map(|(meta, data)| Snapshot {
                meta: meta.clone(),
                snapshot: Box::new(Cursor::new(data.clone())),
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronik_meta::{BrokerInfo, Command, MetaError};
    use openraft::CommittedLeaderId;

    fn entry(index: u64, command: Command) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(command),
        }
    }

    fn broker(id: i32) -> Command {
        Command::RegisterBroker(BrokerInfo {
            node_id: id,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
        })
    }

    #[tokio::test]
    async fn refused_commands_answer_their_error_and_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        let create = Command::CreateTopic {
            name: "t".into(),
            id: uuid::Uuid::nil(),
            assignments: vec![vec![1]],
            configs: Default::default(),
        };
        let out = sm
            .apply(vec![
                entry(1, broker(1)),
                entry(2, create.clone()),
                entry(3, create),
            ])
            .await
            .unwrap();
        assert_eq!(out[0], Ok(()));
        assert_eq!(out[1], Ok(()));
        assert_eq!(out[2], Err(MetaError::TopicAlreadyExists("t".into())));
        assert_eq!(sm.state().topics.len(), 1);
        assert_eq!(sm.last_applied_index(), Some(3));
        assert_eq!(*sm.subscribe().borrow(), 3);
    }

    #[tokio::test]
    async fn snapshot_survives_reopen_and_installs_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = {
            let mut sm = StateMachine::open(dir.path()).unwrap();
            sm.apply(vec![entry(1, broker(1)), entry(2, broker(2))])
                .await
                .unwrap();
            sm.build_snapshot().await.unwrap()
        };
        let mut reopened = StateMachine::open(dir.path()).unwrap();
        assert_eq!(reopened.state().brokers.len(), 2);
        let (applied, _) = reopened.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(2));
        assert!(reopened.get_current_snapshot().await.unwrap().is_some());

        let other_dir = tempfile::tempdir().unwrap();
        let mut other = StateMachine::open(other_dir.path()).unwrap();
        other
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap();
        assert_eq!(other.state(), reopened.state());
        drop(other);
        let other = StateMachine::open(other_dir.path()).unwrap();
        assert_eq!(other.state().brokers.len(), 2);
    }
}
