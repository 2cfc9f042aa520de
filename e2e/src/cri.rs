//! A CRI client over containerd's unix socket that plays the kubelet: runtime service v1 and
//! image service v1 (the `k8s-cri` crate over tonic), with helpers that make the calls the
//! kubelet makes, in its order, with its configs (see [`crate::pod`]).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::cgroup::{self, CgroupError, TrackedPodCgroups};
use crate::containerd::Containerd;
use crate::pod::{CgroupDriver, ContainerSpec, PodSpec};

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("could not connect to the CRI socket {socket}: {source}")]
    Connect {
        socket: PathBuf,
        source: tonic::transport::Error,
    },
    #[error("CRI {call} failed: {code:?}: {message}")]
    Call {
        call: &'static str,
        code: tonic::Code,
        message: String,
    },
    #[error("CRI {call} answered without {field}")]
    Missing {
        call: &'static str,
        field: &'static str,
    },
    #[error("{what} did not happen within {secs:.1} s (last seen: {last})")]
    Timeout {
        what: String,
        secs: f64,
        last: String,
    },
    #[error("the CRI runtime is not ready within {secs} s: {conditions}")]
    NotReady { secs: u64, conditions: String },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("could not create the log directory {path}: {source}")]
    LogDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A random number (from the kernel), for the kubelet-style file names.
fn rand_u32() -> u32 {
    let mut bytes = [0u8; 4];
    if let Ok(mut random) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut random, &mut bytes);
    }
    u32::from_le_bytes(bytes)
}

fn call_error(call: &'static str) -> impl FnOnce(tonic::Status) -> CriError {
    move |status| CriError::Call {
        call,
        code: status.code(),
        message: status.message().to_owned(),
    }
}

/// A pod sandbox the harness started.
#[derive(Clone, Debug)]
pub struct Pod {
    pub id: String,
    pub spec: PodSpec,
    pub config: cri::PodSandboxConfig,
    pub log_dir: PathBuf,
}

impl Pod {
    /// The kubelet's log path of a container: `<pod log dir>/<name>/<attempt>.log`.
    pub fn container_log_path(&self, name: &str, attempt: u32) -> PathBuf {
        self.log_dir.join(name).join(format!("{attempt}.log"))
    }

    pub fn uid(&self) -> &str {
        &self.spec.uid
    }

    pub fn cgroup_parent(&self) -> String {
        self.spec.cgroup_parent()
    }
}

/// A container the harness created.
#[derive(Clone, Debug)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub pod_id: String,
    /// Absolute path of its CRI log file.
    pub log_path: PathBuf,
    /// The host file behind its `terminationMessagePath`, as the kubelet makes one.
    pub termination_log: Option<PathBuf>,
}

/// What ExecSync returned.
#[derive(Clone, Debug)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The kubelet stand-in.
#[derive(Clone, Debug)]
pub struct CriClient {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    log_root: PathBuf,
    pod_cgroups: Option<TrackedPodCgroups>,
}

