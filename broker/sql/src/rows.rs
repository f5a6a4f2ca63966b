//! Records of the hot buffer and their conversion into Arrow record batches under a topic's
//! current schema. Values are kept as produced, so a batch can be rebuilt losslessly after
//! the schema widens.

use std::sync::Arc;

use bytes::Bytes;
use chronik_index::IndexRecord;
use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder,
    StringViewBuilder, TimestampMicrosecondBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::buffer::Buffer;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::Value;

use crate::json_fields::{FieldValue, RecordValue};
use crate::schema::{parse_timestamp_micros, ColumnType, TopicSchema, VALUE};
use crate::SqlError;

/// One record waiting in a partition's hot buffer.
#[derive(Debug, Clone)]
pub struct HotRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    /// Headers as a JSON object text, `None` without headers.
    pub headers: Option<String>,
    pub value: Option<Bytes>,
    /// The stored batch `value` may be a slice of (see [`IndexRecord::batch`]).
    pub batch: Option<Bytes>,
}

impl HotRecord {
    pub fn from_index(r: &IndexRecord) -> Self {
        let headers = (!r.headers.is_empty()).then(|| {
            let map: serde_json::Map<String, Value> = r
                .headers
                .iter()
                .map(|h| {
                    let v = h.value.as_ref().map_or(Value::Null, |v| {
                        Value::String(String::from_utf8_lossy(v).into_owned())
                    });
                    (h.key.clone(), v)
                })
                .collect();
            Value::Object(map).to_string()
        });
        HotRecord {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.clone(),
            headers,
            value: r.value.clone(),
            batch: r.batch.clone(),
        }
    }

    /// Approximate memory held, for the seal and node budgets.
    pub fn size(&self) -> usize {
        64 + self.key.as_ref().map_or(0, Bytes::len)
            + self.headers.as_ref().map_or(0, String::len)
            + 2 * self.value.as_ref().map_or(0, Bytes::len)
    }
}

enum Builder {
    Boolean(BooleanBuilder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Utf8(StringColumn),
    Binary(BinaryBuilder),
}

impl Builder {
    fn new(t: ColumnType, rows: usize) -> Self {
        match t {
            ColumnType::Boolean => Builder::Boolean(BooleanBuilder::with_capacity(rows)),
            ColumnType::Int64 => Builder::Int64(Int64Builder::with_capacity(rows)),
            ColumnType::Float64 => Builder::Float64(Float64Builder::with_capacity(rows)),
            ColumnType::Timestamp => Builder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            ),
            ColumnType::Utf8 => Builder::Utf8(StringColumn::new(rows)),
            ColumnType::Binary => Builder::Binary(BinaryBuilder::with_capacity(rows, rows * 8)),
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Boolean(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
            Builder::Utf8(b) => b.views.append_null(),
            Builder::Binary(b) => b.append_null(),
        }
    }

    /// Append a JSON field's value. The schema was widened to fit the value before its row
    /// is appended, so a mismatch cannot happen; it would be stored as null.
    fn append_field(&mut self, v: &FieldValue<'_>, batch: Option<&Bytes>) {
        match (self, v) {
            (b, FieldValue::Null) => b.append_null(),
            (Builder::Boolean(b), FieldValue::Bool(x)) => b.append_value(*x),
            (Builder::Int64(b), FieldValue::I64(n)) => b.append_value(*n),
            (Builder::Int64(b), FieldValue::U64(n)) => b.append_option(i64::try_from(*n).ok()),
            (Builder::Float64(b), FieldValue::I64(n)) => b.append_value(*n as f64),
            (Builder::Float64(b), FieldValue::U64(n)) => b.append_value(*n as f64),
            (Builder::Float64(b), FieldValue::F64(n)) => b.append_value(*n),
            (Builder::Timestamp(b), FieldValue::Str(s)) => {
                b.append_option(parse_timestamp_micros(s))
            }
            (Builder::Utf8(b), FieldValue::Str(s)) => b.append(s, batch),
            (Builder::Utf8(b), other) => b.views.append_value(other.to_value().to_string()),
            (b, _) => b.append_null(),
        }
    }

