//! containerd 1.7's side of the shim protocol. The `containerd-shim` crate (0.12) answers
//! `start` with task API version 3 and serves only `containerd.task.v3.Task`; containerd 1.7
//! speaks version 2 (it says so in `MAX_SHIM_VERSION=2`) and refuses such a shim. For 1.7 only,
//! Spore runs this bootstrap instead: `start` answers version 2, and the same task service is
//! served under both names (the v2 and v3 task APIs have the same messages). containerd 2.x
//! keeps the crate's bootstrap.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use containerd_shim::asynchronous::Shim;
use containerd_shim::asynchronous::publisher::RemotePublisher;
use containerd_shim::monitor::monitor_notify_by_pid;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim_async::{Task, create_task};
use containerd_shim::protos::ttrpc::r#async::transport::Listener;
use containerd_shim::protos::ttrpc::r#async::{Client, Server};
use containerd_shim::{Config, Flags, StartOpts};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{SignalKind, signal};

use crate::shim::SporeShim;

const TASK_V3: &str = "containerd.task.v3.Task";
const TASK_V2: &str = "containerd.task.v2.Task";

/// Whether containerd asked for a shim of task API version 2 or older.
pub fn wanted(max_shim_version: Option<&str>) -> bool {
    max_shim_version
        .and_then(|v| v.trim().parse::<u32>().ok())
        .is_some_and(|v| v < 3)
}

/// The shim's `main` for containerd 1.7: start, delete or serve.
pub async fn run() -> Result<(), String> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let flags = containerd_shim::parse(args.get(1..).unwrap_or_default())
        .map_err(|e| format!("parsing the command line: {e}"))?;
    let mut config = Config {
        no_setup_logger: true,
        ..Config::default()
    };
    let mut shim = SporeShim::new(crate::RUNTIME_ID, &flags, &mut config).await;
    match flags.action.as_str() {
        "start" => {
            let opts = StartOpts {
                id: flags.id.clone(),
                publish_binary: flags.publish_binary.clone(),
                address: flags.address.clone(),
                ttrpc_address: std::env::var("TTRPC_ADDRESS").unwrap_or_default(),
                namespace: flags.namespace.clone(),
                debug: flags.debug,
                ..StartOpts::default()
            };
            let address = shim.start_shim(opts).await.map_err(|e| e.to_string())?;
            let reply = serde_json::json!({"version": 2, "address": address, "protocol": "ttrpc"});
            write_stdout(reply.to_string().as_bytes()).await
        }
        "delete" => {
            let response = shim.delete_shim().await.map_err(|e| e.to_string())?;
            let bytes = response.write_to_bytes().map_err(|e| e.to_string())?;
            write_stdout(&bytes).await
        }
        _ => serve(shim, &flags).await,
    }
}

async fn write_stdout(bytes: &[u8]) -> Result<(), String> {
    let mut stdout = tokio::io::stdout();
    stdout.write_all(bytes).await.map_err(|e| e.to_string())?;
    stdout.flush().await.map_err(|e| e.to_string())
}

async fn serve(mut shim: SporeShim, flags: &Flags) -> Result<(), String> {
    if flags.socket.is_empty() {
        return Err("the shim socket is not set (-socket)".into());
    }
    // Container processes runc forks become our children when their parent exits.
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only sets a flag on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    tokio::spawn(handle_signals());

    let path = flags
        .socket
        .strip_prefix("unix://")
        .unwrap_or(&flags.socket)
        .to_string();
    let listener = match std::os::unix::net::UnixListener::bind(&path) {
        Ok(listener) => listener,
        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
            // Another container of this pod started the shim already: hand over its address.
            if socket_answers(&flags.socket).await {
                return tokio::fs::write("address", &flags.socket)
                    .await
                    .map_err(|e| format!("writing the address file: {e}"));
            }
            let _ = std::fs::remove_file(&path);
            std::os::unix::net::UnixListener::bind(&path)
                .map_err(|e| format!("listening on {path}: {e}"))?
        }
        Err(err) => return Err(format!("listening on {path}: {err}")),
    };
    let ttrpc_address = std::env::var("TTRPC_ADDRESS")
        .map_err(|_| "the TTRPC_ADDRESS environment variable is not set".to_string())?;
    let publisher = RemotePublisher::new(&ttrpc_address)
        .await
        .map_err(|e| format!("connecting to containerd's events at {ttrpc_address}: {e}"))?;
    let task: Arc<dyn Task + Send + Sync> = Arc::new(shim.create_task_service(publisher).await);
    let mut services = create_task(task.clone());
    if let Some(service) = create_task(task).remove(TASK_V3) {
        services.insert(TASK_V2.to_string(), service);
    }
    let listener = Listener::try_from(listener).map_err(|e| format!("ttrpc listener: {e}"))?;
    let mut server = Server::new()
        .add_listener(listener)
        .register_service(services);
    server
        .start()
        .await
        .map_err(|e| format!("starting the ttrpc server: {e}"))?;
    // containerd's `start` waits for our stdout to close: the server is up.
    // SAFETY: dup2 of two standard descriptors.
    unsafe { libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) };
    shim.wait().await;
    let _ = server.shutdown().await;
    let _ = std::fs::remove_file(&path);
    Ok(())
}

async fn socket_answers(address: &str) -> bool {
    for _ in 0..5 {
        if Client::connect(address).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Reaps children and reports their exits on the crate's monitor (which `reaper::Exits`
/// listens to); SIGTERM, SIGINT and SIGPIPE must not end the shim.
async fn handle_signals() {
    let (Ok(mut child), Ok(mut term), Ok(mut int), Ok(mut pipe)) = (
        signal(SignalKind::child()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::pipe()),
    ) else {
        tracing::error!("cannot install the shim's signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = child.recv() => reap().await,
            _ = term.recv() => tracing::debug!("SIGTERM ignored"),
            _ = int.recv() => tracing::debug!("SIGINT ignored"),
            _ = pipe.recv() => {}
        }
    }
}

async fn reap() {
    loop {
        match waitpid(nix::unistd::Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                let _ = monitor_notify_by_pid(pid.as_raw(), code).await;
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                let _ = monitor_notify_by_pid(pid.as_raw(), 128 + sig as i32).await;
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_containerd_1_7s_version_2_takes_this_path() {
        assert!(wanted(Some("2")));
        assert!(!wanted(Some("3")));
        assert!(!wanted(None));
        assert!(!wanted(Some("garbage")));
    }
}
