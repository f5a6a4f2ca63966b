//! The durable Raft log, vote and committed pointer under `<data>/raft/`.
//!
//! - `log`: append-only records `[u32 LE payload length][u32 LE CRC-32C of payload][payload]`,
//!   the payload being one openraft entry in JSON. Appends are fsynced (fdatasync) before
//!   openraft is told they are durable. At open, records are read until the first one that is
//!   short or fails its CRC or does not decode: that is a torn tail from a crash mid-append
//!   (never acknowledged), and the file is truncated there.
//! - `vote`, `purged`: small JSON files replaced atomically (write, fsync, rename, fsync dir).
//!   The vote is fsynced before `save_vote` returns, as Raft's safety requires.
//! - `committed`: the committed log id, so a restart re-applies committed entries beyond the
//!   last snapshot; losing it only means re-applying less at start (openraft catches up from
//!   the leader), so it is written atomically but not fsynced.
//!
//! Metadata logs are small (snapshots bound them), so every live entry is also kept in memory
//! and reads never touch the disk. Purging rewrites the file without the purged prefix.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogId, RaftLogReader, StorageIOError};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Entry, LogId, StorageError, TypeConfig, Vote};

const LOG: &str = "log";
const VOTE: &str = "vote";
const PURGED: &str = "purged";
const COMMITTED: &str = "committed";
const HEADER: usize = 8;
/// Larger than any metadata command; a length beyond it is a torn or corrupt header.
const MAX_RECORD: usize = 64 << 20;

/// The log store handed to openraft; clones share the same files (the log reader is a clone).
#[derive(Debug, Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Files>>,
}

#[derive(Debug)]
struct Files {
    dir: PathBuf,
    log: File,
    /// Live entries by index, with the byte offset where each record starts.
    entries: BTreeMap<u64, (Entry, u64)>,
    /// Byte length of the valid log file.
    end: u64,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Replace `path` with `bytes` so a crash leaves either the old or the new content.
fn write_atomically(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    if durable {
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if durable {
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
    }
    Ok(())
}

fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io_err(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T, durable: bool) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(io_err)?;
    write_atomically(path, &bytes, durable)
}

/// One log record: header and JSON payload.
fn encode_record(entry: &Entry, out: &mut Vec<u8>) -> io::Result<()> {
    let payload = serde_json::to_vec(entry).map_err(io_err)?;
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// Decode records from the start of `bytes`; stops at the first record that is incomplete or
/// damaged. Returns the entries with their offsets and the length of the valid prefix.
fn decode_records(bytes: &[u8]) -> (Vec<(Entry, u64)>, u64) {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while bytes.len() - pos >= HEADER {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap_or_default());
        if len > MAX_RECORD || bytes.len() - pos - HEADER < len {
            break;
        }
        let payload = &bytes[pos + HEADER..pos + HEADER + len];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        let Ok(entry) = serde_json::from_slice::<Entry>(payload) else {
            break;
        };
        out.push((entry, pos as u64));
        pos += HEADER + len;
    }
    (out, pos as u64)
}

impl LogStore {
    /// Open (or create) the log under `dir`, truncating a torn tail.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<LogStore> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        let last_purged: Option<LogId> = read_json(&dir.join(PURGED))?;
        let vote: Option<Vote> = read_json(&dir.join(VOTE))?;
        // Not fsynced, so possibly empty or torn after a crash: then re-apply less, as if unset.
        let committed: Option<LogId> = read_json(&dir.join(COMMITTED)).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "ignoring unreadable raft committed pointer");
            None
        });
        let path = dir.join(LOG);
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let (records, valid) = decode_records(&bytes);
        let log = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&path)?;
        if valid < bytes.len() as u64 {
            tracing::warn!(
                path = %path.display(),
                kept_bytes = valid,
                dropped_bytes = bytes.len() as u64 - valid,
                "truncating torn raft log tail"
            );
            log.set_len(valid)?;
            log.sync_all()?;
        }
        let purged_index = last_purged.as_ref().map(|l| l.index);
        let mut entries = BTreeMap::new();
        let mut expected: Option<u64> = None;
        for (entry, offset) in records {
            let index = entry.log_id.index;
            // A purge records its bound before rewriting the file; a crash in between leaves
            // purged entries at the front, which are simply skipped.
            if purged_index.is_some_and(|p| index <= p) {
                continue;
            }
            if let Some(want) = expected {
                if index != want {
                    return Err(io_err(format!(
                        "{}: raft log skips from index {} to {index}",
                        path.display(),
                        want - 1
                    )));
                }
            }
            expected = Some(index + 1);
            entries.insert(index, (entry, offset));
        }
        if let (Some(p), Some((&first, _))) = (purged_index, entries.first_key_value()) {
            if first != p + 1 {
                return Err(io_err(format!(
                    "{}: raft log starts at index {first} but only up to {p} was purged",
                    path.display()
                )));
            }
        }
        Ok(LogStore {
            inner: Arc::new(Mutex::new(Files {
                dir,
                log,
                entries,
                end: valid,
                last_purged,
                vote,
                committed,
            })),
        })
    }

    /// Run blocking file I/O off the async runtime, one operation at a time.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Files) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&mut inner.lock()))
            .await
            .map_err(io_err)?
    }
}

