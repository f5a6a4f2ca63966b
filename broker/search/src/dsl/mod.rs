//! The Elasticsearch query DSL, translated to Tantivy queries.
//!
//! Field names follow dynamic mapping: `title` is the analysed text of a string field (and the
//! exact value of a number, date or boolean field), `title.keyword` the exact string, `_all`
//! (or `*`) every text field, and `_partition`, `_offset`, `_timestamp`, `_key`, `_id` the
//! record's coordinates. A clause this module does not know is refused by name, as is a known
//! clause with a parameter of the wrong type.

use std::ops::Bound;
use std::sync::Arc;

use serde_json::{Map, Value};
use tantivy::query::doc_predicate_query::DocPredicateQuery;
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, DisjunctionMaxQuery, EmptyQuery,
    ExistsQuery, FuzzyTermQuery, Occur, PhraseQuery, Query, RangeQuery, TermQuery,
};
use tantivy::schema::{IndexRecordOption, Term};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::DateTime;

use crate::analyzer;
use crate::automaton::{wildcard_regex, KeyPatternQuery, ValuePattern};
use crate::combined::{CombinedFieldsQuery, Length, TermGroup};
use crate::error::SearchError;
use crate::keyword::{self, LongPattern, LongValueQuery};
use crate::query_string;
use crate::schema::{self, Fields};

mod full_text;
mod term_level;

type Q = Box<dyn Query>;

/// Where a field name in a query points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldRef {
    /// Analysed text at a JSON path.
    Text(String),
    /// Every text field.
    All,
    /// Exact values at a JSON path.
    Keyword(String),
    Partition,
    Offset,
    Timestamp,
    Key,
    Id,
}

impl FieldRef {
    pub fn parse(name: &str) -> Result<FieldRef, SearchError> {
        Ok(match name {
            "" => return Err(SearchError::bad("empty field name")),
            "_all" | "*" => FieldRef::All,
            schema::PARTITION => FieldRef::Partition,
            schema::OFFSET => FieldRef::Offset,
            schema::TIMESTAMP => FieldRef::Timestamp,
            schema::KEY => FieldRef::Key,
            "_id" => FieldRef::Id,
            n => match n.strip_suffix(".keyword") {
                Some(path) if !path.is_empty() => FieldRef::Keyword(path.to_string()),
                _ => FieldRef::Text(n.to_string()),
            },
        })
    }

    /// The exact-value view of this field (what term, range, sort and aggregations use).
    fn exact(&self) -> FieldRef {
        match self {
            FieldRef::Text(p) => FieldRef::Keyword(p.clone()),
            other => other.clone(),
        }
    }
}

/// A text query's analysed terms per field, for highlighting.
#[derive(Debug, Default, Clone)]
pub struct QueryTerms {
    pub terms: Vec<(FieldRef, String)>,
}

/// Translates one request's query; owns the analyzer (which needs `&mut`).
pub struct QueryBuilder<'a> {
    fields: &'a Fields,
    analyzer: TextAnalyzer,
    pub highlight: QueryTerms,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn expect_object<'v>(v: &'v Value, what: &str) -> Result<&'v Map<String, Value>, SearchError> {
    v.as_object().ok_or_else(|| {
        SearchError::bad(format!("[{what}] expects an object, got {}", type_name(v)))
    })
}

/// `{ "field": value }` or `{ "field": {...}, "boost": ..}`: the one field entry of a
/// leaf clause.
fn single_field<'v>(clause: &str, v: &'v Value) -> Result<(&'v str, &'v Value), SearchError> {
    let obj = expect_object(v, clause)?;
    let mut entries = obj
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "boost" | "_name"));
    match (entries.next(), entries.next()) {
        (Some((k, v)), None) => Ok((k.as_str(), v)),
        (None, _) => Err(SearchError::bad(format!("[{clause}] query has no field"))),
        (Some(_), Some(_)) => Err(SearchError::bad(format!(
            "[{clause}] query doesn't support multiple fields, found [{}]",
            obj.keys().cloned().collect::<Vec<_>>().join(", ")
        ))),
    }
}

