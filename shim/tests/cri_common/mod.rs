//! Shared set-up for the shim's CRI tests: a private containerd whose `spore` handler runs this
//! build's shim, a loopback registry holding an image of Wasm guests (and busybox for sidecars),
//! a CRI client playing the kubelet, and checks that a torn-down pod left nothing behind.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use spore_e2e::image::ImageBuilder;
use spore_e2e::{
    Containerd, ContainerdOptions, ContainerdVersion, CriClient, Pod, Registry, cgroup, image,
};

/// The CRI runtime handler that runs the Spore shim.
pub const HANDLER: &str = spore_format::RUNTIME_HANDLER;
/// The text the shim answers an exec into a Wasm container with.
pub const WASM_EXEC_REFUSAL: &str = "not supported for Wasm containers";
/// What the hello guest prints first (`GREETING_NAME` unset).
pub const HELLO_GREETING: &str = "Hello, world, from a Wasm component on Spore!";

/// Where `hack/build-guests.sh` puts a wasm32-wasip2 guest.
pub fn guest(name: &str) -> Vec<u8> {
    spore_e2e::tools::guest_wasm("wasm32-wasip2", name).unwrap_or_else(|e| panic!("{e}"))
}

/// A plain image with every guest the CRI tests use at `/NAME.wasm`, a text file at
/// `/bad.wasm`, and `/hello.wasm` as the entrypoint.
pub fn wasm_guests_image() -> ImageBuilder {
    let mut builder = ImageBuilder::new();
    for name in ["hello", "listen", "trap", "sleeper"] {
        builder = builder.file(&format!("/{name}.wasm"), guest(name));
    }
    builder
        .file(
            "/bad.wasm",
            b"this is a text file, not a WebAssembly module\n".to_vec(),
        )
        .entrypoint(["/hello.wasm"])
}

/// One test's world: registry, containerd, CRI client, with the guests image (and busybox,
/// when asked) pushed to the registry and pulled through CRI.
pub struct CriFixture {
    pub registry: Registry,
    pub containerd: Containerd,
    pub cri: CriClient,
    /// The reference of the Wasm guests image.
    pub wasm: String,
    /// The reference of the busybox image, when the fixture pulled one.
    pub busybox: Option<String>,
}

impl CriFixture {
    pub async fn start(version: ContainerdVersion, with_busybox: bool) -> CriFixture {
        Self::start_with(version, with_busybox, |options| options).await
    }

    /// [`CriFixture::start`] with containerd's options changed by `adjust`.
    pub async fn start_with(
        version: ContainerdVersion,
        with_busybox: bool,
        adjust: impl FnOnce(ContainerdOptions) -> ContainerdOptions,
    ) -> CriFixture {
        let registry = Registry::start().expect("registry starts");
        let containerd = Containerd::start(adjust(
            ContainerdOptions::default()
                .version(version)
                .spore_shim_from_target()
                .plain_http_registry(registry.host()),
        ))
        .expect("containerd starts");
        let wasm = wasm_guests_image()
            .build()
            .expect("guests image builds")
            .push_http(&registry.host(), "spore/guests", "cri")
            .expect("push the guests image");
        let busybox = with_busybox.then(|| {
            image::busybox()
                .expect("busybox-static")
                .build()
                .expect("busybox image builds")
                .push_http(&registry.host(), "spore/busybox", "1")
                .expect("push busybox")
        });
        let mut cri = CriClient::for_containerd(&containerd)
            .await
            .expect("CRI is ready");
        let image_ref = cri.pull_image(&wasm).await.expect("PullImage (guests)");
        assert!(image_ref.starts_with("sha256:"), "{image_ref}");
        if let Some(busybox) = &busybox {
            cri.pull_image(busybox).await.expect("PullImage (busybox)");
        }
        CriFixture {
            registry,
            containerd,
            cri,
            wasm,
            busybox,
        }
    }

    pub fn busybox(&self) -> &str {
        self.busybox
            .as_deref()
            .expect("the fixture was started with busybox")
    }

    /// The end of containerd's log, for failure messages: its warnings and errors and every
    /// line the shim wrote (the shim logs there at warn), without the info noise of start-up.
    pub fn log_tail(&self) -> String {
        let log = self.containerd.log();
        let wanted: Vec<&str> = log
            .lines()
            .filter(|line| {
                // containerd's own lines start with `time=`; the shim's do not.
                !line.starts_with("time=")
                    || !line.contains("level=info") && !line.contains("level=debug")
            })
            .collect();
        format!(
            "containerd log, warnings, errors and shim lines:\n{}",
            tail(&wanted.join("\n"), 60)
        )
    }

