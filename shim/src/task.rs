//! containerd's Task service for the containers of one shim process (one pod, or one container
//! without a pod).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use containerd_shim::TtrpcResult;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::asynchronous::publisher::RemotePublisher;
use containerd_shim::protos::api;
use containerd_shim::protos::events::task::{TaskCreate, TaskDelete, TaskExit, TaskIO, TaskStart};
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::shim_async::Task;
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::r#async::TtrpcContext;
use containerd_shim::protos::ttrpc::context::Context;
use wasmtime::Engine;

use crate::container::exec::ExecProcess;
use crate::container::native::NativeContainer;
use crate::container::wasm::{Linkers, WasmGuest};
use crate::container::{Container, ContainerSetup, ExitHook, Phase, Workload};
use crate::error::ShimError;
use crate::wasm::exit::ExitStatus;
use crate::wasm::source::{GuestSource, Origin};
use crate::host::stdio::{GuestStdio, StdioPaths};
use crate::containerd::options::RuntimeOptions;
use crate::host::reaper::Exits;
use crate::host::rootfs::{self, RootfsMount};
use crate::spec::ContainerSpec;
use crate::host::stats::Usage;

type Containers = Arc<Mutex<HashMap<String, Arc<Container>>>>;

/// How long a shim with no containers left keeps answering before it exits.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_millis(300);

#[derive(Clone)]
pub struct TaskService {
    engine: Engine,
    sources: Arc<GuestSource>,
    linkers: Arc<Linkers>,
    containers: Containers,
    events: Arc<EventSink>,
    exits: Exits,
    exit: Arc<ExitSignal>,
}

/// Where task events go: containerd's event service, through the publisher.
pub struct EventSink {
    publisher: RemotePublisher,
    namespace: String,
}

impl EventSink {
    async fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        if let Err(err) = self
            .publisher
            .publish(Context::default(), topic, &self.namespace, event)
            .await
        {
            tracing::warn!(%err, topic, "publishing a task event failed");
        }
    }
}

fn timestamp(at: SystemTime) -> Timestamp {
    Timestamp::from(at)
}

fn shim_pid() -> u32 {
    std::process::id()
}

/// Whether a container runs as Wasm in this process or natively through runc: the pod's
/// sandbox and any entrypoint that is not Wasm (by its first bytes) run natively; an entrypoint
/// named `*.wasm` is always treated as Wasm, so a broken one fails with a Wasm error.
pub fn runs_as_wasm(spec: &ContainerSpec) -> bool {
    if spec.is_sandbox() {
        return false;
    }
    let Some(path) = spec.entrypoint_path() else {
        return false;
    };
    if spec.args.first().is_some_and(|a| a.ends_with(".wasm")) {
        return true;
    }
    let mut prefix = [0u8; 4];
    std::fs::File::open(&path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut prefix))
        .map(|()| crate::wasm::compile::looks_like_wasm(&prefix))
        .unwrap_or(false)
}

impl TaskService {
    pub async fn new(
        engine: Engine,
        linkers: Linkers,
        publisher: RemotePublisher,
        containerd_address: String,
        namespace: String,
        exit: Arc<ExitSignal>,
    ) -> Result<Self, String> {
        Ok(TaskService {
            sources: Arc::new(GuestSource::new(
                engine.clone(),
                containerd_address,
                namespace.clone(),
            )),
            engine,
            linkers: Arc::new(linkers),
            containers: Arc::new(Mutex::new(HashMap::new())),
            events: Arc::new(EventSink {
                publisher,
                namespace,
            }),
            exits: Exits::start().await?,
            exit,
        })
    }

