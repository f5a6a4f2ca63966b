//! The `openai` embedding provider: any OpenAI-compatible `POST /v1/embeddings` endpoint
//! (OpenAI, Ollama, TEI, vLLM, another Chronik broker).
//!
//! Texts are sent in batches of at most [`OpenAiConfig::max_batch`]. A request that fails in a
//! way that can pass (connection refused or reset, timeout, 429, 5xx) is retried with
//! exponential backoff and jitter, honouring `Retry-After`; any other answer fails the call at
//! once with the endpoint's own message. A call that still fails is an
//! [`VectorError::Embedding`]: the index pipeline keeps the records in the log and retries the
//! run later, so an unreachable provider delays indexing and loses nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use crate::{EmbeddingProvider, VectorError};

/// OpenAI's embeddings endpoint, used when no endpoint is configured.
pub const DEFAULT_OPENAI_ENDPOINT: &str = "https://api.openai.com/v1/embeddings";
/// Model asked for when none is configured.
pub const DEFAULT_OPENAI_MODEL: &str = "text-embedding-3-small";
/// Characters of one text sent to the endpoint. Endpoints refuse (rather than truncate) inputs
/// over their model's token limit, and a refused event would stall its partition for good;
/// 8192 characters stay under the 8191-token limit of OpenAI's models and let endpoints that
/// truncate do so.
pub const MAX_TEXT_CHARS: usize = 8192;
/// Largest response body read (a full batch of 3072-dimension vectors as JSON is ~30 MB).
const MAX_RESPONSE_BYTES: u64 = 128 << 20;

/// How the provider reaches its endpoint.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// The embeddings URL; a base URL ending in `/v1` (or a bare host) gets `/embeddings`
    /// (or `/v1/embeddings`) appended.
    pub endpoint: String,
    pub model: String,
    /// Sent as `Authorization: Bearer`; endpoints without auth need none.
    pub api_key: Option<String>,
    /// Asked for with the request's `dimensions` (models that can shorten their vectors);
    /// `None` takes the model's own.
    pub dimensions: Option<usize>,
    /// Whole-request time limit, connecting included.
    pub timeout: Duration,
    pub max_batch: usize,
    pub retry: Backoff,
}

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("endpoint", &self.endpoint)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("dimensions", &self.dimensions)
            .field("timeout", &self.timeout)
            .field("max_batch", &self.max_batch)
            .field("retry", &self.retry)
            .finish()
    }
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            endpoint: DEFAULT_OPENAI_ENDPOINT.into(),
            model: DEFAULT_OPENAI_MODEL.into(),
            api_key: None,
            dimensions: None,
            timeout: Duration::from_secs(30),
            max_batch: 256,
            retry: Backoff::default(),
        }
    }
}

/// Retry schedule: `first`, doubling up to `max`, `attempts` tries in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub attempts: u32,
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            attempts: 5,
            first: Duration::from_millis(250),
            max: Duration::from_secs(8),
        }
    }
}

impl Backoff {
    /// Wait before retry number `retry` (0-based): exponential, capped, with up to 50% jitter
    /// taken off so many brokers retrying together spread out.
    pub fn delay(&self, retry: u32, jitter: f64) -> Duration {
        let exp = self
            .first
            .saturating_mul(1u32 << retry.min(20))
            .min(self.max);
        exp.mul_f64(1.0 - 0.5 * jitter.clamp(0.0, 1.0))
    }
}

/// The URL requests go to, from a configured endpoint.
pub fn embeddings_url(endpoint: &str) -> String {
    let e = endpoint.trim().trim_end_matches('/');
    if e.ends_with("/embeddings") {
        e.to_string()
    } else if e.ends_with("/v1") {
        format!("{e}/embeddings")
    } else {
        format!("{e}/v1/embeddings")
    }
}

/// An OpenAI-compatible embeddings endpoint.
#[derive(Debug)]
pub struct OpenAiProvider {
    config: OpenAiConfig,
    url: String,
    agent: ureq::Agent,
    /// Vector length seen in the first answer (or asked for); 0 until then.
    dimensions: AtomicUsize,
}

/// Why one request failed.
enum Failure {
    /// Can pass by itself: retried after the endpoint's `Retry-After`, if it gave one.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    Permanent(String),
}

