//! containerd's Task service for the containers of one shim process (one pod). It translates
//! each ttrpc request into a call on a [`Container`] or [`Process`] and raises the task events;
//! what a container is and how it runs is decided by the [`ContainerFactory`] at Create.

use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::TtrpcResult;
use containerd_shim::protos::api;
use containerd_shim::protos::shim_async::Task;
use containerd_shim::protos::ttrpc::r#async::TtrpcContext;

use crate::container::factory::ContainerFactory;
use crate::container::{Process, WindowSize};
use crate::containerd::container_table::{ContainerTable, Entry};
use crate::containerd::convert::{self, exec_id};
use crate::containerd::events::{EventSink, TaskEvent};
use crate::containerd::exit_events::ExitWatch;
use crate::containerd::shutdown::Shutdown;
use crate::error::ShimError;
use crate::signal::Signal;

pub struct TaskService<F> {
    factory: F,
    events: Arc<dyn EventSink>,
    containers: ContainerTable,
    shutdown: Arc<Shutdown>,
}

impl<F: ContainerFactory> TaskService<F> {
    pub fn new(factory: F, events: Arc<dyn EventSink>, shutdown: Arc<Shutdown>) -> Self {
        let containers = ContainerTable::default();
        TaskService {
            factory,
            events,
            containers,
            shutdown,
        }
    }

    /// The process a request names, with its container's entry.
    fn process(&self, id: &str, exec: &str) -> Result<(Arc<Entry>, Arc<dyn Process>), ShimError> {
        self.containers.process(id, exec_id(exec))
    }

    fn watch(&self, container: &str, exec: Option<&str>, process: Arc<dyn Process>) -> ExitWatch {
        let exec = exec.map(str::to_string);
        ExitWatch::spawn(process, self.events.clone(), container.to_string(), exec)
    }

    async fn create_container(&self, req: &api::CreateTaskRequest) -> Result<u32, ShimError> {
        if self.shutdown.is_requested() {
            return Err(ShimError::ShuttingDown);
        }
        if self.containers.contains(&req.id)? {
            return Err(ShimError::AlreadyExists(req.id.clone()));
        }
        let container = self.factory.create(convert::create_request(req)?).await?;
        let init = container.process(None)?;
        let pid = init.info().pid;
        let added = self.containers.insert_new(&req.id, || {
            self.events
                .send(TaskEvent::Create(convert::task_create(req, pid)));
            Entry::new(container.clone(), self.watch(&req.id, None, init.clone()))
        })?;
        if !added {
            let _ = init.delete().await;
            return Err(ShimError::AlreadyExists(req.id.clone()));
        }
        tracing::info!(id = %req.id, kind = %container.kind(), "container created");
        Ok(pid)
    }
}

