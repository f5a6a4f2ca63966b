//! The reconciler: observe, [`plan`](crate::plan::plan), apply, report.
//!
//! One reconcile reads the StatefulSet, the broker pods and (once a broker is ready) the
//! cluster's admin API; the pure planner decides the StatefulSet size and the next admin call or
//! pod deletion; the desired objects are server-side applied; the status and events say what
//! happened. Failures go to [`error_policy`], which retries with exponential backoff.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use url::Url;

use crate::admin::{AdminTarget, ClusterAdmin, NewNode};
use crate::crd::{ChronikCluster, ChronikClusterStatus, ObjectStoreSpec, Phase};
use crate::desired::{self, Inputs, Names, CLUSTER_PORT, FIELD_MANAGER, POD_INDEX_LABEL};
use crate::error::{Error, Result};
use crate::metrics::{Metrics, ReasonLabel};
use crate::plan::{plan, ClusterView, Observed, PodView, Step};
use crate::tiered_data::{self, CloudStores, ObjectStores};

/// Finalizer that runs [`cleanup`] before a ChronikCluster disappears.
pub const FINALIZER: &str = "chronik.io/cleanup";

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    /// The admin API seam: HTTP in production, scripted in tests.
    pub admin: Arc<dyn ClusterAdmin>,
    /// The object-store seam for deleting tiered data: the clouds in production.
    pub object_stores: Arc<dyn ObjectStores>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Consecutive failures per cluster, for exponential backoff in [`error_policy`].
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, admin: Arc<dyn ClusterAdmin>, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            admin,
            object_stores: Arc::new(CloudStores),
            metrics,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the cloud object stores (tests use an in-memory store).
    pub fn with_object_stores(mut self, stores: Arc<dyn ObjectStores>) -> Self {
        self.object_stores = stores;
        self
    }

    fn failure_count(&self, key: &str) -> u32 {
        self.failures
            .lock()
            .map(|m| m.get(key).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn set_failures(&self, key: &str, n: Option<u32>) {
        if let Ok(mut m) = self.failures.lock() {
            match n {
                Some(n) => m.insert(key.to_string(), n),
                None => m.remove(key),
            };
        }
    }

    async fn event(&self, cluster: &ChronikCluster, type_: EventType, reason: &str, note: String) {
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        // An event that cannot be recorded must not fail the reconcile it describes.
        if let Err(e) = self.recorder.publish(&ev, &cluster.object_ref(&())).await {
            tracing::warn!(error = %e, "publishing event failed");
        }
    }
}

fn key(cluster: &ChronikCluster) -> String {
    format!("{}/{}", desired::namespace(cluster), cluster.name_any())
}

/// Entry point for the Controller: the finalizer wraps apply and cleanup.
pub async fn reconcile(cluster: Arc<ChronikCluster>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciliations.inc();
    let started = Instant::now();
    let api: Api<ChronikCluster> =
        Api::namespaced(ctx.client.clone(), &desired::namespace(&cluster));
    let result = finalizer(&api, FINALIZER, cluster.clone(), |event| async {
        match event {
            Finalizer::Apply(c) => apply(&c, &ctx).await,
            Finalizer::Cleanup(c) => cleanup(&c, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    ctx.metrics
        .reconcile_seconds
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.set_failures(&key(&cluster), None);
    }
    result
}

/// Retries a failed reconcile after 5 s, doubling per consecutive failure up to 5 minutes.
pub fn error_policy(cluster: Arc<ChronikCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    let k = key(&cluster);
    let n = ctx.failure_count(&k);
    ctx.set_failures(&k, Some(n.saturating_add(1)));
    ctx.metrics
        .failures
        .get_or_create(&ReasonLabel {
            reason: error.reason().to_string(),
        })
        .inc();
    tracing::warn!(cluster = %k, error = %error, attempt = n + 1, "reconcile failed");
    Action::requeue(backoff(n))
}

/// Delay before retry number `n + 1`.
pub fn backoff(n: u32) -> Duration {
    Duration::from_secs(5u64.saturating_mul(1u64 << n.min(6))).min(Duration::from_secs(300))
}

async fn apply(cluster: &ChronikCluster, ctx: &Context) -> Result<Action> {
    let ns = desired::namespace(cluster);
    let client = ctx.client.clone();
    let previous = cluster.status.clone().unwrap_or_default();

    if let Err(e) = cluster.spec.validate() {
        let status = ChronikClusterStatus {
            phase: Some(Phase::Failed),
            observed_generation: cluster.metadata.generation,
            conditions: conditions(&previous, Phase::Failed, "InvalidSpec", &e.to_string()),
            ..previous.clone()
        };
        patch_status(cluster, ctx, &status).await?;
        if previous.phase != Some(Phase::Failed) {
            ctx.event(cluster, EventType::Warning, "InvalidSpec", e.to_string())
                .await;
        }
        // Nothing to retry: a spec change triggers the next reconcile.
        return Ok(Action::await_change());
    }

    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let sts = sts_api.get_opt(&Names::stateful_set(cluster)).await?;
    let pods = pods_api
        .list(&ListParams::default().labels(&desired::selector_string(cluster)))
        .await?;
    let pods: Vec<PodView> = pods.items.iter().filter_map(pod_view).collect();

    let cluster_view = if pods.iter().any(|p| p.ready) {
        match admin_target(cluster, ctx).await {
            Ok(t) => match ctx.admin.status(&t).await {
                Ok(s) => ClusterView::Status(s),
                Err(e) => ClusterView::Unavailable(e.to_string()),
            },
            Err(e) => ClusterView::Unavailable(e.to_string()),
        }
    } else {
        ClusterView::NotAsked
    };

    let observed = Observed {
        desired: cluster.spec.replicas,
        current: sts
            .as_ref()
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.replicas),
        update_revision: sts
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .and_then(|s| s.update_revision.clone()),
        pods,
        cluster: cluster_view,
        previous_phase: previous.phase,
    };
    let mut p = plan(&observed);

    let bootstrap_voters = previous
        .bootstrap_voters
        .or_else(|| sts.as_ref().and_then(peers_in_stateful_set))
        .unwrap_or(cluster.spec.replicas);
    let d = desired::desired(
        cluster,
        &Inputs {
            replicas: p.replicas,
            bootstrap_voters,
        },
    );
    apply_object(&client, &ns, &d.config_map).await?;
    apply_object(&client, &ns, &d.headless_service).await?;
    apply_object(&client, &ns, &d.client_service).await?;
    apply_object(&client, &ns, &d.pod_disruption_budget).await?;
    apply_object(&client, &ns, &d.stateful_set).await?;

    for step in &p.steps {
        if let Err(e) = run_step(cluster, ctx, &pods_api, step).await {
            // A failed admin call degrades the cluster like an unreachable admin API does.
            p.phase = Phase::Degraded;
            p.reason = e.reason().to_string();
            p.message = e.to_string();
            p.admin_error = Some(e.to_string());
            break;
        }
    }

    let status = ChronikClusterStatus {
        phase: Some(p.phase),
        ready_replicas: p.ready_replicas,
        observed_generation: cluster.metadata.generation,
        conditions: conditions(&previous, p.phase, &p.reason, &p.message),
        bootstrap_voters: Some(bootstrap_voters),
        nodes: p.nodes.clone(),
    };
    patch_status(cluster, ctx, &status).await?;
    if previous.phase != Some(p.phase) {
        let type_ = if matches!(p.phase, Phase::Degraded | Phase::Failed) {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.event(
            cluster,
            type_,
            &p.reason,
            format!("{:?}: {}", p.phase, p.message),
        )
        .await;
    }
    if let Some(e) = p.admin_error {
        return Err(Error::Admin {
            endpoint: Names::admin_url(cluster),
            reason: e,
        });
    }
    Ok(Action::requeue(p.requeue))
}

async fn run_step(
    cluster: &ChronikCluster,
    ctx: &Context,
    pods: &Api<Pod>,
    step: &Step,
) -> Result<()> {
    match step {
        Step::AddNode(id) => {
            let target = admin_target(cluster, ctx).await?;
            let node = NewNode {
                node_id: *id,
                address: format!("{}:{CLUSTER_PORT}", Names::pod_host(cluster, *id)),
            };
            ctx.admin.add_node(&target, &node).await?;
            ctx.event(
                cluster,
                EventType::Normal,
                "BrokerAdded",
                format!("added broker {id} as a voter"),
            )
            .await;
        }
        Step::RemoveNode(id) => {
            let target = admin_target(cluster, ctx).await?;
            ctx.admin.remove_node(&target, *id).await?;
            ctx.event(
                cluster,
                EventType::Normal,
                "BrokerDraining",
                format!("draining broker {id}"),
            )
            .await;
        }
        Step::DeletePod(name) => {
            pods.delete(name, &DeleteParams::default()).await?;
            ctx.event(
                cluster,
                EventType::Normal,
                "BrokerRestarted",
                format!("deleted {name} to update it"),
            )
            .await;
        }
    }
    Ok(())
}

/// Deletes what owner references leave behind, where the spec asks: the brokers' volumes and
/// the tiered data in the object store. A failure keeps the finalizer (and so the object) and
/// is retried with backoff; the Warning event says how to let the cluster go without it.
async fn cleanup(cluster: &ChronikCluster, ctx: &Context) -> Result<Action> {
    if cluster.spec.storage.delete_claims_on_delete {
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(ctx.client.clone(), &desired::namespace(cluster));
        let lp = ListParams::default().labels(&desired::selector_string(cluster));
        for pvc in api.list(&lp).await?.items {
            api.delete(&pvc.name_any(), &DeleteParams::default())
                .await?;
        }
        ctx.event(
            cluster,
            EventType::Normal,
            "VolumesDeleted",
            "deleted broker volumes".into(),
        )
        .await;
    }
    if let Some(os) = cluster
        .spec
        .object_store
        .as_ref()
        .filter(|os| os.delete_data_on_delete)
    {
        match delete_tiered_data(cluster, ctx, os).await {
            Ok(n) => {
                ctx.event(
                    cluster,
                    EventType::Normal,
                    "TieredDataDeleted",
                    format!("deleted {n} objects under {}", os.url),
                )
                .await;
            }
            Err(e) => {
                ctx.event(
                    cluster,
                    EventType::Warning,
                    e.reason(),
                    format!(
                        "{e}; retrying (set spec.objectStore.deleteDataOnDelete to false to keep the data and let the cluster go)"
                    ),
                )
                .await;
                return Err(e);
            }
        }
    }
    Ok(Action::await_change())
}

async fn delete_tiered_data(
    cluster: &ChronikCluster,
    ctx: &Context,
    os: &ObjectStoreSpec,
) -> Result<u64> {
    let url = Url::parse(&os.url).map_err(|e| Error::ObjectStore {
        url: os.url.clone(),
        reason: e.to_string(),
    })?;
    let secret = match &os.credentials_secret {
        Some(name) => read_secret(cluster, ctx, name).await?,
        None => Default::default(),
    };
    let options = tiered_data::store_options(std::env::vars(), &secret);
    let (store, prefix) = ctx.object_stores.open(&url, &options)?;
    tiered_data::delete_prefix(&url, store.as_ref(), &prefix).await
}

/// The data of Secret `name` in the cluster's namespace.
async fn read_secret(
    cluster: &ChronikCluster,
    ctx: &Context,
    name: &str,
) -> Result<BTreeMap<String, ByteString>> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &desired::namespace(cluster));
    let secret = secrets.get_opt(name).await?.ok_or_else(|| Error::Secret {
        name: name.to_string(),
        reason: "not found".into(),
    })?;
    Ok(secret.data.unwrap_or_default())
}

async fn apply_object<K>(client: &Client, ns: &str, obj: &K) -> Result<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&obj.name_any(), &pp, &Patch::Apply(obj)).await?;
    Ok(())
}

