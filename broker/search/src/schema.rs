//! The schema of a partition's search index and how one record becomes one document.
//!
//! A record's JSON value is indexed twice under its own paths:
//! - `body` — string leaves analysed as English text with positions (match, phrase, highlight);
//!   `search.fields` restricts which paths get here;
//! - `kw` — every leaf as an exact value: strings up to [`KEYWORD_MAX_LEN`] bytes as one term
//!   (long ones in the hashed form of `crate::keyword`; the fast column keeps them whole),
//!   numbers (as f64), booleans and RFC 3339 / `yyyy-mm-dd` strings as dates; all of it also
//!   as fast columns for sort, range and aggregations. A query names it as `field.keyword`
//!   (strings) or plainly (numbers, dates, booleans).
//!
//! `len` holds each text path's token count (a fast column per path), the field length BM25
//! needs and that a JSON field does not keep per path.
//!
//! `_all` holds every indexed string (the default field when a query names none). The record's
//! coordinates are fields of their own: `_partition`, `_offset`, `_timestamp`, `_key`, and the
//! raw value is stored as `_source`.

use std::collections::BTreeMap;

use serde_json::Value;
use tantivy::schema::{
    Field, IndexRecordOption, JsonObjectOptions, OwnedValue, Schema, TextFieldIndexing,
    TextOptions, FAST, INDEXED, STORED,
};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{DateTime, TantivyDocument};

use crate::analyzer::{KEYWORD_ANALYZER, TEXT_ANALYZER};

/// Longer strings are not keyword terms (Elasticsearch's `ignore_above` default).
pub const KEYWORD_MAX_LEN: usize = 256;

pub const BODY: &str = "body";
pub const KW: &str = "kw";
pub const ALL: &str = "_all";
pub const LEN: &str = "len";
pub const PARTITION: &str = "_partition";
pub const OFFSET: &str = "_offset";
pub const TIMESTAMP: &str = "_timestamp";
pub const KEY: &str = "_key";
pub const SOURCE: &str = "_source";

/// Handles of the fixed schema's fields.
#[derive(Debug, Clone)]
pub struct Fields {
    pub body: Field,
    pub kw: Field,
    pub all: Field,
    pub len: Field,
    pub partition: Field,
    pub offset: Field,
    pub timestamp: Field,
    pub key: Field,
    pub source: Field,
}

pub fn build() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text_indexing = TextFieldIndexing::default()
        .set_tokenizer(TEXT_ANALYZER)
        .set_index_option(IndexRecordOption::WithFreqsAndPositions);
    let body = b.add_json_field(
        BODY,
        JsonObjectOptions::default().set_indexing_options(text_indexing.clone()),
    );
    let kw = b.add_json_field(
        KW,
        JsonObjectOptions::default()
            .set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(KEYWORD_ANALYZER)
                    .set_index_option(IndexRecordOption::Basic)
                    .set_fieldnorms(false),
            )
            .set_fast(KEYWORD_ANALYZER),
    );
    let all = b.add_text_field(
        ALL,
        TextOptions::default().set_indexing_options(text_indexing),
    );
    let len = b.add_json_field(LEN, JsonObjectOptions::default().set_fast(KEYWORD_ANALYZER));
    let partition = b.add_i64_field(PARTITION, INDEXED | FAST);
    let offset = b.add_i64_field(OFFSET, INDEXED | FAST | STORED);
    let timestamp = b.add_date_field(TIMESTAMP, INDEXED | FAST | STORED);
    let key = b.add_bytes_field(KEY, INDEXED | STORED);
    let source = b.add_bytes_field(SOURCE, STORED);
    (
        b.build(),
        Fields {
            body,
            kw,
            all,
            len,
            partition,
            offset,
            timestamp,
            key,
            source,
        },
    )
}

/// What a record's value is, for `_source` and for indexing.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// A JSON object: indexed field by field.
    Object(serde_json::Map<String, Value>),
    /// Any other JSON value, or text that is not JSON: indexed under the path `value`.
    Other(Value),
}

/// Parse a record value. Non-JSON bytes become a JSON string (lossy UTF-8).
pub fn parse_value(bytes: &[u8]) -> Parsed {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Parsed::Object(map),
        Ok(other) => Parsed::Other(other),
        Err(_) => Parsed::Other(Value::String(String::from_utf8_lossy(bytes).into_owned())),
    }
}

