//! What can go wrong while benchmarking.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("usage: {0}")]
    Usage(String),
    #[error("{path}: {source} (run `bash hack/build-guests.sh` first)")]
    MissingGuest {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Containerd(#[from] crate::containerd::ContainerdError),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Cri(#[from] crate::cri::CriError),
    #[error(transparent)]
    CriLog(#[from] crate::cri_log::CriLogError),
    #[error("`ctr {args}` failed ({status}): {stderr}")]
    Ctr {
        args: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("spawning {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("timed out after {secs} s waiting for {what}")]
    Timeout { what: String, secs: f64 },
    #[error("generating the large Wasm module: {0}")]
    Generate(String),
    #[error(
        "the shim wrote no compiled code to {dir}: it did not take `CacheDir` from `ctr run --runtime-config-path`"
    )]
    CacheUnused { dir: PathBuf },
    #[error("load generator: {0}")]
    Load(String),
    /// The cluster's client and waits, shared with the end-to-end suite (`crate::cluster`).
    #[error("cluster: {0}")]
    ClusterSuite(#[from] crate::cluster::ClusterError),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("cluster: {0}")]
    Cluster(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}
