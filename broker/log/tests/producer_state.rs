//! Idempotent producer state of the durable log across restarts: a retry after a crash is still
//! recognised, from a snapshot, from replayed batch headers, or both.

mod support;

use std::fs;
use std::path::Path;

use chronik_log::{FileLog, LogConfig, LogError, PartitionLog};
use kafka_protocol::records::Compression;
use support::{batch, idempotent_batch};

fn snapshots(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".snapshot"))
        .collect();
    names.sort();
    names
}

fn expect_duplicate(log: &FileLog, retry: bytes::Bytes, original: (i64, i64)) {
    match log.append(retry, 0) {
        Err(LogError::DuplicateSequence {
            base_offset,
            last_offset,
            ..
        }) => assert_eq!((base_offset, last_offset), original),
        other => panic!("expected a duplicate stored at {original:?}, got {other:?}"),
    }
}

#[test]
fn a_retry_after_a_crash_is_still_deduplicated() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let log = FileLog::open(&dir, LogConfig::default()).unwrap();
    log.append(batch(2, 1, Compression::None), 0).unwrap();
    let sent = idempotent_batch(3, 11, 0, 0);
    assert_eq!(log.append(sent.clone(), 0).unwrap().base_offset, 2);
    log.flush().unwrap();
    drop(log); // a crash: no close, no snapshot of the last append

    let log = FileLog::open(&dir, LogConfig::default()).unwrap();
    expect_duplicate(&log, sent, (2, 4));
    assert!(matches!(
        log.append(idempotent_batch(1, 11, 0, 9), 0),
        Err(LogError::OutOfOrderSequence { .. })
    ));
    assert_eq!(
        log.append(idempotent_batch(1, 11, 0, 3), 0)
            .unwrap()
            .base_offset,
        5
    );
}

#[test]
fn snapshot_at_roll_plus_replayed_tail_restore_the_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let log = FileLog::open(&dir, LogConfig::default()).unwrap();
    let early = idempotent_batch(2, 1, 0, 0);
    log.append(early.clone(), 0).unwrap();
    log.append(idempotent_batch(2, 2, 0, 0), 0).unwrap();
    log.roll().unwrap();
    assert_eq!(snapshots(&dir), vec![format!("{:020}.snapshot", 4)]);
    let late = idempotent_batch(2, 1, 0, 2);
    log.append(late.clone(), 0).unwrap();
    log.flush().unwrap();
    drop(log);

    let log = FileLog::open(&dir, LogConfig::default()).unwrap();
    expect_duplicate(&log, early, (0, 1));
    expect_duplicate(&log, late, (4, 5));
    expect_duplicate(&log, idempotent_batch(2, 2, 0, 0), (2, 3));
    log.close().unwrap();

    // A clean close leaves a snapshot at the log end: the next open replays nothing.
    assert!(snapshots(&dir).contains(&format!("{:020}.snapshot", 6)));
    let log = FileLog::open(&dir, LogConfig::default()).unwrap();
    expect_duplicate(&log, idempotent_batch(2, 1, 0, 2), (4, 5));
}

#[test]
fn an_unreadable_snapshot_falls_back_to_replaying_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let log = FileLog::open(&dir, LogConfig::default()).unwrap();
    let sent = idempotent_batch(2, 9, 0, 0);
    log.append(sent.clone(), 0).unwrap();
    log.close().unwrap();
    for name in snapshots(&dir) {
        fs::write(dir.join(name), b"not a snapshot").unwrap();
    }
    let log = FileLog::open(&dir, LogConfig::default()).unwrap();
    expect_duplicate(&log, sent, (0, 1));
}

#[test]
fn a_torn_tail_is_forgotten_by_the_producer_state_too() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let log = FileLog::open(&dir, LogConfig::default()).unwrap();
    log.append(idempotent_batch(2, 4, 0, 0), 0).unwrap();
    let torn = idempotent_batch(2, 4, 0, 2);
    log.append(torn.clone(), 0).unwrap();
    log.close().unwrap(); // leaves a snapshot at offset 4, which the cut makes stale

    let seg = dir.join(format!("{:020}.log", 0));
    let len = fs::metadata(&seg).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 3)
        .unwrap();

    let log = FileLog::open(&dir, LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), 2);
    // The cut batch was never acknowledged: its resend is stored, not answered as a duplicate.
    assert_eq!(log.append(torn, 0).unwrap().base_offset, 2);
}
