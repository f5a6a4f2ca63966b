//! A search request body (Elasticsearch's shape), validated into typed options.

use serde_json::{Map, Value};

use crate::dsl::FieldRef;
use crate::error::SearchError;

/// Largest `from + size` (Elasticsearch's `index.max_result_window`).
pub const MAX_RESULT_WINDOW: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    Score,
    Field { name: String, field: FieldRef },
}

#[derive(Debug, Clone, PartialEq)]
pub struct SortSpec {
    pub key: SortKey,
    pub order: Order,
    /// Documents without a value come first (`"missing": "_first"`); default last.
    pub missing_first: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TrackTotal {
    Exact,
    UpTo(u64),
    Off,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceFilter {
    pub enabled: bool,
    pub includes: Vec<String>,
    pub excludes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HighlightField {
    pub name: String,
    pub fragment_size: usize,
    pub number_of_fragments: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Highlight {
    pub fields: Vec<HighlightField>,
    pub pre_tag: String,
    pub post_tag: String,
}

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: Value,
    pub from: usize,
    pub size: usize,
    /// Empty: by score.
    pub sort: Vec<SortSpec>,
    pub explicit_sort: bool,
    pub source: SourceFilter,
    pub highlight: Option<Highlight>,
    pub track_total_hits: TrackTotal,
    pub track_scores: bool,
    pub search_after: Option<Vec<Value>>,
    pub min_score: Option<f32>,
    pub aggs: Option<Value>,
}

fn usize_of(v: &Value, key: &str) -> Result<usize, SearchError> {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(x) if x >= 0 => Ok(x as usize),
            Some(x) => Err(SearchError::bad(format!("[{key}] must be >= 0, got {x}"))),
            None => Err(SearchError::bad(format!(
                "[{key}] must be an integer, got {n}"
            ))),
        },
        Value::String(s) => s.parse::<usize>().map_err(|_| {
            SearchError::bad(format!(
                "[{key}] must be a non-negative integer, got \"{s}\""
            ))
        }),
        other => Err(SearchError::bad(format!(
            "[{key}] must be an integer, got {other}"
        ))),
    }
}

const KNOWN: &[&str] = &[
    "query",
    "from",
    "size",
    "sort",
    "_source",
    "highlight",
    "track_total_hits",
    "track_scores",
    "search_after",
    "min_score",
    "aggs",
    "aggregations",
    "index",
    "timeout",
    "explain",
    "version",
    "seq_no_primary_term",
    "stored_fields",
];

impl SearchRequest {
    /// Parse a request body; `Value::Null` (no body) is match_all.
    pub fn parse(body: &Value) -> Result<SearchRequest, SearchError> {
        let empty = Map::new();
        let obj = match body {
            Value::Null => &empty,
            Value::Object(o) => o,
            other => {
                return Err(SearchError::bad(format!(
                    "request body must be a JSON object, got {other}"
                )))
            }
        };
        for k in obj.keys() {
            if !KNOWN.contains(&k.as_str()) {
                return Err(SearchError::bad(format!(
                    "unknown key [{k}] in the search request"
                )));
            }
        }
        if obj.get("explain").and_then(Value::as_bool) == Some(true) {
            return Err(SearchError::bad("[explain] is not supported"));
        }
        let from = obj
            .get("from")
            .map(|v| usize_of(v, "from"))
            .transpose()?
            .unwrap_or(0);
        let size = obj
            .get("size")
            .map(|v| usize_of(v, "size"))
            .transpose()?
            .unwrap_or(10);
        if from.saturating_add(size) > MAX_RESULT_WINDOW {
            return Err(SearchError::bad(format!(
                "Result window is too large, from + size must be less than or equal to: [{MAX_RESULT_WINDOW}] but was [{}]",
                from.saturating_add(size)
            )));
        }
        let sort = match obj.get("sort") {
            None => Vec::new(),
            Some(v) => parse_sort(v)?,
        };
        let search_after = match obj.get("search_after") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => {
                if sort.is_empty() {
                    return Err(SearchError::bad("[search_after] requires [sort]"));
                }
                if a.len() != sort.len() {
                    return Err(SearchError::bad(format!(
                        "[search_after] has {} values but [sort] has {} keys",
                        a.len(),
                        sort.len()
                    )));
                }
                if from > 0 {
                    return Err(SearchError::bad(
                        "[from] must be 0 when [search_after] is used",
                    ));
                }
                Some(a.clone())
            }
            Some(other) => {
                return Err(SearchError::bad(format!(
                    "[search_after] must be an array, got {other}"
                )))
            }
        };
        let track_total_hits = match obj.get("track_total_hits") {
            None | Some(Value::Bool(true)) => TrackTotal::Exact,
            Some(Value::Bool(false)) => TrackTotal::Off,
            Some(Value::Number(n)) => match n.as_i64() {
                Some(-1) => TrackTotal::Exact,
                Some(x) if x >= 0 => TrackTotal::UpTo(x as u64),
                _ => {
                    return Err(SearchError::bad(format!(
                        "[track_total_hits] must be a boolean or a non-negative integer, got {n}"
                    )))
                }
            },
            Some(other) => {
                return Err(SearchError::bad(format!(
                    "[track_total_hits] must be a boolean or an integer, got {other}"
                )))
            }
        };
        let min_score = match obj.get("min_score") {
            None => None,
            Some(v) => Some(
                v.as_f64()
                    .ok_or_else(|| SearchError::bad("[min_score] must be a number"))?
                    as f32,
            ),
        };
        let aggs = match (obj.get("aggs"), obj.get("aggregations")) {
            (Some(_), Some(_)) => {
                return Err(SearchError::bad(
                    "use either [aggs] or [aggregations], not both",
                ))
            }
            (Some(a), None) | (None, Some(a)) => {
                if !a.is_object() {
                    return Err(SearchError::bad("[aggs] must be an object"));
                }
                Some(a.clone())
            }
            (None, None) => None,
        };
        Ok(SearchRequest {
            query: obj
                .get("query")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({"match_all": {}})),
            from,
            size,
            explicit_sort: !sort.is_empty(),
            sort,
            source: parse_source(obj.get("_source"))?,
            highlight: obj.get("highlight").map(parse_highlight).transpose()?,
            track_total_hits,
            track_scores: obj
                .get("track_scores")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            search_after,
            min_score,
            aggs,
        })
    }

    /// Whether hits need scores.
    pub fn scores(&self) -> bool {
        self.sort.is_empty()
            || self.track_scores
            || self.min_score.is_some()
            || self.sort.iter().any(|s| s.key == SortKey::Score)
    }
}

