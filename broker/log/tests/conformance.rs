//! The contract of [`PartitionLog`], run against every implementation: [`FileLog`] in a temporary
//! directory and [`MemoryLog`]. A new implementation adds one factory and one line to the macro.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chronik_log::{
    AbortedTxn, CleanupPolicy, ControlKind, FileLog, LogConfig, LogError, MemoryLog, PartitionLog,
    TimestampOffset,
};
use kafka_protocol::records::Compression;
use support::{
    base_offsets, batch, batch_of, concat, headers, idempotent_batch, kv, marker, now_ms,
    transactional_batch,
};

/// A log under test and whatever must live as long as it.
struct Harness {
    log: Arc<dyn PartitionLog>,
    _dir: Option<tempfile::TempDir>,
}

type Factory = fn(LogConfig) -> Harness;

fn file_log(config: LogConfig) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = FileLog::open(dir.path().join("topic-0"), config).expect("open file log");
    Harness {
        log: Arc::new(log),
        _dir: Some(dir),
    }
}

fn memory_log(config: LogConfig) -> Harness {
    Harness {
        log: Arc::new(MemoryLog::new(config)),
        _dir: None,
    }
}

/// Everything below the high watermark, fetched as a consumer would (a read may stop at a
/// segment boundary).
fn read_all(log: &dyn PartitionLog) -> Bytes {
    let mut out = BytesMut::new();
    let mut offset = log.log_start_offset();
    loop {
        let got = log.read(offset, 1 << 20, true).expect("read").records;
        let Some(last) = headers(&got).last().copied() else {
            return out.freeze();
        };
        out.extend_from_slice(&got);
        offset = last.next_offset();
    }
}

/// Append and wait until durable (the high watermark covers it).
async fn produce(log: &dyn PartitionLog, records: Bytes) -> chronik_log::AppendInfo {
    let info = log.append(records, 7).expect("append");
    log.wait_durable(info.last_offset).await.expect("durable");
    info
}

async fn append_read_round_trip_is_byte_exact_except_stamped_fields(make: Factory) {
    let h = make(LogConfig::default());
    let plain = batch(3, 1_000, Compression::None);
    let packed = batch(4, 2_000, Compression::Lz4);
    let zipped = batch(2, 3_000, Compression::Gzip);
    let sent = concat(&[plain, packed, zipped]);
    let info = produce(&*h.log, sent.clone()).await;
    assert_eq!((info.base_offset, info.last_offset), (0, 8));
    assert_eq!(info.max_timestamp, 3_000);

    let got = h.log.read(0, 1 << 20, true).expect("read").records;
    assert_eq!(
        got.len(),
        sent.len(),
        "stored size differs from produced size"
    );
    let mut expected = BytesMut::from(&sent[..]);
    let mut at = 0;
    for (base, hd) in [(0i64, 0), (3, 1), (7, 2)].map(|(b, i)| (b, headers(&sent)[i])) {
        expected[at..at + 8].copy_from_slice(&base.to_be_bytes());
        expected[at + 12..at + 16].copy_from_slice(&7i32.to_be_bytes());
        at += hd.total_len();
    }
    assert_eq!(
        got,
        expected.freeze(),
        "only base offset and leader epoch may change"
    );
    let records = kv(got);
    assert_eq!(records.len(), 9);
    assert_eq!(
        records.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..9).collect::<Vec<_>>()
    );
    assert_eq!(records[4].1.as_deref(), Some("k1"));
}

async fn offsets_are_contiguous_across_batches_and_appends(make: Factory) {
    let h = make(LogConfig::default());
    let first = produce(
        &*h.log,
        concat(&[
            batch(2, 1, Compression::None),
            batch(3, 1, Compression::Zstd),
            batch(1, 1, Compression::None),
        ]),
    )
    .await;
    assert_eq!((first.base_offset, first.last_offset), (0, 5));
    let second = produce(&*h.log, batch(2, 1, Compression::Snappy)).await;
    assert_eq!((second.base_offset, second.last_offset), (6, 7));
    assert_eq!(h.log.log_end_offset(), 8);

    // Reading from inside a batch returns that whole batch first.
    let got = h.log.read(3, 1 << 20, true).expect("read").records;
    assert_eq!(base_offsets(&got), vec![2, 5, 6]);
}