fn get_f32(obj: &Map<String, Value>, key: &str, clause: &str) -> Result<Option<f32>, SearchError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64().map(|f| f as f32)),
        Some(Value::String(s)) => s.parse::<f32>().map(Some).map_err(|_| {
            SearchError::bad(format!("[{clause}] [{key}] must be a number, got \"{s}\""))
        }),
        Some(v) => Err(SearchError::bad(format!(
            "[{clause}] [{key}] must be a number, got {}",
            type_name(v)
        ))),
    }
}

fn get_str<'v>(
    obj: &'v Map<String, Value>,
    key: &str,
    clause: &str,
) -> Result<Option<&'v str>, SearchError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(v) => Err(SearchError::bad(format!(
            "[{clause}] [{key}] must be a string, got {}",
            type_name(v)
        ))),
    }
}

fn check_keys(obj: &Map<String, Value>, clause: &str, allowed: &[&str]) -> Result<(), SearchError> {
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) && !matches!(k.as_str(), "boost" | "_name") {
            return Err(SearchError::bad(format!(
                "[{clause}] query does not support [{k}]"
            )));
        }
    }
    Ok(())
}

fn boosted(q: Q, boost: Option<f32>) -> Q {
    match boost {
        Some(b) if (b - 1.0).abs() > f32::EPSILON => Box::new(BoostQuery::new(q, b)),
        _ => q,
    }
}

/// The scalar text of a query value (`"text"`, a number or a boolean).
fn query_text(v: &Value, clause: &str) -> Result<String, SearchError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(SearchError::bad(format!(
            "[{clause}] query text must be a string, number or boolean, got {}",
            type_name(other)
        ))),
    }
}

/// Elasticsearch's `operator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Or,
    And,
}

fn operator(obj: &Map<String, Value>, key: &str, clause: &str) -> Result<Operator, SearchError> {
    match get_str(obj, key, clause)?
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("or") => Ok(Operator::Or),
        Some("and") => Ok(Operator::And),
        Some(o) => Err(SearchError::bad(format!(
            "[{clause}] [{key}] must be \"and\" or \"or\", got \"{o}\""
        ))),
    }
}

/// `minimum_should_match`: `3`, `-1`, `"75%"`, `"-25%"` resolved against `clauses`.
pub fn minimum_should_match(v: &Value, clauses: usize) -> Result<usize, SearchError> {
    let bad = || SearchError::bad(format!("[minimum_should_match] cannot parse {v}"));
    let n = clauses as i64;
    let resolved = match v {
        Value::Number(x) => {
            let x = x.as_i64().ok_or_else(bad)?;
            if x < 0 {
                n + x
            } else {
                x
            }
        }
        Value::String(s) => {
            let s = s.trim();
            if let Some(p) = s.strip_suffix('%') {
                let p: i64 = p.trim().parse().map_err(|_| bad())?;
                if p < 0 {
                    n - (n * -p) / 100
                } else {
                    (n * p) / 100
                }
            } else {
                let x: i64 = s.parse().map_err(|_| bad())?;
                if x < 0 {
                    n + x
                } else {
                    x
                }
            }
        }
        _ => return Err(bad()),
    };
    Ok(resolved.clamp(0, n) as usize)
}

impl<'a> QueryBuilder<'a> {
    pub fn new(fields: &'a Fields) -> Self {
        QueryBuilder {
            fields,
            analyzer: analyzer::english(None),
            highlight: QueryTerms::default(),
        }
    }

