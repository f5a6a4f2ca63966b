//! [`SearchEngine`]: runs a search request over the partitions of one or more topics and
//! answers in Elasticsearch's response shape.
//!
//! Each partition is searched with the same translated query; hits are merged by the request's
//! order (score, or sort keys; then topic, partition and offset) before `from`/`size` apply, and
//! totals and aggregations add up over every partition, so paging is stable and complete.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Map, Value};
use tantivy::aggregation::agg_req::Aggregations;
use tantivy::aggregation::intermediate_agg_result::IntermediateAggregationResults;
use tantivy::aggregation::{
    AggContextParams, AggregationLimitsGuard, DistributedAggregationCollector,
};
use tantivy::query::TermQuery;
use tantivy::schema::{Type, Value as _};
use tantivy::{Executor, Searcher, TantivyDocument};

use crate::aggs;
use crate::analyzer;
use crate::collect::{cmp_hits, Hit, SortValue, TopHits};
use crate::combined::CombinedFieldsQuery;
use crate::dsl::QueryBuilder;
use crate::error::SearchError;
use crate::highlight;
use crate::indexer::SearchIndexer;
use crate::partition::PartitionIndex;
use crate::request::{SearchRequest, TrackTotal};
use crate::schema::{self, parse_value, Parsed};

/// Searches the indexes a [`SearchIndexer`] holds.
#[derive(Clone)]
pub struct SearchEngine {
    indexer: Arc<SearchIndexer>,
    /// One thread per core, shared by every request: a request's partitions run in parallel
    /// while concurrent requests queue here instead of oversubscribing the cores.
    executor: Executor,
}

impl std::fmt::Debug for SearchEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchEngine")
            .field("indexer", &self.indexer)
            .finish_non_exhaustive()
    }
}

/// One searchable topic as `_cat/indices` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSummary {
    pub topic: String,
    pub partitions: usize,
    pub docs: u64,
    pub deleted_docs: u64,
    pub size_bytes: u64,
}

struct PartitionResult {
    topic: usize,
    searcher: Searcher,
    hits: Vec<Hit>,
}

fn tantivy_error(e: tantivy::TantivyError) -> SearchError {
    match e {
        // Raised for requests the index cannot answer as asked (wrong value type for a
        // field, bad aggregation parameters): the caller's mistake, not ours.
        tantivy::TantivyError::InvalidArgument(m) => SearchError::BadRequest(m),
        tantivy::TantivyError::AggregationError(m) => SearchError::BadRequest(m.to_string()),
        tantivy::TantivyError::SchemaError(m) => SearchError::BadRequest(m),
        other => SearchError::Tantivy(other),
    }
}