async fn corrupt_append_is_rejected_whole(make: Factory) {
    let h = make(LogConfig::default());
    let good = batch(2, 1, Compression::None);
    let mut bad = BytesMut::from(&batch(2, 1, Compression::None)[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    let blob = concat(&[good.clone(), bad.freeze()]);
    assert!(
        matches!(h.log.append(blob, 0), Err(LogError::CorruptBatch(_))),
        "a CRC flip in the second batch must reject the append"
    );

    let mut partial = BytesMut::from(&concat(&[good.clone(), good.clone()])[..]);
    partial.truncate(partial.len() - 5);
    assert!(matches!(
        h.log.append(partial.freeze(), 0),
        Err(LogError::CorruptBatch(_))
    ));

    let mut magic = BytesMut::from(&good[..]);
    magic[16] = 1;
    assert!(matches!(
        h.log.append(magic.freeze(), 0),
        Err(LogError::CorruptBatch(_))
    ));
    assert!(h.log.append(Bytes::new(), 0).is_err());

    assert_eq!(
        h.log.log_end_offset(),
        0,
        "nothing of a rejected append is stored"
    );
    assert_eq!(h.log.size_bytes(), 0);
    assert!(h
        .log
        .read(0, 1 << 20, false)
        .expect("read")
        .records
        .is_empty());
}

async fn oversized_batch_is_rejected(make: Factory) {
    let h = make(LogConfig {
        max_message_bytes: 200,
        ..LogConfig::default()
    });
    let small = batch(1, 1, Compression::None);
    let big = batch(10, 1, Compression::None);
    assert!(small.len() <= 200 && big.len() > 200);
    match h.log.append(concat(&[small, big.clone()]), 0) {
        Err(LogError::BatchTooLarge { size, max }) => assert_eq!((size, max), (big.len(), 200)),
        other => panic!("expected BatchTooLarge, got {other:?}"),
    }
    assert_eq!(h.log.log_end_offset(), 0);
}

async fn read_respects_max_bytes_but_returns_the_first_batch_whole(make: Factory) {
    let h = make(LogConfig::default());
    let b = batch(3, 1, Compression::None);
    for _ in 0..4 {
        produce(&*h.log, b.clone()).await;
    }
    let one = h.log.read(0, 1, true).expect("read").records;
    assert_eq!(
        base_offsets(&one),
        vec![0],
        "first batch whole even above max_bytes"
    );
    let two = h.log.read(0, 2 * b.len() + 10, true).expect("read").records;
    assert_eq!(base_offsets(&two), vec![0, 3]);
    let all = h.log.read(4, 1 << 20, true).expect("read").records;
    assert_eq!(base_offsets(&all), vec![3, 6, 9]);
}

async fn reads_stop_at_the_high_watermark(make: Factory) {
    let h = make(LogConfig::default());
    produce(&*h.log, batch(2, 1, Compression::None)).await;
    produce(&*h.log, batch(2, 1, Compression::None)).await;
    assert_eq!(h.log.high_watermark(), 4);
    h.log.set_high_watermark(2).expect("set hw");

    let limited = h.log.read(0, 1 << 20, true).expect("read");
    assert_eq!(base_offsets(&limited.records), vec![0]);
    assert_eq!((limited.high_watermark, limited.log_end_offset), (2, 4));
    assert!(h
        .log
        .read(2, 1 << 20, true)
        .expect("read")
        .records
        .is_empty());
    let unlimited = h.log.read(0, 1 << 20, false).expect("read").records;
    assert_eq!(base_offsets(&unlimited), vec![0, 2]);

    assert!(matches!(
        h.log.set_high_watermark(5),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

async fn reads_outside_the_log_are_out_of_range(make: Factory) {
    let h = make(LogConfig::default());
    produce(&*h.log, batch(2, 1, Compression::None)).await;
    assert!(matches!(
        h.log.read(3, 1 << 20, false),
        Err(LogError::OffsetOutOfRange {
            offset: 3,
            start: 0,
            end: 2
        })
    ));
    assert!(matches!(
        h.log.read(-1, 1 << 20, false),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    let at_end = h
        .log
        .read(2, 1 << 20, true)
        .expect("reading at the log end is fine");
    assert!(at_end.records.is_empty());
    assert_eq!(at_end.log_end_offset, 2);
}

async fn truncate_to_removes_whole_batches(make: Factory) {
    let h = make(LogConfig::default());
    for _ in 0..3 {
        produce(&*h.log, batch(2, 1, Compression::None)).await;
    }
    // Offset 3 sits inside the batch [2, 3]: that batch goes whole.
    h.log.truncate_to(3).expect("truncate");
    assert_eq!(h.log.log_end_offset(), 2);
    assert_eq!(h.log.high_watermark(), 2);
    assert_eq!(
        base_offsets(&h.log.read(0, 1 << 20, false).expect("read").records),
        vec![0]
    );
    let next = produce(&*h.log, batch(1, 1, Compression::None)).await;
    assert_eq!(
        next.base_offset, 2,
        "appends continue from the truncation point"
    );
    h.log
        .truncate_to(10)
        .expect("truncating past the end is a no-op");
    assert_eq!(h.log.log_end_offset(), 3);
}

async fn delete_records_before_moves_the_log_start(make: Factory) {
    let h = make(LogConfig::default());
    for _ in 0..3 {
        produce(&*h.log, batch(2, 1, Compression::None)).await;
    }
    assert_eq!(h.log.delete_records_before(3).expect("delete"), 3);
    assert_eq!(h.log.log_start_offset(), 3);
    assert!(matches!(
        h.log.read(2, 1 << 20, false),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    let from_start = h.log.read(3, 1 << 20, true).expect("read");
    assert_eq!(from_start.log_start_offset, 3);
    assert_eq!(base_offsets(&from_start.records), vec![2, 4]);
    assert_eq!(h.log.delete_records_before(1).expect("lower is a no-op"), 3);
    assert!(matches!(
        h.log.delete_records_before(7),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    let info = produce(&*h.log, batch(1, 1, Compression::None)).await;
    assert_eq!(info.log_start_offset, 3);
}

async fn timestamp_lookups_find_the_first_record_at_or_after(make: Factory) {
    let h = make(LogConfig {
        index_interval_bytes: 1,
        ..LogConfig::default()
    });
    let recs = |ts: &[i64]| -> Bytes {
        let r: Vec<_> = ts.iter().map(|&t| (Some("k"), Some("v"), t)).collect();
        batch_of(&r, Compression::Zstd)
    };
    assert_eq!(h.log.offset_for_timestamp(0).expect("lookup"), None);
    assert_eq!(h.log.max_timestamp().expect("max"), None);
    produce(&*h.log, recs(&[100, 110])).await; // offsets 0, 1
    produce(&*h.log, recs(&[200, 250, 240])).await; // offsets 2, 3, 4
    produce(&*h.log, recs(&[150])).await; // offset 5
    let at = |t| h.log.offset_for_timestamp(t).expect("lookup");
    assert_eq!(
        at(0),
        Some(TimestampOffset {
            timestamp: 100,
            offset: 0
        })
    );
    assert_eq!(
        at(105),
        Some(TimestampOffset {
            timestamp: 110,
            offset: 1
        })
    );
    assert_eq!(
        at(111),
        Some(TimestampOffset {
            timestamp: 200,
            offset: 2
        })
    );
    assert_eq!(
        at(245),
        Some(TimestampOffset {
            timestamp: 250,
            offset: 3
        })
    );
    assert_eq!(at(251), None);
    assert_eq!(
        h.log.max_timestamp().expect("max"),
        Some(TimestampOffset {
            timestamp: 250,
            offset: 3
        })
    );
    h.log.delete_records_before(3).expect("delete");
    assert_eq!(
        at(0),
        Some(TimestampOffset {
            timestamp: 250,
            offset: 3
        }),
        "nothing below the log start"
    );
}

async fn subscribers_see_the_high_watermark_move(make: Factory) {
    let h = make(LogConfig::default());
    let mut rx = h.log.subscribe();
    assert_eq!(*rx.borrow_and_update(), 0);
    let info = h
        .log
        .append(batch(3, 1, Compression::None), 0)
        .expect("append");
    h.log.wait_durable(info.last_offset).await.expect("durable");
    tokio::time::timeout(Duration::from_secs(2), rx.changed())
        .await
        .expect("notified in time")
        .expect("sender alive");
    assert_eq!(*rx.borrow(), 3);
}

async fn compaction_keeps_the_latest_value_per_key(make: Factory) {
    let now = now_ms();
    let h = make(LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        segment_ms: 0,
        delete_retention_ms: 60_000,
        ..LogConfig::default()
    });
    for (k, v) in [
        ("k1", Some("a")),
        ("k2", Some("b")),
        ("k1", Some("c")),
        ("k2", None),
    ] {
        produce(&*h.log, batch_of(&[(Some(k), v, now)], Compression::None)).await;
    }
    // Offsets 4, 5, 6: supersedes k1=c, and k3=x inside the same batch, which is rewritten.
    let mixed = batch_of(
        &[
            (Some("k3"), Some("x"), now),
            (Some("k1"), Some("d"), now),
            (Some("k3"), Some("y"), now),
        ],
        Compression::Gzip,
    );
    produce(&*h.log, mixed).await;
    let keyless = batch_of(
        &[(Some("k"), Some("v"), now), (None, Some("v"), now)],
        Compression::None,
    );
    match h.log.append(keyless, 0) {
        Err(LogError::InvalidRecords { indexes, .. }) => assert_eq!(indexes, vec![1]),
        other => panic!("expected InvalidRecords for the null key, got {other:?}"),
    }

    let later = now_ms();
    h.log.run_maintenance(later).expect("maintenance");
    let kept = kv(read_all(&*h.log));
    assert_eq!(
        kept,
        vec![
            (3, Some("k2".into()), None),
            (5, Some("k1".into()), Some("d".into())),
            (6, Some("k3".into()), Some("y".into())),
        ],
        "latest value per key with original offsets, tombstone still visible"
    );

    h.log
        .run_maintenance(later + 60_001)
        .expect("maintenance after delete.retention.ms");
    let kept = kv(read_all(&*h.log));
    assert_eq!(
        kept,
        vec![
            (5, Some("k1".into()), Some("d".into())),
            (6, Some("k3".into()), Some("y".into()))
        ],
        "tombstone removed once delete.retention.ms passed"
    );
    assert_eq!(
        h.log.log_end_offset(),
        7,
        "compaction never moves the log end"
    );
    let next = produce(
        &*h.log,
        batch_of(&[(Some("k9"), Some("z"), now)], Compression::None),
    )
    .await;
    assert_eq!(next.base_offset, 7);
}

async fn a_closed_log_refuses_work(make: Factory) {
    let h = make(LogConfig::default());
    produce(&*h.log, batch(1, 1, Compression::None)).await;
    h.log.close().expect("close");
    assert!(matches!(
        h.log.append(batch(1, 1, Compression::None), 0),
        Err(LogError::Closed)
    ));
    assert!(matches!(h.log.read(0, 100, false), Err(LogError::Closed)));
}

async fn a_retried_batch_is_stored_once_and_answers_the_original_offsets(make: Factory) {
    let h = make(LogConfig::default());
    produce(&*h.log, batch(2, 1, Compression::None)).await;
    let first = idempotent_batch(3, 42, 0, 0);
    let stored = produce(&*h.log, first.clone()).await;
    assert_eq!((stored.base_offset, stored.last_offset), (2, 4));
    let next = produce(&*h.log, idempotent_batch(2, 42, 0, 3)).await;
    assert_eq!(next.base_offset, 5);

    for (retry, original) in [(first, (2, 4)), (idempotent_batch(2, 42, 0, 3), (5, 6))] {
        match h.log.append(retry, 0) {
            Err(LogError::DuplicateSequence {
                producer_id: 42,
                base_offset,
                last_offset,
            }) => assert_eq!((base_offset, last_offset), original),
            other => panic!("expected a duplicate of {original:?}, got {other:?}"),
        }
    }
    assert_eq!(h.log.log_end_offset(), 7, "a duplicate stores nothing");
    assert_eq!(kv(read_all(&*h.log)).len(), 7);
}

async fn a_sequence_gap_is_out_of_order_and_stores_nothing(make: Factory) {
    let h = make(LogConfig::default());
    produce(&*h.log, idempotent_batch(2, 7, 0, 0)).await;
    let gap = h.log.append(idempotent_batch(1, 7, 0, 3), 0);
    assert!(
        matches!(
            gap,
            Err(LogError::OutOfOrderSequence { producer_id: 7, .. })
        ),
        "sequence 3 after 0..=1 must be refused, got {gap:?}"
    );
    assert_eq!(h.log.log_end_offset(), 2);
    // The producer continues where it left off; other producers are independent.
    produce(&*h.log, idempotent_batch(1, 7, 0, 2)).await;
    produce(&*h.log, idempotent_batch(1, 8, 0, 0)).await;
    assert_eq!(h.log.log_end_offset(), 4);
}

async fn an_older_producer_epoch_is_fenced(make: Factory) {
    let h = make(LogConfig::default());
    produce(&*h.log, idempotent_batch(1, 5, 0, 0)).await;
    let new_epoch_mid_sequence = h.log.append(idempotent_batch(1, 5, 1, 9), 0);
    assert!(
        matches!(
            new_epoch_mid_sequence,
            Err(LogError::OutOfOrderSequence { .. })
        ),
        "a new epoch must start at sequence 0, got {new_epoch_mid_sequence:?}"
    );
    produce(&*h.log, idempotent_batch(1, 5, 1, 0)).await;
    let zombie = h.log.append(idempotent_batch(1, 5, 0, 1), 0);
    assert!(
        matches!(
            zombie,
            Err(LogError::InvalidProducerEpoch {
                producer_id: 5,
                epoch: 0,
                current: 1
            })
        ),
        "epoch 0 after epoch 1 must be fenced, got {zombie:?}"
    );
    assert_eq!(h.log.log_end_offset(), 2);
}

async fn producer_state_outlives_deleted_records_and_follows_truncation(make: Factory) {
    let h = make(LogConfig::default());
    let first = idempotent_batch(2, 3, 0, 0);
    produce(&*h.log, first.clone()).await;
    produce(&*h.log, idempotent_batch(2, 3, 0, 2)).await;
    let third = idempotent_batch(2, 3, 0, 4);
    produce(&*h.log, third.clone()).await;

    // Truncation removes the third batch: its resend is new data, not a duplicate.
    h.log.truncate_to(4).expect("truncate");
    let resent = produce(&*h.log, third.clone()).await;
    assert_eq!(resent.base_offset, 4);

    // Deleting the records does not forget the producer (Kafka keeps it until it expires).
    h.log.delete_records_before(6).expect("delete records");
    assert!(matches!(
        h.log.append(third, 0),
        Err(LogError::DuplicateSequence { base_offset: 4, .. })
    ));
    assert!(matches!(
        h.log.append(first, 0),
        Err(LogError::DuplicateSequence { base_offset: 0, .. })
    ));
    // A day without writes and the producer is forgotten: any sequence is accepted again.
    h.log
        .run_maintenance(now_ms() + chronik_log::PRODUCER_ID_EXPIRATION_MS + 1)
        .expect("maintenance");
    produce(&*h.log, idempotent_batch(1, 3, 0, 100)).await;
}

/// Offsets of the batches a read_committed consumer would get from `offset`.
fn committed_batches(log: &dyn PartitionLog, offset: i64) -> (Vec<i64>, Vec<AbortedTxn>) {
    let read = log.read_committed(offset, 1 << 20).expect("read committed");
    (base_offsets(&read.records), read.aborted_transactions)
}

async fn the_last_stable_offset_holds_at_the_oldest_open_transaction(make: Factory) {
    let h = make(LogConfig::default());
    let log = &*h.log;
    produce(log, batch(2, 1, Compression::None)).await; // 0..=1
    produce(log, transactional_batch(2, 10, 0, 0)).await; // 2..=3, opens pid 10
    produce(log, transactional_batch(1, 11, 0, 0)).await; // 4, opens pid 11
    produce(log, batch(1, 1, Compression::None)).await; // 5
    assert_eq!(log.high_watermark(), 6);
    assert_eq!(log.last_stable_offset(), 2);
    // read_uncommitted sees everything; read_committed stops at the LSO.
    assert_eq!(
        base_offsets(&log.read(0, 1 << 20, true).unwrap().records),
        [0, 2, 4, 5]
    );
    assert_eq!(committed_batches(log, 0).0, [0]);
    assert_eq!(committed_batches(log, 2).0, Vec::<i64>::new());
    assert_eq!(
        log.read_committed(0, 1 << 20).unwrap().last_stable_offset,
        2
    );

    // pid 10 commits (marker at 6): the LSO moves to pid 11's transaction.
    produce(log, marker(10, 0, ControlKind::Commit)).await;
    assert_eq!(log.last_stable_offset(), 4);
    assert_eq!(committed_batches(log, 0), (vec![0, 2], vec![]));
    // pid 11 aborts (marker at 7): nothing is open, the LSO is the high watermark.
    produce(log, marker(11, 0, ControlKind::Abort)).await;
    assert_eq!(log.last_stable_offset(), log.high_watermark());
    let (batches, aborted) = committed_batches(log, 0);
    assert_eq!(batches, [0, 2, 4, 5, 6, 7]);
    assert_eq!(
        aborted,
        [AbortedTxn {
            producer_id: 11,
            first_offset: 4,
            last_offset: 7
        }]
    );
    // A read starting after the abort marker needs no aborted transactions.
    assert_eq!(committed_batches(log, 8).1, []);
    // A later transaction of the same producer opens anew.
    produce(log, transactional_batch(1, 10, 0, 2)).await;
    assert_eq!(log.last_stable_offset(), 8);
}

async fn aborted_transactions_listed_are_those_overlapping_the_read(make: Factory) {
    let h = make(LogConfig::default());
    let log = &*h.log;
    produce(log, transactional_batch(1, 1, 0, 0)).await; // 0
    produce(log, marker(1, 0, ControlKind::Abort)).await; // 1
    produce(log, batch(3, 1, Compression::None)).await; // 2..=4
    produce(log, transactional_batch(1, 2, 0, 0)).await; // 5
    produce(log, transactional_batch(1, 1, 0, 1)).await; // 6
    produce(log, marker(2, 0, ControlKind::Abort)).await; // 7
    produce(log, marker(1, 0, ControlKind::Commit)).await; // 8
    let abort = |pid, first, last| AbortedTxn {
        producer_id: pid,
        first_offset: first,
        last_offset: last,
    };
    assert_eq!(
        committed_batches(log, 0).1,
        [abort(1, 0, 1), abort(2, 5, 7)]
    );
    assert_eq!(committed_batches(log, 2).1, [abort(2, 5, 7)]);
    // A read that returns only offsets 2..=4 needs no entry for the abort at 5..=7.
    let small = log.read_committed(2, 1).unwrap();
    assert_eq!(base_offsets(&small.records), [2]);
    assert_eq!(small.aborted_transactions, []);
}

async fn transactional_writes_follow_the_producer_epoch_and_transaction(make: Factory) {
    let h = make(LogConfig::default());
    let log = &*h.log;
    produce(log, transactional_batch(2, 3, 1, 0)).await;
    // A non-transactional batch of a producer in a transaction does not belong.
    assert!(matches!(
        log.append(idempotent_batch(1, 3, 1, 2), 0),
        Err(LogError::InvalidTxnState { producer_id: 3, .. })
    ));
    // A marker of an older epoch is a zombie coordinator's.
    assert!(matches!(
        log.append(marker(3, 0, ControlKind::Commit), 0),
        Err(LogError::InvalidProducerEpoch { .. })
    ));
    // A fencing abort carries a bumped epoch; the old epoch is fenced afterwards.
    produce(log, marker(3, 2, ControlKind::Abort)).await;
    assert_eq!(log.last_stable_offset(), log.high_watermark());
    assert!(matches!(
        log.append(transactional_batch(1, 3, 1, 2), 0),
        Err(LogError::InvalidProducerEpoch { .. })
    ));
    produce(log, transactional_batch(1, 3, 3, 0)).await;
    // Retries of a transactional batch are duplicates, as for idempotent ones.
    assert!(matches!(
        log.append(transactional_batch(1, 3, 3, 0), 0),
        Err(LogError::DuplicateSequence { .. })
    ));
    assert_eq!(log.log_end_offset(), 4);
    // A marker without an open transaction is stored and changes nothing.
    produce(log, marker(3, 3, ControlKind::Commit)).await;
    produce(log, marker(3, 3, ControlKind::Commit)).await;
    assert_eq!(log.last_stable_offset(), 6);
}

async fn truncation_reopens_a_transaction_whose_marker_it_removed(make: Factory) {
    let h = make(LogConfig::default());
    let log = &*h.log;
    produce(log, transactional_batch(2, 4, 0, 0)).await; // 0..=1
    produce(log, marker(4, 0, ControlKind::Abort)).await; // 2
    assert_eq!(committed_batches(log, 0).1.len(), 1);
    log.truncate_to(2).expect("truncate");
    assert_eq!(log.last_stable_offset(), 0);
    assert_eq!(
        log.read_committed(0, 1 << 20).unwrap().aborted_transactions,
        []
    );
    produce(log, marker(4, 0, ControlKind::Commit)).await;
    assert_eq!(committed_batches(log, 0), (vec![0, 2], vec![]));
}

/// Everything below the last stable offset, read as a read_committed consumer would.
fn read_all_committed(log: &dyn PartitionLog) -> Bytes {
    let mut out = BytesMut::new();
    let mut offset = log.log_start_offset();
    loop {
        let got = log.read_committed(offset, 1 << 20).expect("read").records;
        let Some(last) = headers(&got).last().copied() else {
            return out.freeze();
        };
        out.extend_from_slice(&got);
        offset = last.next_offset();
    }
}

/// (offset, key, value) of the data records (no markers) of stored bytes.
fn data_records(bytes: Bytes) -> Vec<(i64, String, String)> {
    support::decode(bytes)
        .into_iter()
        .filter(|r| !r.control)
        .map(|r| {
            let s = |b: Option<Bytes>| String::from_utf8_lossy(&b.unwrap_or_default()).into_owned();
            (r.offset, s(r.key), s(r.value))
        })
        .collect()
}

async fn compaction_drops_aborted_data_and_leaves_open_transactions_alone(make: Factory) {
    let now = now_ms();
    let h = make(LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        segment_ms: 0,
        delete_retention_ms: 60_000,
        ..LogConfig::default()
    });
    let log = &*h.log;
    let rec =
        |k: &'static str, v: &'static str| batch_of(&[(Some(k), Some(v), now)], Compression::None);
    produce(log, rec("k0", "old")).await; // 0
    produce(log, transactional_batch(1, 1, 0, 0)).await; // 1: k0, aborted below
    produce(log, marker(1, 0, ControlKind::Abort)).await; // 2
    produce(log, transactional_batch(2, 2, 0, 0)).await; // 3..=4: k0, k1, committed below
    produce(log, marker(2, 0, ControlKind::Commit)).await; // 5
    produce(log, transactional_batch(1, 3, 0, 0)).await; // 6: k0, stays open
    produce(log, rec("k1", "newest")).await; // 7
    assert_eq!(log.last_stable_offset(), 6);

    log.run_maintenance(now_ms()).expect("maintenance");
    // Below the LSO: the aborted k0 is gone and did not supersede anything; the committed k0
    // superseded the old one. At or above it nothing moved: the open k0 (6) and the plain k1
    // (7) supersede nothing yet, so the committed k1 (4) stays.
    assert_eq!(
        data_records(read_all_committed(log)),
        [
            (3, "k0".into(), "seq-0+0".into()),
            (4, "k1".into(), "seq-0+1".into())
        ]
    );
    assert_eq!(
        data_records(read_all(log))
            .iter()
            .map(|r| r.0)
            .collect::<Vec<_>>(),
        [3, 4, 6, 7]
    );

    // Once the open transaction commits, everything is stable and the newest values win.
    produce(log, marker(3, 0, ControlKind::Commit)).await; // 8
    log.run_maintenance(now_ms()).expect("maintenance");
    assert_eq!(
        data_records(read_all(log)),
        [
            (6, "k0".into(), "seq-0+0".into()),
            (7, "k1".into(), "newest".into())
        ]
    );
}

/// A follower's log: the leader's stored bytes appended as they are give the same bytes, the
/// same offsets and the same epoch history; overlapping batches are refused; truncation forgets
/// the epochs it removes.
async fn replicated_appends_store_the_leaders_bytes_unchanged(make: Factory) {
    let leader = make(LogConfig::default());
    let follower = make(LogConfig::default());
    follower.log.set_auto_high_watermark(false);
    leader
        .log
        .append(batch(2, 1_000, Compression::None), 3)
        .unwrap();
    leader.log.assign_leader_epoch(5).unwrap();
    leader
        .log
        .append(batch(3, 2_000, Compression::Lz4), 5)
        .unwrap();
    let stored = leader.log.read(0, 1 << 20, false).unwrap().records;
    let mut ends = follower.log.subscribe_log_end();
    let info = follower.log.append_replicated(stored.clone()).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (0, 4));
    assert_eq!(*ends.borrow_and_update(), 5);
    assert_eq!(
        follower.log.read(0, 1 << 20, false).unwrap().records,
        stored
    );
    assert_eq!(follower.log.leader_epochs(), leader.log.leader_epochs());
    assert_eq!(follower.log.leader_epochs().end_offset_for(3, 5), (3, 2));
    // The high watermark is the replication layer's to move.
    assert_eq!(follower.log.high_watermark(), 0);
    follower.log.set_high_watermark(5).unwrap();
    assert_eq!(read_all(&*follower.log), stored);
    assert!(matches!(
        follower.log.append_replicated(stored.clone()),
        Err(LogError::InvalidBatch(_))
    ));
    follower.log.truncate_to(2).unwrap();
    assert_eq!(follower.log.log_end_offset(), 2);
    assert_eq!(follower.log.leader_epochs().latest().unwrap().epoch, 3);
    assert_eq!(*ends.borrow_and_update(), 2);
    // Re-fetching the rest restores the same log.
    let rest = leader.log.read(2, 1 << 20, false).unwrap().records;
    follower.log.append_replicated(rest).unwrap();
    assert_eq!(
        follower.log.read(0, 1 << 20, false).unwrap().records,
        stored
    );
    assert_eq!(follower.log.leader_epochs(), leader.log.leader_epochs());
}

/// A replica left alone (its partition shrank to it) takes the high watermark up to its durable
/// end as soon as durability drives it again.
async fn a_sole_replica_commits_what_it_holds_when_auto_hw_returns(make: Factory) {
    let h = make(LogConfig::default());
    let log = &h.log;
    log.set_auto_high_watermark(false);
    let stored = {
        let source = make(LogConfig::default());
        source
            .log
            .append(batch(3, 1_000, Compression::None), 2)
            .unwrap();
        source.log.read(0, 1 << 20, false).unwrap().records
    };
    let info = log.append_replicated(stored).unwrap();
    log.wait_durable(info.last_offset).await.unwrap();
    assert_eq!(log.high_watermark(), 0, "replication drives it");
    let mut hw = log.subscribe();
    log.set_auto_high_watermark(true);
    assert_eq!(log.high_watermark(), 3);
    assert_eq!(*hw.borrow_and_update(), 3);
    // And later durable writes move it as for any single replica.
    let next = produce(&**log, batch(1, 2_000, Compression::None)).await;
    assert_eq!(log.high_watermark(), next.last_offset + 1);
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod file_log {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::file_log).await
                }
            )*
        }
        mod memory_log {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::memory_log).await
                }
            )*
        }
    };
}

conformance!(
    append_read_round_trip_is_byte_exact_except_stamped_fields,
    offsets_are_contiguous_across_batches_and_appends,
    corrupt_append_is_rejected_whole,
    oversized_batch_is_rejected,
    read_respects_max_bytes_but_returns_the_first_batch_whole,
    reads_stop_at_the_high_watermark,
    reads_outside_the_log_are_out_of_range,
    truncate_to_removes_whole_batches,
    delete_records_before_moves_the_log_start,
    timestamp_lookups_find_the_first_record_at_or_after,
    subscribers_see_the_high_watermark_move,
    compaction_keeps_the_latest_value_per_key,
    a_closed_log_refuses_work,
    a_retried_batch_is_stored_once_and_answers_the_original_offsets,
    a_sequence_gap_is_out_of_order_and_stores_nothing,
    an_older_producer_epoch_is_fenced,
    producer_state_outlives_deleted_records_and_follows_truncation,
    the_last_stable_offset_holds_at_the_oldest_open_transaction,
    aborted_transactions_listed_are_those_overlapping_the_read,
    transactional_writes_follow_the_producer_epoch_and_transaction,
    truncation_reopens_a_transaction_whose_marker_it_removed,
    compaction_drops_aborted_data_and_leaves_open_transactions_alone,
    replicated_appends_store_the_leaders_bytes_unchanged,
    a_sole_replica_commits_what_it_holds_when_auto_hw_returns,
);
