//! The shim's HTTP server, in-process: `examples/rust/hello-http` (built by `hack/build-guests.sh`)
//! prepared from a temporary rootfs exactly as task Create does, run as task Start does, and
//! driven with a real HTTP/1 client over loopback; Kill through the container's kill channel.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use spore_shim::host::stats::Usage;
use spore_shim::host::stdio::StdioPaths;
use spore_shim::signal::Signal;
use spore_shim::spec::ContainerSpec;
use spore_shim::wasm::exit::ExitStatus;
use spore_shim::wasm::guest::WasmGuest;
use spore_shim::wasm::linker::Linkers;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const SIGTERM: Signal = Signal::TERM;
const SIGKILL: Signal = Signal::KILL;

fn hello_http_wasm() -> Vec<u8> {
    guest_wasm("hello-http")
}

/// A wasm32-wasip2 guest built by `hack/build-guests.sh` (an example or a test guest).
fn guest_wasm(name: &str) -> Vec<u8> {
    spore_e2e::tools::guest_wasm("wasm32-wasip2", name).unwrap_or_else(|e| panic!("{e}"))
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A running hello-http container: its port, kill channel, output files and run task.
struct Served {
    port: u16,
    kill: watch::Sender<Option<Signal>>,
    run: JoinHandle<ExitStatus>,
    stdout: PathBuf,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Served {
    async fn start(env: &[(&str, &str)]) -> Served {
        Served::start_with(env, false).await
    }

    /// `fifo`: stdout is a FIFO, as containerd hands over, instead of a plain file.
    async fn start_with(env: &[(&str, &str)], fifo: bool) -> Served {
        Served::start_guest("hello-http", env, fifo).await
    }

    /// The guest `name` (`NAME.wasm` in the rootfs) served as a container.
    async fn start_guest(name: &str, env: &[(&str, &str)], fifo: bool) -> Served {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(&root).expect("rootfs");
        std::fs::write(root.join(format!("{name}.wasm")), guest_wasm(name)).expect("guest");
        let stdout = dir.path().join("stdout");
        let stderr = dir.path().join("stderr");
        if fifo {
            nix::unistd::mkfifo(&stdout, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .expect("mkfifo");
        } else {
            std::fs::write(&stdout, "").expect("stdout");
        }
        std::fs::write(&stderr, "").expect("stderr");
        let port = free_port();
        let mut vars = vec![("PORT".to_string(), port.to_string())];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let spec = ContainerSpec {
            args: vec![format!("/{name}.wasm")],
            env: vars,
            cwd: "/".into(),
            root,
            ..ContainerSpec::default()
        };
        let engine = spore_shim::wasm::engine::shared_engine().expect("engine");
        let linkers = Linkers::new(engine);
        let guest = WasmGuest::prepare(engine, &linkers, &spec)
            .unwrap_or_else(|e| panic!("prepare {name}: {e}"));
        assert_eq!(guest.kind().describe(), "wasi:http/proxy component");
        let stdio = StdioPaths::parse(
            "",
            &stdout.display().to_string(),
            &format!("file://{}", stderr.display()),
        )
        .expect("stdio");
        let (kill, kill_rx) = watch::channel(None);
        let run = tokio::spawn(async move {
            guest
                .run(
                    &spec,
                    &stdio,
                    None,
                    std::sync::Arc::new(Usage::new(spec.memory_limit)),
                    kill_rx,
                )
                .await
        });
        let served = Served {
            port,
            kill,
            run,
            stdout,
            stderr,
            _dir: dir,
        };
        served.wait_until_listening().await;
        served
    }

    async fn wait_until_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(!self.run.is_finished(), "the server ended before listening");
            assert!(Instant::now() < deadline, "the server never listened");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        send(self.port, Method::GET, path, Bytes::new()).await
    }

    async fn ends_with(self, signal: Signal) -> ExitStatus {
        self.kill.send_replace(Some(signal));
        tokio::time::timeout(Duration::from_secs(10), self.run)
            .await
            .expect("run() returns after Kill")
            .expect("run task")
    }
}

/// One request on a new connection.
async fn send(port: u16, method: Method, path: &str, body: Bytes) -> (StatusCode, String) {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "localhost")
        .body(Full::new(body))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Writes `raw` on a new connection and reads the status line of the answer.
async fn raw_status_line(port: u16, raw: &[u8]) -> String {
    let answer = raw_exchange(port, raw, false).await;
    answer.lines().next().unwrap_or_default().to_string()
}

/// Writes `raw` on a new connection and reads the answer: its first line, or (`whole`) all of
/// it until the server closes the connection.
async fn raw_exchange(port: u16, raw: &[u8], whole: bool) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    // The server may answer and close before it has read everything: ignore write errors.
    let _ = stream.write_all(raw).await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while whole || !answer.windows(2).any(|w| w == b"\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no answer within 10 s"),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// Waits up to 5 s for `path` to contain `needle`.
async fn file_contains(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).expect("read");
        if text.contains(needle) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A tiny upstream server on 127.0.0.1 that answers every request with `body`.
async fn upstream(body: &'static str) -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(body.as_bytes()),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, task)
}

/// hello-http is a library component (only `incoming-handler`); a server built as a binary
/// also exports `wasi:cli/run`, and is still served as HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_also_exports_cli_run_is_served_as_http() {
    let served = Served::start_guest("http-and-run", &[], false).await;
    let (status, body) = served.get("/").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "served as http\n")
    );
    let status = served.ends_with(SIGKILL).await;
    assert_eq!(status.code, 137, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_hello_http_requests() {
    let (upstream_port, upstream_task) = upstream("upstream says hi\n").await;
    let upstream_url = format!("http://127.0.0.1:{upstream_port}/data");
    let served = Served::start(&[
        ("GREETING_NAME", "tests"),
        ("UPSTREAM_URL", &upstream_url),
        ("SPORE_HTTP_REQUEST_TIMEOUT_MS", "1000"),
        ("SPORE_HTTP_MAX_BODY_BYTES", "1024"),
        ("SPORE_HTTP_MAX_HEADER_BYTES", "8192"),
    ])
    .await;

    // GET / answers the greeting, and the guest's stdout line reaches the container's stdout.
    let (status, body) = served.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "Hello, tests, from a Wasm HTTP component on Spore!\n");
    let stdout = file_contains(&served.stdout, "GET /\n").await;
    assert!(stdout.contains("GET /\n"), "stdout: {stdout:?}");

    // POST /echo answers the body.
    let (status, body) = send(
        served.port,
        Method::POST,
        "/echo",
        Bytes::from_static(b"ping pong"),
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ping pong"));

    // 100 concurrent requests, each on its own connection, are all answered.
    let requests: Vec<_> = (0..100)
        .map(|_| {
            let port = served.port;
            tokio::spawn(async move { send(port, Method::GET, "/", Bytes::new()).await })
        })
        .collect();
    for request in requests {
        let (status, body) = request.await.expect("request task");
        assert_eq!(status, StatusCode::OK);
        assert!(body.starts_with("Hello, tests"), "{body}");
    }

    // A trap answers 500, says why on stderr, and the next request succeeds.
    let (status, _) = served.get("/trap").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let stderr = file_contains(&served.stderr, "GET /trap: guest trapped").await;
    assert!(
        stderr.contains("GET /trap: guest trapped"),
        "stderr: {stderr:?}"
    );
    assert!(
        stderr.contains("panics on purpose"),
        "the guest's panic message: {stderr:?}"
    );
    assert_eq!(served.get("/").await.0, StatusCode::OK);

    // An endless loop is interrupted at the 1 s timeout and answered 504.
    let started = Instant::now();
    let (status, _) = served.get("/spin").await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_secs(3),
        "504 after {took:?}"
    );
    assert_eq!(served.get("/").await.0, StatusCode::OK);

    // A body over 1024 bytes announced by content-length: 413 before the guest runs.
    let big = Bytes::from(vec![b'x'; 4096]);
    let (status, _) = send(served.port, Method::POST, "/echo", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let chunk = "x".repeat(800);
    let chunked = format!(
        "POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
         {len:x}\r\n{chunk}\r\n{len:x}\r\n{chunk}\r\n0\r\n\r\n",
        len = chunk.len()
    );
    // Chunked, the limit is found while streaming. The echo route answers its head before it
    // reads the body, so the host can only cut the response off: never a complete answer, never
    // more than the limit passed on.
    let answer = raw_exchange(served.port, chunked.as_bytes(), true).await;
    let passed = answer.bytes().filter(|b| *b == b'x').count();
    assert!(
        answer.starts_with("HTTP/1.1 413") || !answer.ends_with("0\r\n\r\n"),
        "{answer}"
    );
    assert!(passed <= 1024, "{passed} bytes passed the 1024-byte limit");

    // A request head over 8192 bytes: 431.
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "y".repeat(20_000)
    );
    let line = raw_status_line(served.port, huge_header.as_bytes()).await;
    assert!(line.starts_with("HTTP/1.1 431"), "{line}");

    // An outgoing request from the guest reaches the test's upstream server.
    let (status, body) = served.get("/upstream").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "upstream says hi\n")
    );

    let status = served.ends_with(SIGTERM).await;
    assert_eq!(status.code, 0, "{status:?}");
    upstream_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_output_reaches_the_stdout_fifo_in_whole_lines() {
    let served = Served::start_with(&[], true).await;
    let mut fifo = tokio::net::unix::pipe::OpenOptions::new()
        .open_receiver(&served.stdout)
        .expect("open the stdout FIFO");
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let port = served.port;
            tokio::spawn(async move { send(port, Method::GET, "/", Bytes::new()).await })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.expect("request").0, StatusCode::OK);
    }
    let mut read = Vec::new();
    let mut buf = [0u8; 4096];
    while read.iter().filter(|b| **b == b'\n').count() < 20 {
        let n = tokio::time::timeout(Duration::from_secs(5), fifo.read(&mut buf))
            .await
            .expect("20 lines within 5 s")
            .expect("read");
        read.extend_from_slice(&buf[..n]);
    }
    assert_eq!(String::from_utf8_lossy(&read), "GET /\n".repeat(20));
    assert_eq!(served.ends_with(SIGTERM).await.code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_0() {
    let served = Served::start(&[]).await;
    let port = served.port;
    let slow =
        tokio::spawn(async move { send(port, Method::GET, "/slow?ms=1500", Bytes::new()).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    served.kill.send_replace(Some(SIGTERM));
    // The listener closes at once: a new connection is refused.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "still accepting after SIGTERM"
    );
    assert!(
        !served.run.is_finished(),
        "ended before the request in flight finished"
    );
    let (status, body) = slow.await.expect("slow request");
    assert_eq!((status, body.as_str()), (StatusCode::OK, "slept 1500 ms\n"));
    let status = tokio::time::timeout(Duration::from_secs(5), served.run)
        .await
        .expect("run() returns once drained")
        .expect("run task");
    assert_eq!(status.code, 0, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_waits_no_longer_than_the_grace_period() {
    let served = Served::start(&[("SPORE_HTTP_GRACE_PERIOD_MS", "300")]).await;
    let port = served.port;
    let slow = tokio::spawn(async move {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        let request = Request::get("/slow?ms=10000")
            .header(http::header::HOST, "localhost")
            .body(Full::new(Bytes::new()))
            .expect("request");
        // Stopped at the end of the grace period: a 503, or (had it not been read yet) a
        // closed connection; never the guest's answer.
        match sender.send_request(request).await {
            Ok(response) => response.status() == StatusCode::SERVICE_UNAVAILABLE,
            Err(_) => true,
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let status = served.ends_with(SIGTERM).await;
    assert_eq!(status.code, 0, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        slow.await.expect("slow task"),
        "the slow request was stopped (503 or a closed connection)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_stops_at_once_with_137() {
    let served = Served::start(&[]).await;
    let port = served.port;
    let slow = tokio::spawn(async move {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        let request = Request::get("/spin")
            .header(http::header::HOST, "localhost")
            .body(Full::new(Bytes::new()))
            .expect("request");
        sender.send_request(request).await.is_err()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let status = served.ends_with(SIGKILL).await;
    assert_eq!(status.code, 137, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        slow.await.expect("spin task"),
        "the request in flight was cut off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_http_config_fails_prepare_naming_the_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("hello-http.wasm"), hello_http_wasm()).expect("guest");
    let spec = ContainerSpec {
        args: vec!["/hello-http.wasm".into()],
        env: vec![("SPORE_HTTP_REQUEST_TIMEOUT_MS".into(), "soon".into())],
        cwd: "/".into(),
        root: dir.path().to_path_buf(),
        ..ContainerSpec::default()
    };
    let engine = spore_shim::wasm::engine::shared_engine().expect("engine");
    let linkers = Linkers::new(engine);
    let err = match WasmGuest::prepare(engine, &linkers, &spec) {
        Ok(_) => panic!("a bad timeout must fail prepare"),
        Err(err) => err.to_string(),
    };
    assert!(
        err.contains(
            "SPORE_HTTP_REQUEST_TIMEOUT_MS=\"soon\" is not a valid number of milliseconds"
        ),
        "{err}"
    );
}
