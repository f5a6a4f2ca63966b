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

use tantivy::columnar::{Cardinality, Column};
use tantivy::fieldnorm::FieldNormReader;
use tantivy::index::SegmentId;
use tantivy::postings::{Postings, SegmentPostings};
use tantivy::query::{EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::schema::{Field, IndexRecordOption, Term};
use tantivy::{DocId, DocSet, Score, Searcher, SegmentReader, TERMINATED};

const K1: Score = 1.2;
const B: Score = 0.75;

/// One term group's BM25 contribution at weighted frequency `t`. The pruning bound and the
/// score both go through here, so the bound rounds exactly as the score does.
fn term_score(idf: Score, t: Score, norm: Score) -> Score {
    idf * t * (K1 + 1.0) / (t + norm)
}

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
        let mut present: Vec<usize> = postings.iter().map(|(gi, _, _)| *gi).collect();
        present.dedup();
        if present.len() < self.minimum_match {
            // Too few of the terms occur in this segment for any document to match.
            postings.clear();
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
        // The shortest a document of this segment can be, for the score bound pruning uses.
        let mut min_len = 0.0;
        for (col, w) in &columns {
            if col.get_cardinality() == Cardinality::Full {
                min_len += w * col.min_value().max(0) as Score;
            }
        }
        let mut scorer = CombinedScorer {
            postings,
            tf: vec![0.0; self.groups.len()],
            gathered: false,
            idf: self.stats.as_ref().map(|s| s.idf.clone()),
            avg_len: self.stats.as_ref().map_or(1.0, |s| s.avg_len),
            min_len,
            columns,
            fieldnorm,
            minimum_match: self.minimum_match,
            boost,
            doc: 0,
            score: None,
        };
        scorer.settle();
        Ok(scorer)
    }
}