    fn append_raw(&mut self, bytes: &[u8], batch: Option<&Bytes>) {
        match self {
            Builder::Utf8(b) => b.append(&String::from_utf8_lossy(bytes), batch),
            Builder::Binary(b) => b.append_value(bytes),
            b => b.append_null(),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Builder::Boolean(mut b) => Arc::new(b.finish()),
            Builder::Int64(mut b) => Arc::new(b.finish()),
            Builder::Float64(mut b) => Arc::new(b.finish()),
            Builder::Timestamp(mut b) => Arc::new(b.finish()),
            Builder::Utf8(mut b) => Arc::new(b.views.finish()),
            Builder::Binary(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Rows of one partition under one schema version, appended a record at a time (the indexer
/// parses each record once, for the schema and for its row) and finished into a batch.
pub struct BatchBuilder {
    partition: i32,
    schema: TopicSchema,
    arrow: SchemaRef,
    rows: usize,
    partitions: Int32Builder,
    offsets: Int64Builder,
    timestamps: TimestampMillisecondBuilder,
    keys: StringViewBuilder,
    headers: StringViewBuilder,
    tombstones: BooleanBuilder,
    columns: Vec<Builder>,
    value_column: Option<usize>,
    filled: Vec<bool>,
}

/// A string column whose long values point into the stored batches they were read from
/// (one data block per batch) instead of being copied; values with escapes, or from compressed
/// batches, are copied.
struct StringColumn {
    views: StringViewBuilder,
    /// The batch last added as a block: its address, length and block index.
    block: Option<(usize, usize, u32)>,
}

impl StringColumn {
    fn new(rows: usize) -> Self {
        StringColumn {
            views: StringViewBuilder::with_capacity(rows),
            block: None,
        }
    }

    fn append(&mut self, s: &str, batch: Option<&Bytes>) {
        // Strings of up to 12 bytes live inside the view itself.
        if s.len() > 12 {
            if let Some((block, offset)) = batch.and_then(|b| self.locate(s, b)) {
                if self
                    .views
                    .try_append_view(block, offset, s.len() as u32)
                    .is_ok()
                {
                    return;
                }
            }
        }
        self.views.append_value(s);
    }

    /// The block and offset of `s` when it lies inside `batch` (adding `batch` as a block).
    fn locate(&mut self, s: &str, batch: &Bytes) -> Option<(u32, u32)> {
        let start = batch.as_ptr() as usize;
        let at = s.as_ptr() as usize;
        if at < start || at + s.len() > start + batch.len() {
            return None;
        }
        let offset = u32::try_from(at - start).ok()?;
        let block = match self.block {
            Some((addr, len, block)) if addr == start && len == batch.len() => block,
            _ => {
                let block = self.views.append_block(Buffer::from(batch.clone()));
                self.block = Some((start, batch.len(), block));
                block
            }
        };
        Some((block, offset))
    }
}

impl std::fmt::Debug for BatchBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchBuilder")
            .field("partition", &self.partition)
            .field("version", &self.schema.version)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl BatchBuilder {
    pub fn new(partition: i32, schema: TopicSchema, capacity: usize) -> Self {
        let n = capacity;
        let columns: Vec<Builder> = schema
            .columns()
            .iter()
            .map(|(_, t)| Builder::new(*t, n))
            .collect();
        BatchBuilder {
            partition,
            arrow: schema.hot_arrow(),
            rows: 0,
            partitions: Int32Builder::with_capacity(n),
            offsets: Int64Builder::with_capacity(n),
            timestamps: TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC"),
            keys: StringViewBuilder::with_capacity(n),
            headers: StringViewBuilder::with_capacity(n),
            tombstones: BooleanBuilder::with_capacity(n),
            value_column: schema.position(VALUE),
            filled: vec![false; columns.len()],
            columns,
            schema,
        }
    }

    /// The schema version the rows are built under.
    pub fn version(&self) -> u64 {
        self.schema.version
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Append `r`, whose value read as `value`. The schema was widened to fit the value first,
    /// so a field that does not fit its column cannot happen; it would be stored as null.
    pub fn append(&mut self, r: &HotRecord, value: &RecordValue<'_>) {
        self.rows += 1;
        self.partitions.append_value(self.partition);
        self.offsets.append_value(r.offset);
        self.timestamps.append_value(r.timestamp);
        self.keys
            .append_option(r.key.as_ref().map(|k| String::from_utf8_lossy(k)));
        self.headers.append_option(r.headers.as_deref());
        self.tombstones.append_value(r.value.is_none());
        self.filled.iter_mut().for_each(|f| *f = false);
        match value {
            RecordValue::Tombstone => {}
            RecordValue::Object(fields) => {
                // The last of duplicate names wins, as in a parsed JSON object.
                for (name, v) in fields.iter().rev() {
                    if let Some(i) = self
                        .schema
                        .position(name)
                        .filter(|i| Some(*i) != self.value_column)
                    {
                        if !self.filled[i] {
                            self.columns[i].append_field(v, r.batch.as_ref());
                            self.filled[i] = true;
                        }
                    }
                }
            }
            RecordValue::Raw(bytes) => {
                if let Some(i) = self.value_column {
                    self.columns[i].append_raw(bytes, r.batch.as_ref());
                    self.filled[i] = true;
                }
            }
        }
        for (column, filled) in self.columns.iter_mut().zip(&self.filled) {
            if !filled {
                column.append_null();
            }
        }
    }

    pub fn finish(mut self) -> Result<RecordBatch, SqlError> {
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(self.partitions.finish()),
            Arc::new(self.offsets.finish()),
            Arc::new(self.timestamps.finish()),
            Arc::new(self.keys.finish()),
            Arc::new(self.headers.finish()),
            Arc::new(self.tombstones.finish()),
        ];
        arrays.extend(self.columns.into_iter().map(Builder::finish));
        RecordBatch::try_new(self.arrow, arrays)
            .map_err(|e| SqlError::Internal(format!("cannot build a hot batch: {e}")))
    }
}

/// A builder under `schema` already holding `records` (read again from their values).
pub fn builder_over(partition: i32, records: &[HotRecord], schema: TopicSchema) -> BatchBuilder {
    let mut b = BatchBuilder::new(partition, schema, records.len());
    for r in records {
        b.append(r, &RecordValue::read(r.value.as_deref()));
    }
    b
}

/// Build one batch of `records` of `partition` under `schema` (hot layout: strings as views,
/// as scans read them).
pub fn build_batch(
    partition: i32,
    records: &[HotRecord],
    schema: &TopicSchema,
) -> Result<RecordBatch, SqlError> {
    builder_over(partition, records, schema.clone()).finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Float64Type, Int64Type};

    fn rec(offset: i64, value: Option<&str>) -> HotRecord {
        HotRecord {
            offset,
            timestamp: 1000 + offset,
            key: Some(Bytes::from(format!("k{offset}"))),
            headers: None,
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            batch: None,
        }
    }

    /// Records whose values are slices of one stored batch, as the log hands them over.
    fn stored(values: &[&str]) -> Vec<HotRecord> {
        let batch = Bytes::from(values.concat());
        let mut at = 0;
        (0..)
            .zip(values)
            .map(|(offset, v)| {
                let value = batch.slice(at..at + v.len());
                at += v.len();
                HotRecord {
                    value: Some(value),
                    batch: Some(batch.clone()),
                    ..rec(offset, None)
                }
            })
            .collect()
    }

    #[test]
    fn long_strings_point_into_their_stored_batch() {
        let long = "a string longer than twelve bytes";
        let escaped = r#"{"s": "escaped \" quote in a long string"}"#;
        let mut records = stored(&[
            &format!(r#"{{"s": "{long}", "t": "short"}}"#),
            escaped,
            &format!(r#"{{"s": "{long} again"}}"#),
            "plain text that is not JSON",
        ]);
        records.push(rec(4, Some(&format!(r#"{{"s": "{long}, copied"}}"#))));
        let mut schema = TopicSchema::default();
        for r in &records {
            schema.observe_value(r.value.as_deref());
        }
        let batch = build_batch(0, &records, &schema).unwrap();
        let s = batch.column_by_name("s").unwrap().as_string_view();
        let got: Vec<_> = s.iter().collect();
        let expected_long = format!("{long} again");
        let expected_copied = format!("{long}, copied");
        assert_eq!(
            got,
            vec![
                Some(long),
                Some(r#"escaped " quote in a long string"#),
                Some(expected_long.as_str()),
                None,
                Some(expected_copied.as_str()),
            ]
        );
        assert_eq!(
            batch.column_by_name("t").unwrap().as_string_view().value(0),
            "short"
        );
        assert_eq!(
            batch
                .column_by_name("_value")
                .unwrap()
                .as_string_view()
                .value(3),
            "plain text that is not JSON"
        );
        // The stored batch is one block shared by the columns that point into it; the escaped
        // and the unbatched values were copied into blocks of their own.
        let source = records[0].batch.as_ref().unwrap().as_ptr();
        assert!(s.data_buffers().iter().any(|b| b.as_ptr() == source));
        let shared = s
            .data_buffers()
            .iter()
            .filter(|b| b.as_ptr() == source)
            .count();
        assert_eq!(shared, 1);
    }

    #[test]
    fn builds_typed_columns_with_nulls_for_missing_fields() {
        let records = vec![
            rec(0, Some(r#"{"a": 1, "b": "x"}"#)),
            rec(1, Some(r#"{"a": 2.5, "c": {"n": [1, 2]}}"#)),
            rec(2, None),
            rec(3, Some("not json")),
        ];
        let mut schema = TopicSchema::default();
        for r in &records {
            schema.observe_value(r.value.as_deref());
        }
        let batch = build_batch(7, &records, &schema).unwrap();
        assert_eq!(batch.num_rows(), 4);
        let a = batch
            .column_by_name("a")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert_eq!(a.value(0), 1.0);
        assert_eq!(a.value(1), 2.5);
        assert!(a.is_null(2));
        let c = batch.column_by_name("c").unwrap().as_string_view();
        assert_eq!(c.value(1), r#"{"n":[1,2]}"#);
        let v = batch.column_by_name("_value").unwrap().as_string_view();
        assert_eq!(v.value(3), "not json");
        assert!(v.is_null(0));
        let t = batch.column_by_name("_tombstone").unwrap().as_boolean();
        assert!(t.value(2) && !t.value(0));
        let o = batch
            .column_by_name("_offset")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(o.values().to_vec(), vec![0, 1, 2, 3]);
    }
}
