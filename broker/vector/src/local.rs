//! The `local` embedding provider: all-MiniLM-L6-v2 run in-process on CPU with candle.
//!
//! Output matches sentence-transformers' for this model: WordPiece tokens truncated at 256,
//! BERT forward pass, mean of the token states under the attention mask, L2 normalisation.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use parking_lot::Mutex;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::{EmbeddingProvider, VectorError};

/// The model the local provider runs.
pub const LOCAL_MODEL_ID: &str = "all-MiniLM-L6-v2";
/// Its output dimension.
pub const LOCAL_MODEL_DIMENSIONS: usize = 384;
/// sentence-transformers' max_seq_length for this model: longer texts are truncated.
pub const MAX_TOKENS: usize = 256;
/// Most texts per forward pass.
const PASS_SIZE: usize = 32;
/// Bound on `texts x tokens²` of one pass, which sizes its largest tensor (the attention
/// scores: 12 heads x tokens² floats per text, here at most ~3 MiB). glibc serves big
/// allocations from fresh mmapped pages that fault in on first touch and go back to the
/// kernel when freed: with 32 texts of 256 tokens per pass (100 MiB of scores) a third of the
/// embedding CPU went to page faults. A text of 256 tokens now goes alone, 128 tokens three at a
/// time, short texts 32 (benchmarks.md, "Local embedding model throughput").
const PASS_TOKENS_SQUARED: usize = 60_000;
/// How long a failed load is remembered before the next embed call tries again (so a model
/// fetched after start-up is picked up without a restart).
const RELOAD_AFTER: Duration = Duration::from_secs(10);

const FILES: [&str; 3] = ["model.safetensors", "tokenizer.json", "config.json"];

struct Model {
    bert: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

enum State {
    Loaded(Arc<Model>),
    Failed { error: String, at: Instant },
}

/// all-MiniLM-L6-v2 from a directory holding model.safetensors, tokenizer.json and config.json.
pub struct LocalProvider {
    dir: PathBuf,
    state: Mutex<Option<State>>,
}

impl std::fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProvider")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl LocalProvider {
    /// A provider over `dir`. Loads at once; when that fails the error is returned and the
    /// provider is still usable: every embed call reports the same error until the files are
    /// there (checked again at most every few seconds).
    pub fn open(dir: impl Into<PathBuf>) -> (LocalProvider, Result<(), VectorError>) {
        let provider = LocalProvider {
            dir: dir.into(),
            state: Mutex::new(None),
        };
        let loaded = provider.model().map(|_| ());
        (provider, loaded)
    }

    /// A provider over `dir` that loads the model on first use (a broker without vector topics
    /// never pays for it). Returns the provider and whether the model files are there.
    pub fn lazy(dir: impl Into<PathBuf>) -> (LocalProvider, Result<(), VectorError>) {
        let dir = dir.into();
        let present = missing_file(&dir).map_or(Ok(()), Err);
        (
            LocalProvider {
                dir,
                state: Mutex::new(None),
            },
            present,
        )
    }

    /// The directory the model is read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Load the model, or fail strictly (tests, and callers that need it now).
    pub fn load(dir: impl Into<PathBuf>) -> Result<LocalProvider, VectorError> {
        let (provider, loaded) = LocalProvider::open(dir);
        loaded.map(|_| provider)
    }

    fn model(&self) -> Result<Arc<Model>, VectorError> {
        let mut state = self.state.lock();
        match &*state {
            Some(State::Loaded(m)) => return Ok(m.clone()),
            Some(State::Failed { error, at }) if at.elapsed() < RELOAD_AFTER => {
                return Err(VectorError::Embedding(error.clone()))
            }
            _ => {}
        }
        match load_model(&self.dir) {
            Ok(m) => {
                let m = Arc::new(m);
                *state = Some(State::Loaded(m.clone()));
                tracing::info!(dir = %self.dir.display(), model = LOCAL_MODEL_ID, "local embedding model loaded");
                Ok(m)
            }
            Err(e) => {
                *state = Some(State::Failed {
                    error: e.to_string(),
                    at: Instant::now(),
                });
                Err(e)
            }
        }
    }
}

fn missing_file(dir: &Path) -> Option<VectorError> {
    FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| !p.is_file())
        .map(|path| VectorError::ModelMissing {
            dir: dir.to_path_buf(),
            path,
        })
}