    /// RunPodSandbox with handler `spore`; on failure, panics with containerd's log tail.
    pub async fn run_spore_pod(&mut self, name: &str) -> Pod {
        match self.cri.run_pod_sandbox(name, "default", HANDLER).await {
            Ok(pod) => pod,
            Err(e) => panic!(
                "RunPodSandbox (handler {HANDLER}) failed: {e}\n{}",
                self.log_tail()
            ),
        }
    }
}

/// A component that exports `wasi:cli/run` and imports `imports` (interfaces Spore does not
/// host), each as an instance with one resource.
pub fn importing_component(imports: &[String]) -> Vec<u8> {
    let imports: String = imports
        .iter()
        .map(|i| format!(r#"(import "{i}" (instance (export "thing" (type (sub resource)))))"#))
        .collect();
    let wat = format!(
        r#"(component
            {imports}
            (core module $m (func (export "run") (result i32) i32.const 0))
            (core instance $i (instantiate $m))
            (func $run (result (result)) (canon lift (core func $i "run")))
            (instance $r (export "run" (func $run)))
            (export "wasi:cli/run@0.2.0" (instance $r)))"#
    );
    wat::parse_str(wat).expect("wat")
}

/// An image whose entrypoint is `/hello-http.wasm`, with the guests `others` at `/NAME.wasm`.
pub fn http_image(others: &[&str]) -> ImageBuilder {
    let mut builder = ImageBuilder::new().file("/hello-http.wasm", guest("hello-http"));
    for name in others {
        builder = builder.file(&format!("/{name}.wasm"), guest(name));
    }
    builder.entrypoint(["/hello-http.wasm"])
}

/// Builds `image`, pushes it to the fixture's registry as `repo:1` and pulls it through CRI.
pub async fn push_and_pull(f: &mut CriFixture, image: ImageBuilder, repo: &str) -> String {
    let reference = image
        .build()
        .expect("image builds")
        .push_http(&f.registry.host(), repo, "1")
        .expect("push");
    f.cri.pull_image(&reference).await.expect("PullImage");
    reference
}

/// Publishes `file` as `reference` with this build's `spore` CLI (plain HTTP); returns what
/// it wrote on stderr.
pub fn spore_push(file: &Path, reference: &str) -> String {
    let cli = spore_e2e::tools::target_dir().join("debug/spore");
    assert!(
        cli.exists(),
        "{} is missing: cargo build -p spore-cli",
        cli.display()
    );
    let out = std::process::Command::new(&cli)
        .args(["push", "--insecure"])
        .arg(file)
        .arg(reference)
        .output()
        .expect("spore push runs");
    assert!(out.status.success(), "spore push: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The address of the pod's HTTP server (pod IP, port 8080) once it accepts connections.
pub async fn http_addr(cri: &mut CriClient, pod: &Pod, limit: Duration) -> std::net::SocketAddr {
    let ip = cri.pod_ip(&pod.id).await.expect("status").expect("pod IP");
    let addr = std::net::SocketAddr::new(std::net::IpAddr::V4(ip), 8080);
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(start.elapsed() < limit, "nothing listens on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    addr
}

/// The pid of the one shim serving pod `pod_id`.
pub fn shim_of(containerd: &Containerd, pod_id: &str) -> u32 {
    let pids: Vec<u32> = spore_shims(containerd)
        .into_iter()
        .filter(|(_, cmdline)| cmdline.contains(pod_id))
        .map(|(pid, _)| pid as u32)
        .collect();
    assert_eq!(pids.len(), 1, "one shim serves pod {pod_id}: {pids:?}");
    pids[0]
}

/// Resident memory of a process, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// What the kubelet would show as the container's termination message (empty when the shim
/// wrote none).
pub fn termination_message(container: &spore_e2e::Container) -> String {
    container
        .termination_log
        .as_ref()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_default()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The `containerd-shim-spore-v1` processes serving this containerd's pods (not the fork
/// server they are forked from: it serves no socket of a pod).
pub fn spore_shims(containerd: &Containerd) -> Vec<(i32, String)> {
    containerd
        .serving_shims()
        .into_iter()
        .filter(|(_, cmdline)| cmdline.contains("containerd-shim-spore-v1"))
        .collect()
}

/// `(controllers, path)` of each line of `/proc/<pid>/cgroup` (controllers empty for the
/// unified v2 hierarchy).
pub fn cgroups_of(pid: i32) -> Vec<(String, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?.to_owned();
            let path = parts.next()?.to_owned();
            Some((controllers, path))
        })
        .collect()
}

/// Number of open file descriptors of a process.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

/// Number of threads of a process.
pub fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

/// Pids whose parent is `pid` (zombies included: they are leaks too).
pub fn children_of(pid: u32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    stat.rsplit_once(')').and_then(|(_, rest)| {
                        rest.split_whitespace()
                            .nth(1)
                            .and_then(|ppid| ppid.parse::<u32>().ok())
                    })
                })
                .is_some_and(|ppid| ppid == pid)
        })
        .collect()
}

