//! Behaviour only the durable log has: files, recovery, rolls, retention, group commit.

mod support;

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chronik_log::{
    CleanupPolicy, FileLog, FlushPolicy, LogConfig, LogManager, PartitionLog, TimestampOffset,
};
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

/// Every stored batch, read segment by segment as a consumer would.
fn read_all(log: &FileLog) -> Bytes {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    loop {
        let got = log.read(offset, 1 << 20, false).expect("read").records;
        let Some(last) = headers(&got).last().copied() else {
            return out.into();
        };
        out.extend_from_slice(&got);
        offset = last.next_offset();
    }
}

/// Append `n` single-batch produces of 2 records each, returning the batch size.
fn fill(log: &FileLog, n: usize, timestamp: i64) -> usize {
    let b = batch(2, timestamp, Compression::None);
    for _ in 0..n {
        log.append(b.clone(), 0).expect("append");
    }
    b.len()
}

#[test]
fn recovery_after_a_cut_mid_batch_keeps_every_whole_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let log = FileLog::open(&dir, LogConfig::default()).unwrap();
    let len = fill(&log, 5, 1);
    drop(log); // a crash: no close

    let file = OpenOptions::new()
        .write(true)
        .open(segment(&dir, 0, "log"))
        .unwrap();
    file.set_len((5 * len - 10) as u64).unwrap();
    drop(file);

    let log = FileLog::open(&dir, LogConfig::default()).unwrap();
    assert_eq!(
        log.log_end_offset(),
        8,
        "four whole batches of two records survive"
    );
    assert_eq!(base_offsets(&read_all(&log)), vec![0, 2, 4, 6]);
    assert_eq!(
        log.append(batch(1, 1, Compression::None), 0)
            .unwrap()
            .base_offset,
        8
    );
    assert_eq!(
        log.high_watermark(),
        8,
        "recovered data is durable after open"
    );
}

#[test]
fn a_flipped_byte_in_the_last_batch_truncates_only_that_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let log = FileLog::open(&dir, LogConfig::default()).unwrap();
    let len = fill(&log, 4, 1);
    drop(log);

    let path = segment(&dir, 0, "log");
    let mut bytes = fs::read(&path).unwrap();
    bytes[3 * len + 70] ^= 0xff;
    fs::write(&path, &bytes).unwrap();

    let log = FileLog::open(&dir, LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(fs::metadata(&path).unwrap().len(), (3 * len) as u64);
    assert_eq!(base_offsets(&read_all(&log)), vec![0, 2, 4]);
}

#[test]
fn segments_roll_by_size_with_kafka_file_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let len = batch(2, 1, Compression::None).len() as u64;
    let log = FileLog::open(&dir, small_segments(3 * len)).unwrap();
    fill(&log, 10, 1);
    assert_eq!(log.segment_base_offsets(), vec![0, 6, 12, 18]);
    for base in [0, 6, 12] {
        assert_eq!(
            fs::metadata(segment(&dir, base, "log")).unwrap().len(),
            3 * len
        );
        assert!(
            segment(&dir, base, "index").exists(),
            "sealed segment {base} has an offset index"
        );
        assert!(segment(&dir, base, "timeindex").exists());
    }
    assert!(segment(&dir, 18, "log").exists());
    // A read returns batches of one segment; the next read continues in the next.
    assert_eq!(
        base_offsets(&log.read(2, 1 << 20, false).unwrap().records),
        vec![2, 4]
    );
    assert_eq!(
        base_offsets(&log.read(6, 1 << 20, false).unwrap().records),
        vec![6, 8, 10]
    );
    assert_eq!(base_offsets(&read_all(&log)).len(), 10);
}

