//! Term-level clauses: exact values (`term`, `terms`, `ids`), `range`, `exists`, and the
//! patterns `prefix` and `wildcard` (keyword paths through `crate::keyword`). Full-text
//! clauses are in `full_text`; `bool` and the shared helpers in the parent module.

use super::*;

impl QueryBuilder<'_> {
    pub(super) fn term(&mut self, body: &Value) -> Result<Q, SearchError> {
        let (name, v) = single_field("term", body)?;
        let field = FieldRef::parse(name)?;
        let (value, boost) = match v {
            Value::Object(o) => {
                check_keys(o, "term", &["value", "case_insensitive"])?;
                (
                    o.get("value")
                        .ok_or_else(|| SearchError::bad("[term] requires [value]"))?,
                    get_f32(o, "boost", "term")?,
                )
            }
            Value::Array(_) | Value::Null => {
                return Err(SearchError::bad(format!(
                    "[term] value for [{name}] must be a string, number or boolean"
                )))
            }
            v => (v, None),
        };
        Ok(boosted(self.exact_query(&field, value, "term")?, boost))
    }

    pub(super) fn terms(&mut self, body: &Value) -> Result<Q, SearchError> {
        let (name, v) = single_field("terms", body)?;
        let field = FieldRef::parse(name)?;
        let values = v.as_array().ok_or_else(|| {
            SearchError::bad(format!("[terms] value for [{name}] must be an array"))
        })?;
        let mut subs = Vec::new();
        for value in values {
            subs.push((Occur::Should, self.exact_query(&field, value, "terms")?));
        }
        if subs.is_empty() {
            return Ok(Box::new(EmptyQuery));
        }
        // Like Elasticsearch, terms is a filter: every match scores the same.
        let boost = get_f32(expect_object(body, "terms")?, "boost", "terms")?.unwrap_or(1.0);
        Ok(Box::new(ConstScoreQuery::new(
            Box::new(BooleanQuery::new(subs)),
            boost,
        )))
    }

    pub(super) fn range(&mut self, body: &Value) -> Result<Q, SearchError> {
        let (name, v) = single_field("range", body)?;
        let field = FieldRef::parse(name)?.exact();
        let o = expect_object(v, "range")?;
        check_keys(
            o,
            "range",
            &[
                "gt",
                "gte",
                "lt",
                "lte",
                "format",
                "time_zone",
                "from",
                "to",
                "include_lower",
                "include_upper",
            ],
        )?;
        let mut lower = Bound::Unbounded;
        let mut upper = Bound::Unbounded;
        for (k, val) in o {
            if val.is_null() {
                continue;
            }
            let incl = |key: &str| o.get(key).and_then(Value::as_bool).unwrap_or(true);
            match k.as_str() {
                "gt" => lower = Bound::Excluded(self.range_term(&field, val)?),
                "gte" => lower = Bound::Included(self.range_term(&field, val)?),
                "lt" => upper = Bound::Excluded(self.range_term(&field, val)?),
                "lte" => upper = Bound::Included(self.range_term(&field, val)?),
                "from" => {
                    lower = if incl("include_lower") {
                        Bound::Included(self.range_term(&field, val)?)
                    } else {
                        Bound::Excluded(self.range_term(&field, val)?)
                    }
                }
                "to" => {
                    upper = if incl("include_upper") {
                        Bound::Included(self.range_term(&field, val)?)
                    } else {
                        Bound::Excluded(self.range_term(&field, val)?)
                    }
                }
                _ => {}
            }
        }
        if matches!((&lower, &upper), (Bound::Unbounded, Bound::Unbounded)) {
            return self.exists_on(&field);
        }
        if let (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) =
            (&lower, &upper)
        {
            if a.typ() != b.typ() || a.value().json_path_type() != b.value().json_path_type() {
                return Err(SearchError::bad(format!(
                    "[range] bounds of [{name}] have different types"
                )));
            }
        }
        let boost = get_f32(o, "boost", "range")?.unwrap_or(1.0);
        Ok(Box::new(ConstScoreQuery::new(
            Box::new(RangeQuery::new(lower, upper)),
            boost,
        )))
    }

    pub(super) fn range_term(&self, field: &FieldRef, v: &Value) -> Result<Term, SearchError> {
        let bad = || SearchError::bad(format!("[range] bound {v} is not a number or date"));
        let f = self.fields;
        Ok(match field {
            FieldRef::Keyword(path) => {
                let mut t = self.kw_term(path);
                match v {
                    Value::Number(n) => t.append_type_and_fast_value(n.as_f64().ok_or_else(bad)?),
                    Value::String(s) => match date_math(s) {
                        Some(d) => t.append_type_and_fast_value(d),
                        None => match s.trim().parse::<f64>() {
                            Ok(x) => t.append_type_and_fast_value(x),
                            Err(_) => t.append_type_and_str(s),
                        },
                    },
                    _ => return Err(bad()),
                }
                t
            }
            FieldRef::Partition => Term::from_field_i64(f.partition, as_i64(v).ok_or_else(bad)?),
            FieldRef::Offset => Term::from_field_i64(f.offset, as_i64(v).ok_or_else(bad)?),
            FieldRef::Timestamp => Term::from_field_date(f.timestamp, as_date(v).ok_or_else(bad)?),
            _ => return Err(SearchError::bad("[range] is not supported on this field")),
        })
    }

    pub(super) fn exists_on(&self, field: &FieldRef) -> Result<Q, SearchError> {
        Ok(match field {
            FieldRef::Text(path) | FieldRef::Keyword(path) => {
                let mut text = Term::from_field_json_path(self.fields.body, path, false);
                text.append_type_and_str("");
                // A path exists when it has an exact value (fast column) or any text token
                // (strings too long for a keyword).
                Box::new(BooleanQuery::new(vec![
                    (
                        Occur::Should,
                        Box::new(ExistsQuery::new(format!("{}.{}", schema::KW, path), true)) as Q,
                    ),
                    (
                        Occur::Should,
                        Box::new(KeyPatternQuery::new(&text, ValuePattern::Any)),
                    ),
                ]))
            }
            FieldRef::Key => {
                let t = Term::from_field_bytes(self.fields.key, b"");
                Box::new(KeyPatternQuery::new(&t, ValuePattern::Any))
            }
            FieldRef::All
            | FieldRef::Partition
            | FieldRef::Offset
            | FieldRef::Timestamp
            | FieldRef::Id => Box::new(AllQuery),
        })
    }

    pub(super) fn exists(&mut self, body: &Value) -> Result<Q, SearchError> {
        let o = expect_object(body, "exists")?;
        check_keys(o, "exists", &["field"])?;
        let name = get_str(o, "field", "exists")?
            .ok_or_else(|| SearchError::bad("[exists] requires [field]"))?;
        let q = self.exists_on(&FieldRef::parse(name)?)?;
        Ok(Box::new(ConstScoreQuery::new(
            q,
            get_f32(o, "boost", "exists")?.unwrap_or(1.0),
        )))
    }

    pub(super) fn prefix_on(&mut self, field: &FieldRef, prefix: &str) -> Result<Q, SearchError> {
        let empty = match field {
            FieldRef::Text(_) | FieldRef::All => {
                self.highlight
                    .terms
                    .push((field.clone(), format!("{prefix}*")));
                self.text_term(field, "")
            }
            FieldRef::Keyword(path) => {
                let p = prefix.as_bytes().to_vec();
                return Ok(self.keyword_pattern(
                    path,
                    ValuePattern::Prefix(p.clone()),
                    LongPattern::Prefix(p),
                ));
            }
            FieldRef::Key => Term::from_field_bytes(self.fields.key, b""),
            _ => {
                return Err(SearchError::bad(
                    "[prefix] needs a text, keyword or _key field",
                ))
            }
        };
        Ok(Box::new(ConstScoreQuery::new(
            Box::new(KeyPatternQuery::new(
                &empty,
                ValuePattern::Prefix(prefix.as_bytes().to_vec()),
            )),
            1.0,
        )))
    }

    pub(super) fn string_leaf<'v>(
        clause: &str,
        v: &'v Value,
    ) -> Result<(&'v str, Option<f32>, bool), SearchError> {
        match v {
            Value::String(s) => Ok((s, None, false)),
            Value::Object(o) => {
                check_keys(
                    o,
                    clause,
                    &["value", "case_insensitive", "rewrite", "wildcard"],
                )?;
                let s = get_str(o, "value", clause)?
                    .or(get_str(o, "wildcard", clause)?)
                    .ok_or_else(|| SearchError::bad(format!("[{clause}] requires [value]")))?;
                let ci = o
                    .get("case_insensitive")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                Ok((s, get_f32(o, "boost", clause)?, ci))
            }
            other => Err(SearchError::bad(format!(
                "[{clause}] value must be a string, got {}",
                type_name(other)
            ))),
        }
    }

    pub(super) fn prefix(&mut self, body: &Value) -> Result<Q, SearchError> {
        let (name, v) = single_field("prefix", body)?;
        let field = FieldRef::parse(name)?;
        let (s, boost, _) = Self::string_leaf("prefix", v)?;
        // Text fields hold lowercased tokens; keyword fields hold the value as given.
        let s = match field {
            FieldRef::Text(_) | FieldRef::All => s.to_lowercase(),
            _ => s.to_string(),
        };
        Ok(boosted(self.prefix_on(&field, &s)?, boost))
    }

    pub(super) fn wildcard(&mut self, body: &Value) -> Result<Q, SearchError> {
        let (name, v) = single_field("wildcard", body)?;
        let field = FieldRef::parse(name)?;
        let (s, boost, ci) = Self::string_leaf("wildcard", v)?;
        let (empty, pattern) = match &field {
            FieldRef::Text(_) | FieldRef::All => (self.text_term(&field, ""), s.to_lowercase()),
            FieldRef::Keyword(_) => (self.text_term(&field, ""), s.to_string()),
            _ => return Err(SearchError::bad("[wildcard] needs a text or keyword field")),
        };
        let mut re = wildcard_regex(&pattern);
        if ci {
            re = format!("(?i){re}");
        }
        let regex = Arc::new(
            tantivy_fst::Regex::new(&re)
                .map_err(|e| SearchError::bad(format!("[wildcard] bad pattern \"{s}\": {e}")))?,
        );
        if let FieldRef::Keyword(path) = &field {
            let q = self.keyword_pattern(
                path,
                ValuePattern::Regex(regex.clone()),
                LongPattern::Regex(regex),
            );
            return Ok(boosted(q, boost));
        }
        let q = Box::new(ConstScoreQuery::new(
            Box::new(KeyPatternQuery::new(&empty, ValuePattern::Regex(regex))),
            1.0,
        ));
        Ok(boosted(q, boost))
    }

    /// A pattern over a keyword path: short values from the term dictionary, long (hashed)
    /// ones checked whole against the fast column. Constant score.
    pub(super) fn keyword_pattern(&self, path: &str, short: ValuePattern, long: LongPattern) -> Q {
        let mut empty = self.kw_term(path);
        empty.append_type_and_str("");
        let column = format!("{}.{path}", schema::KW);
        let long: DocPredicateQuery = LongValueQuery::new(&empty, column, long).into();
        Box::new(ConstScoreQuery::new(
            Box::new(BooleanQuery::new(vec![
                (
                    Occur::Should,
                    Box::new(KeyPatternQuery::keyword(&empty, short)) as Q,
                ),
                (Occur::Should, Box::new(long)),
            ])),
            1.0,
        ))
    }

    pub(super) fn ids(&mut self, body: &Value) -> Result<Q, SearchError> {
        let o = expect_object(body, "ids")?;
        check_keys(o, "ids", &["values"])?;
        let values = o
            .get("values")
            .and_then(Value::as_array)
            .ok_or_else(|| SearchError::bad("[ids] requires [values], an array"))?;
        let mut subs = Vec::new();
        for v in values {
            let id = v
                .as_str()
                .ok_or_else(|| SearchError::bad("[ids] values must be strings"))?;
            subs.push((Occur::Should, self.id_query(id)?));
        }
        Ok(Box::new(ConstScoreQuery::new(
            Box::new(BooleanQuery::new(subs)),
            get_f32(o, "boost", "ids")?.unwrap_or(1.0),
        )))
    }
}
