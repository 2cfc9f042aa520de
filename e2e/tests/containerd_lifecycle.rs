//! The harness's containerd starts clean, answers `ctr` and CRI, and stops leaving nothing.

use spore_e2e::{Containerd, ContainerdOptions, ContainerdVersion, CriClient, PAUSE_IMAGE};

async fn starts_and_stops_clean(version: ContainerdVersion) {
    let containerd = Containerd::start(ContainerdOptions::default().version(version))
        .expect("containerd starts");
    let base = containerd.paths().base.clone();
    let pid = containerd.pid().expect("running");
    assert!(containerd.socket().exists());

    let version_text = containerd.ctr_ok(&["version"]).expect("ctr version");
    let expected = match version {
        ContainerdVersion::V2 => "Version:  2.",
        ContainerdVersion::V1_7 => "Version:  1.7",
    };
    assert!(version_text.contains(expected), "{version_text}");

    // The pause image was imported for CRI.
    let images = containerd
        .ctr_ok(&["images", "ls", "-q"])
        .expect("ctr images ls");
    assert!(images.lines().any(|l| l == PAUSE_IMAGE), "{images}");

    // CRI answers, with both runtime handlers and a ready network.
    let mut cri = CriClient::for_containerd(&containerd)
        .await
        .expect("CRI ready");
    let status = cri.status().await.expect("status");
    if version == ContainerdVersion::V2 {
        // containerd 1.7 does not report runtime handlers.
        let handlers: Vec<String> = status
            .runtime_handlers
            .iter()
            .map(|h| h.name.clone())
            .collect();
        assert!(handlers.contains(&"runc".to_owned()), "{handlers:?}");
        assert!(handlers.contains(&"spore".to_owned()), "{handlers:?}");
    }
    let config = status
        .info
        .get("config")
        .expect("verbose status has the CRI config");
    assert!(config.contains("io.containerd.spore.v1"), "{config}");

    // A clean startup: no plugin failed to load for a reason other than the ones expected here.
    let log = containerd.log();
    assert!(!log.contains("level=fatal"), "{log}");
    assert!(!log.contains("failed to load cni"), "{log}");

    let leftovers = containerd.shutdown();
    assert!(leftovers.is_empty(), "{leftovers}");
    assert!(!base.exists(), "{} remains", base.display());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "containerd {pid} still runs"
    );
}

#[tokio::test]
async fn containerd_2_starts_and_stops_leaving_nothing() {
    starts_and_stops_clean(ContainerdVersion::V2).await;
}

#[tokio::test]
async fn containerd_1_7_starts_and_stops_leaving_nothing() {
    if !ContainerdVersion::V1_7
        .bin_dir()
        .join("containerd")
        .is_file()
    {
        panic!(
            "containerd 1.7 is missing: run `{}`",
            ContainerdVersion::V1_7.setup_command()
        );
    }
    starts_and_stops_clean(ContainerdVersion::V1_7).await;
}

/// A test that fails half way leaves running pods behind: dropping the harness removes them
/// all (containers, shims, netns, pod cgroups, the bridge, CNI's cache, the directories).
#[tokio::test]
async fn dropping_containerd_removes_pods_a_failed_test_left() {
    use spore_e2e::{ContainerSpec, Registry, cgroup, image};
    let registry = Registry::start().expect("registry");
    let containerd =
        Containerd::start(ContainerdOptions::default().plain_http_registry(registry.host()))
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
    let pod = cri
        .run_pod_sandbox("abandoned", "default", "runc")
        .await
        .expect("RunPodSandbox");
    let spec = ContainerSpec::new("sleeper", &reference).command(["sleep", "3600"]);
    cri.run_container(&pod, &spec)
        .await
        .expect("container runs");

    let pids = cgroup::processes(&pod.cgroup_parent()).expect("pod processes");
    assert_eq!(pids.len(), 2, "pause and sleep: {pids:?}");
    let shims = containerd.shim_processes();
    assert!(!shims.is_empty(), "a runc shim serves the pod");
    let bridge = containerd.network().bridge();
    assert!(containerd.network().bridge_exists(), "CNI created {bridge}");
    let cache_prefix = format!("{}-{}", containerd.network().name(), pod.id);
    let cached = |prefix: &str| {
        std::fs::read_dir("/var/lib/cni/results")
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(prefix))
            })
            .unwrap_or(false)
    };
    assert!(cached(&cache_prefix), "CNI cached the pod's result");
    let base = containerd.paths().base.clone();

    drop(cri);
    drop(containerd);

    for pid in pids.iter().chain(shims.iter().map(|(pid, _)| pid)) {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z"),
            "process {pid} survived: {stat}"
        );
    }
    assert!(
        cgroup::existing_dirs(&pod.cgroup_parent())
            .expect("dirs")
            .is_empty()
    );
    assert!(
        !std::path::Path::new("/sys/class/net")
            .join(&bridge)
            .exists(),
        "{bridge} remains"
    );
    assert!(!cached(&cache_prefix), "CNI cache entry remains");
    assert!(!base.exists(), "{} remains", base.display());
}