#[test]
fn reopening_preserves_batches_offsets_and_the_log_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let len = batch(2, 1, Compression::None).len() as u64;
    let config = small_segments(3 * len);
    let log = FileLog::open(&dir, config.clone()).unwrap();
    for i in 0..10 {
        log.append(batch(2, 1_000 + i, Compression::None), 0)
            .unwrap();
    }
    log.flush().unwrap(); // group commit: the high watermark moves with durability
    assert_eq!(log.delete_records_before(7).unwrap(), 7);
    let before = read_all(&log);
    let segments = log.segment_base_offsets();
    log.close().unwrap();

    let log = FileLog::open(&dir, config).unwrap();
    assert_eq!(log.log_end_offset(), 20);
    assert_eq!(
        log.log_start_offset(),
        7,
        "the log start offset checkpoint survives"
    );
    assert_eq!(log.segment_base_offsets(), segments);
    assert_eq!(read_all(&log), before, "same bytes after reopening");
    // Timestamp lookups work from the persisted indexes of sealed segments.
    assert_eq!(
        log.offset_for_timestamp(1_005).unwrap(),
        Some(TimestampOffset {
            timestamp: 1_005,
            offset: 10
        })
    );
    assert_eq!(
        log.max_timestamp().unwrap(),
        Some(TimestampOffset {
            timestamp: 1_009,
            offset: 18
        })
    );
    assert_eq!(
        log.append(batch(1, 1, Compression::None), 0)
            .unwrap()
            .base_offset,
        20
    );
}

#[test]
fn a_missing_or_corrupt_index_is_rebuilt_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let len = batch(2, 1, Compression::None).len() as u64;
    let config = small_segments(4 * len);
    let log = FileLog::open(&dir, config.clone()).unwrap();
    for i in 0..10 {
        log.append(batch(2, 100 * i, Compression::None), 0).unwrap();
    }
    let before = read_all(&log);
    log.close().unwrap();

    fs::remove_file(segment(&dir, 0, "index")).unwrap();
    fs::write(segment(&dir, 8, "index"), [0u8; 8 * 3 + 5]).unwrap();
    let log = FileLog::open(&dir, config).unwrap();
    assert_eq!(read_all(&log), before);
    assert!(
        segment(&dir, 0, "index").exists(),
        "rebuilt index is persisted"
    );
    assert_eq!(
        fs::metadata(segment(&dir, 8, "index")).unwrap().len() % 8,
        0
    );
    assert_eq!(
        log.offset_for_timestamp(250).unwrap(),
        Some(TimestampOffset {
            timestamp: 300,
            offset: 6
        })
    );
    assert_eq!(
        base_offsets(&log.read(11, 1 << 20, false).unwrap().records),
        vec![10, 12, 14]
    );
}

#[test]
fn retention_by_bytes_deletes_the_oldest_sealed_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let len = batch(2, 1, Compression::None).len() as u64;
    let log = FileLog::open(
        &dir,
        LogConfig {
            retention_bytes: (5 * len) as i64,
            flush: FlushPolicy::Os,
            ..small_segments(2 * len)
        },
    )
    .unwrap();
    let now = now_ms();
    fill(&log, 9, now); // segments of 2 batches: [0,4) [4,8) [8,12) [12,16) [16,18)
    log.run_maintenance(now).unwrap();
    // 9 batches stored; Kafka keeps at least retention.bytes, so 2 segments (4 batches) go.
    assert_eq!(log.segment_base_offsets(), vec![8, 12, 16]);
    assert_eq!(log.log_start_offset(), 8);
    assert_eq!(log.size_bytes(), 5 * len);
    assert!(!segment(&dir, 0, "log").exists() && !segment(&dir, 4, "index").exists());
    assert!(log.read(4, 100, false).is_err());
}

#[test]
fn retention_by_time_deletes_expired_segments_but_never_the_active_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let len = batch(2, 1, Compression::None).len() as u64;
    let log = FileLog::open(
        &dir,
        LogConfig {
            retention_ms: 1_000,
            flush: FlushPolicy::Os,
            ..small_segments(2 * len)
        },
    )
    .unwrap();
    let now = now_ms();
    fill(&log, 4, now - 10_000); // [0,4) [4,8): old
    fill(&log, 3, now); // [8,12) [12,14): fresh
    log.run_maintenance(now).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![8, 12]);
    assert_eq!(log.log_start_offset(), 8);

    log.run_maintenance(now + 60_000).unwrap();
    assert_eq!(
        log.segment_base_offsets(),
        vec![12],
        "the active segment stays"
    );
    assert_eq!(log.log_end_offset(), 14);
}

