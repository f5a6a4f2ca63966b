//! /admin/cluster: cluster status for operators and the Kubernetes operator's rolling updates,
//! and membership changes. Guarded by CHRONIK_ADMIN_API_KEY (header X-API-Key); without a key
//! configured it answers only on loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chronik_meta::Command;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{ApiError, ApiState};

fn authorize(state: &ApiState, headers: &HeaderMap, peer: SocketAddr) -> Result<(), ApiError> {
    match &state.admin_api_key {
        Some(key) => match headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
            Some(given) if given == key => Ok(()),
            Some(_) => Err(ApiError::Forbidden("wrong X-API-Key".into())),
            None => Err(ApiError::Unauthorized("X-API-Key header required".into())),
        },
        None if peer.ip().is_loopback() => Ok(()),
        None => Err(ApiError::Forbidden(
            "set CHRONIK_ADMIN_API_KEY to use /admin from other hosts".into(),
        )),
    }
}

pub(crate) async fn status(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, peer)?;
    let meta = state.broker.meta.state();
    let (mut partitions, mut under_replicated, mut offline, mut reassigning) =
        (0usize, 0usize, 0usize, 0usize);
    for topic in meta.topics.values() {
        for p in &topic.partitions {
            partitions += 1;
            // While a move runs its new replicas are outside the ISR by design: what counts
            // is whether the replicas it had are in sync.
            if p.original_replicas().iter().any(|r| !p.isr.contains(r)) {
                under_replicated += 1;
            }
            if !meta.brokers.contains_key(&p.leader) {
                offline += 1;
            }
            if p.is_reassigning() {
                reassigning += 1;
            }
        }
    }
    let lifecycle = |id: i32| {
        if meta.draining.contains(&id) {
            "draining"
        } else {
            "active"
        }
    };
    // Shape agreed with the Kubernetes operator (docs/kubernetes.md, "Admin API contract");
    // the Raft view (roles, lag) comes from the metadata store's quorum.
    let quorum = state.broker.meta.quorum();
    let mut nodes: BTreeMap<i32, Value> = BTreeMap::new();
    if let Some(q) = &quorum {
        for m in &q.members {
            let raft_state = if q.leader_id == Some(m.node_id) {
                "leader"
            } else if m.voter {
                "follower"
            } else {
                "learner"
            };
            nodes.insert(
                m.node_id,
                json!({
                    "id": m.node_id,
                    "role": if m.voter { "voter" } else { "learner" },
                    "state": lifecycle(m.node_id),
                    "raft_state": raft_state,
                    "cluster_address": m.address,
                    "matched_index": m.matched_index,
                    "lag": m.lag,
                }),
            );
        }
    }
    for b in meta.brokers.values() {
        let node = nodes.entry(b.node_id).or_insert_with(|| {
            // A registered broker outside the Raft membership (only without a quorum view).
            json!({"id": b.node_id, "role": "voter", "state": lifecycle(b.node_id)})
        });
        node["host"] = json!(b.host);
        node["port"] = json!(b.port);
        node["rack"] = json!(b.rack);
        node["registered"] = json!(true);
        // False once the controller fenced it (heartbeats stopped): it leads nothing.
        node["alive"] = json!(meta.is_live(b.node_id));
    }
    for (id, node) in nodes.iter_mut() {
        // What a drain still has to move.
        node["replicas"] = json!(meta.replicas_on(*id).count());
    }
    let (leader_id, term, role) = match &quorum {
        Some(q) => (q.leader_id, Some(q.term), Some(q.role.clone())),
        None => (Some(state.broker.config.node_id), None, None),
    };
    Ok(Json(json!({
        "cluster_id": meta.cluster_id,
        "node_id": state.broker.config.node_id,
        "leader_id": leader_id,
        "term": term,
        "raft_role": role,
        "nodes": nodes.into_values().collect::<Vec<_>>(),
        "topics": meta.topics.len(),
        "partitions": {
            "total": partitions,
            "under_replicated": under_replicated,
            "offline": offline,
            "reassigning": reassigning,
        },
    })))
}

/// `POST /admin/cluster/nodes` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewNode {
    node_id: i32,
    /// host:port of the new broker's cluster port.
    address: String,
}

/// Adds a broker to the Raft voters: it joins as a learner, catches up, then is promoted. The
/// broker must already be running with that CHRONIK_NODE_ID (it waits to be added).
pub(crate) async fn add_node(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<NewNode>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, peer)?;
    let Json(node) = body?;
    if node.node_id < 0 {
        return Err(ApiError::BadRequest(
            "node_id must be zero or positive".into(),
        ));
    }
    match node.address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {}
        _ => {
            return Err(ApiError::BadRequest(format!(
                "address '{}' must be <host>:<cluster port>",
                node.address
            )))
        }
    }
    state
        .broker
        .meta
        .add_voter(node.node_id, node.address.clone())
        .await?;
    Ok(Json(json!({
        "id": node.node_id,
        "address": node.address,
        "role": "voter",
        "state": "active",
    })))
}

/// Starts draining a broker: the controller moves its replicas to the other brokers (each
/// move completes once the new replicas are in sync), then removes it from the Raft voters and
/// forgets it. Answers 202 at once; `GET /admin/cluster` shows the node `draining` with the
/// replicas it still holds until it disappears. Refused (409) when the other brokers cannot
/// hold its replicas.
pub(crate) async fn remove_node(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    authorize(&state, &headers, peer)?;
    let node_id: i32 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("node id '{id}' must be an integer")))?;
    let meta = state.broker.meta.state();
    let member = state
        .broker
        .meta
        .quorum()
        .is_some_and(|q| q.members.iter().any(|m| m.node_id == node_id));
    if !member && !meta.brokers.contains_key(&node_id) && !meta.draining.contains(&node_id) {
        return Err(ApiError::NotFound(format!(
            "node {node_id} is not a member of this cluster"
        )));
    }
    state
        .broker
        .meta
        .propose(Command::DrainBroker { node_id })
        .await?;
    let meta = state.broker.meta.state();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "id": node_id,
            "state": "draining",
            "replicas": meta.replicas_on(node_id).count(),
        })),
    ))
}
