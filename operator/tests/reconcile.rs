//! Reconciler scenarios against a mock API server (kube-rs tower-test pattern) and a scripted
//! cluster admin API (both in `support`). The fake API server keeps objects in memory and
//! answers gets, lists, server-side applies, patches, creates and deletes, so each scenario
//! reads as: set the world up, reconcile, check what was applied and reported.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chronik_operator::controller::{error_policy, FINALIZER};
use chronik_operator::crd::Phase;
use chronik_operator::Error;
use kube::runtime::controller::Action;
use serde_json::json;

use support::*;

#[tokio::test]
async fn create_applies_every_object_and_reports_bootstrapping() {
    let w = world(json!({"replicas": 3}), ScriptedCluster::with_voters([]));
    w.reconcile().await.expect("first pass adds the finalizer");
    assert_eq!(
        w.cr().metadata.finalizers.unwrap(),
        vec![FINALIZER.to_string()]
    );

    let action = w.reconcile().await.expect("apply pass");
    let applied: Vec<String> = w
        .api
        .requests("PATCH", "")
        .iter()
        .map(|r| r.path.clone())
        .collect();
    for path in [
        "/api/v1/namespaces/data/configmaps/demo-config",
        "/api/v1/namespaces/data/services/demo-peers",
        "/api/v1/namespaces/data/services/demo",
        "/apis/policy/v1/namespaces/data/poddisruptionbudgets/demo",
        STS,
    ] {
        assert!(
            applied.iter().any(|p| p == path),
            "{path} not applied; applied: {applied:?}"
        );
    }
    assert_eq!(w.sts_replicas(), 3);
    assert_eq!(w.phase(), Some(Phase::Bootstrapping));
    let st = w.cr().status.unwrap();
    assert_eq!(st.observed_generation, Some(1));
    assert_eq!(st.bootstrap_voters, Some(3));
    assert_eq!(w.condition("Progressing").0, "True");
    assert_eq!(action, Action::requeue(Duration::from_secs(10)));
    assert!(
        w.cluster.calls().is_empty(),
        "nothing asks the admin api before a broker is ready"
    );
    assert!(
        !w.api.requests("POST", "/events").is_empty(),
        "a phase change is recorded as an event"
    );
}

#[tokio::test]
async fn ready_brokers_make_the_cluster_running() {
    let w = world(json!({"replicas": 3}), ScriptedCluster::with_voters(1..=3));
    w.reconcile_ready().await.unwrap();
    w.set_update_revision("r1");
    w.pod(1, "r1", true);
    w.pod(2, "r1", true);
    w.pod(3, "r1", false);
    w.reconcile().await.unwrap();
    assert_eq!(
        w.phase(),
        Some(Phase::Bootstrapping),
        "2/3 ready is still bootstrapping"
    );
    w.pod(3, "r1", true);
    let action = w.reconcile().await.unwrap();
    assert_eq!(w.phase(), Some(Phase::Running));
    assert_eq!(
        w.condition("Ready"),
        ("True".into(), "AllBrokersReady".into())
    );
    assert_eq!(w.cr().status.unwrap().ready_replicas, 3);
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
}

#[tokio::test]
async fn scale_3_to_5_grows_the_statefulset_and_adds_brokers_4_and_5_once_ready() {
    let w = world(json!({"replicas": 3}), ScriptedCluster::with_voters(1..=3));
    w.running(3, "r1").await;
    let template_before = w.sts()["spec"]["template"].clone();

    w.set_spec(json!({"replicas": 5}));
    w.reconcile().await.unwrap();
    assert_eq!(w.sts_replicas(), 5, "the statefulset grows first");
    assert_eq!(w.phase(), Some(Phase::Scaling));
    assert!(
        w.cluster.calls().is_empty(),
        "no add-node before the new brokers run"
    );
    assert_eq!(
        w.sts()["spec"]["template"],
        template_before,
        "scaling must not roll the brokers"
    );

    w.pod(4, "r1", false);
    w.pod(5, "r1", false);
    w.reconcile().await.unwrap();
    assert!(
        w.cluster.calls().is_empty(),
        "no add-node while 4 and 5 are not ready"
    );

    w.pod(4, "r1", true);
    w.reconcile().await.unwrap();
    assert_eq!(
        w.cluster.calls(),
        vec!["add 4 demo-4.demo-peers.data.svc.cluster.local:5001"]
    );
    w.pod(5, "r1", true);
    w.reconcile().await.unwrap();
    assert_eq!(w.cluster.calls().len(), 2);
    assert!(w.cluster.calls()[1].starts_with("add 5 "));
    w.reconcile().await.unwrap();
    assert_eq!(w.phase(), Some(Phase::Running));
    assert_eq!(w.cr().status.unwrap().nodes.len(), 5);
}

