//! Spore's end-to-end suite against the cluster of a kubeconfig; run by `hack/e2e.sh`, which
//! builds and pushes the images and example components first. Environment:
//!   SPORE_E2E_KUBECONFIG       the cluster (required)
//!   SPORE_E2E_REGISTRY         registry (and path prefix) the cluster pulls from (required)
//!   SPORE_E2E_TAG              tag of Spore's images (e2e; hack/e2e.sh makes a new one per run)
//!   SPORE_E2E_VALUES           extra chart values files, colon-separated
//!   SPORE_E2E_CONTAINERD_CONFIG  containerd's config on the nodes (/etc/containerd/config.toml)
//! Exit 0 only when every step passed.

use std::path::PathBuf;
use std::process::ExitCode;

use spore_e2e::cluster::{self, SuiteConfig};

fn config() -> Result<SuiteConfig, String> {
    let need = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    let values_files = std::env::var("SPORE_E2E_VALUES")
        .unwrap_or_default()
        .split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect();
    Ok(SuiteConfig {
        kubeconfig: PathBuf::from(need("SPORE_E2E_KUBECONFIG")?),
        registry: need("SPORE_E2E_REGISTRY")?.trim_end_matches('/').to_owned(),
        tag: std::env::var("SPORE_E2E_TAG").unwrap_or_else(|_| "e2e".into()),
        values_files,
        containerd_config: std::env::var("SPORE_E2E_CONTAINERD_CONFIG")
            .unwrap_or_else(|_| "/etc/containerd/config.toml".into()),
        release: "spore".into(),
        namespace: "spore-system".into(),
        apps_namespace: "spore-e2e".into(),
        repo_root: spore_e2e::tools::repo_root(),
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = match config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("e2e: {err}");
            return ExitCode::from(2);
        }
    };
    match cluster::run(config).await {
        Ok(summary) => {
            println!("{summary}");
            println!("e2e: every step passed");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("e2e: FAILED: {err}");
            ExitCode::FAILURE
        }
    }
}
