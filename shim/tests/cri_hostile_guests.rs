//! Hostile guests in one pod beside an HTTP neighbour: an endless loop (held to the pod's CPU
//! limit, stopped by the kubelet's StopContainer), a stack overflow, a guest that opens files
//! until the host refuses, and one that writes to stdout as fast as it can. Each ends contained,
//! with a clear status; the neighbour answers throughout and the shim's descriptors and memory
//! stay bounded. (The memory bomb is in `cri_termination.rs`, the HTTP flood in
//! `cri_http_flood.rs`.)

mod cri_common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cri_common::{
    CriFixture, fd_count, http_addr, http_image, push_and_pull, rss_kib, shim_of,
    termination_message, wait_running,
};
use spore_e2e::{ContainerSpec, ContainerdVersion, cgroup};

const WAIT: Duration = Duration::from_secs(30);

/// CPU time (user + system) of a process, from `/proc/<pid>/stat`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After the name: state is 0, utime 11, stime 12.
    field(11) + field(12)
}

/// Limits the pod's cgroup to `millicores` of CPU, as the kubelet does from the containers'
/// limits (cgroup v1 `cpu.cfs_quota_us`, or v2 `cpu.max`).
fn limit_pod_cpu(parent: &str, millicores: u64) {
    let period = 100_000u64;
    let quota = period * millicores / 1000;
    let mut applied = false;
    for dir in cgroup::existing_dirs(parent).expect("the pod's cgroup") {
        let v1 = dir.join("cpu.cfs_quota_us");
        let v2 = dir.join("cpu.max");
        if v1.exists() {
            std::fs::write(dir.join("cpu.cfs_period_us"), period.to_string()).expect("period");
            std::fs::write(&v1, quota.to_string()).expect("quota");
            applied = true;
        } else if v2.exists() {
            std::fs::write(&v2, format!("{quota} {period}")).expect("cpu.max");
            applied = true;
        }
    }
    assert!(applied, "no CPU controller for {parent}");
}

