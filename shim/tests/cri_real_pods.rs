//! Pods written the way real pod specs are, through CRI on a real containerd: an HTTP app with
//! a memory limit under load, names from the pod's own `/etc/hosts` and `/etc/resolv.conf`
//! (with a DNS server on the pod network), symlinked entrypoints that point outside the image,
//! and the arguments of an artifact whose config names no command.

mod cri_common;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use cri_common::{CriFixture, guest};
use spore_e2e::cri_log::{LogStream, stream_text, wait_for_log_line};
use spore_e2e::dns::DnsServer;
use spore_e2e::http::KeepAlive;
use spore_e2e::image::{ImageBuilder, WasmArtifact};
use spore_e2e::{ContainerSpec, ContainerdVersion, PodSpec, read_cri_log};

const EXIT: Duration = Duration::from_secs(30);
const MIB: i64 = 1 << 20;

/// Polls until `addr` answers `GET /`.
async fn until_serving(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reachable = tokio::task::spawn_blocking(move || {
            spore_e2e::http::request("GET", &format!("http://{addr}/"), &[], b"").is_ok()
        })
        .await
        .unwrap_or(false);
        if reachable {
            return;
        }
        assert!(Instant::now() < deadline, "{addr} does not serve");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `n` GETs of `path` over `connections` keep-alive connections; the status of each.
async fn load(addr: SocketAddr, path: &'static str, n: usize, connections: usize) -> Vec<u16> {
    let mut workers = Vec::new();
    for worker in 0..connections {
        let count = n / connections + usize::from(worker < n % connections);
        workers.push(tokio::task::spawn_blocking(move || {
            let mut statuses = Vec::with_capacity(count);
            let mut connection = KeepAlive::connect(&addr.to_string()).expect("connect");
            for _ in 0..count {
                statuses.push(connection.get(path).map(|r| r.status).unwrap_or(0));
            }
            statuses
        }));
    }
    let mut statuses = Vec::new();
    for worker in workers {
        statuses.extend(worker.await.expect("worker"));
    }
    statuses
}

#[tokio::test]
async fn an_http_app_with_a_memory_limit_serves_ten_thousand_requests_and_contends_cleanly() {
    let mut f = CriFixture::start(ContainerdVersion::V2, false).await;
    let image =
        cri_common::push_and_pull(&mut f, cri_common::http_image(&[]), "spore/hello-http").await;
    let pod = f.run_spore_pod("mem").await;
    let spec = ContainerSpec::new("web", &image).memory_limit(64 * MIB);
    let web = f.cri.run_container(&pod, &spec).await.expect("run");
    let ip = f.cri.pod_ip(&pod.id).await.expect("status").expect("ip");
    let addr = SocketAddr::from((ip, 8080));
    until_serving(addr).await;

    // 10,000 requests, each a fresh instance, under a 64 MiB limit: none may fail.
    let statuses = load(addr, "/", 10_000, 8).await;
    let failed: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of 10000 failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(20)]
    );

    // One request that alone passes the limit: 500, and the next requests still succeed.
    let alone = tokio::task::spawn_blocking(move || {
        spore_e2e::http::request("GET", &format!("http://{addr}/alloc?mb=80"), &[], b"")
    })
    .await
    .expect("join")
    .expect("answered");
    assert_eq!(alone.status, 500, "{}", alone.text());
    assert_eq!(load(addr, "/", 100, 2).await, vec![200; 100]);

    // Requests that each fit but together do not: some are answered 503 with Retry-After.
    let mut contending = Vec::new();
    for _ in 0..4 {
        contending.push(tokio::task::spawn_blocking(move || {
            spore_e2e::http::request(
                "GET",
                &format!("http://{addr}/alloc?mb=24&ms=1500"),
                &[],
                b"",
            )
        }));
    }
    let mut ok = 0;
    let mut busy = 0;
    for answer in contending {
        let answer = answer.await.expect("join").expect("answered");
        match answer.status {
            200 => ok += 1,
            503 => {
                busy += 1;
                assert_eq!(answer.header("retry-after"), Some("1"), "{answer:?}");
            }
            other => panic!("unexpected {other}: {}", answer.text()),
        }
    }
    assert!(ok >= 1 && busy >= 1, "{ok} served, {busy} busy");
    // Memory given back: everything fits again, and Stats shows what is in use now.
    assert_eq!(load(addr, "/alloc?mb=24", 10, 1).await, vec![200; 10]);
    let stats = f.cri.container_stats(&web.id).await.expect("stats");
    let memory = memory_bytes!(stats.memory.as_ref());
    assert!(
        memory < 8 * MIB as u64,
        "idle server holds {memory} bytes of linear memory"
    );
    let line = wait_for_log_line(&web.log_path, "memory limit exceeded", EXIT)
        .await
        .expect("the request's trap reaches the CRI log");
    assert_eq!(line.stream, LogStream::Stderr, "{line:?}");
    f.cri.teardown_pod(&pod).await.expect("teardown");
}