#[tokio::test]
async fn scale_5_to_3_drains_the_highest_brokers_before_shrinking() {
    let w = world(json!({"replicas": 5}), ScriptedCluster::with_voters(1..=5));
    w.running(5, "r1").await;

    w.set_spec(json!({"replicas": 3}));
    w.reconcile().await.unwrap();
    assert_eq!(w.cluster.calls(), vec!["remove 5"]);
    assert_eq!(
        w.sts_replicas(),
        5,
        "broker 5 keeps its pod while it drains"
    );
    assert_eq!(w.phase(), Some(Phase::Scaling));

    w.reconcile().await.unwrap();
    assert_eq!(
        w.cluster.calls(),
        vec!["remove 5"],
        "a draining broker is not asked twice"
    );
    assert_eq!(w.sts_replicas(), 5);

    w.cluster.finish_drain(5);
    w.reconcile().await.unwrap();
    assert_eq!(
        w.sts_replicas(),
        4,
        "shrinks past broker 5 once it left the cluster"
    );
    assert_eq!(w.cluster.calls(), vec!["remove 5", "remove 4"]);
    w.api.remove(&format!("{PODS}/demo-5"));

    w.cluster.finish_drain(4);
    w.reconcile().await.unwrap();
    assert_eq!(w.sts_replicas(), 3);
    w.api.remove(&format!("{PODS}/demo-4"));
    w.reconcile().await.unwrap();
    assert_eq!(w.phase(), Some(Phase::Running));
}

#[tokio::test]
async fn an_image_change_rolls_one_broker_at_a_time_waiting_for_cluster_health() {
    let w = world(
        json!({"replicas": 3, "image": "chronik:1"}),
        ScriptedCluster::with_voters(1..=3),
    );
    w.running(3, "r1").await;

    w.set_spec(json!({"image": "chronik:2"}));
    w.reconcile().await.unwrap();
    let image = &w.sts()["spec"]["template"]["spec"]["containers"][0]["image"];
    assert_eq!(image, "chronik:2");
    assert!(
        w.pods_deleted().is_empty(),
        "nothing rolls before the statefulset has a new revision"
    );

    w.set_update_revision("r2");
    w.reconcile().await.unwrap();
    assert_eq!(w.pods_deleted(), vec!["demo-3"], "highest ordinal first");
    assert_eq!(w.phase(), Some(Phase::Upgrading));

    w.pod(3, "r2", false);
    w.reconcile().await.unwrap();
    assert_eq!(
        w.pods_deleted(),
        vec!["demo-3"],
        "waits for the restarted broker"
    );

    w.pod(3, "r2", true);
    *w.cluster.under_replicated.lock().unwrap() = 4;
    w.reconcile().await.unwrap();
    assert_eq!(
        w.pods_deleted(),
        vec!["demo-3"],
        "waits for every partition to be in sync"
    );

    *w.cluster.under_replicated.lock().unwrap() = 0;
    w.reconcile().await.unwrap();
    assert_eq!(w.pods_deleted(), vec!["demo-3", "demo-2"]);

    w.pod(2, "r2", true);
    w.reconcile().await.unwrap();
    assert_eq!(w.pods_deleted(), vec!["demo-3", "demo-2", "demo-1"]);
    w.pod(1, "r2", true);
    w.reconcile().await.unwrap();
    assert_eq!(w.phase(), Some(Phase::Running));
}

#[tokio::test]
async fn a_config_change_changes_the_template_hash_so_brokers_roll() {
    let w = world(json!({"replicas": 1}), ScriptedCluster::with_voters([1]));
    w.running(1, "r1").await;
    let hash = |w: &World| {
        w.sts()["spec"]["template"]["metadata"]["annotations"]["chronik.io/config-hash"].clone()
    };
    let before = hash(&w);
    w.set_spec(json!({"config": {"CHRONIK_FLUSH": "os"}}));
    w.reconcile().await.unwrap();
    assert_ne!(hash(&w), before);
}

