//! Kafka v2 record batch headers: zero-copy parsing, the validation an append must pass, and the
//! in-place stamping of the broker-assigned fields.
//!
//! Only the 61-byte header is looked at here; records are never decoded on the append path.
//! Layout (all big-endian): baseOffset i64 @0, batchLength i32 @8, partitionLeaderEpoch i32 @12,
//! magic i8 @16, crc u32 @17, attributes i16 @21, lastOffsetDelta i32 @23, baseTimestamp i64 @27,
//! maxTimestamp i64 @35, producerId i64 @43, producerEpoch i16 @51, baseSequence i32 @53,
//! recordCount i32 @57. The CRC-32C covers bytes [21, end of batch), so the base offset and the
//! partition leader epoch can be rewritten without touching it.

use kafka_protocol::records::{Compression, TimestampType};

use crate::{LogError, Result};

/// Size of a v2 record batch header, from the base offset through the record count.
pub const BATCH_HEADER_LEN: usize = 61;

/// Bytes before `batchLength` starts counting: base offset (8) and the length itself (4).
pub const LOG_OVERHEAD: usize = 12;

/// The only record batch format this log stores.
pub const MAGIC_V2: i8 = 2;

const CRC_START: usize = 21;
const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE: i16 = 1 << 3;
const ATTR_TRANSACTIONAL: i16 = 1 << 4;
const ATTR_CONTROL: i16 = 1 << 5;
const ATTR_DELETE_HORIZON: i16 = 1 << 6;

/// The fixed header of one v2 record batch, as read from its first 61 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after this field: the whole batch is `LOG_OVERHEAD + batch_length` bytes.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Parse the header at the start of `buf`. Only checks that 61 bytes are there; use
    /// [`validate_records`] for the checks an append needs.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader> {
        let Some(h) = buf.get(..BATCH_HEADER_LEN) else {
            return Err(LogError::CorruptBatch(format!(
                "truncated batch header: {} of {BATCH_HEADER_LEN} bytes",
                buf.len()
            )));
        };
        Ok(BatchHeader {
            base_offset: i64::from_be_bytes(array(h, 0)),
            batch_length: i32::from_be_bytes(array(h, 8)),
            partition_leader_epoch: i32::from_be_bytes(array(h, 12)),
            magic: i8::from_be_bytes(array(h, 16)),
            crc: u32::from_be_bytes(array(h, 17)),
            attributes: i16::from_be_bytes(array(h, 21)),
            last_offset_delta: i32::from_be_bytes(array(h, 23)),
            base_timestamp: i64::from_be_bytes(array(h, 27)),
            max_timestamp: i64::from_be_bytes(array(h, 35)),
            producer_id: i64::from_be_bytes(array(h, 43)),
            producer_epoch: i16::from_be_bytes(array(h, 51)),
            base_sequence: i32::from_be_bytes(array(h, 53)),
            record_count: i32::from_be_bytes(array(h, 57)),
        })
    }

    /// Size of the whole batch in bytes, header included. Zero for a negative length field.
    pub fn total_len(&self) -> usize {
        usize::try_from(self.batch_length).map_or(0, |len| len + LOG_OVERHEAD)
    }

    /// Offset of the batch's last record (compaction may have removed it, the offset stays).
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The offset following this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Compression codec of the records, `None` for a codec number Kafka does not define.
    pub fn compression(&self) -> Option<Compression> {
        match self.attributes & ATTR_COMPRESSION_MASK {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & ATTR_TIMESTAMP_TYPE != 0 {
            TimestampType::LogAppend
        } else {
            TimestampType::Creation
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// Control batches carry transaction markers, not user records.
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Set by compaction when the base timestamp holds the tombstone delete horizon.
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & ATTR_DELETE_HORIZON != 0
    }

    /// Whether the producer is idempotent or transactional (has a producer id).
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence number of the last record, for idempotent producer bookkeeping. Sequences wrap
    /// from `i32::MAX` to 0, never to negative values (Kafka's `incrementSequence`).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return self.base_sequence;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta.max(0));
        (last % (i64::from(i32::MAX) + 1)) as i32
    }
}

fn array<const N: usize>(h: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&h[at..at + N]);
    out
}

/// Where one validated batch sits inside an append's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpan {
    /// Byte position of the batch inside the buffer.
    pub position: usize,
    pub header: BatchHeader,
}

