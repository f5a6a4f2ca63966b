//! The reconciler's decisions as a pure function: from what was observed (StatefulSet, pods,
//! the cluster's admin API) to what to apply, which admin calls and pod deletions to make, and
//! the status to report. Everything that orders a scale or a roll lives here, so every scenario
//! is a table of inputs and expected outputs with no API server involved.

use std::time::Duration;

use crate::admin::{ClusterStatus, NodeLifecycle, NodeRole};
use crate::crd::{NodeState, Phase};

/// The broker pods as the reconciler saw them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodView {
    /// Ordinal = CHRONIK_NODE_ID.
    pub id: i32,
    pub name: String,
    /// Pod condition Ready: the broker answers /ready.
    pub ready: bool,
    /// Running with every container started (its /health answered): the process is up and
    /// can be added to the cluster even though /ready waits for that join.
    pub started: bool,
    /// `controller-revision-hash` label: which StatefulSet revision the pod runs.
    pub revision: Option<String>,
    /// Why the pod cannot run (CrashLoopBackOff, ImagePullBackOff, …), if it cannot.
    pub failure: Option<String>,
    /// The scheduler could not place the pod (e.g. no volume can be provisioned).
    pub unschedulable: bool,
}

/// What the admin API said, if it was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterView {
    /// Not asked: no broker is ready yet, so nothing could answer.
    NotAsked,
    /// Asked and failed.
    Unavailable(String),
    Status(ClusterStatus),
}

/// Everything the plan depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// spec.replicas.
    pub desired: i32,
    /// StatefulSet spec.replicas, or None before the StatefulSet exists.
    pub current: Option<i32>,
    /// StatefulSet status.updateRevision: the revision every pod should run.
    pub update_revision: Option<String>,
    pub pods: Vec<PodView>,
    pub cluster: ClusterView,
    /// Phase already reported, to tell a new cluster (Bootstrapping) from a broken one (Degraded).
    pub previous_phase: Option<Phase>,
}

/// One side effect the reconciler must perform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// POST /admin/cluster/nodes for a started broker that is not yet a member.
    AddNode(i32),
    /// DELETE /admin/cluster/nodes/{id}: drain and remove before the pod goes.
    RemoveNode(i32),
    /// Delete a pod so the StatefulSet recreates it at the new revision (OnDelete).
    DeletePod(String),
}

/// The result of planning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// StatefulSet replicas to apply.
    pub replicas: i32,
    pub steps: Vec<Step>,
    pub phase: Phase,
    /// CamelCase reason and a human message for the conditions.
    pub reason: String,
    pub message: String,
    pub nodes: Vec<NodeState>,
    pub ready_replicas: i32,
    /// When to look again even if nothing changes.
    pub requeue: Duration,
    /// Set when the admin API failed: the reconcile reports the status, then fails so the error
    /// policy retries with backoff.
    pub admin_error: Option<String>,
}

/// How long to wait between checks while something is in flight.
pub const ACTIVE_REQUEUE: Duration = Duration::from_secs(10);
/// Steady-state health check interval (partitions can fall out of sync with no Kubernetes event).
pub const IDLE_REQUEUE: Duration = Duration::from_secs(60);

impl Observed {
    fn pod(&self, id: i32) -> Option<&PodView> {
        self.pods.iter().find(|p| p.id == id)
    }

    fn status(&self) -> Option<&ClusterStatus> {
        match &self.cluster {
            ClusterView::Status(s) => Some(s),
            _ => None,
        }
    }

    fn outdated(&self, p: &PodView) -> bool {
        match (&self.update_revision, &p.revision) {
            (Some(want), Some(have)) => want != have,
            _ => false,
        }
    }
}

