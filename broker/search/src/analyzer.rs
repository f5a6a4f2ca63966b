//! The text analyzer every searchable topic uses, and the keyword normaliser.
//!
//! English: split on non-alphanumerics, drop tokens over 40 bytes, lowercase, fold accents,
//! remove English stop words, Snowball (Porter 2) stemming. The same chain analyses documents
//! and query text, so a query matches the forms the index holds.

use crate::keyword::KeywordTermTokenizer;
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RawTokenizer, RemoveLongFilter, SimpleTokenizer,
    Stemmer, StopWordFilter, TextAnalyzer, TextAnalyzerBuilder, Tokenizer, TokenizerManager,
};

/// Name the text fields are indexed with.
pub const TEXT_ANALYZER: &str = "chronik_en";
/// Name of the exact-value (keyword) normaliser: the whole value as one term.
pub const KEYWORD_ANALYZER: &str = "raw";

/// The default English stop words: function words that carry no topic (the common
/// 179-word English list used by NLTK and bm25s). Lucene's 33-word list keeps question words
/// ("what", "how", "have", "been") that dominate natural-language queries; with this list,
/// search quality on the Cranfield collection rises measurably (docs/benchmarks.md).
pub const ENGLISH_STOP_WORDS: &[&str] = &[
    "i",
    "me",
    "my",
    "myself",
    "we",
    "our",
    "ours",
    "ourselves",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
    "he",
    "him",
    "his",
    "himself",
    "she",
    "her",
    "hers",
    "herself",
    "it",
    "its",
    "itself",
    "they",
    "them",
    "their",
    "theirs",
    "themselves",
    "what",
    "which",
    "who",
    "whom",
    "this",
    "that",
    "these",
    "those",
    "am",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "have",
    "has",
    "had",
    "having",
    "do",
    "does",
    "did",
    "doing",
    "a",
    "an",
    "the",
    "and",
    "but",
    "if",
    "or",
    "because",
    "as",
    "until",
    "while",
    "of",
    "at",
    "by",
    "for",
    "with",
    "about",
    "against",
    "between",
    "into",
    "through",
    "during",
    "before",
    "after",
    "above",
    "below",
    "to",
    "from",
    "up",
    "down",
    "in",
    "out",
    "on",
    "off",
    "over",
    "under",
    "again",
    "further",
    "then",
    "once",
    "here",
    "there",
    "when",
    "where",
    "why",
    "how",
    "all",
    "any",
    "both",
    "each",
    "few",
    "more",
    "most",
    "other",
    "some",
    "such",
    "no",
    "nor",
    "not",
    "only",
    "own",
    "same",
    "so",
    "than",
    "too",
    "very",
    "s",
    "t",
    "can",
    "will",
    "just",
    "don",
    "should",
    "now",
    "d",
    "ll",
    "m",
    "o",
    "re",
    "ve",
    "y",
    "ain",
    "aren",
    "couldn",
    "didn",
    "doesn",
    "hadn",
    "hasn",
    "haven",
    "isn",
    "ma",
    "mightn",
    "mustn",
    "needn",
    "shan",
    "shouldn",
    "wasn",
    "weren",
    "won",
    "wouldn",
];

/// The English analyzer with an optional custom stop word list (`None`: [`ENGLISH_STOP_WORDS`]).
pub fn english(stop_words: Option<Vec<String>>) -> TextAnalyzer {
    unstemmed(stop_words)
        .filter(Stemmer::new(Language::English))
        .build()
}

/// The English analyzer without its stemmer: the same tokens in number (stemming never drops
/// or adds one), for counting a text's length at a fraction of the cost — stemming is the
/// largest part of analysing, and the indexer counts every text path beside Tantivy.
pub fn english_token_counter() -> TextAnalyzer {
    unstemmed(None).build()
}

/// Every step of [`english`] before stemming.
fn unstemmed(stop_words: Option<Vec<String>>) -> TextAnalyzerBuilder<impl Tokenizer> {
    let stop = match stop_words {
        Some(words) => StopWordFilter::remove(words),
        None => StopWordFilter::remove(ENGLISH_STOP_WORDS.iter().map(|w| w.to_string())),
    };
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .filter(stop)
}

/// Register the analyzers that build an index's terms (`Index::tokenizers`): keywords in
/// their term form (long values hashed, see `keyword`).
pub fn register_indexing(manager: &TokenizerManager) {
    manager.register(TEXT_ANALYZER, english(None));
    manager.register(
        KEYWORD_ANALYZER,
        TextAnalyzer::from(KeywordTermTokenizer::default()),
    );
}

/// Register the normalisers of an index's fast columns (`Index::fast_field_tokenizer`):
/// keywords whole, so sort, range and aggregations see the value as produced.
pub fn register_fast(manager: &TokenizerManager) {
    manager.register(TEXT_ANALYZER, english(None));
    manager.register(
        KEYWORD_ANALYZER,
        TextAnalyzer::from(RawTokenizer::default()),
    );
}

/// The analysed terms of `text`, in order, with their positions.
pub fn analyze(analyzer: &mut TextAnalyzer, text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        let token = stream.token();
        out.push((token.position, token.text.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercases_drops_stop_words_and_stems() {
        let mut a = english(None);
        let terms: Vec<String> = analyze(&mut a, "The Flows of Boundary-Layers were Running")
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        assert_eq!(terms, vec!["flow", "boundari", "layer", "run"]);
    }

    #[test]
    fn the_token_counter_counts_what_the_analyzer_emits() {
        let text = "The Flows of Boundary-Layers were Running; thé café, naïve résumé x";
        let long = format!("{text} {}", "y".repeat(41));
        let mut counter = english_token_counter();
        for t in [text, long.as_str(), "", "the of and"] {
            let n = analyze(&mut counter, t).len();
            assert_eq!(n, analyze(&mut english(None), t).len(), "{t}");
        }
        assert_eq!(analyze(&mut counter, text).len(), 8);
    }

    #[test]
    fn custom_stop_words_replace_the_default_list() {
        let mut a = english(Some(vec!["flow".into()]));
        let terms: Vec<String> = analyze(&mut a, "the flow")
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        assert_eq!(terms, vec!["the"]);
    }
}
