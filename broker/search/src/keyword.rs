//! How keyword values become terms, and the query that finds long ones.
//!
//! Every string leaf up to [`crate::schema::KEYWORD_MAX_LEN`] bytes is a keyword. Building the
//! term dictionary (an FST) costs per byte of each term's unique suffix, and event streams are
//! full of long unique strings (messages, ids, URLs): indexing them whole spent most of the
//! indexing thread there. So a value longer than [`WHOLE_MAX`] bytes (or holding a NUL) is
//! indexed as its first [`HEAD_MAX`] bytes, a NUL and a 64-bit hash of the whole value.
//!
//! - Exact queries look the value up in that same form (a hash collision would also need the
//!   same head).
//! - Prefix and wildcard patterns read the whole value from the fast column (which keeps it
//!   raw) for the documents whose head the pattern can still extend ([`LongValueQuery`]).
//! - Range, exists, sort and aggregations use the fast column and never see the term form.

use std::borrow::Cow;
use std::sync::Arc;

use tantivy::columnar::StrColumn;
use tantivy::query::doc_predicate_query::{
    ConstOrVariableSegmentPredicate, DocPredicate, SegmentDocPredicate,
};
use tantivy::query::{AutomatonWeight, Weight};
use tantivy::schema::{Field, Term};
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};
use tantivy::{DocId, DocSet, SegmentReader, TERMINATED};
use tantivy_fst::{Automaton, Regex};

/// Values up to this many bytes (without a NUL) are terms as they are.
pub const WHOLE_MAX: usize = 48;
/// Longer values keep at most this many leading bytes (cut at a character boundary).
pub const HEAD_MAX: usize = 32;
/// Separates the head from the hash; raw terms never contain it.
const MARKER: char = '\0';

/// The term text of keyword value `value`.
pub fn term_text(value: &str) -> Cow<'_, str> {
    if value.len() <= WHOLE_MAX && !value.contains(MARKER) {
        return Cow::Borrowed(value);
    }
    let mut cut = HEAD_MAX.min(value.len());
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    // The head must not hold the marker itself, or the term would be ambiguous.
    let head = value[..cut].split(MARKER).next().unwrap_or_default();
    Cow::Owned(format!("{head}{MARKER}{:016x}", fnv1a(value.as_bytes())))
}

/// FNV-1a, 64 bits: stable across builds and platforms, which a term stored on disk needs.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The keyword indexing tokenizer: the whole value as one token, in [`term_text`] form.
#[derive(Clone, Default)]
pub struct KeywordTermTokenizer {
    token: Token,
}

pub struct KeywordTermStream<'a> {
    token: &'a mut Token,
    pending: bool,
}

impl Tokenizer for KeywordTermTokenizer {
    type TokenStream<'a> = KeywordTermStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &str) -> KeywordTermStream<'a> {
        self.token.reset();
        self.token.position = 0;
        self.token.position_length = 1;
        self.token.offset_from = 0;
        self.token.offset_to = text.len();
        self.token.text.clear();
        self.token.text.push_str(&term_text(text));
        KeywordTermStream {
            token: &mut self.token,
            pending: true,
        }
    }
}