    /// Translate a query object (`{"match": {...}}`).
    pub fn build(&mut self, query: &Value) -> Result<Q, SearchError> {
        let obj = expect_object(query, "query")?;
        let mut entries = obj.iter();
        let (clause, body) = match (entries.next(), entries.next()) {
            (Some(e), None) => e,
            (None, _) => return Err(SearchError::bad("query object is empty")),
            (Some((a, _)), Some((b, _))) => {
                return Err(SearchError::bad(format!(
                    "a query object holds exactly one clause, found [{a}] and [{b}]"
                )))
            }
        };
        match clause.as_str() {
            "match_all" => {
                let o = expect_object(body, clause)?;
                check_keys(o, clause, &[])?;
                Ok(boosted(Box::new(AllQuery), get_f32(o, "boost", clause)?))
            }
            "match_none" => Ok(Box::new(EmptyQuery)),
            "match" => self.match_query(body),
            "match_phrase" => self.match_phrase(body),
            "multi_match" => self.multi_match(body),
            "combined_fields" => self.combined_fields(body),
            "query_string" => self.query_string(body, false),
            "simple_query_string" => self.query_string(body, true),
            "term" => self.term(body),
            "terms" => self.terms(body),
            "range" => self.range(body),
            "exists" => self.exists(body),
            "prefix" => self.prefix(body),
            "wildcard" => self.wildcard(body),
            "ids" => self.ids(body),
            "bool" => self.bool_query(body),
            "constant_score" => {
                let o = expect_object(body, clause)?;
                check_keys(o, clause, &["filter"])?;
                let filter = o
                    .get("filter")
                    .ok_or_else(|| SearchError::bad("[constant_score] requires [filter]"))?;
                let inner = self.build(filter)?;
                let boost = get_f32(o, "boost", clause)?.unwrap_or(1.0);
                Ok(Box::new(ConstScoreQuery::new(inner, boost)))
            }
            other => Err(SearchError::bad(format!(
                "unknown query [{other}]: supported are match_all, match_none, match, \
                 match_phrase, multi_match, combined_fields, query_string, simple_query_string, term, terms, \
                 range, exists, prefix, wildcard, ids, bool, constant_score"
            ))),
        }
    }

    fn text_term(&self, field: &FieldRef, token: &str) -> Term {
        match field {
            FieldRef::All => Term::from_field_text(self.fields.all, token),
            FieldRef::Text(path) => {
                let mut t = Term::from_field_json_path(self.fields.body, path, false);
                t.append_type_and_str(token);
                t
            }
            FieldRef::Keyword(path) => {
                let mut t = Term::from_field_json_path(self.fields.kw, path, false);
                t.append_type_and_str(&keyword::term_text(token));
                t
            }
            _ => Term::from_field_text(self.fields.all, token),
        }
    }

    fn kw_term(&self, path: &str) -> Term {
        Term::from_field_json_path(self.fields.kw, path, false)
    }

    /// Exact terms for `value` in an exact-valued field (several when a string could be a
    /// date or a number in the index).
    fn exact_terms(
        &self,
        field: &FieldRef,
        value: &Value,
        clause: &str,
    ) -> Result<Vec<Term>, SearchError> {
        let bad_type =
            || SearchError::bad(format!("[{clause}] value {value} does not fit field type"));
        let f = self.fields;
        Ok(match field.exact() {
            FieldRef::Keyword(path) => match value {
                Value::Bool(b) => {
                    let mut t = self.kw_term(&path);
                    t.append_type_and_fast_value(*b);
                    vec![t]
                }
                Value::Number(n) => {
                    let x = n.as_f64().ok_or_else(bad_type)?;
                    vec![self.kw_number(&path, x)]
                }
                Value::String(s) => {
                    let mut out = Vec::new();
                    let term_text = keyword::term_text(s);
                    let mut t = self.kw_term(&path);
                    t.append_type_and_str(&term_text);
                    out.push(t);
                    if term_text != s.as_str() {
                        // Indexes written before long values were hashed hold them whole.
                        let mut t = self.kw_term(&path);
                        t.append_type_and_str(s);
                        out.push(t);
                    }
                    if let Some(d) = schema::parse_date(s) {
                        let mut t = self.kw_term(&path);
                        t.append_type_and_fast_value(
                            d.truncate(tantivy::schema::DATE_TIME_PRECISION_INDEXED),
                        );
                        out.push(t);
                    }
                    if let Ok(x) = s.trim().parse::<f64>() {
                        out.push(self.kw_number(&path, x));
                    }
                    out
                }
                _ => return Err(bad_type()),
            },
            FieldRef::Partition => vec![Term::from_field_i64(
                f.partition,
                as_i64(value).ok_or_else(bad_type)?,
            )],
            FieldRef::Offset => vec![Term::from_field_i64(
                f.offset,
                as_i64(value).ok_or_else(bad_type)?,
            )],
            FieldRef::Timestamp => vec![Term::from_field_date(
                f.timestamp,
                as_date(value).ok_or_else(bad_type)?,
            )],
            FieldRef::Key => match value {
                Value::String(s) => vec![Term::from_field_bytes(f.key, s.as_bytes())],
                _ => return Err(bad_type()),
            },
            FieldRef::All => {
                let s = query_text(value, clause)?;
                vec![Term::from_field_text(f.all, &s)]
            }
            FieldRef::Text(_) | FieldRef::Id => return Err(bad_type()),
        })
    }

