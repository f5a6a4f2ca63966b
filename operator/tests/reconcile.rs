//! Reconciler scenarios against a mock API server (kube-rs tower-test pattern) and a scripted
//! cluster admin API. The fake API server keeps objects in memory and answers gets, lists,
//! server-side applies, patches, creates and deletes, so each scenario reads as: set the world
//! up, reconcile, check what was applied and reported.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chronik_operator::admin::{
    AdminTarget, ClusterAdmin, ClusterStatus, NewNode, NodeInfo, NodeLifecycle, NodeRole,
    PartitionSummary,
};
use chronik_operator::controller::{error_policy, reconcile, Context, FINALIZER};
use chronik_operator::crd::{ChronikCluster, Phase};
use chronik_operator::metrics::Metrics;
use chronik_operator::tiered_data::{ObjectStores, OpenedStore};
use chronik_operator::Error;
use futures::TryStreamExt;
use http::{Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::Client;
use object_store::memory::InMemory;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::{json, Value};
use tower_test::mock;

const NS: &str = "data";
const CR: &str = "/apis/chronik.io/v1alpha1/namespaces/data/chronikclusters/demo";
const STS: &str = "/apis/apps/v1/namespaces/data/statefulsets/demo";
const PODS: &str = "/api/v1/namespaces/data/pods";

#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
}

/// An in-memory API server: objects by path, and every request it saw.
#[derive(Default)]
struct FakeApi {
    objects: Mutex<BTreeMap<String, Value>>,
    log: Mutex<Vec<Recorded>>,
}

const COLLECTIONS: &[&str] = &[
    "pods",
    "persistentvolumeclaims",
    "events",
    "chronikclusters",
];

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": reason})
}

fn selector_matches(obj: &Value, query: &str) -> bool {
    let Some(sel) = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("labelSelector="))
    else {
        return true;
    };
    let sel = sel
        .replace("%3D", "=")
        .replace("%2C", ",")
        .replace("%2F", "/");
    sel.split(',').all(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        obj["metadata"]["labels"][k].as_str() == Some(v)
    })
}

fn merge(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

impl FakeApi {
    fn put(&self, path: &str, v: Value) {
        self.objects.lock().unwrap().insert(path.to_string(), v);
    }

    fn get(&self, path: &str) -> Option<Value> {
        self.objects.lock().unwrap().get(path).cloned()
    }

    fn remove(&self, path: &str) {
        self.objects.lock().unwrap().remove(path);
    }

    fn requests(&self, method: &str, path_part: &str) -> Vec<Recorded> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.method == method && r.path.contains(path_part))
            .cloned()
            .collect()
    }

    fn clear_log(&self) {
        self.log.lock().unwrap().clear();
    }

    fn respond(
        &self,
        method: &str,
        path: &str,
        query: &str,
        ctype: &str,
        body: Value,
    ) -> (u16, Value) {
        let mut objects = self.objects.lock().unwrap();
        let last = path.rsplit('/').next().unwrap_or("");
        match method {
            "GET" if COLLECTIONS.contains(&last) => {
                let items: Vec<Value> = objects
                    .iter()
                    .filter(|(k, v)| {
                        k.strip_prefix(path)
                            .is_some_and(|rest| rest.matches('/').count() == 1)
                            && selector_matches(v, query)
                    })
                    .map(|(_, v)| v.clone())
                    .collect();
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            "GET" => match objects.get(path) {
                Some(v) => (200, v.clone()),
                None => (404, status(404, "NotFound")),
            },
            "POST" => {
                let name = body["metadata"]["name"]
                    .as_str()
                    .unwrap_or("generated")
                    .to_string();
                objects.insert(format!("{path}/{name}"), body.clone());
                (201, body)
            }
            "DELETE" => match objects.remove(path) {
                Some(v) => (200, v),
                None => (404, status(404, "NotFound")),
            },
            "PATCH" => {
                let (obj_path, sub) = match path.strip_suffix("/status") {
                    Some(p) => (p.to_string(), true),
                    None => (path.to_string(), false),
                };
                let current = objects.get(&obj_path).cloned();
                let updated = if ctype.contains("apply-patch") {
                    // Server-side apply: the applied object replaces the owned fields; status
                    // and server-set metadata stay.
                    let mut v = body.clone();
                    if let Some(cur) = &current {
                        if let Some(st) = cur.get("status") {
                            v["status"] = st.clone();
                        }
                    }
                    v
                } else if ctype.contains("json-patch") {
                    let Some(mut cur) = current else {
                        return (404, status(404, "NotFound"));
                    };
                    let patch: json_patch::Patch = serde_json::from_value(body.clone()).unwrap();
                    if json_patch::patch(&mut cur, &patch).is_err() {
                        return (422, status(422, "Invalid"));
                    }
                    cur
                } else {
                    let Some(mut cur) = current else {
                        return (404, status(404, "NotFound"));
                    };
                    let patch = if sub {
                        json!({"status": body["status"]})
                    } else {
                        body.clone()
                    };
                    merge(&mut cur, &patch);
                    cur
                };
                objects.insert(obj_path, updated.clone());
                (200, updated)
            }
            _ => (405, status(405, "MethodNotAllowed")),
        }
    }

    fn spawn(self: &Arc<Self>, mut handle: mock::Handle<Request<Body>, Response<Body>>) {
        let fake = self.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let method = req.method().to_string();
                let path = req.uri().path().to_string();
                let query = req.uri().query().unwrap_or("").to_string();
                let ctype = req
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let bytes = req.into_body().collect_bytes().await.unwrap();
                let body: Value = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes)
                        .or_else(|_| serde_yaml::from_slice(&bytes))
                        .unwrap_or(Value::Null)
                };
                fake.log.lock().unwrap().push(Recorded {
                    method: method.clone(),
                    path: path.clone(),
                });
                let (code, out) = fake.respond(&method, &path, &query, &ctype, body);
                send.send_response(
                    Response::builder()
                        .status(StatusCode::from_u16(code).unwrap())
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::to_vec(&out).unwrap()))
                        .unwrap(),
                );
            }
        });
    }
}

