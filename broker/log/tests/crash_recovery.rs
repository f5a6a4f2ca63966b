//! Regressions for what a crash at any point leaves on disk: empty segments, interrupted
//! compaction swaps, and removals that had not reached the disk. Crashes are simulated by
//! dropping a log without `close` and editing its files before the next `FileLog::open`.

mod support;

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chronik_log::{CleanupPolicy, FileLog, FlushPolicy, LogConfig, PartitionLog};
use kafka_protocol::records::Compression;
use support::{base_offsets, batch, batch_of, headers, kv, now_ms};

fn segment(dir: &Path, base: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}

fn small_segments(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 1,
        ..LogConfig::default()
    }
}

fn compacted() -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..LogConfig::default()
    }
}

/// Every stored batch from `offset` on, read as a consumer would: each read continues at the
/// offset after the last batch returned, until a read returns nothing.
fn read_from(log: &FileLog, mut offset: i64) -> Bytes {
    let mut out = Vec::new();
    loop {
        let got = log.read(offset, 1 << 20, false).expect("read").records;
        let Some(last) = headers(&got).last().copied() else {
            return out.into();
        };
        out.extend_from_slice(&got);
        offset = last.next_offset();
    }
}

fn truncate_file(path: &Path) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open segment")
        .set_len(0)
        .expect("truncate");
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// One single-record batch per (key, value), all at `now`.
fn append_kv(log: &FileLog, records: &[(&str, &str)], now: i64) {
    for (k, v) in records {
        let b = batch_of(&[(Some(k), Some(v), now)], Compression::None);
        log.append(b, 0).expect("append");
    }
}

/// Bug: a consumer positioned before two consecutive empty segments got nothing forever, because
/// the read looked only at the first segment ending after the offset, which was empty.
#[test]
fn reads_step_over_consecutive_empty_segments_left_by_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let len = batch(2, 1, Compression::None).len() as u64;
    let config = small_segments(2 * len);
    let log = FileLog::open(&dir, config.clone()).unwrap();
    for _ in 0..10 {
        log.append(batch(2, now_ms(), Compression::None), 0)
            .unwrap();
    }
    assert_eq!(log.segment_base_offsets(), vec![0, 4, 8, 12, 16]);
    drop(log); // a crash
    truncate_file(&segment(&dir, 4, "log"));
    truncate_file(&segment(&dir, 8, "log"));

    let log = FileLog::open(&dir, config).unwrap();
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (0, 20),
        "the empty segments own no offsets; the log around them is unchanged"
    );
    assert_eq!(
        base_offsets(&read_from(&log, 0)),
        vec![0, 2, 12, 14, 16, 18]
    );
    assert_eq!(
        base_offsets(&log.read(5, 1 << 20, false).unwrap().records)[0],
        12,
        "an offset inside the hole reads from the next data"
    );
    assert_eq!(
        log.segment_base_offsets(),
        vec![0, 12, 16],
        "empty sealed segments between others are dropped at recovery"
    );
    assert!(!segment(&dir, 4, "log").exists() && !segment(&dir, 8, "index").exists());
}

/// An emptied first segment is kept (its base is the log start), but the indexes left next to
/// it must not survive: they claimed a largest timestamp for a segment with no records.
#[test]
fn an_emptied_first_segment_keeps_no_stale_timestamps() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let len = batch(2, 1, Compression::None).len() as u64;
    // Kafka's default index interval: small segments get no offset index entries, only the time
    // index entry written when they are sealed.
    let config = LogConfig {
        segment_bytes: 2 * len,
        ..LogConfig::default()
    };
    let log = FileLog::open(&dir, config.clone()).unwrap();
    let now = now_ms();
    for ts in [now + 5_000, now + 5_000, now, now, now] {
        log.append(batch(2, ts, Compression::None), 0).unwrap();
    }
    assert_eq!(log.segment_base_offsets(), vec![0, 4, 8]);
    drop(log);
    truncate_file(&segment(&dir, 0, "log"));

    let log = FileLog::open(&dir, config).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 4, 8]);
    assert_eq!(log.log_start_offset(), 0);
    let max = log.max_timestamp().unwrap().expect("records remain");
    assert_eq!(max.timestamp, now, "no timestamp from the emptied segment");
    let found = log.offset_for_timestamp(now + 1).unwrap();
    assert!(found.is_none(), "{found:?}");
    assert_eq!(base_offsets(&read_from(&log, 0)), vec![4, 6, 8]);
}

