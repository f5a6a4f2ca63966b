//! A partition's leader-epoch history (Kafka's leader-epoch cache): the first offset written in
//! each leader epoch. It answers OffsetsForLeaderEpoch (where did epoch E end on this replica)
//! and tells a follower where its log diverges from the leader's, so it can truncate before
//! fetching. The pure part is [`LeaderEpochHistory`] and [`truncation_offset`]; the checkpoint
//! file (`leader-epoch-checkpoint`, Kafka's text layout) is read and written by `FileLog`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// No epoch or offset known (Kafka's UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET).
pub const UNDEFINED: i64 = -1;

pub(crate) const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// Ascending by epoch and by start offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochHistory {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochHistory {
    pub fn from_entries(mut entries: Vec<EpochEntry>) -> Self {
        entries.sort_by_key(|e| (e.epoch, e.start_offset));
        let mut history = LeaderEpochHistory::default();
        for e in entries {
            history.assign(e.epoch, e.start_offset);
        }
        history
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Record that `epoch` starts at `start_offset`. An epoch not newer than the latest is
    /// ignored (batches of an older leader replicated late carry no news); entries starting at
    /// or after `start_offset` are dropped first, so offsets stay ascending. Returns whether the
    /// history changed.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || self.latest().is_some_and(|l| l.epoch >= epoch) {
            return false;
        }
        self.entries.retain(|e| e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Forget epochs that start at or after `end_offset` (the log was truncated there).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        before != self.entries.len()
    }

    /// OffsetsForLeaderEpoch on this replica, whose log ends at `log_end_offset`: the largest
    /// epoch `<= requested` and the offset where it ended (the start of the next epoch, or the
    /// log end for the latest one). `(UNDEFINED, UNDEFINED)` when `requested` is older than
    /// every known epoch or newer than the latest.
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        let undefined = (UNDEFINED as i32, UNDEFINED);
        match self.latest() {
            None => undefined,
            Some(l) if requested == l.epoch => (l.epoch, log_end_offset),
            Some(l) if requested > l.epoch => undefined,
            Some(_) => {
                let next = self.entries.partition_point(|e| e.epoch <= requested);
                if next == 0 {
                    return undefined;
                }
                (
                    self.entries[next - 1].epoch,
                    self.entries[next].start_offset,
                )
            }
        }
    }

    /// Kafka's text layout: version, count, then `epoch start_offset` per line.
    pub fn encode(&self) -> String {
        let mut out = format!("0\n{}\n", self.entries.len());
        for e in &self.entries {
            out.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        out
    }

    pub fn decode(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()?.trim() != "0" {
            return None;
        }
        let count: usize = lines.next()?.trim().parse().ok()?;
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let (epoch, start) = lines.next()?.trim().split_once(' ')?;
            entries.push(EpochEntry {
                epoch: epoch.parse().ok()?,
                start_offset: start.parse().ok()?,
            });
        }
        Some(LeaderEpochHistory::from_entries(entries))
    }
}

/// Where a follower truncates before fetching from a new leader. It asked the leader for the
/// end of its own latest epoch and got `leader_answer` (epoch, end offset):
/// - nothing known on either side: truncate to the high watermark (everything below it was
///   acknowledged by the whole ISR, so the new leader has it);
/// - the leader knows that epoch: keep what both wrote in it, `min(leader end, local end)`;
/// - the leader knows only an older epoch: keep up to where both say that epoch ended.
pub fn truncation_offset(
    local: &LeaderEpochHistory,
    local_log_end: i64,
    local_high_watermark: i64,
    leader_answer: (i32, i64),
) -> i64 {
    let (leader_epoch, leader_end) = leader_answer;
    let Some(latest) = local.latest() else {
        return local_high_watermark.min(local_log_end);
    };
    if leader_epoch < 0 || leader_end < 0 {
        return local_high_watermark.min(local_log_end);
    }
    if leader_epoch == latest.epoch {
        return leader_end.min(local_log_end);
    }
    let (_, local_end) = local.end_offset_for(leader_epoch, local_log_end);
    if local_end < 0 {
        return local_high_watermark.min(local_log_end);
    }
    leader_end.min(local_end).min(local_log_end)
}

pub(crate) fn read_checkpoint(dir: &Path) -> Option<LeaderEpochHistory> {
    let text = fs::read_to_string(dir.join(CHECKPOINT_FILE)).ok()?;
    let history = LeaderEpochHistory::decode(&text);
    if history.is_none() {
        tracing::warn!(dir = %dir.display(), "ignoring unreadable leader-epoch checkpoint");
    }
    history
}

