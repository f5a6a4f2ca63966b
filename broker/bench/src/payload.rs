//! Message payloads that can be checked after the fact.
//!
//! Layout: bytes 0..8 hold the message's sequence number (big endian), bytes 8..16 the send time
//! in nanoseconds since the run's clock origin (used by round-trip runs), and the rest is a
//! pseudo-random filler derived from the sequence number alone. The filler is incompressible
//! enough not to flatter compression codecs, and a reader can regenerate it to check every byte.

use std::time::Instant;

/// Bytes taken by the sequence number and the send timestamp.
pub const HEADER_LEN: usize = 16;

/// Writes the payload of message `seq` into `buf` (whose length is the message size).
pub fn fill(buf: &mut [u8], seq: u64, sent_nanos: u64) {
    buf[0..8].copy_from_slice(&seq.to_be_bytes());
    buf[8..16].copy_from_slice(&sent_nanos.to_be_bytes());
    let mut state = filler_seed(seq);
    for chunk in buf[HEADER_LEN..].chunks_mut(8) {
        state = xorshift(state);
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
}

/// The sequence number a payload claims, if it is long enough to carry one.
pub fn seq(payload: &[u8]) -> Option<u64> {
    payload
        .get(0..8)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
}

/// The send timestamp (nanoseconds since the clock origin) a payload carries.
pub fn sent_nanos(payload: &[u8]) -> Option<u64> {
    payload
        .get(8..16)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
}

/// Whether `payload` is exactly what `fill` writes for `seq` at `expected_len` bytes
/// (the timestamp is not checked: it is not known to the reader).
pub fn is_intact(payload: &[u8], seq: u64, expected_len: usize) -> bool {
    if payload.len() != expected_len || self::seq(payload) != Some(seq) {
        return false;
    }
    let mut state = filler_seed(seq);
    payload[HEADER_LEN..].chunks(8).all(|chunk| {
        state = xorshift(state);
        chunk == &state.to_le_bytes()[..chunk.len()]
    })
}

/// Nanoseconds elapsed since `origin`, saturating.
pub fn nanos_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn filler_seed(seq: u64) -> u64 {
    // splitmix64 of the sequence number; never zero, which xorshift needs.
    let mut z = seq.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) | 1
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_payload_is_intact_and_carries_its_header() {
        let mut buf = vec![0u8; 100];
        fill(&mut buf, 42, 7);
        assert_eq!(seq(&buf), Some(42));
        assert_eq!(sent_nanos(&buf), Some(7));
        assert!(is_intact(&buf, 42, 100));
    }

    #[test]
    fn corrupted_or_truncated_payload_is_detected() {
        let mut buf = vec![0u8; 64];
        fill(&mut buf, 9, 0);
        assert!(!is_intact(&buf, 10, 64), "wrong sequence number accepted");
        assert!(!is_intact(&buf[..63], 9, 64), "truncated payload accepted");
        buf[40] ^= 1;
        assert!(!is_intact(&buf, 9, 64), "flipped filler bit accepted");
    }

    #[test]
    fn different_sequences_get_different_fillers() {
        let mut a = vec![0u8; 48];
        let mut b = vec![0u8; 48];
        fill(&mut a, 1, 0);
        fill(&mut b, 2, 0);
        assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
    }
}
