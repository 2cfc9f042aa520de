//! HTTP components as pods through CRI: examples/rust/hello-http served at its pod IP, traps and
//! timeouts answered, output in the CRI log, graceful stop, and a call out to the host.

mod cri_common;

use std::io::{Read, Write};

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use cri_common::{HANDLER, guest};
use spore_e2e::cri_log::wait_for_log_line;
use spore_e2e::image::ImageBuilder;
use spore_e2e::{
    Container, ContainerSpec, Containerd, ContainerdOptions, CriClient, Pod, Registry,
};

const READY: Duration = Duration::from_secs(60);

/// One request through the harness's HTTP client; returns (status, body).
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    spore_e2e::http::request(
        method,
        &format!("http://{addr}{path}"),
        &[],
        body.as_bytes(),
    )
    .map(|r| (r.status, r.text()))
    .map_err(std::io::Error::other)
}

struct HttpPod {
    _registry: Registry,
    containerd: Containerd,
    cri: CriClient,
    pod: Pod,
    container: Container,
    addr: SocketAddr,
}

impl HttpPod {
    /// With `upstream_port`, the guest's `UPSTREAM_URL` names that port on the pod network's
    /// gateway (this host, as the pod sees it).
    async fn start(upstream_port: Option<u16>) -> HttpPod {
        let registry = Registry::start().expect("registry");
        let containerd = Containerd::start(
            ContainerdOptions::default()
                .spore_shim_from_target()
                .plain_http_registry(registry.host()),
        )
        .expect("containerd");
        let image = ImageBuilder::new()
            .file("/hello-http.wasm", guest("hello-http"))
            .entrypoint(["/hello-http.wasm"])
            .build()
            .expect("image")
            .push_http(&registry.host(), "spore/hello-http", "v1")
            .expect("push");
        let mut cri = CriClient::for_containerd(&containerd).await.expect("CRI");
        cri.pull_image(&image).await.expect("pull");
        let pod = cri
            .run_pod_sandbox("web", "default", HANDLER)
            .await
            .expect("pod");
        let mut spec = ContainerSpec::new("web", &image)
            .env("SPORE_HTTP_REQUEST_TIMEOUT_MS", "1500")
            .env("SPORE_HTTP_GRACE_PERIOD_MS", "10000");
        if let Some(port) = upstream_port {
            let url = format!("http://{}:{port}/", containerd.network().gateway());
            spec = spec.env("UPSTREAM_URL", &url);
        }
        let container = match cri.run_container(&pod, &spec).await {
            Ok(c) => c,
            Err(e) => panic!("{e}\n{}", containerd.log()),
        };
        let ip = IpAddr::V4(cri.pod_ip(&pod.id).await.expect("status").expect("pod IP"));
        let addr = SocketAddr::new(ip, 8080);
        let deadline = Instant::now() + READY;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nothing listens on {addr}\n{}",
                containerd.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        HttpPod {
            _registry: registry,
            containerd,
            cri,
            pod,
            container,
            addr,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_pod_answers_at_its_pod_ip() {
    let mut p = HttpPod::start(None).await;
    let addr = p.addr;
    let (status, body) = request(addr, "GET", "/", "").expect("GET /");
    assert_eq!(
        (status, body.as_str()),
        (200, "Hello, world, from a Wasm HTTP component on Spore!\n")
    );
    assert_eq!(
        request(addr, "POST", "/echo", "ping pong").expect("POST"),
        (200, "ping pong".to_string())
    );

    // 100 concurrent requests, all answered.
    let answers: Vec<_> = (0..100)
        .map(|_| std::thread::spawn(move || request(addr, "GET", "/", "")))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    assert!(
        answers.iter().all(|a| matches!(a, Ok((200, _)))),
        "{answers:?}"
    );

    // A trap answers 500; the next request is fine.
    assert_eq!(request(addr, "GET", "/trap", "").expect("trap").0, 500);
    assert_eq!(request(addr, "GET", "/", "").expect("after trap").0, 200);

    // An endless loop is cut off at the request timeout (1.5 s here) with 504.
    let started = Instant::now();
    assert_eq!(request(addr, "GET", "/spin", "").expect("spin").0, 504);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // The guest's per-request output is in the container's CRI log.
    wait_for_log_line(&p.container.log_path, "GET /trap", READY)
        .await
        .expect("request lines reach the CRI log");

    p.cri.teardown_pod(&p.pod).await.expect("teardown");
    let left = p
        .containerd
        .leftovers_after(std::time::Duration::from_secs(5));
    assert!(left.is_empty(), "{left}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_slow_request_finish_then_exits_zero() {
    let mut p = HttpPod::start(None).await;
    let addr = p.addr;
    let slow = std::thread::spawn(move || request(addr, "GET", "/slow?ms=1200", ""));
    std::thread::sleep(Duration::from_millis(300));
    // StopContainer sends SIGTERM, then SIGKILL after the timeout.
    p.cri
        .stop_container(&p.container.id, 20)
        .await
        .expect("StopContainer");
    let (status, _) = slow
        .join()
        .expect("thread")
        .expect("the slow request is answered");
    assert_eq!(status, 200);
    let exited = p
        .cri
        .wait_for_exit(&p.container.id, READY)
        .await
        .expect("exits");
    assert_eq!(exited.exit_code, 0, "{exited:?}");
    p.cri.teardown_pod(&p.pod).await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guest_calls_out_to_the_host() {
    // A port that is free now; the server binds it on the bridge's gateway once it exists.
    let port = spore_e2e::registry::free_loopback_port()
        .expect("port")
        .port();
    let mut p = HttpPod::start(Some(port)).await;
    let gateway = p.containerd.network().gateway();
    let listener = TcpListener::bind((gateway, port)).expect("bind on the bridge's gateway");
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("the guest connects");
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        conn.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\nConnection: close\r\n\r\nfrom the host\n",
        )
        .expect("answer");
    });
    let (status, body) = request(p.addr, "GET", "/upstream", "").expect("GET /upstream");
    assert_eq!(
        (status, body.as_str()),
        (200, "from the host\n"),
        "{}",
        p.containerd.log()
    );
    server.join().expect("server");
    p.cri.teardown_pod(&p.pod).await.expect("teardown");
}