impl OpenAiProvider {
    pub fn new(config: OpenAiConfig) -> Result<Self, VectorError> {
        chronik_meta::check_embedding_endpoint(&config.endpoint)
            .map_err(|reason| VectorError::Unsupported(format!("embedding endpoint {reason}")))?;
        let url = embeddings_url(&config.endpoint);
        if config.max_batch == 0 || config.retry.attempts == 0 {
            return Err(VectorError::Unsupported(
                "the openai provider needs a batch size and attempts of at least 1".into(),
            ));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .user_agent(concat!("chronik/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(OpenAiProvider {
            dimensions: AtomicUsize::new(config.dimensions.unwrap_or(0)),
            config,
            url,
            agent,
        })
    }

    /// Where requests go.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, VectorError> {
        let inputs: Vec<&str> = texts.iter().map(|t| clip(t)).collect();
        let mut body = json!({
            "model": self.config.model,
            "input": inputs,
            "encoding_format": "float",
        });
        if let Some(d) = self.config.dimensions {
            body["dimensions"] = json!(d);
        }
        let body = serde_json::to_vec(&body).map_err(|e| VectorError::Embedding(e.to_string()))?;
        let answer = self.post_with_retries(&body)?;
        let vectors = parse_answer(&answer, texts.len())
            .map_err(|reason| VectorError::Embedding(format!("{}: {reason}", self.url)))?;
        let len = vectors.first().map_or(0, Vec::len);
        let known = self.dimensions.load(Ordering::Relaxed);
        if known != 0 && known != len {
            return Err(VectorError::Embedding(format!(
                "{}: model {} answered {len}-dimension vectors, expected {known}",
                self.url, self.config.model
            )));
        }
        self.dimensions.store(len, Ordering::Relaxed);
        Ok(vectors)
    }

    fn post_with_retries(&self, body: &[u8]) -> Result<Value, VectorError> {
        let retry = self.config.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.post(body) {
                Ok(v) => return Ok(v),
                Err(Failure::Transient {
                    reason,
                    retry_after,
                }) if attempt < retry.attempts => {
                    let wait = retry_after
                        .map(|d| d.min(retry.max))
                        .unwrap_or_else(|| retry.delay(attempt - 1, jitter()));
                    tracing::debug!(url = %self.url, attempt, ?wait, %reason, "embedding request failed; retrying");
                    std::thread::sleep(wait);
                }
                Err(Failure::Transient { reason, .. }) => {
                    return Err(VectorError::Embedding(format!(
                        "{}: {reason} (gave up after {attempt} attempts)",
                        self.url
                    )))
                }
                Err(Failure::Permanent(reason)) => {
                    return Err(VectorError::Embedding(format!("{}: {reason}", self.url)))
                }
            }
        }
    }

    fn post(&self, body: &[u8]) -> Result<Value, Failure> {
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json");
        if let Some(key) = &self.config.api_key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        let mut response = request.send(body).map_err(|e| transport_failure(&e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_string()
            .map_err(|e| transport_failure(&e))?;
        if status == 200 {
            return serde_json::from_str(&text)
                .map_err(|e| Failure::Permanent(format!("the answer is not JSON: {e}")));
        }
        let reason = format!("HTTP {status}: {}", error_message(&text));
        if status == 429 || status >= 500 {
            Err(Failure::Transient {
                reason,
                retry_after,
            })
        } else {
            Err(Failure::Permanent(reason))
        }
    }
}

fn transport_failure(e: &ureq::Error) -> Failure {
    let reason = e.to_string();
    match e {
        // A URL or TLS setup the endpoint will never accept does not pass with time.
        ureq::Error::BadUri(_)
        | ureq::Error::InvalidProxyUrl
        | ureq::Error::Tls(_)
        | ureq::Error::Rustls(_)
        | ureq::Error::BodyExceedsLimit(_) => Failure::Permanent(reason),
        _ => Failure::Transient {
            reason,
            retry_after: None,
        },
    }
}

/// A fraction in [0, 1) that differs between calls and brokers, for jitter.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1000) / 1000.0
}

/// `text` cut to [`MAX_TEXT_CHARS`] characters; an empty text becomes one space, since
/// OpenAI refuses empty inputs.
fn clip(text: &str) -> &str {
    if text.is_empty() {
        return " ";
    }
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// The message of an OpenAI-style error body (`{"error": {"message": ...}}` or
/// `{"error": "..."}`), else the start of the body.
fn error_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        let e = v.get("error")?;
        e.get("message")
            .and_then(Value::as_str)
            .or_else(|| e.get("reason").and_then(Value::as_str))
            .or_else(|| e.as_str())
            .map(str::to_string)
    });
    message.unwrap_or_else(|| body.chars().take(300).collect())
}

