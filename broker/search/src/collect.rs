//! Collecting hits: every match is counted; the best `from + size` by the request's sort
//! (score or field values, then partition and offset so paging never overlaps) are kept per
//! segment and merged across segments, partitions and topics with the same order.

use std::cmp::Ordering;

use serde_json::Value;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, DynamicColumn};
use tantivy::query::Weight;
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader};

use crate::dsl::FieldRef;
use crate::request::{Order, SortKey, SortSpec};
use crate::schema;

/// A sort value as it compares across segments and indexes (dates are epoch milliseconds).
#[derive(Debug, Clone, PartialEq)]
pub enum SortValue {
    Missing,
    Num(f64),
    Str(String),
}

impl SortValue {
    pub fn to_json(&self) -> Value {
        match self {
            SortValue::Missing => Value::Null,
            SortValue::Num(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Value::from(*x as i64),
            SortValue::Num(x) => Value::from(*x),
            SortValue::Str(s) => Value::from(s.clone()),
        }
    }

    pub fn from_json(v: &Value) -> SortValue {
        match v {
            Value::Null => SortValue::Missing,
            Value::Number(n) => SortValue::Num(n.as_f64().unwrap_or(0.0)),
            Value::Bool(b) => SortValue::Num(f64::from(u8::from(*b))),
            Value::String(s) => match crate::dsl::date_math(s) {
                Some(d) if s.len() >= 10 => SortValue::Num(d.into_timestamp_millis() as f64),
                _ => SortValue::Str(s.clone()),
            },
            other => SortValue::Str(other.to_string()),
        }
    }
}

/// One collected hit; `keys` follow the request's sort specs.
#[derive(Debug, Clone)]
pub struct Hit {
    pub score: Option<Score>,
    pub keys: Vec<SortValue>,
    pub partition: i64,
    pub offset: i64,
    pub doc: DocAddress,
}

/// Compare two values of one sort key. Missing values go last (or first) whatever the order.
fn cmp_value(a: &SortValue, b: &SortValue, spec: &SortSpec) -> Ordering {
    let missing = |first: bool| {
        if first == spec.missing_first {
            Ordering::Less
        } else {
            Ordering::Greater
        }
    };
    let ord = match (a, b) {
        (SortValue::Missing, SortValue::Missing) => return Ordering::Equal,
        (SortValue::Missing, _) => return missing(true),
        (_, SortValue::Missing) => return missing(false),
        (SortValue::Num(x), SortValue::Num(y)) => x.total_cmp(y),
        (SortValue::Str(x), SortValue::Str(y)) => x.cmp(y),
        // Numbers before strings when one field holds both.
        (SortValue::Num(_), SortValue::Str(_)) => Ordering::Less,
        (SortValue::Str(_), SortValue::Num(_)) => Ordering::Greater,
    };
    match spec.order {
        Order::Asc => ord,
        Order::Desc => ord.reverse(),
    }
}

/// Order of hits within one index (the caller adds the topic as a final tiebreak).
pub fn cmp_hits(a: &Hit, b: &Hit, specs: &[SortSpec]) -> Ordering {
    if specs.is_empty() {
        let (x, y) = (a.score.unwrap_or(0.0), b.score.unwrap_or(0.0));
        return y
            .total_cmp(&x)
            .then(a.partition.cmp(&b.partition))
            .then(a.offset.cmp(&b.offset));
    }
    for (i, spec) in specs.iter().enumerate() {
        let o = cmp_value(&a.keys[i], &b.keys[i], spec);
        if o != Ordering::Equal {
            return o;
        }
    }
    a.partition.cmp(&b.partition).then(a.offset.cmp(&b.offset))
}

/// Whether `hit` sorts strictly after the `search_after` values.
fn after(hit: &Hit, after: &[SortValue], specs: &[SortSpec]) -> bool {
    for (i, spec) in specs.iter().enumerate() {
        match cmp_value(&hit.keys[i], &after[i], spec) {
            Ordering::Greater => return true,
            Ordering::Less => return false,
            Ordering::Equal => {}
        }
    }
    false
}

#[derive(Clone)]
pub struct TopHits {
    pub specs: Vec<SortSpec>,
    pub keep: usize,
    pub scoring: bool,
    pub search_after: Option<Vec<SortValue>>,
    pub min_score: Option<f32>,
    /// Whether every match must be counted.
    pub count_all: bool,
    /// The query skips documents that cannot reach the top when collected by relevance (a
    /// match over one field group, or a term: a score bound per document or block). Exact
    /// totals then come from a separate count, cheap for these queries, and the collection
    /// still prunes. Other queries score every match anyway, so one pass does both.
    pub prunes: bool,
}

pub struct TopHitsFruit {
    pub total: u64,
    pub hits: Vec<Hit>,
}

/// Reads one sort key's value for a document of one segment.
enum KeyReader {
    Score,
    I64(Column<i64>),
    Date(Column<tantivy::DateTime>),
    /// A JSON path may have a column per value type.
    Dynamic(Vec<DynamicColumn>),
    Absent,
}

impl KeyReader {
    fn open(spec: &SortSpec, reader: &SegmentReader) -> tantivy::Result<KeyReader> {
        let ff = reader.fast_fields();
        let SortKey::Field { field, .. } = &spec.key else {
            return Ok(KeyReader::Score);
        };
        Ok(match field {
            FieldRef::Partition => KeyReader::I64(ff.i64(schema::PARTITION)?),
            FieldRef::Offset => KeyReader::I64(ff.i64(schema::OFFSET)?),
            FieldRef::Timestamp => KeyReader::Date(ff.date(schema::TIMESTAMP)?),
            FieldRef::Text(path) | FieldRef::Keyword(path) => {
                let handles = ff.dynamic_column_handles(&format!("{}.{}", schema::KW, path))?;
                let mut cols = Vec::new();
                for h in handles {
                    cols.push(h.open()?);
                }
                KeyReader::Dynamic(cols)
            }
            FieldRef::Key | FieldRef::All | FieldRef::Id => KeyReader::Absent,
        })
    }