impl BatchSpan {
    pub fn len(&self) -> usize {
        self.header.total_len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn end(&self) -> usize {
        self.position + self.len()
    }
}

/// Split a produce request's `records` blob into batches and check each one: magic 2, a length
/// that fits the buffer, `max_message_bytes`, CRC-32C, offset delta and record count. Any failure
/// rejects the whole blob; a trailing partial batch is corrupt.
pub fn validate_records(buf: &[u8], max_message_bytes: usize) -> Result<Vec<BatchSpan>> {
    if buf.is_empty() {
        return Err(LogError::InvalidBatch("no record batches".into()));
    }
    let mut spans = Vec::new();
    let mut position = 0;
    while position < buf.len() {
        let rest = &buf[position..];
        let header = BatchHeader::parse(rest).map_err(|_| {
            LogError::CorruptBatch(format!(
                "trailing partial batch of {} bytes at position {position}",
                rest.len()
            ))
        })?;
        check_structure(&header)?;
        let len = header.total_len();
        if len > rest.len() {
            return Err(LogError::CorruptBatch(format!(
                "batch at position {position} claims {len} bytes but only {} remain",
                rest.len()
            )));
        }
        if len > max_message_bytes {
            return Err(LogError::BatchTooLarge {
                size: len,
                max: max_message_bytes,
            });
        }
        check_crc(&header, &rest[..len])?;
        if header.compression().is_none() {
            return Err(LogError::InvalidBatch(format!(
                "unknown compression codec {}",
                header.attributes & ATTR_COMPRESSION_MASK
            )));
        }
        // Kafka's LogValidator requires a produced batch to account for every offset it spans.
        if i64::from(header.record_count) != i64::from(header.last_offset_delta) + 1 {
            return Err(LogError::CorruptBatch(format!(
                "record count {} does not match last offset delta {}",
                header.record_count, header.last_offset_delta
            )));
        }
        spans.push(BatchSpan { position, header });
        position += len;
    }
    Ok(spans)
}

/// Split stored bytes (already validated once) into batches, checking only that each header is
/// sane and each batch whole.
pub fn split(buf: &[u8]) -> Result<Vec<BatchSpan>> {
    let mut spans = Vec::new();
    let mut position = 0;
    while position < buf.len() {
        let header = BatchHeader::parse(&buf[position..])?;
        check_structure(&header)?;
        if header.total_len() > buf.len() - position {
            return Err(LogError::CorruptBatch(format!(
                "batch at position {position} runs past the end of the buffer"
            )));
        }
        spans.push(BatchSpan { position, header });
        position += header.total_len();
    }
    Ok(spans)
}

/// The checks that do not need the batch's bytes: magic, minimum length, offset delta, count.
/// Shared by append validation and recovery.
pub fn check_structure(header: &BatchHeader) -> Result<()> {
    if header.magic != MAGIC_V2 {
        return Err(LogError::CorruptBatch(format!(
            "unsupported magic {} (only v2 record batches are accepted)",
            header.magic
        )));
    }
    if (header.batch_length as i64) < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i64 {
        return Err(LogError::CorruptBatch(format!(
            "batch length {} is smaller than a batch header",
            header.batch_length
        )));
    }
    if header.last_offset_delta < 0 {
        return Err(LogError::CorruptBatch(format!(
            "negative last offset delta {}",
            header.last_offset_delta
        )));
    }
    if header.record_count < 0 {
        return Err(LogError::CorruptBatch(format!(
            "negative record count {}",
            header.record_count
        )));
    }
    Ok(())
}

/// Verify the CRC-32C of one whole batch (`batch` is exactly its bytes).
pub fn check_crc(header: &BatchHeader, batch: &[u8]) -> Result<()> {
    let actual = crc32c::crc32c(&batch[CRC_START..]);
    if actual != header.crc {
        return Err(LogError::CorruptBatch(format!(
            "crc mismatch: header says {:#010x}, bytes give {actual:#010x}",
            header.crc
        )));
    }
    Ok(())
}

/// What a control batch marks: the end of its producer's transaction on this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlKind {
    Abort,
    Commit,
}

/// Control record type numbers (the key's second field), Kafka's `ControlRecordType`.
const CONTROL_ABORT: i16 = 0;
const CONTROL_COMMIT: i16 = 1;
/// Bytes of the one control record [`control_batch`] writes: length varint, then 16 bytes of
/// attributes, timestamp delta, offset delta, key length, key (4), value length, value (6) and
/// header count.
const CONTROL_RECORD_LEN: usize = 17;

/// The transaction marker of a whole control batch (`batch` starts at its header), read from
/// its first record's key (version i16, type i16). `None` for a control batch whose record is
/// not a transaction marker (unknown type) or cannot be read. Control batches are never
/// compressed, so no decompression is needed.
pub fn control_kind(batch: &[u8]) -> Option<ControlKind> {
    let mut r = batch.get(BATCH_HEADER_LEN..)?;
    read_varint(&mut r)?; // record length
    let (_attributes, rest) = r.split_first()?;
    r = rest;
    read_varint(&mut r)?; // timestamp delta
    read_varint(&mut r)?; // offset delta
    if read_varint(&mut r)? < 4 {
        return None;
    }
    match i16::from_be_bytes([*r.get(2)?, *r.get(3)?]) {
        CONTROL_ABORT => Some(ControlKind::Abort),
        CONTROL_COMMIT => Some(ControlKind::Commit),
        _ => None,
    }
}

/// A zigzag varint as in Kafka's record format.
fn read_varint(r: &mut &[u8]) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = r.split_first()?;
        *r = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

