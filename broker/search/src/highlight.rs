//! Highlighting: a hit's field text with the query's matching terms wrapped in tags.
//!
//! The text is re-analysed with the index analyzer, so a token is marked exactly when its
//! indexed form is one of the query's terms for that field (or a prefix query's prefix).

use serde_json::{Map, Value};
use tantivy::tokenizer::TextAnalyzer;

use crate::dsl::{FieldRef, QueryTerms};
use crate::request::{Highlight, HighlightField};

/// Glob match with `*` (field name patterns).
pub fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            if !text.starts_with(head) {
                return false;
            }
            let rest = &text[head.len()..];
            (0..=rest.len())
                .filter(|i| rest.is_char_boundary(*i))
                .any(|i| glob(tail, &rest[i..]))
        }
    }
}

/// Every string leaf of `source` with its dotted path.
pub fn string_leaves<'v>(source: &'v Value, prefix: &str, out: &mut Vec<(String, &'v str)>) {
    match source {
        Value::String(s) => out.push((prefix.to_string(), s)),
        Value::Array(items) => items.iter().for_each(|i| string_leaves(i, prefix, out)),
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                string_leaves(v, &path, out);
            }
        }
        _ => {}
    }
}

struct Match {
    from: usize,
    to: usize,
}

fn term_matches(token: &str, wanted: &[&str]) -> bool {
    wanted.iter().any(|w| match w.strip_suffix('*') {
        Some(prefix) => token.starts_with(prefix),
        None => *w == token,
    })
}

/// Highlight one text; `None` when nothing in it matches.
fn highlight_text(
    analyzer: &mut TextAnalyzer,
    text: &str,
    wanted: &[&str],
    field: &HighlightField,
    tags: (&str, &str),
) -> Option<Vec<String>> {
    let mut matches = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        let t = stream.token();
        if term_matches(&t.text, wanted) {
            matches.push(Match {
                from: t.offset_from,
                to: t.offset_to,
            });
        }
    }
    if matches.is_empty() {
        return None;
    }
    let mark = |from: usize, to: usize| -> String {
        let mut out = String::new();
        let mut at = from;
        for m in matches.iter().filter(|m| m.from >= from && m.to <= to) {
            out.push_str(&text[at..m.from]);
            out.push_str(tags.0);
            out.push_str(&text[m.from..m.to]);
            out.push_str(tags.1);
            at = m.to;
        }
        out.push_str(&text[at..to]);
        out
    };
    if field.number_of_fragments == 0 {
        return Some(vec![mark(0, text.len())]);
    }
    // Fragments of about fragment_size bytes, each starting a little before its first match
    // at a word boundary, never overlapping.
    let size = field.fragment_size.max(1);
    let mut fragments = Vec::new();
    let mut covered = 0;
    for m in &matches {
        if m.from < covered {
            continue;
        }
        let lead = size / 4;
        let mut start = m.from.saturating_sub(lead).max(covered);
        while start > covered && !text.is_char_boundary(start) {
            start -= 1;
        }
        if let Some(ws) = text[start..m.from].find(char::is_whitespace) {
            if start > 0 {
                start += ws + 1;
            }
        }
        let mut end = (start + size).max(m.to).min(text.len());
        while end < text.len() && !text.is_char_boundary(end) {
            end += 1;
        }
        if end < text.len() {
            if let Some(ws) = text[m.to..end].rfind(char::is_whitespace) {
                end = m.to + ws;
            }
        }
        // Never cut a match in half.
        if let Some(cut) = matches.iter().find(|x| x.from < end && x.to > end) {
            end = cut.to;
        }
        fragments.push(mark(start, end).trim().to_string());
        covered = end;
        if fragments.len() == field.number_of_fragments {
            break;
        }
    }
    Some(fragments)
}

