//! JSON values to typed columns: the inference and widening rules, pure and separate from
//! Arrow building so they can be tested on their own.
//!
//! Every top-level field of a JSON object value becomes a column. Its type is the narrowest
//! that holds every value seen so far, and only ever widens:
//! - booleans → Boolean; integers → Int64; other numbers → Float64 (Int64 meeting Float64 is
//!   Float64);
//! - strings → Timestamp (µs, UTC) while every one parses as RFC 3339, else Utf8;
//! - objects and arrays → Utf8 holding their JSON text;
//! - anything else that conflicts → Utf8 (each value in its JSON text form).
//!
//! A value that is not a JSON object is kept whole in `_value` (Utf8 when valid UTF-8, Binary
//! once any value is not).

use std::collections::HashMap;
use std::sync::Arc;

use crate::json_fields::{FieldValue, RecordValue};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// A column type of a topic's JSON fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Boolean,
    Int64,
    Float64,
    Timestamp,
    Utf8,
    Binary,
}

impl ColumnType {
    /// The type of one top-level JSON value; `None` for null (which fits any column).
    pub fn of(value: &FieldValue<'_>) -> Option<ColumnType> {
        match value {
            FieldValue::Null => None,
            FieldValue::Bool(_) => Some(ColumnType::Boolean),
            FieldValue::I64(_) => Some(ColumnType::Int64),
            // Past i64::MAX: what serde_json's `is_i64` says too.
            FieldValue::U64(n) if i64::try_from(*n).is_ok() => Some(ColumnType::Int64),
            FieldValue::U64(_) | FieldValue::F64(_) => Some(ColumnType::Float64),
            FieldValue::Str(s) if parse_timestamp_micros(s).is_some() => {
                Some(ColumnType::Timestamp)
            }
            FieldValue::Str(_) | FieldValue::Nested(_) => Some(ColumnType::Utf8),
        }
    }

    /// The narrowest type holding values of both.
    pub fn widen(self, other: ColumnType) -> ColumnType {
        use ColumnType::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Int64, Float64) | (Float64, Int64) => Float64,
            (Binary, _) | (_, Binary) => Binary,
            _ => Utf8,
        }
    }

    pub fn data_type(self) -> DataType {
        match self {
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ColumnType::Utf8 => DataType::Utf8,
            ColumnType::Binary => DataType::Binary,
        }
    }

    /// Back from a stored file's column type; `None` for types this store never writes.
    pub fn from_data_type(t: &DataType) -> Option<ColumnType> {
        match t {
            DataType::Boolean => Some(ColumnType::Boolean),
            DataType::Int64 => Some(ColumnType::Int64),
            DataType::Float64 => Some(ColumnType::Float64),
            DataType::Timestamp(_, _) => Some(ColumnType::Timestamp),
            DataType::Utf8 => Some(ColumnType::Utf8),
            DataType::Binary => Some(ColumnType::Binary),
            _ => None,
        }
    }
}

/// RFC 3339 to microseconds since the epoch.
pub fn parse_timestamp_micros(s: &str) -> Option<i64> {
    // Cheap reject before chrono: RFC 3339 starts with a four-digit year and a dash.
    let b = s.as_bytes();
    if b.len() < 20 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return None;
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_micros())
}

/// Columns every table has, in this order, before the inferred ones.
pub const PARTITION: &str = "_partition";
pub const OFFSET: &str = "_offset";
pub const TIMESTAMP: &str = "_timestamp";
pub const KEY: &str = "_key";
pub const HEADERS: &str = "_headers";
/// Stored but not shown: whether the record is a tombstone (null value), for `T_latest`.
pub const TOMBSTONE: &str = "_tombstone";
/// Where values that are not JSON objects go.
pub const VALUE: &str = "_value";

pub const SYSTEM_COLUMNS: usize = 6;
/// Position of `_tombstone` in the stored schema.
pub const TOMBSTONE_INDEX: usize = 5;