fn load_model(dir: &Path) -> Result<Model, VectorError> {
    if let Some(e) = missing_file(dir) {
        return Err(e);
    }
    let invalid = |reason: String| VectorError::ModelInvalid {
        dir: dir.to_path_buf(),
        reason,
    };
    let config_text = std::fs::read_to_string(dir.join("config.json"))
        .map_err(|e| invalid(format!("config.json: {e}")))?;
    let config: Config =
        serde_json::from_str(&config_text).map_err(|e| invalid(format!("config.json: {e}")))?;
    if config.hidden_size != LOCAL_MODEL_DIMENSIONS {
        return Err(invalid(format!(
            "hidden_size is {}, expected {LOCAL_MODEL_DIMENSIONS} for {LOCAL_MODEL_ID}",
            config.hidden_size
        )));
    }
    let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
        .map_err(|e| invalid(format!("tokenizer.json: {e}")))?;
    // The shipped tokenizer.json pads and truncates to 128; sentence-transformers runs this
    // model with max_seq_length 256 and pads each batch only to its longest text.
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: MAX_TOKENS,
            ..Default::default()
        }))
        .map_err(|e| invalid(format!("tokenizer truncation: {e}")))?;
    tokenizer.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        ..Default::default()
    }));
    let device = Device::Cpu;
    // Read (not mmap) the weights: safe code only, and 90 MB is read once.
    let weights = std::fs::read(dir.join("model.safetensors"))
        .map_err(|e| invalid(format!("model.safetensors: {e}")))?;
    let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
        .map_err(|e| invalid(format!("model.safetensors: {e}")))?;
    let bert = BertModel::load(vb, &config).map_err(|e| invalid(format!("weights: {e}")))?;
    Ok(Model {
        bert,
        tokenizer,
        device,
    })
}

impl Model {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, VectorError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            VectorError::Embedding(format!("local model {what}: {e}"))
        };
        // Tokenize once without padding to sort by length, so each pass pads little.
        let mut order: Vec<(usize, usize)> = Vec::with_capacity(texts.len());
        for (i, t) in texts.iter().enumerate() {
            order.push((i, t.len()));
        }
        order.sort_by_key(|(_, len)| *len);
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        let mut rest = &order[..];
        while !rest.is_empty() {
            let mut take = rest.len().min(PASS_SIZE);
            let (pass, encodings) = loop {
                let pass = &rest[..take];
                let batch: Vec<&str> = pass.iter().map(|(i, _)| texts[*i]).collect();
                let encodings = self
                    .tokenizer
                    .encode_batch(batch, true)
                    .map_err(|e| fail("tokenizer", &e))?;
                let len = encodings.first().map_or(0, |e| e.get_ids().len());
                let fits = (PASS_TOKENS_SQUARED / (len * len).max(1)).max(1);
                if take <= fits {
                    break (pass, encodings);
                }
                // Sorted by length, so the first `fits` texts are the shorter ones.
                take = fits;
            };
            rest = &rest[take..];
            let rows = encodings.len();
            let len = encodings.first().map_or(0, |e| e.get_ids().len());
            let mut ids = Vec::with_capacity(rows * len);
            let mut types = Vec::with_capacity(rows * len);
            let mut mask = Vec::with_capacity(rows * len);
            for e in &encodings {
                ids.extend_from_slice(e.get_ids());
                types.extend_from_slice(e.get_type_ids());
                mask.extend_from_slice(e.get_attention_mask());
            }
            let t = |v: Vec<u32>| {
                Tensor::from_vec(v, (rows, len), &self.device).map_err(|e| fail("input", &e))
            };
            let (ids, types, mask) = (t(ids)?, t(types)?, t(mask)?);
            let pooled = self
                .forward(&ids, &types, &mask)
                .map_err(|e| fail("inference", &e))?;
            for ((i, _), v) in pass.iter().zip(pooled) {
                out[*i] = v;
            }
        }
        Ok(out)
    }

    /// Masked mean of the last hidden states, L2-normalised.
    fn forward(
        &self,
        ids: &Tensor,
        types: &Tensor,
        mask: &Tensor,
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let hidden = self.bert.forward(ids, types, Some(mask))?;
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        mean.broadcast_div(&norm)?.to_vec2::<f32>()
    }
}

impl EmbeddingProvider for LocalProvider {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, VectorError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        self.model()?.embed(texts)
    }

    fn dimensions(&self) -> Option<usize> {
        Some(LOCAL_MODEL_DIMENSIONS)
    }

    fn model_id(&self) -> &str {
        LOCAL_MODEL_ID
    }

    fn count_tokens(&self, texts: &[&str]) -> Option<usize> {
        let model = self.model().ok()?;
        let encodings = model.tokenizer.encode_batch(texts.to_vec(), true).ok()?;
        Some(
            encodings
                .iter()
                .map(|e| e.get_attention_mask().iter().filter(|m| **m == 1).count())
                .sum(),
        )
    }
}
