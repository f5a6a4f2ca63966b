//! Idempotent producer state of one partition: for each producer id, its epoch and the sequence
//! ranges and offsets of its last five batches, checked against every append that carries a
//! producer id (Kafka's `ProducerStateManager`).
//!
//! The rules, in the order Kafka applies them to a client's batch:
//! 1. the batch repeats one of the producer's last [`RETAINED_BATCHES`] batches (same epoch,
//!    same first and last sequence): nothing is stored and the original offsets are answered
//!    ([`LogError::DuplicateSequence`]);
//! 2. an epoch older than the producer's current one is fenced ([`LogError::InvalidProducerEpoch`]);
//! 3. a newer epoch must start at sequence 0;
//! 4. within the current epoch the batch must continue right after the last sequence, wrapping
//!    from `i32::MAX` to 0 ([`LogError::OutOfOrderSequence`]);
//! 5. a producer the partition does not know is accepted at any sequence: since KIP-360 (Kafka 2.5)
//!    its state may simply have expired or been deleted with the data, and the client recovers
//!    from there instead of failing with UNKNOWN_PRODUCER_ID.
//!
//! Transactions (KIP-98) add to this, per producer, the first offset of its open transaction on
//! this partition: a transactional batch opens one when none is open, and a control batch
//! (COMMIT or ABORT marker, written by the transaction coordinator without a sequence) closes
//! it. An aborted transaction is remembered as an [`AbortedTxn`] (producer, first offset, marker
//! offset), Kafka's transaction index, so read_committed fetches can tell consumers what to
//! skip. The last stable offset is the first offset of the oldest open transaction (capped by
//! the high watermark by the log). Transactional batches written by a coordinator (offset
//! commits) carry no sequence, so transactional and control batches may go without one.
//!
//! The state is rebuilt from batch headers alone (producer id, epoch, base sequence, last offset
//! delta), so recovery replays headers after the newest snapshot; snapshots are small binary
//! files named like segments (`<20-digit offset>.snapshot`) holding the state as of that offset.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::batch::{BatchHeader, ControlKind};
use crate::{LogError, Result};

/// Batches remembered per producer: Kafka's limit on in-flight requests for an idempotent
/// producer (max.in.flight.requests.per.connection <= 5), so any retry is among them.
pub const RETAINED_BATCHES: usize = 5;

/// How long a producer that has not written is remembered (Kafka's producer.id.expiration.ms
/// default, one day). Its state outlives the data retention deletes, as in Kafka since KIP-360.
pub const PRODUCER_ID_EXPIRATION_MS: i64 = 24 * 3600 * 1000;

/// A transaction that ended with an ABORT marker: a read_committed consumer skips the
/// producer's batches from `first_offset` up to the marker at `last_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// Offset of the ABORT marker.
    pub last_offset: i64,
}

/// One remembered batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

/// What the partition knows about one producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    /// Oldest first, at most [`RETAINED_BATCHES`], all of `epoch`.
    batches: VecDeque<BatchMeta>,
    /// Max timestamp of the producer's last batch, for expiration (Kafka uses the same).
    last_timestamp: i64,
    /// First offset of the producer's open transaction on this partition.
    txn_first_offset: Option<i64>,
}

impl ProducerEntry {
    fn new(epoch: i16) -> Self {
        ProducerEntry {
            epoch,
            batches: VecDeque::with_capacity(RETAINED_BATCHES),
            last_timestamp: i64::MIN,
            txn_first_offset: None,
        }
    }

    fn duplicate_of(&self, header: &BatchHeader) -> Option<&BatchMeta> {
        if header.producer_epoch != self.epoch {
            return None;
        }
        let last = header.last_sequence();
        self.batches
            .iter()
            .find(|b| b.first_seq == header.base_sequence && b.last_seq == last)
    }