/// The control batch a transaction coordinator writes to end `producer_id`'s transaction on a
/// partition: one record whose key is (version 0, type) and value (version 0,
/// coordinator epoch), transactional and control attributes set, no sequence. Base offset 0;
/// the log assigns the real one.
pub fn control_batch(
    producer_id: i64,
    producer_epoch: i16,
    kind: ControlKind,
    coordinator_epoch: i32,
    timestamp: i64,
) -> bytes::Bytes {
    let kind = match kind {
        ControlKind::Abort => CONTROL_ABORT,
        ControlKind::Commit => CONTROL_COMMIT,
    };
    let mut b = Vec::with_capacity(BATCH_HEADER_LEN + CONTROL_RECORD_LEN);
    b.extend_from_slice(&0i64.to_be_bytes());
    let batch_length = (BATCH_HEADER_LEN - LOG_OVERHEAD + CONTROL_RECORD_LEN) as i32;
    b.extend_from_slice(&batch_length.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(MAGIC_V2 as u8);
    b.extend_from_slice(&[0u8; 4]); // crc, filled below
    b.extend_from_slice(&(ATTR_TRANSACTIONAL | ATTR_CONTROL).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    // The record, varints zigzag-encoded: length 16, attributes 0, deltas 0, key length 4.
    b.extend_from_slice(&[32, 0, 0, 0, 8]);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&kind.to_be_bytes());
    b.push(12); // value length 6
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&coordinator_epoch.to_be_bytes());
    b.push(0); // no headers
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.into()
}

/// The offset following the last whole batch in `bytes` (concatenated stored batches), `None`
/// when there is none. Reads headers only.
pub fn end_offset(bytes: &[u8]) -> Option<i64> {
    let mut at = 0;
    let mut end = None;
    while let Ok(header) = BatchHeader::parse(&bytes[at..]) {
        let len = header.total_len();
        if len == 0 || at + len > bytes.len() {
            break;
        }
        end = Some(header.next_offset());
        at += len;
    }
    end
}

/// Write the broker-assigned base offset and partition leader epoch into the batch starting at
/// `batch[0]`. Both fields are outside the CRC, which stays valid.
pub fn stamp(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid batch with no records payload: header only, correct CRC.
    fn header_only_batch(last_offset_delta: i32, count: i32) -> Vec<u8> {
        let mut b = vec![0u8; BATCH_HEADER_LEN];
        b[8..12].copy_from_slice(&((BATCH_HEADER_LEN - LOG_OVERHEAD) as i32).to_be_bytes());
        b[16] = 2;
        b[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
        b[35..43].copy_from_slice(&77i64.to_be_bytes());
        b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
        b[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn parses_every_header_field_big_endian() {
        let b = header_only_batch(4, 5);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.magic, 2);
        assert_eq!(h.total_len(), BATCH_HEADER_LEN);
        assert_eq!(h.last_offset_delta, 4);
        assert_eq!(h.max_timestamp, 77);
        assert_eq!(h.producer_id, -1);
        assert!(!h.has_producer_id());
        assert_eq!(h.record_count, 5);
        assert_eq!(h.compression(), Some(Compression::None));
        assert!(!h.is_control() && !h.is_transactional());
    }

    #[test]
    fn validates_concatenated_batches_and_rejects_trailing_bytes() {
        let mut two = header_only_batch(0, 1);
        two.extend(header_only_batch(2, 3));
        let spans = validate_records(&two, 1 << 20).unwrap();
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[1].position, BATCH_HEADER_LEN);

        let mut trailing = two.clone();
        trailing.extend_from_slice(&[0u8; 10]);
        assert!(matches!(
            validate_records(&trailing, 1 << 20),
            Err(LogError::CorruptBatch(_))
        ));
    }

    #[test]
    fn rejects_count_that_disagrees_with_offset_delta() {
        let b = header_only_batch(3, 1);
        assert!(matches!(
            validate_records(&b, 1 << 20),
            Err(LogError::CorruptBatch(_))
        ));
    }

    #[test]
    fn control_batches_decode_with_kafka_protocol_and_name_their_marker() {
        for kind in [ControlKind::Abort, ControlKind::Commit] {
            let b = control_batch(42, 3, kind, 7, 1_000);
            let spans = validate_records(&b, 1 << 20).unwrap();
            let h = spans[0].header;
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (42, 3, -1)
            );
            assert_eq!(control_kind(&b), Some(kind));
            let mut buf = b.clone();
            let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).unwrap();
            assert_eq!(set.records.len(), 1);
            assert!(set.records[0].control);
        }
        assert_eq!(control_kind(&header_only_batch(0, 1)), None);
    }

    #[test]
    fn stamping_keeps_the_crc_valid() {
        let mut b = header_only_batch(0, 1);
        stamp(&mut b, 1234, 9);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (1234, 9));
        check_crc(&h, &b).unwrap();
    }
}
