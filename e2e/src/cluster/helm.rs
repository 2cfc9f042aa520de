//! Helm v4 for the suite: the `helm` binary when there is one, else Helm's own library through
//! `hack/helm_release.py` (the helm-sdkpy wheel, as the chart lint uses).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::ClusterError;

#[derive(Debug, Clone)]
pub enum Helm {
    Binary(PathBuf),
    /// `python3 hack/helm_release.py LIBRARY ...` with `.tools/pylib` on PYTHONPATH.
    Library {
        script: PathBuf,
        library: PathBuf,
    },
}

/// One release of the chart.
#[derive(Debug, Clone)]
pub struct Release<'a> {
    pub helm: &'a Helm,
    pub kubeconfig: &'a Path,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl Helm {
    /// `SPORE_E2E_HELM` (a binary), else `helm` on PATH, else the library `hack/helm-sdk.sh`
    /// fetched.
    pub fn find(repo_root: &Path) -> Result<Self, ClusterError> {
        if let Some(path) = std::env::var_os("SPORE_E2E_HELM") {
            return Ok(Helm::Binary(path.into()));
        }
        if let Some(path) = crate::tools::which("helm") {
            return Ok(Helm::Binary(path));
        }
        let script = repo_root.join("hack/helm-sdk.sh");
        let output = Command::new("bash")
            .arg(&script)
            .output()
            .map_err(|source| ClusterError::Io {
                what: "running",
                path: script.clone(),
                source,
            })?;
        if !output.status.success() {
            return Err(ClusterError::Helm {
                action: "setup".into(),
                message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        let library = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        Ok(Helm::Library {
            script: repo_root.join("hack/helm_release.py"),
            library,
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Helm::Binary(path) => format!("helm binary {}", path.display()),
            Helm::Library { library, .. } => format!("Helm v4 library {}", library.display()),
        }
    }
}

impl Release<'_> {
    /// `helm upgrade --install --create-namespace --wait` with the values files in order.
    pub fn install(
        &self,
        chart: &Path,
        values: &[PathBuf],
        timeout: Duration,
    ) -> Result<String, ClusterError> {
        self.release("install", chart, values, timeout)
    }

    /// `helm upgrade --wait` with the values files in order (the chart's defaults underneath).
    pub fn upgrade(
        &self,
        chart: &Path,
        values: &[PathBuf],
        timeout: Duration,
    ) -> Result<String, ClusterError> {
        self.release("upgrade", chart, values, timeout)
    }

    /// `helm uninstall --wait`.
    pub fn uninstall(&self, timeout: Duration) -> Result<String, ClusterError> {
        let secs = timeout.as_secs().to_string();
        match self.helm {
            Helm::Binary(helm) => {
                let mut command = Command::new(helm);
                command.args(["uninstall", self.name, "--wait", "--timeout"]);
                command.arg(format!("{secs}s"));
                self.run("uninstall", command)
            }
            Helm::Library { script, library } => {
                let mut command = self.library_command(script, library, "uninstall");
                command.arg(self.name).args(["--timeout", &secs]);
                self.run("uninstall", command)
            }
        }
    }

    fn release(
        &self,
        action: &str,
        chart: &Path,
        values: &[PathBuf],
        timeout: Duration,
    ) -> Result<String, ClusterError> {
        let secs = timeout.as_secs().to_string();
        let mut command = match self.helm {
            Helm::Binary(helm) => {
                let mut command = Command::new(helm);
                command.args(["upgrade", self.name]).arg(chart);
                if action == "install" {
                    command.args(["--install", "--create-namespace"]);
                }
                command
                    .args(["--wait", "--timeout"])
                    .arg(format!("{secs}s"));
                command
            }
            Helm::Library { script, library } => {
                let mut command = self.library_command(script, library, action);
                command.arg(self.name).arg(chart).args(["--timeout", &secs]);
                command
            }
        };
        for file in values {
            command.arg("-f").arg(file);
        }
        self.run(action, command)
    }

    fn library_command(&self, script: &Path, library: &Path, action: &str) -> Command {
        let root = script
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."));
        let mut command = Command::new("python3");
        command
            .env("PYTHONPATH", root.join(".tools/pylib"))
            .arg(script)
            .arg(library)
            .arg("--kubeconfig")
            .arg(self.kubeconfig)
            .args(["--namespace", self.namespace, action]);
        command
    }

    fn run(&self, action: &str, mut command: Command) -> Result<String, ClusterError> {
        if let Helm::Binary(_) = self.helm {
            command
                .arg("--kubeconfig")
                .arg(self.kubeconfig)
                .args(["--namespace", self.namespace]);
        }
        let output = command.output().map_err(|source| ClusterError::Io {
            what: "running helm for",
            path: PathBuf::from(action),
            source,
        })?;
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            return Err(ClusterError::Helm {
                action: action.to_owned(),
                message: if stderr.is_empty() { stdout } else { stderr },
            });
        }
        Ok(stdout.lines().last().unwrap_or_default().to_owned())
    }
}
