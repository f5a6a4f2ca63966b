//! The cluster's admin API (SPEC 5.5), as the operator uses it.
//!
//! The operator depends on three calls; the trait is the seam between the reconciler and a real
//! cluster, so reconciler tests script the cluster's answers instead of running brokers.
//!
//! Wire contract (JSON over the HTTP port, `X-API-Key` when the cluster has an admin key):
//! - `GET /admin/cluster` answers [`ClusterStatus`]; unknown fields are ignored and missing ones
//!   take defaults, so the server may report more than the operator reads.
//! - `POST /admin/cluster/nodes` with [`NewNode`] adds a broker as a Raft voter; 2xx or 409
//!   (already a member) is success.
//! - `DELETE /admin/cluster/nodes/{id}` starts draining a broker: its partitions move away, then
//!   it leaves the voter set. 2xx or 404 (already gone) is success. Progress shows in
//!   `GET /admin/cluster`: the node has `state: draining`, then disappears.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where and how to reach one cluster's admin API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminTarget {
    /// `http://<client service>.<ns>.svc.<domain>:6092`.
    pub base_url: String,
    /// The cluster's CHRONIK_ADMIN_API_KEY, read from its Secret.
    pub api_key: Option<String>,
    /// PEM certificates to trust when the HTTP port speaks TLS (`auth.tlsSecret`): the Secret's
    /// `ca.crt`, else its `tls.crt`. `base_url` is then `https://…`.
    pub ca_pem: Option<Vec<u8>>,
}

/// `GET /admin/cluster`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Current Raft leader, if one is elected.
    #[serde(default)]
    pub leader_id: Option<i32>,
    /// Every broker the cluster knows: voters, learners catching up, and draining ones.
    #[serde(default)]
    pub nodes: Vec<NodeInfo>,
    /// Partition replica health across the cluster.
    #[serde(default)]
    pub partitions: PartitionSummary,
}

/// One broker in `GET /admin/cluster`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: i32,
    #[serde(default)]
    pub role: NodeRole,
    #[serde(default)]
    pub state: NodeLifecycle,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    #[default]
    Voter,
    Learner,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeLifecycle {
    #[default]
    Active,
    Draining,
}

/// Counts over all partitions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSummary {
    #[serde(default)]
    pub total: u32,
    /// Partitions whose ISR is smaller than their replica set.
    #[serde(default)]
    pub under_replicated: u32,
    /// Partitions with no leader.
    #[serde(default)]
    pub offline: u32,
}

impl ClusterStatus {
    /// The gate for the next step of a rolling update: no partition is missing a replica.
    pub fn all_in_sync(&self) -> bool {
        self.partitions.under_replicated == 0 && self.partitions.offline == 0
    }

    pub fn node(&self, id: i32) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.id == id)
    }
}

/// `POST /admin/cluster/nodes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewNode {
    pub node_id: i32,
    /// `host:5001`, the same form as in CHRONIK_PEERS.
    pub address: String,
}

/// The admin calls the reconciler makes.
#[async_trait]
pub trait ClusterAdmin: Send + Sync {
    async fn status(&self, target: &AdminTarget) -> Result<ClusterStatus>;
    async fn add_node(&self, target: &AdminTarget, node: &NewNode) -> Result<()>;
    async fn remove_node(&self, target: &AdminTarget, id: i32) -> Result<()>;
}

/// The real implementation: HTTP, or HTTPS trusting the cluster's own certificate.
pub struct HttpAdmin {
    client: Client<HttpConnector, Full<Bytes>>,
    /// Bounds each call so one hung broker cannot stall every reconcile.
    timeout: Duration,
}