/// A scripted cluster: membership, partition health and whether the admin API answers.
#[derive(Default)]
struct ScriptedCluster {
    nodes: Mutex<BTreeMap<i32, NodeLifecycle>>,
    under_replicated: Mutex<u32>,
    failing: Mutex<bool>,
    calls: Mutex<Vec<String>>,
    /// Where and with which credentials each status call went.
    targets: Mutex<Vec<AdminTarget>>,
}

impl ScriptedCluster {
    fn with_voters(ids: impl IntoIterator<Item = i32>) -> Arc<Self> {
        let c = ScriptedCluster::default();
        *c.nodes.lock().unwrap() = ids
            .into_iter()
            .map(|i| (i, NodeLifecycle::Active))
            .collect();
        Arc::new(c)
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn finish_drain(&self, id: i32) {
        self.nodes.lock().unwrap().remove(&id);
    }

    fn fail(&self, on: bool) {
        *self.failing.lock().unwrap() = on;
    }

    fn check(&self, what: &str) -> chronik_operator::Result<()> {
        if *self.failing.lock().unwrap() {
            return Err(Error::Admin {
                endpoint: what.into(),
                reason: "connection refused".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ClusterAdmin for ScriptedCluster {
    async fn status(&self, target: &AdminTarget) -> chronik_operator::Result<ClusterStatus> {
        self.targets.lock().unwrap().push(target.clone());
        self.check("GET /admin/cluster")?;
        let nodes = self.nodes.lock().unwrap();
        Ok(ClusterStatus {
            leader_id: Some(1),
            nodes: nodes
                .iter()
                .map(|(id, st)| NodeInfo {
                    id: *id,
                    role: NodeRole::Voter,
                    state: *st,
                })
                .collect(),
            partitions: PartitionSummary {
                total: 12,
                under_replicated: *self.under_replicated.lock().unwrap(),
                offline: 0,
            },
        })
    }

    async fn add_node(&self, _: &AdminTarget, node: &NewNode) -> chronik_operator::Result<()> {
        self.check("POST /admin/cluster/nodes")?;
        self.calls
            .lock()
            .unwrap()
            .push(format!("add {} {}", node.node_id, node.address));
        self.nodes
            .lock()
            .unwrap()
            .insert(node.node_id, NodeLifecycle::Active);
        Ok(())
    }

    async fn remove_node(&self, _: &AdminTarget, id: i32) -> chronik_operator::Result<()> {
        self.check("DELETE /admin/cluster/nodes")?;
        self.calls.lock().unwrap().push(format!("remove {id}"));
        self.nodes
            .lock()
            .unwrap()
            .insert(id, NodeLifecycle::Draining);
        Ok(())
    }
}

struct World {
    api: Arc<FakeApi>,
    cluster: Arc<ScriptedCluster>,
    ctx: Arc<Context>,
}

fn world(spec: Value, cluster: Arc<ScriptedCluster>) -> World {
    world_with_stores(spec, cluster, None)
}

fn world_with_stores(
    spec: Value,
    cluster: Arc<ScriptedCluster>,
    stores: Option<Arc<dyn ObjectStores>>,
) -> World {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let api = Arc::new(FakeApi::default());
    api.spawn(handle);
    api.put(
        CR,
        json!({
            "apiVersion": "chronik.io/v1alpha1", "kind": "ChronikCluster",
            "metadata": {"name": "demo", "namespace": NS, "uid": "uid-1", "generation": 1, "finalizers": null},
            "spec": spec,
        }),
    );
    let client = Client::new(svc, NS);
    let mut ctx = Context::new(client, cluster.clone(), Arc::new(Metrics::new()));
    if let Some(stores) = stores {
        ctx = ctx.with_object_stores(stores);
    }
    World {
        api,
        cluster,
        ctx: Arc::new(ctx),
    }
}

impl World {
    fn cr(&self) -> ChronikCluster {
        serde_json::from_value(self.api.get(CR).expect("cluster stored")).unwrap()
    }

    /// One reconcile of the stored cluster, the way the Controller would run it.
    async fn reconcile(&self) -> Result<Action, Error> {
        let cr = Arc::new(self.cr());
        tokio::time::timeout(Duration::from_secs(10), reconcile(cr, self.ctx.clone()))
            .await
            .expect("reconcile finished")
    }

    /// Reconciles through the finalizer-adding pass.
    async fn reconcile_ready(&self) -> Result<Action, Error> {
        if !self
            .cr()
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER)
        {
            self.reconcile().await.expect("finalizer added");
        }
        self.reconcile().await
    }

    fn phase(&self) -> Option<Phase> {
        self.cr().status.and_then(|s| s.phase)
    }

    fn condition(&self, t: &str) -> (String, String) {
        let st = self.cr().status.unwrap();
        let c = st.conditions.iter().find(|c| c.type_ == t).unwrap();
        (c.status.clone(), c.reason.clone())
    }

    fn sts(&self) -> Value {
        self.api.get(STS).expect("statefulset applied")
    }

    fn sts_replicas(&self) -> i64 {
        self.sts()["spec"]["replicas"].as_i64().unwrap()
    }

    fn set_spec(&self, patch: Value) {
        let mut cr = self.api.get(CR).unwrap();
        merge(&mut cr["spec"], &patch);
        let g = cr["metadata"]["generation"].as_i64().unwrap();
        cr["metadata"]["generation"] = json!(g + 1);
        self.api.put(CR, cr);
    }

    /// What the StatefulSet controller would do: report the revision pods should run.
    fn set_update_revision(&self, rev: &str) {
        let mut sts = self.sts();
        sts["status"] = json!({"replicas": sts["spec"]["replicas"], "updateRevision": rev});
        self.api.put(STS, sts);
    }

    /// What the StatefulSet controller and kubelet would do: pod `id` at `rev`, started and
    /// ready as given.
    fn pod(&self, id: i32, rev: &str, ready: bool) {
        let name = format!("demo-{id}");
        let t = if ready { "True" } else { "False" };
        self.api.put(
            &format!("{PODS}/{name}"),
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": NS, "labels": {
                    "app.kubernetes.io/name": "chronik", "app.kubernetes.io/instance": "demo",
                    "apps.kubernetes.io/pod-index": id.to_string(), "controller-revision-hash": rev}},
                "status": {"phase": "Running",
                    "conditions": [{"type": "Ready", "status": t}],
                    "containerStatuses": [{"name": "chronik", "ready": ready, "started": ready,
                        "restartCount": 0, "image": "x", "imageID": "x"}]}
            }),
        );
    }

    fn crash_pod(&self, id: i32, rev: &str) {
        self.pod(id, rev, false);
        let path = format!("{PODS}/demo-{id}");
        let mut p = self.api.get(&path).unwrap();
        p["status"]["containerStatuses"][0]["state"] =
            json!({"waiting": {"reason": "CrashLoopBackOff"}});
        self.api.put(&path, p);
    }

    fn pods_deleted(&self) -> Vec<String> {
        self.api
            .requests("DELETE", "/pods/")
            .iter()
            .map(|r| r.path.rsplit('/').next().unwrap().to_string())
            .collect()
    }

    /// A cluster that has been through creation and is Running with `n` brokers at `rev`.
    async fn running(&self, n: i32, rev: &str) {
        self.reconcile_ready().await.expect("create");
        self.set_update_revision(rev);
        for id in 1..=n {
            self.pod(id, rev, true);
        }
        self.reconcile().await.expect("running");
        assert_eq!(self.phase(), Some(Phase::Running));
        self.api.clear_log();
    }
}

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

type Opened = (String, Vec<(String, String)>);

/// One in-memory bucket standing in for the cloud: the URL's path is the prefix, and every
/// open is recorded with the options it was given.
#[derive(Default)]
struct MemoryBucket {
    store: Arc<InMemory>,
    /// Each open: the URL and the options it was given.
    opened: Mutex<Vec<Opened>>,
}

impl ObjectStores for MemoryBucket {
    fn open(
        &self,
        url: &url::Url,
        options: &[(String, String)],
    ) -> chronik_operator::Result<OpenedStore> {
        self.opened
            .lock()
            .unwrap()
            .push((url.to_string(), options.to_vec()));
        let store: Arc<dyn ObjectStore> = self.store.clone();
        Ok((store, StorePath::from(url.path().trim_start_matches('/'))))
    }
}

impl MemoryBucket {
    async fn with_objects(paths: &[&str]) -> Arc<Self> {
        let b = MemoryBucket::default();
        for p in paths {
            b.store
                .put(&StorePath::from(*p), PutPayload::from_static(b"segment"))
                .await
                .unwrap();
        }
        Arc::new(b)
    }

    async fn objects(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .store
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        v.sort();
        v
    }
}

const BUCKET: &[&str] = &[
    "demo/orders-0/00.seg",
    "demo/orders-1/00.seg",
    "demo-old/x.seg",
];

impl World {
    fn mark_deleted(&self) {
        let mut cr = self.api.get(CR).unwrap();
        cr["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        self.api.put(CR, cr);
    }

    fn finalizer_held(&self) -> bool {
        self.cr()
            .metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .any(|f| f == FINALIZER)
    }
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