fn parse_order(v: &str) -> Result<Order, SearchError> {
    match v.to_ascii_lowercase().as_str() {
        "asc" => Ok(Order::Asc),
        "desc" => Ok(Order::Desc),
        _ => Err(SearchError::bad(format!(
            "[sort] order must be asc or desc, got \"{v}\""
        ))),
    }
}

fn sort_key(name: &str) -> Result<SortKey, SearchError> {
    Ok(match name {
        "_score" => SortKey::Score,
        "_doc" | "_shard_doc" => SortKey::Field {
            name: name.to_string(),
            field: FieldRef::Offset,
        },
        n => {
            let field = FieldRef::parse(n)?;
            if matches!(field, FieldRef::All | FieldRef::Id) {
                return Err(SearchError::bad(format!("[sort] cannot sort on [{n}]")));
            }
            SortKey::Field {
                name: n.to_string(),
                field,
            }
        }
    })
}

fn default_order(key: &SortKey) -> Order {
    match key {
        SortKey::Score => Order::Desc,
        SortKey::Field { .. } => Order::Asc,
    }
}

fn parse_sort(v: &Value) -> Result<Vec<SortSpec>, SearchError> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::new();
    for item in items {
        match item {
            Value::String(name) => {
                let key = sort_key(name)?;
                out.push(SortSpec {
                    order: default_order(&key),
                    key,
                    missing_first: false,
                });
            }
            Value::Object(o) if o.len() == 1 => {
                let (name, spec) = o.iter().next().expect("one entry");
                let key = sort_key(name)?;
                let (order, missing_first) = match spec {
                    Value::String(s) => (parse_order(s)?, false),
                    Value::Object(opts) => {
                        for k in opts.keys() {
                            if !matches!(
                                k.as_str(),
                                "order" | "missing" | "unmapped_type" | "mode" | "format"
                            ) {
                                return Err(SearchError::bad(format!(
                                    "[sort] option [{k}] is not supported"
                                )));
                            }
                        }
                        let order = match opts.get("order") {
                            Some(Value::String(s)) => parse_order(s)?,
                            None => default_order(&key),
                            Some(other) => {
                                return Err(SearchError::bad(format!(
                                    "[sort] order must be a string, got {other}"
                                )))
                            }
                        };
                        let missing_first = match opts.get("missing") {
                            None => false,
                            Some(Value::String(s)) if s == "_last" => false,
                            Some(Value::String(s)) if s == "_first" => true,
                            Some(other) => {
                                return Err(SearchError::bad(format!(
                                    "[sort] missing must be _first or _last, got {other}"
                                )))
                            }
                        };
                        (order, missing_first)
                    }
                    other => {
                        return Err(SearchError::bad(format!(
                            "[sort] bad sort spec for [{name}]: {other}"
                        )))
                    }
                };
                out.push(SortSpec {
                    key,
                    order,
                    missing_first,
                });
            }
            other => return Err(SearchError::bad(format!("[sort] bad sort entry {other}"))),
        }
    }
    Ok(out)
}

fn string_list(v: &Value, key: &str) -> Result<Vec<String>, SearchError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| SearchError::bad(format!("[{key}] must hold strings, got {x}")))
            })
            .collect(),
        other => Err(SearchError::bad(format!(
            "[{key}] must be a string or an array of strings, got {other}"
        ))),
    }
}