/// Which string paths are analysed as text (`search.fields`); `None` is every string path.
#[derive(Debug, Clone, Default)]
pub struct TextPaths(Option<Vec<String>>);

impl TextPaths {
    pub fn new(fields: Option<Vec<String>>) -> Self {
        TextPaths(fields.map(|v| {
            v.into_iter()
                .map(|f| f.trim_start_matches("$.").to_string())
                .collect()
        }))
    }

    /// A path is text when it is listed or lies under a listed object.
    fn includes(&self, path: &str) -> bool {
        match &self.0 {
            None => true,
            Some(list) => list.iter().any(|f| {
                path == f || (path.starts_with(f.as_str()) && path[f.len()..].starts_with('.'))
            }),
        }
    }
}

/// Build the document for one record; `analyzer` counts text tokens (see
/// `analyzer::english_token_counter`).
pub fn document(
    fields: &Fields,
    text_paths: &TextPaths,
    analyzer: &mut TextAnalyzer,
    partition: i32,
    offset: i64,
    timestamp_ms: i64,
    key: Option<&[u8]>,
    value: &[u8],
) -> TantivyDocument {
    let mut doc = TantivyDocument::new();
    doc.add_i64(fields.partition, i64::from(partition));
    doc.add_i64(fields.offset, offset);
    doc.add_date(
        fields.timestamp,
        DateTime::from_timestamp_millis(timestamp_ms),
    );
    if let Some(key) = key {
        doc.add_bytes(fields.key, key);
    }
    doc.add_bytes(fields.source, value);

    let object = match parse_value(value) {
        Parsed::Object(map) => map,
        Parsed::Other(v) => {
            let mut map = serde_json::Map::new();
            map.insert("value".into(), v);
            map
        }
    };
    let mut texts = Vec::new();
    let mut lengths = BTreeMap::new();
    let mut body = BTreeMap::new();
    let mut kw = BTreeMap::new();
    for (name, v) in &object {
        if let Some(t) = text_tree(v, name, text_paths, &mut texts) {
            body.insert(name.clone(), t);
            count_tokens(v, name, text_paths, analyzer, &mut lengths);
        }
        if let Some(k) = keyword_tree(v) {
            kw.insert(name.clone(), k);
        }
    }
    if !body.is_empty() {
        doc.add_object(fields.body, body);
    }
    if !kw.is_empty() {
        doc.add_object(fields.kw, kw);
    }
    for t in texts {
        doc.add_text(fields.all, t);
    }
    if !lengths.is_empty() {
        doc.add_object(fields.len, nest(lengths));
    }
    doc
}

/// Token counts of the text paths under `path` (array elements add up).
fn count_tokens(
    v: &Value,
    path: &str,
    paths: &TextPaths,
    analyzer: &mut TextAnalyzer,
    out: &mut BTreeMap<String, u64>,
) {
    match v {
        Value::String(s) if paths.includes(path) => {
            let mut stream = analyzer.token_stream(s);
            let mut n = 0u64;
            while stream.advance() {
                n += 1;
            }
            *out.entry(path.to_string()).or_default() += n;
        }
        Value::Array(items) => items
            .iter()
            .for_each(|i| count_tokens(i, path, paths, analyzer, out)),
        Value::Object(map) => {
            for (k, i) in map {
                count_tokens(i, &format!("{path}.{k}"), paths, analyzer, out);
            }
        }
        _ => {}
    }
}

/// Dotted paths with counts as a nested object, so the columns are `len.<path>`.
fn nest(flat: BTreeMap<String, u64>) -> BTreeMap<String, OwnedValue> {
    let mut root = serde_json::Map::new();
    for (path, n) in flat {
        let parts: Vec<&str> = path.split('.').collect();
        insert_path(&mut root, &parts, n);
    }
    root.into_iter().map(|(k, v)| (k, owned(v))).collect()
}

fn insert_path(map: &mut serde_json::Map<String, Value>, parts: &[&str], n: u64) {
    match parts {
        [] => {}
        [leaf] => {
            map.insert(leaf.to_string(), Value::from(n));
        }
        [head, rest @ ..] => {
            let entry = map
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            if !entry.is_object() {
                // A key that is text in one place and an object in another: the object wins.
                *entry = Value::Object(serde_json::Map::new());
            }
            if let Value::Object(child) = entry {
                insert_path(child, rest, n);
            }
        }
    }
}

