//! A pod's shim SIGKILLed (as the OOM killer or a crash would end it): containerd's cleanup,
//! `containerd-shim-spore-v1 delete` in each bundle, releases everything the dead shim owned
//! (the sandbox's init, the sidecar through runc, mounts, its cgroup leaves, its socket), the
//! kubelet's StopPodSandbox and RemovePodSandbox succeed, and the same pod can be created again.

mod cri_common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cri_common::{
    CriFixture, PodTrace, container_state, runc_roots, runc_state_dirs, shim_of, wait_running,
    wait_until_nothing_remains,
};
use spore_e2e::{ContainerSpec, ContainerdVersion, cgroup};

const RUN: Duration = Duration::from_secs(30);
const CLEANUP: Duration = Duration::from_secs(20);

/// The shim's `spore-wasm` leaf and its sandbox init's `spore-sandbox` leaf below the pod's
/// cgroup, in each hierarchy where they exist.
fn shim_leaves(cgroup_parent: &str) -> Vec<PathBuf> {
    cgroup::existing_dirs(cgroup_parent)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|dir| [dir.join("spore-wasm"), dir.join("spore-sandbox")])
        .filter(|leaf| leaf.is_dir())
        .collect()
}

/// Mount points that name one of `ids` (rootfs mounts of the pod's containers).
fn mounts_of(ids: &[String]) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().nth(4))
        .filter(|point| ids.iter().any(|id| point.contains(id.as_str())))
        .map(str::to_owned)
        .collect()
}

/// Polls `what` until it is empty; returns what was left at the limit.
async fn until_empty<T>(limit: Duration, mut what: impl FnMut() -> Vec<T>) -> Vec<T> {
    let start = Instant::now();
    loop {
        let left = what();
        if left.is_empty() || start.elapsed() >= limit {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_killed_shim_leaves_nothing_and_the_pod_comes_back(version: ContainerdVersion) {
    let mut f = CriFixture::start(version, true).await;
    let busybox = f.busybox().to_owned();
    let pod = f.run_spore_pod("killed").await;
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
    let trace = PodTrace::of(&mut f.cri, &pod).await;
    let parent = pod.cgroup_parent();

    // What the pod holds while it runs: the shim's and the init's leaves, the sidecar's runc
    // state and processes, the rootfs mounts.
    let leaves = shim_leaves(&parent);
    assert!(
        leaves.iter().any(|l| l.ends_with("spore-wasm"))
            && leaves.iter().any(|l| l.ends_with("spore-sandbox")),
        "the shim joined its pod and the init has its leaf: {leaves:?}"
    );
    let roots = runc_roots(&f.containerd);
    assert!(!runc_state_dirs(&roots, &trace.ids()).is_empty());
    let shim = shim_of(&f.containerd, &pod.id);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 the shim");

    // containerd notices, runs `delete` in the bundles and reports the containers exited.
    for id in [&wasm.id, &sidecar.id] {
        let status = f
            .cri
            .wait_for_exit(id, CLEANUP)
            .await
            .unwrap_or_else(|e| panic!("{id} after the shim's death: {e}\n{}", f.log_tail()));
        assert_eq!(status.state, container_state::EXITED);
    }
    // Nothing of the dead shim remains, before the kubelet even tears the pod down.
    let left = until_empty(CLEANUP, || {
        let mut left: Vec<String> = runc_state_dirs(&roots, &trace.ids())
            .into_iter()
            .map(|d| format!("runc state {}", d.display()))
            .collect();
        left.extend(
            shim_leaves(&parent)
                .into_iter()
                .map(|l| format!("cgroup leaf {}", l.display())),
        );
        left.extend(
            cgroup::processes(&parent)
                .unwrap_or_default()
                .into_iter()
                .map(|pid| format!("process {pid} in the pod's cgroup")),
        );
        left
    })
    .await;
    assert!(left.is_empty(), "{left:#?}\n{}", f.log_tail());

    // The kubelet's teardown works and leaves nothing, as after a clean stop.
    f.cri
        .teardown_pod(&pod)
        .await
        .unwrap_or_else(|e| panic!("teardown: {e}\n{}", f.log_tail()));
    let remains = wait_until_nothing_remains(&f.containerd, &trace, CLEANUP).await;
    assert!(remains.is_empty(), "{remains:#?}\n{}", f.log_tail());
    let mounts = mounts_of(&trace.ids());
    assert!(mounts.is_empty(), "{mounts:#?}");
    let temps = until_empty(CLEANUP, cache_temp_files).await;
    assert!(temps.is_empty(), "{temps:#?}");

    // The kubelet's next RunPodSandbox of that pod works and its containers run.
    let again = f.run_spore_pod("killed").await;
    let hello = ContainerSpec::new("wasm", &f.wasm).command(["/hello.wasm"]);
    let hello = f.cri.run_container(&again, &hello).await.expect("hello");
    let exited = f
        .cri
        .wait_for_exit(&hello.id, RUN)
        .await
        .unwrap_or_else(|e| panic!("the recreated pod: {e}\n{}", f.log_tail()));
    assert_eq!(exited.exit_code, 0, "{exited:?}");
    f.cri.teardown_pod(&again).await.expect("teardown");
}

/// Temporary files of compile-cache writers left in the default cache directory.
fn cache_temp_files() -> Vec<PathBuf> {
    let dir = PathBuf::from("/var/lib/spore/cache");
    walk(&dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".tmp-"))
        })
        .collect()
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn a_killed_shim_on_containerd_2_leaves_nothing_and_the_pod_comes_back() {
    a_killed_shim_leaves_nothing_and_the_pod_comes_back(ContainerdVersion::V2).await;
}

#[tokio::test]
async fn a_killed_shim_on_containerd_1_7_leaves_nothing_and_the_pod_comes_back() {
    a_killed_shim_leaves_nothing_and_the_pod_comes_back(ContainerdVersion::V1_7).await;
}