    /// Record a stored batch; a new epoch forgets the old epoch's batches. A marker closes the
    /// open transaction, and an ABORT marker's transaction goes to `aborted`.
    fn add(
        &mut self,
        producer_id: i64,
        header: &BatchHeader,
        control: Option<ControlKind>,
        aborted: &mut Vec<AbortedTxn>,
    ) {
        if header.producer_epoch != self.epoch {
            self.epoch = header.producer_epoch;
            self.batches.clear();
        }
        self.last_timestamp = header.max_timestamp;
        if header.is_control() {
            if let Some(kind) = control {
                if let Some(first_offset) = self.txn_first_offset.take() {
                    if kind == ControlKind::Abort {
                        aborted.push(AbortedTxn {
                            producer_id,
                            first_offset,
                            last_offset: header.base_offset,
                        });
                    }
                }
            }
            return;
        }
        if header.base_sequence >= 0 {
            if self.batches.len() == RETAINED_BATCHES {
                self.batches.pop_front();
            }
            self.batches.push_back(BatchMeta {
                first_seq: header.base_sequence,
                last_seq: header.last_sequence(),
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
            });
        }
        if header.is_transactional() && self.txn_first_offset.is_none() {
            self.txn_first_offset = Some(header.base_offset);
        }
    }
}

/// Kafka's `inSequence`: `next` directly follows `last`, wrapping after `i32::MAX` to 0.
fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

/// The producer state of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
    /// (first offset, producer id) of every open transaction, so the oldest is at hand.
    ongoing: BTreeSet<(i64, i64)>,
    /// Aborted transactions, ascending by marker offset (the order markers are appended in).
    aborted: VecDeque<AbortedTxn>,
}

/// The producer entries an append will change, computed before anything is written and applied
/// with [`ProducerStates::commit`] once the write succeeded. Empty (no allocation) for batches
/// without a producer id.
#[derive(Debug, Default)]
pub struct Staged {
    updates: Vec<(i64, ProducerEntry)>,
    aborted: Vec<AbortedTxn>,
}

impl ProducerStates {
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Check the batches of one append, already stamped with their offsets, against the state.
    /// Each comes with its marker when it is a control batch. Either every batch is acceptable
    /// (the returned changes are committed after the write) or the append is refused whole.
    pub fn check<'a>(
        &self,
        batches: impl ExactSizeIterator<Item = (&'a BatchHeader, Option<ControlKind>)>,
    ) -> Result<Staged> {
        let count = batches.len();
        let mut staged = Staged::default();
        for (header, control) in batches {
            if !header.has_producer_id() {
                continue;
            }
            let pid = header.producer_id;
            let sequenced = header.base_sequence >= 0 && !header.is_control();
            if header.base_sequence < 0 && !header.is_transactional() && !header.is_control() {
                // Kafka's LogValidator refuses this too: a producer id without a sequence.
                return Err(LogError::InvalidBatch(format!(
                    "batch of producer {pid} has no sequence number ({})",
                    header.base_sequence
                )));
            }
            let at = staged.updates.iter().position(|(p, _)| *p == pid);
            let current = match at {
                Some(i) => Some(&staged.updates[i].1),
                None => self.producers.get(&pid),
            };
            if let Some(entry) = current {
                if sequenced {
                    if let Some(original) = entry.duplicate_of(header) {
                        if count > 1 {
                            // Answering the original offsets would silently drop the others.
                            return Err(LogError::InvalidBatch(format!(
                                "append of {count} batches repeats an earlier batch of producer {pid}"
                            )));
                        }
                        return Err(LogError::DuplicateSequence {
                            producer_id: pid,
                            base_offset: original.base_offset,
                            last_offset: original.last_offset,
                        });
                    }
                }
                check_epoch(entry, header)?;
                if sequenced {
                    check_sequence(entry, header)?;
                }
                if !header.is_transactional() && entry.txn_first_offset.is_some() {
                    return Err(LogError::InvalidTxnState {
                        producer_id: pid,
                        reason: "a non-transactional batch while its transaction is open".into(),
                    });
                }
            }
            let mut updated = current
                .cloned()
                .unwrap_or_else(|| ProducerEntry::new(header.producer_epoch));
            updated.add(pid, header, control, &mut staged.aborted);
            match at {
                Some(i) => staged.updates[i].1 = updated,
                None => staged.updates.push((pid, updated)),
            }
        }
        Ok(staged)
    }

