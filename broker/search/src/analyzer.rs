//! The text analyzer every searchable topic uses, and the keyword normaliser.
//!
//! English: split on non-alphanumerics, drop tokens over 40 bytes, lowercase, fold accents,
//! remove English stop words, Snowball (Porter 2) stemming. The same chain analyses documents
//! and query text, so a query matches the forms the index holds.

use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RawTokenizer, RemoveLongFilter, SimpleTokenizer,
    Stemmer, StopWordFilter, TextAnalyzer, TokenizerManager,
};

/// Name the text fields are indexed with.
pub const TEXT_ANALYZER: &str = "chronik_en";
/// Name of the exact-value (keyword) normaliser: the whole value as one term.
pub const KEYWORD_ANALYZER: &str = "raw";

/// The English analyzer with an optional custom stop word list (`None`: Lucene's English list).
pub fn english(stop_words: Option<Vec<String>>) -> TextAnalyzer {
    let stop = match stop_words {
        Some(words) => StopWordFilter::remove(words),
        None => StopWordFilter::new(Language::English).unwrap_or_else(|| {
            // The stopwords feature is compiled in; this branch exists so a build without it
            // still analyses text rather than failing.
            StopWordFilter::remove(Vec::<String>::new())
        }),
    };
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .filter(stop)
        .filter(Stemmer::new(Language::English))
        .build()
}

/// Register the analyzers on an index's tokenizer manager.
pub fn register(manager: &TokenizerManager) {
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
        let terms: Vec<String> = analyze(&mut a, "The Flows of Boundary-Layers was Running")
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        assert_eq!(terms, vec!["flow", "boundari", "layer", "run"]);
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