pub fn plan(o: &Observed) -> Plan {
    let current = o.current.unwrap_or(o.desired);
    let mut steps = vec![];
    let admin_error = match &o.cluster {
        ClusterView::Unavailable(e) => Some(e.clone()),
        _ => None,
    };
    let all_ready = (1..=o.desired).all(|id| o.pod(id).is_some_and(|p| p.ready));
    let failed = o.pods.iter().find(|p| p.failure.is_some());

    // What the phase would be with no scale or roll in flight.
    let steady = || -> (Phase, &'static str, String) {
        if let Some(p) = failed {
            return (
                Phase::Degraded,
                "PodFailed",
                format!("{}: {}", p.name, p.failure.clone().unwrap_or_default()),
            );
        }
        if let Some(e) = &admin_error {
            return (Phase::Degraded, "AdminApiUnavailable", e.clone());
        }
        let ready = o.pods.iter().filter(|p| p.ready).count();
        if !all_ready {
            let message = format!("{ready}/{} brokers ready", o.desired);
            let new = matches!(
                o.previous_phase,
                None | Some(Phase::Pending | Phase::Bootstrapping)
            );
            if new && o.pods.iter().any(|p| p.unschedulable) {
                return (Phase::Pending, "Unschedulable", message);
            }
            if new {
                return (Phase::Bootstrapping, "BrokersStarting", message);
            }
            return (Phase::Degraded, "BrokersNotReady", message);
        }
        match o.status() {
            Some(s) if !s.all_in_sync() => (
                Phase::Degraded,
                "PartitionsUnderReplicated",
                format!(
                    "{} under-replicated, {} offline of {} partitions",
                    s.partitions.under_replicated, s.partitions.offline, s.partitions.total
                ),
            ),
            _ => (
                Phase::Running,
                "AllBrokersReady",
                format!("{} brokers ready", o.desired),
            ),
        }
    };

    let (replicas, phase, reason, message) = if o.desired < current {
        scale_down(o, current, &mut steps)
    } else if let Some(r) = replace_failed(o, &mut steps) {
        r
    } else if let Some(s) = scale_up(o, current, &mut steps) {
        s
    } else if let Some(r) = roll(o, all_ready, &mut steps) {
        r
    } else {
        let (phase, reason, message) = steady();
        (o.desired, phase, reason, message)
    };

    Plan {
        replicas,
        nodes: node_states(o, replicas),
        ready_replicas: o.pods.iter().filter(|p| p.ready).count() as i32,
        requeue: if phase == Phase::Running {
            IDLE_REQUEUE
        } else {
            ACTIVE_REQUEUE
        },
        admin_error,
        steps,
        phase,
        reason: reason.to_string(),
        message,
    }
}

