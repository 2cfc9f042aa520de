//! Asks containerd's CRI service, over its unix socket, whether it is up and which runtime
//! handlers it has loaded: the proof that a config change took effect.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::StatusRequest;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Endpoint, Uri};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("connecting to {socket}: {source}")]
    Connect {
        socket: PathBuf,
        source: tonic::transport::Error,
    },
    #[error("CRI Status on {socket}: {source}")]
    Status {
        socket: PathBuf,
        source: tonic::Status,
    },
    #[error("CRI Status on {socket} did not answer within {timeout:?}")]
    Timeout { socket: PathBuf, timeout: Duration },
}

/// What CRI `Status` (verbose) says about runtimes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CriStatus {
    /// `runtime_handlers` (CRI v1.30+, filled by containerd 2.x).
    pub handlers: Vec<String>,
    /// The `config` entry of the verbose info, containerd's effective CRI config as JSON.
    pub config: Option<serde_json::Value>,
}

impl CriStatus {
    /// Whether containerd has loaded runtime `name` (in the handler list or its CRI config).
    pub fn has_runtime(&self, name: &str) -> bool {
        self.handlers.iter().any(|h| h == name) || self.runtime_config(name).is_some()
    }

    /// The runtime's entry in containerd's effective config (`containerd.runtimes.<name>`).
    pub fn runtime_config(&self, name: &str) -> Option<&serde_json::Value> {
        self.config
            .as_ref()?
            .get("containerd")?
            .get("runtimes")?
            .get(name)
    }
}

/// One verbose CRI `Status` call over `socket`, bounded by `timeout`.
pub async fn status(socket: &Path, timeout: Duration) -> Result<CriStatus, ProbeError> {
    match tokio::time::timeout(timeout, status_unbounded(socket)).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::Timeout {
            socket: socket.to_owned(),
            timeout,
        }),
    }
}

async fn status_unbounded(socket: &Path) -> Result<CriStatus, ProbeError> {
    let path = socket.to_owned();
    // The URI is required by tonic but unused: the connector below dials the unix socket.
    let channel = Endpoint::from_static("http://cri.invalid")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|source| ProbeError::Connect {
            socket: socket.to_owned(),
            source,
        })?;
    let response = RuntimeServiceClient::new(channel)
        .status(StatusRequest { verbose: true })
        .await
        .map_err(|source| ProbeError::Status {
            socket: socket.to_owned(),
            source,
        })?
        .into_inner();
    let config = response
        .info
        .get("config")
        .and_then(|json| serde_json::from_str(json).ok());
    Ok(CriStatus {
        handlers: response
            .runtime_handlers
            .into_iter()
            .map(|h| h.name)
            .collect(),
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes_are_found_in_handlers_or_config() {
        let from_handlers = CriStatus {
            handlers: vec!["runc".into(), "spore".into()],
            config: None,
        };
        assert!(from_handlers.has_runtime("spore"));
        let from_config = CriStatus {
            handlers: vec![],
            config: Some(
                serde_json::json!({"containerd": {"runtimes": {"spore": {"runtimeType": "io.containerd.spore.v1"}}}}),
            ),
        };
        assert!(from_config.has_runtime("spore"));
        assert!(!from_config.has_runtime("runc"));
        assert!(!CriStatus::default().has_runtime("spore"));
    }

    #[tokio::test]
    async fn a_missing_socket_is_a_connect_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = status(&dir.path().join("none.sock"), Duration::from_secs(5))
            .await
            .expect_err("no socket");
        assert!(matches!(err, ProbeError::Connect { .. }), "{err}");
    }
}