impl Weight for CombinedWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        Ok(Box::new(self.combined_scorer(reader, boost)?))
    }

    /// Skips the length lookup (a fast-field read, most of the cost of scoring) for documents
    /// whose frequencies cannot beat the threshold even at the segment's shortest length.
    fn for_each_pruning(
        &self,
        mut threshold: Score,
        reader: &SegmentReader,
        callback: &mut dyn FnMut(DocId, Score) -> Score,
    ) -> tantivy::Result<()> {
        let mut scorer = self.combined_scorer(reader, 1.0)?;
        if scorer.single_term() && scorer.idf.is_some() {
            scorer.for_each_pruning_single(threshold, callback);
            return Ok(());
        }
        let mut doc = scorer.doc;
        while doc != TERMINATED {
            if scorer.upper_bound() > threshold {
                let score = scorer.score();
                if score > threshold {
                    threshold = callback(doc, score);
                }
            }
            doc = scorer.advance();
        }
        Ok(())
    }

    fn count(&self, reader: &SegmentReader) -> tantivy::Result<u32> {
        let mut scorer = self.combined_scorer(reader, 1.0)?;
        Ok(match (reader.alive_bitset(), scorer.single_term()) {
            (None, true) => scorer.postings[0].2.doc_freq(),
            (Some(alive), _) => scorer.count(alive),
            (None, false) => scorer.count_including_deleted(),
        })
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

/// A union over every term's postings. Advancing only moves the posting lists: frequencies
/// are gathered and the score computed when asked for, since counting, intersections and
/// pruning pass over most documents without needing either.
struct CombinedScorer {
    /// Each posting list sits on `doc` (and contributes to it) or after it.
    postings: Vec<(usize, Score, SegmentPostings)>,
    /// Per group, the frequencies gathered for `doc` (valid when `gathered`).
    tf: Vec<Score>,
    gathered: bool,
    idf: Option<Vec<Score>>,
    avg_len: Score,
    /// Lower bound of any document's length in this segment.
    min_len: Score,
    columns: Vec<(Column<i64>, Score)>,
    fieldnorm: Option<(FieldNormReader, Score)>,
    minimum_match: usize,
    boost: Score,
    doc: DocId,
    score: Option<Score>,
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

    fn gather(&mut self) {
        if self.gathered {
            return;
        }
        self.tf.iter_mut().for_each(|t| *t = 0.0);
        for (gi, w, p) in &self.postings {
            if p.doc() == self.doc {
                self.tf[*gi] += *w * p.term_freq() as Score;
            }
        }
        self.gathered = true;
    }

    fn bm25(&self, len: Score) -> Score {
        let Some(idf) = &self.idf else {
            return self.boost;
        };
        let norm = self.norm(len);
        let mut s = 0.0;
        for (gi, t) in self.tf.iter().enumerate() {
            if *t > 0.0 {
                s += term_score(idf[gi], *t, norm);
            }
        }
        s * self.boost
    }

    /// BM25's length normalisation for a document of `len`.
    fn norm(&self, len: Score) -> Score {
        K1 * (1.0 - B + B * len / self.avg_len)
    }

    /// The current document's score can be no higher: BM25 falls as the length grows.
    fn upper_bound(&mut self) -> Score {
        self.gather();
        self.bm25(self.min_len)
    }

    /// One posting list that is the whole document set (it cannot fall short of a
    /// minimum_match: `combined_scorer` empties the postings when too few groups occur).
    fn single_term(&self) -> bool {
        self.postings.len() == 1 && self.minimum_match <= 1
    }

    /// The least frequency of the single term whose score bound beats `threshold`, or None
    /// when no frequency can (BM25 saturates).
    fn least_tf_beating(&self, threshold: Score) -> Option<u32> {
        let (_, w, _) = self.postings[0];
        let idf = self.idf.as_ref().map_or(0.0, |v| v[0]);
        let norm = self.norm(self.min_len);
        let bound = |tf: u32| term_score(idf, w * tf as Score, norm) * self.boost;
        // Doubling then bisecting on the bound itself keeps this exact for the comparison
        // the loop makes, whatever rounding a closed form would bring.
        let (mut lo, mut hi) = (0u32, 1u32);
        while bound(hi) <= threshold {
            if hi >= 1 << 30 {
                return None;
            }
            lo = hi;
            hi *= 2;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if bound(mid) > threshold {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(hi)
    }

    /// [`Weight::for_each_pruning`] over one term: the bound depends on the frequency alone,
    /// so most documents cost an integer comparison.
    fn for_each_pruning_single(
        &mut self,
        mut threshold: Score,
        callback: &mut dyn FnMut(DocId, Score) -> Score,
    ) {
        let Some(mut least) = self.least_tf_beating(threshold) else {
            return;
        };
        let mut doc = self.doc;
        while doc != TERMINATED {
            if self.postings[0].2.term_freq() >= least {
                self.doc = doc;
                self.score = None;
                self.gathered = false;
                let score = Scorer::score(self);
                if score > threshold {
                    threshold = callback(doc, score);
                    match self.least_tf_beating(threshold) {
                        Some(tf) => least = tf,
                        None => return,
                    }
                }
            }
            doc = self.postings[0].2.advance();
        }
    }

    /// Groups with a posting list on `doc`.
    fn groups_on(&self, doc: DocId) -> usize {
        let mut seen = 0u64;
        let mut extra = 0usize;
        for (gi, _, p) in &self.postings {
            if p.doc() == doc {
                if *gi < 64 {
                    seen |= 1 << gi;
                } else {
                    // Past 64 groups a group with several fields may count twice, which only
                    // loosens minimum_match for queries nobody writes.
                    extra += 1;
                }
            }
        }
        seen.count_ones() as usize + extra
    }

    /// Settles on the first document at or after the posting lists' positions that matches
    /// enough groups.
    fn settle(&mut self) -> DocId {
        self.score = None;
        self.gathered = false;
        loop {
            let next = self
                .postings
                .iter()
                .map(|(_, _, p)| p.doc())
                .min()
                .unwrap_or(TERMINATED);
            if next == TERMINATED
                || self.minimum_match <= 1
                || self.groups_on(next) >= self.minimum_match
            {
                self.doc = next;
                return next;
            }
            for (_, _, p) in &mut self.postings {
                if p.doc() == next {
                    p.advance();
                }
            }
        }
    }
}

impl DocSet for CombinedScorer {
    fn advance(&mut self) -> DocId {
        if let ([(_, _, p)], 0 | 1) = (self.postings.as_mut_slice(), self.minimum_match) {
            // One term: the posting list is the document set.
            self.score = None;
            self.gathered = false;
            self.doc = p.advance();
            return self.doc;
        }
        let doc = self.doc;
        for (_, _, p) in &mut self.postings {
            if p.doc() == doc {
                p.advance();
            }
        }
        self.settle()
    }

    /// Skips through the posting lists' skip data instead of visiting every document on the
    /// way: an intersection drives this scorer by seeking when another clause is rarer.
    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc >= target {
            return self.doc;
        }
        for (_, _, p) in &mut self.postings {
            if p.doc() < target {
                p.seek(target);
            }
        }
        self.settle()
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    /// Documents matching at least `minimum_match` groups: at most the sum over all terms,
    /// and when every group must match, at most the rarest group's.
    fn size_hint(&self) -> u32 {
        let mut per_group = vec![0u32; self.tf.len()];
        for (gi, _, p) in &self.postings {
            per_group[*gi] = per_group[*gi].saturating_add(p.size_hint());
        }
        if self.minimum_match >= per_group.len() {
            per_group.into_iter().min().unwrap_or(0)
        } else {
            per_group.into_iter().fold(0u32, u32::saturating_add)
        }
    }
}

impl Scorer for CombinedScorer {
    fn score(&mut self) -> Score {
        if let Some(s) = self.score {
            return s;
        }
        let s = if self.idf.is_some() {
            self.gather();
            self.bm25(self.length(self.doc))
        } else {
            self.boost
        };
        self.score = Some(s);
        s
    }
}

#[cfg(test)]
mod tests {
    use tantivy::collector::TopDocs;
    use tantivy::schema::{Schema, FAST, INDEXED, TEXT};
    use tantivy::{doc, Index, IndexWriter};

    use super::*;

    /// Documents of "w" repeated 1 + i % 5 times, padded to lengths from 3 up: frequencies and
    /// lengths both vary, and the shortest document holds the term.
    fn index() -> (Index, Field) {
        let mut builder = Schema::builder();
        let body = builder.add_text_field("body", TEXT);
        let len = builder.add_i64_field("len", FAST | INDEXED);
        let index = Index::create_in_ram(builder.build());
        let mut writer: IndexWriter = index.writer(15_000_000).unwrap();
        for i in 0..2000usize {
            let tf = 1 + i % 5;
            let pad = 2 + (i * 7) % 23;
            let text = format!("{}{}", "w ".repeat(tf), "x ".repeat(pad));
            writer
                .add_document(doc!(body => text, len => (tf + pad) as i64))
                .unwrap();
        }
        writer.commit().unwrap();
        (index, body)
    }

    fn query(body: Field) -> CombinedFieldsQuery {
        query_of(body, &["w"])
    }

    fn query_of(body: Field, words: &[&str]) -> CombinedFieldsQuery {
        let length = Length {
            columns: vec![("len".to_string(), 1.0)],
            fieldnorm: None,
        };
        let groups = words
            .iter()
            .map(|w| vec![(Term::from_field_text(body, w), 1.0)])
            .collect();
        CombinedFieldsQuery::new(groups, length, 1)
    }

    #[test]
    fn the_pruning_bound_holds_and_is_reached_by_the_shortest_document() {
        let (index, body) = index();
        let searcher = index.reader().unwrap().searcher();
        let mut scorer = concrete_scorer(&searcher, body);
        let mut reached = false;
        while scorer.doc != TERMINATED {
            let bound = scorer.upper_bound();
            let score = scorer.score();
            assert!(
                bound >= score,
                "doc {}: bound {bound} < score {score}",
                scorer.doc
            );
            reached |= bound == score;
            scorer.advance();
        }
        assert!(reached, "the bound is never tight");
    }

    /// The scorer itself (the trait object hides the bound), weighted as `weight` would.
    fn concrete_scorer(searcher: &Searcher, body: Field) -> CombinedScorer {
        let q = query(body);
        let n = searcher.num_docs() as Score;
        let df = searcher.doc_freq(&q.groups[0][0].0).unwrap() as Score;
        let weight = CombinedWeight {
            stats: Some(Stats {
                idf: vec![(1.0 + (n - df + 0.5) / (df + 0.5)).ln()],
                avg_len: column_average(searcher, "len").unwrap(),
            }),
            groups: q.groups,
            length: q.length,
            minimum_match: 1,
        };
        weight
            .combined_scorer(searcher.segment_reader(0), 1.0)
            .unwrap()
    }

    #[test]
    fn pruned_top_equals_the_exhaustive_top() {
        let (index, body) = index();
        let searcher = index.reader().unwrap().searcher();
        let reader = searcher.segment_reader(0);
        // One term takes the frequency-threshold path, two the general one.
        for words in [&["w"][..], &["w", "x"][..]] {
            let q = query_of(body, words);
            // TopDocs prunes through for_each_pruning; a plain for_each gives the reference.
            let top = searcher
                .search(&q, &TopDocs::with_limit(20).order_by_score())
                .unwrap();
            let weight = q
                .weight(EnableScoring::enabled_from_searcher(&searcher))
                .unwrap();
            let mut all = Vec::new();
            weight
                .for_each(reader, &mut |doc, score| all.push((score, doc)))
                .unwrap();
            all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let want: Vec<Score> = all.iter().take(20).map(|(s, _)| *s).collect();
            let got: Vec<Score> = top.iter().map(|(s, _)| *s).collect();
            assert_eq!(got, want, "{words:?}");
            assert_eq!(weight.count(reader).unwrap(), 2000, "{words:?}");
        }
    }

    #[test]
    fn every_term_frequency_threshold_is_the_least_that_can_win() {
        let (index, body) = index();
        let searcher = index.reader().unwrap().searcher();
        let scorer = concrete_scorer(&searcher, body);
        let bound = |tf: u32| {
            let mut s = concrete_scorer(&searcher, body);
            s.tf[0] = tf as Score;
            s.gathered = true;
            s.upper_bound()
        };
        for threshold in [
            Score::MIN,
            0.0,
            bound(1),
            bound(2) - 1e-4,
            bound(3),
            bound(40),
        ] {
            let least = scorer.least_tf_beating(threshold).unwrap();
            assert!(bound(least) > threshold, "{threshold}: {least}");
            assert!(
                least == 1 || bound(least - 1) <= threshold,
                "{threshold}: {least}"
            );
        }
        // Past the saturation point nothing can beat it.
        assert_eq!(scorer.least_tf_beating(Score::MAX), None);
    }
}
