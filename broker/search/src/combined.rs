//! BM25F over several fields scored as one (Elasticsearch's `combined_fields`, and what
//! `multi_match` `cross_fields` approximates): a query term's frequencies in the fields add
//! up (times each field's boost) before BM25 saturation, and its IDF comes from the largest
//! document frequency among the fields, so a term is not rewarded twice for appearing in two
//! fields and a rare field does not inflate its weight.
//!
//! Length normalisation uses the length of the document's whole text (`_all`): Tantivy keeps no
//! per-path lengths in a JSON field, and the combined fields are one field here anyway.

use std::collections::HashMap;

use tantivy::fieldnorm::FieldNormReader;
use tantivy::postings::Postings;
use tantivy::query::{EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::schema::{Field, IndexRecordOption, Term};
use tantivy::{DocId, DocSet, Score, SegmentReader, TERMINATED};

const K1: Score = 1.2;
const B: Score = 0.75;

/// One query term across fields: each alternative term with its field boost.
pub type TermGroup = Vec<(Term, Score)>;

#[derive(Debug, Clone)]
pub struct CombinedFieldsQuery {
    groups: Vec<TermGroup>,
    /// The field whose lengths normalise scores.
    length_field: Field,
    /// At least this many groups must match (1 for "or", all for "and").
    minimum_match: usize,
}

impl CombinedFieldsQuery {
    pub fn new(groups: Vec<TermGroup>, length_field: Field, minimum_match: usize) -> Self {
        CombinedFieldsQuery {
            groups,
            length_field,
            minimum_match: minimum_match.max(1),
        }
    }
}

struct GroupStats {
    idf: Score,
    /// Field whose length normalises this group.
    field: Field,
    avg_len: Score,
}

struct CombinedWeight {
    groups: Vec<TermGroup>,
    stats: Option<Vec<GroupStats>>,
    minimum_match: usize,
}

impl Query for CombinedFieldsQuery {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        let stats = match scoring {
            EnableScoring::Enabled {
                statistics_provider: p,
                ..
            } => {
                let n = p.total_num_docs()?.max(1) as Score;
                let mut out = Vec::with_capacity(self.groups.len());
                for g in &self.groups {
                    let mut df = 0u64;
                    for (t, _) in g {
                        df = df.max(p.doc_freq(t)?);
                    }
                    let df = df as Score;
                    let field = self.length_field;
                    let avg_len = (p.total_num_tokens(field)? as Score / n).max(1.0);
                    out.push(GroupStats {
                        idf: (1.0 + (n - df + 0.5) / (df + 0.5)).ln(),
                        field,
                        avg_len,
                    });
                }
                Some(out)
            }
            EnableScoring::Disabled { .. } => None,
        };
        Ok(Box::new(CombinedWeight {
            groups: self.groups.clone(),
            stats,
            minimum_match: self.minimum_match,
        }))
    }
}

impl CombinedWeight {
    /// Every matching document of the segment with its score, in doc order.
    fn matches(
        &self,
        reader: &SegmentReader,
        boost: Score,
    ) -> tantivy::Result<(Vec<DocId>, Vec<Score>)> {
        let n = self.groups.len();
        let mut tfs: HashMap<DocId, Vec<Score>> = HashMap::new();
        for (gi, group) in self.groups.iter().enumerate() {
            for (term, w) in group {
                let inverted = reader.inverted_index(term.field())?;
                let Some(mut postings) =
                    inverted.read_postings(term, IndexRecordOption::WithFreqs)?
                else {
                    continue;
                };
                let mut doc = postings.doc();
                while doc != TERMINATED {
                    let entry = tfs.entry(doc).or_insert_with(|| vec![0.0; n]);
                    entry[gi] += *w * postings.term_freq() as Score;
                    doc = postings.advance();
                }
            }
        }
        let norms: Option<Vec<FieldNormReader>> = match &self.stats {
            Some(stats) => Some(
                stats
                    .iter()
                    .map(|s| reader.get_fieldnorms_reader(s.field))
                    .collect::<tantivy::Result<_>>()?,
            ),
            None => None,
        };
        let mut docs: Vec<(DocId, Score)> = tfs
            .into_iter()
            .filter(|(_, tf)| tf.iter().filter(|t| **t > 0.0).count() >= self.minimum_match)
            .map(|(doc, tf)| {
                let score = match (&self.stats, &norms) {
                    (Some(stats), Some(norms)) => {
                        let mut s = 0.0;
                        for (gi, t) in tf.iter().enumerate() {
                            if *t <= 0.0 {
                                continue;
                            }
                            let len = norms[gi].fieldnorm(doc) as Score;
                            let st = &stats[gi];
                            let norm = K1 * (1.0 - B + B * len / st.avg_len);
                            s += st.idf * t * (K1 + 1.0) / (t + norm);
                        }
                        s * boost
                    }
                    _ => boost,
                };
                (doc, score)
            })
            .collect();
        docs.sort_unstable_by_key(|(d, _)| *d);
        Ok(docs.into_iter().unzip())
    }
}

impl Weight for CombinedWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let (docs, scores) = self.matches(reader, boost)?;
        Ok(Box::new(ListScorer {
            docs,
            scores,
            pos: 0,
        }))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let (docs, scores) = self.matches(reader, 1.0)?;
        match docs.binary_search(&doc) {
            Ok(i) => Ok(Explanation::new("combined fields BM25F", scores[i])),
            Err(_) => Err(tantivy::TantivyError::InvalidArgument(format!(
                "document {doc} does not match"
            ))),
        }
    }
}

/// Scores computed up front, in doc order.
struct ListScorer {
    docs: Vec<DocId>,
    scores: Vec<Score>,
    pos: usize,
}

impl DocSet for ListScorer {
    fn advance(&mut self) -> DocId {
        if self.pos < self.docs.len() {
            self.pos += 1;
        }
        self.doc()
    }

    fn doc(&self) -> DocId {
        self.docs.get(self.pos).copied().unwrap_or(TERMINATED)
    }

    fn size_hint(&self) -> u32 {
        self.docs.len() as u32
    }
}

impl Scorer for ListScorer {
    fn score(&mut self) -> Score {
        self.scores.get(self.pos).copied().unwrap_or(0.0)
    }
}
