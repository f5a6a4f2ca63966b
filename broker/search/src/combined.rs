//! BM25 over text fields with real per-field lengths, and BM25F over several fields scored as
//! one (Elasticsearch's `combined_fields`, and what `multi_match` `cross_fields` approximates).
//!
//! Tantivy keeps one length per field, and a JSON field holds every path of a document, so its
//! own BM25 cannot normalise `title` by the title's length. The indexer therefore records each
//! text path's token count in the `len` fast field, and this query scores with it: for a term
//! group (one query term across fields, each with a boost) the frequencies add up, weighted,
//! before saturation; the length is the same weighted sum of the fields' lengths; the IDF comes
//! from the largest document frequency among the fields. With one field this is plain BM25.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use tantivy::columnar::Column;
use tantivy::fieldnorm::FieldNormReader;
use tantivy::index::SegmentId;
use tantivy::postings::{Postings, SegmentPostings};
use tantivy::query::{EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::schema::{Field, IndexRecordOption, Term};
use tantivy::{DocId, DocSet, Score, Searcher, SegmentReader, TERMINATED};

const K1: Score = 1.2;
const B: Score = 0.75;

/// One query term across fields: each alternative term with its field boost.
pub type TermGroup = Vec<(Term, Score)>;

/// Where a document's length comes from: weighted per-path token counts (fast columns of the
/// `len` field) and, for `_all`, a field's norms.
#[derive(Debug, Clone, Default)]
pub struct Length {
    pub columns: Vec<(String, Score)>,
    pub fieldnorm: Option<(Field, Score)>,
}

#[derive(Debug, Clone)]
pub struct CombinedFieldsQuery {
    groups: Vec<TermGroup>,
    length: Length,
    /// At least this many groups must match (1 for "or", all for "and").
    minimum_match: usize,
}

impl CombinedFieldsQuery {
    pub fn new(groups: Vec<TermGroup>, length: Length, minimum_match: usize) -> Self {
        CombinedFieldsQuery {
            groups,
            length,
            minimum_match: minimum_match.max(1),
        }
    }
}

struct Stats {
    idf: Vec<Score>,
    avg_len: Score,
}

struct CombinedWeight {
    groups: Vec<TermGroup>,
    length: Length,
    stats: Option<Stats>,
    minimum_match: usize,
}

/// (sum, count) of a length column per segment: segments never change, so this is computed
/// once per segment and path rather than once per query.
type ColumnTotals = HashMap<(SegmentId, String), (u64, u64)>;

fn column_totals() -> &'static Mutex<ColumnTotals> {
    static TOTALS: OnceLock<Mutex<ColumnTotals>> = OnceLock::new();
    TOTALS.get_or_init(|| Mutex::new(HashMap::new()))
}

fn length_column(reader: &SegmentReader, name: &str) -> tantivy::Result<Option<Column<i64>>> {
    reader.fast_fields().column_opt::<i64>(name)
}

/// Average length of a column over the documents that have it, across the searcher.
fn column_average(searcher: &Searcher, name: &str) -> tantivy::Result<Score> {
    let (mut sum, mut count) = (0u64, 0u64);
    for seg in searcher.segment_readers() {
        let key = (seg.segment_id(), name.to_string());
        let cached = column_totals()
            .lock()
            .ok()
            .and_then(|m| m.get(&key).copied());
        let (s, c) = match cached {
            Some(v) => v,
            None => {
                let v = match length_column(seg, name)? {
                    Some(col) => (
                        col.values.iter().map(|x| x.max(0) as u64).sum(),
                        u64::from(col.values.num_vals()),
                    ),
                    None => (0, 0),
                };
                if let Ok(mut m) = column_totals().lock() {
                    // Merged-away segments leave stale entries; start over now and then.
                    if m.len() > 100_000 {
                        m.clear();
                    }
                    m.insert(key, v);
                }
                v
            }
        };
        sum += s;
        count += c;
    }
    Ok(if count == 0 {
        1.0
    } else {
        (sum as Score / count as Score).max(1.0)
    })
}

impl Query for CombinedFieldsQuery {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        let stats = match scoring {
            EnableScoring::Enabled {
                searcher,
                statistics_provider: p,
            } => {
                let n = p.total_num_docs()?.max(1) as Score;
                let mut idf = Vec::with_capacity(self.groups.len());
                for g in &self.groups {
                    let mut df = 0u64;
                    for (t, _) in g {
                        df = df.max(p.doc_freq(t)?);
                    }
                    let df = df as Score;
                    idf.push((1.0 + (n - df + 0.5) / (df + 0.5)).ln());
                }
                let mut avg_len = 0.0;
                for (name, w) in &self.length.columns {
                    avg_len += w * column_average(searcher, name)?;
                }
                if let Some((field, w)) = self.length.fieldnorm {
                    avg_len += w * (p.total_num_tokens(field)? as Score / n).max(1.0);
                }
                Some(Stats {
                    idf,
                    avg_len: avg_len.max(1.0),
                })
            }
            EnableScoring::Disabled { .. } => None,
        };
        Ok(Box::new(CombinedWeight {
            groups: self.groups.clone(),
            length: self.length.clone(),
            stats,
            minimum_match: self.minimum_match,
        }))
    }
}