#[tokio::test]
async fn names_resolve_from_the_pods_hosts_file_and_resolv_conf_as_for_its_sidecar() {
    let mut f = CriFixture::start(ContainerdVersion::V2, true).await;
    let busybox = f.busybox().to_owned();
    let image = ImageBuilder::new()
        .file("/resolve.wasm", guest("resolve"))
        .entrypoint(["/resolve.wasm"])
        .build()
        .expect("image")
        .push_http(&f.registry.host(), "spore/resolve", "1")
        .expect("push");
    f.cri.pull_image(&image).await.expect("pull");
    let gateway = f.containerd.network().gateway();
    let mut pod_spec = PodSpec::new("names", "default", cri_common::HANDLER);
    pod_spec.dns.servers = vec![gateway.to_string()];
    let pod = f.cri.run_pod(pod_spec).await.expect("pod");
    // The cluster DNS, on the pod network (the bridge's gateway is this host).
    let dns = DnsServer::start(
        SocketAddr::from((gateway, 53)),
        HashMap::from([
            (
                "web.default.svc.cluster.local".to_string(),
                Ipv4Addr::new(10, 96, 7, 7),
            ),
            ("db.example.org".to_string(), Ipv4Addr::new(192, 0, 2, 40)),
        ]),
    )
    .expect("dns server");
    // The kubelet's /etc/hosts for the pod, with a hostAlias.
    let dir = tempfile::tempdir().expect("tempdir");
    let hosts = dir.path().join("etc-hosts");
    std::fs::write(
        &hosts,
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n10.1.2.3\tfoo.local\tfoo\n",
    )
    .expect("hosts");
    let names = ["foo.local", "web", "db.example.org", "nothing.invalid"];
    let wasm = ContainerSpec::new("resolve", &image)
        .args(names)
        .mount("/etc/hosts", &hosts, false);
    let resolved = f.cri.run_container(&pod, &wasm).await.expect("run");
    f.cri
        .wait_for_exit(&resolved.id, EXIT)
        .await
        .expect("exits");
    wait_for_log_line(&resolved.log_path, "nothing.invalid ->", EXIT)
        .await
        .expect("the last name is printed");
    let lines = stream_text(
        &read_cri_log(&resolved.log_path).expect("log"),
        LogStream::Stdout,
    );
    assert_eq!(
        lines[0], "foo.local -> 10.1.2.3",
        "/etc/hosts first: {lines:?}"
    );
    assert_eq!(lines[1], "web -> 10.96.7.7", "the search list: {lines:?}");
    assert_eq!(lines[2], "db.example.org -> 192.0.2.40", "{lines:?}");
    assert!(
        lines[3].starts_with("nothing.invalid -> error"),
        "{lines:?}"
    );
    let asked = dns.asked();
    assert!(
        asked.iter().any(|n| n == "web.default.svc.cluster.local"),
        "a short name goes through the pod's search list: {asked:?}"
    );
    assert!(
        !asked.iter().any(|n| n.starts_with("foo")),
        "hosts entries never reach DNS: {asked:?}"
    );

    // A busybox sidecar of the same pod, with the same files, gets the same answers.
    let sidecar = ContainerSpec::new("sidecar", &busybox)
        .command(["sleep", "3600"])
        .mount("/etc/hosts", &hosts, false);
    let sidecar = f.cri.run_container(&pod, &sidecar).await.expect("sidecar");
    cri_common::wait_running(&mut f.cri, &sidecar.id, EXIT).await;
    let lookup = |name: &'static str| ["busybox", "nslookup", name];
    for (name, expected) in [("web", "10.96.7.7"), ("db.example.org", "192.0.2.40")] {
        let out = f
            .cri
            .exec_sync(&sidecar.id, &lookup(name), 15)
            .await
            .expect("nslookup");
        assert!(out.stdout.contains(expected), "{name}: {out:?}");
    }
    let ping = f
        .cri
        .exec_sync(
            &sidecar.id,
            &["busybox", "ping", "-c", "1", "-W", "1", "foo.local"],
            15,
        )
        .await
        .expect("ping");
    assert!(
        format!("{}{}", ping.stdout, ping.stderr).contains("10.1.2.3"),
        "the sidecar reads the same /etc/hosts: {ping:?}"
    );
    f.cri.teardown_pod(&pod).await.expect("teardown");
}

