//! Full-text clauses: `match`, `match_phrase`, `multi_match`, `combined_fields`,
//! `query_string` and `simple_query_string`, with fuzziness and the analysed terms they record
//! for highlighting. Term-level clauses are in `term_level`; `bool` and the shared helpers in
//! the parent module.

use super::*;

/// ES `fuzziness`: 0, 1, 2 or AUTO (by term length: 0-2 exact, 3-5 one edit, longer two).
#[derive(Debug, Clone, Copy)]
enum Fuzziness {
    Fixed(u8),
    Auto,
}

fn fuzziness(obj: &Map<String, Value>, clause: &str) -> Result<Option<Fuzziness>, SearchError> {
    let Some(v) = obj.get("fuzziness") else {
        return Ok(None);
    };
    let bad = || {
        SearchError::bad(format!(
            "[{clause}] [fuzziness] must be 0, 1, 2 or AUTO, got {v}"
        ))
    };
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(d @ 0..=2) => Ok(Some(Fuzziness::Fixed(d as u8))),
            _ => Err(bad()),
        },
        Value::String(s) if s.eq_ignore_ascii_case("auto") || s.starts_with("AUTO:") => {
            Ok(Some(Fuzziness::Auto))
        }
        Value::String(s) => match s.parse::<u8>() {
            Ok(d @ 0..=2) => Ok(Some(Fuzziness::Fixed(d))),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

impl Fuzziness {
    fn distance(self, term: &str) -> u8 {
        match self {
            Fuzziness::Fixed(d) => d,
            Fuzziness::Auto => match term.chars().count() {
                0..=2 => 0,
                3..=5 => 1,
                _ => 2,
            },
        }
    }
}

/// Options shared by the match family when expanding one field.
#[derive(Debug, Clone, Copy)]
struct MatchOptions<'o> {
    operator: Operator,
    minimum_should_match: Option<&'o Value>,
    fuzziness: Option<Fuzziness>,
}