impl CombinedWeight {
    fn combined_scorer(
        &self,
        reader: &SegmentReader,
        boost: Score,
    ) -> tantivy::Result<CombinedScorer> {
        let mut postings = Vec::new();
        for (gi, group) in self.groups.iter().enumerate() {
            for (term, w) in group {
                let inverted = reader.inverted_index(term.field())?;
                if let Some(p) = inverted.read_postings(term, IndexRecordOption::WithFreqs)? {
                    postings.push((gi, *w, p));
                }
            }
        }
        let mut columns = Vec::new();
        if self.stats.is_some() {
            for (name, w) in &self.length.columns {
                if let Some(col) = length_column(reader, name)? {
                    columns.push((col, *w));
                }
            }
        }
        let fieldnorm = match (self.length.fieldnorm, &self.stats) {
            (Some((field, w)), Some(_)) => Some((reader.get_fieldnorms_reader(field)?, w)),
            _ => None,
        };
        let mut scorer = CombinedScorer {
            postings,
            tf: vec![0.0; self.groups.len()],
            idf: self.stats.as_ref().map(|s| s.idf.clone()),
            avg_len: self.stats.as_ref().map_or(1.0, |s| s.avg_len),
            columns,
            fieldnorm,
            minimum_match: self.minimum_match,
            boost,
            doc: 0,
            score: 0.0,
        };
        scorer.advance();
        Ok(scorer)
    }
}

impl Weight for CombinedWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        Ok(Box::new(self.combined_scorer(reader, boost)?))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.combined_scorer(reader, 1.0)?;
        if scorer.seek(doc) != doc {
            return Err(tantivy::TantivyError::InvalidArgument(format!(
                "document {doc} does not match"
            )));
        }
        Ok(Explanation::new(
            "BM25F over combined fields",
            scorer.score(),
        ))
    }
}

/// A union over every term's postings that scores each document as it passes.
struct CombinedScorer {
    postings: Vec<(usize, Score, SegmentPostings)>,
    tf: Vec<Score>,
    idf: Option<Vec<Score>>,
    avg_len: Score,
    columns: Vec<(Column<i64>, Score)>,
    fieldnorm: Option<(FieldNormReader, Score)>,
    minimum_match: usize,
    boost: Score,
    doc: DocId,
    score: Score,
}

impl CombinedScorer {
    fn length(&self, doc: DocId) -> Score {
        let mut len = 0.0;
        for (col, w) in &self.columns {
            len += w * col.first(doc).unwrap_or(0).max(0) as Score;
        }
        if let Some((norms, w)) = &self.fieldnorm {
            len += w * norms.fieldnorm(doc) as Score;
        }
        len
    }

    fn compute_score(&self, doc: DocId) -> Score {
        let Some(idf) = &self.idf else {
            return self.boost;
        };
        let norm = K1 * (1.0 - B + B * self.length(doc) / self.avg_len);
        let mut s = 0.0;
        for (gi, t) in self.tf.iter().enumerate() {
            if *t > 0.0 {
                s += idf[gi] * t * (K1 + 1.0) / (t + norm);
            }
        }
        s * self.boost
    }
}

impl DocSet for CombinedScorer {
    fn advance(&mut self) -> DocId {
        loop {
            let next = self
                .postings
                .iter()
                .map(|(_, _, p)| p.doc())
                .min()
                .unwrap_or(TERMINATED);
            if next == TERMINATED {
                self.doc = TERMINATED;
                return TERMINATED;
            }
            self.tf.iter_mut().for_each(|t| *t = 0.0);
            for (gi, w, p) in &mut self.postings {
                if p.doc() == next {
                    self.tf[*gi] += *w * p.term_freq() as Score;
                    p.advance();
                }
            }
            if self.tf.iter().filter(|t| **t > 0.0).count() >= self.minimum_match {
                self.doc = next;
                self.score = self.compute_score(next);
                return next;
            }
        }
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        self.postings
            .iter()
            .map(|(_, _, p)| p.size_hint())
            .max()
            .unwrap_or(0)
    }
}

impl Scorer for CombinedScorer {
    fn score(&mut self) -> Score {
        self.score
    }
}
