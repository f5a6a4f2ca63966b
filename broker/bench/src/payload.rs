//! Message payloads that can be checked after the fact, in two formats.
//!
//! Binary (the default): bytes 0..8 hold the message's sequence number (big endian), bytes 8..16
//! the send time in nanoseconds since the run's clock origin (used by round-trip runs), and the
//! rest is a pseudo-random filler derived from the sequence number alone. The filler is
//! incompressible enough not to flatter compression codecs, and a reader can regenerate it to
//! check every byte.
//!
//! JSON (for topics that index their events): one object
//! `{"seq":N,"sent_ns":T,"city":"...","amount":D.CC,"text":"..."}` whose city, amount and text
//! are derived from the sequence number alone and whose text is cut so the object is exactly the
//! message size. A reader regenerates it from the two numbers it leads with.

use std::fmt::Write as _;
use std::time::Instant;

use clap::ValueEnum;

/// Bytes taken by the sequence number and the send timestamp.
pub const HEADER_LEN: usize = 16;

/// Smallest message size the JSON format fits in, whatever the two numbers are.
pub const JSON_MIN_LEN: usize = 128;

/// What the payloads look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A binary header and a pseudo-random filler.
    Binary,
    /// A JSON object with a sequence number, a city, an amount and a text.
    Json,
}

impl Format {
    /// Smallest message size this format can carry.
    pub fn min_len(self) -> usize {
        match self {
            Format::Binary => HEADER_LEN,
            Format::Json => JSON_MIN_LEN,
        }
    }

    /// Writes the payload of message `seq` into `buf` (whose length is the message size, at
    /// least `min_len`).
    pub fn fill(self, buf: &mut [u8], seq: u64, sent_nanos: u64) {
        match self {
            Format::Binary => fill(buf, seq, sent_nanos),
            Format::Json => fill_json(buf, seq, sent_nanos),
        }
    }

    /// The sequence number a payload claims.
    pub fn seq(self, payload: &[u8]) -> Option<u64> {
        match self {
            Format::Binary => seq(payload),
            Format::Json => json_number(payload, JSON_SEQ),
        }
    }

    /// The send timestamp (nanoseconds since the clock origin) a payload carries.
    pub fn sent_nanos(self, payload: &[u8]) -> Option<u64> {
        match self {
            Format::Binary => sent_nanos(payload),
            Format::Json => {
                let seq = json_number(payload, JSON_SEQ)?;
                json_number(payload.get(JSON_SEQ.len() + digits(seq)..)?, JSON_SENT)
            }
        }
    }

    /// Whether `payload` is exactly what `fill` writes for `seq` at `expected_len` bytes.
    pub fn is_intact(self, payload: &[u8], seq: u64, expected_len: usize) -> bool {
        match self {
            Format::Binary => is_intact(payload, seq, expected_len),
            Format::Json => {
                if payload.len() != expected_len || self.seq(payload) != Some(seq) {
                    return false;
                }
                let Some(sent) = self.sent_nanos(payload) else {
                    return false;
                };
                let mut expected = vec![0u8; expected_len];
                fill_json(&mut expected, seq, sent);
                payload == expected.as_slice()
            }
        }
    }
}

const JSON_SEQ: &str = "{\"seq\":";
const JSON_SENT: &str = ",\"sent_ns\":";

const CITIES: &[&str] = &[
    "Amsterdam",
    "Berlin",
    "Lisbon",
    "Madrid",
    "Oslo",
    "Paris",
    "Prague",
    "Rome",
    "Vienna",
    "Warsaw",
    "Zurich",
    "Dublin",
    "Helsinki",
    "Athens",
    "Tallinn",
    "Porto",
];

const WORDS: &[&str] = &[
    "order",
    "payment",
    "failed",
    "shipped",
    "delayed",
    "refund",
    "customer",
    "parcel",
    "invoice",
    "warehouse",
    "express",
    "fragile",
    "returned",
    "priority",
    "courier",
    "address",
    "confirmed",
    "pending",
    "card",
    "declined",
    "cancelled",
    "delivered",
    "damaged",
    "window",
    "morning",
    "evening",
    "station",
    "locker",
    "signature",
    "discount",
    "voucher",
    "support",
];

/// Writes the JSON payload of message `seq`; the text is cut (or extended) so the object fills
/// `buf` exactly.
fn fill_json(buf: &mut [u8], seq: u64, sent_nanos: u64) {
    let mut state = filler_seed(seq);
    state = xorshift(state);
    let city = CITIES[(state % CITIES.len() as u64) as usize];
    state = xorshift(state);
    let cents = state % 1_000_000;
    let mut head = String::with_capacity(buf.len());
    let _ = write!(
        head,
        "{JSON_SEQ}{seq}{JSON_SENT}{sent_nanos},\"city\":\"{city}\",\"amount\":{}.{:02},\"text\":\"",
        cents / 100,
        cents % 100
    );
    let tail = "\"}";
    let text_len = buf
        .len()
        .checked_sub(head.len() + tail.len())
        .expect("message size below the JSON minimum");
    let mut text = String::with_capacity(text_len + 16);
    while text.len() < text_len {
        state = xorshift(state);
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(WORDS[(state % WORDS.len() as u64) as usize]);
    }
    text.truncate(text_len);
    if text.ends_with(' ') {
        text.pop();
        text.push('a');
    }
    let mut at = 0;
    for part in [head.as_bytes(), text.as_bytes(), tail.as_bytes()] {
        buf[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
}

/// The decimal number right after `prefix` at the start of `payload`.
fn json_number(payload: &[u8], prefix: &str) -> Option<u64> {
    let rest = payload.strip_prefix(prefix.as_bytes())?;
    let len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..len]).ok()?.parse().ok()
}

fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

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
    fn json_payload_is_valid_json_of_the_exact_size_and_round_trips() {
        for (seq, sent, len) in [
            (0, 0, JSON_MIN_LEN),
            (u64::MAX, u64::MAX, JSON_MIN_LEN),
            (42, 123_456_789, 200),
            (7, 1, 1024),
        ] {
            let mut buf = vec![0u8; len];
            Format::Json.fill(&mut buf, seq, sent);
            let value: serde_json::Value = serde_json::from_slice(&buf).expect("valid JSON");
            assert_eq!(value["seq"].as_u64(), Some(seq));
            assert_eq!(value["sent_ns"].as_u64(), Some(sent));
            assert!(value["city"].is_string() && value["amount"].is_f64());
            assert!(!value["text"].as_str().expect("text").ends_with(' '));
            assert_eq!(Format::Json.seq(&buf), Some(seq));
            assert_eq!(Format::Json.sent_nanos(&buf), Some(sent));
            assert!(Format::Json.is_intact(&buf, seq, len));
        }
    }

    #[test]
    fn corrupted_json_payload_is_detected() {
        let mut buf = vec![0u8; 300];
        Format::Json.fill(&mut buf, 5, 99);
        assert!(!Format::Json.is_intact(&buf, 6, 300));
        assert!(!Format::Json.is_intact(&buf[..299], 5, 300));
        buf[150] ^= 0x20;
        assert!(!Format::Json.is_intact(&buf, 5, 300));
    }

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