/// Durably replace the checkpoint (temporary file, fsync, rename). Epochs change only on
/// leadership changes and truncations, so this is rare.
pub(crate) fn write_checkpoint(dir: &Path, history: &LeaderEpochHistory) -> io::Result<()> {
    let tmp = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(history.encode().as_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(CHECKPOINT_FILE))?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(entries: &[(i32, i64)]) -> LeaderEpochHistory {
        LeaderEpochHistory::from_entries(
            entries
                .iter()
                .map(|&(epoch, start_offset)| EpochEntry {
                    epoch,
                    start_offset,
                })
                .collect(),
        )
    }

    #[test]
    fn end_offsets_follow_offsets_for_leader_epoch() {
        let h = history(&[(1, 0), (3, 10), (4, 25)]);
        assert_eq!(h.end_offset_for(4, 40), (4, 40));
        assert_eq!(h.end_offset_for(3, 40), (3, 25));
        assert_eq!(
            h.end_offset_for(2, 40),
            (1, 10),
            "epoch 2 never wrote: epoch 1's end"
        );
        assert_eq!(h.end_offset_for(1, 40), (1, 10));
        assert_eq!(h.end_offset_for(0, 40), (-1, -1));
        assert_eq!(h.end_offset_for(5, 40), (-1, -1));
        assert_eq!(LeaderEpochHistory::default().end_offset_for(1, 0), (-1, -1));
    }

    #[test]
    fn assign_ignores_old_epochs_and_truncation_forgets_later_ones() {
        let mut h = history(&[(1, 0), (3, 10)]);
        assert!(!h.assign(2, 20));
        assert!(!h.assign(3, 20));
        assert!(h.assign(5, 20));
        assert!(h.truncate_from_end(20));
        assert_eq!(h, history(&[(1, 0), (3, 10)]));
        assert!(h.truncate_from_end(10));
        assert_eq!(
            h.latest(),
            Some(EpochEntry {
                epoch: 1,
                start_offset: 0
            })
        );
        // A new epoch starting below existing entries replaces them.
        let mut h = history(&[(1, 0), (3, 10)]);
        assert!(h.assign(4, 5));
        assert_eq!(h, history(&[(1, 0), (4, 5)]));
    }

    #[test]
    fn checkpoint_text_round_trips() {
        let h = history(&[(0, 0), (2, 17), (7, 90)]);
        assert_eq!(h.encode(), "0\n3\n0 0\n2 17\n7 90\n");
        assert_eq!(LeaderEpochHistory::decode(&h.encode()), Some(h));
        assert_eq!(LeaderEpochHistory::decode("1\n0\n"), None);
        assert_eq!(LeaderEpochHistory::decode("0\n2\n1 0\n"), None);
    }

    /// Exhaustive over small histories: simulate a leader and a follower that share a prefix
    /// of epochs and then diverge; the truncation point never keeps a record the leader does
    /// not hold at the same offset, and never drops a shared one.
    #[test]
    fn truncation_keeps_exactly_the_shared_prefix() {
        // Each log is a list of (epoch) per offset; the leader's log is the truth.
        let logs: Vec<Vec<i32>> = vec![
            vec![],
            vec![1],
            vec![1, 1],
            vec![1, 1, 2],
            vec![1, 1, 2, 2],
            vec![1, 1, 3],
            vec![1, 1, 3, 3],
            vec![1, 2, 2, 3],
            vec![1, 2, 3, 3],
            vec![1, 1, 2, 4],
        ];
        let history_of = |log: &[i32]| {
            let mut h = LeaderEpochHistory::default();
            for (offset, epoch) in log.iter().enumerate() {
                h.assign(*epoch, offset as i64);
            }
            h
        };
        let mut checked = 0;
        for leader in &logs {
            for follower in &logs {
                let shared = leader
                    .iter()
                    .zip(follower.iter())
                    .take_while(|(a, b)| a == b)
                    .count() as i64;
                // A leader's log holds every epoch a follower could have seen: skip pairs
                // where the follower's latest epoch is newer than the leader's (that follower
                // would be the leader's successor, not its follower).
                if follower.last() > leader.last() {
                    continue;
                }
                // Only histories Raft-style log matching allows: one leader per epoch, so two
                // logs with the same epoch at the same offset agree up to there.
                let matching = (0..leader.len().min(follower.len()))
                    .filter(|o| leader[*o] == follower[*o])
                    .all(|o| leader[..=o] == follower[..=o]);
                // And an epoch's records come from one leader: a follower's epoch that the
                // leader also wrote starts at the same offset in both.
                let same_starts = follower.iter().all(|e| {
                    let ls = leader.iter().position(|x| x == e);
                    ls.is_none() || ls == follower.iter().position(|x| x == e)
                });
                if !matching || !same_starts {
                    continue;
                }
                checked += 1;
                let lh = history_of(leader);
                let fh = history_of(follower);
                let requested = fh.latest().map_or(-1, |e| e.epoch);
                let answer = lh.end_offset_for(requested, leader.len() as i64);
                // The high watermark is within the shared prefix (the leader holds it all).
                for hw in 0..=shared {
                    let t = truncation_offset(&fh, follower.len() as i64, hw, answer);
                    assert!(
                        t <= shared,
                        "leader {leader:?} follower {follower:?}: kept {t} > shared {shared}"
                    );
                    assert!(
                        t >= hw,
                        "leader {leader:?} follower {follower:?}: cut {t} below hw {hw}"
                    );
                }
            }
        }
        assert!(checked > 40, "only {checked} pairs checked");
    }
}
