//! The committed CRD matches the code, its schema rejects invalid specs, and every example
//! ChronikCluster in manifests/examples passes it.

use std::path::{Path, PathBuf};

use chronik_operator::crd::{crd_yaml, ChronikCluster};
use kube::CustomResourceExt;
use kube_cel::Validator;
use serde_json::{json, Value};

/// The checkout under test. Read at run time (cargo and nextest set it) rather than baked in at
/// compile time: a test binary reused from a shared target directory may have been built from
/// another checkout.
fn repo() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    Path::new(&manifest).parent().unwrap().to_path_buf()
}

const CRD_FILE: &str = "crds/chronikclusters.chronik.io.yaml";

#[test]
fn committed_crd_matches_the_rust_types() {
    let committed = std::fs::read_to_string(repo().join(CRD_FILE)).expect("crds/ file exists");
    let generated = crd_yaml().unwrap();
    assert!(
        committed == generated,
        "{CRD_FILE} is stale: run `make generate` (operator/generate.sh) and commit the result"
    );
    let chart_copy =
        std::fs::read_to_string(repo().join("charts/chronik/").join(CRD_FILE)).unwrap();
    assert!(
        chart_copy == committed,
        "charts/chronik/{CRD_FILE} differs from {CRD_FILE}: run `make generate`"
    );
}

#[test]
fn crd_has_the_name_short_name_status_and_printer_columns_of_the_spec() {
    let crd = ChronikCluster::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("chronikclusters.chronik.io")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["ccl".to_string()]));
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    assert!(v.subresources.as_ref().unwrap().status.is_some());
    let cols: Vec<_> = v
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(cols, vec!["Phase", "Ready", "Desired", "Age"]);
}

fn spec_schema() -> Value {
    let crd = serde_json::to_value(ChronikCluster::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn object(spec: Value) -> Value {
    json!({"apiVersion": "chronik.io/v1alpha1", "kind": "ChronikCluster",
        "metadata": {"name": "x"}, "spec": spec})
}

/// Runs the schema's CEL rules the way the API server would on create.
fn cel_errors(spec: Value) -> Vec<String> {
    cel_update_errors(None, spec)
}

/// Runs the schema's CEL rules the way the API server would on an update from `old`.
fn cel_update_errors(old: Option<Value>, spec: Value) -> Vec<String> {
    let old = old.map(object);
    Validator::new()
        .validate_with_defaults(&spec_schema(), &object(spec), old.as_ref())
        .err()
        .map(|errs| errs.into_vec().into_iter().map(|e| e.to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn schema_rejects_zero_replicas() {
    let errors = cel_errors(json!({"replicas": 0}));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("replicas must be at least 1")),
        "{errors:?}"
    );
    assert_eq!(
        spec_schema()["properties"]["spec"]["properties"]["replicas"]["minimum"],
        json!(1.0)
    );
}

#[test]
fn schema_rejects_min_insync_above_replication_factor() {
    let errors = cel_errors(json!({"replicas": 3, "replicationFactor": 2, "minInsyncReplicas": 3}));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("minInsyncReplicas must not exceed")),
        "{errors:?}"
    );
    let errors = cel_errors(json!({"replicas": 1, "minInsyncReplicas": 2}));
    assert!(
        !errors.is_empty(),
        "the replicationFactor default min(3, replicas) bounds it too"
    );
}

#[test]
fn schema_rejects_replication_factor_above_replicas() {
    let errors = cel_errors(json!({"replicas": 2, "replicationFactor": 3}));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("replicationFactor must not exceed")),
        "{errors:?}"
    );
}

#[test]
fn schema_rejects_object_store_urls_of_unknown_schemes() {
    assert!(!cel_errors(json!({"objectStore": {"url": "ftp://x"}})).is_empty());
}

#[test]
fn schema_rejects_deleting_tiered_data_the_operator_cannot_reach() {
    let errors =
        cel_errors(json!({"objectStore": {"url": "file:///var/tier", "deleteDataOnDelete": true}}));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("deleteDataOnDelete needs")),
        "{errors:?}"
    );
    for ok in [
        json!({"objectStore": {"url": "file:///var/tier"}}),
        json!({"objectStore": {"url": "file:///var/tier", "deleteDataOnDelete": false}}),
        json!({"objectStore": {"url": "s3://b/p", "deleteDataOnDelete": true}}),
    ] {
        assert!(cel_errors(ok.clone()).is_empty(), "{ok}");
    }
}

#[test]
fn schema_rejects_changing_the_volume_size_or_class_after_creation() {
    let old = json!({"storage": {"size": "10Gi", "storageClassName": "a"}});
    let errors = cel_update_errors(
        Some(old.clone()),
        json!({"storage": {"size": "20Gi", "storageClassName": "a"}}),
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("storage.size cannot change")),
        "{errors:?}"
    );
    let errors = cel_update_errors(
        Some(old.clone()),
        json!({"storage": {"size": "10Gi", "storageClassName": "b"}}),
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("storageClassName cannot change")),
        "{errors:?}"
    );
    let errors = cel_update_errors(
        Some(old.clone()),
        json!({"replicas": 5, "storage": {"size": "10Gi", "storageClassName": "a"}}),
    );
    assert!(errors.is_empty(), "other fields stay editable: {errors:?}");
}

#[test]
fn schema_accepts_a_valid_spec() {
    let errors = cel_errors(
        json!({"replicas": 3, "replicationFactor": 3, "minInsyncReplicas": 2,
        "config": {"CHRONIK_FLUSH": "group"}, "objectStore": {"url": "s3://b/p"}}),
    );
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn every_example_cluster_passes_the_schema_and_validate() {
    let dir = repo().join("manifests/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("manifests/examples exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc).unwrap();
            if v["kind"] != "ChronikCluster" {
                continue;
            }
            seen += 1;
            let errors = cel_errors(v["spec"].clone());
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            let cluster: ChronikCluster = serde_json::from_value(v).unwrap();
            cluster
                .spec
                .validate()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
    assert!(
        seen >= 3,
        "expected the three example clusters, found {seen}"
    );
}
