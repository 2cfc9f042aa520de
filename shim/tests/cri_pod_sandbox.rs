//! A Spore pod's sandbox is the shim's own init process, not runc and the pause image (issue
//! 16): it holds the pod's IPC, UTS and PID namespaces in the pod's network namespace and in a
//! cgroup leaf below the pod's cgroup; a native sidecar joins its namespaces through runc, a
//! `shareProcessNamespace` pod sees it as PID 1; the pod's end takes it and its leaf along. The
//! runc sandbox stays behind the `Sandbox = "runc"` runtime option.

mod cri_common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use cri_common::{
    CriFixture, PodTrace, cgroups_of, shim_of, wait_running, wait_until_nothing_remains,
};
use spore_e2e::config::SPORE_RUNC_SANDBOX_HANDLER;
use spore_e2e::{ContainerSpec, ContainerdVersion, Pod, PodSpec};

const RUN: Duration = Duration::from_secs(30);

/// The pid containerd has for task `id` (`ctr task ls`).
fn task_pid(f: &CriFixture, id: &str) -> i32 {
    let listed = f.containerd.ctr_in("k8s.io", &["task", "ls"]).expect("ctr");
    listed
        .stdout
        .lines()
        .find(|line| line.starts_with(id))
        .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no task {id}:\n{}", listed.stdout))
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            String::from_utf8_lossy(&bytes)
                .replace('\0', " ")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

/// `Private_Dirty` of `/proc/<pid>/smaps_rollup`, in KiB.
fn private_dirty_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Private_Dirty:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(u64::MAX)
}

fn parent_of(pid: i32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The namespace inode a process is in (`/proc/<pid>/ns/<kind>`).
fn ns_inode(pid: &str, kind: &str) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/ns/{kind}"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/ns/{kind}: {e}"))
        .ino()
}

async fn exec(f: &mut CriFixture, container: &str, cmd: &[&str]) -> String {
    let out = f
        .cri
        .exec_sync(container, cmd, 10)
        .await
        .unwrap_or_else(|e| panic!("ExecSync {cmd:?}: {e}\n{}", f.log_tail()));
    assert_eq!(out.exit_code, 0, "{cmd:?}: {}", out.stderr);
    out.stdout.replace('\0', " ").trim().to_owned()
}

async fn run_pod(f: &mut CriFixture, spec: PodSpec) -> Pod {
    match f.cri.run_pod(spec).await {
        Ok(pod) => pod,
        Err(e) => panic!("RunPodSandbox: {e}\n{}", f.log_tail()),
    }
}

async fn the_sandbox_is_the_shims_init(version: ContainerdVersion) {
    let mut f = CriFixture::start(version, true).await;
    let busybox = f.busybox().to_owned();
    let mut spec = PodSpec::new("shared-pids", "default", "spore");
    spec.share_process_namespace = true;
    spec.memory_limit = Some(128 << 20);
    let pod = run_pod(&mut f, spec).await;
    let init = task_pid(&f, &pod.id);
    assert_eq!(
        cmdline(init),
        "spore-pod-init",
        "the sandbox task's process"
    );
    let shim = shim_of(&f.containerd, &pod.id);
    assert_eq!(parent_of(init), Some(shim), "the init is the shim's child");
    // Forked from the shim before its threads, the init shares the shim's pages: what it has
    // of its own is a few pages (a re-executed shim binary had 1.2 MiB of relocations alone).
    let own = private_dirty_kib(init);
    eprintln!("the init's private dirty memory: {own} KiB");
    assert!(own <= 256, "the init has {own} KiB of its own");

    // The pod's network namespace (CRI's), new IPC, UTS and PID namespaces.
    let netns = f
        .cri
        .pod_netns_path(&pod.id)
        .await
        .expect("PodSandboxStatus")
        .expect("the pod has a network namespace");
    let init_pid = init.to_string();
    assert_eq!(
        ns_inode(&init_pid, "net"),
        std::fs::metadata(&netns).expect("netns").ino(),
        "the init is in the pod's network namespace"
    );
    for kind in ["ipc", "uts", "pid"] {
        assert_ne!(
            ns_inode(&init_pid, kind),
            ns_inode("self", kind),
            "the init has a {kind} namespace of its own"
        );
    }
    // In its own leaf below the pod's cgroup, in every hierarchy.
    let leaf = format!("/pod{}/spore-sandbox", pod.uid());
    let cgroups = cgroups_of(init);
    assert!(
        cgroups.iter().all(|(_, path)| path.ends_with(&leaf)),
        "{cgroups:?}"
    );

    // The shim is in its own leaf from the sandbox on, before any Wasm container: it joined at
    // its start, while one thread (a v1 `tasks` write moves only the writer) made that cheap.
    // The cgroup v2 move finishes on a thread of its own, hence the wait.
    let shim_leaf = format!("/pod{}/spore-wasm", pod.uid());
    // Every hierarchy, a v1 cpuset too: outside it HTTP guests served a third fewer requests
    // (`host/shim_cgroup.rs`).
    let shim_in_leaf = |shim: u32| {
        cgroups_of(shim as i32)
            .iter()
            .all(|(_, path)| path.ends_with(&shim_leaf))
    };
    let waited = std::time::Instant::now();
    while !shim_in_leaf(shim) && waited.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        shim_in_leaf(shim),
        "the shim's cgroups: {:?}",
        cgroups_of(shim as i32)
    );

    // A Wasm container and a native sidecar beside it.
    let wasm = ContainerSpec::new("wasm", &f.wasm)
        .command(["/sleeper.wasm"])
        .memory_limit(64 << 20);
    let wasm = f.cri.run_container(&pod, &wasm).await.expect("wasm");
    let sidecar = ContainerSpec::new("sidecar", &busybox)
        .command(["sleep", "3600"])
        .memory_limit(32 << 20);
    let sidecar = f.cri.run_container(&pod, &sidecar).await.expect("sidecar");
    wait_running(&mut f.cri, &wasm.id, RUN).await;
    wait_running(&mut f.cri, &sidecar.id, RUN).await;
    // Still (or back) in its leaf once the guest runs: a compile cache miss compiles with the
    // shim stepped out of the pod.
    assert!(
        shim_in_leaf(shim),
        "the shim's cgroups: {:?}",
        cgroups_of(shim as i32)
    );
    assert_eq!(
        exec(&mut f, &sidecar.id, &["cat", "/proc/sys/kernel/hostname"]).await,
        "shared-pids"
    );
    assert_eq!(
        exec(&mut f, &sidecar.id, &["cat", "/proc/1/cmdline"]).await,
        "spore-pod-init",
        "shareProcessNamespace: the sidecar sees the init as PID 1"
    );
    let sidecar_pid = task_pid(&f, &sidecar.id).to_string();
    for kind in ["ipc", "uts", "pid", "net"] {
        assert_eq!(
            ns_inode(&sidecar_pid, kind),
            ns_inode(&init_pid, kind),
            "the sidecar joined the sandbox's {kind} namespace"
        );
    }
    // The sandbox's Stats come from its leaf.
    let stats = f
        .cri
        .pod_sandbox_stats(&pod.id)
        .await
        .unwrap_or_else(|e| panic!("PodSandboxStats: {e}\n{}", f.log_tail()));
    let linux = stats.linux.as_ref().expect("linux pod stats");
    assert!(memory_bytes!(linux.memory.as_ref()) > 0, "{stats:?}");
    assert_eq!(linux.containers.len(), 2, "{stats:?}");

    // The pod's end takes the init and its leaf along.
    let trace = PodTrace::of(&mut f.cri, &pod).await;
    f.cri.teardown_pod(&pod).await.expect("teardown");
    let remains = wait_until_nothing_remains(&f.containerd, &trace, RUN).await;
    assert!(remains.is_empty(), "{remains:?}");
    assert!(
        !std::path::Path::new(&format!("/proc/{init}")).exists()
            || cmdline(init) != "spore-pod-init",
        "the init is gone"
    );
    for hierarchy in spore_e2e::cgroup::hierarchies() {
        let dir = hierarchy
            .join(pod.cgroup_parent().trim_start_matches('/'))
            .join("spore-sandbox");
        assert!(!dir.exists(), "{} stays", dir.display());
    }
}