async fn patch_status(
    cluster: &ChronikCluster,
    ctx: &Context,
    status: &ChronikClusterStatus,
) -> Result<()> {
    let api: Api<ChronikCluster> =
        Api::namespaced(ctx.client.clone(), &desired::namespace(cluster));
    let patch = serde_json::json!({ "status": status });
    api.patch_status(
        &cluster.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Admin API address, key and TLS trust. Secrets are read on each use so a rotated key or
/// certificate takes effect without restarting the operator.
async fn admin_target(cluster: &ChronikCluster, ctx: &Context) -> Result<AdminTarget> {
    let auth = cluster.spec.auth.clone().unwrap_or_default();
    let api_key = match &auth.admin_api_key_secret {
        None => None,
        Some(r) => {
            let data = read_secret(cluster, ctx, &r.name).await?;
            let missing = |reason: &str| Error::Secret {
                name: r.name.clone(),
                reason: reason.to_string(),
            };
            let bytes = data
                .get(&r.key)
                .cloned()
                .ok_or_else(|| missing("key missing"))?;
            Some(
                String::from_utf8(bytes.0)
                    .map_err(|_| missing("key is not utf-8"))?
                    .trim()
                    .to_string(),
            )
        }
    };
    let ca_pem = match &auth.tls_secret {
        None => None,
        Some(name) => {
            let data = read_secret(cluster, ctx, name).await?;
            let pem = data.get("ca.crt").or_else(|| data.get("tls.crt")).cloned();
            let missing = Error::Secret {
                name: name.clone(),
                reason: "no ca.crt or tls.crt".into(),
            };
            Some(pem.ok_or(missing)?.0)
        }
    };
    Ok(AdminTarget {
        base_url: Names::admin_url(cluster),
        api_key,
        ca_pem,
    })
}

/// Counts CHRONIK_PEERS in an existing StatefulSet: recovers the bootstrap size if the status
/// was lost (e.g. the object was restored from a backup without status).
fn peers_in_stateful_set(sts: &StatefulSet) -> Option<i32> {
    let pod = sts.spec.as_ref()?.template.spec.as_ref()?;
    let env = pod.containers.first()?.env.as_ref()?;
    let peers = env
        .iter()
        .find(|e| e.name == "CHRONIK_PEERS")?
        .value
        .as_ref()?;
    Some(peers.split(',').filter(|s| !s.is_empty()).count() as i32)
}

/// Reads what the planner needs from one pod; pods being deleted count as not ready.
pub fn pod_view(pod: &Pod) -> Option<PodView> {
    let name = pod.name_any();
    let labels = pod.labels();
    let id = labels
        .get(POD_INDEX_LABEL)
        .and_then(|v| v.parse().ok())
        .or_else(|| name.rsplit('-').next()?.parse().ok())?;
    let status = pod.status.clone().unwrap_or_default();
    let condition = |t: &str| status.conditions.iter().flatten().find(|c| c.type_ == t);
    let deleting = pod.metadata.deletion_timestamp.is_some();
    let ready = !deleting && condition("Ready").is_some_and(|c| c.status == "True");
    let containers = status.container_statuses.clone().unwrap_or_default();
    let started = !deleting
        && status.phase.as_deref() == Some("Running")
        && !containers.is_empty()
        && containers.iter().all(|c| c.started == Some(true));
    const FATAL: &[&str] = &[
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    ];
    let failure = if status.phase.as_deref() == Some("Failed") {
        Some("pod failed".to_string())
    } else {
        containers
            .iter()
            .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
            .find(|r| FATAL.contains(&r.as_str()))
    };
    let unschedulable = condition("PodScheduled")
        .is_some_and(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"));
    Some(PodView {
        id,
        name,
        ready,
        started,
        revision: labels.get("controller-revision-hash").cloned(),
        failure,
        unschedulable,
    })
}

/// Ready, Progressing and Degraded conditions for a phase; a condition's transition time only
/// moves when its status does.
fn conditions(
    previous: &ChronikClusterStatus,
    phase: Phase,
    reason: &str,
    message: &str,
) -> Vec<Condition> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let want = [
        ("Ready", phase == Phase::Running),
        (
            "Progressing",
            matches!(
                phase,
                Phase::Bootstrapping | Phase::Scaling | Phase::Upgrading | Phase::Pending
            ),
        ),
        ("Degraded", matches!(phase, Phase::Degraded | Phase::Failed)),
    ];
    want.iter()
        .map(|(type_, on)| {
            let status = if *on { "True" } else { "False" }.to_string();
            let last = previous
                .conditions
                .iter()
                .find(|c| c.type_ == *type_ && c.status == status)
                .map(|c| c.last_transition_time.clone());
            Condition {
                type_: type_.to_string(),
                status,
                reason: reason.to_string(),
                message: message.to_string(),
                observed_generation: None,
                last_transition_time: last.unwrap_or_else(|| now.clone()),
            }
        })
        .collect()
}

/// Options for [`run`].
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Watch one namespace; all namespaces when None.
    pub namespace: Option<String>,
}

/// Runs the controller until a shutdown signal.
pub async fn run(ctx: Arc<Context>, opts: RunOptions) {
    let client = ctx.client.clone();
    fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let ns = &opts.namespace;
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=chronik-operator");
    Controller::new(
        api::<ChronikCluster>(&client, ns),
        watcher::Config::default(),
    )
    .owns(api::<StatefulSet>(&client, ns), owned.clone())
    .owns(api::<Service>(&client, ns), owned.clone())
    .owns(api::<ConfigMap>(&client, ns), owned.clone())
    .owns(api::<PodDisruptionBudget>(&client, ns), owned)
    .shutdown_on_signal()
    .run(reconcile, error_policy, ctx)
    .for_each(|res| async move {
        match res {
            Ok((obj, _)) => tracing::debug!(cluster = %obj.name, "reconciled"),
            Err(e) => tracing::debug!(error = %e, "reconcile error"),
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).expect("pod parses")
    }

    const BASE: &str = "metadata: {name: demo-2, labels: {apps.kubernetes.io/pod-index: '2', \
                        controller-revision-hash: r1}}\n";

    #[test]
    fn a_running_ready_pod_is_started_ready_and_at_its_revision() {
        let v = pod_view(&pod(&format!(
            "{BASE}status: {{phase: Running, conditions: [{{type: Ready, status: 'True'}}], \
             containerStatuses: [{{name: c, ready: true, started: true, restartCount: 0, image: i, imageID: i}}]}}"
        )))
        .unwrap();
        assert_eq!((v.id, v.ready, v.started), (2, true, true));
        assert_eq!(v.revision.as_deref(), Some("r1"));
        assert_eq!(v.failure, None);
    }

    #[test]
    fn a_crash_looping_pod_is_a_failure() {
        let v = pod_view(&pod(&format!(
            "{BASE}status: {{phase: Running, containerStatuses: [{{name: c, ready: false, started: false, \
             restartCount: 5, image: i, imageID: i, state: {{waiting: {{reason: CrashLoopBackOff}}}}}}]}}"
        )))
        .unwrap();
        assert_eq!(v.failure.as_deref(), Some("CrashLoopBackOff"));
        assert!(!v.started);
    }

    #[test]
    fn an_unschedulable_pod_is_flagged() {
        let v = pod_view(&pod(&format!(
            "{BASE}status: {{phase: Pending, conditions: [{{type: PodScheduled, status: 'False', \
             reason: Unschedulable}}]}}"
        )))
        .unwrap();
        assert!(v.unschedulable);
    }

    #[test]
    fn a_terminating_pod_is_not_ready() {
        let v = pod_view(&pod(
            "metadata: {name: demo-3, deletionTimestamp: '2026-01-01T00:00:00Z'}\n\
             status: {phase: Running, conditions: [{type: Ready, status: 'True'}]}",
        ))
        .unwrap();
        assert_eq!(
            (v.id, v.ready),
            (3, false),
            "id falls back to the name's ordinal"
        );
    }

    #[test]
    fn condition_transition_time_moves_only_when_the_status_flips() {
        let first = conditions(&ChronikClusterStatus::default(), Phase::Running, "A", "m");
        let previous = ChronikClusterStatus {
            conditions: first.clone(),
            ..Default::default()
        };
        let again = conditions(&previous, Phase::Running, "A", "m2");
        assert_eq!(first[0].last_transition_time, again[0].last_transition_time);
        let ready: Vec<_> = again
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(
            ready,
            vec![
                ("Ready", "True"),
                ("Progressing", "False"),
                ("Degraded", "False")
            ]
        );
    }

    #[test]
    fn backoff_doubles_from_five_seconds_up_to_five_minutes() {
        assert_eq!(backoff(0), Duration::from_secs(5));
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(20), Duration::from_secs(300));
    }

    #[test]
    fn bootstrap_size_is_recovered_from_an_existing_statefulset() {
        let c = crate::desired::test_cluster::cluster("replicas: 3");
        let sts = crate::desired::stateful_set(
            &c,
            &Inputs {
                replicas: 5,
                bootstrap_voters: 3,
            },
            "h",
        );
        assert_eq!(peers_in_stateful_set(&sts), Some(3));
    }
}