type Decision = (i32, Phase, &'static str, String);

/// Drains the highest ordinal still in the cluster, one at a time, and shrinks the StatefulSet
/// only past brokers the cluster no longer has: a pod never goes while it holds partitions.
fn scale_down(o: &Observed, current: i32, steps: &mut Vec<Step>) -> Decision {
    let Some(status) = o.status() else {
        let why = match &o.cluster {
            ClusterView::Unavailable(e) => e.clone(),
            _ => "no broker ready to answer the admin api".to_string(),
        };
        return (
            current,
            Phase::Degraded,
            "AdminApiUnavailable",
            format!("cannot drain: {why}"),
        );
    };
    let leaving = (o.desired + 1..=current).rev();
    match leaving.clone().find(|id| status.node(*id).is_some()) {
        None => (
            o.desired,
            Phase::Scaling,
            "ScalingDown",
            format!("brokers {}..{current} drained, shrinking", o.desired + 1),
        ),
        Some(id) => {
            let draining = status
                .node(id)
                .is_some_and(|n| n.state == NodeLifecycle::Draining);
            if !draining {
                steps.push(Step::RemoveNode(id));
            }
            (
                id,
                Phase::Scaling,
                "DrainingBroker",
                format!("draining broker {id}"),
            )
        }
    }
}

/// Grows the StatefulSet at once and adds each new broker to the cluster once its process is
/// up. Returns None when every broker is already a voter.
fn scale_up(o: &Observed, current: i32, steps: &mut Vec<Step>) -> Option<Decision> {
    let growing = o.desired > current;
    let Some(status) = o.status() else {
        // Nothing can be added before some broker answers; the StatefulSet still grows.
        return growing.then(|| {
            (
                o.desired,
                Phase::Scaling,
                "ScalingUp",
                format!("growing to {} brokers", o.desired),
            )
        });
    };
    let mut waiting = vec![];
    for id in 1..=o.desired {
        match status.node(id) {
            Some(n) if n.role == NodeRole::Voter => {}
            Some(_) => waiting.push(id),
            None => {
                waiting.push(id);
                if o.pod(id).is_some_and(|p| p.started) {
                    steps.push(Step::AddNode(id));
                }
            }
        }
    }
    if waiting.is_empty() && !growing {
        return None;
    }
    Some((
        o.desired,
        Phase::Scaling,
        "AddingBrokers",
        format!("waiting for brokers {waiting:?} to become voters"),
    ))
}

/// A broken pod on an old revision is replaced before anything else: it is down already, and
/// the new revision may be the fix (a corrected image). Waiting for it to recover, as a scale
/// or a roll would, could wait forever.
fn replace_failed(o: &Observed, steps: &mut Vec<Step>) -> Option<Decision> {
    let p = o
        .pods
        .iter()
        .filter(|p| p.failure.is_some() && o.outdated(p))
        .max_by_key(|p| p.id)?;
    steps.push(Step::DeletePod(p.name.clone()));
    Some((
        o.desired,
        Phase::Upgrading,
        "ReplacingFailedBroker",
        format!("replacing failed {} with the new revision", p.name),
    ))
}

/// OnDelete rolling update: the highest outdated ordinal goes first, only when every broker is
/// ready and every partition is in sync; a failing pod stops the roll.
fn roll(o: &Observed, all_ready: bool, steps: &mut Vec<Step>) -> Option<Decision> {
    let mut outdated: Vec<&PodView> = o.pods.iter().filter(|p| o.outdated(p)).collect();
    if outdated.is_empty() {
        return None;
    }
    outdated.sort_by_key(|p| std::cmp::Reverse(p.id));
    let n = outdated.len();
    if let Some(p) = o.pods.iter().find(|p| p.failure.is_some()) {
        let why = p.failure.clone().unwrap_or_default();
        return Some((
            o.desired,
            Phase::Degraded,
            "RollingUpdateStopped",
            format!("{} failed ({why}); {n} brokers left to update", p.name),
        ));
    }
    let status = match &o.cluster {
        ClusterView::Status(s) => s,
        ClusterView::Unavailable(e) => {
            return Some((o.desired, Phase::Degraded, "AdminApiUnavailable", e.clone()));
        }
        ClusterView::NotAsked => {
            let m = format!("waiting for brokers before updating {n}");
            return Some((o.desired, Phase::Upgrading, "WaitingForBrokers", m));
        }
    };
    if !all_ready || !status.all_in_sync() {
        let m = format!("waiting for all brokers ready and partitions in sync; {n} left to update");
        return Some((o.desired, Phase::Upgrading, "WaitingForSync", m));
    }
    let next = outdated[0];
    steps.push(Step::DeletePod(next.name.clone()));
    Some((
        o.desired,
        Phase::Upgrading,
        "RestartingBroker",
        format!("updating {}; {n} left", next.name),
    ))
}

fn node_states(o: &Observed, replicas: i32) -> Vec<NodeState> {
    let top = replicas
        .max(o.desired)
        .max(o.pods.iter().map(|p| p.id).max().unwrap_or(0));
    (1..=top)
        .map(|id| {
            let pod = o.pod(id);
            let member = o.status().and_then(|s| s.node(id));
            let voter = member.is_some_and(|n| n.role == NodeRole::Voter);
            let up_to_date = pod.is_some_and(|p| !o.outdated(p));
            let state =
                if member.is_some_and(|n| n.state == NodeLifecycle::Draining) || id > o.desired {
                    "Draining"
                } else if pod.is_some_and(|p| p.failure.is_some()) {
                    "Failed"
                } else if pod.is_none() {
                    "Pending"
                } else if !up_to_date {
                    "Updating"
                } else if o.status().is_some() && !voter {
                    "Joining"
                } else {
                    "Active"
                };
            NodeState {
                id,
                pod: pod.map_or_else(String::new, |p| p.name.clone()),
                ready: pod.is_some_and(|p| p.ready),
                voter,
                up_to_date,
                state: state.to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{NodeInfo, PartitionSummary};

    fn pod(id: i32, ready: bool, rev: &str) -> PodView {
        PodView {
            id,
            name: format!("demo-{id}"),
            ready,
            started: ready,
            revision: Some(rev.to_string()),
            ..PodView::default()
        }
    }

    fn status(voters: &[i32]) -> ClusterView {
        ClusterView::Status(ClusterStatus {
            leader_id: Some(1),
            nodes: voters
                .iter()
                .map(|id| NodeInfo {
                    id: *id,
                    role: NodeRole::Voter,
                    state: NodeLifecycle::Active,
                })
                .collect(),
            partitions: PartitionSummary {
                total: 6,
                under_replicated: 0,
                offline: 0,
            },
        })
    }

    fn observed(desired: i32, current: i32, pods: Vec<PodView>, cluster: ClusterView) -> Observed {
        Observed {
            desired,
            current: Some(current),
            update_revision: Some("r1".into()),
            pods,
            cluster,
            previous_phase: Some(Phase::Running),
        }
    }

    #[test]
    fn a_new_cluster_is_bootstrapping_until_every_broker_is_ready() {
        let mut o = observed(3, 3, vec![], ClusterView::NotAsked);
        o.current = None;
        o.previous_phase = None;
        let p = plan(&o);
        assert_eq!(
            (p.phase, p.replicas, p.steps.len()),
            (Phase::Bootstrapping, 3, 0)
        );
    }

    #[test]
    fn unschedulable_pods_of_a_new_cluster_mean_pending() {
        let mut o = observed(
            1,
            1,
            vec![PodView {
                id: 1,
                unschedulable: true,
                ..pod(1, false, "r1")
            }],
            ClusterView::NotAsked,
        );
        o.previous_phase = Some(Phase::Bootstrapping);
        assert_eq!(plan(&o).phase, Phase::Pending);
    }

    #[test]
    fn all_ready_voters_in_sync_is_running() {
        let o = observed(
            3,
            3,
            (1..=3).map(|i| pod(i, true, "r1")).collect(),
            status(&[1, 2, 3]),
        );
        let p = plan(&o);
        assert_eq!(p.phase, Phase::Running);
        assert!(p.steps.is_empty());
        assert_eq!(p.requeue, IDLE_REQUEUE);
        assert!(p
            .nodes
            .iter()
            .all(|n| n.state == "Active" && n.voter && n.ready));
    }

    #[test]
    fn a_running_cluster_with_a_broker_down_is_degraded_not_bootstrapping() {
        let o = observed(
            3,
            3,
            vec![pod(1, true, "r1"), pod(2, true, "r1"), pod(3, false, "r1")],
            status(&[1, 2, 3]),
        );
        let p = plan(&o);
        assert_eq!(
            (p.phase, p.reason.as_str()),
            (Phase::Degraded, "BrokersNotReady")
        );
    }

    #[test]
    fn scale_up_grows_first_and_adds_only_started_brokers() {
        let pods = vec![
            pod(1, true, "r1"),
            pod(2, true, "r1"),
            pod(3, true, "r1"),
            pod(4, true, "r1"),
            pod(5, false, "r1"),
        ];
        let p = plan(&observed(5, 3, pods, status(&[1, 2, 3])));
        assert_eq!(p.replicas, 5);
        assert_eq!(p.phase, Phase::Scaling);
        assert_eq!(p.steps, vec![Step::AddNode(4)]);
    }

    #[test]
    fn scale_down_drains_the_highest_ordinal_first_and_keeps_its_pod() {
        let pods = (1..=5).map(|i| pod(i, true, "r1")).collect();
        let p = plan(&observed(3, 5, pods, status(&[1, 2, 3, 4, 5])));
        assert_eq!(
            (p.replicas, p.steps.clone()),
            (5, vec![Step::RemoveNode(5)])
        );
    }

    #[test]
    fn scale_down_waits_while_draining_then_shrinks_past_drained_brokers() {
        let mut cluster = status(&[1, 2, 3, 4, 5]);
        if let ClusterView::Status(s) = &mut cluster {
            s.nodes[4].state = NodeLifecycle::Draining;
        }
        let pods: Vec<_> = (1..=5).map(|i| pod(i, true, "r1")).collect();
        let p = plan(&observed(3, 5, pods.clone(), cluster));
        assert_eq!(
            (p.replicas, p.steps.len()),
            (5, 0),
            "no shrink while 5 drains"
        );
        let p = plan(&observed(3, 5, pods.clone(), status(&[1, 2, 3, 4])));
        assert_eq!(
            (p.replicas, p.steps.clone()),
            (4, vec![Step::RemoveNode(4)])
        );
        let p = plan(&observed(3, 4, pods[..4].to_vec(), status(&[1, 2, 3])));
        assert_eq!((p.replicas, p.steps.len(), p.phase), (3, 0, Phase::Scaling));
    }

    #[test]
    fn scale_down_without_the_admin_api_never_shrinks() {
        let pods = (1..=5).map(|i| pod(i, true, "r1")).collect();
        let p = plan(&observed(
            3,
            5,
            pods,
            ClusterView::Unavailable("refused".into()),
        ));
        assert_eq!((p.replicas, p.phase), (5, Phase::Degraded));
        assert!(p.admin_error.is_some());
    }

    #[test]
    fn a_roll_deletes_the_highest_outdated_pod_only_when_all_in_sync() {
        let pods = vec![pod(1, true, "r0"), pod(2, true, "r0"), pod(3, true, "r0")];
        let p = plan(&observed(3, 3, pods, status(&[1, 2, 3])));
        assert_eq!(p.phase, Phase::Upgrading);
        assert_eq!(p.steps, vec![Step::DeletePod("demo-3".into())]);
    }

    #[test]
    fn a_roll_waits_for_the_restarted_broker_and_partition_sync() {
        let pods = vec![pod(1, true, "r0"), pod(2, true, "r0"), pod(3, false, "r1")];
        let p = plan(&observed(3, 3, pods.clone(), status(&[1, 2, 3])));
        assert_eq!((p.phase, p.steps.len()), (Phase::Upgrading, 0));
        let mut lagging = status(&[1, 2, 3]);
        if let ClusterView::Status(s) = &mut lagging {
            s.partitions.under_replicated = 2;
        }
        let ready: Vec<_> = vec![pod(1, true, "r0"), pod(2, true, "r0"), pod(3, true, "r1")];
        assert!(plan(&observed(3, 3, ready.clone(), lagging))
            .steps
            .is_empty());
        let p = plan(&observed(3, 3, ready, status(&[1, 2, 3])));
        assert_eq!(p.steps, vec![Step::DeletePod("demo-2".into())]);
    }

    #[test]
    fn a_failed_pod_stops_the_roll_and_degrades() {
        let mut bad = pod(3, false, "r1");
        bad.failure = Some("CrashLoopBackOff".into());
        let p = plan(&observed(
            3,
            3,
            vec![pod(1, true, "r0"), pod(2, true, "r0"), bad],
            status(&[1, 2, 3]),
        ));
        assert_eq!(
            (p.phase, p.reason.as_str(), p.steps.len()),
            (Phase::Degraded, "RollingUpdateStopped", 0)
        );
    }

    #[test]
    fn a_failed_pod_on_an_old_revision_is_replaced_so_a_fixed_image_can_recover() {
        let mut bad = pod(3, false, "r0");
        bad.failure = Some("ImagePullBackOff".into());
        let pods = vec![pod(1, true, "r0"), pod(2, true, "r0"), bad];
        for members in [&[1, 2, 3][..], &[1, 2][..]] {
            let p = plan(&observed(3, 3, pods.clone(), status(members)));
            assert_eq!(p.phase, Phase::Upgrading, "members {members:?}");
            assert_eq!(p.steps, vec![Step::DeletePod("demo-3".into())]);
        }
        let p = plan(&observed(5, 3, pods, status(&[1, 2])));
        assert_eq!(
            p.replicas, 5,
            "a pending scale-up still grows the statefulset"
        );
    }

    #[test]
    fn an_unavailable_admin_api_degrades_with_a_reason_and_asks_for_retry() {
        let pods = (1..=3).map(|i| pod(i, true, "r1")).collect();
        let p = plan(&observed(
            3,
            3,
            pods,
            ClusterView::Unavailable("connection refused".into()),
        ));
        assert_eq!(
            (p.phase, p.reason.as_str()),
            (Phase::Degraded, "AdminApiUnavailable")
        );
        assert_eq!(p.admin_error.as_deref(), Some("connection refused"));
    }

    #[test]
    fn under_replicated_partitions_degrade_a_ready_cluster() {
        let mut s = status(&[1]);
        if let ClusterView::Status(st) = &mut s {
            st.partitions.under_replicated = 1;
        }
        let p = plan(&observed(1, 1, vec![pod(1, true, "r1")], s));
        assert_eq!(
            (p.phase, p.reason.as_str()),
            (Phase::Degraded, "PartitionsUnderReplicated")
        );
    }
}
