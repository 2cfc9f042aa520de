//! The errors of `spore push` and `spore inspect`, each saying what went wrong and where.

use std::path::PathBuf;

use crate::world::WasmFileError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: no such file")]
    FileNotFound { path: PathBuf },

    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: {source}")]
    NotPushable {
        path: PathBuf,
        #[source]
        source: WasmFileError,
    },

    #[error("invalid image reference {reference:?}: {reason} (expected REGISTRY/REPOSITORY:TAG)")]
    BadReference { reference: String, reason: String },

    #[error("invalid annotation {annotation:?}: expected KEY=VALUE with a non-empty KEY")]
    BadAnnotation { annotation: String },

    #[error(
        "cannot reach the registry {place}: {detail}{hint}",
        place = if registry == address { format!("at {address}") } else { format!("{registry} at {address}") },
        hint = if *insecure { "" } else { " (for a plain-HTTP registry pass --insecure)" }
    )]
    Unreachable {
        registry: String,
        address: String,
        detail: String,
        insecure: bool,
    },

    #[error("the registry {registry} refused access (HTTP {status}): {credentials}")]
    AuthFailed {
        registry: String,
        status: u16,
        credentials: String,
    },

    #[error("{reference}: not found in the registry ({detail})")]
    NotFound { reference: String, detail: String },

    #[error("docker config {path}: {reason}")]
    DockerConfig { path: PathBuf, reason: String },

    #[error("credential helper docker-credential-{helper} failed for {registry}: {reason}")]
    CredentialHelper {
        helper: String,
        registry: String,
        reason: String,
    },

    #[error("the registry {registry} answered with something Spore cannot read: {reason}")]
    BadRegistryContent { registry: String, reason: String },

    #[error("the registry {registry} failed: {source}")]
    Registry {
        registry: String,
        #[source]
        source: oci_client::errors::OciDistributionError,
    },

    #[error("cannot set up the registry client: {0}")]
    ClientSetup(String),

    #[error("could not encode the artifact config: {0}")]
    EncodeConfig(#[from] serde_json::Error),
}