#[tokio::test]
async fn a_crashing_broker_stops_the_roll_and_degrades_the_cluster() {
    let w = world(json!({"replicas": 3}), ScriptedCluster::with_voters(1..=3));
    w.running(3, "r1").await;
    w.set_update_revision("r2");
    w.reconcile().await.unwrap();
    assert_eq!(w.pods_deleted(), vec!["demo-3"]);
    w.crash_pod(3, "r2");
    w.reconcile().await.unwrap();
    assert_eq!(w.phase(), Some(Phase::Degraded));
    assert_eq!(
        w.condition("Degraded"),
        ("True".into(), "RollingUpdateStopped".into())
    );
    assert_eq!(
        w.pods_deleted(),
        vec!["demo-3"],
        "no further broker is restarted"
    );
}

#[tokio::test]
async fn an_admin_api_failure_degrades_with_a_reason_and_retries_with_backoff() {
    let w = world(json!({"replicas": 3}), ScriptedCluster::with_voters(1..=3));
    w.running(3, "r1").await;
    w.cluster.fail(true);
    let err = w
        .reconcile()
        .await
        .expect_err("admin failure fails the reconcile");
    assert!(matches!(err, Error::Admin { .. }), "{err}");
    assert_eq!(w.phase(), Some(Phase::Degraded));
    assert_eq!(
        w.condition("Degraded"),
        ("True".into(), "AdminApiUnavailable".into())
    );
    assert_eq!(w.condition("Ready").0, "False");

    let cr = Arc::new(w.cr());
    assert_eq!(
        error_policy(cr.clone(), &err, w.ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        error_policy(cr, &err, w.ctx.clone()),
        Action::requeue(Duration::from_secs(10))
    );

    w.cluster.fail(false);
    w.reconcile().await.expect("recovers");
    assert_eq!(w.phase(), Some(Phase::Running));
}

#[tokio::test]
async fn an_invalid_spec_fails_without_touching_the_statefulset() {
    let w = world(
        json!({"replicas": 3, "replicationFactor": 2, "minInsyncReplicas": 3}),
        ScriptedCluster::with_voters([]),
    );
    let action = w.reconcile_ready().await.unwrap();
    assert_eq!(action, Action::await_change());
    assert_eq!(w.phase(), Some(Phase::Failed));
    assert_eq!(
        w.condition("Degraded"),
        ("True".into(), "InvalidSpec".into())
    );
    assert!(w.api.get(STS).is_none());
}

#[tokio::test]
async fn deleting_a_cluster_deletes_volumes_only_when_asked_and_releases_the_finalizer() {
    for delete_claims in [false, true] {
        let w = world(
            json!({"replicas": 1, "storage": {"deleteClaimsOnDelete": delete_claims}}),
            ScriptedCluster::with_voters([1]),
        );
        w.reconcile_ready().await.unwrap();
        let pvc = "/api/v1/namespaces/data/persistentvolumeclaims/data-demo-1";
        w.api.put(pvc, json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data-demo-1", "namespace": NS,
                "labels": {"app.kubernetes.io/name": "chronik", "app.kubernetes.io/instance": "demo"}}}));
        w.mark_deleted();
        w.reconcile().await.unwrap();
        assert_eq!(w.api.get(pvc).is_none(), delete_claims);
        assert!(!w.finalizer_held());
    }
}

#[tokio::test]
async fn the_admin_api_key_is_read_from_its_secret_and_sent() {
    let w = world(
        json!({"replicas": 1, "auth": {"adminApiKeySecret": {"name": "auth", "key": "admin"}}}),
        ScriptedCluster::with_voters([1]),
    );
    // base64 of "s3cret\n": a trailing newline (echo > file) is not part of the key.
    w.api.put(
        "/api/v1/namespaces/data/secrets/auth",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "auth", "namespace": NS},
            "data": {"admin": "czNjcmV0Cg=="}}),
    );
    w.running(1, "r1").await;
    let target = w.cluster.targets.lock().unwrap().last().cloned().unwrap();
    assert_eq!(target.api_key.as_deref(), Some("s3cret"));
    assert_eq!(target.base_url, "http://demo.data.svc.cluster.local:6092");
    assert_eq!(target.ca_pem, None);
}