    fn value(&self, doc: DocId, score: Score, buf: &mut String) -> SortValue {
        match self {
            KeyReader::Score => SortValue::Num(f64::from(score)),
            KeyReader::I64(c) => c
                .first(doc)
                .map_or(SortValue::Missing, |v| SortValue::Num(v as f64)),
            KeyReader::Date(c) => c.first(doc).map_or(SortValue::Missing, |d| {
                SortValue::Num(d.into_timestamp_millis() as f64)
            }),
            KeyReader::Absent => SortValue::Missing,
            KeyReader::Dynamic(cols) => {
                for col in cols {
                    let v = match col {
                        DynamicColumn::F64(c) => c.first(doc).map(SortValue::Num),
                        DynamicColumn::I64(c) => c.first(doc).map(|v| SortValue::Num(v as f64)),
                        DynamicColumn::U64(c) => c.first(doc).map(|v| SortValue::Num(v as f64)),
                        DynamicColumn::Bool(c) => {
                            c.first(doc).map(|v| SortValue::Num(f64::from(u8::from(v))))
                        }
                        DynamicColumn::DateTime(c) => c
                            .first(doc)
                            .map(|d| SortValue::Num(d.into_timestamp_millis() as f64)),
                        DynamicColumn::Str(c) => c.term_ords(doc).next().and_then(|ord| {
                            buf.clear();
                            match c.ord_to_str(ord, buf) {
                                Ok(true) => Some(SortValue::Str(buf.clone())),
                                _ => None,
                            }
                        }),
                        _ => None,
                    };
                    if let Some(v) = v {
                        return v;
                    }
                }
                SortValue::Missing
            }
        }
    }
}

pub struct TopHitsSegment {
    segment: SegmentOrdinal,
    specs: Vec<SortSpec>,
    readers: Vec<KeyReader>,
    partition: Column<i64>,
    offset: Column<i64>,
    keep: usize,
    search_after: Option<Vec<SortValue>>,
    min_score: Option<f32>,
    total: u64,
    hits: Vec<Hit>,
    buf: String,
    /// Relevance order only: the score of the worst hit kept at the last trim. A document
    /// scoring below it cannot make the top, so it is counted and not looked at further (its
    /// sort keys and partition/offset are fast-field reads, most of a broad query's cost).
    floor: Option<Score>,
    by_score_only: bool,
}

impl Collector for TopHits {
    type Fruit = TopHitsFruit;
    type Child = TopHitsSegment;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<TopHitsSegment> {
        let readers = self
            .specs
            .iter()
            .map(|s| KeyReader::open(s, reader))
            .collect::<tantivy::Result<_>>()?;
        Ok(TopHitsSegment {
            segment,
            specs: self.specs.clone(),
            readers,
            partition: reader.fast_fields().i64(schema::PARTITION)?,
            offset: reader.fast_fields().i64(schema::OFFSET)?,
            keep: self.keep,
            search_after: self.search_after.clone(),
            min_score: self.min_score,
            total: 0,
            hits: Vec::new(),
            buf: String::new(),
            floor: None,
            by_score_only: self.specs.is_empty()
                || matches!(
                    self.specs.as_slice(),
                    [SortSpec {
                        key: SortKey::Score,
                        order: Order::Desc,
                        ..
                    }]
                ),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.scoring
    }

    fn collect_segment(
        &self,
        weight: &dyn Weight,
        segment_ord: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<TopHitsFruit> {
        let mut child = self.for_segment(segment_ord, reader)?;
        if self.keep == 0 && self.min_score.is_none() {
            // No hits wanted (`_count`, aggregation-only requests): only the total, and
            // counting needs no scores.
            if self.count_all {
                child.total = u64::from(weight.count(reader)?);
            }
            return Ok(child.harvest());
        }
        let alive = reader.alive_bitset();
        let is_alive = |doc: DocId| alive.is_none_or(|a| a.is_alive(doc));
        let prunable = self.scoring
            && (self.prunes || !self.count_all)
            && child.by_score_only
            && self.keep > 0
            && self.min_score.is_none()
            && self.search_after.is_none();
        if prunable {
            // Exact totals come from a count, which iterates without scoring (or reads the
            // document frequency), so the hits can still be collected with pruning.
            let counted = if self.count_all {
                Some(u64::from(weight.count(reader)?))
            } else {
                None
            };
            // The scorer passes only documents scoring above the threshold; one step below the
            // floor keeps the ties the exhaustive path keeps (broken by partition and offset).
            weight.for_each_pruning(Score::MIN, reader, &mut |doc, score| {
                if is_alive(doc) {
                    child.collect(doc, score);
                }
                child.floor.map_or(Score::MIN, just_below)
            })?;
            if let Some(total) = counted {
                child.total = total;
            }
        } else if self.scoring {
            weight.for_each(reader, &mut |doc, score| {
                if is_alive(doc) {
                    child.collect(doc, score);
                }
            })?;
        } else {
            weight.for_each_no_score(reader, &mut |docs| {
                for &doc in docs {
                    if is_alive(doc) {
                        child.collect(doc, 0.0);
                    }
                }
            })?;
        }
        Ok(child.harvest())
    }

    fn merge_fruits(&self, fruits: Vec<TopHitsFruit>) -> tantivy::Result<TopHitsFruit> {
        let mut total = 0;
        let mut hits = Vec::new();
        for f in fruits {
            total += f.total;
            hits.extend(f.hits);
        }
        hits.sort_by(|a, b| cmp_hits(a, b, &self.specs));
        hits.truncate(self.keep);
        Ok(TopHitsFruit { total, hits })
    }
}

/// The largest score below `score` (scores are finite; BM25's are not negative).
fn just_below(score: Score) -> Score {
    if score > 0.0 {
        Score::from_bits(score.to_bits() - 1)
    } else {
        Score::MIN
    }
}

impl SegmentCollector for TopHitsSegment {
    type Fruit = TopHitsFruit;

    fn collect(&mut self, doc: DocId, score: Score) {
        if let Some(min) = self.min_score {
            if score < min {
                return;
            }
        }
        self.total += 1;
        if self.keep == 0 || self.floor.is_some_and(|floor| score < floor) {
            return;
        }
        let keys: Vec<SortValue> = self
            .readers
            .iter()
            .map(|r| r.value(doc, score, &mut self.buf))
            .collect();
        let hit = Hit {
            score: Some(score),
            keys,
            partition: self.partition.first(doc).unwrap_or_default(),
            offset: self.offset.first(doc).unwrap_or_default(),
            doc: DocAddress::new(self.segment, doc),
        };
        if let Some(sa) = &self.search_after {
            if !after(&hit, sa, &self.specs) {
                return;
            }
        }
        self.hits.push(hit);
        // Keep memory bounded: trim to the best `keep` whenever twice that accumulates.
        if self.hits.len() >= self.keep.saturating_mul(2).max(64) {
            let specs = &self.specs;
            self.hits
                .select_nth_unstable_by(self.keep - 1, |a, b| cmp_hits(a, b, specs));
            self.hits.truncate(self.keep);
            if self.by_score_only {
                self.floor = self.hits[self.keep - 1].score;
            }
        }
    }

    fn harvest(mut self) -> TopHitsFruit {
        let specs = &self.specs;
        self.hits.sort_by(|a, b| cmp_hits(a, b, specs));
        self.hits.truncate(self.keep);
        TopHitsFruit {
            total: self.total,
            hits: self.hits,
        }
    }
}
