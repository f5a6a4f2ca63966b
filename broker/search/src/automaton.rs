//! Prefix, wildcard and "any value" matching under one JSON path.
//!
//! A JSON field's term dictionary holds every path's terms, keyed `path \0 type value`. Tantivy's
//! regex query runs over whole keys of a plain field; this query anchors an automaton after a
//! fixed key prefix (the path and the string type tag), so `title` never matches `subtitle`.

use std::sync::Arc;

use tantivy::query::{AutomatonWeight, EnableScoring, Query, Weight};
use tantivy::schema::{Field, Term};
use tantivy_fst::{Automaton, Regex};

/// What the value after the key prefix must look like.
#[derive(Debug, Clone)]
pub enum ValuePattern {
    /// Anything (the path has a string value).
    Any,
    /// Starts with these bytes.
    Prefix(Vec<u8>),
    /// Matches this regex as a whole.
    Regex(Arc<Regex>),
}

/// Documents whose `field` has, under the key prefix of `term` (a term with an empty value),
/// a value matching `pattern`. Constant score.
#[derive(Debug, Clone)]
pub struct KeyPatternQuery {
    field: Field,
    key_prefix: Vec<u8>,
    pattern: ValuePattern,
    /// Keyword terms: hashed long values (a NUL in the value) are not matched here, as their
    /// bytes after the head are not the value's (see `keyword::LongValueQuery`).
    skip_hashed: bool,
}

impl KeyPatternQuery {
    /// `empty_term`: the field (and JSON path and type) with an empty value.
    pub fn new(empty_term: &Term, pattern: ValuePattern) -> Self {
        KeyPatternQuery {
            field: empty_term.field(),
            key_prefix: empty_term.serialized_value_bytes().to_vec(),
            pattern,
            skip_hashed: false,
        }
    }

    /// The same over keyword terms, leaving hashed long values out unless the whole pattern
    /// is a prefix of their head.
    pub fn keyword(empty_term: &Term, pattern: ValuePattern) -> Self {
        KeyPatternQuery {
            skip_hashed: true,
            ..KeyPatternQuery::new(empty_term, pattern)
        }
    }
}

impl Query for KeyPatternQuery {
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        let mut fixed = self.key_prefix.clone();
        if let ValuePattern::Prefix(p) = &self.pattern {
            fixed.extend_from_slice(p);
        }
        let automaton = Anchored {
            fixed,
            value_from: self.key_prefix.len(),
            pattern: self.pattern.clone(),
            skip_hashed: self.skip_hashed,
        };
        Ok(Box::new(AutomatonWeight::new(self.field, automaton)))
    }
}

struct Anchored {
    /// The literal part: the key prefix, plus the value prefix for prefix patterns.
    fixed: Vec<u8>,
    /// Where the value starts in `fixed` (the key prefix's length).
    value_from: usize,
    pattern: ValuePattern,
    skip_hashed: bool,
}

#[derive(Clone)]
enum State<S> {
    /// Matched this many bytes of the fixed prefix (or of a literal value prefix).
    Fixed(usize),
    /// Past the fixed part, inside the regex.
    Inner(S),
    /// Everything from here matches.
    Accept,
    Dead,
}

impl Automaton for Anchored {
    type State = State<Option<usize>>;

    fn start(&self) -> Self::State {
        self.after_fixed(0)
    }

    fn is_match(&self, state: &Self::State) -> bool {
        match state {
            State::Accept => true,
            State::Inner(s) => match &self.pattern {
                ValuePattern::Regex(r) => r.is_match(s),
                _ => false,
            },
            _ => false,
        }
    }

    fn can_match(&self, state: &Self::State) -> bool {
        match state {
            State::Dead => false,
            State::Inner(s) => match &self.pattern {
                ValuePattern::Regex(r) => r.can_match(s),
                _ => true,
            },
            _ => true,
        }
    }

    fn will_always_match(&self, state: &Self::State) -> bool {
        matches!(state, State::Accept)
    }

    fn accept(&self, state: &Self::State, byte: u8) -> Self::State {
        if self.skip_hashed && byte == 0 {
            match state {
                State::Fixed(i) if *i >= self.value_from => return State::Dead,
                State::Inner(_) => return State::Dead,
                _ => {}
            }
        }
        match state {
            State::Dead => State::Dead,
            State::Accept => State::Accept,
            State::Fixed(i) => {
                if self.fixed.get(*i) == Some(&byte) {
                    self.after_fixed(i + 1)
                } else {
                    State::Dead
                }
            }
            State::Inner(s) => match &self.pattern {
                ValuePattern::Regex(r) => State::Inner(r.accept(s, byte)),
                _ => State::Dead,
            },
        }
    }
}

impl Anchored {
    fn after_fixed(&self, matched: usize) -> State<Option<usize>> {
        if matched < self.fixed.len() {
            return State::Fixed(matched);
        }
        match &self.pattern {
            ValuePattern::Any | ValuePattern::Prefix(_) => State::Accept,
            ValuePattern::Regex(r) => State::Inner(r.start()),
        }
    }
}

/// Elasticsearch wildcard syntax (`*` any run, `?` one character) as a regex.
pub fn wildcard_regex(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    for c in pattern.chars() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            c if c.is_alphanumeric() || c == ' ' || c == '_' => out.push(c),
            c => {
                out.push('\\');
                out.push(c);
            }
        }
    }
    out
}