impl QueryBuilder<'_> {
    /// The analysed terms of `text` for a text field, recorded for highlighting.
    fn analyze(&mut self, field: &FieldRef, text: &str) -> Vec<(usize, String)> {
        let tokens = analyzer::analyze(&mut self.analyzer, text);
        for (_, t) in &tokens {
            self.highlight.terms.push((field.clone(), t.clone()));
        }
        tokens
    }

    /// One field of a match query.
    fn match_field(
        &mut self,
        field: &FieldRef,
        text: &Value,
        opts: MatchOptions<'_>,
        clause: &str,
    ) -> Result<Q, SearchError> {
        match field {
            FieldRef::Text(_) | FieldRef::All => {}
            // Exact-valued fields match their whole value, as in Elasticsearch.
            _ => return self.exact_query(field, text, clause),
        }
        if let (FieldRef::Text(path), Value::Number(_) | Value::Bool(_)) = (field, text) {
            return self.exact_query(&FieldRef::Keyword(path.clone()), text, clause);
        }
        let text = query_text(text, clause)?;
        if let (FieldRef::Text(_), None) = (field, opts.fuzziness) {
            // BM25 normalised by this field's own length (see combined.rs).
            return self.combined(&Value::String(text), &[(field.clone(), 1.0)], opts);
        }
        let tokens = self.analyze(field, &text);
        if tokens.is_empty() {
            return Ok(Box::new(EmptyQuery));
        }
        let clauses: Vec<Q> = tokens
            .iter()
            .map(|(_, tok)| {
                let term = self.text_term(field, tok);
                match opts.fuzziness.map(|f| f.distance(tok)) {
                    Some(d) if d > 0 => Box::new(FuzzyTermQuery::new(term, d, true)) as Q,
                    _ => text_term_query(term),
                }
            })
            .collect();
        if clauses.len() == 1 {
            return Ok(clauses.into_iter().next().expect("one clause"));
        }
        combine(clauses, opts.operator, opts.minimum_should_match)
    }

    pub(super) fn match_query(&mut self, body: &Value) -> Result<Q, SearchError> {
        let (name, v) = single_field("match", body)?;
        let field = FieldRef::parse(name)?;
        let (text, opts, boost) = match v {
            Value::Object(o) => {
                check_keys(
                    o,
                    "match",
                    &[
                        "query",
                        "operator",
                        "fuzziness",
                        "minimum_should_match",
                        "analyzer",
                        "zero_terms_query",
                        "lenient",
                        "prefix_length",
                        "max_expansions",
                        "fuzzy_transpositions",
                        "auto_generate_synonyms_phrase_query",
                    ],
                )?;
                let text = o
                    .get("query")
                    .ok_or_else(|| SearchError::bad("[match] requires [query]"))?;
                (
                    text,
                    MatchOptions {
                        operator: operator(o, "operator", "match")?,
                        minimum_should_match: o.get("minimum_should_match"),
                        fuzziness: fuzziness(o, "match")?,
                    },
                    get_f32(o, "boost", "match")?,
                )
            }
            v => (
                v,
                MatchOptions {
                    operator: Operator::Or,
                    minimum_should_match: None,
                    fuzziness: None,
                },
                None,
            ),
        };
        let q = self.match_field(&field, text, opts, "match")?;
        Ok(boosted(q, boost))
    }

    fn phrase_field(
        &mut self,
        field: &FieldRef,
        text: &Value,
        slop: u32,
    ) -> Result<Q, SearchError> {
        match field {
            FieldRef::Text(_) | FieldRef::All => {}
            _ => return self.exact_query(field, text, "match_phrase"),
        }
        let text = query_text(text, "match_phrase")?;
        let tokens = self.analyze(field, &text);
        Ok(match tokens.len() {
            0 => Box::new(EmptyQuery),
            1 => text_term_query(self.text_term(field, &tokens[0].1)),
            _ => {
                let terms: Vec<(usize, Term)> = tokens
                    .iter()
                    .map(|(pos, t)| (*pos, self.text_term(field, t)))
                    .collect();
                Box::new(PhraseQuery::new_with_offset_and_slop(terms, slop))
            }
        })
    }

    pub(super) fn match_phrase(&mut self, body: &Value) -> Result<Q, SearchError> {
        let (name, v) = single_field("match_phrase", body)?;
        let field = FieldRef::parse(name)?;
        let (text, slop, boost) = match v {
            Value::Object(o) => {
                check_keys(
                    o,
                    "match_phrase",
                    &["query", "slop", "analyzer", "zero_terms_query"],
                )?;
                let text = o
                    .get("query")
                    .ok_or_else(|| SearchError::bad("[match_phrase] requires [query]"))?;
                let slop = match o.get("slop") {
                    None => 0,
                    Some(s) => s.as_u64().filter(|s| *s <= 10_000).ok_or_else(|| {
                        SearchError::bad("[match_phrase] [slop] must be a non-negative integer")
                    })? as u32,
                };
                (text, slop, get_f32(o, "boost", "match_phrase")?)
            }
            v => (v, 0, None),
        };
        let q = self.phrase_field(&field, text, slop)?;
        Ok(boosted(q, boost))
    }

    /// `["title^3", "text"]` → fields with boosts; `*` and absent mean `_all`.
    fn field_list(
        &self,
        v: Option<&Value>,
        clause: &str,
    ) -> Result<Vec<(FieldRef, f32)>, SearchError> {
        let Some(v) = v else {
            return Ok(vec![(FieldRef::All, 1.0)]);
        };
        let list = v.as_array().ok_or_else(|| {
            SearchError::bad(format!("[{clause}] [fields] must be an array of strings"))
        })?;
        let mut out = Vec::new();
        for f in list {
            let s = f.as_str().ok_or_else(|| {
                SearchError::bad(format!(
                    "[{clause}] [fields] must be an array of strings, got {f}"
                ))
            })?;
            let (name, boost) = match s.split_once('^') {
                Some((n, b)) => (
                    n,
                    b.parse::<f32>().map_err(|_| {
                        SearchError::bad(format!("[{clause}] bad boost in field \"{s}\""))
                    })?,
                ),
                None => (s, 1.0),
            };
            out.push((FieldRef::parse(name)?, boost));
        }
        if out.is_empty() {
            out.push((FieldRef::All, 1.0));
        }
        Ok(out)
    }

    pub(super) fn multi_match(&mut self, body: &Value) -> Result<Q, SearchError> {
        let o = expect_object(body, "multi_match")?;
        check_keys(
            o,
            "multi_match",
            &[
                "query",
                "fields",
                "type",
                "operator",
                "minimum_should_match",
                "fuzziness",
                "tie_breaker",
                "slop",
                "analyzer",
                "lenient",
                "zero_terms_query",
            ],
        )?;
        let text = o
            .get("query")
            .ok_or_else(|| SearchError::bad("[multi_match] requires [query]"))?;
        let fields = self.field_list(o.get("fields"), "multi_match")?;
        let opts = MatchOptions {
            operator: operator(o, "operator", "multi_match")?,
            minimum_should_match: o.get("minimum_should_match"),
            fuzziness: fuzziness(o, "multi_match")?,
        };
        let tie_breaker = get_f32(o, "tie_breaker", "multi_match")?;
        let kind = get_str(o, "type", "multi_match")?.unwrap_or("best_fields");
        let q: Q = match kind {
            "best_fields" | "most_fields" => {
                let mut per_field = Vec::new();
                for (f, b) in &fields {
                    per_field.push(boosted(self.match_field(f, text, opts, "multi_match")?, Some(*b)));
                }
                if kind == "best_fields" {
                    Box::new(DisjunctionMaxQuery::with_tie_breaker(per_field, tie_breaker.unwrap_or(0.0)))
                } else {
                    Box::new(BooleanQuery::new(per_field.into_iter().map(|q| (Occur::Should, q)).collect()))
                }
            }
            "phrase" => {
                let slop = o.get("slop").and_then(Value::as_u64).unwrap_or(0) as u32;
                let mut per_field = Vec::new();
                for (f, b) in &fields {
                    per_field.push(boosted(self.phrase_field(f, text, slop)?, Some(*b)));
                }
                Box::new(DisjunctionMaxQuery::with_tie_breaker(per_field, tie_breaker.unwrap_or(0.0)))
            }
            // Term-centric: the fields are scored as one (BM25F); the operator and
            // minimum_should_match apply to terms, not to fields.
            "cross_fields" => self.combined(text, &fields, opts)?,
            other => {
                return Err(SearchError::bad(format!(
                    "[multi_match] type [{other}] is not supported: best_fields, most_fields, cross_fields, phrase"
                )))
            }
        };
        Ok(boosted(q, get_f32(o, "boost", "multi_match")?))
    }

    /// BM25F over `fields` (text fields only; exact-valued fields have no term frequencies).
    fn combined(
        &mut self,
        text: &Value,
        fields: &[(FieldRef, f32)],
        opts: MatchOptions<'_>,
    ) -> Result<Q, SearchError> {
        let text = query_text(text, "combined_fields")?;
        let tokens = analyzer::analyze(&mut self.analyzer, &text);
        let mut groups: Vec<TermGroup> = Vec::new();
        for (_, tok) in &tokens {
            let mut group = Vec::new();
            for (f, b) in fields {
                if matches!(f, FieldRef::Text(_) | FieldRef::All) {
                    self.highlight.terms.push((f.clone(), tok.clone()));
                    group.push((self.text_term(f, tok), *b));
                }
            }
            if !group.is_empty() {
                groups.push(group);
            }
        }
        if groups.is_empty() {
            return Ok(Box::new(EmptyQuery));
        }
        let mut length = Length::default();
        for (f, b) in fields {
            match f {
                FieldRef::Text(path) => {
                    length.columns.push((format!("{}.{path}", schema::LEN), *b))
                }
                FieldRef::All => length.fieldnorm = Some((self.fields.all, *b)),
                _ => {}
            }
        }
        let n = groups.len();
        let minimum = match opts.operator {
            Operator::And => n,
            Operator::Or => match opts.minimum_should_match {
                Some(v) => minimum_should_match(v, n)?.max(1),
                None => 1,
            },
        };
        Ok(Box::new(CombinedFieldsQuery::new(groups, length, minimum)))
    }

    pub(super) fn combined_fields(&mut self, body: &Value) -> Result<Q, SearchError> {
        let o = expect_object(body, "combined_fields")?;
        check_keys(
            o,
            "combined_fields",
            &[
                "query",
                "fields",
                "operator",
                "minimum_should_match",
                "zero_terms_query",
                "auto_generate_synonyms_phrase_query",
            ],
        )?;
        let text = o
            .get("query")
            .ok_or_else(|| SearchError::bad("[combined_fields] requires [query]"))?;
        let fields = self.field_list(o.get("fields"), "combined_fields")?;
        let opts = MatchOptions {
            operator: operator(o, "operator", "combined_fields")?,
            minimum_should_match: o.get("minimum_should_match"),
            fuzziness: None,
        };
        let q = self.combined(text, &fields, opts)?;
        Ok(boosted(q, get_f32(o, "boost", "combined_fields")?))
    }

    pub(super) fn query_string(&mut self, body: &Value, simple: bool) -> Result<Q, SearchError> {
        let clause = if simple {
            "simple_query_string"
        } else {
            "query_string"
        };
        let o = expect_object(body, clause)?;
        check_keys(
            o,
            clause,
            &[
                "query",
                "default_field",
                "fields",
                "default_operator",
                "analyzer",
                "lenient",
                "flags",
                "analyze_wildcard",
            ],
        )?;
        let text = get_str(o, "query", clause)?
            .ok_or_else(|| SearchError::bad(format!("[{clause}] requires [query]")))?;
        let fields = match (o.get("fields"), get_str(o, "default_field", clause)?) {
            (Some(f), _) => self.field_list(Some(f), clause)?,
            (None, Some(d)) => vec![(FieldRef::parse(d)?, 1.0)],
            (None, None) => vec![(FieldRef::All, 1.0)],
        };
        let op = operator(o, "default_operator", clause)?;
        let ast = query_string::parse(text, simple)?;
        let q = self.translate_ast(&ast, &fields, op)?;
        Ok(boosted(q, get_f32(o, "boost", clause)?))
    }

    fn translate_ast(
        &mut self,
        node: &query_string::Node,
        fields: &[(FieldRef, f32)],
        op: Operator,
    ) -> Result<Q, SearchError> {
        use query_string::Node;
        let over_fields = |this: &mut Self,
                           f: &mut dyn FnMut(&mut Self, &FieldRef) -> Result<Q, SearchError>|
         -> Result<Q, SearchError> {
            let mut alts = Vec::new();
            for (field, b) in fields {
                alts.push(boosted(f(this, field)?, Some(*b)));
            }
            Ok(if alts.len() == 1 {
                alts.pop().expect("one")
            } else {
                Box::new(DisjunctionMaxQuery::new(alts))
            })
        };
        match node {
            Node::Term { field, text } => match field {
                Some(name) => {
                    let f = FieldRef::parse(name)?;
                    self.match_field(
                        &f,
                        &Value::String(text.clone()),
                        MatchOptions {
                            operator: op,
                            minimum_should_match: None,
                            fuzziness: None,
                        },
                        "query_string",
                    )
                }
                None => over_fields(self, &mut |this, f| {
                    this.match_field(
                        f,
                        &Value::String(text.clone()),
                        MatchOptions {
                            operator: op,
                            minimum_should_match: None,
                            fuzziness: None,
                        },
                        "query_string",
                    )
                }),
            },
            Node::Phrase { field, text } => match field {
                Some(name) => {
                    let f = FieldRef::parse(name)?;
                    self.phrase_field(&f, &Value::String(text.clone()), 0)
                }
                None => over_fields(self, &mut |this, f| {
                    this.phrase_field(f, &Value::String(text.clone()), 0)
                }),
            },
            Node::Prefix { field, text } => match field {
                Some(name) => {
                    let f = FieldRef::parse(name)?;
                    self.prefix_on(&f, &text.to_lowercase())
                }
                None => over_fields(self, &mut |this, f| this.prefix_on(f, &text.to_lowercase())),
            },
            Node::Bool { clauses } => {
                let mut subs = Vec::new();
                let mut has_positive = false;
                for (occ, n) in clauses {
                    let q = self.translate_ast(n, fields, op)?;
                    let occur = match occ {
                        query_string::Occ::Must => Occur::Must,
                        query_string::Occ::MustNot => Occur::MustNot,
                        query_string::Occ::Should => Occur::Should,
                        query_string::Occ::Default => match op {
                            Operator::And => Occur::Must,
                            Operator::Or => Occur::Should,
                        },
                    };
                    has_positive |= occur != Occur::MustNot;
                    subs.push((occur, q));
                }
                if !has_positive {
                    subs.push((Occur::Must, Box::new(AllQuery) as Q));
                }
                Ok(Box::new(BooleanQuery::new(subs)))
            }
        }
    }
}