fn parse_source(v: Option<&Value>) -> Result<SourceFilter, SearchError> {
    let enabled = SourceFilter {
        enabled: true,
        ..Default::default()
    };
    Ok(match v {
        None | Some(Value::Bool(true)) => enabled,
        Some(Value::Bool(false)) => SourceFilter::default(),
        Some(v @ (Value::String(_) | Value::Array(_))) => SourceFilter {
            includes: string_list(v, "_source")?,
            ..enabled
        },
        Some(Value::Object(o)) => {
            for k in o.keys() {
                if !matches!(k.as_str(), "includes" | "excludes" | "include" | "exclude") {
                    return Err(SearchError::bad(format!("[_source] unknown option [{k}]")));
                }
            }
            let get = |a: &str, b: &str| -> Result<Vec<String>, SearchError> {
                match o.get(a).or_else(|| o.get(b)) {
                    None => Ok(Vec::new()),
                    Some(v) => string_list(v, "_source"),
                }
            };
            SourceFilter {
                enabled: true,
                includes: get("includes", "include")?,
                excludes: get("excludes", "exclude")?,
            }
        }
        Some(other) => {
            return Err(SearchError::bad(format!(
                "[_source] must be a boolean, string, array or object, got {other}"
            )))
        }
    })
}

fn parse_highlight(v: &Value) -> Result<Highlight, SearchError> {
    let o = v
        .as_object()
        .ok_or_else(|| SearchError::bad("[highlight] must be an object"))?;
    let tag = |key: &str, default: &str| -> Result<String, SearchError> {
        match o.get(key) {
            None => Ok(default.to_string()),
            Some(v) => Ok(string_list(v, key)?
                .into_iter()
                .next()
                .unwrap_or_else(|| default.to_string())),
        }
    };
    let num = |o: &Map<String, Value>, key: &str, default: usize| -> Result<usize, SearchError> {
        o.get(key)
            .map(|v| usize_of(v, key))
            .transpose()
            .map(|x| x.unwrap_or(default))
    };
    let fragment_size = num(o, "fragment_size", 100)?;
    let number_of_fragments = num(o, "number_of_fragments", 5)?;
    let mut fields = Vec::new();
    let mut push = |name: &str, opts: Option<&Map<String, Value>>| -> Result<(), SearchError> {
        let empty = Map::new();
        let opts = opts.unwrap_or(&empty);
        fields.push(HighlightField {
            name: name.to_string(),
            fragment_size: num(opts, "fragment_size", fragment_size)?,
            number_of_fragments: num(opts, "number_of_fragments", number_of_fragments)?,
        });
        Ok(())
    };
    match o.get("fields") {
        Some(Value::Object(f)) => {
            for (name, opts) in f {
                push(name, opts.as_object())?;
            }
        }
        Some(Value::Array(list)) => {
            for entry in list {
                let e = entry.as_object().ok_or_else(|| {
                    SearchError::bad("[highlight] [fields] entries must be objects")
                })?;
                for (name, opts) in e {
                    push(name, opts.as_object())?;
                }
            }
        }
        _ => return Err(SearchError::bad("[highlight] requires [fields]")),
    }
    Ok(Highlight {
        fields,
        pre_tag: tag("pre_tags", "<em>")?,
        post_tag: tag("post_tags", "</em>")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_limits() {
        let r = SearchRequest::parse(&Value::Null).unwrap();
        assert_eq!((r.from, r.size), (0, 10));
        assert!(SearchRequest::parse(&json!({"size": 10001})).is_err());
        assert!(SearchRequest::parse(&json!({"from": 9995, "size": 10})).is_err());
        assert!(SearchRequest::parse(&json!({"size": -1})).is_err());
        assert!(SearchRequest::parse(&json!({"size": "ten"})).is_err());
        assert!(SearchRequest::parse(&json!({"qurey": {}})).is_err());
        assert!(SearchRequest::parse(&json!([1])).is_err());
    }

    #[test]
    fn sort_forms() {
        let r = SearchRequest::parse(&json!({"sort": ["_score", {"price": "desc"}, {"ts": {"order": "asc", "missing": "_first"}}, "name.keyword"]})).unwrap();
        assert_eq!(r.sort.len(), 4);
        assert_eq!(r.sort[0].order, Order::Desc);
        assert_eq!(r.sort[1].order, Order::Desc);
        assert!(r.sort[2].missing_first);
        assert_eq!(r.sort[3].order, Order::Asc);
        assert!(SearchRequest::parse(&json!({"sort": [{"a": "up"}]})).is_err());
        assert!(SearchRequest::parse(&json!({"search_after": [1]})).is_err());
    }

    #[test]
    fn source_forms() {
        let r = SearchRequest::parse(&json!({"_source": false})).unwrap();
        assert!(!r.source.enabled);
        let r = SearchRequest::parse(&json!({"_source": {"includes": ["a.*"], "excludes": "b"}}))
            .unwrap();
        assert_eq!(r.source.includes, vec!["a.*"]);
        assert_eq!(r.source.excludes, vec!["b"]);
    }
}
