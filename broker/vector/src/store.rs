//! On-disk state of one partition's vector index: an append-only file of records (offset,
//! timestamp, key, value, vector) and a checkpoint that says how much of it is durable.
//!
//! The checkpoint is the commit point: records are appended and fsynced first, then the
//! checkpoint (with the file length it covers and the next offset to index) is written to a
//! temporary file, fsynced and renamed over the old one. On open, bytes past the checkpointed
//! length (a crash between the two steps) are cut off, so data and checkpoint always agree.
//!
//! Beside them, a snapshot of the HNSW graph's links over the first points of the records (so a
//! restart does not rebuild the graph), written after a commit and replaced atomically. It
//! never covers more points than the committed records hold; a reset of the records removes it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::le_reader::LeReader;
use crate::VectorError;

const RECORDS: &str = "vectors.log";
const CHECKPOINT: &str = "checkpoint.json";
const GRAPH: &str = "graph.bin";

/// What the checkpoint records beside the offsets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// Resume indexing here.
    pub next_offset: i64,
    /// Bytes of the records file that belong to this checkpoint.
    pub length: u64,
    /// Records below this offset are gone from the log (retention) and hidden.
    pub forgotten_before: i64,
    /// Events without the embedded field, skipped.
    pub skipped: u64,
    /// The index was built with this model and metric; a change starts it afresh.
    pub model: String,
    pub dimensions: usize,
    pub metric: String,
}

/// One stored record. A compacted topic's tombstone has no vector.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub vector: Option<Vec<f32>>,
}