    /// Apply what [`ProducerStates::check`] staged, after the batches were written.
    pub fn commit(&mut self, staged: Staged) {
        for (pid, entry) in staged.updates {
            self.put(pid, entry);
        }
        self.aborted.extend(staged.aborted);
    }

    fn put(&mut self, pid: i64, entry: ProducerEntry) {
        let open = entry.txn_first_offset;
        if let Some(old) = self.producers.insert(pid, entry) {
            if let Some(first) = old.txn_first_offset.filter(|f| Some(*f) != open) {
                self.ongoing.remove(&(first, pid));
            }
        }
        if let Some(first) = open {
            self.ongoing.insert((first, pid));
        }
    }

    /// Take a stored batch into the state without checks (recovery, truncation rebuilds): it was
    /// checked when it was appended. `control` is the marker of a control batch.
    pub fn replay(&mut self, header: &BatchHeader, control: Option<ControlKind>) {
        if !header.has_producer_id() {
            return;
        }
        let pid = header.producer_id;
        let mut entry = self
            .producers
            .get(&pid)
            .cloned()
            .unwrap_or_else(|| ProducerEntry::new(header.producer_epoch));
        let mut aborted = Vec::new();
        entry.add(pid, header, control, &mut aborted);
        self.put(pid, entry);
        self.aborted.extend(aborted);
    }

    /// First offset of the oldest open transaction: the last stable offset, before the high
    /// watermark caps it.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.first().map(|(first, _)| *first)
    }

    /// Aborted transactions that overlap offsets `[from, to)`: a consumer reading that range
    /// must skip their batches.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted
            .range(start..)
            .filter(|a| a.first_offset < to)
            .copied()
            .collect()
    }

    /// Forget aborted transactions wholly below the log start (their data is gone).
    pub fn prune_aborted(&mut self, log_start_offset: i64) {
        while self
            .aborted
            .front()
            .is_some_and(|a| a.last_offset < log_start_offset)
        {
            self.aborted.pop_front();
        }
    }

    /// Forget producers that have not written for `expiration_ms`, except those with an open
    /// transaction (it must end with a marker first). Returns how many went.
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.txn_first_offset.is_some() || now_ms.saturating_sub(e.last_timestamp) < expiration_ms
        });
        before - self.producers.len()
    }

    /// The epoch the partition holds for `producer_id`, if it knows it.
    #[cfg(test)]
    pub fn epoch(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|e| e.epoch)
    }
}

fn check_epoch(entry: &ProducerEntry, header: &BatchHeader) -> Result<()> {
    if header.producer_epoch < entry.epoch {
        // Kafka answers INVALID_PRODUCER_EPOCH here since 2.7 (PRODUCER_FENCED is reserved for
        // the transaction coordinator), so a transactional client can abort and retry.
        return Err(LogError::InvalidProducerEpoch {
            producer_id: header.producer_id,
            epoch: header.producer_epoch,
            current: entry.epoch,
        });
    }
    Ok(())
}

fn check_sequence(entry: &ProducerEntry, header: &BatchHeader) -> Result<()> {
    let pid = header.producer_id;
    let (epoch, first) = (header.producer_epoch, header.base_sequence);
    if epoch != entry.epoch {
        if first != 0 {
            return Err(LogError::OutOfOrderSequence {
                producer_id: pid,
                reason: format!("a new epoch {epoch} must start at sequence 0, not {first}"),
            });
        }
        return Ok(());
    }
    match entry.batches.back() {
        Some(last) if !in_sequence(last.last_seq, first) => Err(LogError::OutOfOrderSequence {
            producer_id: pid,
            reason: format!(
                "sequence {first} does not follow {} in epoch {epoch}",
                last.last_seq
            ),
        }),
        _ => Ok(()),
    }
}

// ---- snapshots ----

const SNAPSHOT_SUFFIX: &str = "snapshot";
/// Version 1 held sequences only; version 2 adds open transactions and aborted transactions.
const SNAPSHOT_MAGIC_V1: &[u8; 4] = b"CPS1";
const SNAPSHOT_MAGIC: &[u8; 4] = b"CPS2";
/// Snapshots kept per partition: the newest, and one older in case the newest is unreadable.
const SNAPSHOTS_KEPT: usize = 2;

