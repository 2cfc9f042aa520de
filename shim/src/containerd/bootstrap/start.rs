//! `containerd-shim-spore-v1 start`: containerd runs it in a new container's bundle and reads the
//! address of the shim that will serve the container from its stdout.
//!
//! One shim process serves a whole pod (containers are grouped by the CRI sandbox-id annotation).
//! `start` binds the pod's socket itself, so the address it answers is listening before it
//! answers; when a shim of the pod already listens there, it answers that shim's address. A new
//! serving process gets the listener as an inherited descriptor and says on a pipe when its
//! ttrpc server is up; `start` answers only then, and a serving process that fails before that
//! makes `start` fail with the reason it printed.

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};

use containerd_shim::Flags;

use super::READY_LINE;
use super::fork_server;
use crate::containerd::socket::{self, Bound, LISTEN_FD, LISTEN_FD_ENV, SocketError};
use crate::spec::ContainerSpec;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("finding the shim's own binary: {0}")]
    OwnBinary(std::io::Error),
    #[error("starting the shim's serving process: {0}")]
    Spawn(std::io::Error),
    #[error("the shim's serving process exited ({status}) before it was ready: {reason}")]
    ServerFailed { status: String, reason: String },
    #[error("writing the address file: {0}")]
    AddressFile(std::io::Error),
}

/// The shim process a container belongs in: its pod's (by the CRI sandbox-id annotation), or
/// its own when it has no pod.
pub fn grouping(container_id: &str, spec: Option<&ContainerSpec>) -> String {
    spec.and_then(ContainerSpec::sandbox_id)
        .map(str::to_string)
        .unwrap_or_else(|| container_id.to_string())
}

/// The task API version to answer: containerd says the newest it speaks in `MAX_SHIM_VERSION`
/// (2 on containerd 1.7 and 2.1); without it, 3.
pub fn task_api_version(max_shim_version: Option<&str>) -> u32 {
    match max_shim_version.and_then(|v| v.trim().parse::<u32>().ok()) {
        Some(v) if v < 3 => 2,
        _ => 3,
    }
}

/// What `start` prints for containerd.
pub fn reply(address: &str, version: u32) -> String {
    serde_json::json!({"version": version, "address": address, "protocol": "ttrpc"}).to_string()
}

/// Finds or starts the serving process for the container `flags.id` whose bundle is the current
/// directory; returns the address containerd must dial.
pub fn run(flags: &Flags) -> Result<String, StartError> {
    let spec = ContainerSpec::load(Path::new(".")).ok();
    let group = grouping(&flags.id, spec.as_ref());
    let address = socket::address(&flags.address, &flags.namespace, &group);
    match socket::bind(&address)? {
        Bound::Serving => {}
        Bound::New(listener) => {
            if let Err(err) = spawn_server(flags, &address, &listener) {
                socket::remove(&address);
                return Err(err);
            }
        }
    }
    std::fs::write("address", &address).map_err(StartError::AddressFile)?;
    Ok(address)
}

/// The serving process's arguments after the program: `-namespace .. -id .. -address ..
/// -socket ADDRESS`.
fn server_args(flags: &Flags, address: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "-namespace",
        &flags.namespace,
        "-id",
        &flags.id,
        "-address",
        &flags.address,
        "-socket",
        address,
    ]
    .map(str::to_owned)
    .to_vec();
    if !flags.publish_binary.is_empty() {
        args.extend(["-publish-binary".to_owned(), flags.publish_binary.clone()]);
    }
    if flags.debug {
        args.push("-debug".to_owned());
    }
    args
}

/// Starts the serving process with the listener as descriptor 3 in a process group of its own,
/// and waits for its ready line: forked by the fork server when it can be, else executed (and
/// told why, so that it says so in its log).
fn spawn_server(flags: &Flags, address: &str, listener: &UnixListener) -> Result<(), StartError> {
    let args = server_args(flags, address);
    let mut fallback = None;
    if fork_server::wanted() {
        match fork_from_server(flags, &args, listener) {
            Ok(started) => return started,
            Err(err) => fallback = Some(err.to_string()),
        }
    }
    exec_server(&args, listener, fallback.as_deref())
}

