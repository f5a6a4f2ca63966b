//! Shared by the socket-level tests: an in-process broker on a real loopback listener, and a
//! client that speaks encoded Kafka requests to it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use chronik_kafka::{listener, Broker, KafkaConfig};
use chronik_log::{FlushPolicy, LogManager};
use chronik_meta::{BrokerInfo, Command, LocalMetadataStore, MetadataStore};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A broker serving from a data directory, as chronik-server composes one.
pub struct TestBroker {
    pub addr: SocketAddr,
    pub logs: Arc<LogManager>,
    shutdown: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestBroker {
    /// Start on `dir` (existing state is recovered), with a 1 MiB request limit and no initial
    /// rebalance delay so group tests need not wait.
    pub async fn start(dir: &Path) -> TestBroker {
        let meta: Arc<dyn MetadataStore> =
            Arc::new(LocalMetadataStore::open(dir.join("meta")).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        if meta.state().cluster_id.is_none() {
            meta.propose(Command::InitCluster {
                cluster_id: "test-cluster".into(),
            })
            .await
            .unwrap();
        }
        meta.propose(Command::RegisterBroker(BrokerInfo {
            node_id: 1,
            host: "127.0.0.1".into(),
            port: addr.port() as i32,
            rack: None,
        }))
        .await
        .unwrap();
        let logs = Arc::new(LogManager::open(dir.join("logs"), FlushPolicy::Group).unwrap());
        let config = KafkaConfig {
            advertised_port: addr.port() as i32,
            max_request_bytes: 1 << 20,
            group_initial_rebalance_delay_ms: 0,
            ..KafkaConfig::default()
        };
        let broker = Arc::new(Broker::new(config, meta, logs.clone()));
        broker.start_group_coordinator().await.unwrap();
        let (shutdown, rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(listener::serve(listener, broker, rx));
        TestBroker {
            addr,
            logs,
            shutdown,
            server,
        }
    }

    /// Stop accepting and close the logs, as a clean shutdown does.
    pub async fn stop(self) {
        let logs = self.logs.clone();
        self.crash().await;
        logs.close_all().unwrap();
    }

    /// Stop accepting and let go of everything without closing the logs: what a crash leaves.
    pub async fn crash(self) {
        let _ = self.shutdown.send(true);
        self.server.await.unwrap().unwrap();
    }
}

pub struct Client {
    pub stream: TcpStream,
    pub correlation: i32,
}

impl Client {
    pub async fn connect(b: &TestBroker) -> Client {
        Client {
            stream: TcpStream::connect(b.addr).await.unwrap(),
            correlation: 0,
        }
    }

    pub async fn send_raw(&mut self, frame: &[u8]) {
        self.stream.write_all(frame).await.unwrap();
    }

    /// One length-prefixed request frame with the next correlation id.
    pub fn frame<R: Encodable>(&mut self, key: ApiKey, version: i16, req: &R) -> BytesMut {
        self.correlation += 1;
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0; 4]);
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("socket-test")))
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        req.encode(&mut buf, version).unwrap();
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        buf
    }

    /// Read one response frame (header checked, body returned); None when the broker closed
    /// the connection.
    pub async fn read_frame(&mut self, key: ApiKey, version: i16) -> Option<Bytes> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).await.ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).await.ok()?;
        let mut body = Bytes::from(body);
        let header =
            ResponseHeader::decode(&mut body, key.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, self.correlation);
        Some(body)
    }

    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Resp {
        let frame = self.frame(key, version, req);
        self.send_raw(&frame).await;
        let mut body = self.read_frame(key, version).await.expect("response");
        let resp = Resp::decode(&mut body, version).unwrap();
        assert!(!body.has_remaining(), "trailing bytes in {key:?} response");
        resp
    }
}
