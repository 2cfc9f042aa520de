//! The Task service with stub containers and a recording event sink: every method, the exec
//! paths, the order of events and the error codes, without root or containerd.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use containerd_shim::protos::api;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::shim_async::Task;
use containerd_shim::protos::ttrpc::r#async::TtrpcContext;
use containerd_shim::protos::ttrpc::{self, Code};

use super::TaskService;
use crate::container::execs::Execs;
use crate::container::factory::ContainerFactory;
use crate::container::{
    Container, ContainerKind, CreateRequest, ExecRequest, Lifecycle, Phase, Process, ProcessInfo,
    ResourceUse, WindowSize,
};
use crate::containerd::events::RecordedEvents;
use crate::containerd::shutdown::Shutdown;
use crate::error::ShimError;
use crate::host::stdio::StdioPaths;
use crate::signal::Signal;
use crate::wasm::exit::ExitStatus;

const CREATE: &str = "/tasks/create";
const START: &str = "/tasks/start";
const EXIT: &str = "/tasks/exit";
const DELETE: &str = "/tasks/delete";
const EXEC_ADDED: &str = "/tasks/exec-added";
const EXEC_STARTED: &str = "/tasks/exec-started";

/// A process whose life the test drives: it exits when killed, or at once when started if
/// `exits_at_start` says so.
struct StubProcess {
    pid: u32,
    life: Lifecycle,
    exits_at_start: Option<u32>,
    resized: std::sync::Mutex<Option<WindowSize>>,
}

impl StubProcess {
    fn new(pid: u32, exits_at_start: Option<u32>) -> Self {
        StubProcess {
            pid,
            life: Lifecycle::default(),
            exits_at_start,
            resized: std::sync::Mutex::new(None),
        }
    }
}

#[async_trait]
impl Process for StubProcess {
    fn info(&self) -> ProcessInfo {
        ProcessInfo {
            pid: self.pid,
            stdio: StdioPaths::parse("", "", "").expect("empty stdio"),
            terminal: false,
        }
    }

    fn phase(&self) -> Phase {
        self.life.phase()
    }

    async fn start(&self) -> Result<u32, ShimError> {
        self.life.begin("stub")?;
        if let Some(code) = self.exits_at_start {
            self.life.finish(ExitStatus::new(code, None));
            // Give the exit watch every chance to overtake the TaskStart.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(self.pid)
    }

    async fn kill(&self, signal: Signal, _all: bool) -> Result<(), ShimError> {
        if self.life.stopped().is_some() {
            return Err(ShimError::ProcessFinished("stub".into()));
        }
        if !signal.leaves_running() {
            self.life.finish(ExitStatus::killed(signal));
        }
        Ok(())
    }

    async fn wait(&self) -> ExitStatus {
        self.life.wait().await
    }

    async fn delete(&self) -> Result<ExitStatus, ShimError> {
        match self.phase() {
            Phase::Running | Phase::Paused => Err(ShimError::FailedPrecondition {
                id: "stub".into(),
                what: "cannot delete a running process; kill it first".into(),
            }),
            Phase::Stopped(status) => Ok(status),
            Phase::Created => {
                self.life.finish(ExitStatus::killed(Signal::KILL));
                Ok(self.wait().await)
            }
        }
    }

    async fn resize_pty(&self, size: WindowSize) -> Result<(), ShimError> {
        *self.resized.lock().expect("lock") = Some(size);
        Ok(())
    }

    async fn close_io(&self) -> Result<(), ShimError> {
        Ok(())
    }
}

struct StubContainer {
    id: String,
    kind: ContainerKind,
    init: Arc<StubProcess>,
    execs: Execs<StubProcess>,
    next_pid: AtomicU64,
    memory_limit: AtomicU64,
}

fn refuse(container: &StubContainer, what: &'static str) -> Result<(), ShimError> {
    if container.kind.is_wasm() {
        return Err(ShimError::NotSupportedForWasm {
            id: container.id.clone(),
            what,
        });
    }
    Ok(())
}

#[async_trait]
impl Container for StubContainer {
    fn id(&self) -> &str {
        &self.id
    }