    /// Numbers are indexed in their canonical form (integral values as i64).
    fn kw_number(&self, path: &str, x: f64) -> Term {
        let mut t = self.kw_term(path);
        if x.fract() == 0.0 && x.abs() < 9.0e15 {
            t.append_type_and_fast_value(x as i64);
        } else {
            t.append_type_and_fast_value(x);
        }
        t
    }

    fn id_query(&self, id: &str) -> Result<Q, SearchError> {
        let (p, o) = id
            .split_once('-')
            .and_then(|(p, o)| Some((p.parse::<i64>().ok()?, o.parse::<i64>().ok()?)))
            .ok_or_else(|| {
                SearchError::bad(format!("[_id] \"{id}\" is not <partition>-<offset>"))
            })?;
        Ok(Box::new(BooleanQuery::new(vec![
            (
                Occur::Must,
                term_query(Term::from_field_i64(self.fields.partition, p)),
            ),
            (
                Occur::Must,
                term_query(Term::from_field_i64(self.fields.offset, o)),
            ),
        ])))
    }

    fn exact_query(&self, field: &FieldRef, value: &Value, clause: &str) -> Result<Q, SearchError> {
        if *field == FieldRef::Id {
            let id = value
                .as_str()
                .ok_or_else(|| SearchError::bad(format!("[{clause}] _id must be a string")))?;
            return self.id_query(id);
        }
        let mut terms = self.exact_terms(field, value, clause)?;
        // A plain string against a text field also matches its analysed tokens verbatim
        // (Elasticsearch's term query on a text field).
        if let (FieldRef::Text(_), Value::String(s)) = (field, value) {
            terms.push(self.text_term(field, s));
        }
        Ok(match terms.len() {
            1 => term_query(terms.pop().expect("one term")),
            _ => Box::new(BooleanQuery::new(
                terms
                    .into_iter()
                    .map(|t| (Occur::Should, term_query(t)))
                    .collect(),
            )),
        })
    }

    fn clause_list(&mut self, v: Option<&Value>) -> Result<Vec<Q>, SearchError> {
        match v {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(|i| self.build(i)).collect(),
            Some(v @ Value::Object(_)) => Ok(vec![self.build(v)?]),
            Some(other) => Err(SearchError::bad(format!(
                "[bool] clause must be an object or array, got {}",
                type_name(other)
            ))),
        }
    }

    fn bool_query(&mut self, body: &Value) -> Result<Q, SearchError> {
        let o = expect_object(body, "bool")?;
        check_keys(
            o,
            "bool",
            &[
                "must",
                "should",
                "must_not",
                "filter",
                "minimum_should_match",
                "adjust_pure_negative",
            ],
        )?;
        let must = self.clause_list(o.get("must"))?;
        let should = self.clause_list(o.get("should"))?;
        let must_not = self.clause_list(o.get("must_not"))?;
        let filter = self.clause_list(o.get("filter"))?;
        let required = !must.is_empty() || !filter.is_empty();
        let msm = match o.get("minimum_should_match") {
            Some(v) => minimum_should_match(v, should.len())?,
            None if required => 0,
            None => usize::from(!should.is_empty()),
        };
        if msm > should.len() {
            return Ok(Box::new(EmptyQuery));
        }
        let mut subs: Vec<(Occur, Q)> = Vec::new();
        subs.extend(must.into_iter().map(|q| (Occur::Must, q)));
        // A filter restricts without scoring.
        subs.extend(
            filter
                .into_iter()
                .map(|q| (Occur::Must, Box::new(ConstScoreQuery::new(q, 0.0)) as Q)),
        );
        subs.extend(must_not.into_iter().map(|q| (Occur::MustNot, q)));
        let should_count = should.len();
        subs.extend(should.into_iter().map(|q| (Occur::Should, q)));
        if !required && should_count == 0 {
            // Only must_not (or nothing): everything else matches, with score 0 as in
            // Elasticsearch; an empty bool matches all with score 1.
            let all: Q = if subs.is_empty() {
                Box::new(AllQuery)
            } else {
                Box::new(ConstScoreQuery::new(Box::new(AllQuery), 0.0))
            };
            subs.push((Occur::Must, all));
        }
        let q = BooleanQuery::with_minimum_required_clauses(subs, msm);
        Ok(boosted(Box::new(q), get_f32(o, "boost", "bool")?))
    }
}