impl Files {
    fn append(&mut self, entries: Vec<Entry>) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut offsets = Vec::with_capacity(entries.len());
        for entry in &entries {
            offsets.push(self.end + buf.len() as u64);
            encode_record(entry, &mut buf)?;
        }
        use std::io::{Seek, SeekFrom};
        self.log.seek(SeekFrom::Start(self.end))?;
        self.log.write_all(&buf)?;
        self.log.sync_data()?;
        self.end += buf.len() as u64;
        for (entry, offset) in entries.into_iter().zip(offsets) {
            self.entries.insert(entry.log_id.index, (entry, offset));
        }
        Ok(())
    }

    fn truncate(&mut self, from_index: u64) -> io::Result<()> {
        let Some((_, offset)) = self.entries.get(&from_index).map(|(e, o)| (e.log_id, *o)) else {
            return Ok(());
        };
        self.log.set_len(offset)?;
        self.log.sync_data()?;
        self.end = offset;
        self.entries.split_off(&from_index);
        Ok(())
    }

    fn purge(&mut self, upto: LogId) -> io::Result<()> {
        // Record the bound first: a crash mid-rewrite then finds entries it knows to skip.
        write_json(&self.dir.join(PURGED), &upto, true)?;
        self.last_purged = Some(upto);
        self.entries = self.entries.split_off(&(upto.index + 1));
        let mut buf = Vec::new();
        let mut offsets = Vec::with_capacity(self.entries.len());
        for (entry, _) in self.entries.values() {
            offsets.push(buf.len() as u64);
            encode_record(entry, &mut buf)?;
        }
        let path = self.dir.join(LOG);
        write_atomically(&path, &buf, true)?;
        self.log = OpenOptions::new().read(true).write(true).open(&path)?;
        self.end = buf.len() as u64;
        for ((_, offset), new) in self.entries.values_mut().zip(offsets) {
            *offset = new;
        }
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let inner = self.inner.lock();
        Ok(inner
            .entries
            .range(range)
            .map(|(_, (e, _))| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.inner.lock();
        let last = inner
            .entries
            .last_key_value()
            .map(|(_, (e, _))| *e.get_log_id())
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.blocking(move |f| {
            write_json(&f.dir.join(VOTE), &vote, true)?;
            f.vote = Some(vote);
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.inner.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.blocking(move |f| {
            write_json(&f.dir.join(COMMITTED), &committed, false)?;
            f.committed = committed;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.inner.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        // Durable before openraft counts the entries (and so before a leader counts this
        // node toward a quorum or a follower acknowledges them).
        let result = self.blocking(move |f| f.append(entries)).await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = StorageIOError::write_logs(&e).into();
                callback.log_io_completed(Err(e));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |f| f.truncate(log_id.index))
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |f| f.purge(log_id))
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Normal(chronik_meta::Command::InitCluster {
                cluster_id: format!("c{index}"),
            }),
        }
    }

    fn append(store: &LogStore, entries: Vec<Entry>) {
        store.inner.lock().append(entries).unwrap();
    }

    async fn all(store: &mut LogStore) -> Vec<u64> {
        store
            .try_get_log_entries(..)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect()
    }

    #[tokio::test]
    async fn entries_vote_and_committed_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = LogStore::open(dir.path()).unwrap();
            append(&s, (1..=5).map(|i| entry(1, i)).collect());
            s.save_vote(&Vote::new(3, 2)).await.unwrap();
            s.save_committed(Some(log_id(1, 4))).await.unwrap();
        }
        let mut s = LogStore::open(dir.path()).unwrap();
        assert_eq!(all(&mut s).await, vec![1, 2, 3, 4, 5]);
        assert_eq!(s.read_vote().await.unwrap(), Some(Vote::new(3, 2)));
        assert_eq!(s.read_committed().await.unwrap(), Some(log_id(1, 4)));
        let state = s.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(1, 5)));
        assert_eq!(state.last_purged_log_id, None);
    }

    #[tokio::test]
    async fn torn_tail_is_truncated_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = LogStore::open(dir.path()).unwrap();
            append(&s, (1..=3).map(|i| entry(1, i)).collect());
        }
        let path = dir.path().join(LOG);
        let good_len = fs::metadata(&path).unwrap().len();
        // A record cut short in its payload, as a crash mid-append leaves it.
        let mut torn = Vec::new();
        encode_record(&entry(1, 4), &mut torn).unwrap();
        torn.truncate(torn.len() - 5);
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&torn)
            .unwrap();
        {
            let mut s = LogStore::open(dir.path()).unwrap();
            assert_eq!(all(&mut s).await, vec![1, 2, 3]);
            assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
            append(&s, vec![entry(2, 4)]);
        }
        let mut s = LogStore::open(dir.path()).unwrap();
        assert_eq!(all(&mut s).await, vec![1, 2, 3, 4]);
        let last = s.get_log_state().await.unwrap().last_log_id.unwrap();
        assert_eq!(last, log_id(2, 4));
    }

    #[tokio::test]
    async fn a_flipped_bit_in_the_last_record_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = LogStore::open(dir.path()).unwrap();
            append(&s, (1..=2).map(|i| entry(1, i)).collect());
        }
        let path = dir.path().join(LOG);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        let mut s = LogStore::open(dir.path()).unwrap();
        assert_eq!(all(&mut s).await, vec![1]);
    }

    #[tokio::test]
    async fn truncate_and_purge_persist() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = LogStore::open(dir.path()).unwrap();
            append(&s, (1..=10).map(|i| entry(1, i)).collect());
            s.truncate(log_id(1, 8)).await.unwrap();
            assert_eq!(all(&mut s).await, (1..=7).collect::<Vec<_>>());
            // A new leader's entries replace the truncated ones.
            append(&s, vec![entry(2, 8)]);
            s.purge(log_id(1, 3)).await.unwrap();
            assert_eq!(all(&mut s).await, vec![4, 5, 6, 7, 8]);
            append(&s, vec![entry(2, 9)]);
        }
        let mut s = LogStore::open(dir.path()).unwrap();
        assert_eq!(all(&mut s).await, vec![4, 5, 6, 7, 8, 9]);
        let state = s.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 3)));
        assert_eq!(state.last_log_id, Some(log_id(2, 9)));
        // Purging everything leaves the purged id as the last one.
        s.purge(log_id(2, 9)).await.unwrap();
        drop(s);
        let mut s = LogStore::open(dir.path()).unwrap();
        assert!(all(&mut s).await.is_empty());
        assert_eq!(
            s.get_log_state().await.unwrap().last_log_id,
            Some(log_id(2, 9))
        );
    }

    #[tokio::test]
    async fn crash_between_purge_bound_and_rewrite_skips_purged_entries() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = LogStore::open(dir.path()).unwrap();
            append(&s, (1..=5).map(|i| entry(1, i)).collect());
        }
        write_json(&dir.path().join(PURGED), &log_id(1, 2), true).unwrap();
        let mut s = LogStore::open(dir.path()).unwrap();
        assert_eq!(all(&mut s).await, vec![3, 4, 5]);
    }

    #[tokio::test]
    async fn a_gap_in_the_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = LogStore::open(dir.path()).unwrap();
            append(&s, vec![entry(1, 1), entry(1, 3)]);
        }
        let e = LogStore::open(dir.path()).unwrap_err();
        assert!(e.to_string().contains("skips"), "{e}");
    }
}