    fn bundle(&self) -> &std::path::Path {
        std::path::Path::new("/bundle")
    }

    fn kind(&self) -> ContainerKind {
        self.kind
    }

    fn process(&self, exec_id: Option<&str>) -> Result<Arc<dyn Process>, ShimError> {
        match exec_id {
            None => Ok(self.init.clone()),
            Some(exec) => Ok(self.execs.get(&self.id, exec)?),
        }
    }

    async fn exec(&self, request: ExecRequest) -> Result<Arc<dyn Process>, ShimError> {
        refuse(self, "exec")?;
        let pid = self.next_pid.fetch_add(1, Ordering::Relaxed) as u32;
        let process = Arc::new(StubProcess::new(pid, None));
        self.execs
            .add(&self.id, &request.exec_id, process.clone())?;
        Ok(process)
    }

    fn remove_exec(&self, exec_id: &str) -> Result<(), ShimError> {
        self.execs.remove(&self.id, exec_id).map(|_| ())
    }

    async fn pause(&self) -> Result<(), ShimError> {
        refuse(self, "pause")?;
        self.init.life.pause(&self.id)
    }

    async fn resume(&self) -> Result<(), ShimError> {
        refuse(self, "resume")?;
        self.init.life.resume(&self.id)
    }

    async fn update(&self, resources: &oci_spec::runtime::LinuxResources) -> Result<(), ShimError> {
        refuse(self, "update of resources")?;
        let limit = resources
            .memory()
            .as_ref()
            .and_then(|m| m.limit())
            .unwrap_or(0);
        self.memory_limit.store(limit as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn stats(&self) -> Result<ResourceUse, ShimError> {
        Ok(ResourceUse {
            cpu_nanos: 5_000,
            memory_bytes: 7 << 20,
            memory_peak_bytes: 9 << 20,
            memory_limit: Some(64 << 20),
        })
    }

    async fn pids(&self) -> Result<Vec<u32>, ShimError> {
        Ok(vec![self.init.pid])
    }
}

/// Makes containers by id: `bad-*` fail, `wasm-*` are Wasm, `fast-*` exit as they start.
struct StubFactory;

#[async_trait]
impl ContainerFactory for StubFactory {
    async fn create(&self, request: CreateRequest) -> Result<Arc<dyn Container>, ShimError> {
        if request.id.starts_with("bad") {
            return Err(ShimError::InvalidArgument(format!(
                "{} is not a Wasm module",
                request.id
            )));
        }
        let kind = if request.id.starts_with("wasm") {
            ContainerKind::WasmCommand
        } else {
            ContainerKind::Native
        };
        let exits = request.id.starts_with("fast").then_some(0);
        Ok(Arc::new(StubContainer {
            id: request.id,
            kind,
            init: Arc::new(StubProcess::new(100, exits)),
            execs: Execs::default(),
            next_pid: AtomicU64::new(200),
            memory_limit: AtomicU64::new(0),
        }))
    }
}

struct Fixture {
    service: TaskService<StubFactory>,
    events: Arc<RecordedEvents>,
    shutdown: Arc<Shutdown>,
}

fn fixture() -> Fixture {
    let events = Arc::new(RecordedEvents::default());
    let shutdown = Arc::new(Shutdown::default());
    let service = TaskService::new(StubFactory, events.clone(), shutdown.clone());
    Fixture {
        service,
        events,
        shutdown,
    }
}

fn ctx() -> TtrpcContext {
    TtrpcContext::default()
}

fn code<T: std::fmt::Debug>(result: ttrpc::Result<T>) -> (Code, String) {
    match result {
        Err(ttrpc::Error::RpcStatus(status)) => (status.code(), status.message().to_string()),
        other => panic!("expected an error status, got {other:?}"),
    }
}

fn topics(events: &RecordedEvents) -> Vec<(&'static str, String, String)> {
    events.summary()
}

/// Waits until the recorded events include `topic` for `id` (exit events are published by a
/// task of their own).
async fn until_event(events: &RecordedEvents, topic: &str, id: &str) {
    for _ in 0..500 {
        if events
            .summary()
            .iter()
            .any(|(t, c, _)| *t == topic && c == id)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("no {topic} for {id}: {:?}", events.summary());
}

impl Fixture {
    async fn create(&self, id: &str) -> ttrpc::Result<api::CreateTaskResponse> {
        let req = api::CreateTaskRequest {
            id: id.into(),
            bundle: format!("/run/bundles/{id}"),
            ..Default::default()
        };
        self.service.create(&ctx(), req).await
    }

    async fn start(&self, id: &str, exec: &str) -> ttrpc::Result<api::StartResponse> {
        let req = api::StartRequest {
            id: id.into(),
            exec_id: exec.into(),
            ..Default::default()
        };
        self.service.start(&ctx(), req).await
    }

    async fn kill(&self, id: &str, exec: &str, signal: u32) -> ttrpc::Result<api::Empty> {
        let req = api::KillRequest {
            id: id.into(),
            exec_id: exec.into(),
            signal,
            ..Default::default()
        };
        self.service.kill(&ctx(), req).await
    }

    async fn wait(&self, id: &str, exec: &str) -> ttrpc::Result<api::WaitResponse> {
        let req = api::WaitRequest {
            id: id.into(),
            exec_id: exec.into(),
            ..Default::default()
        };
        self.service.wait(&ctx(), req).await
    }

    async fn delete(&self, id: &str, exec: &str) -> ttrpc::Result<api::DeleteResponse> {
        let req = api::DeleteRequest {
            id: id.into(),
            exec_id: exec.into(),
            ..Default::default()
        };
        self.service.delete(&ctx(), req).await
    }

    async fn state(&self, id: &str, exec: &str) -> ttrpc::Result<api::StateResponse> {
        let req = api::StateRequest {
            id: id.into(),
            exec_id: exec.into(),
            ..Default::default()
        };
        self.service.state(&ctx(), req).await
    }

    async fn exec(&self, id: &str, exec: &str) -> ttrpc::Result<api::Empty> {
        let req = api::ExecProcessRequest {
            id: id.into(),
            exec_id: exec.into(),
            spec: Some(Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
                value: br#"{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}}"#.to_vec(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        self.service.exec(&ctx(), req).await
    }
}

#[tokio::test]
async fn a_container_lives_created_running_stopped_deleted_with_its_events_in_order() {
    let f = fixture();
    assert_eq!(f.create("c1").await.expect("create").pid, 100);
    let state = f.state("c1", "").await.expect("state");
    assert_eq!(state.status.enum_value(), Ok(api::Status::CREATED));
    assert_eq!(state.bundle, "/bundle");
    assert_eq!(f.start("c1", "").await.expect("start").pid, 100);
    let state = f.state("c1", "").await.expect("state");
    assert_eq!(state.status.enum_value(), Ok(api::Status::RUNNING));
    f.kill("c1", "", 9).await.expect("kill");
    assert_eq!(f.wait("c1", "").await.expect("wait").exit_status, 137);
    let state = f.state("c1", "").await.expect("state");
    assert_eq!(
        (state.status.enum_value(), state.exit_status),
        (Ok(api::Status::STOPPED), 137)
    );
    let deleted = f.delete("c1", "").await.expect("delete");
    assert_eq!((deleted.pid, deleted.exit_status), (100, 137));
    let ids: Vec<&str> = topics(&f.events).iter().map(|(t, _, _)| *t).collect();
    assert_eq!(ids, [CREATE, START, EXIT, DELETE]);
    assert_eq!(code(f.state("c1", "").await).0, Code::NOT_FOUND);
}

#[tokio::test]
async fn an_exit_during_start_is_published_after_the_start() {
    let f = fixture();
    f.create("fast-1").await.expect("create");
    f.start("fast-1", "").await.expect("start");
    until_event(&f.events, EXIT, "fast-1").await;
    let ids: Vec<&str> = topics(&f.events).iter().map(|(t, _, _)| *t).collect();
    assert_eq!(ids, [CREATE, START, EXIT]);
}

#[tokio::test]
async fn deleting_a_created_container_publishes_its_exit_before_its_delete() {
    let f = fixture();
    f.create("c1").await.expect("create");
    let deleted = f.delete("c1", "").await.expect("delete");
    assert_eq!(deleted.exit_status, 137);
    let ids: Vec<&str> = topics(&f.events).iter().map(|(t, _, _)| *t).collect();
    assert_eq!(ids, [CREATE, EXIT, DELETE]);
}

#[tokio::test]
async fn exec_processes_start_signal_wait_and_go_without_a_task_delete() {
    let f = fixture();
    f.create("c1").await.expect("create");
    f.start("c1", "").await.expect("start");
    f.exec("c1", "e1").await.expect("exec");
    assert_eq!(
        code(f.exec("c1", "e1").await).0,
        Code::ALREADY_EXISTS,
        "an exec id is used once"
    );
    let state = f.state("c1", "e1").await.expect("state");
    assert_eq!(
        (state.status.enum_value(), state.exec_id.as_str()),
        (Ok(api::Status::CREATED), "e1")
    );
    assert_eq!(f.start("c1", "e1").await.expect("start exec").pid, 200);
    f.kill("c1", "e1", 15).await.expect("kill exec");
    assert_eq!(f.wait("c1", "e1").await.expect("wait").exit_status, 143);
    f.delete("c1", "e1").await.expect("delete exec");
    assert_eq!(code(f.state("c1", "e1").await).0, Code::NOT_FOUND);
    let state = f.state("c1", "").await.expect("init state");
    assert_eq!(state.status.enum_value(), Ok(api::Status::RUNNING));
    let summary = topics(&f.events);
    let exec_events: Vec<&str> = summary
        .iter()
        .filter(|(_, _, exec)| exec == "e1")
        .map(|(t, _, _)| *t)
        .collect();
    assert_eq!(exec_events, [EXEC_ADDED, EXEC_STARTED, EXIT]);
    assert!(!summary.iter().any(|(t, _, _)| *t == DELETE));
}

#[tokio::test]
async fn a_wasm_container_refuses_exec_pause_resume_and_update_by_name() {
    let f = fixture();
    f.create("wasm-1").await.expect("create");
    let (status, message) = code(f.exec("wasm-1", "e1").await);
    assert_eq!(status, Code::UNIMPLEMENTED);
    assert_eq!(
        message,
        "exec is not supported for Wasm containers (container wasm-1)"
    );
    let pause = f
        .service
        .pause(
            &ctx(),
            api::PauseRequest {
                id: "wasm-1".into(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(code(pause).0, Code::UNIMPLEMENTED);
    let update = f.service.update(&ctx(), update_request("wasm-1")).await;
    assert_eq!(code(update).0, Code::UNIMPLEMENTED);
}

fn update_request(id: &str) -> api::UpdateTaskRequest {
    api::UpdateTaskRequest {
        id: id.into(),
        resources: Some(Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
            value: br#"{"memory":{"limit":33554432}}"#.to_vec(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn native_containers_pause_resume_and_take_updates() {
    let f = fixture();
    f.create("c1").await.expect("create");
    f.start("c1", "").await.expect("start");
    let pause = api::PauseRequest {
        id: "c1".into(),
        ..Default::default()
    };
    f.service.pause(&ctx(), pause.clone()).await.expect("pause");
    let state = f.state("c1", "").await.expect("state");
    assert_eq!(state.status.enum_value(), Ok(api::Status::PAUSED));
    assert_eq!(
        code(f.service.pause(&ctx(), pause).await).0,
        Code::FAILED_PRECONDITION
    );
    let resume = api::ResumeRequest {
        id: "c1".into(),
        ..Default::default()
    };
    f.service.resume(&ctx(), resume).await.expect("resume");
    f.service
        .update(&ctx(), update_request("c1"))
        .await
        .expect("update");
    let summary: Vec<&str> = topics(&f.events).iter().map(|(t, _, _)| *t).collect();
    assert_eq!(summary, [CREATE, START, "/tasks/paused", "/tasks/resumed"]);
}

#[tokio::test]
async fn errors_carry_containerds_codes() {
    let f = fixture();
    f.create("c1").await.expect("create");
    assert_eq!(code(f.create("c1").await).0, Code::ALREADY_EXISTS);
    assert_eq!(code(f.start("nope", "").await).0, Code::NOT_FOUND);
    let (status, message) = code(f.create("bad-1").await);
    assert_eq!(status, Code::INVALID_ARGUMENT);
    assert!(message.contains("not a Wasm module"), "{message}");
    let (status, message) = code(f.kill("c1", "", 99).await);
    assert_eq!(status, Code::INVALID_ARGUMENT);
    assert!(message.contains("signal 99 is not a signal"), "{message}");
    f.start("c1", "").await.expect("start");
    assert_eq!(code(f.start("c1", "").await).0, Code::FAILED_PRECONDITION);
    assert_eq!(code(f.delete("c1", "").await).0, Code::FAILED_PRECONDITION);
    f.kill("c1", "", 9).await.expect("kill");
    f.wait("c1", "").await.expect("wait");
    assert_eq!(code(f.kill("c1", "", 9).await).0, Code::NOT_FOUND);
    let checkpoint = api::CheckpointTaskRequest {
        id: "c1".into(),
        ..Default::default()
    };
    assert_eq!(
        code(f.service.checkpoint(&ctx(), checkpoint).await).0,
        Code::UNIMPLEMENTED
    );
}

#[tokio::test]
async fn shutdown_waits_for_the_last_container_and_then_refuses_new_ones() {
    let f = fixture();
    f.create("c1").await.expect("create");
    let shutdown = api::ShutdownRequest::default();
    f.service
        .shutdown(&ctx(), shutdown.clone())
        .await
        .expect("shutdown");
    assert!(!f.shutdown.is_requested(), "a container is left");
    f.delete("c1", "").await.expect("delete");
    f.service
        .shutdown(&ctx(), shutdown)
        .await
        .expect("shutdown");
    assert!(f.shutdown.is_requested());
    assert_eq!(code(f.create("c2").await).0, Code::FAILED_PRECONDITION);
}

#[tokio::test]
async fn pids_stats_connect_resize_and_close_io_answer_from_the_container() {
    let f = fixture();
    f.create("c1").await.expect("create");
    let pids = f
        .service
        .pids(
            &ctx(),
            api::PidsRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .await
        .expect("pids");
    assert_eq!(
        pids.processes.iter().map(|p| p.pid).collect::<Vec<_>>(),
        [100]
    );
    let stats = f
        .service
        .stats(
            &ctx(),
            api::StatsRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .await
        .expect("stats");
    assert_eq!(stats.stats.type_url, crate::host::stats::METRICS_TYPE_URL);
    let connect = f
        .service
        .connect(
            &ctx(),
            api::ConnectRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .await
        .expect("connect");
    assert_eq!(
        (connect.shim_pid, connect.task_pid),
        (std::process::id(), 100)
    );
    let resize = api::ResizePtyRequest {
        id: "c1".into(),
        width: 120,
        height: 40,
        ..Default::default()
    };
    f.service.resize_pty(&ctx(), resize).await.expect("resize");
    let close = api::CloseIORequest {
        id: "c1".into(),
        ..Default::default()
    };
    f.service.close_io(&ctx(), close).await.expect("close io");
}