/// Bug: a segment compacted to nothing was swapped for an empty file and only then removed, so a
/// crash in between left an empty sealed segment. Now its files go directly; what a crash can
/// leave at each step is covered by `recovery_clears_every_leftover_of_interrupted_compaction`.
#[test]
fn a_middle_segment_compacted_to_nothing_is_removed_without_an_empty_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let log = FileLog::open(&dir, compacted()).unwrap();
    let now = now_ms();
    append_kv(&log, &[("k0", "a"), ("k1", "b")], now);
    log.roll().unwrap();
    append_kv(&log, &[("k2", "c"), ("k3", "d")], now); // wholly superseded below
    log.roll().unwrap();
    append_kv(&log, &[("k2", "e"), ("k3", "f")], now);
    log.roll().unwrap();
    append_kv(&log, &[("k9", "z")], now);
    log.flush().unwrap();
    log.run_maintenance(now).unwrap();

    let expect = vec![
        (0, Some("k0".to_string()), Some("a".to_string())),
        (1, Some("k1".to_string()), Some("b".to_string())),
        (4, Some("k2".to_string()), Some("e".to_string())),
        (5, Some("k3".to_string()), Some("f".to_string())),
        (6, Some("k9".to_string()), Some("z".to_string())),
    ];
    assert_eq!(log.segment_base_offsets(), vec![0, 4, 6]);
    assert_eq!(kv(read_from(&log, 0)), expect);
    assert!(["log", "index", "timeindex"]
        .iter()
        .all(|ext| !segment(&dir, 2, ext).exists()));
    let names = file_names(&dir);
    assert!(names.iter().all(|n| !n.ends_with(".cleaned")), "{names:?}");
    drop(log); // a crash right after the pass

    let log = FileLog::open(&dir, compacted()).unwrap();
    assert_eq!(kv(read_from(&log, 0)), expect);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 7));
}

/// What a crash can leave at any point of a compaction swap or a removal: an unswapped
/// `.cleaned` file, a `.deleted` file, index files whose log is gone, an empty `.log` that the
/// old swap left. Recovery clears them and the records are intact.
#[test]
fn recovery_clears_every_leftover_of_interrupted_compaction() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let log = FileLog::open(&dir, compacted()).unwrap();
    let now = now_ms();
    for i in 0..4 {
        append_kv(
            &log,
            &[("k0", &format!("v{i}")), ("k1", &format!("w{i}"))],
            now,
        );
        log.roll().unwrap();
    }
    append_kv(&log, &[("k9", "z")], now);
    assert_eq!(log.segment_base_offsets(), vec![0, 2, 4, 6, 8]);
    let before = read_from(&log, 0);
    drop(log);
    fs::write(dir.join(format!("{:020}.log.cleaned", 2)), b"").unwrap();
    fs::write(dir.join(format!("{:020}.log.cleaned", 4)), &before[..40]).unwrap();
    fs::write(dir.join(format!("{:020}.log.deleted", 6)), &before[..]).unwrap();
    fs::write(segment(&dir, 100, "index"), b"").unwrap();
    fs::write(segment(&dir, 100, "timeindex"), b"").unwrap();

    let log = FileLog::open(&dir, compacted()).unwrap();
    assert_eq!(read_from(&log, 0), before);
    let names = file_names(&dir);
    assert!(
        names
            .iter()
            .all(|n| !n.ends_with(".cleaned") && !n.ends_with(".deleted") && !n.contains("100")),
        "{names:?}"
    );

    // The old swap's leftover: an emptied middle segment. Compaction then cleans the rest.
    drop(log);
    truncate_file(&segment(&dir, 4, "log"));
    let log = FileLog::open(&dir, compacted()).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 2, 6, 8]);
    log.run_maintenance(now).unwrap();
    assert_eq!(
        kv(read_from(&log, 0)),
        vec![
            (6, Some("k0".to_string()), Some("v3".to_string())),
            (7, Some("k1".to_string()), Some("w3".to_string())),
            (8, Some("k9".to_string()), Some("z".to_string())),
        ]
    );
}