impl TokenStream for KeywordTermStream<'_> {
    fn advance(&mut self) -> bool {
        std::mem::replace(&mut self.pending, false)
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

/// What a whole keyword value must look like.
#[derive(Debug, Clone)]
pub enum LongPattern {
    Prefix(Vec<u8>),
    /// Matches the whole value.
    Regex(Arc<Regex>),
}

impl LongPattern {
    fn matches(&self, value: &[u8]) -> bool {
        match self {
            LongPattern::Prefix(p) => value.starts_with(p),
            LongPattern::Regex(r) => {
                let mut s = r.start();
                for b in value {
                    if !r.can_match(&s) {
                        return false;
                    }
                    s = r.accept(&s, *b);
                }
                r.is_match(&s)
            }
        }
    }
}

/// Documents with a long (hashed) value under one keyword path that matches `pattern` in full.
/// Short values are the business of an ordinary term-dictionary query, which skips hashed terms.
#[derive(Debug, Clone)]
pub struct LongValueQuery {
    field: Field,
    /// `kw.<path>`: the fast column holding the raw values.
    column: String,
    /// The serialized term with an empty string value (path and type).
    key_prefix: Vec<u8>,
    pattern: LongPattern,
}

impl LongValueQuery {
    /// `empty_term`: the keyword field, path and string type with an empty value.
    pub fn new(empty_term: &Term, column: String, pattern: LongPattern) -> Self {
        LongValueQuery {
            field: empty_term.field(),
            column,
            key_prefix: empty_term.serialized_value_bytes().to_vec(),
            pattern,
        }
    }
}

impl DocPredicate for LongValueQuery {
    type SegmentDocPredicate = WholeValueMatches;

    fn doc_predicate(
        &self,
        reader: &SegmentReader,
    ) -> tantivy::Result<ConstOrVariableSegmentPredicate<WholeValueMatches>> {
        let Some(column) = reader.fast_fields().str(&self.column)? else {
            return Ok(ConstOrVariableSegmentPredicate::Const(false));
        };
        let heads = HeadCandidates {
            key_prefix: self.key_prefix.clone(),
            pattern: self.pattern.clone(),
        };
        let candidates = AutomatonWeight::new(self.field, heads).scorer(reader, 1.0)?;
        if candidates.doc() == TERMINATED {
            return Ok(ConstOrVariableSegmentPredicate::Const(false));
        }
        Ok(ConstOrVariableSegmentPredicate::Variable {
            predicate: WholeValueMatches {
                column,
                pattern: self.pattern.clone(),
                buf: Vec::new(),
            },
            necessary_condition: Box::new(candidates),
        })
    }
}

/// Reads a candidate's values from the fast column and tests the whole of each.
pub struct WholeValueMatches {
    column: StrColumn,
    pattern: LongPattern,
    buf: Vec<u8>,
}

impl SegmentDocPredicate for WholeValueMatches {
    fn eval(&mut self, doc: DocId) -> bool {
        let WholeValueMatches {
            column,
            pattern,
            buf,
        } = self;
        column.term_ords(doc).any(|ord| {
            buf.clear();
            matches!(column.ord_to_bytes(ord, buf), Ok(true)) && pattern.matches(buf)
        })
    }
}

/// Hashed terms under the key prefix whose head `pattern` could still extend: the pattern
/// runs over the head, and at the marker the term is a candidate if the pattern is alive.
/// A prefix fully inside the head is left out: the term-dictionary query already takes it.
struct HeadCandidates {
    key_prefix: Vec<u8>,
    pattern: LongPattern,
}

#[derive(Clone)]
enum HeadState {
    /// Matched this many bytes of the key prefix.
    Key(usize),
    /// In the value: bytes of the prefix matched so far, or the regex state.
    Prefix(usize),
    Regex(Option<usize>),
    /// Past the marker of a term whose head the pattern can extend.
    Candidate,
    Dead,
}

impl Automaton for HeadCandidates {
    type State = HeadState;

    fn start(&self) -> HeadState {
        self.after_key(0)
    }

    fn is_match(&self, state: &HeadState) -> bool {
        matches!(state, HeadState::Candidate)
    }

    fn can_match(&self, state: &HeadState) -> bool {
        !matches!(state, HeadState::Dead)
    }

    fn will_always_match(&self, state: &HeadState) -> bool {
        matches!(state, HeadState::Candidate)
    }

    fn accept(&self, state: &HeadState, byte: u8) -> HeadState {
        let marker = byte == MARKER as u8;
        match (state, &self.pattern) {
            (HeadState::Dead, _) => HeadState::Dead,
            (HeadState::Candidate, _) => HeadState::Candidate,
            (HeadState::Key(i), _) => {
                if self.key_prefix.get(*i) == Some(&byte) {
                    self.after_key(i + 1)
                } else {
                    HeadState::Dead
                }
            }
            (HeadState::Prefix(i), LongPattern::Prefix(p)) => {
                if marker {
                    HeadState::Candidate
                } else if p.get(*i) == Some(&byte) {
                    if i + 1 == p.len() {
                        // The whole prefix lies in the head: not a candidate of this query.
                        HeadState::Dead
                    } else {
                        HeadState::Prefix(i + 1)
                    }
                } else {
                    HeadState::Dead
                }
            }
            (HeadState::Regex(s), LongPattern::Regex(r)) => {
                if marker {
                    if r.can_match(s) {
                        HeadState::Candidate
                    } else {
                        HeadState::Dead
                    }
                } else {
                    HeadState::Regex(r.accept(s, byte))
                }
            }
            _ => HeadState::Dead,
        }
    }
}

impl HeadCandidates {
    fn after_key(&self, matched: usize) -> HeadState {
        if matched < self.key_prefix.len() {
            return HeadState::Key(matched);
        }
        match &self.pattern {
            // An empty prefix is entirely "inside the head" of every term.
            LongPattern::Prefix(p) if p.is_empty() => HeadState::Dead,
            LongPattern::Prefix(_) => HeadState::Prefix(0),
            LongPattern::Regex(r) => HeadState::Regex(r.start()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_stay_whole_and_long_ones_keep_a_head_and_a_hash() {
        assert_eq!(term_text("shipped"), "shipped");
        let long = "x".repeat(WHOLE_MAX + 1);
        let t = term_text(&long);
        assert_eq!(t.len(), HEAD_MAX + 1 + 16);
        assert!(t.starts_with(&long[..HEAD_MAX]));
        assert_ne!(
            term_text(&format!("{long}a")),
            term_text(&format!("{long}b"))
        );
        // Deterministic: the same value always gives the same term.
        assert_eq!(term_text(&long), term_text(&long.clone()));
    }

    #[test]
    fn heads_are_cut_at_character_boundaries_and_never_hold_the_marker() {
        let s = "é".repeat(40);
        let t = term_text(&s);
        let head = t.split(MARKER).next().unwrap();
        assert_eq!(head, "é".repeat(16));
        let with_nul = "a\0b";
        let t = term_text(with_nul);
        assert_eq!(t.matches(MARKER).count(), 1);
        assert!(t.starts_with("a\0"));
    }

    #[test]
    fn patterns_test_the_whole_value() {
        let re = Arc::new(Regex::new("ab.*yz").unwrap());
        assert!(LongPattern::Regex(re.clone()).matches(b"ab-long-yz"));
        assert!(!LongPattern::Regex(re).matches(b"ab-long-yx"));
        assert!(LongPattern::Prefix(b"ab-".to_vec()).matches(b"ab-long"));
        assert!(!LongPattern::Prefix(b"ab-".to_vec()).matches(b"a"));
    }

    fn run(a: &HeadCandidates, bytes: &[u8]) -> bool {
        let mut s = a.start();
        for b in bytes {
            s = a.accept(&s, *b);
        }
        a.is_match(&s)
    }

    #[test]
    fn candidates_are_hashed_terms_the_pattern_can_extend() {
        let value = format!("{}-tail", "h".repeat(60));
        let term = term_text(&value).into_owned();
        let key = b"k".to_vec();
        let with_key = |t: &str| [key.clone(), t.as_bytes().to_vec()].concat();
        let prefix = |p: &str| HeadCandidates {
            key_prefix: key.clone(),
            pattern: LongPattern::Prefix(p.as_bytes().to_vec()),
        };
        // Longer than the head: only the fast column can decide.
        assert!(run(&prefix(&value[..36]), &with_key(&term)));
        // Inside the head: the term-dictionary query takes it, not this one.
        assert!(!run(&prefix("hhh"), &with_key(&term)));
        // Raw terms are never candidates.
        assert!(!run(&prefix(&value[..36]), &with_key(&value)));
        let regex = |r: &str| HeadCandidates {
            key_prefix: key.clone(),
            pattern: LongPattern::Regex(Arc::new(Regex::new(r).unwrap())),
        };
        assert!(run(&regex(".*tail"), &with_key(&term)));
        assert!(!run(&regex("x.*"), &with_key(&term)));
    }
}
