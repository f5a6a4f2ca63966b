//! The ConfigMap of non-secret broker settings, given to every broker as environment variables.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};

use super::{object_meta, Names};
use crate::crd::ChronikCluster;

/// Settings every broker shares. Per-pod identity (node id, advertised address) is not here: it
/// comes from the downward API so one ConfigMap serves all pods.
pub fn config_map(cluster: &ChronikCluster) -> ConfigMap {
    let spec = &cluster.spec;
    let mut data = BTreeMap::new();
    data.insert(
        "CHRONIK_DEFAULT_REPLICATION_FACTOR".to_string(),
        spec.effective_replication_factor().to_string(),
    );
    data.insert(
        "CHRONIK_MIN_INSYNC_REPLICAS".to_string(),
        spec.min_insync_replicas.unwrap_or(1).to_string(),
    );
    if let Some(os) = &spec.object_store {
        data.insert("OBJECT_STORE_URL".to_string(), os.url.clone());
        if let Some(ms) = os.local_retention_ms {
            data.insert("CHRONIK_LOCAL_RETENTION_MS".to_string(), ms.to_string());
        }
    }
    if let Some(e) = &spec.embedding {
        data.insert(
            "CHRONIK_EMBEDDING_PROVIDER".to_string(),
            e.provider.as_str().to_string(),
        );
        if let Some(m) = &e.model {
            data.insert("CHRONIK_EMBEDDING_MODEL".to_string(), m.clone());
        }
        if let Some(u) = &e.endpoint {
            data.insert("CHRONIK_EMBEDDING_ENDPOINT".to_string(), u.clone());
        }
    }
    // User settings last so they win over the derived defaults above (validate() already keeps
    // them off the variables the operator must own).
    for (k, v) in &spec.config {
        data.insert(k.clone(), v.clone());
    }
    ConfigMap {
        metadata: object_meta(cluster, Names::config_map(cluster)),
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// Hex SHA-256 over the ConfigMap's sorted key/value pairs. Stable across operator versions
/// (unlike std's hasher), so an operator upgrade alone does not roll the brokers.
pub fn config_hash(cm: &ConfigMap) -> String {
    let mut h = Sha256::new();
    for (k, v) in cm.data.iter().flatten() {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::test_cluster::cluster;

    fn data(spec: &str) -> BTreeMap<String, String> {
        config_map(&cluster(spec)).data.unwrap()
    }

    #[test]
    fn config_map_is_named_after_the_cluster() {
        let cm = config_map(&cluster("{}"));
        assert_eq!(cm.metadata.name.as_deref(), Some("demo-config"));
    }

    #[test]
    fn replication_defaults_follow_replicas() {
        let d = data("replicas: 1");
        assert_eq!(d["CHRONIK_DEFAULT_REPLICATION_FACTOR"], "1");
        assert_eq!(d["CHRONIK_MIN_INSYNC_REPLICAS"], "1");
    }

    #[test]
    fn replication_factor_and_min_insync_come_from_the_spec() {
        let d = data("{replicas: 5, replicationFactor: 3, minInsyncReplicas: 2}");
        assert_eq!(d["CHRONIK_DEFAULT_REPLICATION_FACTOR"], "3");
        assert_eq!(d["CHRONIK_MIN_INSYNC_REPLICAS"], "2");
    }

    #[test]
    fn object_store_sets_url_and_local_retention() {
        let d = data("objectStore: {url: 's3://b/p', localRetentionMs: 3600000}");
        assert_eq!(d["OBJECT_STORE_URL"], "s3://b/p");
        assert_eq!(d["CHRONIK_LOCAL_RETENTION_MS"], "3600000");
        assert!(!data("{}").contains_key("OBJECT_STORE_URL"));
    }

    #[test]
    fn embedding_sets_provider_model_and_endpoint() {
        let d = data("embedding: {provider: openai, model: m1, endpoint: 'http://e'}");
        assert_eq!(d["CHRONIK_EMBEDDING_PROVIDER"], "openai");
        assert_eq!(d["CHRONIK_EMBEDDING_MODEL"], "m1");
        assert_eq!(d["CHRONIK_EMBEDDING_ENDPOINT"], "http://e");
    }

    #[test]
    fn extra_config_is_passed_through_and_wins() {
        let d = data("config: {CHRONIK_FLUSH: 'interval:50', CHRONIK_MIN_INSYNC_REPLICAS: '2'}");
        assert_eq!(d["CHRONIK_FLUSH"], "interval:50");
        assert_eq!(d["CHRONIK_MIN_INSYNC_REPLICAS"], "2");
    }

    #[test]
    fn config_hash_changes_with_config_and_only_with_config() {
        let a = config_hash(&config_map(&cluster("{}")));
        assert_eq!(a, config_hash(&config_map(&cluster("{}"))));
        assert_eq!(a, config_hash(&config_map(&cluster("image: other:1"))));
        assert_ne!(
            a,
            config_hash(&config_map(&cluster("config: {CHRONIK_FLUSH: os}")))
        );
    }
}
