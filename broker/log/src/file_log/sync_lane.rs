//! The process-wide fsync lane: one group-commit fsync round at a time for every partition
//! log, and a warning when a round is slow.
//!
//! Concurrent fdatasyncs of many partition files contend on the filesystem journal (ext4 here:
//! 6 concurrent writers saw p99 10 ms and p999 21 ms per fdatasync, against 1.8 ms p99 for the
//! same six done one after another), and group commit already batches each partition's writers
//! behind one call, so rounds take turns.

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::now_ms;

static LANE: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// A round slower than this (queued plus syncing) is logged: every acks=all producer of the
/// partition waited for it, and a disk (or a neighbour on it) that stalls is otherwise
/// invisible to an operator.
const SLOW: Duration = Duration::from_millis(100);
/// At most [`WARNINGS`] slow-round warnings per this many milliseconds for the process: a disk
/// that is slow all the time would otherwise log every round of every partition. A burst (one
/// stall holding up every partition) still shows round by round.
const WINDOW_MS: i64 = 10_000;
const WARNINGS: u64 = 10;
static WINDOW_START_MS: AtomicI64 = AtomicI64::new(i64::MIN);
static IN_WINDOW: AtomicU64 = AtomicU64::new(0);
static UNLOGGED: AtomicU64 = AtomicU64::new(0);

/// Run `sync` (the fsyncs of `files` files of the log in `dir`) in its turn on the lane.
pub(super) fn run<T>(dir: &Path, files: usize, sync: impl FnOnce() -> T) -> T {
    let queued = Instant::now();
    let lane = LANE.lock();
    let started = Instant::now();
    let result = sync();
    drop(lane);
    let syncing = started.elapsed();
    let waiting = started.duration_since(queued);
    if syncing + waiting >= SLOW {
        note_slow(dir, syncing, waiting, files);
    }
    result
}

/// Log a slow round, or count it toward the next warning when the window's are spent.
fn note_slow(dir: &Path, syncing: Duration, waiting: Duration, files: usize) {
    let now = now_ms();
    let window_start = WINDOW_START_MS.load(Ordering::Relaxed);
    // Two rounds racing over the reset may both start a window: a line more, nothing lost.
    if now.saturating_sub(window_start) >= WINDOW_MS {
        WINDOW_START_MS.store(now, Ordering::Relaxed);
        IN_WINDOW.store(0, Ordering::Relaxed);
    }
    if IN_WINDOW.fetch_add(1, Ordering::Relaxed) >= WARNINGS {
        UNLOGGED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // Taken outside the macro: its fields are not evaluated when the level is filtered out.
    let unlogged = UNLOGGED.swap(0, Ordering::Relaxed);
    tracing::warn!(
        dir = %dir.display(),
        sync_ms = syncing.as_millis() as u64,
        lane_wait_ms = waiting.as_millis() as u64,
        files,
        unlogged_slow_rounds_before = unlogged,
        "slow fsync round"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_fsync_warnings_are_limited_per_window_and_the_rest_counted() {
        let unlogged_before = UNLOGGED.load(Ordering::Relaxed);
        WINDOW_START_MS.store(i64::MIN, Ordering::Relaxed);
        let slow = Duration::from_millis(150);
        for _ in 0..WARNINGS + 5 {
            note_slow(Path::new("p-0"), slow, Duration::ZERO, 1);
        }
        assert_eq!(
            UNLOGGED.load(Ordering::Relaxed) - unlogged_before,
            5,
            "rounds past the window's warnings are counted, not logged"
        );
        // A new window logs again and hands over the count.
        WINDOW_START_MS.store(i64::MIN, Ordering::Relaxed);
        note_slow(Path::new("p-0"), slow, Duration::ZERO, 1);
        assert_eq!(UNLOGGED.load(Ordering::Relaxed), 0);
    }
}