/// Path of the snapshot holding the state as of `offset` (every batch below it applied).
pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.{SNAPSHOT_SUFFIX}"))
}

/// Offsets of the snapshots in `dir`, ascending.
pub fn list_snapshots(dir: &Path) -> io::Result<Vec<i64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".snapshot") else {
            continue;
        };
        if stem.len() == 20 {
            if let Ok(offset) = stem.parse::<i64>() {
                out.push(offset);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

impl ProducerStates {
    /// Binary form: magic, entry count, then per producer its id, epoch, last timestamp, open
    /// transaction's first offset (-1: none) and batches; then the aborted transactions (count,
    /// then producer id, first offset, marker offset each); a CRC-32C of everything before it closes the file, so a torn or half-written
    /// snapshot is detected and skipped rather than trusted.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            12 + self.producers.len() * (27 + 24 * RETAINED_BATCHES) + self.aborted.len() * 24,
        );
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort_unstable();
        for pid in ids {
            let e = &self.producers[pid];
            out.extend_from_slice(&pid.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.extend_from_slice(&e.last_timestamp.to_be_bytes());
            out.extend_from_slice(&e.txn_first_offset.unwrap_or(-1).to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.base_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        out.extend_from_slice(&(self.aborted.len() as u32).to_be_bytes());
        for a in &self.aborted {
            out.extend_from_slice(&a.producer_id.to_be_bytes());
            out.extend_from_slice(&a.first_offset.to_be_bytes());
            out.extend_from_slice(&a.last_offset.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> std::result::Result<ProducerStates, String> {
        let Some((body, crc)) = bytes.split_last_chunk::<4>() else {
            return Err("snapshot too short".into());
        };
        if crc32c::crc32c(body) != u32::from_be_bytes(*crc) {
            return Err("snapshot checksum mismatch".into());
        }
        let mut r = Reader(body);
        let with_txns = match &r.take::<4>()? {
            m if m == SNAPSHOT_MAGIC => true,
            m if m == SNAPSHOT_MAGIC_V1 => false,
            _ => return Err("not a producer state snapshot".into()),
        };
        let count = u32::from_be_bytes(r.take()?);
        let mut states = ProducerStates::default();
        for _ in 0..count {
            let pid = i64::from_be_bytes(r.take()?);
            let epoch = i16::from_be_bytes(r.take()?);
            let last_timestamp = i64::from_be_bytes(r.take()?);
            let txn_first_offset = if with_txns {
                Some(i64::from_be_bytes(r.take()?)).filter(|o| *o >= 0)
            } else {
                None
            };
            let [n] = r.take::<1>()?;
            if usize::from(n) > RETAINED_BATCHES {
                return Err(format!("producer {pid} has {n} batches"));
            }
            let mut batches = VecDeque::with_capacity(RETAINED_BATCHES);
            for _ in 0..n {
                batches.push_back(BatchMeta {
                    first_seq: i32::from_be_bytes(r.take()?),
                    last_seq: i32::from_be_bytes(r.take()?),
                    base_offset: i64::from_be_bytes(r.take()?),
                    last_offset: i64::from_be_bytes(r.take()?),
                });
            }
            states.put(
                pid,
                ProducerEntry {
                    epoch,
                    batches,
                    last_timestamp,
                    txn_first_offset,
                },
            );
        }
        if with_txns {
            let aborted = u32::from_be_bytes(r.take()?);
            for _ in 0..aborted {
                states.aborted.push_back(AbortedTxn {
                    producer_id: i64::from_be_bytes(r.take()?),
                    first_offset: i64::from_be_bytes(r.take()?),
                    last_offset: i64::from_be_bytes(r.take()?),
                });
            }
        }
        if !r.0.is_empty() {
            return Err("trailing bytes in snapshot".into());
        }
        Ok(states)
    }

    /// Write the snapshot for `offset` (temporary file, then rename, so a reader never sees a
    /// partial file under the final name) and remove all but the newest [`SNAPSHOTS_KEPT`].
    /// Not fsynced here: a lost or torn snapshot only means recovery replays more of the log.
    pub fn write_snapshot(&self, dir: &Path, offset: i64) -> io::Result<PathBuf> {
        let path = snapshot_path(dir, offset);
        let tmp = path.with_extension("snapshot.tmp");
        let mut file = File::create(&tmp)?;
        file.write_all(&self.encode())?;
        drop(file);
        fs::rename(&tmp, &path)?;
        let offsets = list_snapshots(dir)?;
        let stale = offsets.len().saturating_sub(SNAPSHOTS_KEPT);
        for old in &offsets[..stale] {
            remove_if_exists(&snapshot_path(dir, *old))?;
        }
        Ok(path)
    }

    /// The newest readable snapshot at or below `max_offset`, with its offset. Snapshots above
    /// it (their batches were truncated away) are removed; unreadable ones are skipped.
    pub fn load_snapshot(dir: &Path, max_offset: i64) -> io::Result<Option<(i64, ProducerStates)>> {
        let offsets = list_snapshots(dir)?;
        for &offset in offsets.iter().rev() {
            let path = snapshot_path(dir, offset);
            if offset > max_offset {
                remove_if_exists(&path)?;
                continue;
            }
            match fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| Self::decode(&b))
            {
                Ok(states) => return Ok(Some((offset, states))),
                Err(reason) => {
                    tracing::warn!(path = %path.display(), reason = %reason, "skipping unreadable producer state snapshot");
                }
            }
        }
        Ok(None)
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        let Some((head, rest)) = self.0.split_first_chunk::<N>() else {
            return Err("snapshot truncated".into());
        };
        self.0 = rest;
        Ok(*head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, count: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 49,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 1_000,
            max_timestamp: 1_000,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: count,
        }
    }

    fn append(states: &mut ProducerStates, h: BatchHeader) -> Result<()> {
        let control = h.is_control().then_some(ControlKind::Abort);
        let staged = states.check([(&h, control)].into_iter())?;
        states.commit(staged);
        Ok(())
    }

    #[test]
    fn in_order_batches_are_accepted_and_a_gap_is_not() {
        let mut s = ProducerStates::default();
        append(&mut s, header(7, 0, 0, 3, 0)).unwrap();
        append(&mut s, header(7, 0, 3, 2, 3)).unwrap();
        let gap = append(&mut s, header(7, 0, 6, 1, 5));
        assert!(
            matches!(
                gap,
                Err(LogError::OutOfOrderSequence { producer_id: 7, .. })
            ),
            "{gap:?}"
        );
    }

    #[test]
    fn each_of_the_last_five_batches_is_a_duplicate_with_its_original_offsets() {
        let mut s = ProducerStates::default();
        for i in 0..6 {
            append(&mut s, header(1, 0, i * 2, 2, 100 + i64::from(i) * 2)).unwrap();
        }
        // Batch 0 (seq 0..=1) fell out of the window: it is out of order now, not a duplicate.
        assert!(matches!(
            append(&mut s, header(1, 0, 0, 2, 0)),
            Err(LogError::OutOfOrderSequence { .. })
        ));
        for i in 1..6 {
            match append(&mut s, header(1, 0, i * 2, 2, 0)) {
                Err(LogError::DuplicateSequence {
                    producer_id: 1,
                    base_offset,
                    last_offset,
                }) => {
                    assert_eq!(
                        (base_offset, last_offset),
                        (100 + i64::from(i) * 2, 101 + i64::from(i) * 2)
                    )
                }
                other => panic!("batch {i}: expected a duplicate, got {other:?}"),
            }
        }
    }

    #[test]
    fn older_epoch_is_fenced_and_a_new_epoch_starts_at_zero() {
        let mut s = ProducerStates::default();
        append(&mut s, header(1, 3, 0, 1, 0)).unwrap();
        assert!(matches!(
            append(&mut s, header(1, 2, 1, 1, 1)),
            Err(LogError::InvalidProducerEpoch {
                epoch: 2,
                current: 3,
                ..
            })
        ));
        assert!(matches!(
            append(&mut s, header(1, 4, 5, 1, 1)),
            Err(LogError::OutOfOrderSequence { .. })
        ));
        append(&mut s, header(1, 4, 0, 1, 1)).unwrap();
        assert_eq!(s.epoch(1), Some(4));
    }

    #[test]
    fn unknown_producer_is_accepted_at_any_sequence() {
        let mut s = ProducerStates::default();
        append(&mut s, header(9, 0, 42, 1, 0)).unwrap();
        append(&mut s, header(9, 0, 43, 1, 1)).unwrap();
    }

    #[test]
    fn sequence_wraps_from_max_to_zero() {
        let mut s = ProducerStates::default();
        append(&mut s, header(1, 0, i32::MAX - 1, 2, 0)).unwrap();
        append(&mut s, header(1, 0, 0, 1, 2)).unwrap();
        // A batch straddling the wrap: its last sequence is 1.
        let mut s = ProducerStates::default();
        let straddle = header(2, 0, i32::MAX, 3, 0);
        assert_eq!(straddle.last_sequence(), 1);
        append(&mut s, straddle).unwrap();
        append(&mut s, header(2, 0, 2, 1, 3)).unwrap();
    }

    #[test]
    fn one_append_is_checked_against_its_own_earlier_batches() {
        let s = ProducerStates::default();
        let ok = [header(1, 0, 0, 2, 0), header(1, 0, 2, 2, 2)];
        assert_eq!(
            s.check(ok.iter().map(|h| (h, None))).unwrap().updates.len(),
            1
        );
        let gap = [header(1, 0, 0, 2, 0), header(1, 0, 5, 2, 2)];
        assert!(s.check(gap.iter().map(|h| (h, None))).is_err());
        let dup = [header(1, 0, 0, 2, 0), header(1, 0, 0, 2, 2)];
        assert!(matches!(
            s.check(dup.iter().map(|h| (h, None))),
            Err(LogError::InvalidBatch(_))
        ));
    }

    #[test]
    fn batches_without_a_producer_id_are_not_tracked() {
        let s = ProducerStates::default();
        let plain = [header(-1, -1, -1, 3, 0)];
        assert!(s
            .check(plain.iter().map(|h| (h, None)))
            .unwrap()
            .updates
            .is_empty());
        assert!(matches!(
            s.check([(&header(5, 0, -1, 1, 0), None)].into_iter()),
            Err(LogError::InvalidBatch(_))
        ));
    }

    #[test]
    fn producers_expire_after_their_last_write() {
        let mut s = ProducerStates::default();
        append(&mut s, header(1, 0, 0, 1, 0)).unwrap();
        assert_eq!(
            s.remove_expired(
                1_000 + PRODUCER_ID_EXPIRATION_MS - 1,
                PRODUCER_ID_EXPIRATION_MS
            ),
            0
        );
        assert_eq!(
            s.remove_expired(1_000 + PRODUCER_ID_EXPIRATION_MS, PRODUCER_ID_EXPIRATION_MS),
            1
        );
        assert!(s.is_empty());
    }

    #[test]
    fn snapshots_round_trip_and_detect_damage() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            append(&mut s, header(1, 2, i, 1, i64::from(i))).unwrap();
        }
        append(&mut s, header(99, 0, 5, 4, 10)).unwrap();
        let bytes = s.encode();
        assert_eq!(ProducerStates::decode(&bytes).unwrap(), s);
        let mut bad = bytes.clone();
        bad[10] ^= 1;
        assert!(ProducerStates::decode(&bad).is_err());
        assert!(ProducerStates::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    fn txn(mut h: BatchHeader) -> BatchHeader {
        h.attributes |= 1 << 4;
        h
    }

    fn marker_at(pid: i64, epoch: i16, offset: i64) -> BatchHeader {
        let mut h = header(pid, epoch, -1, 1, offset);
        h.attributes |= (1 << 4) | (1 << 5);
        h
    }

    #[test]
    fn transactions_open_close_and_abort_into_the_index() {
        let mut s = ProducerStates::default();
        append(&mut s, txn(header(1, 0, 0, 2, 10))).unwrap();
        append(&mut s, txn(header(2, 0, 0, 1, 12))).unwrap();
        append(&mut s, txn(header(1, 0, 2, 1, 13))).unwrap();
        assert_eq!(s.first_unstable_offset(), Some(10));
        // `append` marks control batches as ABORT markers.
        append(&mut s, marker_at(1, 0, 14)).unwrap();
        assert_eq!(s.first_unstable_offset(), Some(12));
        let staged = s
            .check([(&marker_at(2, 0, 15), Some(ControlKind::Commit))].into_iter())
            .unwrap();
        s.commit(staged);
        assert_eq!(s.first_unstable_offset(), None);
        let aborted = AbortedTxn {
            producer_id: 1,
            first_offset: 10,
            last_offset: 14,
        };
        assert_eq!(s.aborted_between(0, 100), [aborted]);
        assert_eq!(s.aborted_between(15, 100), []);
        assert_eq!(
            s.aborted_between(0, 10),
            [],
            "the range ends before the transaction"
        );
        // Producers with an open transaction never expire; closed ones do.
        append(&mut s, txn(header(3, 0, 0, 1, 16))).unwrap();
        s.remove_expired(i64::MAX, PRODUCER_ID_EXPIRATION_MS);
        assert_eq!(s.first_unstable_offset(), Some(16));
        assert_eq!(s.producers.len(), 1);
        s.prune_aborted(15);
        assert!(s.aborted_between(0, 100).is_empty());
    }

    #[test]
    fn snapshots_keep_open_and_aborted_transactions_and_read_version_one() {
        let mut s = ProducerStates::default();
        append(&mut s, txn(header(1, 0, 0, 2, 0))).unwrap();
        append(&mut s, marker_at(1, 0, 2)).unwrap();
        append(&mut s, txn(header(2, 0, 0, 1, 3))).unwrap();
        let decoded = ProducerStates::decode(&s.encode()).unwrap();
        assert_eq!(decoded, s);
        assert_eq!(decoded.first_unstable_offset(), Some(3));
        assert_eq!(decoded.aborted_between(0, 10).len(), 1);

        // A version 1 snapshot (before transactions): magic, one producer without the open
        // transaction field, no aborted list.
        let mut v1 = Vec::new();
        v1.extend_from_slice(b"CPS1");
        v1.extend_from_slice(&1u32.to_be_bytes());
        v1.extend_from_slice(&7i64.to_be_bytes());
        v1.extend_from_slice(&0i16.to_be_bytes());
        v1.extend_from_slice(&5i64.to_be_bytes());
        v1.push(0);
        let crc = crc32c::crc32c(&v1);
        v1.extend_from_slice(&crc.to_be_bytes());
        let old = ProducerStates::decode(&v1).unwrap();
        assert_eq!(old.epoch(7), Some(0));
        assert_eq!(old.first_unstable_offset(), None);
    }

    #[test]
    fn newest_readable_snapshot_at_or_below_the_end_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ProducerStates::default();
        append(&mut s, header(1, 0, 0, 1, 0)).unwrap();
        s.write_snapshot(dir.path(), 1).unwrap();
        append(&mut s, header(1, 0, 1, 1, 1)).unwrap();
        s.write_snapshot(dir.path(), 2).unwrap();
        s.write_snapshot(dir.path(), 3).unwrap();
        assert_eq!(list_snapshots(dir.path()).unwrap(), vec![2, 3]);
        fs::write(snapshot_path(dir.path(), 3), b"garbage").unwrap();
        let (offset, loaded) = ProducerStates::load_snapshot(dir.path(), 10)
            .unwrap()
            .unwrap();
        assert_eq!((offset, loaded), (2, s.clone()));
        // A truncation below a snapshot removes it.
        assert!(ProducerStates::load_snapshot(dir.path(), 1)
            .unwrap()
            .is_none());
        assert!(list_snapshots(dir.path()).unwrap().is_empty());
    }
}