#[async_trait]
impl<F: ContainerFactory> Task for TaskService<F> {
    #[tracing::instrument(level = "debug", skip_all, fields(id = %req.id))]
    async fn create(
        &self,
        _: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        crate::host::heap::note_activity();
        let created = self.create_container(&req).await;
        let pid = created.inspect_err(|err| tracing::warn!(id = %req.id, %err, "create failed"))?;
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(id = %req.id, exec = %req.exec_id))]
    async fn start(
        &self,
        _: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        crate::host::heap::note_activity();
        let (entry, process) = self.process(&req.id, &req.exec_id)?;
        let watch = entry.exit_watch(exec_id(&req.exec_id))?;
        let _start_in_flight = watch.hold();
        let pid = process.start().await?;
        self.events
            .send(convert::task_started(&req.id, exec_id(&req.exec_id), pid));
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(id = %req.id, exec = %req.exec_id))]
    async fn state(
        &self,
        _: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let (entry, process) = self.process(&req.id, &req.exec_id)?;
        Ok(convert::state_response(
            &req,
            entry.container.bundle(),
            process.as_ref(),
        ))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(id = %req.id, exec = %req.exec_id))]
    async fn wait(
        &self,
        _: &TtrpcContext,
        req: api::WaitRequest,
    ) -> TtrpcResult<api::WaitResponse> {
        let (_, process) = self.process(&req.id, &req.exec_id)?;
        Ok(convert::wait_response(&process.wait().await))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(id = %req.id, exec = %req.exec_id, signal = req.signal))]
    async fn kill(&self, _: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        let signal = Signal::from_request(req.signal)?;
        let (_, process) = self.process(&req.id, &req.exec_id)?;
        process.kill(signal, req.all).await?;
        Ok(api::Empty::new())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(id = %req.id, exec = %req.exec_id))]
    async fn delete(
        &self,
        _: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        crate::host::heap::note_activity();
        let (entry, process) = self.process(&req.id, &req.exec_id)?;
        let status = process.delete().await?;
        entry.exit_watch(exec_id(&req.exec_id))?.published().await;
        let pid = process.info().pid;
        match exec_id(&req.exec_id) {
            Some(exec) => entry.remove_exec(exec)?,
            None => {
                self.containers.remove(&req.id)?;
                self.events.send(TaskEvent::Delete(convert::task_delete(
                    &req.id, pid, &status,
                )));
            }
        }
        Ok(convert::delete_response(pid, &status))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(id = %req.id))]
    async fn pids(
        &self,
        _: &TtrpcContext,
        req: api::PidsRequest,
    ) -> TtrpcResult<api::PidsResponse> {
        let pids = self.containers.get(&req.id)?.container.pids().await?;
        Ok(convert::pids_response(pids))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(id = %req.id))]
    async fn stats(
        &self,
        _: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let usage = self.containers.get(&req.id)?.container.stats().await?;
        let stats = crate::host::stats::metrics_any(&usage)?;
        Ok(api::StatsResponse {
            stats: Some(stats).into(),
            ..Default::default()
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(id = %req.id))]
    async fn connect(
        &self,
        _: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let (_, init) = self.process(&req.id, "")?;
        Ok(convert::connect_response(init.info().pid))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(now = req.now))]
    async fn shutdown(
        &self,
        _: &TtrpcContext,
        req: api::ShutdownRequest,
    ) -> TtrpcResult<api::Empty> {
        if req.now || self.containers.is_empty()? {
            tracing::info!(now = req.now, "shutdown: no containers left");
            // Out of the pod's cgroup before the answer: the kubelet removes the pod's cgroup
            // as soon as its RemovePodSandbox returns, which may be before this process exits.
            crate::host::shim_cgroup::leave_pod();
            self.shutdown.request();
        }
        Ok(api::Empty::new())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(id = %req.id, exec = %req.exec_id))]
    async fn exec(
        &self,
        _: &TtrpcContext,
        req: api::ExecProcessRequest,
    ) -> TtrpcResult<api::Empty> {
        let entry = self.containers.get(&req.id)?;
        let process = entry.container.exec(convert::exec_request(&req)?).await?;
        entry.watch_exec(
            &req.exec_id,
            self.watch(&req.id, Some(&req.exec_id), process),
        )?;
        self.events.send(convert::exec_added(&req.id, &req.exec_id));
        Ok(api::Empty::new())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(id = %req.id))]
    async fn pause(&self, _: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        self.containers.get(&req.id)?.container.pause().await?;
        self.events.send(convert::paused(&req.id));
        Ok(api::Empty::new())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(id = %req.id))]
    async fn resume(&self, _: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<api::Empty> {
        self.containers.get(&req.id)?.container.resume().await?;
        self.events.send(convert::resumed(&req.id));
        Ok(api::Empty::new())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(id = %req.id))]
    async fn update(
        &self,
        _: &TtrpcContext,
        req: api::UpdateTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        let entry = self.containers.get(&req.id)?;
        entry.container.update(&convert::resources(&req)?).await?;
        Ok(api::Empty::new())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(id = %req.id, exec = %req.exec_id))]
    async fn resize_pty(
        &self,
        _: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        let (_, process) = self.process(&req.id, &req.exec_id)?;
        process
            .resize_pty(WindowSize::clamped(req.width, req.height))
            .await?;
        Ok(api::Empty::new())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(id = %req.id, exec = %req.exec_id))]
    async fn close_io(
        &self,
        _: &TtrpcContext,
        req: api::CloseIORequest,
    ) -> TtrpcResult<api::Empty> {
        let (_, process) = self.process(&req.id, &req.exec_id)?;
        process.close_io().await?;
        Ok(api::Empty::new())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(id = %req.id))]
    async fn checkpoint(
        &self,
        _: &TtrpcContext,
        req: api::CheckpointTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        self.containers.get(&req.id)?;
        let what = "checkpoint";
        Err(ShimError::NotSupported {
            id: req.id.clone(),
            what,
        }
        .into())
    }
}

#[cfg(test)]
#[path = "task_service_tests.rs"]
mod tests;
