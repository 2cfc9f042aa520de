//! The CRI harness with plain runc (handler `runc`), independent of the Spore shim: pods,
//! logs, exit codes, ExecSync, the pause sandbox with a CNI address, and a clean teardown.

use std::time::Duration;

use k8s_cri::v1 as cri;
use spore_e2e::cri_log::{LogStream, stream_text, wait_for_log_line};
use spore_e2e::{
    ContainerSpec, Containerd, ContainerdOptions, ContainerdVersion, CriClient, Registry, cgroup,
    image, read_cri_log,
};

/// A containerd, a registry holding busybox, and a CRI client with busybox pulled.
async fn setup() -> (Registry, Containerd, CriClient, String) {
    setup_version(ContainerdVersion::V2).await
}

async fn setup_version(version: ContainerdVersion) -> (Registry, Containerd, CriClient, String) {
    let registry = Registry::start().expect("registry");
    let containerd = Containerd::start(
        ContainerdOptions::default()
            .version(version)
            .plain_http_registry(registry.host()),
    )
    .expect("containerd");
    let busybox = image::busybox()
        .expect("busybox-static")
        .build()
        .expect("build");
    let reference = busybox
        .push_http(&registry.host(), "spore/busybox", "1")
        .expect("push");
    let mut cri = CriClient::for_containerd(&containerd).await.expect("CRI");
    cri.pull_image(&reference).await.expect("PullImage");
    (registry, containerd, cri, reference)
}

#[tokio::test]
async fn a_runc_pod_echoes_to_its_cri_log_and_exits_zero() {
    let (_registry, containerd, mut cri, busybox) = setup().await;
    let pod = cri
        .run_pod_sandbox("echo", "default", "runc")
        .await
        .expect("RunPodSandbox");
    let spec = ContainerSpec::new("echo", &busybox).command(["echo", "hello"]);
    let container = cri
        .run_container(&pod, &spec)
        .await
        .expect("create and start");
    assert_eq!(container.log_path, pod.log_dir.join("echo").join("0.log"));

    let status = cri
        .wait_for_exit(&container.id, Duration::from_secs(20))
        .await
        .expect("exits");
    assert_eq!(status.exit_code, 0, "{status:?}");
    assert_eq!(status.reason, "Completed");
    assert_eq!(status.log_path, container.log_path.to_string_lossy());

    let lines = read_cri_log(&container.log_path).expect("CRI log");
    assert_eq!(stream_text(&lines, LogStream::Stdout), ["hello"]);

    // A failing command's exit code and stderr come through too (a restart: attempt 1).
    let spec = ContainerSpec::new("echo", &busybox)
        .command(["sh", "-c", "echo oops >&2; exit 3"])
        .attempt(1);
    let failing = cri
        .run_container(&pod, &spec)
        .await
        .expect("create and start");
    assert_eq!(failing.log_path, pod.log_dir.join("echo").join("1.log"));
    let status = cri
        .wait_for_exit(&failing.id, Duration::from_secs(20))
        .await
        .expect("exits");
    assert_eq!(status.exit_code, 3);
    assert_eq!(status.reason, "Error");
    let lines = read_cri_log(&failing.log_path).expect("CRI log");
    assert_eq!(stream_text(&lines, LogStream::Stderr), ["oops"]);

    cri.teardown_pod(&pod).await.expect("teardown");
    let leftovers = containerd.leftovers();
    assert!(leftovers.is_empty(), "{leftovers}");
}

#[tokio::test]
async fn exec_sync_runs_in_a_running_busybox_container() {
    let (_registry, containerd, mut cri, busybox) = setup().await;
    let pod = cri
        .run_pod_sandbox("exec", "default", "runc")
        .await
        .expect("RunPodSandbox");
    let spec = ContainerSpec::new("sleeper", &busybox)
        .command(["sh", "-c", "echo ready; exec sleep 3600"])
        .env("SPORE_TEST", "exec-env");
    let container = cri
        .run_container(&pod, &spec)
        .await
        .expect("create and start");
    wait_for_log_line(&container.log_path, "ready", Duration::from_secs(20))
        .await
        .expect("container runs");
    let status = cri.container_status(&container.id).await.expect("status");
    assert_eq!(status.state(), cri::ContainerState::ContainerRunning);

    let out = cri
        .exec_sync(
            &container.id,
            &["sh", "-c", "echo $SPORE_TEST; echo err >&2; exit 7"],
            10,
        )
        .await
        .expect("ExecSync");
    assert_eq!(out.exit_code, 7);
    assert_eq!(out.stdout, "exec-env\n");
    assert_eq!(out.stderr, "err\n");

    // Stats of a running container are real figures.
    let stats = cri
        .container_stats(&container.id)
        .await
        .expect("ContainerStats");
    let memory = stats
        .memory
        .and_then(|m| m.working_set_bytes)
        .map(|v| v.value)
        .unwrap_or(0);
    assert!(memory > 0, "working set is 0");
    let pod_stats = cri
        .pod_sandbox_stats(&pod.id)
        .await
        .expect("PodSandboxStats");
    let pod_memory = pod_stats
        .linux
        .and_then(|l| l.memory)
        .and_then(|m| m.working_set_bytes)
        .map(|v| v.value)
        .unwrap_or(0);
    assert!(pod_memory > 0, "pod working set is 0");

    cri.stop_container(&container.id, 1)
        .await
        .expect("StopContainer");
    let status = cri
        .wait_for_exit(&container.id, Duration::from_secs(10))
        .await
        .expect("stopped");
    assert_eq!(
        status.exit_code, 137,
        "sleep as PID 1 ignores SIGTERM, so it is killed: {status:?}"
    );
    cri.remove_container(&container.id)
        .await
        .expect("RemoveContainer");
    cri.teardown_pod(&pod).await.expect("teardown");
    assert!(
        containerd.leftovers().is_empty(),
        "{}",
        containerd.leftovers()
    );
}