/// Has the fork server make the serving process; an error when it cannot (then `start`
/// executes the binary instead).
fn fork_from_server(
    flags: &Flags,
    args: &[String],
    listener: &UnixListener,
) -> Result<Result<(), StartError>, fork_server::ForkServerError> {
    let binary = std::env::current_exe().map_err(fork_server::ForkServerError::OwnBinary)?;
    let mut argv = vec![binary.to_string_lossy().into_owned()];
    argv.extend_from_slice(args);
    let mut env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k != LISTEN_FD_ENV)
        .collect();
    env.push((LISTEN_FD_ENV.to_owned(), LISTEN_FD.to_string()));
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(fork_server::ForkServerError::Pipe)
    };
    let (stdout_read, stdout_write) = pipe()?;
    let (stderr_read, stderr_write) = pipe()?;
    let forked =
        fork_server::fork_serving(flags, argv, env, listener, &stdout_write, &stderr_write)?;
    // Only the serving process holds the write ends now: its exit or its ready line ends them.
    drop((stdout_write, stderr_write));
    Ok(wait_ready(
        std::fs::File::from(stdout_read),
        std::fs::File::from(stderr_read),
        || {
            forked
                .exit_status()
                .unwrap_or_else(|| "status unknown".to_owned())
        },
    ))
}

/// Executes `<this binary> ARGS` as the serving process; `fallback` is why the fork server did
/// not fork it, when it was asked.
fn exec_server(
    args: &[String],
    listener: &UnixListener,
    fallback: Option<&str>,
) -> Result<(), StartError> {
    let binary = std::env::current_exe().map_err(StartError::OwnBinary)?;
    let mut command = Command::new(binary);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(reason) = fallback {
        command.env(fork_server::FALLBACK_ENV, reason);
    }
    // Signals containerd sends the start process's group must not reach the shim.
    socket::hand_over(&mut command, listener, || {
        // SAFETY: setpgid of the child itself, async-signal-safe.
        unsafe { libc::setpgid(0, 0) }
    });
    let mut child = command.spawn().map_err(StartError::Spawn)?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(StartError::Spawn(std::io::Error::other("no pipes")));
    };
    wait_ready(stdout, stderr, move || {
        child
            .wait()
            .map(|s| s.to_string())
            .unwrap_or_else(|e| format!("status unknown: {e}"))
    })
}

/// Reads the serving process's stdout until its ready line or its end; when it ended without
/// one, fails with its exit `status` and what it said on stderr.
fn wait_ready(
    mut stdout: impl Read,
    mut stderr: impl Read + Send + 'static,
    status: impl FnOnce() -> String,
) -> Result<(), StartError> {
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut said = String::new();
    let _ = stdout.read_to_string(&mut said);
    if said.lines().any(|line| line == READY_LINE) {
        // The server is up; it has let go of both pipes, so the stderr reader is done too.
        return Ok(());
    }
    let status = status();
    let reason = stderr
        .join()
        .ok()
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "it printed nothing".to_string());
    Err(StartError::ServerFailed { status, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_of_a_pod_share_the_pods_shim() {
        let mut spec = ContainerSpec::default();
        spec.annotations
            .insert(crate::spec::SANDBOX_ID_ANNOTATION.into(), "pod-1".into());
        assert_eq!(grouping("c1", Some(&spec)), "pod-1");
    }

    #[test]
    fn a_container_without_a_pod_gets_its_own_shim() {
        assert_eq!(grouping("c1", Some(&ContainerSpec::default())), "c1");
        assert_eq!(grouping("c2", None), "c2");
    }

    #[test]
    fn containerd_1_7_and_2_1_get_version_2() {
        assert_eq!(task_api_version(Some("2")), 2);
        assert_eq!(task_api_version(Some("3")), 3);
        assert_eq!(task_api_version(None), 3);
        assert_eq!(task_api_version(Some("garbage")), 3);
    }

    #[test]
    fn the_reply_is_containerds_bootstrap_json() {
        let text = reply("unix:///run/containerd/s/x", 2);
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["version"], 2);
        assert_eq!(value["address"], "unix:///run/containerd/s/x");
        assert_eq!(value["protocol"], "ttrpc");
    }
}