pub(crate) fn encode(r: &StoredRecord, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&r.offset.to_le_bytes());
    out.extend_from_slice(&r.timestamp.to_le_bytes());
    for field in [&r.key, &r.value] {
        match field {
            None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
            Some(b) => {
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
        }
    }
    match &r.vector {
        None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
        Some(v) => {
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// Decode every record of `buf`; `None` when it is not a whole number of valid records.
pub(crate) fn decode_all(buf: &[u8]) -> Option<Vec<StoredRecord>> {
    let mut r = LeReader::new(buf);
    let mut out = Vec::new();
    while r.at < buf.len() {
        let len = r.u32()? as usize;
        let end = r.at.checked_add(len)?;
        let mut body = LeReader::new(buf.get(r.at..end)?);
        r.at = end;
        let offset = body.i64()?;
        let timestamp = body.i64()?;
        let key = body.bytes()?;
        let value = body.bytes()?;
        let vector = match body.u32()? {
            u32::MAX => None,
            n => {
                let raw = body.take((n as usize).checked_mul(4)?)?;
                Some(
                    raw.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                )
            }
        };
        if !body.is_done() {
            return None;
        }
        out.push(StoredRecord {
            offset,
            timestamp,
            key,
            value,
            vector,
        });
    }
    Some(out)
}

/// The files of one partition.
#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    file: File,
    /// Durable length of the records file (what the last checkpoint covers).
    length: u64,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> VectorError {
    move |e| VectorError::io(what, e)
}

/// The vector length a partition under `dir` was built with by `model`, from its checkpoint;
/// `None` when there is none (or it is unreadable: opening reports that).
pub(crate) fn stored_dimensions(dir: &Path, model: &str) -> Option<usize> {
    let bytes = std::fs::read(dir.join(CHECKPOINT)).ok()?;
    let c: Checkpoint = serde_json::from_slice(&bytes).ok()?;
    (c.model == model).then_some(c.dimensions)
}

impl Store {
    /// Open `dir`, creating it; returns the store, the checkpoint (if any) and every durable
    /// record. A checkpoint whose `accept` answers false (another model or metric) starts the
    /// partition afresh.
    pub(crate) fn open(
        dir: &Path,
        accept: impl Fn(&Checkpoint) -> bool,
    ) -> Result<(Store, Option<Checkpoint>, Vec<StoredRecord>), VectorError> {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let cp_path = dir.join(CHECKPOINT);
        let checkpoint: Option<Checkpoint> = match std::fs::read(&cp_path) {
            Ok(b) => Some(
                serde_json::from_slice(&b).map_err(|e| VectorError::Corrupt {
                    path: cp_path.clone(),
                    reason: e.to_string(),
                })?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(VectorError::io(format!("reading {}", cp_path.display()), e)),
        };
        let checkpoint = checkpoint.filter(|c| {
            let ok = accept(c);
            if !ok {
                tracing::info!(dir = %dir.display(), model = %c.model, metric = %c.metric, "vector index was built with another model or metric; rebuilding it");
            }
            ok
        });
        if checkpoint.is_none() {
            match std::fs::remove_file(dir.join(GRAPH)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(VectorError::io(format!("removing {GRAPH}"), e))
                }
                _ => {}
            }
        }
        let path = dir.join(RECORDS);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(format!("opening {}", path.display())))?;
        let length = checkpoint.as_ref().map_or(0, |c| c.length);
        let actual = file
            .metadata()
            .map_err(io(format!("reading {}", path.display())))?
            .len();
        if actual < length {
            return Err(VectorError::Corrupt {
                path,
                reason: format!("{actual} bytes, the checkpoint covers {length}"),
            });
        }
        if actual > length {
            file.set_len(length)
                .map_err(io(format!("truncating {}", path.display())))?;
        }
        let mut buf = Vec::with_capacity(length as usize);
        file.seek(SeekFrom::Start(0))
            .and_then(|_| (&mut file).take(length).read_to_end(&mut buf))
            .map_err(io(format!("reading {}", path.display())))?;
        let records = decode_all(&buf).ok_or_else(|| VectorError::Corrupt {
            path: path.clone(),
            reason: "records do not decode".into(),
        })?;
        file.seek(SeekFrom::End(0))
            .map_err(io(format!("seeking {}", path.display())))?;
        Ok((
            Store {
                dir: dir.to_path_buf(),
                file,
                length,
            },
            checkpoint,
            records,
        ))
    }

    /// Append `pending` records and commit `checkpoint` (its `length` is set here).
    pub(crate) fn commit(
        &mut self,
        pending: &[u8],
        mut checkpoint: Checkpoint,
    ) -> Result<(), VectorError> {
        let path = self.dir.join(RECORDS);
        if !pending.is_empty() {
            self.file
                .write_all(pending)
                .and_then(|_| self.file.sync_data())
                .map_err(io(format!("writing {}", path.display())))?;
        }
        checkpoint.length = self.length + pending.len() as u64;
        let body = serde_json::to_vec(&checkpoint).map_err(|e| VectorError::Task(e.to_string()))?;
        self.replace(CHECKPOINT, &body)?;
        self.length = checkpoint.length;
        Ok(())
    }

    /// Write `name` whole or not at all: a temporary file, fsynced, renamed over it.
    fn replace(&self, name: &str, body: &[u8]) -> Result<(), VectorError> {
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut f = File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
        f.write_all(body)
            .and_then(|_| f.sync_all())
            .map_err(io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, self.dir.join(name))
            .map_err(io(format!("renaming {}", tmp.display())))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(format!("syncing {}", self.dir.display())))
    }

    /// The graph snapshot, if one was written (unreadable counts as none: the graph is
    /// rebuilt from the records).
    pub(crate) fn graph(&self) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join(GRAPH)).ok()
    }

    /// Replace the graph snapshot; call only after the commit holding its points.
    pub(crate) fn write_graph(&self, snapshot: &[u8]) -> Result<(), VectorError> {
        self.replace(GRAPH, snapshot)
    }

    /// Bytes on disk.
    pub(crate) fn size(&self) -> u64 {
        self.length
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: i64, vector: Option<Vec<f32>>) -> StoredRecord {
        StoredRecord {
            offset,
            timestamp: 1000 + offset,
            key: (offset % 2 == 0).then(|| Bytes::from(format!("k{offset}"))),
            value: Some(Bytes::from(format!("{{\"n\":{offset}}}"))),
            vector,
        }
    }

    #[test]
    fn records_round_trip_and_torn_tails_are_detected() {
        let records = vec![
            rec(0, Some(vec![1.0, -2.5])),
            rec(1, None),
            rec(7, Some(vec![])),
        ];
        let mut buf = Vec::new();
        for r in &records {
            encode(r, &mut buf);
        }
        assert_eq!(decode_all(&buf).unwrap(), records);
        assert!(decode_all(&buf[..buf.len() - 1]).is_none());
    }

    #[test]
    fn uncommitted_appends_are_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let cp = |next| Checkpoint {
            next_offset: next,
            length: 0,
            forgotten_before: 0,
            skipped: 0,
            model: "m".into(),
            dimensions: 2,
            metric: "cosine".into(),
        };
        {
            let (mut s, c, r) = Store::open(dir.path(), |_| true).unwrap();
            assert!(c.is_none() && r.is_empty());
            let mut buf = Vec::new();
            encode(&rec(0, Some(vec![1.0, 0.0])), &mut buf);
            s.commit(&buf, cp(1)).unwrap();
            // Appended but never checkpointed: a crash before the commit.
            let mut more = Vec::new();
            encode(&rec(1, Some(vec![0.0, 1.0])), &mut more);
            s.file.write_all(&more[..5]).unwrap();
        }
        let (s, c, r) = Store::open(dir.path(), |_| true).unwrap();
        assert_eq!(c.unwrap().next_offset, 1);
        assert_eq!(r, vec![rec(0, Some(vec![1.0, 0.0]))]);
        s.write_graph(b"links").unwrap();
        let (s, _, _) = Store::open(dir.path(), |_| true).unwrap();
        assert_eq!(s.graph().as_deref(), Some(&b"links"[..]));
        // Another model: records, checkpoint and the graph over them all go.
        let (s, c, r) = Store::open(dir.path(), |c| c.model == "other").unwrap();
        assert!(c.is_none() && r.is_empty());
        assert!(s.graph().is_none());
    }
}
