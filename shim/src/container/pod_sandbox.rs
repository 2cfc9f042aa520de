//! The pod's sandbox container run by the shim itself: its init process (`host::pod_init`)
//! holds the pod's namespaces, in a cgroup leaf of its own below the pod's cgroup. No runc, no
//! pause image to run, no rootfs to mount. It exists from Create, as runc's sandbox does, and
//! Start only marks it running. containerd reads its pid to give the pod's other containers
//! `/proc/<pid>/ns/...`. The runc sandbox stays behind the `Sandbox = "runc"` runtime option,
//! and runs a sandbox the init cannot (a user namespace, or no init template).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::{
    Container, ContainerKind, ExecRequest, Lifecycle, Phase, Process, ProcessInfo, ResourceUse,
    WindowSize,
};
use crate::error::ShimError;
use crate::host::pod_init::InitTemplate;
use crate::host::reaper::Exits;
use crate::host::stdio::StdioPaths;
use crate::signal::Signal;
use crate::spec::ContainerSpec;
use crate::wasm::exit::ExitStatus;

/// Whether the init can stand in for runc with this sandbox spec (not with a user namespace).
pub fn init_can_run(spec: &ContainerSpec) -> bool {
    spec.is_sandbox() && !spec.sandbox_namespaces.needs_runc
}

pub struct PodSandbox {
    init: Arc<InitProcess>,
}

struct InitProcess {
    id: String,
    bundle: PathBuf,
    pid: i32,
    leaves: Vec<PathBuf>,
    stdio: StdioPaths,
    lifecycle: Lifecycle,
    /// Held while a Kill is answered: the exit is recorded only after (see `native.rs`).
    killing: tokio::sync::Mutex<()>,
}

impl PodSandbox {
    /// Starts the init of the sandbox `id` from the shim's `template`; its exit is watched from
    /// now on.
    pub async fn create(
        id: &str,
        bundle: &Path,
        spec: &ContainerSpec,
        template: InitTemplate,
        stdio: StdioPaths,
        exits: Exits,
    ) -> Result<Self, ShimError> {
        let spec = spec.clone();
        let (pid, leaves) = tokio::task::spawn_blocking(move || {
            let leaves = crate::host::cgroup::make_pod_leaves(
                &spec,
                crate::host::cgroup::SANDBOX_CGROUP_LEAF,
            );
            match template.start(&leaves) {
                Ok(pid) => Ok((pid, leaves)),
                Err(err) => {
                    crate::host::cgroup::remove_leaves(&leaves);
                    Err(err)
                }
            }
        })
        .await
        .map_err(|e| ShimError::TaskFailed(format!("starting the pod's init: {e}")))?
        .map_err(|e| ShimError::TaskFailed(e.to_string()))?;
        tracing::debug!(id, pid, "pod init started");
        let init = Arc::new(InitProcess {
            id: id.to_string(),
            bundle: bundle.to_path_buf(),
            pid,
            leaves,
            stdio,
            lifecycle: Lifecycle::default(),
            killing: tokio::sync::Mutex::new(()),
        });
        let watched = init.clone();
        tokio::spawn(async move {
            let code = exits.wait_for(watched.pid).await.unwrap_or(255);
            let _kills_answered = watched.killing.lock().await;
            watched
                .lifecycle
                .finish(ExitStatus::new(code.clamp(0, 255) as u32, None));
        });
        Ok(PodSandbox { init })
    }

    /// The init's pid and cgroup leaves, for the host record.
    pub fn held(&self) -> (u32, Vec<PathBuf>) {
        (self.init.pid as u32, self.init.leaves.clone())
    }
}

fn not_for_sandbox(id: &str, what: &'static str) -> ShimError {
    ShimError::NotSupported {
        id: id.to_string(),
        what,
    }
}

#[async_trait]
impl Container for PodSandbox {
    fn id(&self) -> &str {
        &self.init.id
    }

    fn bundle(&self) -> &Path {
        &self.init.bundle
    }

    fn kind(&self) -> ContainerKind {
        ContainerKind::PodInit
    }

    fn process(&self, exec_id: Option<&str>) -> Result<Arc<dyn Process>, ShimError> {
        match exec_id {
            None => Ok(self.init.clone()),
            Some(exec) => Err(ShimError::NotFound(format!(
                "exec {exec} in the pod sandbox {}",
                self.init.id
            ))),
        }
    }