#[test]
fn segment_ms_rolls_an_aged_active_segment_during_maintenance() {
    let tmp = tempfile::tempdir().unwrap();
    let log = FileLog::open(
        tmp.path().join("t-0"),
        LogConfig {
            segment_ms: 50,
            ..LogConfig::default()
        },
    )
    .unwrap();
    fill(&log, 2, 1);
    log.run_maintenance(now_ms()).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0]);
    log.run_maintenance(now_ms() + 100).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 4]);
}

#[test]
fn truncation_across_segments_reactivates_the_older_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let len = batch(2, 1, Compression::None).len() as u64;
    let config = small_segments(3 * len);
    let log = FileLog::open(&dir, config.clone()).unwrap();
    fill(&log, 8, 1); // [0,6) [6,12) [12,16)
    log.truncate_to(9).unwrap();
    assert_eq!(log.log_end_offset(), 8);
    assert_eq!(log.segment_base_offsets(), vec![0, 6]);
    assert!(!segment(&dir, 12, "log").exists());
    assert_eq!(
        log.append(batch(2, 1, Compression::None), 0)
            .unwrap()
            .base_offset,
        8
    );
    drop(log);
    let log = FileLog::open(&dir, config).unwrap();
    assert_eq!(log.log_end_offset(), 10);
    assert_eq!(base_offsets(&read_all(&log)), vec![0, 2, 4, 6, 8]);
}

