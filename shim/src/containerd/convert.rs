//! Translation between containerd's Task API messages and the shim's own types: requests in,
//! responses and events out. No decisions are made here.

use std::time::SystemTime;

use containerd_shim::protos::api;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;

use crate::container::{CreateRequest, ExecRequest, Phase, Process};
use crate::containerd::events::TaskEvent;
use crate::error::ShimError;
use crate::host::rootfs::RootfsMount;
use crate::host::stdio::{StdioPaths, StdioTarget};
use crate::wasm::exit::ExitStatus;

/// containerd's empty exec id names the init process.
pub fn exec_id(id: &str) -> Option<&str> {
    (!id.is_empty()).then_some(id)
}

pub fn timestamp(at: SystemTime) -> Timestamp {
    Timestamp::from(at)
}

pub fn create_request(req: &api::CreateTaskRequest) -> Result<CreateRequest, ShimError> {
    Ok(CreateRequest {
        id: req.id.clone(),
        bundle: req.bundle.clone().into(),
        rootfs: req
            .rootfs
            .iter()
            .map(|m| RootfsMount {
                fs_type: m.type_.clone(),
                source: m.source.clone(),
                options: m.options.clone(),
            })
            .collect(),
        stdio: StdioPaths::parse(&req.stdin, &req.stdout, &req.stderr)?,
        terminal: req.terminal,
        options: req
            .options
            .as_ref()
            .map(|any| (any.type_url.clone(), any.value.clone())),
    })
}

/// The OCI document inside an `Any` (containerd sends runtime-spec types as JSON).
fn json_of<T: serde::de::DeserializeOwned>(any: Option<&Any>, what: &str) -> Result<T, ShimError> {
    let any = any.ok_or_else(|| ShimError::InvalidArgument(format!("{what}: missing")))?;
    serde_json::from_slice(&any.value)
        .map_err(|e| ShimError::InvalidArgument(format!("{what} ({}): {e}", any.type_url)))
}

pub fn exec_request(req: &api::ExecProcessRequest) -> Result<ExecRequest, ShimError> {
    Ok(ExecRequest {
        exec_id: req.exec_id.clone(),
        process: json_of(
            req.spec.as_ref(),
            &format!("exec {} process spec", req.exec_id),
        )?,
        stdio: StdioPaths::parse(&req.stdin, &req.stdout, &req.stderr)?,
        terminal: req.terminal,
    })
}

pub fn resources(
    req: &api::UpdateTaskRequest,
) -> Result<oci_spec::runtime::LinuxResources, ShimError> {
    json_of(
        req.resources.as_ref(),
        &format!("update of {}: resources", req.id),
    )
}

fn path_string(target: &StdioTarget) -> String {
    match target {
        StdioTarget::None => String::new(),
        StdioTarget::Path(p) => p.display().to_string(),
    }
}

pub fn state_response(
    req: &api::StateRequest,
    bundle: &std::path::Path,
    process: &dyn Process,
) -> api::StateResponse {
    let info = process.info();
    let mut resp = api::StateResponse {
        id: req.id.clone(),
        exec_id: req.exec_id.clone(),
        bundle: bundle.display().to_string(),
        pid: info.pid,
        terminal: info.terminal,
        stdin: path_string(&info.stdio.stdin),
        stdout: path_string(&info.stdio.stdout),
        stderr: path_string(&info.stdio.stderr),
        ..Default::default()
    };
    resp.status = match process.phase() {
        Phase::Created => api::Status::CREATED,
        Phase::Running => api::Status::RUNNING,
        Phase::Paused => api::Status::PAUSED,
        Phase::Stopped(status) => {
            resp.exit_status = status.code;
            resp.exited_at = Some(timestamp(status.at)).into();
            api::Status::STOPPED
        }
    }
    .into();
    resp
}

pub fn task_create(req: &api::CreateTaskRequest, pid: u32) -> TaskCreate {
    TaskCreate {
        container_id: req.id.clone(),
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
        pid,
        ..Default::default()
    }
}

pub fn task_exit(container: &str, exec: Option<&str>, pid: u32, status: &ExitStatus) -> TaskExit {
    TaskExit {
        container_id: container.to_string(),
        id: exec.unwrap_or(container).to_string(),
        pid,
        exit_status: status.code,
        exited_at: Some(timestamp(status.at)).into(),
        ..Default::default()
    }
}

pub fn task_delete(container: &str, pid: u32, status: &ExitStatus) -> TaskDelete {
    TaskDelete {
        container_id: container.to_string(),
        id: container.to_string(),
        pid,
        exit_status: status.code,
        exited_at: Some(timestamp(status.at)).into(),
        ..Default::default()
    }
}

/// TaskStart for the init process, TaskExecStarted for an exec.
pub fn task_started(container: &str, exec: Option<&str>, pid: u32) -> TaskEvent {
    let container_id = container.to_string();
    match exec {
        None => TaskEvent::Start(TaskStart {
            container_id,
            pid,
            ..Default::default()
        }),
        Some(exec) => TaskEvent::ExecStarted(TaskExecStarted {
            container_id,
            exec_id: exec.to_string(),
            pid,
            ..Default::default()
        }),
    }
}

pub fn exec_added(container: &str, exec: &str) -> TaskEvent {
    TaskEvent::ExecAdded(TaskExecAdded {
        container_id: container.to_string(),
        exec_id: exec.to_string(),
        ..Default::default()
    })
}

pub fn paused(container: &str) -> TaskEvent {
    TaskEvent::Paused(TaskPaused {
        container_id: container.to_string(),
        ..Default::default()
    })
}

pub fn resumed(container: &str) -> TaskEvent {
    TaskEvent::Resumed(TaskResumed {
        container_id: container.to_string(),
        ..Default::default()
    })
}

pub fn wait_response(status: &ExitStatus) -> api::WaitResponse {
    api::WaitResponse {
        exit_status: status.code,
        exited_at: Some(timestamp(status.at)).into(),
        ..Default::default()
    }
}

pub fn pids_response(pids: Vec<u32>) -> api::PidsResponse {
    api::PidsResponse {
        processes: pids
            .into_iter()
            .map(|pid| api::ProcessInfo {
                pid,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

pub fn connect_response(task_pid: u32) -> api::ConnectResponse {
    api::ConnectResponse {
        shim_pid: std::process::id(),
        task_pid,
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    }
}

pub fn delete_response(pid: u32, status: &ExitStatus) -> api::DeleteResponse {
    api::DeleteResponse {
        pid,
        exit_status: status.code,
        exited_at: Some(timestamp(status.at)).into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_exec_id_is_the_init_process() {
        assert_eq!(exec_id(""), None);
        assert_eq!(exec_id("e1"), Some("e1"));
    }

    #[test]
    fn an_exec_without_a_process_spec_is_refused_by_name() {
        let req = api::ExecProcessRequest {
            id: "c1".into(),
            exec_id: "e1".into(),
            ..Default::default()
        };
        let err = exec_request(&req).expect_err("no spec");
        assert_eq!(err.to_string(), "exec e1 process spec: missing");
    }

    #[test]
    fn update_resources_are_runtime_spec_json() {
        let req = api::UpdateTaskRequest {
            id: "c1".into(),
            resources: Some(Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
                value: br#"{"memory":{"limit":67108864},"cpu":{"shares":512}}"#.to_vec(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let resources = resources(&req).expect("parses");
        assert_eq!(
            resources.memory().as_ref().and_then(|m| m.limit()),
            Some(64 << 20)
        );
    }
}