    async fn exec(&self, _request: ExecRequest) -> Result<Arc<dyn Process>, ShimError> {
        Err(not_for_sandbox(&self.init.id, "exec into the pod sandbox"))
    }

    fn remove_exec(&self, exec_id: &str) -> Result<(), ShimError> {
        Err(ShimError::NotFound(format!(
            "exec {exec_id} in the pod sandbox {}",
            self.init.id
        )))
    }

    async fn pause(&self) -> Result<(), ShimError> {
        Err(not_for_sandbox(&self.init.id, "pausing the pod sandbox"))
    }

    async fn resume(&self) -> Result<(), ShimError> {
        Err(not_for_sandbox(&self.init.id, "resuming the pod sandbox"))
    }

    async fn update(&self, _: &oci_spec::runtime::LinuxResources) -> Result<(), ShimError> {
        Err(not_for_sandbox(
            &self.init.id,
            "resource updates of the pod sandbox (its init uses none)",
        ))
    }

    async fn stats(&self) -> Result<ResourceUse, ShimError> {
        let (cpu_nanos, memory_bytes) = crate::host::cgroup::leaf_usage(&self.init.leaves);
        Ok(ResourceUse {
            cpu_nanos,
            memory_bytes,
            memory_peak_bytes: memory_bytes,
            memory_limit: None,
        })
    }

    async fn pids(&self) -> Result<Vec<u32>, ShimError> {
        let pids = crate::host::cgroup::leaf_pids(&self.init.leaves);
        Ok(if pids.is_empty() {
            vec![self.init.pid as u32]
        } else {
            pids
        })
    }
}

#[async_trait]
impl Process for InitProcess {
    fn info(&self) -> ProcessInfo {
        ProcessInfo {
            pid: self.pid as u32,
            stdio: self.stdio.clone(),
            terminal: false,
        }
    }

    fn phase(&self) -> Phase {
        self.lifecycle.phase()
    }

    async fn start(&self) -> Result<u32, ShimError> {
        self.lifecycle.begin(&self.id)?;
        Ok(self.pid as u32)
    }

    async fn kill(&self, signal: Signal, all: bool) -> Result<(), ShimError> {
        let _answering = self.killing.lock().await;
        if let Phase::Stopped(_) = self.phase() {
            return Err(ShimError::ProcessFinished(self.id.clone()));
        }
        let mut targets = vec![self.pid];
        if all {
            targets.extend(
                crate::host::cgroup::leaf_pids(&self.leaves)
                    .into_iter()
                    .map(|p| p as i32)
                    .filter(|&p| p != self.pid),
            );
        }
        for pid in targets {
            // SAFETY: kill(2); the init is this shim's child and is not reaped before its exit
            // is recorded, which waits for this Kill (so its pid is not reused meanwhile).
            if unsafe { libc::kill(pid, signal.number() as libc::c_int) } != 0 && pid == self.pid {
                return Err(ShimError::Signal {
                    process: self.id.clone(),
                    source: std::io::Error::last_os_error(),
                });
            }
        }
        crate::faults::kill_answer().await;
        Ok(())
    }

    async fn wait(&self) -> ExitStatus {
        self.lifecycle.wait().await
    }

    async fn delete(&self) -> Result<ExitStatus, ShimError> {
        let status = match self.phase() {
            Phase::Running | Phase::Paused => {
                return Err(ShimError::FailedPrecondition {
                    id: self.id.clone(),
                    what: "cannot delete a running process; kill it first".into(),
                });
            }
            Phase::Stopped(status) => status,
            // Deleting a sandbox that never started ends its init, as `runc delete --force`.
            Phase::Created => {
                // SAFETY: kill(2) of this shim's own child, not yet reaped.
                unsafe { libc::kill(self.pid, libc::SIGKILL) };
                self.wait().await
            }
        };
        crate::host::cgroup::remove_leaves(&self.leaves);
        Ok(status)
    }

    async fn resize_pty(&self, _: WindowSize) -> Result<(), ShimError> {
        Err(ShimError::FailedPrecondition {
            id: self.id.clone(),
            what: "it has no terminal".into(),
        })
    }

    async fn close_io(&self) -> Result<(), ShimError> {
        Ok(())
    }
}
