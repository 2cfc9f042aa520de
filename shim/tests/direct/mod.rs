//! Driving the shim binary as containerd does, without containerd: `start` in a bundle, a ttrpc
//! Task client on the address it answers, and an events server standing in for containerd's
//! (it records every event the shim forwards).

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use containerd_shim::protos::api::Empty;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::shim_async::{Events, TaskClient, create_events};
use containerd_shim::protos::ttrpc::r#async::transport::Listener;
use containerd_shim::protos::ttrpc::r#async::{Client, Server, TtrpcContext};

pub fn shim_binary() -> PathBuf {
    match std::env::var_os("SPORE_TEST_SHIM_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => spore_e2e::tools::debug_bin_dir(),
    }
    .join(spore_format::SHIM_BINARY)
}

/// containerd's events service, recording the topics forwarded to it.
pub struct EventServer {
    pub address: PathBuf,
    pub topics: Arc<Mutex<Vec<String>>>,
    _server: Server,
    _dir: tempfile::TempDir,
}

struct Recorder(Arc<Mutex<Vec<String>>>);

#[async_trait]
impl Events for Recorder {
    async fn forward(
        &self,
        _ctx: &TtrpcContext,
        req: ForwardRequest,
    ) -> containerd_shim::protos::ttrpc::Result<Empty> {
        if let Ok(mut topics) = self.0.lock() {
            topics.push(req.envelope.topic.clone());
        }
        Ok(Empty::new())
    }
}

