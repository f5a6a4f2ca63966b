//! Per-topic configuration: the definition of every key a topic accepts (type, default, range,
//! documentation), validation of user input, and the typed [`TopicConfig`] the broker runs on.
//!
//! Topics store only the keys a user set (as Kafka does); everything else is the default. One
//! table, [`DEFINITIONS`], drives validation, DescribeConfigs and the typed view, so adding a key
//! is one entry.

use std::collections::BTreeMap;

use crate::MetaError;

/// Value type as Kafka's DescribeConfigs reports it (config_type, v3+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    Boolean,
    String,
    Int,
    Long,
    List,
}

impl ConfigKind {
    /// Kafka's numeric config type.
    pub fn kafka_type(self) -> i8 {
        match self {
            ConfigKind::Boolean => 1,
            ConfigKind::String => 2,
            ConfigKind::Int => 3,
            ConfigKind::Long => 5,
            ConfigKind::List => 7,
        }
    }
}

/// Where an effective value came from (Kafka's config_source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    TopicOverride,
    Default,
}

impl ConfigSource {
    pub fn kafka_source(self) -> i8 {
        match self {
            ConfigSource::TopicOverride => 1,
            ConfigSource::Default => 5,
        }
    }
}

type Check = fn(&str) -> Result<(), String>;

/// One accepted topic config key.
#[derive(Debug)]
pub struct ConfigDef {
    pub name: &'static str,
    pub kind: ConfigKind,
    pub default: &'static str,
    pub doc: &'static str,
    check: Check,
    /// Set when the key is part of the product contract but the capability behind it is not in
    /// this build: setting it is refused with this reason rather than silently ignored.
    unavailable: Option<&'static str>,
}

const DAY_MS: &str = "86400000";

fn long_at_least(min: i64) -> impl Fn(&str) -> Result<(), String> {
    move |v: &str| match v.trim().parse::<i64>() {
        Ok(n) if n >= min => Ok(()),
        Ok(n) => Err(format!("{n} is below the minimum {min}")),
        Err(_) => Err(format!("'{v}' is not an integer")),
    }
}