impl SearchEngine {
    pub fn new(indexer: Arc<SearchIndexer>) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let executor = Executor::multi_thread(threads, "search-").unwrap_or_else(|e| {
            tracing::warn!(error = %e, "no search thread pool; partitions are searched one by one");
            Executor::single_thread()
        });
        SearchEngine { indexer, executor }
    }

    pub fn indexer(&self) -> &Arc<SearchIndexer> {
        &self.indexer
    }

    /// `POST /{topics}/_search`. Blocking (CPU and mmap reads): run it off the async workers.
    pub fn search(&self, topics: &[String], body: &Value) -> Result<Value, SearchError> {
        let started = Instant::now();
        let req = SearchRequest::parse(body)?;
        let (_schema, fields) = schema::build();
        let mut builder = QueryBuilder::new(&fields);
        let query = builder.build(&req.query)?;
        let agg_req: Option<Aggregations> = req.aggs.as_ref().map(aggs::parse).transpose()?;
        let search_after = req
            .search_after
            .as_ref()
            .map(|v| v.iter().map(SortValue::from_json).collect::<Vec<_>>());
        let top = TopHits {
            specs: req.sort.clone(),
            keep: req.from + req.size,
            scoring: req.scores(),
            search_after,
            min_score: req.min_score,
            count_all: req.track_total_hits != TrackTotal::Off,
            prunes: query.is::<CombinedFieldsQuery>() || query.is::<TermQuery>(),
        };
        let limits = || AggregationLimitsGuard::new(None, None);

        let targets: Vec<(usize, Arc<PartitionIndex>)> = topics
            .iter()
            .enumerate()
            .flat_map(|(ti, topic)| {
                self.indexer
                    .partitions_of(topic)
                    .into_iter()
                    .map(move |p| (ti, p))
            })
            .collect();
        let shards = targets.len();
        let search_one = |(ti, part): (usize, Arc<PartitionIndex>)| {
            let searcher = part.searcher();
            let (fruit, intermediate) = match &agg_req {
                None => (searcher.search(&*query, &top)?, None),
                Some(a) => {
                    let ctx = AggContextParams::new(limits(), part.index().tokenizers().clone());
                    let collector = DistributedAggregationCollector::from_aggs(a.clone(), ctx);
                    let (fruit, intermediate) =
                        searcher.search(&*query, &(top.clone(), collector))?;
                    (fruit, Some(intermediate))
                }
            };
            Ok((
                PartitionResult {
                    topic: ti,
                    searcher,
                    hits: fruit.hits,
                },
                fruit.total,
                intermediate,
            ))
        };
        // Partitions are independent indexes: search them on every core, then merge here in
        // a fixed order so the answer does not depend on which finished first.
        let executor = if shards > 1 {
            &self.executor
        } else {
            &Executor::SingleThread
        };
        let searched = executor
            .map(search_one, targets.into_iter())
            .map_err(tantivy_error)?;
        let mut total = 0u64;
        let mut results = Vec::with_capacity(searched.len());
        let mut agg_acc: Option<IntermediateAggregationResults> = None;
        for (result, part_total, intermediate) in searched {
            total += part_total;
            results.push(result);
            if let Some(intermediate) = intermediate {
                match &mut agg_acc {
                    None => agg_acc = Some(intermediate),
                    Some(acc) => acc.merge_fruits(intermediate).map_err(tantivy_error)?,
                }
            }
        }

        // Merge every partition's best hits in one order; topic index breaks remaining ties.
        let mut merged: Vec<(usize, usize, Hit)> = Vec::new();
        for (ri, r) in results.iter_mut().enumerate() {
            merged.extend(r.hits.drain(..).map(|h| (ri, r.topic, h)));
        }
        merged.sort_by(|a, b| match cmp_hits(&a.2, &b.2, &req.sort) {
            Ordering::Equal => a.1.cmp(&b.1),
            o => o,
        });
        let page: Vec<(usize, usize, Hit)> =
            merged.into_iter().skip(req.from).take(req.size).collect();

        let mut analyzer = analyzer::english(None);
        let mut hits_json = Vec::with_capacity(page.len());
        let mut max_score: Option<f32> = None;
        for (ri, ti, hit) in &page {
            let doc: TantivyDocument = results[*ri].searcher.doc(hit.doc).map_err(tantivy_error)?;
            let source_bytes = doc
                .get_first(fields.source)
                .and_then(|v| v.as_bytes())
                .unwrap_or_default();
            let key = doc
                .get_first(fields.key)
                .and_then(|v| v.as_bytes())
                .map(|k| String::from_utf8_lossy(k).into_owned());
            let timestamp = doc
                .get_first(fields.timestamp)
                .and_then(|v| v.as_datetime())
                .map(|d| d.into_timestamp_millis());
            let source = match parse_value(source_bytes) {
                Parsed::Object(m) => Value::Object(m),
                Parsed::Other(v) => v,
            };
            let score = if req.scores() { hit.score } else { None };
            if let Some(s) = score {
                max_score = Some(max_score.map_or(s, |m: f32| m.max(s)));
            }
            let mut h = Map::new();
            h.insert("_index".into(), Value::from(topics[*ti].clone()));
            h.insert(
                "_id".into(),
                Value::from(format!("{}-{}", hit.partition, hit.offset)),
            );
            h.insert("_score".into(), score.map_or(Value::Null, |s| json!(s)));
            if let Some(hl) = &req.highlight {
                if let Some(v) =
                    highlight::highlight(&mut analyzer, &source, hl, &builder.highlight)
                {
                    h.insert("highlight".into(), v);
                }
            }
            if req.source.enabled {
                h.insert(
                    "_source".into(),
                    highlight::filter_source(&source, &req.source.includes, &req.source.excludes),
                );
            }
            h.insert("_partition".into(), Value::from(hit.partition));
            h.insert("_offset".into(), Value::from(hit.offset));
            h.insert(
                "_timestamp".into(),
                timestamp.map_or(Value::Null, Value::from),
            );
            h.insert("_key".into(), key.map_or(Value::Null, Value::from));
            if req.explicit_sort {
                h.insert(
                    "sort".into(),
                    Value::Array(hit.keys.iter().map(SortValue::to_json).collect()),
                );
            }
            hits_json.push(Value::Object(h));
        }

        let mut hits = Map::new();
        match req.track_total_hits {
            TrackTotal::Exact => {
                hits.insert("total".into(), json!({"value": total, "relation": "eq"}));
            }
            TrackTotal::UpTo(limit) if total > limit => {
                hits.insert("total".into(), json!({"value": limit, "relation": "gte"}));
            }
            TrackTotal::UpTo(_) => {
                hits.insert("total".into(), json!({"value": total, "relation": "eq"}));
            }
            TrackTotal::Off => {}
        }
        hits.insert(
            "max_score".into(),
            max_score.map_or(Value::Null, |s| json!(s)),
        );
        hits.insert("hits".into(), Value::Array(hits_json));

        let mut out = Map::new();
        out.insert(
            "took".into(),
            Value::from(started.elapsed().as_millis() as u64),
        );
        out.insert("timed_out".into(), Value::Bool(false));
        out.insert(
            "_shards".into(),
            json!({"total": shards, "successful": shards, "skipped": 0, "failed": 0}),
        );
        out.insert("hits".into(), Value::Object(hits));
        if let Some(a) = agg_req {
            let intermediate = agg_acc.unwrap_or_default();
            let result = intermediate
                .into_final_result(a, limits())
                .map_err(tantivy_error)?;
            let v = serde_json::to_value(&result).map_err(|e| SearchError::Task(e.to_string()))?;
            out.insert("aggregations".into(), v);
        }
        Ok(Value::Object(out))
    }

    /// `POST /{topics}/_count`: documents matching `{"query": ...}` (all without a body).
    pub fn count(&self, topics: &[String], body: &Value) -> Result<Value, SearchError> {
        let query = match body {
            Value::Null => json!({"match_all": {}}),
            Value::Object(o) => {
                if let Some(k) = o.keys().find(|k| *k != "query") {
                    return Err(SearchError::bad(format!(
                        "unknown key [{k}] in the count request"
                    )));
                }
                o.get("query")
                    .cloned()
                    .unwrap_or_else(|| json!({"match_all": {}}))
            }
            other => {
                return Err(SearchError::bad(format!(
                    "request body must be a JSON object, got {other}"
                )))
            }
        };
        let r = self.search(topics, &json!({"query": query, "size": 0}))?;
        Ok(json!({"count": r["hits"]["total"]["value"], "_shards": r["_shards"]}))
    }

    /// `GET /{topic}/_mapping`: the fields seen so far, as dynamic mapping would type them.
    pub fn mapping(&self, topic: &str) -> Result<Value, SearchError> {
        let mut leaves: BTreeMap<String, &'static str> = BTreeMap::new();
        for part in self.indexer.partitions_of(topic) {
            let searcher = part.searcher();
            for seg in searcher.segment_readers() {
                for m in seg.fields_metadata().map_err(tantivy_error)? {
                    let (kind, path) = if let Some(p) = m.field_name.strip_prefix("kw.") {
                        let t = match m.typ {
                            Type::Str => "text",
                            Type::I64 | Type::U64 => "long",
                            Type::F64 => "double",
                            Type::Bool => "boolean",
                            Type::Date => "date",
                            _ => continue,
                        };
                        (t, p.to_string())
                    } else if let Some(p) = m.field_name.strip_prefix("body.") {
                        ("text", p.to_string())
                    } else {
                        continue;
                    };
                    // A typed exact value wins over text (dates are also analysed as text), and
                    // a number seen both as long and double is a double.
                    let entry = leaves.entry(path).or_insert(kind);
                    if (*entry == "text" && kind != "text")
                        || (*entry == "long" && kind == "double")
                    {
                        *entry = kind;
                    }
                }
            }
        }
        let mut props = Map::new();
        for (path, kind) in &leaves {
            let leaf = if *kind == "text" {
                json!({"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": schema::KEYWORD_MAX_LEN}}})
            } else {
                json!({"type": kind})
            };
            insert_path(&mut props, path, leaf);
        }
        props.insert(schema::PARTITION.into(), json!({"type": "integer"}));
        props.insert(schema::OFFSET.into(), json!({"type": "long"}));
        props.insert(
            schema::TIMESTAMP.into(),
            json!({"type": "date", "format": "epoch_millis"}),
        );
        props.insert(schema::KEY.into(), json!({"type": "keyword"}));
        Ok(json!({ topic: {"mappings": {"properties": props}} }))
    }

    /// Document counts and sizes of every open search index.
    pub fn indices(&self) -> Vec<IndexSummary> {
        self.indexer
            .topics()
            .into_iter()
            .map(|topic| {
                let parts: Vec<Arc<PartitionIndex>> = self.indexer.partitions_of(&topic);
                let mut s = IndexSummary {
                    topic: topic.clone(),
                    partitions: parts.len(),
                    docs: 0,
                    deleted_docs: 0,
                    size_bytes: 0,
                };
                for p in &parts {
                    let searcher = p.searcher();
                    s.docs += searcher.num_docs();
                    for seg in searcher.segment_readers() {
                        s.deleted_docs += u64::from(seg.num_deleted_docs());
                    }
                    s.size_bytes += dir_size(&p.dir);
                }
                s
            })
            .collect()
    }
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Put `leaf` at a dotted path of nested `properties`.
fn insert_path(props: &mut Map<String, Value>, path: &str, leaf: Value) {
    match path.split_once('.') {
        None => {
            props.entry(path.to_string()).or_insert(leaf);
        }
        Some((head, rest)) => {
            let node = props
                .entry(head.to_string())
                .or_insert_with(|| json!({"properties": {}}));
            if node.get("properties").is_none() {
                // A leaf and an object under one name: keep the object view.
                *node = json!({"properties": {}});
            }
            if let Some(Value::Object(inner)) = node.get_mut("properties") {
                insert_path(inner, rest, leaf);
            }
        }
    }
}
