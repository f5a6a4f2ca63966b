//! The text analyzer every searchable topic uses, and the keyword normaliser.
//!
//! English: split on non-alphanumerics, drop tokens over 40 bytes, lowercase, fold accents,
//! remove English stop words, Snowball (Porter 2) stemming. The same chain analyses documents
//! and query text, so a query matches the forms the index holds.

use std::collections::HashMap;

use crate::keyword::KeywordTermTokenizer;
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RawTokenizer, RemoveLongFilter, SimpleTokenizer,
    Stemmer, StopWordFilter, TextAnalyzer, TextAnalyzerBuilder, Token, TokenFilter, TokenStream,
    Tokenizer, TokenizerManager,
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
    unstemmed(stop_words).filter(MemoStemmer).build()
}

/// Distinct words a [`MemoStemmer`] remembers before it starts over: enough for the working
/// vocabulary of a segment's worth of events, small enough (about a megabyte) that one per
/// indexed text field and open segment stays cheap.
const STEM_MEMO_WORDS: usize = 16_384;

/// English Snowball stemming that remembers the stems it computed. Stemming was the largest
/// part of analysing (a tenth of the indexing thread's time, every word twice: its path and
/// `_all`), and event text repeats a small vocabulary, so most words are looked up rather than
/// stemmed. The output is exactly the stemmer's. Tantivy clones an analyzer per segment and
/// field, so each clone has its own memo and no lock is shared.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoStemmer;

impl TokenFilter for MemoStemmer {
    type Tokenizer<T: Tokenizer> = MemoStemmerFilter<T>;

    fn transform<T: Tokenizer>(self, inner: T) -> MemoStemmerFilter<T> {
        MemoStemmerFilter {
            inner,
            memo: HashMap::new(),
            stemmer: TextAnalyzer::builder(RawTokenizer::default())
                .filter(Stemmer::new(Language::English))
                .build(),
        }
    }
}

#[derive(Clone)]
pub struct MemoStemmerFilter<T> {
    inner: T,
    memo: HashMap<String, String>,
    /// The stemmer itself, run on one word at a time for words not in `memo`.
    stemmer: TextAnalyzer,
}

impl<T: Tokenizer> Tokenizer for MemoStemmerFilter<T> {
    type TokenStream<'a> = MemoStemmerStream<'a, T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        MemoStemmerStream {
            tail: self.inner.token_stream(text),
            memo: &mut self.memo,
            stemmer: &mut self.stemmer,
        }
    }
}

pub struct MemoStemmerStream<'a, S> {
    tail: S,
    memo: &'a mut HashMap<String, String>,
    stemmer: &'a mut TextAnalyzer,
}

impl<S: TokenStream> TokenStream for MemoStemmerStream<'_, S> {
    fn advance(&mut self) -> bool {
        if !self.tail.advance() {
            return false;
        }
        let token = self.tail.token_mut();
        if let Some(stem) = self.memo.get(token.text.as_str()) {
            token.text.clear();
            token.text.push_str(stem);
            return true;
        }
        let mut stem = String::new();
        self.stemmer
            .token_stream(&token.text)
            .process(&mut |t: &Token| stem.push_str(&t.text));
        if self.memo.len() >= STEM_MEMO_WORDS {
            self.memo.clear();
        }
        self.memo
            .insert(std::mem::replace(&mut token.text, stem.clone()), stem);
        true
    }

    fn token(&self) -> &Token {
        self.tail.token()
    }

    fn token_mut(&mut self) -> &mut Token {
        self.tail.token_mut()
    }
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
    fn the_memo_stems_exactly_as_the_stemmer_does() {
        let plain = || {
            unstemmed(None)
                .filter(Stemmer::new(Language::English))
                .build()
        };
        let text = "Running runners ran; the generously generous generalisation of flows \
                    flowing, FLOWED and flow-meters. Running again: runners, generously.";
        let mut memo = english(None);
        // Twice through one analyzer: the second pass answers from the memo.
        for _ in 0..2 {
            assert_eq!(analyze(&mut memo, text), analyze(&mut plain(), text));
        }
        // More distinct words than the memo holds: it starts over and stays exact.
        let many: String = (0..STEM_MEMO_WORDS + 100)
            .map(|i| format!("walking{i}s "))
            .collect();
        let mut filter = MemoStemmer.transform(SimpleTokenizer::default());
        let stemmed = analyze_with(&mut filter, &many);
        let expected: Vec<String> = analyze(&mut plain(), &many)
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        assert_eq!(stemmed, expected);
        assert_eq!(filter.memo.len(), 100);
    }

    fn analyze_with<T: Tokenizer>(tokenizer: &mut T, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        tokenizer
            .token_stream(text)
            .process(&mut |t: &Token| out.push(t.text.clone()));
        out
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