fn system_fields() -> Vec<Field> {
    vec![
        Field::new(PARTITION, DataType::Int32, false),
        Field::new(OFFSET, DataType::Int64, false),
        Field::new(
            TIMESTAMP,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new(KEY, DataType::Utf8, true),
        Field::new(HEADERS, DataType::Utf8, true),
        Field::new(TOMBSTONE, DataType::Boolean, false),
    ]
}

/// Whether a JSON field name would shadow a system column (such fields are not stored).
pub fn is_reserved(name: &str) -> bool {
    matches!(
        name,
        PARTITION | OFFSET | TIMESTAMP | KEY | HEADERS | TOMBSTONE | VALUE
    )
}

/// The `_value` type of a value that is not a JSON object.
fn raw_type(bytes: &[u8]) -> ColumnType {
    if std::str::from_utf8(bytes).is_ok() {
        ColumnType::Utf8
    } else {
        ColumnType::Binary
    }
}

/// A topic's inferred columns; `version` changes whenever a column is added or widened.
#[derive(Debug, Clone, Default)]
pub struct TopicSchema {
    pub version: u64,
    columns: Vec<(String, ColumnType)>,
    /// Looked up for every field of every record indexed, hence the faster hasher.
    positions: HashMap<String, usize, ahash::RandomState>,
}

impl TopicSchema {
    pub fn columns(&self) -> &[(String, ColumnType)] {
        &self.columns
    }

    pub fn position(&self, name: &str) -> Option<usize> {
        self.positions.get(name).copied()
    }

    /// Fold one value of column `name` in; returns whether the schema changed.
    pub fn observe(&mut self, name: &str, t: ColumnType) -> bool {
        match self.positions.get(name) {
            Some(&i) => {
                let widened = self.columns[i].1.widen(t);
                if widened == self.columns[i].1 {
                    return false;
                }
                self.columns[i].1 = widened;
            }
            None => {
                self.positions.insert(name.to_string(), self.columns.len());
                self.columns.push((name.to_string(), t));
            }
        }
        self.version += 1;
        true
    }

    /// Fold in one record's value (`None` is a tombstone); returns whether the schema changed.
    pub fn observe_value(&mut self, value: Option<&[u8]>) -> bool {
        self.observe_record(&RecordValue::read(value))
    }

    /// Whether `value` fits the columns as they are (folding it in would change nothing).
    pub fn fits(&self, value: &RecordValue<'_>) -> bool {
        let fits = |name: &str, t: Option<ColumnType>| {
            t.is_none_or(|t| {
                self.positions
                    .get(name)
                    .is_some_and(|&i| self.columns[i].1.widen(t) == self.columns[i].1)
            })
        };
        match value {
            RecordValue::Tombstone => true,
            RecordValue::Object(fields) => fields
                .iter()
                .all(|(name, v)| is_reserved(name) || fits(name, ColumnType::of(v))),
            RecordValue::Raw(bytes) => fits(VALUE, Some(raw_type(bytes))),
        }
    }

    /// Fold in one record's parsed value; returns whether the schema changed.
    pub fn observe_record(&mut self, value: &RecordValue<'_>) -> bool {
        if self.fits(value) {
            return false;
        }
        match value {
            RecordValue::Tombstone => false,
            RecordValue::Object(fields) => {
                // New columns join in name order, as they always have (a JSON object's
                // keys used to come sorted); a later duplicate widens the column too.
                let mut sorted: Vec<_> = fields.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                let mut changed = false;
                for (name, v) in sorted {
                    if is_reserved(name) {
                        continue;
                    }
                    if let Some(t) = ColumnType::of(v) {
                        changed |= self.observe(name, t);
                    }
                }
                changed
            }
            RecordValue::Raw(bytes) => self.observe(VALUE, raw_type(bytes)),
        }
    }

    /// Fold in the columns of another schema (a stored file's).
    pub fn merge_arrow(&mut self, schema: &Schema) {
        for f in schema.fields().iter().skip(SYSTEM_COLUMNS) {
            if let Some(t) = ColumnType::from_data_type(f.data_type()) {
                self.observe(f.name(), t);
            }
        }
    }

    /// The stored schema: system columns (with `_tombstone`), then the inferred ones.
    pub fn stored_arrow(&self) -> SchemaRef {
        let mut fields = system_fields();
        fields.extend(
            self.columns
                .iter()
                .map(|(name, t)| Field::new(name, t.data_type(), true)),
        );
        Arc::new(Schema::new(fields))
    }

    /// The layout of hot batches: the stored schema in scan form, so a scan hands them on as
    /// they are and merging them moves string views, not the strings.
    pub fn hot_arrow(&self) -> SchemaRef {
        scan_form(&self.stored_arrow())
    }
}

/// The stored schema as scans produce it: strings as `Utf8View`. Parquet dictionary pages then
/// decode into views of the dictionary instead of copying every value, and GROUP BY and joins
/// on strings hash and compare the views (short strings inline): a GROUP BY over a
/// dictionary-encoded string column took 40% less time this way. Users still see `Utf8`
/// ([`type_name`]): the logical type is the same, only the in-memory layout differs.
pub fn scan_form(stored: &Schema) -> SchemaRef {
    let fields: Vec<Field> = stored
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, stored.metadata().clone()))
}