#[tokio::test]
async fn an_entrypoint_symlink_resolves_inside_the_image_never_on_the_host() {
    let mut f = CriFixture::start(ContainerdVersion::V2, false).await;
    // A file at a host path that an image's symlink names: another tenant's code.
    let host_dir = tempfile::tempdir().expect("tempdir");
    let host_wasm = host_dir.path().join("other-tenant.wasm");
    std::fs::write(&host_wasm, guest("hello")).expect("host file");
    let image = ImageBuilder::new()
        .file("/real/app.wasm", guest("hello"))
        .symlink("/app.wasm", "/real/app.wasm")
        .symlink("/escape.wasm", &host_wasm.to_string_lossy())
        .symlink("/shadow.wasm", "/etc/shadow")
        .symlink("/up.wasm", "../../../../../../etc/shadow")
        .entrypoint(["/app.wasm"])
        .build()
        .expect("image")
        .push_http(&f.registry.host(), "spore/links", "1")
        .expect("push");
    f.cri.pull_image(&image).await.expect("pull");
    let pod = f.run_spore_pod("links").await;

    let inside = ContainerSpec::new("inside", &image);
    let inside = f
        .cri
        .run_container(&pod, &inside)
        .await
        .expect("a link inside the image runs");
    assert_eq!(
        f.cri
            .wait_for_exit(&inside.id, EXIT)
            .await
            .expect("exit")
            .exit_code,
        0
    );

    for (name, entrypoint) in [
        ("escape", "/escape.wasm"),
        ("shadow", "/shadow.wasm"),
        ("up", "/up.wasm"),
    ] {
        let spec = ContainerSpec::new(name, &image).command([entrypoint]);
        let container = f.cri.create_container(&pod, &spec).await.expect("create");
        let err = f
            .cri
            .start_container(&container.id)
            .await
            .expect_err("an entrypoint outside the image does not run");
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "the entrypoint {entrypoint} does not exist in the container's image"
            )),
            "{name}: {text}"
        );
        assert!(
            !text.contains("root:"),
            "no byte of /etc/shadow in the error: {text}"
        );
        let status = f.cri.container_status(&container.id).await.expect("status");
        assert!(!status.message.contains("root:"), "{status:?}");
    }
    f.cri.teardown_pod(&pod).await.expect("teardown");
}

#[tokio::test]
async fn every_arg_of_an_artifact_without_a_command_reaches_the_guest() {
    artifact_args(ContainerdVersion::V2).await;
}

#[tokio::test]
async fn every_arg_of_an_artifact_without_a_command_reaches_the_guest_on_containerd_1_7() {
    artifact_args(ContainerdVersion::V1_7).await;
}

async fn artifact_args(version: ContainerdVersion) {
    let mut f = CriFixture::start(version, false).await;
    // As `wkg` and `oras` push it: a Wasm config without Entrypoint or Cmd.
    let artifact = WasmArtifact::new(guest("hello"))
        .build()
        .push_http(&f.registry.host(), "spore/no-entrypoint", "1")
        .expect("push");
    f.cri.pull_image(&artifact).await.expect("pull");
    let pod = f.run_spore_pod("args").await;
    let spec = ContainerSpec::new("args", &artifact).args(["a", "b"]);
    let container = f.cri.run_container(&pod, &spec).await.expect("run");
    f.cri
        .wait_for_exit(&container.id, EXIT)
        .await
        .expect("exit");
    wait_for_log_line(&container.log_path, "args:", EXIT)
        .await
        .expect("args printed");
    let lines = stream_text(
        &read_cri_log(&container.log_path).expect("log"),
        LogStream::Stdout,
    );
    assert!(
        lines.contains(&r#"args: ["a", "b"]"#.to_string()),
        "{lines:?}"
    );
    f.cri.teardown_pod(&pod).await.expect("teardown");
}