fn check_long_min_neg1(v: &str) -> Result<(), String> {
    long_at_least(-1)(v)
}
fn check_long_min_neg2(v: &str) -> Result<(), String> {
    long_at_least(-2)(v)
}
fn check_long_min0(v: &str) -> Result<(), String> {
    long_at_least(0)(v)
}
fn check_long_min1(v: &str) -> Result<(), String> {
    long_at_least(1)(v)
}
fn check_int_min0(v: &str) -> Result<(), String> {
    long_at_least(0)(v)?;
    i32::try_from(v.trim().parse::<i64>().unwrap_or_default())
        .map(|_| ())
        .map_err(|_| format!("{v} does not fit in an int"))
}
fn check_int_min1(v: &str) -> Result<(), String> {
    long_at_least(1)(v)?;
    check_int_min0(v)
}
fn check_segment_bytes(v: &str) -> Result<(), String> {
    long_at_least(1024)(v)?;
    check_int_min0(v)
}
fn check_bool(v: &str) -> Result<(), String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "false" => Ok(()),
        _ => Err(format!("'{v}' is not a boolean (true or false)")),
    }
}
fn check_cleanup_policy(v: &str) -> Result<(), String> {
    CleanupPolicy::parse(v).map(|_| ())
}
fn check_compression_type(v: &str) -> Result<(), String> {
    match v.trim() {
        "producer" => Ok(()),
        "none" | "gzip" | "snappy" | "lz4" | "zstd" | "uncompressed" => Err(format!(
            "'{v}' would require re-compressing batches; chronik stores batches as the producer \
             compressed them, so only 'producer' is supported"
        )),
        _ => Err(format!("'{v}' is not a compression type")),
    }
}
fn check_timestamp_type(v: &str) -> Result<(), String> {
    match v.trim() {
        "CreateTime" => Ok(()),
        "LogAppendTime" => Err("LogAppendTime is not supported; only CreateTime".into()),
        _ => Err(format!("'{v}' is not CreateTime or LogAppendTime")),
    }
}
fn check_any(_: &str) -> Result<(), String> {
    Ok(())
}
fn check_vector_field(v: &str) -> Result<(), String> {
    match v {
        "value" | "key" => Ok(()),
        p if p.starts_with("$.") && p.len() > 2 => Ok(()),
        _ => Err(format!(
            "'{v}' is not value, key or a JSON path like $.field"
        )),
    }
}
fn check_vector_metric(v: &str) -> Result<(), String> {
    match v {
        "cosine" | "l2" | "dot" => Ok(()),
        _ => Err(format!("'{v}' is not cosine, l2 or dot")),
    }
}
fn check_provider(v: &str) -> Result<(), String> {
    EmbeddingProviderKind::parse(v).map(|_| ())
}
fn check_embedding_model(v: &str) -> Result<(), String> {
    if v.chars().any(char::is_control) || v.len() > 256 {
        return Err("a model name is at most 256 printable characters".into());
    }
    Ok(())
}
/// An embedding endpoint URL as the topic key, CHRONIK_EMBEDDING_ENDPOINT and the openai
/// provider all accept it: `http://` or `https://`, a host, no whitespace.
pub fn check_embedding_endpoint(v: &str) -> Result<(), String> {
    let v = v.trim();
    let rest = v
        .strip_prefix("http://")
        .or_else(|| v.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace) => {
            Ok(())
        }
        _ => Err(format!("'{v}' is not an http:// or https:// URL")),
    }
}
/// Empty is the server's endpoint.
fn check_topic_embedding_endpoint(v: &str) -> Result<(), String> {
    if v.trim().is_empty() {
        return Ok(());
    }
    check_embedding_endpoint(v)
}
/// A key is named, never stored: topic configs are replicated through Raft and returned by
/// DescribeConfigs in clear.
fn check_env_name(v: &str) -> Result<(), String> {
    let v = v.trim();
    let valid = v
        .chars()
        .enumerate()
        .all(|(i, c)| c == '_' || c.is_ascii_uppercase() || (i > 0 && c.is_ascii_digit()));
    if valid && v.len() <= 128 {
        Ok(())
    } else {
        Err(format!(
            "'{v}' is not an environment variable name (A-Z, 0-9 and _, not starting with a digit)"
        ))
    }
}
fn check_embedding_dimensions(v: &str) -> Result<(), String> {
    match v.trim().parse::<i64>() {
        Ok(n) if (0..=MAX_EMBEDDING_DIMENSIONS as i64).contains(&n) => Ok(()),
        Ok(n) => Err(format!(
            "{n} is outside 0..={MAX_EMBEDDING_DIMENSIONS} (0 means the model's own)"
        )),
        Err(_) => Err(format!("'{v}' is not an integer")),
    }
}

/// Largest vector.embedding.dimensions a topic may ask for.
pub const MAX_EMBEDDING_DIMENSIONS: usize = 16_384;

/// Which embedding provider embeds a topic's events (vector.embedding.provider).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingProviderKind {
    /// The model run in-process.
    Local,
    /// An OpenAI-compatible POST /v1/embeddings endpoint.
    OpenAi,
}

impl EmbeddingProviderKind {
    /// `None` for the empty value: the server's own provider.
    pub fn parse(v: &str) -> Result<Option<Self>, String> {
        match v.trim() {
            "" => Ok(None),
            "local" => Ok(Some(EmbeddingProviderKind::Local)),
            "openai" => Ok(Some(EmbeddingProviderKind::OpenAi)),
            other => Err(format!("'{other}' is not local or openai")),
        }
    }
}
fn check_hnsw_m(v: &str) -> Result<(), String> {
    match v.trim().parse::<i64>() {
        Ok(n) if (2..=256).contains(&n) => Ok(()),
        Ok(n) => Err(format!("{n} is outside 2..=256")),
        Err(_) => Err(format!("'{v}' is not an integer")),
    }
}
fn check_hnsw_ef(v: &str) -> Result<(), String> {
    match v.trim().parse::<i64>() {
        Ok(n) if (1..=10_000).contains(&n) => Ok(()),
        Ok(n) => Err(format!("{n} is outside 1..=10000")),
        Err(_) => Err(format!("'{v}' is not an integer")),
    }
}

const NO_TIER: Option<&str> = Some("tiered storage is not available in this build yet");

macro_rules! def {
    ($name:literal, $kind:ident, $default:expr, $check:expr, $doc:literal) => {
        def!($name, $kind, $default, $check, $doc, None)
    };
    ($name:literal, $kind:ident, $default:expr, $check:expr, $doc:literal, $unavailable:expr) => {
        ConfigDef {
            name: $name,
            kind: ConfigKind::$kind,
            default: $default,
            doc: $doc,
            check: $check,
            unavailable: $unavailable,
        }
    };
}

