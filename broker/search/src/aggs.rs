//! Aggregations: the Elasticsearch request, with field names mapped onto the index's fast
//! columns, run by Tantivy per partition and merged across partitions and topics.

use serde_json::{Map, Value};
use tantivy::aggregation::agg_req::Aggregations;

use crate::dsl::FieldRef;
use crate::error::SearchError;
use crate::schema;

const SUPPORTED: &[&str] = &[
    "terms",
    "range",
    "histogram",
    "date_histogram",
    "avg",
    "sum",
    "min",
    "max",
    "value_count",
    "cardinality",
    "stats",
    "extended_stats",
    "percentiles",
];

/// The fast column an aggregation over `name` reads.
fn column(name: &str) -> Result<String, SearchError> {
    Ok(match FieldRef::parse(name)? {
        FieldRef::Text(p) | FieldRef::Keyword(p) => format!("{}.{p}", schema::KW),
        FieldRef::Partition => schema::PARTITION.to_string(),
        FieldRef::Offset => schema::OFFSET.to_string(),
        FieldRef::Timestamp => schema::TIMESTAMP.to_string(),
        FieldRef::Key | FieldRef::All | FieldRef::Id => {
            return Err(SearchError::bad(format!("cannot aggregate on [{name}]")))
        }
    })
}

/// Calendar minutes, hours and days (in UTC) are fixed lengths; weeks, months, quarters and
/// years are not, and are refused by the aggregation with a message saying so.
fn calendar_to_fixed(params: &mut Map<String, Value>) {
    let fixed = match params.get("calendar_interval").and_then(Value::as_str) {
        Some("minute" | "1m") => "1m",
        Some("hour" | "1h") => "1h",
        Some("day" | "1d") => "1d",
        _ => return,
    };
    params.remove("calendar_interval");
    params.insert("fixed_interval".into(), Value::from(fixed));
}

fn rewrite_level(aggs: &Value, depth: usize) -> Result<Value, SearchError> {
    let obj = aggs
        .as_object()
        .ok_or_else(|| SearchError::bad("[aggs] must be an object of named aggregations"))?;
    let mut out = Map::new();
    for (name, agg) in obj {
        let body = agg
            .as_object()
            .ok_or_else(|| SearchError::bad(format!("aggregation [{name}] must be an object")))?;
        let mut new_body = Map::new();
        let mut kinds = 0;
        for (k, v) in body {
            match k.as_str() {
                "aggs" | "aggregations" => {
                    if depth >= 3 {
                        return Err(SearchError::bad(format!(
                            "aggregation [{name}] nests too deep (at most 3 levels)"
                        )));
                    }
                    new_body.insert("aggs".into(), rewrite_level(v, depth + 1)?);
                }
                "meta" => {
                    new_body.insert(k.clone(), v.clone());
                }
                kind if SUPPORTED.contains(&kind) => {
                    kinds += 1;
                    let mut params = v.as_object().cloned().ok_or_else(|| {
                        SearchError::bad(format!(
                            "[{kind}] of aggregation [{name}] must be an object"
                        ))
                    })?;
                    match params.get("field") {
                        Some(Value::String(f)) => {
                            let col = column(f)?;
                            params.insert("field".into(), Value::String(col));
                        }
                        Some(other) => {
                            return Err(SearchError::bad(format!(
                                "[{kind}] [field] of aggregation [{name}] must be a string, got {other}"
                            )))
                        }
                        None => {
                            return Err(SearchError::bad(format!(
                                "[{kind}] aggregation [{name}] requires [field]"
                            )))
                        }
                    }
                    if kind == "date_histogram" {
                        calendar_to_fixed(&mut params);
                    }
                    new_body.insert(kind.to_string(), Value::Object(params));
                }
                other => {
                    return Err(SearchError::bad(format!(
                        "aggregation type [{other}] (in [{name}]) is not supported; supported: {}",
                        SUPPORTED.join(", ")
                    )))
                }
            }
        }
        if kinds != 1 {
            return Err(SearchError::bad(format!(
                "aggregation [{name}] must have exactly one type"
            )));
        }
        out.insert(name.clone(), Value::Object(new_body));
    }
    Ok(Value::Object(out))
}

/// Translate an `aggs` request into Tantivy's aggregation request.
pub fn parse(aggs: &Value) -> Result<Aggregations, SearchError> {
    let rewritten = rewrite_level(aggs, 1)?;
    serde_json::from_value(rewritten).map_err(|e| SearchError::bad(format!("[aggs] {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_map_to_columns_and_unknown_types_are_refused() {
        let a = rewrite_level(
            &json!({"by": {"terms": {"field": "status.keyword"}, "aggs": {"p": {"avg": {"field": "price"}}}}}),
            1,
        )
        .unwrap();
        assert_eq!(a["by"]["terms"]["field"], "kw.status");
        assert_eq!(a["by"]["aggs"]["p"]["avg"]["field"], "kw.price");
        let a = rewrite_level(
            &json!({"d": {"date_histogram": {"field": "ts", "calendar_interval": "day"}}}),
            1,
        )
        .unwrap();
        assert_eq!(a["d"]["date_histogram"]["fixed_interval"], "1d");
        assert!(a["d"]["date_histogram"].get("calendar_interval").is_none());
        let err = rewrite_level(&json!({"x": {"geo_bounds": {"field": "loc"}}}), 1).unwrap_err();
        assert!(err.to_string().contains("geo_bounds"), "{err}");
        assert!(parse(&json!({"x": {"terms": {"field": "a", "size": "many"}}})).is_err());
    }
}