impl EventServer {
    pub async fn start() -> EventServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let address = dir.path().join("events.sock");
        let topics = Arc::new(Mutex::new(Vec::new()));
        let listener = std::os::unix::net::UnixListener::bind(&address).expect("bind");
        let mut server = Server::new()
            .add_listener(Listener::try_from(listener).expect("listener"))
            .register_service(create_events(Arc::new(Recorder(topics.clone()))));
        server.start().await.expect("events server");
        EventServer {
            address,
            topics,
            _server: server,
            _dir: dir,
        }
    }

    pub fn topics(&self) -> Vec<String> {
        self.topics.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

/// A bundle whose rootfs holds the test guests (no mounts: the shim uses it as it is).
pub struct Bundle {
    pub dir: tempfile::TempDir,
}

/// A test that fails leaves no shim behind: when its bundle goes while the test panics, every
/// Spore shim serving in it (its working directory) is SIGKILLed. Nothing else would end one:
/// only containerd sends the last Shutdown, and a hung shim would stay for good. The failure's
/// report ([`where_shims_wait`]) was made before, while the shim still ran.
impl Drop for Bundle {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(bundle) = std::fs::canonicalize(self.dir.path()) else {
            return;
        };
        for (pid, _) in spore_e2e::cleanup::processes_naming(spore_format::SHIM_BINARY) {
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"));
            if cwd.is_ok_and(|cwd| cwd == bundle) {
                // SAFETY: kill(2) of a shim process this test started in its own bundle.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

impl Bundle {
    /// A bundle for `/NAME.wasm` with `args`, in its own pod when `pod` is given.
    pub fn wasm(name: &str, args: &[&str], pod: Option<&str>) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("spore-bundle-")
            .tempdir()
            .expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(&rootfs).expect("rootfs");
        let wasm =
            spore_e2e::tools::guest_wasm("wasm32-wasip2", name).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(rootfs.join(format!("{name}.wasm")), wasm).expect("guest");
        let mut argv = vec![format!("/{name}.wasm")];
        argv.extend(args.iter().map(|a| a.to_string()));
        let mut annotations = serde_json::Map::new();
        if let Some(pod) = pod {
            annotations.insert(
                "io.kubernetes.cri.sandbox-id".into(),
                serde_json::Value::String(pod.into()),
            );
        }
        let spec = serde_json::json!({
            "ociVersion": "1.1.0",
            "process": {"user": {"uid": 0, "gid": 0}, "args": argv, "env": [], "cwd": "/"},
            "root": {"path": "rootfs"},
            "annotations": annotations,
        });
        std::fs::write(dir.path().join("config.json"), spec.to_string()).expect("config");
        // A plain file where containerd would have its log FIFO: the shim logs there (at debug,
        // see [`start_with_env`]) and a hang's report shows it ([`where_shims_wait`]).
        std::fs::write(dir.path().join("log"), "").expect("log");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).expect("mode");
        Bundle { dir }
    }

    /// This bundle with `env` (`KEY=VALUE`) as its process's environment.
    pub fn with_env(self, env: &[&str]) -> Bundle {
        let path = self.dir.path().join("config.json");
        let text = std::fs::read_to_string(&path).expect("config");
        let mut spec: serde_json::Value = serde_json::from_str(&text).expect("config is JSON");
        spec["process"]["env"] = serde_json::json!(env);
        std::fs::write(&path, spec.to_string()).expect("config");
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// `containerd-shim-spore-v1 start` in `bundle` for container `id`, as containerd 2.1 runs it.
/// `wrap` runs it through another program (e.g. a private mount namespace).
pub fn start(
    bundle: &Path,
    id: &str,
    containerd_address: &str,
    ttrpc_address: &Path,
    wrap: &[&str],
) -> Output {
    start_with_env(bundle, id, containerd_address, ttrpc_address, wrap, &[])
}

/// [`start`] with more environment (containerd's own environment reaches the shim).
pub fn start_with_env(
    bundle: &Path,
    id: &str,
    containerd_address: &str,
    ttrpc_address: &Path,
    wrap: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let shim = shim_binary();
    let mut command = match wrap.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(&shim);
            c
        }
        None => Command::new(&shim),
    };
    command
        .current_dir(bundle)
        .args([
            "-namespace",
            "spore-test",
            "-id",
            id,
            "-address",
            containerd_address,
        ])
        .arg("start")
        .env("TTRPC_ADDRESS", ttrpc_address)
        .env("GRPC_ADDRESS", containerd_address)
        .env("MAX_SHIM_VERSION", "2")
        .env("SPORE_SHIM_LOG", "debug")
        .envs(env.iter().copied())
        .output()
        .expect("start runs")
}

/// The address `start` printed.
pub fn answered_address(out: &Output) -> String {
    assert!(
        out.status.success(),
        "start failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("start prints JSON");
    assert_eq!(reply["version"], 2);
    assert_eq!(reply["protocol"], "ttrpc");
    reply["address"].as_str().expect("address").to_string()
}

pub async fn task_client(socket: &Path) -> TaskClient {
    let client = Client::connect(&format!("unix://{}", socket.display()))
        .await
        .expect("connect");
    TaskClient::new(client)
}

/// How many of a hung shim's last log lines its report shows.
const LOG_LINES: usize = 80;

/// `step`'s answer, or a failure naming the step after 30 s: a lost answer fails here, naming
/// what was lost, instead of hanging until the runner's timeout. The failure also says where
/// every Spore shim's threads wait and which file locks are held ([`where_shims_wait`]).
pub async fn bounded<T>(step: &str, future: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(std::time::Duration::from_secs(30), future).await {
        Ok(answer) => answer,
        Err(_) => panic!(
            "{step} was not answered within 30 s\n{}",
            where_shims_wait()
        ),
    }
}

/// For a hang's report: each Spore shim process (pid, command line) with its unix sockets and
/// their queues (`ss`), each thread's state, name and innermost kernel frames and, when its
/// bundle's `log` is a plain file (a direct test's, not containerd's FIFO), that log's errors
/// and warnings and its end; then the file locks of `/proc/locks` (a compile-cache entry's lock
/// is one).
pub fn where_shims_wait() -> String {
    let mut report = String::from("Spore shims and where their threads wait:\n");
    // Every unix socket with its queues (Recv-Q, Send-Q) and owners: whether a request sits
    // unread in a shim's socket, or an answer in the client's.
    let sockets = Command::new("ss")
        .arg("-xpn")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    for (pid, cmdline) in spore_e2e::cleanup::processes_naming(spore_format::SHIM_BINARY) {
        report.push_str(&format!("  {pid}: {cmdline}\n"));
        for socket in sockets
            .lines()
            .filter(|l| l.contains(&format!("pid={pid},")))
        {
            report.push_str(&format!(
                "    socket: {}\n",
                socket.split_whitespace().collect::<Vec<_>>().join(" ")
            ));
        }
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten();
        for task in tasks.flatten() {
            let dir = task.path();
            let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            let stat = read("stat");
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("?")
                .to_string();
            let frames: Vec<String> = read("stack")
                .lines()
                .take(4)
                .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
                .collect();
            report.push_str(&format!(
                "    {} {} {}: {}\n",
                task.file_name().to_string_lossy(),
                read("comm").trim(),
                state,
                frames.join(" < ")
            ));
        }
        let log = PathBuf::from(format!("/proc/{pid}/cwd/log"));
        if std::fs::metadata(&log).is_ok_and(|m| m.is_file()) {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            report.push_str("    its log's errors and warnings:\n");
            for line in lines
                .iter()
                .filter(|l| l.contains(" ERROR ") || l.contains(" WARN "))
            {
                report.push_str(&format!("      {line}\n"));
            }
            report.push_str(&format!(
                "    the end of its log ({} lines):\n",
                lines.len()
            ));
            for line in &lines[lines.len().saturating_sub(LOG_LINES)..] {
                report.push_str(&format!("      {line}\n"));
            }
        }
    }
    report.push_str("file locks (/proc/locks):\n");
    report.push_str(&std::fs::read_to_string("/proc/locks").unwrap_or_default());
    report
}

/// Create and Start of task `id` in `bundle`, with `stdout` as its stdout path ("" for none),
/// each bounded by [`bounded`].
pub async fn create_and_start(client: &TaskClient, id: &str, bundle: &Path, stdout: &str) {
    let ctx = containerd_shim::protos::ttrpc::context::Context::default;
    let create = containerd_shim::protos::api::CreateTaskRequest {
        id: id.to_string(),
        bundle: bundle.display().to_string(),
        stdout: stdout.to_string(),
        ..Default::default()
    };
    bounded("Create", client.create(ctx(), &create))
        .await
        .expect("create");
    let start = containerd_shim::protos::api::StartRequest {
        id: id.to_string(),
        ..Default::default()
    };
    bounded("Start", client.start(ctx(), &start))
        .await
        .expect("start");
}

/// Shuts down the shim answering at `address` (`unix://...`), as containerd's last Shutdown.
pub async fn shut_down(address: &str) {
    let client = task_client(Path::new(address.strip_prefix("unix://").expect("unix"))).await;
    client
        .shutdown(
            containerd_shim::protos::ttrpc::context::Context::default(),
            &containerd_shim::protos::api::ShutdownRequest::default(),
        )
        .await
        .expect("shutdown");
}

/// Pids of serving shim processes whose command line names `id`.
pub fn shims_serving(id: &str) -> Vec<i32> {
    spore_e2e::cleanup::processes_naming(&format!("-id {id} "))
        .into_iter()
        .filter(|(_, cmdline)| cmdline.contains("-socket"))
        .map(|(pid, _)| pid)
        .collect()
}

/// Waits (bounded) for process `pid` to be gone; returns whether it is.
pub async fn gone(pid: i32, limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
        {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}