#[test]
fn compaction_survives_reopen_and_keeps_offsets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let config = LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..LogConfig::default()
    };
    let log = FileLog::open(&dir, config.clone()).unwrap();
    let now = now_ms();
    for i in 0..20 {
        let key = format!("k{}", i % 3);
        let value = format!("v{i}");
        let b = batch_of(
            &[(Some(key.as_str()), Some(value.as_str()), now)],
            Compression::Zstd,
        );
        log.append(b, 0).unwrap();
        if i % 7 == 6 {
            log.roll().unwrap();
        }
    }
    log.roll().unwrap();
    // Compaction only cleans below the high watermark, which group commit moves at fsync.
    log.flush().unwrap();
    log.run_maintenance(now).unwrap();
    let expect = vec![
        (17, Some("k2".to_string()), Some("v17".to_string())),
        (18, Some("k0".to_string()), Some("v18".to_string())),
        (19, Some("k1".to_string()), Some("v19".to_string())),
    ];
    assert_eq!(kv(read_all(&log)), expect);
    assert!(fs::read_dir(&dir).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".cleaned")));
    log.close().unwrap();

    let log = FileLog::open(&dir, config).unwrap();
    assert_eq!(kv(read_all(&log)), expect);
    assert_eq!(log.log_end_offset(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_shares_fsyncs_between_concurrent_producers() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Arc::new(FileLog::open(tmp.path().join("t-0"), LogConfig::default()).unwrap());
    let before = log.fsync_count();
    const PRODUCERS: usize = 64;
    let tasks: Vec<_> = (0..PRODUCERS)
        .map(|_| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let info = log.append(batch(2, 1, Compression::None), 0).unwrap();
                log.wait_durable(info.last_offset).await.unwrap();
                assert!(log.high_watermark() > info.last_offset);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let fsyncs = log.fsync_count() - before;
    assert_eq!(log.high_watermark(), 2 * PRODUCERS as i64);
    assert!(
        fsyncs <= (PRODUCERS / 4) as u64,
        "{PRODUCERS} concurrent producers needed {fsyncs} fsyncs"
    );
    assert!(fsyncs >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_holds_the_high_watermark_until_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let log = FileLog::open(tmp.path().join("t-0"), LogConfig::default()).unwrap();
    let info = log.append(batch(2, 1, Compression::None), 0).unwrap();
    assert_eq!(log.high_watermark(), 0, "not durable yet");
    assert!(log.read(0, 1 << 20, true).unwrap().records.is_empty());
    log.wait_durable(info.last_offset).await.unwrap();
    assert_eq!(log.high_watermark(), 2);

    let os = FileLog::open(
        tmp.path().join("t-1"),
        LogConfig {
            flush: FlushPolicy::Os,
            ..LogConfig::default()
        },
    )
    .unwrap();
    let before = os.fsync_count();
    os.append(batch(2, 1, Compression::None), 0).unwrap();
    os.wait_durable(1).await.unwrap();
    assert_eq!(os.high_watermark(), 2, "os policy acknowledges at append");
    assert_eq!(
        os.fsync_count(),
        before,
        "os policy does not fsync per append"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_opens_lists_flushes_and_removes_partitions() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let manager = Arc::new(
        LogManager::open(
            root.clone(),
            FlushPolicy::Interval(Duration::from_millis(10)),
        )
        .unwrap(),
    );
    let a = manager
        .get_or_create("orders-eu", 0, LogConfig::default())
        .unwrap();
    manager
        .get_or_create("orders-eu", 1, LogConfig::default())
        .unwrap();
    manager
        .get_or_create("audit", 0, LogConfig::default())
        .unwrap();
    assert!(Arc::ptr_eq(&a, &manager.get("orders-eu", 0).unwrap()));
    assert!(manager.get("missing", 0).is_none());

    let background = manager.spawn_background(Duration::from_secs(3600));
    let fsyncs = manager.get_file_log("orders-eu", 0).unwrap().fsync_count();
    a.append(batch(1, 1, Compression::None), 0).unwrap();
    assert_eq!(
        a.high_watermark(),
        1,
        "interval policy acknowledges at append"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        manager.get_file_log("orders-eu", 0).unwrap().fsync_count() > fsyncs,
        "the background flusher fsynced"
    );

    manager.remove_partition("orders-eu", 1).unwrap();
    assert!(manager.get("orders-eu", 1).is_none());
    assert!(!root.join("orders-eu-1").exists());
    assert!(
        root.join("orders-eu-0").exists(),
        "only the one partition goes"
    );
    manager.remove_partition("orders-eu", 1).unwrap();

    manager.remove_topic("orders-eu").unwrap();
    assert!(manager.get("orders-eu", 0).is_none());
    assert!(!root.join("orders-eu-0").exists());
    manager.close_all().unwrap();
    background.abort();

    let reopened = LogManager::open(root, FlushPolicy::Group).unwrap();
    assert_eq!(
        reopened.existing_partitions(),
        vec![("audit".to_string(), 0)]
    );
}

/// Open and aborted transactions survive a restart, whether it replays from a snapshot taken
/// at a roll, from the snapshot of a clean close, or (a crash) from the log alone.
#[test]
fn transaction_state_is_rebuilt_on_open() {
    use chronik_log::{AbortedTxn, ControlKind};
    use support::{marker, transactional_batch};

    for (case, roll_between, clean_close) in [
        ("crash, no snapshot", false, false),
        ("snapshot at roll, crash", true, false),
        ("clean close", true, true),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        let config = LogConfig {
            flush: FlushPolicy::Os,
            ..LogConfig::default()
        };
        let log = FileLog::open(&dir, config.clone()).unwrap();
        log.append(transactional_batch(2, 1, 0, 0), 0).unwrap(); // 0..=1
        log.append(marker(1, 0, ControlKind::Abort), 0).unwrap(); // 2
        if roll_between {
            log.roll().unwrap();
        }
        log.append(transactional_batch(1, 2, 0, 0), 0).unwrap(); // 3, stays open
        log.append(batch(1, 1, Compression::None), 0).unwrap(); // 4
        if clean_close {
            log.close().unwrap();
        } else {
            log.flush().unwrap();
            drop(log);
        }

        let log = FileLog::open(&dir, config).unwrap();
        assert_eq!(log.last_stable_offset(), 3, "{case}");
        let read = log.read_committed(0, 1 << 20).unwrap();
        assert_eq!(
            read.aborted_transactions,
            [AbortedTxn {
                producer_id: 1,
                first_offset: 0,
                last_offset: 2
            }],
            "{case}"
        );
        log.append(marker(2, 0, ControlKind::Commit), 0).unwrap();
        assert_eq!(log.last_stable_offset(), 6, "{case}");
    }
}

#[test]
fn the_leader_epoch_checkpoint_survives_restarts_and_follows_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let log = FileLog::open(&dir, LogConfig::default()).unwrap();
    let b = batch(2, 1, Compression::None);
    log.append(b.clone(), 1).unwrap();
    log.append(b.clone(), 4).unwrap();
    log.append(b.clone(), 4).unwrap();
    log.assign_leader_epoch(6).unwrap();
    assert_eq!(
        fs::read_to_string(dir.join("leader-epoch-checkpoint")).unwrap(),
        "0\n3\n1 0\n4 2\n6 6\n"
    );
    drop(log); // a crash: no close
               // Cut the last batch: the epochs that started there go with it.
    let file = OpenOptions::new()
        .write(true)
        .open(segment(&dir, 0, "log"))
        .unwrap();
    file.set_len((2 * b.len()) as u64).unwrap();
    drop(file);
    let log = FileLog::open(&dir, LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    let epochs = log.leader_epochs();
    assert_eq!(epochs.end_offset_for(4, 4), (4, 4));
    assert_eq!(epochs.end_offset_for(1, 4), (1, 2));
    assert_eq!(epochs.latest().unwrap().epoch, 4);
    log.truncate_to(2).unwrap();
    drop(log);
    let log = FileLog::open(&dir, LogConfig::default()).unwrap();
    assert_eq!(log.leader_epochs().latest().unwrap().epoch, 1);
}

/// A replicated partition's high watermark survives a restart (clean or not) through its
/// checkpoint, so a restarted replica does not count its unreplicated tail as committed; a log
/// back on the single-replica path drops the checkpoint and reopens at its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_high_watermark_survives_restarts_through_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("orders-0");
    let log = FileLog::open(&dir, LogConfig::default()).unwrap();
    log.set_auto_high_watermark(false);
    let info = log.append(batch(5, 1_000, Compression::None), 0).unwrap();
    log.wait_durable(info.last_offset).await.unwrap();
    log.set_high_watermark(2).unwrap();
    // A crash after the periodic checkpoint: no close.
    log.checkpoint_high_watermark().unwrap();
    drop(log);
    let log = FileLog::open(&dir, LogConfig::default()).unwrap();
    assert_eq!((log.log_end_offset(), log.high_watermark()), (5, 2));
    // Still replicated: a durable write does not move the high watermark by itself.
    let info = log.append(batch(1, 2_000, Compression::None), 0).unwrap();
    log.wait_durable(info.last_offset).await.unwrap();
    assert_eq!(log.high_watermark(), 2);
    log.set_high_watermark(4).unwrap();
    log.close().unwrap();
    let log = FileLog::open(&dir, LogConfig::default()).unwrap();
    assert_eq!(log.high_watermark(), 4, "a clean close checkpoints");
    // The partition shrinks to this replica: everything durable is committed, and stays so.
    log.set_auto_high_watermark(true);
    assert_eq!(log.high_watermark(), 6);
    log.close().unwrap();
    assert!(!dir.join("replication-offset").exists());
    let log = FileLog::open(&dir, LogConfig::default()).unwrap();
    assert_eq!(log.high_watermark(), 6);
    let info = log.append(batch(1, 3_000, Compression::None), 0).unwrap();
    log.wait_durable(info.last_offset).await.unwrap();
    assert_eq!(log.high_watermark(), 7);
}

/// A follower's large appends skip the page cache for their whole blocks (direct I/O) and write
/// the partial blocks around them through it: the follower reads the leader's exact bytes at
/// once, and again after a restart.
#[test]
fn large_replicated_appends_are_written_directly_and_read_back_exactly() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    // Beside the build rather than in /tmp, which may be a tmpfs without direct I/O.
    let follower_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let leader = FileLog::open(leader_dir.path(), LogConfig::default()).expect("open");
    for n in [3, 5_000, 7, 9_000, 5_000] {
        leader
            .append(batch(n, now_ms(), Compression::None), 1)
            .expect("append");
    }
    let stored = read_all(&leader);
    let first_len = headers(&stored)[0].batch_length as usize + 12;
    let follower = FileLog::open(follower_dir.path(), LogConfig::default()).expect("open");
    // A small append first, so the large one starts mid-block.
    follower
        .append_replicated(stored.slice(..first_len))
        .expect("append small");
    follower
        .append_replicated(stored.slice(first_len..))
        .expect("append large");
    if follower.direct_write_bytes() == 0 {
        // Only a filesystem without direct I/O may leave it all to the page cache.
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::OpenOptionsExt;
            let probe = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(segment(follower_dir.path(), 0, "log"));
            assert!(probe.is_err(), "direct I/O available but not used");
        }
    } else {
        assert!(follower.direct_write_bytes() >= 256 * 1024);
    }
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert!(read_all(&follower) == stored, "follower bytes differ");
    follower.flush().expect("flush");
    drop(follower);
    let reopened = FileLog::open(follower_dir.path(), LogConfig::default()).expect("reopen");
    assert_eq!(reopened.log_end_offset(), leader.log_end_offset());
    assert!(read_all(&reopened) == stored, "bytes differ after reopen");
    let file = segment(follower_dir.path(), 0, "log");
    assert_eq!(fs::metadata(file).expect("stat").len(), stored.len() as u64);
}

/// A leader answers reads of its newest appends from memory; every read must equal what the
/// file gives for the same request (the same log reopened has nothing in memory).
#[test]
fn reads_from_recent_appends_equal_reads_from_the_file() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let config = LogConfig {
        segment_bytes: 3 << 20,
        flush: FlushPolicy::Os,
        ..LogConfig::default()
    };
    let log = FileLog::open(dir.path(), config.clone()).expect("open");
    // Small and large (direct) appends, across a roll and a truncation.
    for n in [3, 5_000, 7, 9_000, 1, 5_000, 12_000, 2, 12_000, 12_000] {
        log.append(batch(n, now_ms(), Compression::None), 1)
            .expect("append");
    }
    log.truncate_to(log.log_end_offset() - 18_000)
        .expect("truncate");
    for n in [4, 6_000] {
        log.append(batch(n, now_ms(), Compression::None), 2)
            .expect("append");
    }
    let end = log.log_end_offset();
    let probes: Vec<(i64, usize)> = (0..end)
        .step_by(997)
        .chain([end - 1, end - 4, 0])
        .flat_map(|o| [(o, 1), (o, 300_000), (o, 1 << 20), (o, 8 << 20)])
        .collect();
    let from_memory: Vec<Bytes> = probes
        .iter()
        .map(|&(o, max)| log.read(o, max, false).expect("read").records)
        .collect();
    // The newest segment's reads came from memory, the older one's from its file.
    let from_memory_count = log.memory_read_count();
    assert!(from_memory_count > 0 && from_memory_count < probes.len() as u64);
    log.flush().expect("flush");
    drop(log);
    let reopened = FileLog::open(dir.path(), config).expect("reopen");
    assert_eq!(reopened.memory_read_count(), 0);
    for ((o, max), got) in probes.iter().zip(from_memory) {
        let want = reopened.read(*o, *max, false).expect("read").records;
        assert!(
            got == want,
            "read at {o} max {max}: {} vs {} bytes",
            got.len(),
            want.len()
        );
    }
}