#[tokio::test]
async fn the_pause_sandbox_gets_a_cni_address_and_tears_down_clean() {
    let (_registry, containerd, mut cri, busybox) = setup().await;
    let pod = cri
        .run_pod_sandbox("net", "default", "runc")
        .await
        .expect("RunPodSandbox");

    let status = cri.pod_sandbox_status(&pod.id).await.expect("status");
    let sandbox = status.status.as_ref().expect("status");
    assert_eq!(sandbox.state(), cri::PodSandboxState::SandboxReady);
    assert_eq!(sandbox.runtime_handler, "runc");
    let ip = cri
        .pod_ip(&pod.id)
        .await
        .expect("status")
        .expect("the pod has an IPv4 address");
    assert!(
        containerd.network().contains(ip),
        "{ip} is not in {}",
        containerd.network().subnet()
    );
    let netns = cri
        .pod_netns_path(&pod.id)
        .await
        .expect("status")
        .expect("netns path");
    assert!(
        netns.starts_with(&containerd.paths().state),
        "{}",
        netns.display()
    );
    assert!(containerd.mounts().contains(&netns), "the netns is a mount");
    assert!(
        !cgroup::existing_dirs(&pod.cgroup_parent())
            .expect("dirs")
            .is_empty()
    );

    // The pod's address answers from the host: busybox httpd serves on it.
    let spec = ContainerSpec::new("web", &busybox).command([
        "sh",
        "-c",
        "mkdir -p /www && echo pod-page > /www/index.html && exec httpd -f -p 8080 -h /www",
    ]);
    let web = cri.run_container(&pod, &spec).await.expect("httpd runs");
    let url = format!("http://{ip}:8080/index.html");
    let mut body = String::new();
    for _ in 0..100 {
        if let Ok(response) = spore_e2e::http::request("GET", &url, &[], &[]) {
            body = response.text();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(body, "pod-page\n");

    // Two runc containers: the sandbox, running the harness's pause program, and httpd.
    let containers = containerd.runc_containers();
    assert_eq!(containers.len(), 2, "pause and httpd: {containers:?}");
    let commands: Vec<String> = cgroup::processes(&pod.cgroup_parent())
        .expect("pod processes")
        .iter()
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .replace('\0', " ")
        })
        .collect();
    assert!(
        commands.iter().any(|c| c.trim() == "/pause"),
        "{commands:?}"
    );

    cri.stop_container(&web.id, 0).await.expect("StopContainer");
    cri.teardown_pod(&pod).await.expect("teardown");
    assert!(!netns.exists(), "netns {} remains", netns.display());
    let leftovers = containerd.leftovers();
    assert!(leftovers.is_empty(), "{leftovers}");
    assert!(
        cgroup::existing_dirs(&pod.cgroup_parent())
            .expect("dirs")
            .is_empty()
    );
    assert!(cri.list_pod_sandboxes().await.expect("list").is_empty());
}

/// The 1.7 config layout gives the same CRI behaviour: sandbox with an address, log, exit code.
#[tokio::test]
async fn a_runc_pod_runs_on_containerd_1_7() {
    let (_registry, containerd, mut cri, busybox) = setup_version(ContainerdVersion::V1_7).await;
    let pod = cri
        .run_pod_sandbox("echo17", "default", "runc")
        .await
        .expect("RunPodSandbox");
    let ip = cri
        .pod_ip(&pod.id)
        .await
        .expect("status")
        .expect("an address");
    assert!(containerd.network().contains(ip), "{ip}");
    let spec = ContainerSpec::new("echo", &busybox).command(["echo", "hello from 1.7"]);
    let container = cri
        .run_container(&pod, &spec)
        .await
        .expect("create and start");
    let status = cri
        .wait_for_exit(&container.id, Duration::from_secs(20))
        .await
        .expect("exits");
    assert_eq!(status.exit_code, 0);
    let lines = read_cri_log(&container.log_path).expect("CRI log");
    assert_eq!(stream_text(&lines, LogStream::Stdout), ["hello from 1.7"]);
    cri.teardown_pod(&pod).await.expect("teardown");
    let leftovers = containerd.leftovers();
    assert!(leftovers.is_empty(), "{leftovers}");
}
