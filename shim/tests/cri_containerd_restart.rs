//! containerd restarted (as `systemctl restart containerd` does: containerd alone, shims keep
//! running) under 20 running Spore pods of every kind: the pods keep running and serving,
//! containerd reconnects to each shim, and afterwards every pod can be inspected, exec'd into
//! (sidecars), read for stats and stopped. Containers that ended while containerd was down
//! are reported with their exit codes once it is back. Nothing remains after the teardown.

mod cri_common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use cri_common::{
    CriFixture, PodTrace, container_state, http_image, push_and_pull, wait_until_nothing_remains,
};
use spore_e2e::{Container, ContainerSpec, ContainerdVersion, CriClient, Pod};

const PODS: usize = 20;
const RUN: Duration = Duration::from_secs(60);
/// How long containerd stays down; the "meanwhile" containers end within it.
const DOWN: Duration = Duration::from_secs(6);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Command,
    Http,
    Mixed,
}

struct RunningPod {
    kind: Kind,
    pod: Pod,
    containers: Vec<Container>,
    trace: PodTrace,
}

async fn wait_state(cri: &mut CriClient, id: &str, state: i32) {
    let start = Instant::now();
    loop {
        let status = cri.container_status(id).await.expect("ContainerStatus");
        if status.state == state {
            return;
        }
        assert!(
            start.elapsed() < RUN,
            "{id} never reached {state}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(addr: SocketAddr) -> Option<u16> {
    let response = tokio::task::spawn_blocking(move || {
        spore_e2e::http::request("GET", &format!("http://{addr}/"), &[], b"")
    })
    .await
    .ok()?;
    response.ok().map(|r| r.status)
}

async fn http_addr(cri: &mut CriClient, pod: &Pod) -> SocketAddr {
    let ip = cri.pod_ip(&pod.id).await.expect("status").expect("pod IP");
    let addr = SocketAddr::new(IpAddr::V4(ip), 8080);
    let start = Instant::now();
    while get(addr).await != Some(200) {
        assert!(start.elapsed() < RUN, "{addr} does not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_pods_outlive_a_containerd_restart() {
    let mut f = CriFixture::start(ContainerdVersion::V2, true).await;
    let busybox = f.busybox().to_owned();
    let image = push_and_pull(&mut f, http_image(&["sleeper"]), "spore/restart").await;
    let mut pods = Vec::new();
    for i in 0..PODS {
        let kind = [Kind::Command, Kind::Http, Kind::Mixed][i % 3];
        let pod = f.run_spore_pod(&format!("restart-{i}")).await;
        let mut specs = vec![match kind {
            Kind::Http => ContainerSpec::new("web", &image).memory_limit(64 << 20),
            _ => ContainerSpec::new("wasm", &image)
                .command(["/sleeper.wasm"])
                .memory_limit(32 << 20),
        }];
        if kind == Kind::Mixed {
            specs.push(
                ContainerSpec::new("sidecar", &busybox)
                    .command(["sleep", "3600"])
                    .memory_limit(16 << 20),
            );
        }
        let mut containers = Vec::new();
        for spec in &specs {
            let container = f
                .cri
                .run_container(&pod, spec)
                .await
                .unwrap_or_else(|e| panic!("pod {i}: {e}\n{}", f.log_tail()));
            containers.push(container);
        }
        for c in &containers {
            wait_state(&mut f.cri, &c.id, container_state::RUNNING).await;
        }
        let trace = PodTrace::of(&mut f.cri, &pod).await;
        pods.push(RunningPod {
            kind,
            pod,
            containers,
            trace,
        });
    }
    let mut addrs = Vec::new();
    for p in pods.iter().filter(|p| p.kind == Kind::Http) {
        addrs.push(http_addr(&mut f.cri, &p.pod).await);
    }

    // Containers that end while containerd is down.
    let meanwhile = f.run_spore_pod("meanwhile").await;
    let wasm_ends = ContainerSpec::new("wasm", &image).command(["/sleeper.wasm", "2"]);
    let wasm_ends = f
        .cri
        .run_container(&meanwhile, &wasm_ends)
        .await
        .expect("wasm");
    let native_ends =
        ContainerSpec::new("sidecar", &busybox).command(["sh", "-c", "sleep 2; exit 7"]);
    let native_ends = f
        .cri
        .run_container(&meanwhile, &native_ends)
        .await
        .expect("sidecar");
    let meanwhile_trace = PodTrace::of(&mut f.cri, &meanwhile).await;
    let shims_before = cri_common::spore_shims(&f.containerd);

    let restarted = Instant::now();
    tokio::task::block_in_place(|| f.containerd.restart_after(DOWN))
        .unwrap_or_else(|e| panic!("containerd restarts: {e}"));
    f.cri = CriClient::for_containerd(&f.containerd)
        .await
        .expect("CRI after the restart");
    eprintln!("containerd back after {:?}", restarted.elapsed());
    assert_eq!(
        cri_common::spore_shims(&f.containerd),
        shims_before,
        "the same shims serve the pods"
    );

    // Every pod still runs and serves; containerd talks to each shim again.
    for p in &pods {
        for c in &p.containers {
            let status = f.cri.container_status(&c.id).await.expect("status");
            assert_eq!(
                status.state,
                container_state::RUNNING,
                "{}: {status:?}",
                c.name
            );
            f.cri
                .container_stats(&c.id)
                .await
                .unwrap_or_else(|e| panic!("stats of {}: {e}\n{}", c.name, f.log_tail()));
        }
        if p.kind == Kind::Mixed {
            let sidecar = &p.containers[1];
            let out = f
                .cri
                .exec_sync(&sidecar.id, &["echo", "still here"], 10)
                .await
                .unwrap_or_else(|e| panic!("exec after the restart: {e}\n{}", f.log_tail()));
            assert_eq!((out.exit_code, out.stdout.trim()), (0, "still here"));
        }
    }
    for addr in &addrs {
        assert_eq!(get(*addr).await, Some(200), "{addr} after the restart");
    }
    // What ended meanwhile is reported, with its code.
    for (container, code) in [(&wasm_ends, 0), (&native_ends, 7)] {
        let status = f
            .cri
            .wait_for_exit(&container.id, RUN)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", container.name, f.log_tail()));
        assert_eq!(
            status.exit_code,
            code,
            "{}: {status:?}\n{}",
            container.name,
            f.log_tail()
        );
    }

    // And every pod stops and goes, leaving nothing.
    let everything: Vec<(&Pod, &PodTrace)> = pods
        .iter()
        .map(|p| (&p.pod, &p.trace))
        .chain([(&meanwhile, &meanwhile_trace)])
        .collect();
    for (pod, _) in &everything {
        f.cri
            .teardown_pod(pod)
            .await
            .unwrap_or_else(|e| panic!("teardown: {e}\n{}", f.log_tail()));
    }
    for (_, trace) in &everything {
        let remains = wait_until_nothing_remains(&f.containerd, trace, RUN).await;
        assert!(remains.is_empty(), "{remains:#?}\n{}", f.log_tail());
    }
}
