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

use crate::container::wasm::{Linkers, WasmGuest};
use crate::container::{Container, Phase};
use crate::error::ShimError;
use crate::exit::ExitStatus;
use crate::io::StdioPaths;
use crate::rootfs::{self, RootfsMount};
use crate::spec::ContainerSpec;

type Containers = Arc<Mutex<HashMap<String, Arc<Container>>>>;

#[derive(Clone)]
pub struct TaskService {
    engine: Engine,
    linkers: Arc<Linkers>,
    containers: Containers,
    events: Arc<EventSink>,
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

impl TaskService {
    pub fn new(
        engine: Engine,
        linkers: Linkers,
        publisher: RemotePublisher,
        namespace: String,
        exit: Arc<ExitSignal>,
    ) -> Self {
        TaskService {
            engine,
            linkers: Arc::new(linkers),
            containers: Arc::new(Mutex::new(HashMap::new())),
            events: Arc::new(EventSink {
                publisher,
                namespace,
            }),
            exit,
        }
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

    fn no_exec(id: &str, exec_id: &str) -> Result<(), ShimError> {
        if exec_id.is_empty() {
            Ok(())
        } else {
            Err(ShimError::NotSupportedForWasm {
                id: id.to_string(),
                what: "exec",
            })
        }
    }

    async fn create_container(
        &self,
        req: &api::CreateTaskRequest,
    ) -> Result<Arc<Container>, ShimError> {
        if self.lock()?.contains_key(&req.id) {
            return Err(ShimError::AlreadyExists(req.id.clone()));
        }
        if req.terminal {
            tracing::debug!(id = %req.id, "terminal requested: Wasm guests write plain streams");
        }
        let bundle = PathBuf::from(&req.bundle);
        let spec = ContainerSpec::load(&bundle)?;
        let stdio = StdioPaths::parse(&req.stdin, &req.stdout, &req.stderr)?;
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
        let prepared = {
            let engine = self.engine.clone();
            let linkers = self.linkers.clone();
            let spec = spec.clone();
            tokio::task::spawn_blocking(move || WasmGuest::prepare(&engine, &linkers, &spec))
                .await
                .map_err(|e| ShimError::Other(format!("compile task failed: {e}")))
        };
        let guest = match prepared {
            Ok(Ok(guest)) => guest,
            Ok(Err(err)) | Err(err) => {
                if let Some(target) = &mounted {
                    let _ = rootfs::unmount(target);
                }
                return Err(err);
            }
        };
        tracing::info!(id = %req.id, kind = guest.kind(), "container created");
        let container = Arc::new(Container::new(
            req.id.clone(),
            bundle,
            spec,
            stdio,
            req.terminal,
            mounted,
            guest,
        ));
        let mut table = self.lock()?;
        if table.contains_key(&req.id) {
            let _ = container.cleanup();
            return Err(ShimError::AlreadyExists(req.id.clone()));
        }
        table.insert(req.id.clone(), container.clone());
        Ok(container)
    }

    fn exit_event(container: &Container, status: &ExitStatus) -> TaskExit {
        TaskExit {
            container_id: container.id.clone(),
            id: container.id.clone(),
            pid: shim_pid(),
            exit_status: status.code,
            exited_at: Some(timestamp(status.at)).into(),
            ..Default::default()
        }
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
                    pid: shim_pid(),
                    ..Default::default()
                }),
            )
            .await;
        Ok(api::CreateTaskResponse {
            pid: shim_pid(),
            ..Default::default()
        })
    }

    async fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        Self::no_exec(&req.id, &req.exec_id)?;
        let container = self.get(&req.id)?;
        let events = self.events.clone();
        container.start(move |container, status| {
            tokio::spawn(async move {
                events
                    .publish(
                        topics::TASK_EXIT_EVENT_TOPIC,
                        Box::new(TaskService::exit_event(&container, &status)),
                    )
                    .await;
            });
        })?;
        self.events
            .publish(
                topics::TASK_START_EVENT_TOPIC,
                Box::new(TaskStart {
                    container_id: container.id.clone(),
                    pid: shim_pid(),
                    ..Default::default()
                }),
            )
            .await;
        Ok(api::StartResponse {
            pid: shim_pid(),
            ..Default::default()
        })
    }

    async fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        Self::no_exec(&req.id, &req.exec_id)?;
        let container = self.get(&req.id)?;
        let mut resp = api::StateResponse {
            id: container.id.clone(),
            bundle: container.bundle.display().to_string(),
            pid: shim_pid(),
            terminal: container.terminal,
            ..Default::default()
        };
        resp.stdin = path_string(&container.stdio.stdin);
        resp.stdout = path_string(&container.stdio.stdout);
        resp.stderr = path_string(&container.stdio.stderr);
        match container.phase() {
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
        Self::no_exec(&req.id, &req.exec_id)?;
        let container = self.get(&req.id)?;
        let status = container.wait().await;
        Ok(api::WaitResponse {
            exit_status: status.code,
            exited_at: Some(timestamp(status.at)).into(),
            ..Default::default()
        })
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        Self::no_exec(&req.id, &req.exec_id)?;
        let container = self.get(&req.id)?;
        tracing::info!(id = %req.id, signal = req.signal, "kill");
        if let Some(status) = container.kill(req.signal)? {
            self.events
                .publish(
                    topics::TASK_EXIT_EVENT_TOPIC,
                    Box::new(TaskService::exit_event(&container, &status)),
                )
                .await;
        }
        Ok(api::Empty::new())
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        Self::no_exec(&req.id, &req.exec_id)?;
        let container = self.get(&req.id)?;
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
        container.cleanup()?;
        self.lock()?.remove(&req.id);
        self.events
            .publish(
                topics::TASK_DELETE_EVENT_TOPIC,
                Box::new(TaskDelete {
                    container_id: container.id.clone(),
                    id: container.id.clone(),
                    pid: shim_pid(),
                    exit_status: status.code,
                    exited_at: Some(timestamp(status.at)).into(),
                    ..Default::default()
                }),
            )
            .await;
        Ok(api::DeleteResponse {
            pid: shim_pid(),
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
        if container.phase() == Phase::Running {
            resp.processes.push(api::ProcessInfo {
                pid: shim_pid(),
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
        let any = container
            .usage
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
        self.get(&req.id)?;
        Ok(api::ConnectResponse {
            shim_pid: shim_pid(),
            task_pid: shim_pid(),
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
            tracing::info!("no containers left: shim exits");
            self.exit.signal();
        }
        Ok(api::Empty::new())
    }

    async fn exec(
        &self,
        _ctx: &TtrpcContext,
        req: api::ExecProcessRequest,
    ) -> TtrpcResult<api::Empty> {
        self.get(&req.id)?;
        Err(unsupported(&req.id, "exec"))
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
        self.get(&req.id)?;
        Err(unsupported(&req.id, "update of resources"))
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
        // containerd asks this when its client's stdin ends; the guest sees the end of input
        // through the stdin FIFO itself once containerd closes its writing end.
        Self::no_exec(&req.id, &req.exec_id)?;
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

fn path_string(target: &crate::io::StdioTarget) -> String {
    match target {
        crate::io::StdioTarget::None => String::new(),
        crate::io::StdioTarget::Path(p) => p.display().to_string(),
    }
}