/// An HTTPS client that trusts exactly the certificates in `ca_pem`. Built per call: admin
/// calls are rare and the trust root can change whenever the Secret does.
fn https_client(
    ca_pem: &[u8],
) -> Result<Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let bad = |reason: String| Error::Admin {
        endpoint: "tls".to_string(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| bad(format!("bad certificate pem: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("bad certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in the tls secret".to_string()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

impl HttpAdmin {
    pub fn new(timeout: Duration) -> Self {
        HttpAdmin {
            client: Client::builder(TokioExecutor::new()).build_http(),
            timeout,
        }
    }

    async fn call(
        &self,
        target: &AdminTarget,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(http::StatusCode, Bytes)> {
        match &target.ca_pem {
            None => self.send(&self.client, target, method, path, body).await,
            Some(pem) => {
                self.send(&https_client(pem)?, target, method, path, body)
                    .await
            }
        }
    }

    async fn send<C>(
        &self,
        client: &Client<C, Full<Bytes>>,
        target: &AdminTarget,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(http::StatusCode, Bytes)>
    where
        C: Connect + Clone + Send + Sync + 'static,
    {
        let endpoint = format!("{} {path}", method);
        let fail = |reason: String| Error::Admin {
            endpoint: endpoint.clone(),
            reason,
        };
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", target.base_url))
            .header(http::header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        if let Some(key) = &target.api_key {
            req = req.header("x-api-key", key);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| fail(e.to_string()))?;
        let resp = tokio::time::timeout(self.timeout, client.request(req))
            .await
            .map_err(|_| fail(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_bytes();
        Ok((status, bytes))
    }
}

fn unexpected(endpoint: &str, status: http::StatusCode, body: &Bytes) -> Error {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    Error::Admin {
        endpoint: endpoint.to_string(),
        reason: format!("status {status}: {text}"),
    }
}

#[async_trait]
impl ClusterAdmin for HttpAdmin {
    async fn status(&self, target: &AdminTarget) -> Result<ClusterStatus> {
        let (status, body) = self
            .call(target, http::Method::GET, "/admin/cluster", None)
            .await?;
        if !status.is_success() {
            return Err(unexpected("GET /admin/cluster", status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| Error::Admin {
            endpoint: "GET /admin/cluster".to_string(),
            reason: format!("bad body: {e}"),
        })
    }

    async fn add_node(&self, target: &AdminTarget, node: &NewNode) -> Result<()> {
        let body = serde_json::to_vec(node)?;
        let (status, body) = self
            .call(
                target,
                http::Method::POST,
                "/admin/cluster/nodes",
                Some(body),
            )
            .await?;
        if status.is_success() || status == http::StatusCode::CONFLICT {
            return Ok(());
        }
        Err(unexpected("POST /admin/cluster/nodes", status, &body))
    }

    async fn remove_node(&self, target: &AdminTarget, id: i32) -> Result<()> {
        let path = format!("/admin/cluster/nodes/{id}");
        let (status, body) = self.call(target, http::Method::DELETE, &path, None).await?;
        if status.is_success() || status == http::StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(unexpected(&format!("DELETE {path}"), status, &body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_status_parses_a_minimal_and_a_rich_answer() {
        let s: ClusterStatus = serde_json::from_str(r#"{"nodes":[{"id":1}]}"#).unwrap();
        assert_eq!(s.nodes[0].role, NodeRole::Voter);
        assert!(s.all_in_sync());
        let s: ClusterStatus = serde_json::from_str(
            r#"{"leader_id":2,"nodes":[{"id":4,"role":"learner","state":"draining","extra":1}],
                "partitions":{"total":9,"under_replicated":1,"offline":0}}"#,
        )
        .unwrap();
        assert_eq!(s.node(4).unwrap().state, NodeLifecycle::Draining);
        assert!(!s.all_in_sync());
    }

    #[tokio::test]
    async fn http_admin_reports_an_unreachable_cluster_as_an_admin_error() {
        let admin = HttpAdmin::new(Duration::from_secs(2));
        let target = AdminTarget {
            base_url: "http://127.0.0.1:1".into(),
            api_key: None,
            ca_pem: None,
        };
        let err = admin.status(&target).await.unwrap_err();
        assert!(matches!(err, Error::Admin { .. }), "{err}");
    }

    #[tokio::test]
    async fn https_needs_a_certificate_to_trust() {
        let admin = HttpAdmin::new(Duration::from_secs(2));
        let target = AdminTarget {
            base_url: "https://127.0.0.1:1".into(),
            api_key: None,
            ca_pem: Some(b"not a certificate".to_vec()),
        };
        let err = admin.status(&target).await.unwrap_err();
        assert!(err.to_string().contains("no certificate"), "{err}");
    }

    #[tokio::test]
    async fn a_plain_http_server_is_not_trusted_as_https() {
        // A listener that answers in plain text: the TLS handshake must fail, not hang.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            if let Ok((mut s, _)) = listener.accept().await {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                    .await;
            }
        });
        let admin = HttpAdmin::new(Duration::from_secs(5));
        let target = AdminTarget {
            base_url: format!("https://{addr}"),
            api_key: None,
            ca_pem: Some(TEST_CERT.to_vec()),
        };
        let err = admin.status(&target).await.unwrap_err();
        assert!(matches!(err, Error::Admin { .. }), "{err}");
    }

    /// A throwaway self-signed certificate (CN=test): only parsed as a trust root here.
    const TEST_CERT: &[u8] = include_bytes!("../tests/data/test-cert.pem");
}
