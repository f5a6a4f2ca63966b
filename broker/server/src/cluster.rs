//! The broker's place in the Raft metadata cluster: starting this node's Raft member from the
//! configuration, waiting for the initial brokers, and the `chronik-server cluster` commands.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chronik_meta::MetadataStore;
use chronik_raft::{RaftNode, RaftNodeConfig, RaftTimings};
use serde_json::Value;

use crate::config::ServerConfig;

/// Start this node's Raft member and wait until it has joined a cluster with a leader. (The
/// caller's first proposal then brings its state up to date with the cluster.)
pub async fn start_raft(config: &ServerConfig) -> anyhow::Result<RaftNode> {
    let raft_dir = config.data_dir.join("raft");
    let legacy = config.data_dir.join("meta");
    if !raft_dir.exists() && legacy.exists() {
        // A data directory from a build that kept metadata in a local journal: starting with
        // empty Raft metadata would silently forget every topic.
        anyhow::bail!(
            "{} holds metadata from a pre-Raft chronik-server; this build keeps metadata in {} \
             and cannot import it. Start from an empty CHRONIK_DATA_DIR, or keep using the \
             build that wrote it",
            legacy.display(),
            raft_dir.display()
        );
    }
    let initial_voters = config
        .initial_voters()?
        .into_iter()
        .map(|(id, addr)| (id as u64, addr))
        .collect::<BTreeMap<_, _>>();
    let node = RaftNode::start(RaftNodeConfig {
        node_id: config.node_id as u64,
        dir: raft_dir,
        listen: format!("{}:{}", config.bind_addr, config.cluster_port),
        initial_voters,
        timings: RaftTimings::default(),
    })
    .await
    .context("cannot start the raft metadata quorum")?;
    node.wait_joined().await;
    Ok(node)
}