/// The vectors of an answer, in input order (`data[].index`), checked for count and shape.
fn parse_answer(answer: &Value, expected: usize) -> Result<Vec<Vec<f32>>, String> {
    let data = answer
        .get("data")
        .and_then(Value::as_array)
        .ok_or("the answer has no [data] array")?;
    if data.len() != expected {
        return Err(format!(
            "the answer has {} embeddings for {expected} inputs",
            data.len()
        ));
    }
    let mut out: Vec<Option<Vec<f32>>> = vec![None; expected];
    for (position, item) in data.iter().enumerate() {
        let index = match item.get("index") {
            None => position,
            Some(i) => i
                .as_u64()
                .map(|i| i as usize)
                .filter(|i| *i < expected)
                .ok_or_else(|| format!("embedding index {i} is out of range"))?,
        };
        let values = item
            .get("embedding")
            .and_then(Value::as_array)
            .ok_or("an item has no [embedding] array (only encoding_format=float is read)")?;
        let vector: Vec<f32> = values
            .iter()
            .map(|x| x.as_f64().map(|x| x as f32))
            .collect::<Option<_>>()
            .ok_or("an embedding holds a value that is not a number")?;
        if out[index].replace(vector).is_some() {
            return Err(format!("embedding index {index} appears twice"));
        }
    }
    let vectors: Vec<Vec<f32>> = out.into_iter().map(Option::unwrap_or_default).collect();
    let len = vectors.first().map_or(0, Vec::len);
    if len == 0 || vectors.iter().any(|v| v.len() != len) {
        return Err("the embeddings are empty or of different lengths".into());
    }
    Ok(vectors)
}

impl EmbeddingProvider for OpenAiProvider {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, VectorError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.config.max_batch) {
            out.extend(self.embed_batch(batch)?);
        }
        Ok(out)
    }

    fn dimensions(&self) -> Option<usize> {
        match self.dimensions.load(Ordering::Relaxed) {
            0 => None,
            d => Some(d),
        }
    }

    fn model_id(&self) -> &str {
        &self.config.model
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_become_embeddings_urls() {
        for (given, url) in [
            (
                "https://api.openai.com/v1/embeddings",
                "https://api.openai.com/v1/embeddings",
            ),
            (
                "https://api.openai.com/v1",
                "https://api.openai.com/v1/embeddings",
            ),
            (
                "http://127.0.0.1:6092/",
                "http://127.0.0.1:6092/v1/embeddings",
            ),
            (
                "http://ollama:11434/v1/",
                "http://ollama:11434/v1/embeddings",
            ),
        ] {
            assert_eq!(embeddings_url(given), url);
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_only_shortens() {
        let b = Backoff {
            attempts: 10,
            first: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.delay(0, 0.0), Duration::from_millis(100));
        assert_eq!(b.delay(2, 0.0), Duration::from_millis(400));
        assert_eq!(b.delay(9, 0.0), Duration::from_secs(1));
        assert_eq!(b.delay(40, 0.0), Duration::from_secs(1));
        assert_eq!(b.delay(1, 1.0), Duration::from_millis(100));
    }

    #[test]
    fn answers_are_put_in_input_order_and_checked() {
        let answer = json!({"data": [
            {"index": 1, "embedding": [0.0, 1.0]},
            {"index": 0, "embedding": [1.0, 0.0]},
        ]});
        assert_eq!(
            parse_answer(&answer, 2).unwrap(),
            vec![vec![1.0, 0.0], vec![0.0, 1.0]]
        );
        for (bad, why) in [
            (json!({}), "no [data]"),
            (
                json!({"data": [{"embedding": [1.0]}]}),
                "1 embeddings for 2",
            ),
            (
                json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}]}),
                "twice",
            ),
            (
                json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 5, "embedding": [1.0]}]}),
                "out of range",
            ),
            (
                json!({"data": [{"embedding": [1.0]}, {"embedding": [1.0, 2.0]}]}),
                "different lengths",
            ),
            (
                json!({"data": [{"embedding": "AAAA"}, {"embedding": [1.0]}]}),
                "encoding_format=float",
            ),
        ] {
            let err = parse_answer(&bad, 2).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn texts_are_clipped_on_character_boundaries_and_never_empty() {
        assert_eq!(clip(""), " ");
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(MAX_TEXT_CHARS + 10);
        assert_eq!(clip(&long).chars().count(), MAX_TEXT_CHARS);
    }

    #[test]
    fn error_bodies_give_their_message() {
        assert_eq!(
            error_message(r#"{"error": {"message": "bad key", "type": "auth"}}"#),
            "bad key"
        );
        assert_eq!(
            error_message(r#"{"error": "model not found"}"#),
            "model not found"
        );
        assert_eq!(error_message("plain text"), "plain text");
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let config = OpenAiConfig {
            api_key: Some("sk-secret".into()),
            ..OpenAiConfig::default()
        };
        assert!(!format!("{config:?}").contains("sk-secret"));
        let provider = OpenAiProvider::new(config).unwrap();
        assert!(!format!("{provider:?}").contains("sk-secret"));
    }
}
