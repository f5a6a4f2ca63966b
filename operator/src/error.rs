//! The one error type of the operator library.

/// Everything that can stop a reconcile or an operator start-up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),

    /// The ChronikCluster spec breaks a rule the schema cannot express or was bypassed.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),

    /// The cluster's own admin API (SPEC 5.5) did not answer as expected.
    #[error("admin api {endpoint}: {reason}")]
    Admin { endpoint: String, reason: String },

    /// A Secret the spec points at is missing a key the operator itself needs.
    #[error("secret {name}: {reason}")]
    Secret { name: String, reason: String },

    /// The cluster's object store (spec.objectStore) could not be opened, listed or cleaned.
    #[error("object store {url}: {reason}")]
    ObjectStore { url: String, reason: String },

    /// An object could not be turned into JSON or YAML.
    #[error("serialization: {0}")]
    Serialization(String),

    /// The finalizer machinery failed around the apply or cleanup step.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Serialization(e.to_string())
    }
}

impl From<serde_yaml::Error> for Error {
    fn from(e: serde_yaml::Error) -> Self {
        Error::Serialization(e.to_string())
    }
}

impl Error {
    /// A short CamelCase reason for conditions, events and metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesApiError",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::Admin { .. } => "AdminApiUnavailable",
            Error::Secret { .. } => "SecretUnavailable",
            Error::ObjectStore { .. } => "ObjectStoreUnavailable",
            Error::Serialization(_) => "SerializationError",
            Error::Finalizer(_) => "FinalizerError",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
