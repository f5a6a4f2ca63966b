//! The reconciler tests' world: an in-memory API server answering the kube client (the
//! tower-test pattern), a scripted cluster admin API, and an in-memory bucket for tiered data.
//! Each scenario in `reconcile.rs` sets this world up, reconciles, and checks what was applied
//! and reported.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chronik_operator::admin::{
    AdminTarget, ClusterAdmin, ClusterStatus, NewNode, NodeInfo, NodeLifecycle, NodeRole,
    PartitionSummary,
};
use chronik_operator::controller::{reconcile, Context, FINALIZER};
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

pub const NS: &str = "data";
pub const CR: &str = "/apis/chronik.io/v1alpha1/namespaces/data/chronikclusters/demo";
pub const STS: &str = "/apis/apps/v1/namespaces/data/statefulsets/demo";
pub const PODS: &str = "/api/v1/namespaces/data/pods";

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
}

/// An in-memory API server: objects by path, and every request it saw.
#[derive(Default)]
pub struct FakeApi {
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
    pub fn put(&self, path: &str, v: Value) {
        self.objects.lock().unwrap().insert(path.to_string(), v);
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.objects.lock().unwrap().get(path).cloned()
    }

    pub fn remove(&self, path: &str) {
        self.objects.lock().unwrap().remove(path);
    }

    pub fn requests(&self, method: &str, path_part: &str) -> Vec<Recorded> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.method == method && r.path.contains(path_part))
            .cloned()
            .collect()
    }

    pub fn clear_log(&self) {
        self.log.lock().unwrap().clear();
    }

    pub fn respond(
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

    pub fn spawn(self: &Arc<Self>, mut handle: mock::Handle<Request<Body>, Response<Body>>) {
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
pub struct ScriptedCluster {
    nodes: Mutex<BTreeMap<i32, NodeLifecycle>>,
    pub under_replicated: Mutex<u32>,
    failing: Mutex<bool>,
    pub calls: Mutex<Vec<String>>,
    /// Where and with which credentials each status call went.
    pub targets: Mutex<Vec<AdminTarget>>,
}

impl ScriptedCluster {
    pub fn with_voters(ids: impl IntoIterator<Item = i32>) -> Arc<Self> {
        let c = ScriptedCluster::default();
        *c.nodes.lock().unwrap() = ids
            .into_iter()
            .map(|i| (i, NodeLifecycle::Active))
            .collect();
        Arc::new(c)
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    pub fn finish_drain(&self, id: i32) {
        self.nodes.lock().unwrap().remove(&id);
    }

    pub fn fail(&self, on: bool) {
        *self.failing.lock().unwrap() = on;
    }

    pub fn check(&self, what: &str) -> chronik_operator::Result<()> {
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

pub struct World {
    pub api: Arc<FakeApi>,
    pub cluster: Arc<ScriptedCluster>,
    pub ctx: Arc<Context>,
}

pub fn world(spec: Value, cluster: Arc<ScriptedCluster>) -> World {
    world_with_stores(spec, cluster, None)
}

pub fn world_with_stores(
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
    pub fn cr(&self) -> ChronikCluster {
        serde_json::from_value(self.api.get(CR).expect("cluster stored")).unwrap()
    }

    /// One reconcile of the stored cluster, the way the Controller would run it.
    pub async fn reconcile(&self) -> Result<Action, Error> {
        let cr = Arc::new(self.cr());
        tokio::time::timeout(Duration::from_secs(10), reconcile(cr, self.ctx.clone()))
            .await
            .expect("reconcile finished")
    }

    /// Reconciles through the finalizer-adding pass.
    pub async fn reconcile_ready(&self) -> Result<Action, Error> {
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

    pub fn phase(&self) -> Option<Phase> {
        self.cr().status.and_then(|s| s.phase)
    }

    pub fn condition(&self, t: &str) -> (String, String) {
        let st = self.cr().status.unwrap();
        let c = st.conditions.iter().find(|c| c.type_ == t).unwrap();
        (c.status.clone(), c.reason.clone())
    }

    pub fn sts(&self) -> Value {
        self.api.get(STS).expect("statefulset applied")
    }

    pub fn sts_replicas(&self) -> i64 {
        self.sts()["spec"]["replicas"].as_i64().unwrap()
    }

    pub fn set_spec(&self, patch: Value) {
        let mut cr = self.api.get(CR).unwrap();
        merge(&mut cr["spec"], &patch);
        let g = cr["metadata"]["generation"].as_i64().unwrap();
        cr["metadata"]["generation"] = json!(g + 1);
        self.api.put(CR, cr);
    }

    /// What the StatefulSet controller would do: report the revision pods should run.
    pub fn set_update_revision(&self, rev: &str) {
        let mut sts = self.sts();
        sts["status"] = json!({"replicas": sts["spec"]["replicas"], "updateRevision": rev});
        self.api.put(STS, sts);
    }

    /// What the StatefulSet controller and kubelet would do: pod `id` at `rev`, started and
    /// ready as given.
    pub fn pod(&self, id: i32, rev: &str, ready: bool) {
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

    pub fn crash_pod(&self, id: i32, rev: &str) {
        self.pod(id, rev, false);
        let path = format!("{PODS}/demo-{id}");
        let mut p = self.api.get(&path).unwrap();
        p["status"]["containerStatuses"][0]["state"] =
            json!({"waiting": {"reason": "CrashLoopBackOff"}});
        self.api.put(&path, p);
    }

    pub fn pods_deleted(&self) -> Vec<String> {
        self.api
            .requests("DELETE", "/pods/")
            .iter()
            .map(|r| r.path.rsplit('/').next().unwrap().to_string())
            .collect()
    }

    /// A cluster that has been through creation and is Running with `n` brokers at `rev`.
    pub async fn running(&self, n: i32, rev: &str) {
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

pub type Opened = (String, Vec<(String, String)>);

/// One in-memory bucket standing in for the cloud: the URL's path is the prefix, and every
/// open is recorded with the options it was given.
#[derive(Default)]
pub struct MemoryBucket {
    store: Arc<InMemory>,
    /// Each open: the URL and the options it was given.
    pub opened: Mutex<Vec<Opened>>,
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
    pub async fn with_objects(paths: &[&str]) -> Arc<Self> {
        let b = MemoryBucket::default();
        for p in paths {
            b.store
                .put(&StorePath::from(*p), PutPayload::from_static(b"segment"))
                .await
                .unwrap();
        }
        Arc::new(b)
    }

    pub async fn objects(&self) -> Vec<String> {
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

pub const BUCKET: &[&str] = &[
    "demo/orders-0/00.seg",
    "demo/orders-1/00.seg",
    "demo-old/x.seg",
];

impl World {
    pub fn mark_deleted(&self) {
        let mut cr = self.api.get(CR).unwrap();
        cr["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        self.api.put(CR, cr);
    }

    pub fn finalizer_held(&self) -> bool {
        self.cr()
            .metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .any(|f| f == FINALIZER)
    }
}