/// Wait (at most `timeout`) until every initial voter has registered as a broker.
pub async fn wait_for_brokers(
    config: &ServerConfig,
    meta: &Arc<dyn MetadataStore>,
    timeout: Duration,
) {
    let Ok(voters) = config.initial_voters() else {
        return;
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut changes = meta.subscribe();
    loop {
        let state = meta.state();
        let missing: Vec<i32> = voters
            .keys()
            .filter(|id| !state.brokers.contains_key(id))
            .copied()
            .collect();
        if missing.is_empty() {
            return;
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            tracing::warn!(
                ?missing,
                "brokers not registered yet; starting without them"
            );
            return;
        }
    }
}

/// `chronik-server cluster status`: ask the local broker's HTTP API (GET /admin/cluster) and
/// print it as a table, or as JSON with `json`.
pub fn print_status(config: &ServerConfig, json: bool) -> anyhow::Result<()> {
    let body = http_request(config, "GET", "/admin/cluster", None)?;
    let status: Value = serde_json::from_str(&body)
        .with_context(|| format!("unexpected answer from /admin/cluster: {body}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    print!("{}", render_status(&status));
    Ok(())
}

/// `chronik-server cluster add-node`: POST /admin/cluster/nodes on the local broker.
pub fn add_node(config: &ServerConfig, node_id: i32, address: &str) -> anyhow::Result<()> {
    let body = serde_json::json!({"node_id": node_id, "address": address}).to_string();
    http_request(config, "POST", "/admin/cluster/nodes", Some(&body))?;
    println!("node {node_id} ({address}) is a voter");
    Ok(())
}

/// `chronik-server cluster remove-node`: DELETE /admin/cluster/nodes/{id} on the local broker,
/// then (with `wait`) follow GET /admin/cluster until the node has left.
pub fn remove_node(config: &ServerConfig, node_id: i32, wait: bool) -> anyhow::Result<()> {
    let path = format!("/admin/cluster/nodes/{node_id}");
    let body = http_request(config, "DELETE", &path, None)?;
    let started: Value = serde_json::from_str(&body)
        .with_context(|| format!("unexpected answer from {path}: {body}"))?;
    println!(
        "draining node {node_id}: {} replicas to move",
        started["replicas"]
    );
    if !wait {
        return Ok(());
    }
    let mut last = None;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let body = http_request(config, "GET", "/admin/cluster", None)?;
        let status: Value = serde_json::from_str(&body)
            .with_context(|| format!("unexpected answer from /admin/cluster: {body}"))?;
        let node = status["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["id"] == node_id);
        let Some(node) = node else {
            println!("node {node_id} has left the cluster; its process can be stopped");
            return Ok(());
        };
        let left = node["replicas"].as_u64();
        if left != last {
            println!("node {node_id}: {} replicas left", node["replicas"]);
            last = left;
        }
    }
}

/// The human-readable form of a GET /admin/cluster answer.
pub fn render_status(status: &Value) -> String {
    let field = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = String::new();
    out.push_str(&format!(
        "cluster {}  raft leader {}  term {}\n",
        field(&status["cluster_id"]),
        field(&status["leader_id"]),
        field(&status["term"])
    ));
    out.push_str(&format!(
        "{:<6} {:<8} {:<8} {:<10} {:<24} {:<24} {:>6} {:>8}\n",
        "NODE", "ROLE", "STATE", "RAFT", "KAFKA", "CLUSTER", "LAG", "REPLICAS"
    ));
    for n in status["nodes"].as_array().into_iter().flatten() {
        let kafka = match (&n["host"], &n["port"]) {
            (Value::String(h), Value::Number(p)) => format!("{h}:{p}"),
            _ => "-".into(),
        };
        out.push_str(&format!(
            "{:<6} {:<8} {:<8} {:<10} {:<24} {:<24} {:>6} {:>8}\n",
            field(&n["id"]),
            field(&n["role"]),
            field(&n["state"]),
            field(&n["raft_state"]),
            kafka,
            field(&n["cluster_address"]),
            field(&n["lag"]),
            field(&n["replicas"]),
        ));
    }
    let p = &status["partitions"];
    out.push_str(&format!(
        "partitions {}  under-replicated {}  offline {}  reassigning {}\n",
        field(&p["total"]),
        field(&p["under_replicated"]),
        field(&p["offline"]),
        field(&p["reassigning"])
    ));
    out
}

/// A minimal HTTP/1.1 request to the local broker's API (the CLI needs nothing more, and no
/// HTTP client crate for it).
fn http_request(
    config: &ServerConfig,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<String> {
    let host = if config.bind_addr == "0.0.0.0" || config.bind_addr == "::" {
        "127.0.0.1"
    } else {
        config.bind_addr.as_str()
    };
    let addr = format!("{host}:{}", config.unified_api_port);
    let mut stream = TcpStream::connect(&addr).with_context(|| {
        format!("cannot reach the broker's HTTP API at {addr} (is chronik-server running? CHRONIK_UNIFIED_API_PORT)")
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let key = config
        .admin_api_key
        .as_deref()
        .map(|k| format!("X-API-Key: {k}\r\n"))
        .unwrap_or_default();
    let body = body.unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{key}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("malformed HTTP answer from {addr}"))?;
    let status_line = head.lines().next().unwrap_or_default();
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if !(200..300).contains(&code) {
        anyhow::bail!("{method} {path} on {addr}: {status_line}: {body}");
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_renders_every_node() {
        let status = serde_json::json!({
            "cluster_id": "abc", "leader_id": 2, "term": 4,
            "nodes": [
                {"id": 1, "role": "voter", "state": "active", "raft_state": "follower",
                 "host": "127.0.0.1", "port": 9092, "cluster_address": "127.0.0.1:5001", "lag": 0},
                {"id": 2, "role": "voter", "state": "active", "raft_state": "leader",
                 "host": "127.0.0.2", "port": 9092, "cluster_address": "127.0.0.2:5001", "lag": null}
            ],
            "partitions": {"total": 9, "under_replicated": 0, "offline": 1}
        });
        let text = render_status(&status);
        assert!(text.contains("raft leader 2"), "{text}");
        assert!(text.contains("127.0.0.2:9092"), "{text}");
        assert!(text.contains("leader"), "{text}");
        assert!(text.contains("partitions 9"), "{text}");
        assert!(text.contains("offline 1"), "{text}");
    }
}
