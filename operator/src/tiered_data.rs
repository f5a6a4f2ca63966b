//! A cluster's tiered data in its object store (`spec.objectStore.url`), deleted by the
//! finalizer when the spec asks (`deleteDataOnDelete`).
//!
//! Owner references remove everything a cluster has in Kubernetes; the segments its brokers
//! tiered to S3, GCS or Azure live outside, so only the operator can remove them. The operator
//! reaches the store as the brokers do: the URL of SPEC 2's OBJECT_STORE_URL and the credentials
//! Secret whose keys the brokers get as environment variables (AWS_*, GOOGLE_*, AZURE_*).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use object_store::path::Path;
use object_store::ObjectStore;
use url::Url;

use crate::error::{Error, Result};

/// A store and the prefix inside it that a URL's path denotes.
pub type OpenedStore = (Arc<dyn ObjectStore>, Path);

/// Opens the object store a URL names: the cloud clients in production, an in-memory store in
/// tests.
pub trait ObjectStores: Send + Sync {
    /// The store `url` names, configured with `options` (object_store configuration keys such
    /// as `aws_access_key_id`), and the prefix inside it that `url`'s path denotes.
    fn open(&self, url: &Url, options: &[(String, String)]) -> Result<OpenedStore>;
}

/// S3, GCS and Azure through the object_store crate, the client the brokers use.
pub struct CloudStores;

impl ObjectStores for CloudStores {
    fn open(&self, url: &Url, options: &[(String, String)]) -> Result<OpenedStore> {
        if url.scheme() == "file" {
            // A file:// URL names a path on the brokers' disks; opening it here would delete
            // from the operator's own filesystem.
            return Err(object_store_error(
                url,
                "file:// data is on the brokers' disks, not reachable from the operator",
            ));
        }
        let (store, prefix) = object_store::parse_url_opts(url, options.iter().cloned())
            .map_err(|e| object_store_error(url, &e.to_string()))?;
        Ok((Arc::from(store), prefix))
    }
}

/// Configuration for object_store from the process environment and the credentials Secret.
///
/// Keys are lowercased, which is how object_store's configuration names spell the environment
/// variables the brokers read (`AWS_SECRET_ACCESS_KEY` → `aws_secret_access_key`). Only AWS_*,
/// GOOGLE_* and AZURE_* variables of the operator's own environment count (workload identity
/// set up on the operator's pod); the Secret's keys override them. Values that are not UTF-8
/// cannot be credentials and are left out.
pub fn store_options(
    env: impl IntoIterator<Item = (String, String)>,
    secret: &BTreeMap<String, ByteString>,
) -> Vec<(String, String)> {
    const PREFIXES: &[&str] = &["AWS_", "GOOGLE_", "AZURE_"];
    let mut options: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(k, _)| PREFIXES.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    for (k, v) in secret {
        if let Ok(v) = String::from_utf8(v.0.clone()) {
            options.insert(k.to_ascii_lowercase(), v.trim_end_matches('\n').to_string());
        }
    }
    options.into_iter().collect()
}

/// Deletes every object under `prefix` (whole path segments: `a/b` covers `a/b/x`, not
/// `a/bc`) and returns how many there were. Safe to repeat after a failure part-way: the next
/// call lists what is left.
pub async fn delete_prefix(url: &Url, store: &dyn ObjectStore, prefix: &Path) -> Result<u64> {
    let prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
    let locations = store.list(prefix).map_ok(|meta| meta.location).boxed();
    store
        .delete_stream(locations)
        .try_fold(0u64, |n, _| async move { Ok(n + 1) })
        .await
        .map_err(|e| object_store_error(url, &e.to_string()))
}

fn object_store_error(url: &Url, reason: &str) -> Error {
    Error::ObjectStore {
        url: url.to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};

    fn secret(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn secret_keys_become_lowercase_options_and_override_the_environment() {
        let env = [
            ("AWS_REGION".to_string(), "eu-west-1".to_string()),
            ("AWS_ACCESS_KEY_ID".to_string(), "from-env".to_string()),
            ("HOME".to_string(), "/root".to_string()),
            (
                "KUBERNETES_SERVICE_HOST".to_string(),
                "10.0.0.1".to_string(),
            ),
        ];
        let s = secret(&[
            ("AWS_ACCESS_KEY_ID", "from-secret\n"),
            ("aws_allow_http", "true"),
        ]);
        assert_eq!(
            store_options(env, &s),
            vec![
                ("aws_access_key_id".to_string(), "from-secret".to_string()),
                ("aws_allow_http".to_string(), "true".to_string()),
                ("aws_region".to_string(), "eu-west-1".to_string()),
            ]
        );
    }

    #[test]
    fn values_that_are_not_utf8_are_left_out() {
        let mut s = secret(&[("AZURE_STORAGE_ACCOUNT_NAME", "acct")]);
        s.insert(
            "AZURE_STORAGE_ACCOUNT_KEY".into(),
            ByteString(vec![0xff, 0xfe]),
        );
        assert_eq!(
            store_options([], &s),
            vec![("azure_storage_account_name".to_string(), "acct".to_string())]
        );
    }

    #[test]
    fn file_urls_are_refused() {
        let url = Url::parse("file:///var/lib/chronik/tier").unwrap();
        let err = CloudStores.open(&url, &[]).expect_err("refused");
        assert!(err.to_string().contains("brokers' disks"), "{err}");
    }

    #[test]
    fn cloud_urls_open_with_their_prefix() {
        let url = Url::parse("s3://bucket/clusters/demo").unwrap();
        let opts = [("aws_region".to_string(), "us-east-1".to_string())];
        let (_, prefix) = CloudStores.open(&url, &opts).unwrap();
        assert_eq!(prefix.as_ref(), "clusters/demo");
        let url = Url::parse("gs://bucket/p").unwrap();
        let err = CloudStores.open(&url, &[]).err();
        // GCS without credentials is still a valid store; a request would fail, opening not.
        assert!(err.is_none(), "{err:?}");
    }

    async fn put(store: &InMemory, path: &str) {
        store
            .put(&Path::from(path), PutPayload::from_static(b"x"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn deleting_a_prefix_keeps_siblings_that_only_share_its_spelling() {
        let store = InMemory::new();
        for p in [
            "demo/t-0/00.seg",
            "demo/t-0/01.seg",
            "demo/meta",
            "demo-2/t-0/00.seg",
            "other",
        ] {
            put(&store, p).await;
        }
        let url = Url::parse("s3://b/demo").unwrap();
        let n = delete_prefix(&url, &store, &Path::from("demo"))
            .await
            .unwrap();
        assert_eq!(n, 3);
        let left: Vec<String> = store
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(left.len(), 2);
        assert!(left.contains(&"demo-2/t-0/00.seg".to_string()));
        assert!(left.contains(&"other".to_string()));
        // A second pass finds nothing left and succeeds.
        assert_eq!(
            delete_prefix(&url, &store, &Path::from("demo"))
                .await
                .unwrap(),
            0
        );
    }

    #[tokio::test]
    async fn an_empty_prefix_means_the_whole_bucket() {
        let store = InMemory::new();
        put(&store, "a").await;
        put(&store, "b/c").await;
        let url = Url::parse("s3://b").unwrap();
        assert_eq!(
            delete_prefix(&url, &store, &Path::from("")).await.unwrap(),
            2
        );
    }
}