/// Every topic config key Chronik accepts.
pub static DEFINITIONS: &[ConfigDef] = &[
    def!(
        "cleanup.policy",
        List,
        "delete",
        check_cleanup_policy,
        "delete, compact, or compact,delete"
    ),
    def!(
        "retention.ms",
        Long,
        "604800000",
        check_long_min_neg1,
        "how long data is kept; -1 keeps it forever"
    ),
    def!(
        "retention.bytes",
        Long,
        "-1",
        check_long_min_neg1,
        "largest size of a partition before old segments are deleted; -1 is unbounded"
    ),
    def!(
        "local.retention.ms",
        Long,
        "-2",
        check_long_min_neg2,
        "how long sealed segments stay on local disk when tiering is on; -2 means retention.ms",
        NO_TIER
    ),
    def!(
        "local.retention.bytes",
        Long,
        "-2",
        check_long_min_neg2,
        "local size bound when tiering is on; -2 means retention.bytes",
        NO_TIER
    ),
    def!(
        "segment.bytes",
        Int,
        "1073741824",
        check_segment_bytes,
        "segment file size at which the log rolls"
    ),
    def!(
        "segment.ms",
        Long,
        "604800000",
        check_long_min1,
        "age at which the active segment rolls"
    ),
    def!(
        "max.message.bytes",
        Int,
        "1048576",
        check_int_min0,
        "largest record batch accepted"
    ),
    def!(
        "min.insync.replicas",
        Int,
        "1",
        check_int_min1,
        "replicas that must have a write for acks=all to succeed"
    ),
    def!(
        "delete.retention.ms",
        Long,
        DAY_MS,
        check_long_min0,
        "how long compaction keeps tombstones"
    ),
    def!(
        "min.compaction.lag.ms",
        Long,
        "0",
        check_long_min0,
        "minimum age before a record may be compacted"
    ),
    def!(
        "compression.type",
        String,
        "producer",
        check_compression_type,
        "batches are stored as the producer compressed them"
    ),
    def!(
        "message.timestamp.type",
        String,
        "CreateTime",
        check_timestamp_type,
        "record timestamps are the producer's CreateTime"
    ),
    def!(
        "columnar.enabled",
        Boolean,
        "false",
        check_bool,
        "SQL over the topic"
    ),
    def!(
        "searchable.enabled",
        Boolean,
        "false",
        check_bool,
        "full-text search over the topic"
    ),
    def!(
        "search.fields",
        List,
        "",
        check_any,
        "JSON paths indexed as text"
    ),
    def!(
        "vector.enabled",
        Boolean,
        "false",
        check_bool,
        "vector search over the topic"
    ),
    def!(
        "vector.field",
        String,
        "value",
        check_vector_field,
        "what is embedded: value, key or a JSON path"
    ),
    def!(
        "vector.embedding.provider",
        String,
        "",
        check_provider,
        "local or openai; empty is the server's CHRONIK_EMBEDDING_PROVIDER"
    ),
    def!(
        "vector.embedding.model",
        String,
        "",
        check_embedding_model,
        "embedding model; empty is the provider's default"
    ),
    def!(
        "vector.embedding.endpoint",
        String,
        "",
        check_topic_embedding_endpoint,
        "OpenAI-compatible embeddings URL; empty is the server's CHRONIK_EMBEDDING_ENDPOINT"
    ),
    def!(
        "vector.embedding.api.key.env",
        String,
        "",
        check_env_name,
        "environment variable of every broker holding this topic's key; empty is OPENAI_API_KEY"
    ),
    def!(
        "vector.embedding.dimensions",
        Int,
        "0",
        check_embedding_dimensions,
        "embedding dimensions"
    ),
    def!(
        "vector.metric",
        String,
        "cosine",
        check_vector_metric,
        "cosine, l2 or dot"
    ),
    def!(
        "vector.hnsw.m",
        Int,
        "16",
        check_hnsw_m,
        "HNSW links per node"
    ),
    def!(
        "vector.hnsw.ef_construction",
        Int,
        "200",
        check_hnsw_ef,
        "HNSW build beam width"
    ),
    def!(
        "vector.hnsw.ef_search",
        Int,
        "64",
        check_hnsw_ef,
        "HNSW query beam width"
    ),
];

/// Accepted alternative spellings, mapped to their canonical key.
const ALIASES: &[(&str, &str)] = &[("searchable", "searchable.enabled")];