/// Where a runc state directory (`<root>/<id>/state.json`) of one of `ids` could be: any
/// directory, up to four levels under `roots`, named by an id and holding a `state.json`. This
/// finds runc containers whatever root the shim gives runc.
pub fn runc_state_dirs(roots: &[PathBuf], ids: &[String]) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, ids: &[String], found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if !kind.is_dir() {
                continue;
            }
            let path = entry.path();
            let named = entry
                .file_name()
                .to_str()
                .is_some_and(|n| ids.iter().any(|id| id == n));
            if named && path.join("state.json").exists() {
                found.push(path.clone());
            }
            if depth > 0 {
                walk(&path, depth - 1, ids, found);
            }
        }
    }
    let mut found = Vec::new();
    for root in roots {
        walk(root, 4, ids, &mut found);
    }
    found
}

/// The places runc state can live: the instance's directory and `/run` (runc's default roots
/// `/run/runc`, `/run/containerd/runc/<namespace>`, ...).
pub fn runc_roots(containerd: &Containerd) -> Vec<PathBuf> {
    vec![containerd.paths().base.clone(), PathBuf::from("/run")]
}

/// What a pod was made of, to check after teardown that none of it remains.
#[derive(Debug, Default)]
pub struct PodTrace {
    pub sandbox_id: String,
    pub container_ids: Vec<String>,
    pub netns: Option<PathBuf>,
    pub cgroup_parent: String,
}

impl PodTrace {
    pub async fn of(cri: &mut CriClient, pod: &Pod) -> PodTrace {
        let netns = cri.pod_netns_path(&pod.id).await.expect("PodSandboxStatus");
        let container_ids = cri
            .list_containers(Some(&pod.id))
            .await
            .expect("ListContainers")
            .into_iter()
            .map(|c| c.id)
            .collect();
        PodTrace {
            sandbox_id: pod.id.clone(),
            container_ids,
            netns,
            cgroup_parent: pod.cgroup_parent(),
        }
    }

    pub fn ids(&self) -> Vec<String> {
        let mut ids = self.container_ids.clone();
        ids.push(self.sandbox_id.clone());
        ids
    }
}

/// Everything that can remain of a torn-down pod, each as a line; empty when nothing does.
pub fn remains_of(containerd: &Containerd, trace: &PodTrace) -> Vec<String> {
    let mut remains = Vec::new();
    let leftovers = containerd.leftovers();
    if !leftovers.is_empty() {
        remains.push(leftovers.to_string());
    }
    for dir in runc_state_dirs(&runc_roots(containerd), &trace.ids()) {
        remains.push(format!("runc state {}", dir.display()));
    }
    if let Some(netns) = &trace.netns
        && netns.exists()
    {
        remains.push(format!("netns {}", netns.display()));
    }
    for dir in cgroup::existing_dirs(&trace.cgroup_parent).unwrap_or_default() {
        remains.push(format!("pod cgroup {}", dir.display()));
    }
    remains
}

/// Polls until the pod's traces are gone (a shim exits a moment after its last Delete).
pub async fn wait_until_nothing_remains(
    containerd: &Containerd,
    trace: &PodTrace,
    limit: Duration,
) -> Vec<String> {
    let start = std::time::Instant::now();
    loop {
        let remains = remains_of(containerd, trace);
        if remains.is_empty() || start.elapsed() >= limit {
            return remains;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The memory figure of a CRI `MemoryUsage` (an `Option<&MemoryUsage>` expression): the working
/// set when it is set and non-zero, else the usage; 0 when neither is there. A macro, because
/// this crate does not depend on `k8s-cri` and so cannot name the type.
#[macro_export]
macro_rules! memory_bytes {
    ($memory:expr) => {
        $memory
            .map(|m| {
                m.working_set_bytes
                    .as_ref()
                    .map(|v| v.value)
                    .filter(|v| *v > 0)
                    .or_else(|| m.usage_bytes.as_ref().map(|v| v.value))
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    };
}

/// `ContainerState` values of the CRI API (`k8s.io/cri-api` runtime v1).
pub mod container_state {
    pub const CREATED: i32 = 0;
    pub const RUNNING: i32 = 1;
    pub const EXITED: i32 = 2;
}

/// Polls ContainerStatus until the container runs; panics with the last status otherwise.
pub async fn wait_running(cri: &mut CriClient, container_id: &str, limit: Duration) {
    let start = std::time::Instant::now();
    loop {
        let status = cri
            .container_status(container_id)
            .await
            .expect("ContainerStatus");
        if status.state == container_state::RUNNING {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "container {container_id} does not run within {limit:?}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
