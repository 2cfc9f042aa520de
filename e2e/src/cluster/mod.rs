//! Spore's end-to-end suite on a real cluster, given by a kubeconfig (`hack/e2e.sh`): `helm
//! install` the chart with images pushed to a registry the cluster pulls from, apply every
//! manifest of `examples/apps/`, check what a user would, then `helm upgrade` and `helm
//! uninstall`, and check that the nodes are as they were.
//!
//! Only the kubeconfig, the registry and the chart values come from outside; the node's files
//! are read by short-lived probe pods (busybox with the host's root mounted), so the suite works
//! on kind, on a single-node cluster, on any node whose containerd the installer can restart.

mod apply;
mod helm;
mod node_probe;
pub mod poll;
mod steps;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use helm::Helm;
pub use steps::run;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{what} did not happen within {timeout:?}; last seen: {last}")]
    Timeout {
        what: String,
        timeout: Duration,
        last: String,
    },
    #[error("{0}")]
    Check(String),
    #[error("helm {action} failed: {message}")]
    Helm { action: String, message: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("manifest {path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("image: {0}")]
    Image(#[from] crate::image::ImageError),
}

/// A client for the cluster of `kubeconfig` (its current context).
pub async fn connect(kubeconfig: &Path) -> Result<kube::Client, ClusterError> {
    let bad = |message: String| ClusterError::Kubeconfig {
        path: kubeconfig.to_path_buf(),
        message,
    };
    let config = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| bad(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .map_err(|e| bad(e.to_string()))?;
    Ok(kube::Client::try_from(config)?)
}

/// What the suite is run with (from `hack/e2e.sh`'s environment).
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    pub kubeconfig: PathBuf,
    /// Registry (with a path prefix) the cluster pulls from: `REGISTRY/spore-operator:TAG`,
    /// `REGISTRY/spore/hello-http:0.1.0`, `REGISTRY/busybox:1.36`.
    pub registry: String,
    pub tag: String,
    /// Extra chart values (YAML files), e.g. the node's containerd config path and restart.
    pub values_files: Vec<PathBuf>,
    /// containerd's config on the nodes (host path), compared before install and after uninstall.
    pub containerd_config: String,
    pub release: String,
    pub namespace: String,
    pub apps_namespace: String,
    pub repo_root: PathBuf,
}

/// Prints each step with its time; remembers them for the summary.
#[derive(Default)]
pub struct Steps {
    done: Vec<(String, Duration)>,
}

impl Steps {
    pub async fn run<T, F>(&mut self, name: &str, step: F) -> Result<T, ClusterError>
    where
        F: std::future::Future<Output = Result<T, ClusterError>>,
    {
        println!("e2e: {name} ...");
        let started = Instant::now();
        let result = step.await;
        let took = started.elapsed();
        match &result {
            Ok(_) => println!("e2e: ok   {name} ({:.1} s)", took.as_secs_f64()),
            Err(err) => println!("e2e: FAIL {name} ({:.1} s): {err}", took.as_secs_f64()),
        }
        if result.is_ok() {
            self.done.push((name.to_owned(), took));
        }
        result
    }

    pub fn summary(&self) -> String {
        let total: Duration = self.done.iter().map(|(_, t)| *t).sum();
        let mut out = String::from("| step | seconds |\n| --- | --- |\n");
        for (name, took) in &self.done {
            out.push_str(&format!("| {name} | {:.1} |\n", took.as_secs_f64()));
        }
        out.push_str(&format!("| total | {:.1} |\n", total.as_secs_f64()));
        out
    }
}