fn owned(v: Value) -> OwnedValue {
    match v {
        Value::Number(n) => OwnedValue::U64(n.as_u64().unwrap_or_default()),
        Value::Object(m) => OwnedValue::Object(m.into_iter().map(|(k, v)| (k, owned(v))).collect()),
        _ => OwnedValue::Null,
    }
}

/// The string leaves of `v` that are text, keeping structure; collects them for `_all`.
fn text_tree(
    v: &Value,
    path: &str,
    paths: &TextPaths,
    all: &mut Vec<String>,
) -> Option<OwnedValue> {
    match v {
        Value::String(s) if paths.includes(path) => {
            all.push(s.clone());
            Some(OwnedValue::Str(s.clone()))
        }
        Value::Array(items) => {
            let out: Vec<OwnedValue> = items
                .iter()
                .filter_map(|i| text_tree(i, path, paths, all))
                .collect();
            (!out.is_empty()).then_some(OwnedValue::Array(out))
        }
        Value::Object(map) => {
            let out: Vec<(String, OwnedValue)> = map
                .iter()
                .filter_map(|(k, i)| {
                    text_tree(i, &format!("{path}.{k}"), paths, all).map(|t| (k.clone(), t))
                })
                .collect();
            (!out.is_empty()).then_some(OwnedValue::Object(out))
        }
        _ => None,
    }
}

/// Every leaf of `v` as an exact value.
fn keyword_tree(v: &Value) -> Option<OwnedValue> {
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(OwnedValue::Bool(*b)),
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite()).map(OwnedValue::F64),
        Value::String(s) => match parse_date(s) {
            Some(d) => Some(OwnedValue::Date(d)),
            None if s.len() <= KEYWORD_MAX_LEN => Some(OwnedValue::Str(s.clone())),
            None => None,
        },
        Value::Array(items) => {
            let out: Vec<OwnedValue> = items.iter().filter_map(keyword_tree).collect();
            (!out.is_empty()).then_some(OwnedValue::Array(out))
        }
        Value::Object(map) => {
            let out: Vec<(String, OwnedValue)> = map
                .iter()
                .filter_map(|(k, i)| keyword_tree(i).map(|t| (k.clone(), t)))
                .collect();
            (!out.is_empty()).then_some(OwnedValue::Object(out))
        }
    }
}

/// RFC 3339 timestamps and plain `yyyy-mm-dd` dates (midnight UTC): the date forms dynamic
/// mapping recognises.
pub fn parse_date(s: &str) -> Option<DateTime> {
    use tantivy::time::format_description::well_known::Rfc3339;
    use tantivy::time::{Date, OffsetDateTime};
    let s = s.trim();
    if s.len() < 10 || !s.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    if let Ok(dt) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(DateTime::from_utc(dt));
    }
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year: i32 = s[0..4].parse().ok()?;
    let month: u8 = s[5..7].parse().ok()?;
    let day: u8 = s[8..10].parse().ok()?;
    let month = tantivy::time::Month::try_from(month).ok()?;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    Some(DateTime::from_utc(date.midnight().assume_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_recognised_in_both_forms() {
        assert_eq!(
            parse_date("2024-03-01").map(|d| d.into_timestamp_millis()),
            Some(1_709_251_200_000)
        );
        assert_eq!(
            parse_date("2024-03-01T00:00:01Z").map(|d| d.into_timestamp_millis()),
            Some(1_709_251_201_000)
        );
        assert_eq!(parse_date("2024-3-1"), None);
        assert_eq!(parse_date("hello world, long"), None);
    }

    #[test]
    fn search_fields_select_paths_and_their_children() {
        let p = TextPaths::new(Some(vec!["$.title".into(), "user".into()]));
        assert!(p.includes("title"));
        assert!(p.includes("user.name"));
        assert!(!p.includes("username"));
        assert!(!p.includes("body"));
    }

    #[test]
    fn non_json_values_are_text() {
        assert_eq!(
            parse_value(b"not json {"),
            Parsed::Other(Value::String("not json {".into()))
        );
        assert_eq!(parse_value(b"42"), Parsed::Other(Value::from(42)));
    }
}