fn term_query(t: Term) -> Q {
    Box::new(TermQuery::new(t, IndexRecordOption::Basic))
}

fn text_term_query(t: Term) -> Q {
    Box::new(TermQuery::new(t, IndexRecordOption::WithFreqs))
}

/// Combine per-term clauses with an operator and minimum_should_match.
fn combine(clauses: Vec<Q>, op: Operator, msm: Option<&Value>) -> Result<Q, SearchError> {
    let n = clauses.len();
    Ok(match op {
        Operator::And => Box::new(BooleanQuery::new(
            clauses.into_iter().map(|q| (Occur::Must, q)).collect(),
        )),
        Operator::Or => {
            let min = match msm {
                Some(v) => minimum_should_match(v, n)?.max(1),
                None => 1,
            };
            Box::new(BooleanQuery::with_minimum_required_clauses(
                clauses.into_iter().map(|q| (Occur::Should, q)).collect(),
                min,
            ))
        }
    })
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A date as epoch milliseconds (number) or a date string / date math.
fn as_date(v: &Value) -> Option<DateTime> {
    match v {
        Value::Number(n) => n.as_i64().map(DateTime::from_timestamp_millis),
        Value::String(s) => date_math(s).or_else(|| {
            s.trim()
                .parse::<i64>()
                .ok()
                .map(DateTime::from_timestamp_millis)
        }),
        _ => None,
    }
}

/// A date string, or Elasticsearch date math anchored at `now` (`now-1d`, `now+2h`, `now/d`).
pub fn date_math(s: &str) -> Option<DateTime> {
    let s = s.trim();
    let Some(rest) = s.strip_prefix("now") else {
        return schema::parse_date(s);
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis() as i64;
    let mut ms = now_ms;
    let mut chars = rest.chars().peekable();
    while let Some(op) = chars.next() {
        match op {
            '+' | '-' => {
                let mut num = String::new();
                while let Some(c) = chars.peek().filter(|c| c.is_ascii_digit()) {
                    num.push(*c);
                    chars.next();
                }
                let n: i64 = if num.is_empty() { 1 } else { num.parse().ok()? };
                let unit = unit_ms(chars.next()?)?;
                ms += if op == '+' { n * unit } else { -n * unit };
            }
            '/' => {
                let unit = unit_ms(chars.next()?)?;
                ms -= ms.rem_euclid(unit);
            }
            _ => return None,
        }
    }
    Some(DateTime::from_timestamp_millis(ms))
}

fn unit_ms(c: char) -> Option<i64> {
    Some(match c {
        's' => 1_000,
        'm' => 60_000,
        'h' | 'H' => 3_600_000,
        'd' => 86_400_000,
        'w' => 7 * 86_400_000,
        'M' => 30 * 86_400_000,
        'y' => 365 * 86_400_000,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn minimum_should_match_forms() {
        assert_eq!(minimum_should_match(&json!(2), 4).unwrap(), 2);
        assert_eq!(minimum_should_match(&json!(-1), 4).unwrap(), 3);
        assert_eq!(minimum_should_match(&json!("75%"), 4).unwrap(), 3);
        assert_eq!(minimum_should_match(&json!("-25%"), 4).unwrap(), 3);
        assert_eq!(minimum_should_match(&json!(9), 4).unwrap(), 4);
        assert!(minimum_should_match(&json!("lots"), 4).is_err());
    }

    #[test]
    fn field_names_resolve() {
        assert_eq!(
            FieldRef::parse("title").unwrap(),
            FieldRef::Text("title".into())
        );
        assert_eq!(
            FieldRef::parse("a.b.keyword").unwrap(),
            FieldRef::Keyword("a.b".into())
        );
        assert_eq!(FieldRef::parse("_timestamp").unwrap(), FieldRef::Timestamp);
        assert_eq!(FieldRef::parse("*").unwrap(), FieldRef::All);
    }

    #[test]
    fn date_math_rounds_and_shifts() {
        let d = date_math("now/d").unwrap().into_timestamp_millis();
        assert_eq!(d % 86_400_000, 0);
        let a = date_math("now-1d/d").unwrap().into_timestamp_millis();
        assert_eq!(d - a, 86_400_000);
        assert!(date_math("now-1x").is_none());
    }
}
