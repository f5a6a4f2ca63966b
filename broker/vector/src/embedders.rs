//! [`Embedders`]: which embedding pool embeds a topic. The server runs one provider by default
//! (CHRONIK_EMBEDDING_PROVIDER); a topic's vector.embedding.{provider, model, endpoint,
//! dimensions} can choose another. Remote endpoints get one pool per (endpoint, model,
//! dimensions), created on first use and shared by every topic that names them.

use std::collections::HashMap;

use chronik_meta::{EmbeddingProviderKind, VectorSettings};
use parking_lot::Mutex;
use std::sync::Arc;

use crate::openai::{OpenAiConfig, OpenAiProvider};
use crate::{EmbeddingPool, VectorError, LOCAL_MODEL_DIMENSIONS, LOCAL_MODEL_ID};

/// Names the local model answers to in vector.embedding.model.
const LOCAL_MODEL_NAMES: [&str; 2] = [LOCAL_MODEL_ID, "sentence-transformers/all-MiniLM-L6-v2"];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RemoteKey {
    url: String,
    model: String,
    dimensions: Option<usize>,
    /// The variable the key was read from (the key itself is not kept here).
    key_env: String,
}

/// The embedding pools of a broker.
#[derive(Debug)]
pub struct Embedders {
    default: Option<EmbeddingProviderKind>,
    /// The in-process model, when this broker has one.
    local: Option<EmbeddingPool>,
    /// Endpoint, model, key and limits for `openai` topics that do not set their own.
    openai: OpenAiConfig,
    workers: usize,
    /// Pools per endpoint; the server's default remote pool is one of them.
    remote: Mutex<HashMap<RemoteKey, EmbeddingPool>>,
}

impl Embedders {
    /// `default` is the server's provider (`None`: topics must name one); `local` is the
    /// in-process model's pool; `openai` configures remote endpoints; each remote pool runs
    /// `workers` requests at once.
    pub fn new(
        default: Option<EmbeddingProviderKind>,
        local: Option<EmbeddingPool>,
        openai: OpenAiConfig,
        workers: usize,
    ) -> Self {
        Embedders {
            default,
            local,
            openai,
            workers: workers.max(1),
            remote: Mutex::new(HashMap::new()),
        }
    }

    /// Every topic embedded with the in-process model on `pool` (tests, and servers with
    /// only the local provider).
    pub fn local_only(pool: EmbeddingPool) -> Self {
        Embedders::new(
            Some(EmbeddingProviderKind::Local),
            Some(pool),
            OpenAiConfig::default(),
            1,
        )
    }

    /// No provider for any topic.
    pub fn none() -> Self {
        Embedders::new(None, None, OpenAiConfig::default(), 1)
    }

    /// The server's own provider (POST /v1/embeddings), if it has one.
    pub fn default_pool(&self) -> Result<EmbeddingPool, VectorError> {
        match self.default {
            None => Err(no_provider()),
            Some(kind) => self.pool(kind, "", "", 0, ""),
        }
    }

    /// The pool that embeds a topic with these settings.
    pub fn for_topic(&self, v: &VectorSettings) -> Result<EmbeddingPool, VectorError> {
        let kind = v.provider.or(self.default).ok_or_else(no_provider)?;
        self.pool(kind, &v.model, &v.endpoint, v.dimensions, &v.api_key_env)
    }

    fn pool(
        &self,
        kind: EmbeddingProviderKind,
        model: &str,
        endpoint: &str,
        dimensions: usize,
        key_env: &str,
    ) -> Result<EmbeddingPool, VectorError> {
        match kind {
            EmbeddingProviderKind::Local => {
                let pool = self.local.clone().ok_or_else(|| {
                    VectorError::Unsupported(
                        "the local embedding provider is not available on this broker".into(),
                    )
                })?;
                if !model.is_empty() && !LOCAL_MODEL_NAMES.contains(&model) {
                    return Err(VectorError::Unsupported(format!(
                        "vector.embedding.model '{model}' is not the local provider's model \
                         ({LOCAL_MODEL_ID}); other models need vector.embedding.provider=openai"
                    )));
                }
                if !endpoint.is_empty() || !key_env.is_empty() {
                    return Err(VectorError::Unsupported(
                        "vector.embedding.endpoint or .api.key.env is set but the topic's provider \
                         is local"
                            .into(),
                    ));
                }
                if dimensions != 0 && dimensions != LOCAL_MODEL_DIMENSIONS {
                    return Err(VectorError::Unsupported(format!(
                        "vector.embedding.dimensions is {dimensions} but {LOCAL_MODEL_ID} gives \
                         {LOCAL_MODEL_DIMENSIONS}"
                    )));
                }
                Ok(pool)
            }
            EmbeddingProviderKind::OpenAi => {
                let mut config = self.openai.clone();
                if !endpoint.is_empty() {
                    config.endpoint = endpoint.to_string();
                }
                if !model.is_empty() {
                    config.model = model.to_string();
                }
                if dimensions != 0 {
                    config.dimensions = Some(dimensions);
                }
                if !key_env.is_empty() {
                    let key = std::env::var(key_env).ok().filter(|k| !k.trim().is_empty());
                    config.api_key = Some(key.ok_or_else(|| {
                        VectorError::Unsupported(format!(
                            "vector.embedding.api.key.env names {key_env}, which is not set on \
                             this broker"
                        ))
                    })?);
                }
                let key = RemoteKey {
                    url: crate::openai::embeddings_url(&config.endpoint),
                    model: config.model.clone(),
                    dimensions: config.dimensions,
                    key_env: key_env.to_string(),
                };
                let mut remote = self.remote.lock();
                if let Some(pool) = remote.get(&key) {
                    return Ok(pool.clone());
                }
                let provider = OpenAiProvider::new(config)?;
                tracing::info!(url = provider.url(), model = %key.model, "embedding with a remote provider");
                let pool = EmbeddingPool::new(Arc::new(provider), self.workers);
                remote.insert(key, pool.clone());
                Ok(pool)
            }
        }
    }
}