/// Bug: compaction removed wholly superseded leading segments and recovery took the first
/// remaining file's base as the log start, so the log start of a compact-only log jumped forward
/// at every restart. Compaction never moves the log start.
#[test]
fn compaction_never_moves_the_log_start_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let log = FileLog::open(&dir, compacted()).unwrap();
    let now = now_ms();
    for i in 0..30 {
        let key = format!("k{}", i % 3);
        append_kv(&log, &[(key.as_str(), &format!("v{i}"))], now);
        if i % 3 == 2 {
            log.roll().unwrap();
        }
    }
    append_kv(&log, &[("k0", "last")], now);
    log.flush().unwrap();
    log.run_maintenance(now).unwrap();
    // The active segment is not compacted, so k0's value in the last sealed one stays too.
    let expect = vec![
        (27, Some("k0".to_string()), Some("v27".to_string())),
        (28, Some("k1".to_string()), Some("v28".to_string())),
        (29, Some("k2".to_string()), Some("v29".to_string())),
        (30, Some("k0".to_string()), Some("last".to_string())),
    ];
    assert_eq!(kv(read_from(&log, 0)), expect);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 31));
    assert_eq!(
        log.segment_base_offsets(),
        vec![0, 27, 30],
        "the first segment stays, emptied; the others compacted to nothing go"
    );
    log.close().unwrap();

    let log = FileLog::open(&dir, compacted()).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 31));
    assert_eq!(kv(read_from(&log, 0)), expect);
    drop(log); // and after a crash
    let log = FileLog::open(&dir, compacted()).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 31));
    // A second pass over the emptied first segment changes nothing.
    log.run_maintenance(now).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 27, 30]);
    assert_eq!(kv(read_from(&log, 0)), expect);
}

/// Records above the high watermark may still be lost (not durable yet) or truncated, so they
/// must not supersede, and so remove, an older value of their key.
#[test]
fn compaction_leaves_segments_above_the_high_watermark_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let log = FileLog::open(&dir, compacted()).unwrap(); // group commit
    let now = now_ms();
    append_kv(&log, &[("k0", "a")], now);
    log.roll().unwrap();
    append_kv(&log, &[("k0", "b")], now);
    log.roll().unwrap();
    append_kv(&log, &[("k9", "z")], now);
    assert_eq!(log.high_watermark(), 0, "nothing durable yet");
    log.run_maintenance(now).unwrap();
    assert_eq!(kv(read_from(&log, 0)).len(), 3, "nothing cleaned");

    log.flush().unwrap();
    log.run_maintenance(now).unwrap();
    assert_eq!(
        kv(read_from(&log, 0)),
        vec![
            (1, Some("k0".to_string()), Some("b".to_string())),
            (2, Some("k9".to_string()), Some("z".to_string())),
        ]
    );
}

/// Bug: retention moved the log start in memory and removed the files afterwards without a
/// checkpoint, so a crash before the removals reached the disk brought the start (and the
/// deleted records) back. The files put back here are that crash.
#[test]
fn a_crash_after_retention_never_moves_the_log_start_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let len = batch(2, 1, Compression::None).len() as u64;
    let config = LogConfig {
        retention_bytes: (5 * len) as i64,
        flush: FlushPolicy::Os,
        ..small_segments(2 * len)
    };
    let log = FileLog::open(&dir, config.clone()).unwrap();
    let now = now_ms();
    for _ in 0..9 {
        log.append(batch(2, now, Compression::None), 0).unwrap();
    }
    let saved: Vec<(PathBuf, Vec<u8>)> = [0, 4]
        .into_iter()
        .flat_map(|base| ["log", "index", "timeindex"].map(|ext| segment(&dir, base, ext)))
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    log.run_maintenance(now).unwrap();
    assert_eq!(log.log_start_offset(), 8);
    assert_eq!(log.segment_base_offsets(), vec![8, 12, 16]);
    drop(log);
    for (path, bytes) in &saved {
        fs::write(path, bytes).unwrap();
    }

    let log = FileLog::open(&dir, config.clone()).unwrap();
    assert_eq!(log.log_start_offset(), 8, "the log start never goes back");
    assert!(
        log.read(4, 1 << 20, false).is_err(),
        "deleted records stay deleted"
    );
    assert_eq!(log.segment_base_offsets(), vec![8, 12, 16]);
    assert!(
        !segment(&dir, 0, "log").exists() && !segment(&dir, 4, "log").exists(),
        "recovery finishes the removal"
    );

    // DeleteRecords inside a segment, then retention: the checkpoint only moves forward.
    log.delete_records_before(10).unwrap();
    for _ in 0..2 {
        log.append(batch(2, now, Compression::None), 0).unwrap();
    }
    log.run_maintenance(now).unwrap();
    let running = log.log_start_offset();
    assert!(running >= 12, "{running}");
    drop(log);
    let log = FileLog::open(&dir, config).unwrap();
    assert_eq!(log.log_start_offset(), running);
}