/// A leader that becomes a follower appends what it fetches after its own newest appends; its
/// reads then come from the file, never from the in-memory chunks that stop short of it.
#[test]
fn a_former_leader_reads_what_it_replicated_after_its_own_appends() {
    let source_dir = tempfile::tempdir().expect("tempdir");
    let dir = tempfile::tempdir().expect("tempdir");
    let source = FileLog::open(source_dir.path(), LogConfig::default()).expect("open");
    source
        .append(batch(3, now_ms(), Compression::None), 1)
        .expect("append");
    source
        .append(batch(4, now_ms(), Compression::None), 2)
        .expect("append");
    let log = FileLog::open(dir.path(), LogConfig::default()).expect("open");
    log.append(batch(3, now_ms(), Compression::None), 1)
        .expect("append");
    assert_eq!(log.read(0, 1 << 20, false).expect("read").records.len(), {
        source.read(0, 1, false).expect("read").records.len()
    });
    assert_eq!(log.memory_read_count(), 1);
    let replicated = source.read(3, 1 << 20, false).expect("read").records;
    log.append_replicated(replicated.clone())
        .expect("append replicated");
    assert!(log.read(3, 1 << 20, false).expect("read").records == replicated);
    assert_eq!(log.memory_read_count(), 1, "read from the file");
}