/// A column type as users see it in answers and table listings (SPEC: strings are `Utf8`,
/// whichever string layout a plan used).
pub fn type_name(t: &DataType) -> String {
    match t {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8.to_string(),
        other => other.to_string(),
    }
}

/// The schema tables show: the stored one without `_tombstone`.
pub fn visible(stored: &Schema) -> SchemaRef {
    let fields: Vec<Field> = stored
        .fields()
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != TOMBSTONE_INDEX)
        .map(|(_, f)| f.as_ref().clone())
        .collect();
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_read_strings_as_views_and_users_see_utf8() {
        let stored = Schema::new(vec![
            Field::new("city", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]);
        let scan = scan_form(&stored);
        assert_eq!(scan.field(0).data_type(), &DataType::Utf8View);
        assert_eq!(scan.field(1).data_type(), &DataType::Int64);
        assert_eq!(scan.field(0).is_nullable(), stored.field(0).is_nullable());
        let shown: Vec<String> = scan
            .fields()
            .iter()
            .map(|f| type_name(f.data_type()))
            .collect();
        assert_eq!(shown, ["Utf8", "Int64"]);
    }

    fn types(s: &TopicSchema) -> Vec<(&str, ColumnType)> {
        s.columns().iter().map(|(n, t)| (n.as_str(), *t)).collect()
    }

    #[test]
    fn infers_and_widens() {
        let mut s = TopicSchema::default();
        assert!(s.observe_value(Some(
            br#"{"a": 1, "b": "x", "c": true, "t": "2024-05-01T10:00:00Z", "n": null}"#
        )));
        assert_eq!(
            types(&s),
            vec![
                ("a", ColumnType::Int64),
                ("b", ColumnType::Utf8),
                ("c", ColumnType::Boolean),
                ("t", ColumnType::Timestamp)
            ]
        );
        assert!(!s.observe_value(Some(br#"{"a": 2}"#)));
        assert!(s.observe_value(Some(br#"{"a": 2.5}"#)));
        assert_eq!(s.columns()[0].1, ColumnType::Float64);
        assert!(
            !s.observe_value(Some(br#"{"a": 3}"#)),
            "int fits a float column"
        );
        s.observe_value(Some(br#"{"c": "yes", "t": "not a time", "o": {"x": [1]}}"#));
        assert_eq!(s.columns()[2].1, ColumnType::Utf8);
        assert_eq!(s.columns()[3].1, ColumnType::Utf8);
        assert_eq!(s.columns()[4], ("o".to_string(), ColumnType::Utf8));
        s.observe_value(Some(br#"{"a": "text"}"#));
        assert_eq!(s.columns()[0].1, ColumnType::Utf8);
    }

    #[test]
    fn non_objects_go_to_value_and_tombstones_change_nothing() {
        let mut s = TopicSchema::default();
        assert!(!s.observe_value(None));
        s.observe_value(Some(b"plain text"));
        assert_eq!(types(&s), vec![("_value", ColumnType::Utf8)]);
        s.observe_value(Some(b"[1,2]"));
        assert_eq!(types(&s), vec![("_value", ColumnType::Utf8)]);
        s.observe_value(Some(&[0xff, 0xfe]));
        assert_eq!(types(&s), vec![("_value", ColumnType::Binary)]);
        s.observe_value(Some(br#"{"_offset": 1, "_value": 2}"#));
        assert_eq!(s.columns().len(), 1, "reserved names are not columns");
    }

    #[test]
    fn timestamps_need_full_rfc3339() {
        assert!(parse_timestamp_micros("2024-05-01T10:00:00.123456+02:00").is_some());
        assert!(parse_timestamp_micros("2024-05-01").is_none());
        assert!(parse_timestamp_micros("2024-05-01 10:00").is_none());
        assert_eq!(
            parse_timestamp_micros("1970-01-01T00:00:01Z"),
            Some(1_000_000)
        );
    }

    #[test]
    fn stored_schema_merges_back() {
        let mut s = TopicSchema::default();
        s.observe_value(Some(br#"{"a": 1, "b": "2024-05-01T10:00:00Z"}"#));
        let stored = s.stored_arrow();
        let mut back = TopicSchema::default();
        back.merge_arrow(&stored);
        assert_eq!(types(&back), types(&s));
        assert_eq!(visible(&stored).fields().len(), stored.fields().len() - 1);
        assert_eq!(stored.field(TOMBSTONE_INDEX).name(), TOMBSTONE);
    }
}
