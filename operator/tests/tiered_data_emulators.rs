//! The finalizer's tiered-data deletion against real S3 (moto), GCS (fake-gcs-server) and Azure
//! Blob (Azurite) servers started by each test, reached the way a cluster's credentials Secret
//! reaches them: the same configuration keys, lowercased.
//!
//! The servers are installed by `make emulators` (run by `make unit`), which passes their paths
//! in CHRONIK_TEST_MOTO_SERVER, CHRONIK_TEST_FAKE_GCS_SERVER and CHRONIK_TEST_AZURITE; the tests
//! are `#[ignore]`d for a bare `cargo test` and `make unit` runs them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chronik_operator::tiered_data::{delete_prefix, CloudStores, ObjectStores};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use url::Url;

/// A server process, killed when the test ends however it ends.
struct Emulator {
    child: Child,
    port: u16,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tool(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: `make emulators` installs the object-store emulators and `make unit` passes their paths")
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(program: &str, args: &[String], port: u16) -> Emulator {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    let em = Emulator { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{program} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    em
}

/// One HTTP/1.1 request on a fresh connection; the status code of the answer.
fn http(port: u16, method: &str, target: &str, headers: &[(&str, String)], body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer to {method} {target}: {out:?}"))
}

fn opts(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// What each test puts in its bucket: segments of the cluster under `demo/`, and a sibling
/// prefix that shares its spelling and must survive.
const OBJECTS: [&str; 5] = [
    "demo/orders-0/00000000000000000000.seg",
    "demo/orders-0/00000000000000001000.seg",
    "demo/orders-1/00000000000000000000.seg",
    "demo/cluster.json",
    "demo-old/orders-0/00000000000000000000.seg",
];

async fn seed_through_object_store(root: &str, options: &[(String, String)]) {
    let (bucket, _) = CloudStores
        .open(&Url::parse(root).unwrap(), options)
        .unwrap();
    for p in OBJECTS {
        bucket
            .put(&Path::from(p), PutPayload::from_static(b"segment bytes"))
            .await
            .unwrap_or_else(|e| panic!("put {p}: {e}"));
    }
}

/// Deletes `<root>/demo` the way the finalizer does and checks that only that prefix went.
async fn deletes_only_the_cluster_prefix(root: &str, options: &[(String, String)]) {
    let (bucket, _) = CloudStores
        .open(&Url::parse(root).unwrap(), options)
        .unwrap();
    let url = Url::parse(&format!("{root}/demo")).unwrap();
    let (store, prefix) = CloudStores.open(&url, options).unwrap();
    assert_eq!(prefix.as_ref(), "demo");
    let n = delete_prefix(&url, store.as_ref(), &prefix).await.unwrap();
    assert_eq!(n, 4);
    let left: Vec<String> = bucket
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(left, vec!["demo-old/orders-0/00000000000000000000.seg"]);
    // Repeating (a retry after a failure part-way) finds nothing and succeeds.
    assert_eq!(
        delete_prefix(&url, store.as_ref(), &prefix).await.unwrap(),
        0
    );
}

#[tokio::test]
#[ignore = "needs the S3 emulator: run by `make unit`"]
async fn s3_prefix_deleted_on_moto() {
    let port = free_port();
    let _moto = start(
        &tool("CHRONIK_TEST_MOTO_SERVER"),
        &[
            "-H".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ],
        port,
    );
    assert_eq!(http(port, "PUT", "/tier", &[], b""), 200);
    let options = opts(&[
        ("aws_access_key_id", "test".into()),
        ("aws_secret_access_key", "test".into()),
        ("aws_region", "us-east-1".into()),
        ("aws_endpoint", format!("http://127.0.0.1:{port}")),
        ("aws_allow_http", "true".into()),
    ]);
    seed_through_object_store("s3://tier", &options).await;
    deletes_only_the_cluster_prefix("s3://tier", &options).await;
}

#[tokio::test]
#[ignore = "needs the GCS emulator: run by `make unit`"]
async fn gcs_prefix_deleted_on_fake_gcs_server() {
    let port = free_port();
    let gcs = start(
        &tool("CHRONIK_TEST_FAKE_GCS_SERVER"),
        &[
            "-scheme".into(),
            "http".into(),
            "-host".into(),
            "127.0.0.1".into(),
            "-port".into(),
            port.to_string(),
            "-backend".into(),
            "memory".into(),
            "-public-host".into(),
            format!("127.0.0.1:{port}"),
        ],
        port,
    );
    let created = http(
        gcs.port,
        "POST",
        "/storage/v1/b?project=test",
        &[("Content-Type", "application/json".into())],
        br#"{"name":"tier"}"#,
    );
    assert_eq!(created, 200);
    // object_store's service-account form for emulators: no OAuth, a base URL of its own.
    let key = serde_json::json!({
        "private_key": "", "private_key_id": "", "client_email": "",
        "gcs_base_url": format!("http://127.0.0.1:{port}"), "disable_oauth": true,
    });
    let options = opts(&[("google_service_account_key", key.to_string())]);
    // fake-gcs-server lists and deletes through the XML API as object_store asks, but takes
    // uploads only through the JSON API, so the bucket is filled that way.
    for p in OBJECTS {
        let target = format!("/upload/storage/v1/b/tier/o?uploadType=media&name={p}");
        assert_eq!(
            http(gcs.port, "POST", &target, &[], b"segment bytes"),
            200,
            "{p}"
        );
    }
    deletes_only_the_cluster_prefix("gs://tier", &options).await;
}

/// Azurite's well-known development account (published in Azure's documentation).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

#[tokio::test]
#[ignore = "needs the Azure Blob emulator: run by `make unit`"]
async fn azure_prefix_deleted_on_azurite() {
    let port = free_port();
    let _azurite = start(
        "node",
        &[
            tool("CHRONIK_TEST_AZURITE"),
            "--blobHost".into(),
            "127.0.0.1".into(),
            "--blobPort".into(),
            port.to_string(),
            "--inMemoryPersistence".into(),
            "--disableTelemetry".into(),
            "--loose".into(),
            "--skipApiVersionCheck".into(),
        ],
        port,
    );
    create_azure_container(port, "tier");
    let options = opts(&[
        ("azure_storage_account_name", AZURITE_ACCOUNT.into()),
        ("azure_storage_account_key", AZURITE_KEY.into()),
        (
            "azure_storage_endpoint",
            format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"),
        ),
        ("azure_allow_http", "true".into()),
    ]);
    seed_through_object_store("az://tier", &options).await;
    deletes_only_the_cluster_prefix("az://tier", &options).await;
}

/// Creates a container with a SharedKey-signed request: object_store has no call for it and
/// Azurite refuses anonymous writes.
fn create_azure_container(port: u16, name: &str) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let version = "2021-08-06";
    // Path-style (emulator) addressing: the account appears twice in the canonical resource.
    let string_to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{name}\nrestype:container"
    );
    let key = b64.decode(AZURITE_KEY).unwrap();
    let signature = b64.encode(hmac_sha256(&key, string_to_sign.as_bytes()));
    let status = http(
        port,
        "PUT",
        &format!("/{AZURITE_ACCOUNT}/{name}?restype=container"),
        &[
            ("x-ms-date", date),
            ("x-ms-version", version.into()),
            (
                "Authorization",
                format!("SharedKey {AZURITE_ACCOUNT}:{signature}"),
            ),
        ],
        b"",
    );
    assert_eq!(status, 201, "container {name} created");
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut k = if key.len() > BLOCK {
        Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(BLOCK, 0);
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}