pub fn definition(name: &str) -> Option<&'static ConfigDef> {
    DEFINITIONS.iter().find(|d| d.name == name)
}

/// Definitions of the keys this build serves (listed by DescribeConfigs).
pub fn available_definitions() -> impl Iterator<Item = &'static ConfigDef> {
    DEFINITIONS.iter().filter(|d| d.unavailable.is_none())
}

fn canonical(name: &str) -> &str {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, canonical)| canonical)
}

/// Check one key and value; returns the canonical key.
pub fn validate_entry(name: &str, value: &str) -> Result<&'static str, MetaError> {
    let invalid = |reason: String| MetaError::InvalidConfig {
        key: name.to_string(),
        reason,
    };
    let def = definition(canonical(name)).ok_or_else(|| invalid("unknown config".into()))?;
    if let Some(reason) = def.unavailable {
        return Err(invalid(reason.to_string()));
    }
    (def.check)(value).map_err(invalid)?;
    Ok(def.name)
}

/// Validate user-supplied overrides and return them under canonical keys.
pub fn validate(
    overrides: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, MetaError> {
    let mut out = BTreeMap::new();
    for (name, value) in overrides {
        let key = validate_entry(name, value)?;
        out.insert(key.to_string(), value.trim().to_string());
    }
    Ok(out)
}

/// What compaction and deletion do with old data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

impl CleanupPolicy {
    pub fn parse(v: &str) -> Result<Self, String> {
        let mut policy = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "delete" => policy.delete = true,
                "compact" => policy.compact = true,
                other => return Err(format!("'{other}' is not delete or compact")),
            }
        }
        if !policy.delete && !policy.compact {
            return Err("cleanup.policy needs delete, compact or both".into());
        }
        Ok(policy)
    }
}

/// One effective config value as DescribeConfigs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedConfig {
    pub name: &'static str,
    pub value: String,
    pub source: ConfigSource,
    pub kind: ConfigKind,
    pub doc: &'static str,
}

/// Every served key with its effective value for a topic with these overrides.
pub fn resolve_all(overrides: &BTreeMap<String, String>) -> Vec<ResolvedConfig> {
    available_definitions()
        .map(|def| match overrides.get(def.name) {
            Some(v) => ResolvedConfig {
                name: def.name,
                value: v.clone(),
                source: ConfigSource::TopicOverride,
                kind: def.kind,
                doc: def.doc,
            },
            None => ResolvedConfig {
                name: def.name,
                value: def.default.to_string(),
                source: ConfigSource::Default,
                kind: def.kind,
                doc: def.doc,
            },
        })
        .collect()
}

/// The typed settings a topic runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub cleanup_policy: CleanupPolicy,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: i64,
    pub segment_ms: i64,
    pub max_message_bytes: i32,
    pub min_insync_replicas: i32,
    pub delete_retention_ms: i64,
    pub min_compaction_lag_ms: i64,
    /// SQL over the topic (columnar.enabled).
    pub columnar_enabled: bool,
    /// Full-text search over the topic (searchable.enabled).
    pub searchable_enabled: bool,
    /// JSON paths indexed as text (search.fields); `None` means every string field.
    pub search_fields: Option<Vec<String>>,
    /// Vector search over the topic (vector.enabled) and how it is built.
    pub vector: VectorSettings,
}

/// What is embedded for vector search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VectorField {
    Value,
    Key,
    /// A JSON path into the value, `$.a.b` as the segments `["a", "b"]`.
    Path(Vec<String>),
}

impl VectorField {
    pub fn parse(v: &str) -> VectorField {
        match v.trim() {
            "key" => VectorField::Key,
            p if p.starts_with("$.") && p.len() > 2 => {
                VectorField::Path(p[2..].split('.').map(str::to_string).collect())
            }
            _ => VectorField::Value,
        }
    }
}

/// Similarity of vectors (vector.metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorMetric {
    Cosine,
    L2,
    Dot,
}

/// The vector.* keys of a topic, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorSettings {
    pub enabled: bool,
    pub field: VectorField,
    /// vector.embedding.provider; `None` is the server's provider.
    pub provider: Option<EmbeddingProviderKind>,
    /// vector.embedding.model; empty is the provider's default model.
    pub model: String,
    /// vector.embedding.endpoint; empty is the server's endpoint.
    pub endpoint: String,
    /// vector.embedding.api.key.env: the variable holding the key; empty is the server's key.
    pub api_key_env: String,
    /// vector.embedding.dimensions; 0 is the model's own.
    pub dimensions: usize,
    pub metric: VectorMetric,
    pub m: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
}