/// The `highlight` object of one hit.
pub fn highlight(
    analyzer: &mut TextAnalyzer,
    source: &Value,
    spec: &Highlight,
    terms: &QueryTerms,
) -> Option<Value> {
    let mut leaves = Vec::new();
    string_leaves(source, "", &mut leaves);
    let mut out = Map::new();
    for field in &spec.fields {
        for (path, text) in &leaves {
            if !glob(&field.name, path) {
                continue;
            }
            let wanted: Vec<&str> = terms
                .terms
                .iter()
                .filter(|(f, _)| match f {
                    FieldRef::All => true,
                    FieldRef::Text(p) | FieldRef::Keyword(p) => p == path,
                    _ => false,
                })
                .map(|(_, t)| t.as_str())
                .collect();
            if wanted.is_empty() {
                continue;
            }
            if let Some(fragments) = highlight_text(
                analyzer,
                text,
                &wanted,
                field,
                (&spec.pre_tag, &spec.post_tag),
            ) {
                let entry = out
                    .entry(path.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = entry {
                    list.extend(fragments.into_iter().map(Value::from));
                }
            }
        }
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

/// `_source` filtering: keep what `includes` names (all when empty), drop what `excludes` names.
pub fn filter_source(source: &Value, includes: &[String], excludes: &[String]) -> Value {
    fn walk(v: &Value, path: &str, includes: &[String], excludes: &[String]) -> Option<Value> {
        if excludes.iter().any(|e| glob(e, path)) {
            return None;
        }
        let included = includes.is_empty()
            || includes
                .iter()
                .any(|i| glob(i, path) || glob(&format!("{i}.*"), path));
        match v {
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, child) in map {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    // An included object keeps its children (minus exclusions).
                    let inc: &[String] = if included && !path.is_empty() {
                        &[]
                    } else {
                        includes
                    };
                    if let Some(c) = walk(child, &p, inc, excludes) {
                        out.insert(k.clone(), c);
                    }
                }
                (!out.is_empty() || (included && !path.is_empty())).then_some(Value::Object(out))
            }
            _ if path.is_empty() => Some(v.clone()),
            _ => included.then(|| v.clone()),
        }
    }
    if includes.is_empty() && excludes.is_empty() {
        return source.clone();
    }
    walk(source, "", includes, excludes).unwrap_or_else(|| Value::Object(Map::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer;
    use serde_json::json;

    #[test]
    fn globs() {
        assert!(glob("a.*", "a.b"));
        assert!(glob("*", "x"));
        assert!(glob("t*e", "title"));
        assert!(!glob("a.*", "ab"));
    }

    #[test]
    fn source_filtering() {
        let s = json!({"a": {"b": 1, "c": 2}, "d": 3, "e": "x"});
        assert_eq!(
            filter_source(&s, &["a".into()], &[]),
            json!({"a": {"b": 1, "c": 2}})
        );
        assert_eq!(
            filter_source(&s, &["a.b".into(), "e".into()], &[]),
            json!({"a": {"b": 1}, "e": "x"})
        );
        assert_eq!(
            filter_source(&s, &[], &["a.*".into(), "d".into()]),
            json!({"a": {}, "e": "x"})
        );
        assert_eq!(
            filter_source(&s, &["a".into()], &["a.c".into()]),
            json!({"a": {"b": 1}})
        );
    }

    #[test]
    fn marks_stemmed_matches_in_fragments() {
        let mut a = analyzer::english(None);
        let spec = HighlightField {
            name: "t".into(),
            fragment_size: 40,
            number_of_fragments: 2,
        };
        let text = "Flows over wings. Nothing here at all for a long while, really nothing. Then the flow again.";
        let frags = highlight_text(&mut a, text, &["flow"], &spec, ("<em>", "</em>")).unwrap();
        assert_eq!(frags.len(), 2);
        assert!(frags[0].starts_with("<em>Flows</em>"), "{frags:?}");
        assert!(frags[1].contains("<em>flow</em>"), "{frags:?}");
        let whole = HighlightField {
            number_of_fragments: 0,
            ..spec
        };
        let all = highlight_text(&mut a, "a flow", &["flow"], &whole, ("<b>", "</b>")).unwrap();
        assert_eq!(all, vec!["a <b>flow</b>"]);
    }
}