    fn lock(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, HashMap<String, Arc<Container>>>, ShimError> {
        self.containers
            .lock()
            .map_err(|_| ShimError::Other("the container table's lock is poisoned".into()))
    }

    fn get(&self, id: &str) -> Result<Arc<Container>, ShimError> {
        self.lock()?
            .get(id)
            .cloned()
            .ok_or_else(|| ShimError::NotFound(id.to_string()))
    }

    /// Publishes TaskExit when a container's main process or an exec process ends.
    fn exit_hook(&self) -> ExitHook {
        let events = self.events.clone();
        Arc::new(
            move |container: &Container, exec_id: Option<&str>, status: &ExitStatus| {
                let event = TaskExit {
                    container_id: container.id.clone(),
                    id: exec_id.unwrap_or(&container.id).to_string(),
                    pid: container.pid(),
                    exit_status: status.code,
                    exited_at: Some(timestamp(status.at)).into(),
                    ..Default::default()
                };
                let events = events.clone();
                tokio::spawn(async move {
                    events
                        .publish(topics::TASK_EXIT_EVENT_TOPIC, Box::new(event))
                        .await;
                });
            },
        )
    }

    async fn create_container(
        &self,
        req: &api::CreateTaskRequest,
    ) -> Result<Arc<Container>, ShimError> {
        if self.lock()?.contains_key(&req.id) {
            return Err(ShimError::AlreadyExists(req.id.clone()));
        }
        let bundle = PathBuf::from(&req.bundle);
        let spec = ContainerSpec::load(&bundle)?;
        let stdio = StdioPaths::parse(&req.stdin, &req.stdout, &req.stderr)?;
        let options = match req.options.as_ref() {
            Some(any) => RuntimeOptions::decode(&any.type_url, &any.value)
                .map_err(ShimError::InvalidArgument)?,
            None => RuntimeOptions::default(),
        };
        let mounts: Vec<RootfsMount> = req
            .rootfs
            .iter()
            .map(|m| RootfsMount {
                fs_type: m.type_.clone(),
                source: m.source.clone(),
                options: m.options.clone(),
            })
            .collect();
        let mounted = {
            let bundle = bundle.clone();
            tokio::task::spawn_blocking(move || rootfs::mount(&bundle, &mounts))
                .await
                .map_err(|e| ShimError::Other(format!("mount task failed: {e}")))??
        };
        let undo_mount = |err: ShimError| {
            if let Some(target) = &mounted {
                let _ = rootfs::unmount(target);
            }
            err
        };
        let origin = if spec.is_sandbox() {
            None
        } else {
            match self.sources.origin(&spec).await.map_err(undo_mount)? {
                Origin::Artifact(layer) => Some(Origin::Artifact(layer)),
                Origin::Rootfs if runs_as_wasm(&spec) => Some(Origin::Rootfs),
                Origin::Rootfs => None,
            }
        };
        let workload = if let Some(origin) = origin {
            let (guest, name) = self
                .sources
                .guest(&spec, origin, &options)
                .await
                .map_err(undo_mount)?;
            let engine = self.engine.clone();
            let linkers = self.linkers.clone();
            let for_link = spec.clone();
            let guest = tokio::task::spawn_blocking(move || {
                WasmGuest::link(&engine, &linkers, &for_link, guest, &name)
            })
            .await
            .map_err(|e| ShimError::Other(format!("link task failed: {e}")))
            .and_then(|r| r)
            .map_err(undo_mount)?;
            if let Some((hits, misses)) = self.sources.cache_stats() {
                tracing::debug!(id = %req.id, hits, misses, "compile cache");
            }
            Workload::Wasm(Arc::new(guest))
        } else {
            let runc = NativeContainer::new(
                &req.id,
                &bundle,
                &options,
                &self.events.namespace,
                self.exits.clone(),
            )
            .map_err(undo_mount)?;
            let init_pid = runc.create(&stdio).await.map_err(undo_mount)?;
            Workload::Native {
                runc: Arc::new(runc),
                init_pid,
            }
        };
        // A Wasm command's output FIFOs are opened now, as runc's shim opens them at create:
        // containerd's readers are already there (an HTTP server opens its own at start).
        let guest_stdio = match &workload {
            Workload::Wasm(guest) if !guest.is_http() => {
                Some(GuestStdio::open(&stdio).await.map_err(undo_mount)?)
            }
            _ => None,
        };
        if let Workload::Wasm(_) = &workload {
            crate::host::cgroup::join(&spec);
        }
        let container = Container::new(
            ContainerSetup {
                id: req.id.clone(),
                bundle,
                spec,
                stdio,
                terminal: req.terminal,
                mounted_rootfs: mounted,
                guest_stdio,
            },
            workload,
            self.exit_hook(),
        );
        tracing::info!(id = %req.id, kind = container.kind(), "container created");
        let mut table = self.lock()?;
        if table.contains_key(&req.id) {
            container.unmount_rootfs();
            return Err(ShimError::AlreadyExists(req.id.clone()));
        }
        table.insert(req.id.clone(), container.clone());
        Ok(container)
    }
}

#[async_trait]
impl Task for TaskService {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        let container = match self.create_container(&req).await {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!(id = %req.id, %err, "create failed");
                return Err(err.into());
            }
        };
        self.events
            .publish(
                topics::TASK_CREATE_EVENT_TOPIC,
                Box::new(TaskCreate {
                    container_id: container.id.clone(),
                    bundle: req.bundle.clone(),
                    rootfs: req.rootfs.clone(),
                    io: Some(TaskIO {
                        stdin: req.stdin.clone(),
                        stdout: req.stdout.clone(),
                        stderr: req.stderr.clone(),
                        terminal: req.terminal,
                        ..Default::default()
                    })
                    .into(),
                    pid: container.pid(),
                    ..Default::default()
                }),
            )
            .await;
        Ok(api::CreateTaskResponse {
            pid: container.pid(),
            ..Default::default()
        })
    }

    async fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        let container = self.get(&req.id)?;
        if !req.exec_id.is_empty() {
            let pid = container.start_exec(&req.exec_id).await?;
            return Ok(api::StartResponse {
                pid,
                ..Default::default()
            });
        }
        container.start().await?;
        self.events
            .publish(
                topics::TASK_START_EVENT_TOPIC,
                Box::new(TaskStart {
                    container_id: container.id.clone(),
                    pid: container.pid(),
                    ..Default::default()
                }),
            )
            .await;
        Ok(api::StartResponse {
            pid: container.pid(),
            ..Default::default()
        })
    }

    async fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let container = self.get(&req.id)?;
        let mut resp = api::StateResponse {
            id: container.id.clone(),
            bundle: container.bundle.display().to_string(),
            pid: container.pid(),
            terminal: container.terminal,
            exec_id: req.exec_id.clone(),
            ..Default::default()
        };
        let (phase, stdio) = if req.exec_id.is_empty() {
            (container.phase(), container.stdio.clone())
        } else {
            let exec = container.exec(&req.exec_id)?;
            resp.pid = exec.pid().unwrap_or(0) as u32;
            resp.terminal = exec.terminal;
            (exec.lifecycle.phase(), exec.stdio.clone())
        };
        resp.stdin = path_string(&stdio.stdin);
        resp.stdout = path_string(&stdio.stdout);
        resp.stderr = path_string(&stdio.stderr);
        match phase {
            Phase::Created => resp.status = api::Status::CREATED.into(),
            Phase::Running => resp.status = api::Status::RUNNING.into(),
            Phase::Stopped(status) => {
                resp.status = api::Status::STOPPED.into();
                resp.exit_status = status.code;
                resp.exited_at = Some(timestamp(status.at)).into();
            }
        }
        Ok(resp)
    }

    async fn wait(
        &self,
        _ctx: &TtrpcContext,
        req: api::WaitRequest,
    ) -> TtrpcResult<api::WaitResponse> {
        let container = self.get(&req.id)?;
        let status = if req.exec_id.is_empty() {
            container.wait().await
        } else {
            container.exec(&req.exec_id)?.lifecycle.wait().await
        };
        Ok(api::WaitResponse {
            exit_status: status.code,
            exited_at: Some(timestamp(status.at)).into(),
            ..Default::default()
        })
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        let container = self.get(&req.id)?;
        tracing::info!(id = %req.id, exec = %req.exec_id, signal = req.signal, "kill");
        if req.exec_id.is_empty() {
            container.kill(req.signal, req.all).await?;
        } else {
            let exec = container.exec(&req.exec_id)?;
            match (exec.lifecycle.phase(), exec.pid()) {
                (Phase::Running, Some(pid)) => {
                    let signal =
                        nix::sys::signal::Signal::try_from(req.signal as i32).map_err(|e| {
                            ShimError::InvalidArgument(format!("signal {}: {e}", req.signal))
                        })?;
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).map_err(
                        |e| ShimError::Other(format!("killing exec {}: {e}", req.exec_id)),
                    )?;
                }
                _ => {
                    return Err(ShimError::ProcessFinished(format!(
                        "{} exec {}",
                        req.id, req.exec_id
                    ))
                    .into());
                }
            }
        }
        Ok(api::Empty::new())
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        let container = self.get(&req.id)?;
        if !req.exec_id.is_empty() {
            let exec = container.exec(&req.exec_id)?;
            let status = match exec.lifecycle.phase() {
                Phase::Running => {
                    return Err(ShimError::FailedPrecondition {
                        id: format!("{} exec {}", req.id, req.exec_id),
                        what: "cannot delete a running process; kill it first".into(),
                    }
                    .into());
                }
                Phase::Stopped(status) => status,
                Phase::Created => ExitStatus::new(0, None),
            };
            container.remove_exec(&req.exec_id)?;
            return Ok(api::DeleteResponse {
                pid: exec.pid().unwrap_or(0) as u32,
                exit_status: status.code,
                exited_at: Some(timestamp(status.at)).into(),
                ..Default::default()
            });
        }
        let status = match container.phase() {
            Phase::Running => {
                return Err(ShimError::FailedPrecondition {
                    id: req.id.clone(),
                    what: "cannot delete a running container; kill it first".into(),
                }
                .into());
            }
            Phase::Stopped(status) => status,
            Phase::Created => ExitStatus::new(0, None),
        };
        container.cleanup().await?;
        self.lock()?.remove(&req.id);
        self.events
            .publish(
                topics::TASK_DELETE_EVENT_TOPIC,
                Box::new(TaskDelete {
                    container_id: container.id.clone(),
                    id: container.id.clone(),
                    pid: container.pid(),
                    exit_status: status.code,
                    exited_at: Some(timestamp(status.at)).into(),
                    ..Default::default()
                }),
            )
            .await;
        Ok(api::DeleteResponse {
            pid: container.pid(),
            exit_status: status.code,
            exited_at: Some(timestamp(status.at)).into(),
            ..Default::default()
        })
    }

    async fn pids(
        &self,
        _ctx: &TtrpcContext,
        req: api::PidsRequest,
    ) -> TtrpcResult<api::PidsResponse> {
        let container = self.get(&req.id)?;
        let mut resp = api::PidsResponse::new();
        let pids: Vec<u32> = match &container.workload {
            Workload::Native { runc, .. } => {
                runc.pids().await?.into_iter().map(|p| p as u32).collect()
            }
            Workload::Wasm(_) if container.phase() == Phase::Running => vec![shim_pid()],
            Workload::Wasm(_) => vec![],
        };
        for pid in pids {
            resp.processes.push(api::ProcessInfo {
                pid,
                ..Default::default()
            });
        }
        Ok(resp)
    }

    async fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let container = self.get(&req.id)?;
        let (cpu, memory) = container.usage_now().await?;
        let any = Usage::snapshot(cpu, memory, container.usage.memory_peak())
            .metrics_any(container.spec.memory_limit)
            .map_err(ShimError::Other)?;
        Ok(api::StatsResponse {
            stats: Some(any).into(),
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let container = self.get(&req.id)?;
        Ok(api::ConnectResponse {
            shim_pid: shim_pid(),
            task_pid: container.pid(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    async fn shutdown(
        &self,
        _ctx: &TtrpcContext,
        _req: api::ShutdownRequest,
    ) -> TtrpcResult<api::Empty> {
        if self.lock()?.is_empty() {
            // Out of the pod's cgroup now, so the kubelet can remove it.
            crate::host::cgroup::leave();
            // Exit not at once: containerd may still be waiting for answers on other connections (a
            // Kill whose container exited, and was deleted, before the Kill's own answer went
            // out); stopping the server now would drop them ("ttrpc: closed").
            let service = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
                if service.lock().is_ok_and(|table| table.is_empty()) {
                    tracing::info!("no containers left: shim exits");
                    service.exit.signal();
                }
            });
        }
        Ok(api::Empty::new())
    }

    async fn exec(
        &self,
        _ctx: &TtrpcContext,
        req: api::ExecProcessRequest,
    ) -> TtrpcResult<api::Empty> {
        let container = self.get(&req.id)?;
        if container.is_wasm() {
            return Err(unsupported(&req.id, "exec"));
        }
        let process: oci_spec::runtime::Process = req
            .spec
            .as_ref()
            .ok_or_else(|| {
                ShimError::InvalidArgument(format!("exec {}: no process spec", req.exec_id))
            })
            .and_then(|any| {
                serde_json::from_slice(&any.value).map_err(|e| {
                    ShimError::InvalidArgument(format!("exec {}: process spec: {e}", req.exec_id))
                })
            })?;
        let stdio = StdioPaths::parse(&req.stdin, &req.stdout, &req.stderr)?;
        container.add_exec(ExecProcess::new(
            req.exec_id.clone(),
            process,
            stdio,
            req.terminal,
        ))?;
        Ok(api::Empty::new())
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        self.get(&req.id)?;
        Err(unsupported(&req.id, "pause"))
    }

    async fn resume(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResumeRequest,
    ) -> TtrpcResult<api::Empty> {
        self.get(&req.id)?;
        Err(unsupported(&req.id, "resume"))
    }

    async fn update(
        &self,
        _ctx: &TtrpcContext,
        req: api::UpdateTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        let container = self.get(&req.id)?;
        if container.is_wasm() {
            return Err(unsupported(&req.id, "update of resources"));
        }
        // Native containers keep the resources they were created with.
        Ok(api::Empty::new())
    }

    async fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        self.get(&req.id)?;
        Err(unsupported(&req.id, "resizing a pty"))
    }

    async fn close_io(
        &self,
        _ctx: &TtrpcContext,
        req: api::CloseIORequest,
    ) -> TtrpcResult<api::Empty> {
        // containerd asks this when its client's stdin ends; the process sees the end of input
        // through the stdin FIFO itself once containerd closes its writing end.
        self.get(&req.id)?;
        Ok(api::Empty::new())
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        req: api::CheckpointTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        self.get(&req.id)?;
        Err(unsupported(&req.id, "checkpoint"))
    }
}

fn unsupported(id: &str, what: &'static str) -> containerd_shim::protos::ttrpc::Error {
    ShimError::NotSupportedForWasm {
        id: id.to_string(),
        what,
    }
    .into()
}

fn path_string(target: &crate::host::stdio::StdioTarget) -> String {
    match target {
        crate::host::stdio::StdioTarget::None => String::new(),
        crate::host::stdio::StdioTarget::Path(p) => p.display().to_string(),
    }
}