#[tokio::test]
async fn the_sandbox_is_the_shims_init_on_containerd_2() {
    the_sandbox_is_the_shims_init(ContainerdVersion::V2).await;
}

#[tokio::test]
async fn the_sandbox_is_the_shims_init_on_containerd_1_7() {
    the_sandbox_is_the_shims_init(ContainerdVersion::V1_7).await;
}

/// Without `shareProcessNamespace` each container has its own PID namespace: the sidecar is
/// its own PID 1, and still shares the sandbox's IPC and UTS namespaces.
#[tokio::test]
async fn containers_of_a_pod_without_shared_pids_have_their_own_pid_namespace() {
    let mut f = CriFixture::start(ContainerdVersion::V2, true).await;
    let busybox = f.busybox().to_owned();
    let pod = run_pod(&mut f, PodSpec::new("own-pids", "default", "spore")).await;
    let init = task_pid(&f, &pod.id).to_string();
    let sidecar = ContainerSpec::new("sidecar", &busybox).command(["sleep", "3600"]);
    let sidecar = f.cri.run_container(&pod, &sidecar).await.expect("sidecar");
    wait_running(&mut f.cri, &sidecar.id, RUN).await;
    assert_eq!(
        exec(&mut f, &sidecar.id, &["cat", "/proc/1/cmdline"]).await,
        "sleep 3600"
    );
    let sidecar_pid = task_pid(&f, &sidecar.id).to_string();
    assert_ne!(ns_inode(&sidecar_pid, "pid"), ns_inode(&init, "pid"));
    for kind in ["ipc", "uts"] {
        assert_eq!(
            ns_inode(&sidecar_pid, kind),
            ns_inode(&init, kind),
            "{kind}"
        );
    }
    f.cri.teardown_pod(&pod).await.expect("teardown");
}

/// `Sandbox = "runc"`: the pause image through runc, as before, for comparison.
#[tokio::test]
async fn the_runc_sandbox_stays_behind_the_runtime_option() {
    let mut f = CriFixture::start(ContainerdVersion::V2, false).await;
    let spec = PodSpec::new("runc-sandbox", "default", SPORE_RUNC_SANDBOX_HANDLER);
    let pod = run_pod(&mut f, spec).await;
    let sandbox = task_pid(&f, &pod.id);
    assert_eq!(cmdline(sandbox), "/pause", "runc runs the pause container");
    let wasm = ContainerSpec::new("wasm", &f.wasm).command(["/sleeper.wasm"]);
    let wasm = f.cri.run_container(&pod, &wasm).await.expect("wasm");
    wait_running(&mut f.cri, &wasm.id, RUN).await;
    let trace = PodTrace::of(&mut f.cri, &pod).await;
    f.cri.teardown_pod(&pod).await.expect("teardown");
    let remains = wait_until_nothing_remains(&f.containerd, &trace, RUN).await;
    assert!(remains.is_empty(), "{remains:?}");
}