async fn answers(addr: SocketAddr) -> Option<(u16, Duration)> {
    let asked = Instant::now();
    let response = tokio::task::spawn_blocking(move || {
        spore_e2e::http::request("GET", &format!("http://{addr}/"), &[], b"")
    })
    .await
    .ok()?
    .ok()?;
    Some((response.status, asked.elapsed()))
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_guests_end_contained_and_the_neighbour_keeps_serving() {
    let mut f = CriFixture::start(ContainerdVersion::V2, false).await;
    let image = http_image(&["spin", "overflow", "handles", "flood"]);
    let image = push_and_pull(&mut f, image, "spore/hostile").await;
    let pod = f.run_spore_pod("hostile").await;
    let neighbour = ContainerSpec::new("web", &image).memory_limit(64 << 20);
    let neighbour = f.cri.run_container(&pod, &neighbour).await.expect("web");
    wait_running(&mut f.cri, &neighbour.id, WAIT).await;
    let addr = http_addr(&mut f.cri, &pod, WAIT).await;
    let ready = Instant::now();
    while answers(addr).await.map(|(s, _)| s) != Some(200) {
        assert!(ready.elapsed() < WAIT, "the neighbour does not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shim = shim_of(&f.containerd, &pod.id);
    let fds_before = fd_count(shim);
    let rss_before = rss_kib(shim);

    // An endless loop under a 300m CPU limit: held to it, and stopped by StopContainer.
    limit_pod_cpu(&pod.cgroup_parent(), 300);
    let spin = ContainerSpec::new("spin", &image).command(["/spin.wasm"]);
    let spin = f.cri.run_container(&pod, &spin).await.expect("spin");
    wait_running(&mut f.cri, &spin.id, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ticks_per_second = 100.0; // USER_HZ on Linux
    let (t0, c0) = (Instant::now(), cpu_ticks(shim));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cores = (cpu_ticks(shim) - c0) as f64 / ticks_per_second / t0.elapsed().as_secs_f64();
    eprintln!("spin under a 300m limit used {cores:.2} cores");
    assert!(cores < 0.45, "the pod's CPU limit holds: {cores:.2} cores");
    let (status, took) = answers(addr)
        .await
        .expect("the neighbour answers beside the loop");
    assert_eq!(status, 200);
    eprintln!("the neighbour answered in {took:?} beside the loop");
    let stopping = Instant::now();
    f.cri
        .stop_container(&spin.id, 2)
        .await
        .expect("StopContainer");
    let stopped = f
        .cri
        .wait_for_exit(&spin.id, WAIT)
        .await
        .expect("spin ends");
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopping.elapsed()
    );
    assert!(matches!(stopped.exit_code, 137 | 143), "{stopped:?}");
    limit_pod_cpu(&pod.cgroup_parent(), 2000);

    // A stack overflow: a trap that says so.
    let overflow = ContainerSpec::new("overflow", &image).command(["/overflow.wasm"]);
    let overflow = f
        .cri
        .run_container(&pod, &overflow)
        .await
        .expect("overflow");
    let status = f.cri.wait_for_exit(&overflow.id, WAIT).await.expect("exit");
    assert_ne!(status.exit_code, 0);
    let message = termination_message(&overflow);
    assert!(
        message.contains("call stack exhausted"),
        "{status:?}: {message}"
    );

    // Files opened until the host refuses: Spore's per-instance handle cap, named.
    let handles = ContainerSpec::new("handles", &image).command(["/handles.wasm"]);
    let handles = f.cri.run_container(&pod, &handles).await.expect("handles");
    let status = f.cri.wait_for_exit(&handles.id, WAIT).await.expect("exit");
    let log = std::fs::read_to_string(&handles.log_path).unwrap_or_default();
    let message = termination_message(&handles);
    eprintln!(
        "handles: exit {}, {message:?}\n{}",
        status.exit_code,
        cri_common::tail(&log, 3)
    );
    assert!(
        message.contains("4096 handles") || log.contains("opened 409"),
        "{status:?}: {message}\n{log}"
    );
    let settled = Instant::now();
    while fd_count(shim) > fds_before + 8 && settled.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        fd_count(shim) <= fds_before + 8,
        "the shim's descriptors came back: {fds_before} -> {}",
        fd_count(shim)
    );

    // Stdout as fast as it goes: the neighbour still answers promptly, the shim's memory stays
    // bounded, and the kubelet's stop ends it.
    let flood = ContainerSpec::new("flood", &image).command(["/flood.wasm"]);
    let flood = f.cri.run_container(&pod, &flood).await.expect("flood");
    wait_running(&mut f.cri, &flood.id, WAIT).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let (status, took) = answers(addr)
            .await
            .expect("the neighbour answers beside the flood");
        assert_eq!(status, 200);
        slowest = slowest.max(took);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rss_during = rss_kib(shim);
    let written = std::fs::metadata(&flood.log_path)
        .map(|m| m.len())
        .unwrap_or(0);
    eprintln!(
        "flood: {} MiB logged; neighbour slowest {slowest:?}; shim RSS {rss_before} -> {rss_during} KiB",
        written >> 20
    );
    assert!(written > 1 << 20, "the flood's output reaches the log");
    assert!(slowest < Duration::from_secs(2), "{slowest:?}");
    assert!(
        rss_during < rss_before + 128 * 1024,
        "{rss_before} -> {rss_during} KiB"
    );
    let stopping = Instant::now();
    f.cri
        .stop_container(&flood.id, 2)
        .await
        .expect("StopContainer");
    f.cri
        .wait_for_exit(&flood.id, WAIT)
        .await
        .expect("flood ends");
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopping.elapsed()
    );
    let _ = std::fs::remove_file(PathBuf::from(&flood.log_path));

    assert_eq!(answers(addr).await.map(|(s, _)| s), Some(200));
    f.cri.teardown_pod(&pod).await.expect("teardown");
}