#[tokio::test]
async fn a_tls_cluster_is_reached_over_https_trusting_its_secret() {
    let w = world(
        json!({"replicas": 1, "auth": {"tlsSecret": "certs"}}),
        ScriptedCluster::with_voters([1]),
    );
    // base64 of "CA": the CA certificate wins over the serving certificate.
    w.api.put(
        "/api/v1/namespaces/data/secrets/certs",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "certs", "namespace": NS},
            "data": {"ca.crt": "Q0E=", "tls.crt": "VExT", "tls.key": "S0VZ"}}),
    );
    w.running(1, "r1").await;
    let target = w.cluster.targets.lock().unwrap().last().cloned().unwrap();
    assert_eq!(target.base_url, "https://demo.data.svc.cluster.local:6092");
    assert_eq!(target.ca_pem.as_deref(), Some(&b"CA"[..]));
}

#[tokio::test]
async fn a_missing_admin_key_secret_degrades_the_cluster() {
    let w = world(
        json!({"replicas": 1, "auth": {"adminApiKeySecret": {"name": "absent", "key": "k"}}}),
        ScriptedCluster::with_voters([1]),
    );
    w.reconcile_ready().await.unwrap();
    w.set_update_revision("r1");
    w.pod(1, "r1", true);
    let err = w.reconcile().await.expect_err("no key, no admin api");
    assert!(err.to_string().contains("absent"), "{err}");
    assert_eq!(w.phase(), Some(Phase::Degraded));
}

#[tokio::test]
async fn deleting_a_cluster_deletes_its_tiered_data_only_when_asked() {
    for delete_data in [false, true] {
        let bucket = MemoryBucket::with_objects(BUCKET).await;
        let w = world_with_stores(
            json!({"replicas": 1, "objectStore": {"url": "s3://tier/demo",
                "credentialsSecret": "s3", "deleteDataOnDelete": delete_data}}),
            ScriptedCluster::with_voters([1]),
            Some(bucket.clone()),
        );
        // base64 of "AKID" and "sekrit\n".
        w.api.put(
            "/api/v1/namespaces/data/secrets/s3",
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3", "namespace": NS},
                "data": {"AWS_ACCESS_KEY_ID": "QUtJRA==", "AWS_SECRET_ACCESS_KEY": "c2Vrcml0Cg=="}}),
        );
        w.reconcile_ready().await.unwrap();
        w.mark_deleted();
        w.reconcile().await.unwrap();
        assert!(!w.finalizer_held());
        if delete_data {
            assert_eq!(bucket.objects().await, vec!["demo-old/x.seg"]);
            let opened = bucket.opened.lock().unwrap().clone();
            assert_eq!(opened.len(), 1);
            assert_eq!(opened[0].0, "s3://tier/demo");
            let opts: BTreeMap<_, _> = opened[0].1.iter().cloned().collect();
            assert_eq!(opts["aws_access_key_id"], "AKID");
            assert_eq!(opts["aws_secret_access_key"], "sekrit");
        } else {
            assert_eq!(bucket.objects().await.len(), BUCKET.len());
            assert!(bucket.opened.lock().unwrap().is_empty());
        }
    }
}

#[tokio::test]
async fn a_missing_credentials_secret_keeps_the_cluster_and_its_data_until_it_appears() {
    let bucket = MemoryBucket::with_objects(BUCKET).await;
    let w = world_with_stores(
        json!({"replicas": 1, "objectStore": {"url": "s3://tier/demo",
            "credentialsSecret": "late", "deleteDataOnDelete": true}}),
        ScriptedCluster::with_voters([1]),
        Some(bucket.clone()),
    );
    w.reconcile_ready().await.unwrap();
    w.mark_deleted();
    w.api.clear_log();
    let err = w
        .reconcile()
        .await
        .expect_err("no credentials, no deletion");
    assert!(err.to_string().contains("late"), "{err}");
    assert!(
        w.finalizer_held(),
        "the cluster stays until its data is gone"
    );
    assert_eq!(bucket.objects().await.len(), BUCKET.len());
    assert!(
        !w.api.requests("POST", "/events").is_empty(),
        "a warning says why"
    );
    let action = error_policy(Arc::new(w.cr()), &err, w.ctx.clone());
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));

    w.api.put(
        "/api/v1/namespaces/data/secrets/late",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "late", "namespace": NS},
            "data": {"AWS_ACCESS_KEY_ID": "QUtJRA=="}}),
    );
    w.reconcile().await.unwrap();
    assert!(!w.finalizer_held());
    assert_eq!(bucket.objects().await, vec!["demo-old/x.seg"]);
}
