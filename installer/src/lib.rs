//! Spore's node installer (`spore-operator node-install`), run by a privileged DaemonSet with the
//! node's root file system mounted at `/host`:
//!
//! 1. copies the shim `containerd-shim-spore-v1` onto the host (sha256-checked, atomic);
//! 2. adds the `spore` runtime to containerd's config by editing the TOML structurally
//!    (containerd 1.7 and 2.x layouts, `imports`, k3s/rke2 templates, MicroK8s, k0s);
//! 3. restarts containerd through the host's PID 1 only when the config changed, waits until
//!    CRI lists the runtime, and restores the previous config if it does not;
//! 4. labels the node `spore.dev/shim=ready`;
//! 5. checks again every few minutes and repairs drift.
//!
//! `--uninstall` undoes all of it, giving the config file back byte for byte.

pub mod args;
pub mod containerd_config;
pub mod cri_probe;
pub mod fs_atomic;
pub mod go_template;
pub mod host;
pub mod host_namespaces;
pub mod install;
pub mod node_label;
pub mod presets;
pub mod restart;
pub mod rollout_wait;
pub mod shim_copy;
pub mod socket_owner;
pub mod state;

use std::path::PathBuf;
use std::time::Duration;

pub use args::NodeInstallArgs;
pub use install::{Installer, PassReport};
pub use presets::Preset;

/// Everything that can stop the installer, with the file or node it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid argument: {0}")]
    Argument(String),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not UTF-8 text; left untouched")]
    NotUtf8 { path: PathBuf },
    #[error("containerd config {path} left untouched: {source}")]
    Config {
        path: PathBuf,
        source: containerd_config::ConfigError,
    },
    #[error("template {path} left untouched: {source}")]
    Template {
        path: PathBuf,
        source: go_template::Unmask,
    },
    #[error("import pattern {pattern:?}: {detail}")]
    Import { pattern: String, detail: String },
    #[error(
        "{path} does not exist: the platform has not rendered containerd's config yet (is it running on this node?)"
    )]
    NotRendered { path: PathBuf },
    #[error(transparent)]
    Shim(#[from] shim_copy::ShimCopyError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(
        "containerd did not take the new config in {file}: {source}; the previous config was restored and containerd answers again"
    )]
    RestartRestored {
        file: PathBuf,
        source: Box<restart::RestartError>,
    },
    #[error(
        "containerd did not take the new config in {file}: {source}; the previous config was restored but containerd still does not answer: {again}"
    )]
    RestartNotRestored {
        file: PathBuf,
        source: Box<restart::RestartError>,
        again: Box<restart::RestartError>,
    },
    #[error("containerd did not come back after removing the runtime from {file}: {source}")]
    RestartUninstall {
        file: PathBuf,
        source: Box<restart::RestartError>,
    },
    #[error("labelling node {node}: {source}")]
    Label { node: String, source: kube::Error },
    #[error("connecting to the Kubernetes API: {0}")]
    KubeClient(#[source] kube::Error),
}

/// Runs the installer as the DaemonSet (or the uninstall hook) does. A Kubernetes client is made
/// from the pod's service account when `NODE_NAME` is known, for the node label.
pub async fn run(args: NodeInstallArgs) -> Result<(), Error> {
    let client = match &args.node_name {
        Some(_) => Some(
            kube::Client::try_default()
                .await
                .map_err(Error::KubeClient)?,
        ),
        None => {
            tracing::warn!("NODE_NAME is not set: the node will not be labelled");
            None
        }
    };
    run_with_client(args, client).await
}

/// [`run`] with a given Kubernetes client (`None`: no node label), for tests and embedding.
pub async fn run_with_client(
    args: NodeInstallArgs,
    client: Option<kube::Client>,
) -> Result<(), Error> {
    let installer = Installer::new(&args, client)?;
    tracing::info!(preset = ?installer.platform().preset, "node installer starting");
    if args.uninstall {
        let report = installer.uninstall().await?;
        tracing::info!(?report, "uninstalled");
        return Ok(());
    }
    let interval = Duration::from_secs(args.interval_seconds);
    loop {
        let report = installer.install_pass().await?;
        tracing::info!(?report, "install pass done");
        if args.once {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown() => {
                tracing::info!("stopping; the runtime stays installed (uninstall is a separate step)");
                return Ok(());
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot watch SIGTERM; only SIGINT stops the loop");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
