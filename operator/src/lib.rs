//! `spore-operator`: reconciles `WasmApp` objects (`spore.dev/v1alpha1`) into a Deployment on the
//! `spore` runtime class, a Service for HTTP apps and a HorizontalPodAutoscaler when asked for.
//!
//! The pure parts ([`desired`], [`status`], [`references`], [`image_ref`]) hold the decisions;
//! [`controller`] only fetches, applies and reports.

pub mod controller;
pub mod crd;
pub mod desired;
pub mod image_ref;
pub mod leader;
pub mod metrics;
pub mod references;
pub mod status;

/// Field manager for server-side apply, and the reporting controller of events.
pub const FIELD_MANAGER: &str = "spore-operator";

/// Everything that can go wrong while reconciling or running the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done, e.g. "apply Deployment default/hello".
        action: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// An object could not be turned into JSON.
    #[error("serialize {what}: {source}")]
    Serialize {
        /// What was serialized.
        what: &'static str,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The WasmApp has no namespace (it is a namespaced kind, so the API server broke a promise).
    #[error("WasmApp {0} has no namespace")]
    MissingNamespace(String),
    /// The metrics and health server could not start or failed.
    #[error("metrics server on {addr}: {source}")]
    MetricsServer {
        /// Address it was to listen on.
        addr: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The leader lease was lost, so this replica must stop reconciling.
    #[error("lost the leader lease {0}")]
    LeaseLost(String),
}

impl Error {
    /// Wraps a client error with what was being done.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            action: action.into(),
            source,
        }
    }

    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::Serialize { .. } => "serialize",
            Error::MissingNamespace(_) => "missing_namespace",
            Error::MetricsServer { .. } => "metrics_server",
            Error::LeaseLost(_) => "lease_lost",
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
