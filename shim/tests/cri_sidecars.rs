//! A native sidecar in a Spore pod behaves as it would under runc: the kubelet's resource
//! updates reach its cgroup, it can be paused and resumed, and `kubectl exec -it` gets a
//! terminal. The Wasm container beside it keeps its clear refusals.

mod cri_common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use cri_common::{CriFixture, WASM_EXEC_REFUSAL, wait_running};
use spore_e2e::{ContainerSpec, ContainerdVersion, cgroup};

const RUN: Duration = Duration::from_secs(30);

/// The memory limit of container `id` of a pod whose cgroup is `parent`, read from the host
/// (cgroup v1 `memory.limit_in_bytes` or v2 `memory.max`).
fn memory_limit(parent: &str, id: &str) -> Option<u64> {
    let relative = PathBuf::from(parent.trim_start_matches('/')).join(id);
    for hierarchy in cgroup::hierarchies() {
        for file in ["memory.limit_in_bytes", "memory.max"] {
            let path = hierarchy.join(&relative).join(file);
            if let Ok(text) = std::fs::read_to_string(&path) {
                return text.trim().parse().ok();
            }
        }
    }
    None
}

/// Runs `ctr` in the CRI namespace on a pseudo-terminal of the test's own, as from a user's
/// shell, and returns all the terminal showed, with how `ctr` ended.
///
/// The test reads the terminal until the kernel reports it closed (EIO), which a pty's master
/// does only once every byte written to it has been read. (An empty screen seen in CI, 1 run in
/// 20 with four busy loops beside the test, was the shim's: `ctr` deletes the exec it saw exit
/// and closes its FIFO reader with what it had not read yet; the shim now reports a terminal
/// process's exit once its output was read, `container/console.rs`.)
fn ctr_on_a_terminal(socket: &std::path::Path, args: &[&str]) -> (String, String) {
    use std::io::Read;
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let ctr = spore_e2e::ContainerdVersion::V2.bin_dir().join("ctr");
    let slave = |fd: &std::os::fd::OwnedFd| Stdio::from(fd.try_clone().expect("dup the terminal"));
    // The Command, and with it every copy of the terminal's slave but ctr's, is gone after this
    // statement: the master then reads EIO when ctr exits.
    let mut child = Command::new(&ctr)
        .arg("--address")
        .arg(socket)
        .args(["--namespace", "k8s.io"])
        .args(args)
        .stdin(slave(&pty.slave))
        .stdout(slave(&pty.slave))
        .stderr(slave(&pty.slave))
        .spawn()
        .expect("ctr runs");
    drop(pty.slave);
    let pid = child.id();
    // A ctr that hangs would hold the terminal open for ever: end it after a minute.
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    });
    let mut master = std::fs::File::from(pty.master);
    let mut screen = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match master.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => screen.extend_from_slice(&buffer[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            // EIO: the last slave closed and everything written was read.
            Err(_) => break,
        }
    }
    let status = child.wait().expect("wait for ctr");
    let _ = done.send(());
    let _ = watchdog.join();
    (
        String::from_utf8_lossy(&screen).into_owned(),
        format!("ctr {}", status),
    )
}

#[tokio::test]
async fn a_sidecar_takes_updates_pauses_resumes_and_gets_a_terminal() {
    let mut f = CriFixture::start(ContainerdVersion::V2, true).await;
    let busybox = f.busybox().to_owned();
    let pod = f.run_spore_pod("sidecars").await;
    let wasm = ContainerSpec::new("wasm", &f.wasm).command(["/sleeper.wasm"]);
    let wasm = f.cri.run_container(&pod, &wasm).await.expect("wasm");
    let sidecar = ContainerSpec::new("sidecar", &busybox).command(["sleep", "3600"]);
    let sidecar = f.cri.run_container(&pod, &sidecar).await.expect("sidecar");
    wait_running(&mut f.cri, &sidecar.id, RUN).await;

    // The kubelet's in-place resize: UpdateContainerResources reaches the sidecar's cgroup.
    let before = memory_limit(&pod.cgroup_parent(), &sidecar.id);
    f.cri
        .runtime()
        .update_container_resources(k8s_cri::v1::UpdateContainerResourcesRequest {
            container_id: sidecar.id.clone(),
            linux: Some(k8s_cri::v1::LinuxContainerResources {
                memory_limit_in_bytes: 96 << 20,
                cpu_period: 100_000,
                cpu_quota: 50_000,
                cpu_shares: 512,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("UpdateContainerResources: {e}\n{}", f.log_tail()));
    assert_eq!(
        memory_limit(&pod.cgroup_parent(), &sidecar.id),
        Some(96 << 20),
        "was {before:?}"
    );
    // Wasm containers keep refusing it, by name.
    let refused = f
        .cri
        .runtime()
        .update_container_resources(k8s_cri::v1::UpdateContainerResourcesRequest {
            container_id: wasm.id.clone(),
            linux: Some(k8s_cri::v1::LinuxContainerResources {
                memory_limit_in_bytes: 96 << 20,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect_err("a Wasm container's update is refused");
    assert!(refused.message().contains(WASM_EXEC_REFUSAL), "{refused}");

    // Pause and resume, through containerd (the CRI has no pause).
    let paused = f
        .containerd
        .ctr_in("k8s.io", &["task", "pause", &sidecar.id])
        .expect("ctr");
    assert!(paused.success(), "{}", paused.stderr);
    let listed = f.containerd.ctr_in("k8s.io", &["task", "ls"]).expect("ctr");
    let state = |listing: &str, id: &str| {
        listing
            .lines()
            .find(|l| l.starts_with(id))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        state(&listed.stdout, &sidecar.id),
        "PAUSED",
        "{}",
        listed.stdout
    );
    let resumed = f
        .containerd
        .ctr_in("k8s.io", &["task", "resume", &sidecar.id])
        .expect("ctr");
    assert!(resumed.success(), "{}", resumed.stderr);
    let listed = f.containerd.ctr_in("k8s.io", &["task", "ls"]).expect("ctr");
    assert_eq!(
        state(&listed.stdout, &sidecar.id),
        "RUNNING",
        "{}",
        listed.stdout
    );
    let wasm_pause = f
        .containerd
        .ctr_in("k8s.io", &["task", "pause", &wasm.id])
        .expect("ctr");
    assert!(!wasm_pause.success());
    assert!(
        wasm_pause.stderr.contains(WASM_EXEC_REFUSAL),
        "{}",
        wasm_pause.stderr
    );

    // `kubectl exec -it`: an exec with a terminal, which is what `tty` sees.
    let (screen, ended) = ctr_on_a_terminal(
        f.containerd.socket(),
        &[
            "task",
            "exec",
            "-t",
            "--exec-id",
            "tty-1",
            &sidecar.id,
            "busybox",
            "tty",
        ],
    );
    assert!(
        screen.contains("/dev/pts/"),
        "the exec has a terminal: {screen:?} ({ended})\n{}",
        f.log_tail()
    );
    // A plain exec still works, without one.
    let out = f
        .cri
        .exec_sync(&sidecar.id, &["busybox", "tty"], 10)
        .await
        .expect("exec");
    assert!(out.stdout.contains("not a tty"), "{out:?}");
    f.cri.teardown_pod(&pod).await.expect("teardown");
}