impl TopicConfig {
    /// Typed view of validated overrides; keys not set take their defaults.
    pub fn from_overrides(overrides: &BTreeMap<String, String>) -> TopicConfig {
        let raw = |name: &str| -> String {
            overrides.get(name).cloned().unwrap_or_else(|| {
                definition(name).map_or_else(String::new, |d| d.default.to_string())
            })
        };
        let num = |name: &str| -> i64 {
            let fallback = definition(name)
                .and_then(|d| d.default.parse().ok())
                .unwrap_or(0);
            raw(name).trim().parse().unwrap_or(fallback)
        };
        TopicConfig {
            cleanup_policy: CleanupPolicy::parse(&raw("cleanup.policy")).unwrap_or(CleanupPolicy {
                delete: true,
                compact: false,
            }),
            retention_ms: num("retention.ms"),
            retention_bytes: num("retention.bytes"),
            segment_bytes: num("segment.bytes"),
            segment_ms: num("segment.ms"),
            max_message_bytes: num("max.message.bytes") as i32,
            min_insync_replicas: num("min.insync.replicas") as i32,
            delete_retention_ms: num("delete.retention.ms"),
            min_compaction_lag_ms: num("min.compaction.lag.ms"),
            columnar_enabled: raw("columnar.enabled").trim().eq_ignore_ascii_case("true"),
            searchable_enabled: raw("searchable.enabled")
                .trim()
                .eq_ignore_ascii_case("true"),
            search_fields: {
                let fields: Vec<String> = raw("search.fields")
                    .split(',')
                    .map(|f| f.trim().to_string())
                    .filter(|f| !f.is_empty())
                    .collect();
                (!fields.is_empty()).then_some(fields)
            },
            vector: VectorSettings {
                enabled: raw("vector.enabled").trim().eq_ignore_ascii_case("true"),
                field: VectorField::parse(&raw("vector.field")),
                provider: EmbeddingProviderKind::parse(&raw("vector.embedding.provider"))
                    .unwrap_or(None),
                model: raw("vector.embedding.model").trim().to_string(),
                endpoint: raw("vector.embedding.endpoint").trim().to_string(),
                api_key_env: raw("vector.embedding.api.key.env").trim().to_string(),
                dimensions: num("vector.embedding.dimensions").max(0) as usize,
                metric: match raw("vector.metric").trim() {
                    "l2" => VectorMetric::L2,
                    "dot" => VectorMetric::Dot,
                    _ => VectorMetric::Cosine,
                },
                m: num("vector.hnsw.m").max(2) as usize,
                ef_construction: num("vector.hnsw.ef_construction").max(1) as usize,
                ef_search: num("vector.hnsw.ef_search").max(1) as usize,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn unknown_key_is_refused_by_name() {
        let err = validate(&map(&[("retention.mss", "1")])).unwrap_err();
        assert_eq!(
            err,
            MetaError::InvalidConfig {
                key: "retention.mss".into(),
                reason: "unknown config".into()
            }
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_key() {
        for (k, v) in [
            ("retention.ms", "soon"),
            ("retention.ms", "-5"),
            ("cleanup.policy", "shred"),
            ("segment.bytes", "10"),
            ("max.message.bytes", "99999999999"),
            ("min.insync.replicas", "0"),
            ("compression.type", "gzip"),
        ] {
            match validate(&map(&[(k, v)])) {
                Err(MetaError::InvalidConfig { key, .. }) => assert_eq!(key, k),
                other => panic!("{k}={v}: expected InvalidConfig, got {other:?}"),
            }
        }
    }

    #[test]
    fn capabilities_not_in_this_build_are_refused_honestly() {
        let err = validate(&map(&[("local.retention.ms", "1000")])).unwrap_err();
        assert!(err.to_string().contains("not available"), "{err}");
        // SQL is served: its key is accepted.
        validate(&map(&[("columnar.enabled", "true")])).unwrap();
    }

    #[test]
    fn search_keys_and_the_alias_are_accepted() {
        let out = validate(&map(&[
            ("searchable", "true"),
            ("search.fields", "title, $.body"),
        ]))
        .unwrap();
        assert_eq!(
            out.get("searchable.enabled").map(String::as_str),
            Some("true")
        );
        let cfg = TopicConfig::from_overrides(&out);
        assert!(cfg.searchable_enabled);
        assert_eq!(
            cfg.search_fields,
            Some(vec!["title".to_string(), "$.body".to_string()])
        );
        assert!(validate(&map(&[("searchable.enabled", "yes")])).is_err());
    }

    #[test]
    fn vector_keys_are_typed_and_checked() {
        let cfg = TopicConfig::from_overrides(&map(&[
            ("vector.enabled", "true"),
            ("vector.field", "$.doc.title"),
            ("vector.metric", "dot"),
            ("vector.hnsw.m", "8"),
        ]));
        assert!(cfg.vector.enabled);
        assert_eq!(
            cfg.vector.field,
            VectorField::Path(vec!["doc".into(), "title".into()])
        );
        assert_eq!(cfg.vector.metric, VectorMetric::Dot);
        assert_eq!(
            (
                cfg.vector.m,
                cfg.vector.ef_construction,
                cfg.vector.ef_search
            ),
            (8, 200, 64)
        );
        let remote = TopicConfig::from_overrides(
            &validate(&map(&[
                ("vector.embedding.provider", "openai"),
                ("vector.embedding.endpoint", "http://127.0.0.1:11434/v1"),
                ("vector.embedding.model", "nomic-embed-text"),
                ("vector.embedding.dimensions", "768"),
                ("vector.embedding.api.key.env", "TEAM_A_OPENAI_KEY"),
            ]))
            .unwrap(),
        );
        assert_eq!(remote.vector.api_key_env, "TEAM_A_OPENAI_KEY");
        assert_eq!(remote.vector.provider, Some(EmbeddingProviderKind::OpenAi));
        assert_eq!(remote.vector.endpoint, "http://127.0.0.1:11434/v1");
        assert_eq!(
            (remote.vector.model.as_str(), remote.vector.dimensions),
            ("nomic-embed-text", 768)
        );
        let defaults = TopicConfig::from_overrides(&BTreeMap::new());
        assert_eq!(defaults.vector.provider, None, "the server's provider");
        assert!(!defaults.vector.enabled);
        assert_eq!(defaults.vector.field, VectorField::Value);
        assert_eq!(defaults.vector.metric, VectorMetric::Cosine);
        for (k, v) in [
            ("vector.field", "title"),
            ("vector.metric", "hamming"),
            ("vector.hnsw.m", "1"),
            ("vector.hnsw.m", "1000"),
            ("vector.hnsw.ef_search", "0"),
            ("vector.embedding.provider", "magic"),
            ("vector.embedding.model", "tab\there"),
            ("vector.embedding.dimensions", "-1"),
            ("vector.embedding.dimensions", "100000"),
            ("vector.embedding.endpoint", "ftp://x"),
            ("vector.embedding.endpoint", "http://"),
            ("vector.embedding.api.key.env", "sk-abc123"),
            ("vector.embedding.api.key.env", "9LIVES"),
        ] {
            match validate(&map(&[(k, v)])) {
                Err(MetaError::InvalidConfig { key, .. }) => assert_eq!(key, k),
                other => panic!("{k}={v}: expected InvalidConfig, got {other:?}"),
            }
        }
    }

    #[test]
    fn typed_view_uses_overrides_then_defaults() {
        let cfg = TopicConfig::from_overrides(&map(&[
            ("cleanup.policy", "compact,delete"),
            ("retention.ms", "1000"),
        ]));
        assert_eq!(
            cfg.cleanup_policy,
            CleanupPolicy {
                delete: true,
                compact: true
            }
        );
        assert_eq!(cfg.retention_ms, 1000);
        assert_eq!(cfg.retention_bytes, -1);
        assert_eq!(cfg.segment_bytes, 1 << 30);
        assert_eq!(cfg.max_message_bytes, 1 << 20);
    }

    #[test]
    fn resolve_all_marks_sources() {
        let all = resolve_all(&map(&[("retention.ms", "5")]));
        let r = all.iter().find(|c| c.name == "retention.ms").unwrap();
        assert_eq!(
            (r.value.as_str(), r.source),
            ("5", ConfigSource::TopicOverride)
        );
        let s = all.iter().find(|c| c.name == "segment.ms").unwrap();
        assert_eq!(s.source, ConfigSource::Default);
        assert!(all.iter().any(|c| c.name == "vector.enabled"));
        assert!(all.iter().all(|c| c.name != "local.retention.ms"));
        let c = all.iter().find(|c| c.name == "columnar.enabled").unwrap();
        assert_eq!(c.source, ConfigSource::Default);
    }
}
