//! Spore pods through containerd's CRI API, driven as the kubelet drives them (handler `spore`):
//! a Wasm pod's life from RunPodSandbox to RemovePodSandbox, a Wasm container beside a busybox
//! sidecar in one network namespace, failures a person can act on, stats, a clean teardown,
//! and 20 pods in a row without leaks. Real containerd (2.x, and 1.7 once), runc, CNI and a
//! loopback registry; the guests come from `bash hack/build-guests.sh`.

mod cri_common;

use std::time::Duration;

use cri_common::{
    CriFixture, HELLO_GREETING, PodTrace, WASM_EXEC_REFUSAL, container_state, fd_count, remains_of,
    spore_shims, thread_count, wait_running, wait_until_nothing_remains,
};
use spore_e2e::cri_log::{LogStream, stream_text, wait_for_log_line};
use spore_e2e::{ContainerSpec, ContainerdVersion, cgroup, read_cri_log};

const EXIT: Duration = Duration::from_secs(30);
const GONE: Duration = Duration::from_secs(15);

/// Test 1 on either containerd: one hello Wasm container, log, exit code, teardown.
async fn a_wasm_pod_lives_and_goes(version: ContainerdVersion) {
    let mut f = CriFixture::start(version, false).await;
    let pod = f.run_spore_pod("hello").await;
    let status = f.cri.pod_sandbox_status(&pod.id).await.expect("status");
    let sandbox = status.status.as_ref().expect("sandbox status");
    assert_eq!(sandbox.runtime_handler, "spore");
    let ip = f
        .cri
        .pod_ip(&pod.id)
        .await
        .expect("status")
        .expect("the pod has an address");
    assert!(f.containerd.network().contains(ip), "{ip}");

    let spec = ContainerSpec::new("hello", &f.wasm)
        .command(["/hello.wasm"])
        .args(["one", "two words"]);
    let container = match f.cri.run_container(&pod, &spec).await {
        Ok(c) => c,
        Err(e) => panic!("create and start: {e}\n{}", f.log_tail()),
    };
    assert_eq!(container.log_path, pod.log_dir.join("hello").join("0.log"));
    let status = f
        .cri
        .wait_for_exit(&container.id, EXIT)
        .await
        .expect("the Wasm container exits");
    assert_eq!(status.exit_code, 0, "{status:?}");
    assert_eq!(status.reason, "Completed", "{status:?}");
    assert_eq!(status.log_path, container.log_path.to_string_lossy());
    // containerd takes `started_at` from its own clock after the shim answers Start; the shim
    // reports a guest's exit no earlier than 100 ms after it started it, so even a guest as short
    // as hello never finishes "before" it started.
    assert!(
        status.started_at > 0 && status.finished_at >= status.started_at,
        "{status:?}"
    );

    // containerd copies the output into the log file on its own; it may trail the exit status.
    spore_e2e::cri_log::wait_for_log_line(
        &container.log_path,
        r#"args: ["one", "two words"]"#,
        EXIT,
    )
    .await
    .expect("the output reaches the CRI log");
    let lines = read_cri_log(&container.log_path).expect("a kubelet-format CRI log");
    assert_eq!(
        stream_text(&lines, LogStream::Stdout),
        [HELLO_GREETING, r#"args: ["one", "two words"]"#],
        "{lines:?}"
    );

    let trace = PodTrace::of(&mut f.cri, &pod).await;
    assert!(trace.netns.is_some(), "the sandbox has a netns");
    f.cri.teardown_pod(&pod).await.expect("teardown");
    let remains = wait_until_nothing_remains(&f.containerd, &trace, GONE).await;
    assert!(remains.is_empty(), "{remains:#?}\n{}", f.log_tail());
    assert!(f.cri.list_pod_sandboxes().await.expect("list").is_empty());
    assert!(f.cri.list_containers(None).await.expect("list").is_empty());
}

#[tokio::test]
async fn a_wasm_pod_runs_logs_exits_zero_and_tears_down() {
    a_wasm_pod_lives_and_goes(ContainerdVersion::V2).await;
}

#[tokio::test]
async fn a_wasm_pod_runs_on_containerd_1_7() {
    a_wasm_pod_lives_and_goes(ContainerdVersion::V1_7).await;
}

/// Test 2: a Wasm listener and a busybox sidecar share the pod's network namespace.
#[tokio::test]
async fn a_wasm_container_and_a_busybox_sidecar_share_the_pod() {
    let mut f = CriFixture::start(ContainerdVersion::V2, true).await;
    let busybox = f.busybox().to_owned();
    let pod = f.run_spore_pod("mixed").await;

    let wasm_spec = ContainerSpec::new("listener", &f.wasm)
        .command(["/listen.wasm"])
        .env("PORT", "18080");
    let wasm = match f.cri.run_container(&pod, &wasm_spec).await {
        Ok(c) => c,
        Err(e) => panic!("Wasm container: {e}\n{}", f.log_tail()),
    };
    let sidecar_spec = ContainerSpec::new("sidecar", &busybox).command([
        "sh",
        "-c",
        "echo sidecar ready; exec sleep 3600",
    ]);
    let sidecar = match f.cri.run_container(&pod, &sidecar_spec).await {
        Ok(c) => c,
        Err(e) => panic!("sidecar: {e}\n{}", f.log_tail()),
    };
    wait_for_log_line(&wasm.log_path, "listening on 127.0.0.1:18080", EXIT)
        .await
        .expect("the Wasm container logs");
    wait_for_log_line(&sidecar.log_path, "sidecar ready", EXIT)
        .await
        .expect("the sidecar logs");
    wait_running(&mut f.cri, &wasm.id, EXIT).await;
    wait_running(&mut f.cri, &sidecar.id, EXIT).await;

    // Exec into the sidecar works.
    let out = f
        .cri
        .exec_sync(&sidecar.id, &["echo", "ok"], 10)
        .await
        .expect("ExecSync into the sidecar");
    assert_eq!((out.exit_code, out.stdout.as_str()), (0, "ok\n"), "{out:?}");

    // The sidecar reaches the Wasm listener on localhost: one network namespace. (busybox
    // nc, not wget: Debian's static busybox wget dies of SIGSEGV in a minimal rootfs.)
    let out = f
        .cri
        .exec_sync(
            &sidecar.id,
            &[
                "sh",
                "-c",
                r"printf 'GET / HTTP/1.0\r\n\r\n' | nc 127.0.0.1 18080",
            ],
            15,
        )
        .await
        .expect("ExecSync nc");
    assert_eq!(out.exit_code, 0, "{out:?}\n{}", f.log_tail());
    assert!(out.stdout.starts_with("HTTP/1.0 200 OK\r\n"), "{out:?}");
    assert!(out.stdout.ends_with("\r\n\r\nhello from wasm\n"), "{out:?}");
    wait_for_log_line(&wasm.log_path, "answered a connection", EXIT)
        .await
        .expect("the Wasm container logged the connection");

    // Exec into the Wasm container is refused with a clear message.
    match f
        .cri
        .exec_sync(&wasm.id, &["sh", "-c", "echo no"], 10)
        .await
    {
        Ok(out) => panic!("ExecSync into a Wasm container succeeded: {out:?}"),
        Err(e) => assert!(e.to_string().contains(WASM_EXEC_REFUSAL), "{e}"),
    }
    // Both still run after the refused exec.
    for id in [&wasm.id, &sidecar.id] {
        let status = f.cri.container_status(id).await.expect("status");
        assert_eq!(status.state, container_state::RUNNING, "{status:?}");
    }

    let trace = PodTrace::of(&mut f.cri, &pod).await;
    f.cri.teardown_pod(&pod).await.expect("teardown");
    let remains = wait_until_nothing_remains(&f.containerd, &trace, GONE).await;
    assert!(remains.is_empty(), "{remains:#?}\n{}", f.log_tail());
}

/// Test 3: a trap, a bad module, and the kubelet's restart of a container.
#[tokio::test]
async fn failures_are_reported_and_restarts_work() {
    let mut f = CriFixture::start(ContainerdVersion::V2, false).await;
    let pod = f.run_spore_pod("failing").await;

    // A trap: exit 134, reason Error, and the trap's text in the log the kubelet tails.
    let trap = f
        .cri
        .run_container(
            &pod,
            &ContainerSpec::new("trap", &f.wasm).command(["/trap.wasm"]),
        )
        .await
        .expect("create and start the trapping container");
    let status = f.cri.wait_for_exit(&trap.id, EXIT).await.expect("it exits");
    assert_eq!(status.exit_code, 134, "{status:?}");
    assert_eq!(status.reason, "Error", "{status:?}");
    // The CRI logger may write the last line just after the container shows exited.
    for line in ["about to trap", "guest trapped"] {
        wait_for_log_line(&trap.log_path, line, EXIT)
            .await
            .expect("the output reaches the CRI log");
    }
    let lines = read_cri_log(&trap.log_path).expect("CRI log");
    assert_eq!(stream_text(&lines, LogStream::Stdout), ["about to trap"]);
    let stderr = stream_text(&lines, LogStream::Stderr).join("\n");
    assert!(stderr.contains("guest trapped"), "{stderr}");
    assert!(
        stderr.contains("wasm `unreachable` instruction executed"),
        "{stderr}"
    );
    eprintln!(
        "trap: reason {:?}, message {:?}, stderr {stderr:?}",
        status.reason, status.message
    );

    // A bad module: containerd creates the task (and so calls the shim) at StartContainer;
    // the error names the file wherever it comes, and ContainerStatus keeps it.
    let bad_spec = ContainerSpec::new("bad", &f.wasm).command(["/bad.wasm"]);
    match f.cri.create_container(&pod, &bad_spec).await {
        Err(e) => assert!(e.to_string().contains("/bad.wasm"), "CreateContainer: {e}"),
        Ok(bad) => {
            let started = f.cri.start_container(&bad.id).await;
            let error = started.expect_err("a text file does not start as a Wasm container");
            let error = error.to_string();
            assert!(error.contains("/bad.wasm"), "StartContainer: {error}");
            assert!(
                error.contains("not a Wasm module"),
                "StartContainer: {error}"
            );
            let status = f.cri.container_status(&bad.id).await.expect("status");
            assert_eq!(status.state, container_state::EXITED, "{status:?}");
            assert_eq!(status.reason, "StartError", "{status:?}");
            assert!(status.message.contains("/bad.wasm"), "{status:?}");
            eprintln!(
                "bad module: reason {:?}, message {:?}",
                status.reason, status.message
            );
            f.cri.remove_container(&bad.id).await.expect("remove");
        }
    }

    // The kubelet's restart: attempt 1 of the same name beside the exited attempt 0, then
    // attempt 2 after the earlier attempts are removed.
    let first = f
        .cri
        .run_container(
            &pod,
            &ContainerSpec::new("app", &f.wasm).command(["/hello.wasm"]),
        )
        .await
        .expect("attempt 0");
    let status = f.cri.wait_for_exit(&first.id, EXIT).await.expect("exits");
    assert_eq!(status.exit_code, 0, "{status:?}");
    let second = f
        .cri
        .run_container(
            &pod,
            &ContainerSpec::new("app", &f.wasm)
                .command(["/hello.wasm"])
                .attempt(1),
        )
        .await
        .expect("attempt 1 beside attempt 0");
    let status = f.cri.wait_for_exit(&second.id, EXIT).await.expect("exits");
    assert_eq!(status.exit_code, 0, "{status:?}");
    assert_eq!(second.log_path, pod.log_dir.join("app").join("1.log"));
    wait_for_log_line(&second.log_path, HELLO_GREETING, EXIT)
        .await
        .expect("attempt 1 logs");
    let lines = read_cri_log(&second.log_path).expect("log of attempt 1");
    assert_eq!(
        stream_text(&lines, LogStream::Stdout)
            .first()
            .map(String::as_str),
        Some(HELLO_GREETING)
    );
    for id in [&first.id, &second.id] {
        f.cri.remove_container(id).await.expect("RemoveContainer");
    }
    let third = f
        .cri
        .run_container(
            &pod,
            &ContainerSpec::new("app", &f.wasm)
                .command(["/hello.wasm"])
                .attempt(2),
        )
        .await
        .expect("attempt 2 after removing the earlier ones");
    let status = f.cri.wait_for_exit(&third.id, EXIT).await.expect("exits");
    assert_eq!(status.exit_code, 0, "{status:?}");
    wait_for_log_line(&third.log_path, HELLO_GREETING, EXIT)
        .await
        .expect("attempt 2 logs");
    let lines = read_cri_log(&third.log_path).expect("log of attempt 2");
    assert_eq!(
        stream_text(&lines, LogStream::Stdout)
            .first()
            .map(String::as_str),
        Some(HELLO_GREETING)
    );

    let trace = PodTrace::of(&mut f.cri, &pod).await;
    f.cri.teardown_pod(&pod).await.expect("teardown");
    let remains = wait_until_nothing_remains(&f.containerd, &trace, GONE).await;
    assert!(remains.is_empty(), "{remains:#?}\n{}", f.log_tail());
}

/// Test 4: ContainerStats and PodSandboxStats of a running Wasm container.
#[tokio::test]
async fn stats_show_a_running_wasm_containers_memory() {
    let mut f = CriFixture::start(ContainerdVersion::V2, false).await;
    let pod = f.run_spore_pod("stats").await;
    let sleeper = f
        .cri
        .run_container(
            &pod,
            &ContainerSpec::new("sleeper", &f.wasm).command(["/sleeper.wasm"]),
        )
        .await
        .expect("create and start");
    wait_for_log_line(&sleeper.log_path, "sleeping", EXIT)
        .await
        .expect("the sleeper runs");
    wait_running(&mut f.cri, &sleeper.id, EXIT).await;

    let stats = match f.cri.container_stats(&sleeper.id).await {
        Ok(s) => s,
        Err(e) => panic!("ContainerStats: {e}\n{}", f.log_tail()),
    };
    let memory = memory_bytes!(stats.memory.as_ref());
    assert!(memory > 0, "container memory is 0: {stats:?}");
    let cpu = stats
        .cpu
        .as_ref()
        .and_then(|c| c.usage_core_nano_seconds.as_ref())
        .map(|v| v.value);
    assert!(cpu.is_some(), "no CPU time: {stats:?}");
    eprintln!("container stats: memory {memory} B, cpu {cpu:?} ns");

    let pod_stats = match f.cri.pod_sandbox_stats(&pod.id).await {
        Ok(s) => s,
        Err(e) => panic!("PodSandboxStats: {e}\n{}", f.log_tail()),
    };
    let linux = pod_stats.linux.as_ref().expect("linux pod stats");
    let pod_memory = memory_bytes!(linux.memory.as_ref());
    assert!(pod_memory > 0, "pod memory is 0: {pod_stats:?}");
    let listed = linux
        .containers
        .iter()
        .find(|c| c.attributes.as_ref().is_some_and(|a| a.id == sleeper.id))
        .expect("the pod's stats list the Wasm container");
    let listed_memory = memory_bytes!(listed.memory.as_ref());
    assert!(listed_memory > 0, "{listed:?}");
    eprintln!("pod stats: memory {pod_memory} B, Wasm container in it {listed_memory} B");

    let trace = PodTrace::of(&mut f.cri, &pod).await;
    f.cri.teardown_pod(&pod).await.expect("teardown");
    let remains = wait_until_nothing_remains(&f.containerd, &trace, GONE).await;
    assert!(remains.is_empty(), "{remains:#?}\n{}", f.log_tail());
}

/// Test 5: while a mixed pod runs, its parts are where the design puts them (one shim, in the
/// pod's cgroup; runc state for the sidecar and none for the sandbox, the shim's init; a
/// netns); after teardown none of them remains.
#[tokio::test]
async fn teardown_leaves_no_shim_runc_container_mount_netns_or_cgroup() {
    let mut f = CriFixture::start(ContainerdVersion::V2, true).await;
    let busybox = f.busybox().to_owned();
    let pod = f.run_spore_pod("teardown").await;
    let wasm = f
        .cri
        .run_container(
            &pod,
            &ContainerSpec::new("sleeper", &f.wasm).command(["/sleeper.wasm"]),
        )
        .await
        .expect("Wasm container");
    let sidecar = f
        .cri
        .run_container(
            &pod,
            &ContainerSpec::new("sidecar", &busybox).command(["sleep", "3600"]),
        )
        .await
        .expect("sidecar");
    wait_for_log_line(&wasm.log_path, "sleeping", EXIT)
        .await
        .expect("the Wasm container runs");
    wait_running(&mut f.cri, &sidecar.id, EXIT).await;

    let trace = PodTrace::of(&mut f.cri, &pod).await;
    // One shim serves the pod, and it sits in the pod's cgroup.
    let shims = spore_shims(&f.containerd);
    assert_eq!(shims.len(), 1, "one shim per pod: {shims:?}");
    let in_pod = cgroup::processes(&pod.cgroup_parent()).expect("pod processes");
    assert!(
        in_pod.contains(&shims[0].0),
        "the shim {} is not in the pod cgroup {}: {in_pod:?}",
        shims[0].0,
        pod.cgroup_parent()
    );
    // It sits there for the controllers that account and limit: memory and CPU (v1), or the
    // unified hierarchy when the pod has a directory there.
    let parent = pod.cgroup_parent();
    let unified_pod_dirs: Vec<_> = cgroup::existing_dirs(&parent)
        .expect("dirs")
        .into_iter()
        .filter(|d| d.join("cgroup.controllers").exists())
        .collect();
    let has_unified_pod_dir = !unified_pod_dirs.is_empty();
    // A unified hierarchy without controllers (a hybrid host's) only tracks processes: the
    // shim joins it 2 s after its start, off the pod's start (`host/shim_cgroup.rs`).
    let unified_accounts = unified_pod_dirs.iter().any(|d| {
        std::fs::read_to_string(d.join("cgroup.controllers")).is_ok_and(|c| !c.trim().is_empty())
    });
    let in_unified = |pid: i32| {
        cri_common::cgroups_of(pid)
            .iter()
            .any(|(controllers, path)| controllers.is_empty() && path.starts_with(&parent))
    };
    if has_unified_pod_dir && !unified_accounts {
        let waited = std::time::Instant::now();
        while !in_unified(shims[0].0) && waited.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let shim_cgroups = cri_common::cgroups_of(shims[0].0);
    let mut checked = 0;
    for (controllers, path) in &shim_cgroups {
        let counts = controllers
            .split(',')
            .any(|c| c == "memory" || c == "cpu" || c == "cpuacct")
            || controllers.is_empty() && has_unified_pod_dir;
        if counts {
            assert!(
                path.starts_with(&parent),
                "the shim's {controllers:?} cgroup is {path}, not in the pod's {parent}: {shim_cgroups:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 1, "no memory or CPU cgroup in {shim_cgroups:?}");
    eprintln!("shim cgroups: {shim_cgroups:?}");
    // The checks below can see what they look for: runc state of the sidecar (the sandbox is
    // the shim's init, with none), the netns mount.
    let runc_state = cri_common::runc_state_dirs(
        &cri_common::runc_roots(&f.containerd),
        &[pod.id.clone(), sidecar.id.clone()],
    );
    assert_eq!(runc_state.len(), 1, "the sidecar only: {runc_state:?}");
    assert!(runc_state[0].ends_with(&sidecar.id), "{runc_state:?}");
    let netns = trace.netns.clone().expect("netns");
    assert!(
        f.containerd.mounts().contains(&netns),
        "{}",
        netns.display()
    );
    assert!(
        !remains_of(&f.containerd, &trace).is_empty(),
        "a running pod has parts"
    );

    f.cri.teardown_pod(&pod).await.expect("teardown");
    let remains = wait_until_nothing_remains(&f.containerd, &trace, GONE).await;
    assert!(remains.is_empty(), "{remains:#?}\n{}", f.log_tail());
    assert!(spore_shims(&f.containerd).is_empty());
    assert!(!netns.exists());
    assert!(
        cri_common::runc_state_dirs(&cri_common::runc_roots(&f.containerd), &trace.ids())
            .is_empty()
    );
}

/// Test 6: 20 Wasm pods created and removed one after another.
#[tokio::test]
async fn twenty_pods_in_a_row_all_succeed_and_leak_nothing() {
    let mut f = CriFixture::start(ContainerdVersion::V2, false).await;
    let containerd_pid = f.containerd.pid().expect("containerd runs");
    let own_pid = std::process::id();
    let mut baseline = None;
    for i in 0..20 {
        let name = format!("loop-{i}");
        let pod = f.run_spore_pod(&name).await;
        let container = match f
            .cri
            .run_container(
                &pod,
                &ContainerSpec::new("hello", &f.wasm).command(["/hello.wasm"]),
            )
            .await
        {
            Ok(c) => c,
            Err(e) => panic!("pod {i}: {e}\n{}", f.log_tail()),
        };
        let status = f
            .cri
            .wait_for_exit(&container.id, EXIT)
            .await
            .unwrap_or_else(|e| panic!("pod {i}: {e}"));
        assert_eq!(status.exit_code, 0, "pod {i}: {status:?}");
        // The CRI logger may write the last line just after the container shows exited
        // (containerd's logger copies through an in-memory pipe); kubelet readers see it.
        let waited = wait_for_log_line(&container.log_path, HELLO_GREETING, EXIT).await;
        let lines = read_cri_log(&container.log_path).expect("CRI log");
        assert!(waited.is_ok(), "pod {i}: {waited:?}\n{}", f.log_tail());
        assert_eq!(
            stream_text(&lines, LogStream::Stdout)
                .first()
                .map(String::as_str),
            Some(HELLO_GREETING),
            "pod {i}: log {lines:?}\n{}",
            f.log_tail()
        );
        let trace = PodTrace::of(&mut f.cri, &pod).await;
        f.cri
            .teardown_pod(&pod)
            .await
            .unwrap_or_else(|e| panic!("pod {i} teardown: {e}\n{}", f.log_tail()));
        let remains = wait_until_nothing_remains(&f.containerd, &trace, GONE).await;
        assert!(
            remains.is_empty(),
            "pod {i}: {remains:#?}\n{}",
            f.log_tail()
        );
        if i == 0 {
            // After the first pod: caches warm, plugins loaded.
            baseline = Some((
                fd_count(containerd_pid),
                thread_count(containerd_pid),
                fd_count(own_pid),
            ));
        }
    }
    let (containerd_fds, containerd_threads, own_fds) = baseline.expect("baseline");
    let after = (
        fd_count(containerd_pid),
        thread_count(containerd_pid),
        fd_count(own_pid),
    );
    eprintln!(
        "after pod 1: containerd {containerd_fds} fds, {containerd_threads} threads, test {own_fds} fds; after pod 20: {after:?}"
    );
    assert!(
        after.0 <= containerd_fds + 10,
        "containerd fds grew from {containerd_fds} to {}",
        after.0
    );
    assert!(
        after.1 <= containerd_threads + 20,
        "containerd threads grew from {containerd_threads} to {}",
        after.1
    );
    assert!(
        after.2 <= own_fds + 10,
        "the test's fds grew from {own_fds} to {}",
        after.2
    );
    assert!(spore_shims(&f.containerd).is_empty());
    assert!(f.cri.list_pod_sandboxes().await.expect("list").is_empty());
    assert!(
        f.containerd
            .leftovers_after(Duration::from_secs(5))
            .is_empty()
    );
}

/// The kubelet's StopPodSandbox kills the sandbox while, on a second path, containerd waits for
/// its exit to delete it and close its connection to the shim. The shim records a native
/// process's exit only after the Kill is answered, so the close cannot cut the answer off
/// ("ttrpc: closed", seen once in about 40 full runs before). The debug shim's
/// `slow-kill-answer` fault answers each Kill 500 ms late, so the exit comes first every time
/// unless the shim orders them. 40 pods stopped 8 at a time.
#[tokio::test(flavor = "multi_thread")]
async fn forty_sandboxes_stopped_at_once_all_answer() {
    let mut f = CriFixture::start_with(ContainerdVersion::V2, false, |options| {
        options.env(spore_shim::faults::FAULT_ENV, "slow-kill-answer")
    })
    .await;
    let mut pods = Vec::new();
    for i in 0..40 {
        let pod = f.run_spore_pod(&format!("stop-{i}")).await;
        let hello = ContainerSpec::new("hello", &f.wasm).command(["/hello.wasm"]);
        let hello = f.cri.run_container(&pod, &hello).await.expect("hello");
        f.cri.wait_for_exit(&hello.id, EXIT).await.expect("exit");
        pods.push(pod);
    }
    for batch in pods.chunks(8) {
        let mut stops = tokio::task::JoinSet::new();
        for pod in batch {
            let (mut cri, id) = (f.cri.clone(), pod.id.clone());
            stops.spawn(async move { (cri.stop_pod_sandbox(&id).await, id) });
        }
        while let Some(stopped) = stops.join_next().await {
            let (result, id) = stopped.expect("the stop's task");
            assert!(
                result.is_ok(),
                "StopPodSandbox {id}: {result:?}\n{}",
                f.log_tail()
            );
        }
    }
    for pod in &pods {
        f.cri.teardown_pod(pod).await.expect("teardown");
    }
}

/// The kubelet removes a pod's cgroup as soon as RemovePodSandbox returns, which can be before
/// the pod's shim has exited; the shim leaves the cgroup before it answers its last Shutdown.
/// The debug shim's `slow-exit` fault keeps it alive 500 ms after that answer, so the removal
/// finds the shim's `spore-wasm` leaf every time unless it has left already.
#[tokio::test]
async fn the_pods_cgroup_can_go_as_soon_as_the_pod_is_removed() {
    let mut f = CriFixture::start_with(ContainerdVersion::V2, false, |options| {
        options.env(spore_shim::faults::FAULT_ENV, "slow-exit")
    })
    .await;
    let pod = f.run_spore_pod("cgroup").await;
    let hello = ContainerSpec::new("hello", &f.wasm).command(["/hello.wasm"]);
    let hello = f.cri.run_container(&pod, &hello).await.expect("hello");
    f.cri.wait_for_exit(&hello.id, EXIT).await.expect("exit");
    // teardown_pod removes the pod's cgroup right after RemovePodSandbox, as the kubelet does.
    f.cri
        .teardown_pod(&pod)
        .await
        .unwrap_or_else(|e| panic!("teardown: {e}\n{}", f.log_tail()));
}
