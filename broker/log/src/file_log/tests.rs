//! Unit tests needing the log's internals: states that a running log reaches only through
//! compaction or a crash, built directly rather than through recovery (which tidies them).

use bytes::BytesMut;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::*;

/// A producer's batch of `n` keyed records.
fn batch(n: usize) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: now_ms(),
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encode");
    buf.freeze()
}

#[test]
fn reads_skip_empty_segments_whose_base_is_past_the_offset() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let len = batch(2).len() as u64;
    let config = LogConfig {
        segment_bytes: 2 * len,
        index_interval_bytes: 1,
        flush: FlushPolicy::Os,
        ..LogConfig::default()
    };
    let log = FileLog::open(tmp.path(), config).expect("open");
    for _ in 0..10 {
        log.append(batch(2), 0).expect("append");
    }
    assert_eq!(log.segment_base_offsets(), vec![0, 4, 8, 12, 16]);
    {
        // Segments 4 and 8 hold nothing (compacted away): an empty segment's next offset is
        // its base, so segment 8 "ends after" offset 4 while holding no batch.
        let mut st = log.shared.state.write();
        for i in [1, 2] {
            let base = st.segments[i].base_offset;
            st.segments[i] = Segment::create(&log.shared.dir, base, 1).expect("create");
        }
        assert_eq!(st.locate(4).map(|s| s.base_offset), Some(12));
        assert_eq!(st.locate(0).map(|s| s.base_offset), Some(0));
        assert_eq!(st.locate(20).map(|s| s.base_offset), None);
    }
    for offset in [4, 9, 12] {
        let got = log.read(offset, 1 << 20, true).expect("read").records;
        let first = batch::BatchHeader::parse(&got).expect("a batch");
        assert_eq!(first.base_offset, 12, "read at {offset}");
    }
}