impl CriClient {
    /// Connects to a CRI socket; pod logs go under `log_root`.
    pub async fn connect(socket: &Path, log_root: &Path) -> Result<Self, CriError> {
        let path = socket.to_path_buf();
        let channel =
            Endpoint::from_static("http://[::]:50051")
                .timeout(Duration::from_secs(120))
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }))
                .await
                .map_err(|source| CriError::Connect {
                    socket: socket.to_path_buf(),
                    source,
                })?;
        Ok(CriClient {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            log_root: log_root.to_path_buf(),
            pod_cgroups: None,
        })
    }

    /// Connects to a harness containerd and waits until its CRI runtime reports
    /// `RuntimeReady` and `NetworkReady`.
    pub async fn for_containerd(containerd: &Containerd) -> Result<Self, CriError> {
        let mut client = Self::connect(containerd.socket(), containerd.pod_log_root()).await?;
        client.pod_cgroups = Some(containerd.pod_cgroups().clone());
        client.wait_ready(Duration::from_secs(30)).await?;
        Ok(client)
    }

    /// The raw runtime service client, for calls without a helper.
    pub fn runtime(&mut self) -> &mut RuntimeServiceClient<Channel> {
        &mut self.runtime
    }

    /// The raw image service client.
    pub fn images(&mut self) -> &mut ImageServiceClient<Channel> {
        &mut self.images
    }

    pub async fn version(&mut self) -> Result<cri::VersionResponse, CriError> {
        self.runtime
            .version(cri::VersionRequest {
                version: "v1".into(),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(call_error("Version"))
    }

    /// Status (verbose), which lists the runtime handlers and conditions.
    pub async fn status(&mut self) -> Result<cri::StatusResponse, CriError> {
        self.runtime
            .status(cri::StatusRequest { verbose: true })
            .await
            .map(tonic::Response::into_inner)
            .map_err(call_error("Status"))
    }

    /// The names of the runtime handlers the runtime reports.
    pub async fn runtime_handlers(&mut self) -> Result<Vec<String>, CriError> {
        Ok(self
            .status()
            .await?
            .runtime_handlers
            .into_iter()
            .map(|h| h.name)
            .collect())
    }

    /// Waits until the runtime's `RuntimeReady` and `NetworkReady` conditions hold.
    pub async fn wait_ready(&mut self, limit: Duration) -> Result<(), CriError> {
        let start = Instant::now();
        let mut conditions = String::from("no answer");
        while start.elapsed() < limit {
            match self.status().await {
                Ok(status) => {
                    let list = status.status.map(|s| s.conditions).unwrap_or_default();
                    let ready = |name: &str| list.iter().any(|c| c.r#type == name && c.status);
                    if ready("RuntimeReady") && ready("NetworkReady") {
                        return Ok(());
                    }
                    conditions = format!("{list:?}");
                }
                Err(e) => conditions = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(CriError::NotReady {
            secs: limit.as_secs(),
            conditions,
        })
    }

    /// PullImage; returns the image ref (`sha256:...` image id) the kubelet then uses.
    pub async fn pull_image(&mut self, image: &str) -> Result<String, CriError> {
        let response = self
            .images
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: image.to_owned(),
                    user_specified_image: image.to_owned(),
                    ..Default::default()
                }),
                auth: None,
                sandbox_config: None,
            })
            .await
            .map_err(call_error("PullImage"))?;
        Ok(response.into_inner().image_ref)
    }

    /// ImageStatus; `None` when the image is not present.
    pub async fn image_status(&mut self, image: &str) -> Result<Option<cri::Image>, CriError> {
        let response = self
            .images
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: image.to_owned(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .map_err(call_error("ImageStatus"))?;
        Ok(response.into_inner().image)
    }

    /// RemoveImage, as the kubelet's image garbage collection does.
    pub async fn remove_image(&mut self, image: &str) -> Result<(), CriError> {
        self.images
            .remove_image(cri::RemoveImageRequest {
                image: Some(cri::ImageSpec {
                    image: image.to_owned(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(call_error("RemoveImage"))?;
        Ok(())
    }

    /// Creates the pod's cgroup (cgroupfs driver, as the kubelet does first) and its log
    /// directory, then RunPodSandbox.
    pub async fn run_pod(&mut self, spec: PodSpec) -> Result<Pod, CriError> {
        if spec.driver == CgroupDriver::Cgroupfs {
            if let Some(tracked) = &self.pod_cgroups {
                tracked.insert(&spec.cgroup_parent());
            }
            cgroup::create(&spec.cgroup_parent())?;
            // The kubelet limits the pod's cgroup itself; containerd only passes the figure on.
            if let Some(bytes) = spec.memory_limit {
                cgroup::set_memory_limit(&spec.cgroup_parent(), bytes)?;
            }
        }
        let config = spec.sandbox_config(&self.log_root);
        let log_dir = spec.log_directory(&self.log_root);
        std::fs::create_dir_all(&log_dir).map_err(|source| CriError::LogDir {
            path: log_dir.clone(),
            source,
        })?;
        let response = self
            .runtime
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: spec.handler.clone(),
            })
            .await;
        let response = match response {
            Ok(r) => r.into_inner(),
            Err(status) => {
                if spec.driver == CgroupDriver::Cgroupfs
                    && cgroup::remove(&spec.cgroup_parent()).is_ok()
                    && let Some(tracked) = &self.pod_cgroups
                {
                    tracked.remove(&spec.cgroup_parent());
                }
                return Err(call_error("RunPodSandbox")(status));
            }
        };
        Ok(Pod {
            id: response.pod_sandbox_id,
            spec,
            config,
            log_dir,
        })
    }

    /// RunPodSandbox for a pod named `name` in `namespace` on runtime handler `handler`
    /// (`runc`, `spore`), with a fresh uid and the kubelet's defaults.
    pub async fn run_pod_sandbox(
        &mut self,
        name: &str,
        namespace: &str,
        handler: &str,
    ) -> Result<Pod, CriError> {
        self.run_pod(PodSpec::new(name, namespace, handler)).await
    }

    pub async fn pod_sandbox_status(
        &mut self,
        pod_id: &str,
    ) -> Result<cri::PodSandboxStatusResponse, CriError> {
        self.runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod_id.to_owned(),
                verbose: true,
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(call_error("PodSandboxStatus"))
    }

    /// The pod's IPv4 address from PodSandboxStatus.
    pub async fn pod_ip(&mut self, pod_id: &str) -> Result<Option<Ipv4Addr>, CriError> {
        let status = self.pod_sandbox_status(pod_id).await?;
        Ok(status
            .status
            .and_then(|s| s.network)
            .and_then(|n| n.ip.parse().ok()))
    }

    /// The network namespace path of the pod, from the verbose PodSandboxStatus's runtime spec.
    pub async fn pod_netns_path(&mut self, pod_id: &str) -> Result<Option<PathBuf>, CriError> {
        let status = self.pod_sandbox_status(pod_id).await?;
        let Some(info) = status.info.get("info") else {
            return Ok(None);
        };
        let Ok(info) = serde_json::from_str::<serde_json::Value>(info) else {
            return Ok(None);
        };
        let namespaces = info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(namespaces
            .iter()
            .find(|ns| ns["type"] == "network")
            .and_then(|ns| ns["path"].as_str())
            .filter(|p| !p.is_empty())
            .map(PathBuf::from))
    }

    /// CreateContainer in `pod` (with the pod's sandbox config, as the kubelet sends it). The
    /// container's log directory is created first, as the kubelet does.
    pub async fn create_container(
        &mut self,
        pod: &Pod,
        spec: &ContainerSpec,
    ) -> Result<Container, CriError> {
        let config = spec.container_config(&pod.spec);
        self.create_container_with(pod, config).await
    }

    /// CreateContainer with a config the test built or changed itself.
    pub async fn create_container_with(
        &mut self,
        pod: &Pod,
        mut config: cri::ContainerConfig,
    ) -> Result<Container, CriError> {
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let termination_log = self.add_termination_log(pod, &name, &mut config)?;
        let log_path = pod.log_dir.join(&config.log_path);
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| CriError::LogDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let response = self
            .runtime
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.id.clone(),
                config: Some(config),
                sandbox_config: Some(pod.config.clone()),
            })
            .await
            .map_err(call_error("CreateContainer"))?;
        Ok(Container {
            id: response.into_inner().container_id,
            name,
            pod_id: pod.id.clone(),
            log_path,
            termination_log,
        })
    }

    /// What the kubelet does for every container: an empty file for its termination message at
    /// `<kubelet dir>/pods/<uid>/containers/<name>/<random>`, mounted at its
    /// `terminationMessagePath` (from the annotation the kubelet also sets).
    fn add_termination_log(
        &self,
        pod: &Pod,
        name: &str,
        config: &mut cri::ContainerConfig,
    ) -> Result<Option<PathBuf>, CriError> {
        let Some(container_path) = config
            .annotations
            .get("io.kubernetes.container.terminationMessagePath")
            .cloned()
        else {
            return Ok(None);
        };
        if config
            .mounts
            .iter()
            .any(|m| m.container_path == container_path)
        {
            return Ok(None);
        }
        let kubelet = self
            .log_root
            .parent()
            .map(|base| base.join("kubelet"))
            .unwrap_or_else(|| self.log_root.join("kubelet"));
        let dir = kubelet
            .join("pods")
            .join(pod.uid())
            .join("containers")
            .join(name);
        let file = dir.join(format!("{:08x}", rand_u32()));
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&file, b""))
            .map_err(|source| CriError::LogDir {
                path: file.clone(),
                source,
            })?;
        config.mounts.push(cri::Mount {
            container_path,
            host_path: file.to_string_lossy().into_owned(),
            ..Default::default()
        });
        Ok(Some(file))
    }

    pub async fn start_container(&mut self, container_id: &str) -> Result<(), CriError> {
        self.runtime
            .start_container(cri::StartContainerRequest {
                container_id: container_id.to_owned(),
            })
            .await
            .map(|_| ())
            .map_err(call_error("StartContainer"))
    }

    /// CreateContainer then StartContainer.
    pub async fn run_container(
        &mut self,
        pod: &Pod,
        spec: &ContainerSpec,
    ) -> Result<Container, CriError> {
        let container = self.create_container(pod, spec).await?;
        self.start_container(&container.id).await?;
        Ok(container)
    }

    pub async fn container_status(
        &mut self,
        container_id: &str,
    ) -> Result<cri::ContainerStatus, CriError> {
        self.runtime
            .container_status(cri::ContainerStatusRequest {
                container_id: container_id.to_owned(),
                verbose: false,
            })
            .await
            .map_err(call_error("ContainerStatus"))?
            .into_inner()
            .status
            .ok_or(CriError::Missing {
                call: "ContainerStatus",
                field: "status",
            })
    }

    /// Polls ContainerStatus until the container has exited; returns that status.
    pub async fn wait_for_exit(
        &mut self,
        container_id: &str,
        limit: Duration,
    ) -> Result<cri::ContainerStatus, CriError> {
        self.wait_for_state(container_id, cri::ContainerState::ContainerExited, limit)
            .await
    }

    /// Polls ContainerStatus until the container is in `state`.
    pub async fn wait_for_state(
        &mut self,
        container_id: &str,
        state: cri::ContainerState,
        limit: Duration,
    ) -> Result<cri::ContainerStatus, CriError> {
        let start = Instant::now();
        loop {
            let status = self.container_status(container_id).await?;
            if status.state == state as i32 {
                return Ok(status);
            }
            if start.elapsed() >= limit {
                return Err(CriError::Timeout {
                    what: format!("container {container_id} reaching {state:?}"),
                    secs: limit.as_secs_f64(),
                    last: format!(
                        "state {:?}, reason {:?}, message {:?}",
                        status.state(),
                        status.reason,
                        status.message
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// ExecSync with a timeout in seconds (0: none).
    pub async fn exec_sync(
        &mut self,
        container_id: &str,
        cmd: &[&str],
        timeout_secs: i64,
    ) -> Result<ExecOutput, CriError> {
        let response = self
            .runtime
            .exec_sync(cri::ExecSyncRequest {
                container_id: container_id.to_owned(),
                cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
                timeout: timeout_secs,
            })
            .await
            .map_err(call_error("ExecSync"))?
            .into_inner();
        Ok(ExecOutput {
            exit_code: response.exit_code,
            stdout: String::from_utf8_lossy(&response.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&response.stderr).into_owned(),
        })
    }

    /// StopContainer with a grace period in seconds.
    pub async fn stop_container(
        &mut self,
        container_id: &str,
        timeout_secs: i64,
    ) -> Result<(), CriError> {
        self.runtime
            .stop_container(cri::StopContainerRequest {
                container_id: container_id.to_owned(),
                timeout: timeout_secs,
            })
            .await
            .map(|_| ())
            .map_err(call_error("StopContainer"))
    }

    pub async fn remove_container(&mut self, container_id: &str) -> Result<(), CriError> {
        self.runtime
            .remove_container(cri::RemoveContainerRequest {
                container_id: container_id.to_owned(),
            })
            .await
            .map(|_| ())
            .map_err(call_error("RemoveContainer"))
    }

    pub async fn list_containers(
        &mut self,
        pod_id: Option<&str>,
    ) -> Result<Vec<cri::Container>, CriError> {
        let filter = pod_id.map(|id| cri::ContainerFilter {
            pod_sandbox_id: id.to_owned(),
            ..Default::default()
        });
        Ok(self
            .runtime
            .list_containers(cri::ListContainersRequest { filter })
            .await
            .map_err(call_error("ListContainers"))?
            .into_inner()
            .containers)
    }

    pub async fn list_pod_sandboxes(&mut self) -> Result<Vec<cri::PodSandbox>, CriError> {
        Ok(self
            .runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
            .map_err(call_error("ListPodSandbox"))?
            .into_inner()
            .items)
    }

    pub async fn container_stats(
        &mut self,
        container_id: &str,
    ) -> Result<cri::ContainerStats, CriError> {
        self.runtime
            .container_stats(cri::ContainerStatsRequest {
                container_id: container_id.to_owned(),
            })
            .await
            .map_err(call_error("ContainerStats"))?
            .into_inner()
            .stats
            .ok_or(CriError::Missing {
                call: "ContainerStats",
                field: "stats",
            })
    }

    pub async fn pod_sandbox_stats(
        &mut self,
        pod_id: &str,
    ) -> Result<cri::PodSandboxStats, CriError> {
        self.runtime
            .pod_sandbox_stats(cri::PodSandboxStatsRequest {
                pod_sandbox_id: pod_id.to_owned(),
            })
            .await
            .map_err(call_error("PodSandboxStats"))?
            .into_inner()
            .stats
            .ok_or(CriError::Missing {
                call: "PodSandboxStats",
                field: "stats",
            })
    }

    pub async fn stop_pod_sandbox(&mut self, pod_id: &str) -> Result<(), CriError> {
        self.runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod_id.to_owned(),
            })
            .await
            .map(|_| ())
            .map_err(call_error("StopPodSandbox"))
    }

    pub async fn remove_pod_sandbox(&mut self, pod_id: &str) -> Result<(), CriError> {
        self.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod_id.to_owned(),
            })
            .await
            .map(|_| ())
            .map_err(call_error("RemovePodSandbox"))
    }

    /// What the kubelet does when a pod goes away: StopPodSandbox, RemovePodSandbox (which
    /// removes its containers), then the pod's cgroup (cgroupfs driver).
    pub async fn teardown_pod(&mut self, pod: &Pod) -> Result<(), CriError> {
        self.stop_pod_sandbox(&pod.id).await?;
        self.remove_pod_sandbox(&pod.id).await?;
        if pod.spec.driver == CgroupDriver::Cgroupfs {
            cgroup::remove(&pod.cgroup_parent())?;
            if let Some(tracked) = &self.pod_cgroups {
                tracked.remove(&pod.cgroup_parent());
            }
        }
        Ok(())
    }
}