fn no_provider() -> VectorError {
    VectorError::Unsupported(
        "no embedding provider is configured on this broker (CHRONIK_EMBEDDING_PROVIDER=none) \
         and the topic names none in vector.embedding.provider"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use chronik_meta::TopicConfig;

    fn settings(pairs: &[(&str, &str)]) -> VectorSettings {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TopicConfig::from_overrides(&m).vector
    }

    fn remote_only() -> Embedders {
        Embedders::new(
            Some(EmbeddingProviderKind::OpenAi),
            None,
            OpenAiConfig {
                endpoint: "http://127.0.0.1:1/v1".into(),
                model: "server-model".into(),
                ..OpenAiConfig::default()
            },
            2,
        )
    }

    #[test]
    fn topics_take_the_server_provider_unless_they_name_one() {
        let e = remote_only();
        let p = e.for_topic(&settings(&[])).unwrap();
        assert_eq!(p.provider().model_id(), "server-model");
        let p = e
            .for_topic(&settings(&[
                ("vector.embedding.model", "other"),
                ("vector.embedding.dimensions", "256"),
            ]))
            .unwrap();
        assert_eq!(p.provider().model_id(), "other");
        assert_eq!(p.provider().dimensions(), Some(256));
        let err = e
            .for_topic(&settings(&[("vector.embedding.provider", "local")]))
            .unwrap_err();
        assert!(err.to_string().contains("not available"), "{err}");
        let err = Embedders::none().for_topic(&settings(&[])).unwrap_err();
        assert!(
            err.to_string().contains("CHRONIK_EMBEDDING_PROVIDER=none"),
            "{err}"
        );
    }

    #[test]
    fn remote_pools_are_shared_per_endpoint_model_and_dimensions() {
        let e = remote_only();
        let a = e.for_topic(&settings(&[])).unwrap();
        let b = e.for_topic(&settings(&[])).unwrap();
        assert!(Arc::ptr_eq(a.provider(), b.provider()));
        let c = e
            .for_topic(&settings(&[(
                "vector.embedding.endpoint",
                "http://127.0.0.1:2/v1/embeddings",
            )]))
            .unwrap();
        assert!(!Arc::ptr_eq(a.provider(), c.provider()));
        let d = e.default_pool().unwrap();
        assert!(Arc::ptr_eq(a.provider(), d.provider()));
        // A key named by the topic is read from the broker's environment, never from metadata.
        let err = e
            .for_topic(&settings(&[(
                "vector.embedding.api.key.env",
                "CHRONIK_TEST_UNSET_KEY_VARIABLE",
            )]))
            .unwrap_err();
        assert!(
            err.to_string().contains("CHRONIK_TEST_UNSET_KEY_VARIABLE"),
            "{err}"
        );
        let own = e
            .for_topic(&settings(&[("vector.embedding.api.key.env", "PATH")]))
            .unwrap();
        assert!(!Arc::ptr_eq(a.provider(), own.provider()));
    }

    #[test]
    fn the_local_provider_refuses_settings_it_cannot_honour() {
        let (provider, _) = crate::LocalProvider::open(std::path::Path::new("/nonexistent"));
        let e = Embedders::local_only(EmbeddingPool::new(Arc::new(provider), 1));
        e.for_topic(&settings(&[("vector.embedding.model", LOCAL_MODEL_ID)]))
            .unwrap();
        for (k, v, why) in [
            (
                "vector.embedding.model",
                "bge-large",
                "not the local provider's model",
            ),
            ("vector.embedding.dimensions", "768", "gives 384"),
            (
                "vector.embedding.endpoint",
                "http://x:1",
                "provider is local",
            ),
        ] {
            let err = e.for_topic(&settings(&[(k, v)])).unwrap_err();
            assert!(err.to_string().contains(why), "{k}={v}: {err}");
        }
    }
}
