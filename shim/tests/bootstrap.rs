//! The shim's bootstrap driven as containerd drives it, without containerd: `start` on a machine
//! where `/run/containerd` is empty, a serving process that cannot serve, a second container of
//! the same pod, and the end of a shim under a burst of Kill, Delete and Shutdown.

mod direct;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;
use std::time::Duration;

use containerd_shim::protos::api;
use containerd_shim::protos::ttrpc::context::Context;
use containerd_shim::protos::ttrpc::{self, Code};
use direct::{
    Bundle, EventServer, answered_address, bounded, create_and_start, gone, shims_serving,
    shut_down, start, start_with_env, task_client,
};

/// Runs what follows in a private mount namespace whose `/run` is an empty tmpfs: a machine
/// where no containerd has ever run.
const NEW_MACHINE: [&str; 7] = [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    "mount -t tmpfs -o mode=0755 tmpfs /run && exec \"$@\"",
];

fn new_machine_wrap() -> Vec<&'static str> {
    let mut wrap = NEW_MACHINE.to_vec();
    wrap.push("sh");
    wrap
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        spore_e2e::pod::new_uid()
    )
}

fn ctx() -> Context {
    Context::default()
}

#[tokio::test]
async fn start_on_a_new_machine_makes_the_socket_directory_and_answers_a_listening_address() {
    let events = EventServer::start().await;
    let id = unique("fresh");
    let bundle = Bundle::wasm("hello", &[], None);
    let out = start(
        bundle.path(),
        &id,
        "/run/containerd/containerd.sock",
        &events.address,
        &new_machine_wrap(),
    );
    let address = answered_address(&out);
    let path = address.strip_prefix("unix://").expect("a unix address");
    assert!(path.starts_with("/run/containerd/s/"), "{address}");
    let pids = shims_serving(&id);
    assert_eq!(pids.len(), 1, "one serving process: {pids:?}");
    // The socket lives in the serving process's mount namespace; reach it through its root.
    let in_ns = |p: &str| PathBuf::from(format!("/proc/{}/root{p}", pids[0]));
    let dir =
        std::fs::metadata(in_ns("/run/containerd/s")).expect("the shim made /run/containerd/s");
    assert_eq!(
        dir.mode() & 0o777,
        0o600,
        "containerd's mode for the directory"
    );
    let socket = std::fs::metadata(in_ns(path)).expect("socket");
    assert!(socket.file_type().is_socket());
    assert_eq!(
        socket.mode() & 0o777,
        0o600,
        "containerd's mode for the socket"
    );
    // Listening already: the first request is answered, with no retry.
    let client = task_client(&in_ns(path)).await;
    let state = client
        .state(
            ctx(),
            &api::StateRequest {
                id: "nothing".into(),
                ..Default::default()
            },
        )
        .await;
    match state {
        Err(ttrpc::Error::RpcStatus(status)) => assert_eq!(status.code(), Code::NOT_FOUND),
        other => panic!("expected NOT_FOUND from a listening shim, got {other:?}"),
    }
    let shutdown = api::ShutdownRequest {
        id: id.clone(),
        ..Default::default()
    };
    client.shutdown(ctx(), &shutdown).await.expect("shutdown");
    assert!(
        gone(pids[0], Duration::from_secs(5)).await,
        "the shim exits"
    );
}

#[tokio::test]
async fn a_shim_that_cannot_serve_makes_start_fail_with_its_reason() {
    let id = unique("broken");
    let bundle = Bundle::wasm("hello", &[], None);
    let nothing = PathBuf::from("/nonexistent/containerd.sock.ttrpc");
    let out = start(
        bundle.path(),
        &id,
        "/run/containerd/containerd.sock",
        &nothing,
        &new_machine_wrap(),
    );
    assert!(
        !out.status.success(),
        "start must not answer for a shim that is not serving"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("exited")
            && stderr.contains("connecting to containerd's events at /nonexistent"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "no address was answered: {:?}",
        out.stdout
    );
    assert!(shims_serving(&id).is_empty());
}

#[tokio::test]
async fn a_second_container_of_a_pod_is_answered_the_pods_shim() {
    let events = EventServer::start().await;
    let pod = unique("pod");
    let containerd = format!("/tmp/{pod}.sock");
    let first = Bundle::wasm("hello", &[], Some(&pod));
    let second = Bundle::wasm("hello", &[], Some(&pod));
    let a = answered_address(&start(
        first.path(),
        &pod,
        &containerd,
        &events.address,
        &[],
    ));
    let b = answered_address(&start(
        second.path(),
        "c2",
        &containerd,
        &events.address,
        &[],
    ));
    assert_eq!(a, b, "both containers of the pod go to one shim");
    let pids = shims_serving(&pod);
    assert_eq!(pids.len(), 1, "{pids:?}");
    for bundle in [&first, &second] {
        let written = std::fs::read_to_string(bundle.path().join("address")).expect("address");
        assert_eq!(written, a);
    }
    shut_down(&a).await;
    assert!(gone(pids[0], Duration::from_secs(5)).await);
}

fn is_transport_error(err: &ttrpc::Error) -> bool {
    !matches!(err, ttrpc::Error::RpcStatus(_))
}

/// containerd talks to a shim over one ttrpc connection and sends its calls on it
/// concurrently; Shutdown comes once Delete has returned, and containerd takes a closed
/// connection as Shutdown's answer (`ErrClosed`). Everything else must be answered.
#[tokio::test]
async fn a_burst_of_kill_delete_and_shutdown_is_answered_whole_and_the_shim_exits() {
    let events = EventServer::start().await;
    let id = unique("burst");
    let bundle = Bundle::wasm("sleeper", &[], None);
    let out = start(
        bundle.path(),
        &id,
        "/run/containerd/containerd.sock",
        &events.address,
        &[],
    );
    let address = answered_address(&out);
    let socket = PathBuf::from(address.strip_prefix("unix://").expect("unix"));
    let pid = shims_serving(&id)[0];
    let client = task_client(&socket).await;
    create_and_start(&client, &id, bundle.path(), "").await;

    // Waits in flight, then a burst of kills, all on the one connection.
    let mut waits = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (client, id) = (client.clone(), id.clone());
        waits.spawn(async move {
            let wait = api::WaitRequest {
                id,
                ..Default::default()
            };
            client.wait(ctx(), &wait).await
        });
    }
    let mut kills = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (client, id) = (client.clone(), id.clone());
        kills.spawn(async move {
            let kill = api::KillRequest {
                id,
                signal: 9,
                ..Default::default()
            };
            client.kill(ctx(), &kill).await
        });
    }
    while let Some(waited) = bounded("a Wait", waits.join_next()).await {
        let waited = waited.expect("waiter").expect("every Wait is answered");
        assert_eq!(waited.exit_status, 137);
    }
    while let Some(killed) = bounded("a Kill", kills.join_next()).await {
        // A Kill after the exit is refused with a status; none goes unanswered.
        if let Err(err) = killed.expect("killer") {
            assert!(!is_transport_error(&err), "a Kill was dropped: {err:?}");
        }
    }
    let delete = api::DeleteRequest {
        id: id.clone(),
        ..Default::default()
    };
    let deleted = bounded("Delete", client.delete(ctx(), &delete))
        .await
        .expect("delete is answered");
    assert_eq!(deleted.exit_status, 137);
    // Racing Shutdowns, each on a connection of its own. On one connection a Shutdown written
    // after the shim closed fails the client's write (EPIPE), and the ttrpc client then fails
    // every call in flight on it, the answered one too, whose answer it has not read yet (seen:
    // 3 of 30 runs under load, all three "Broken pipe"). containerd sends one Shutdown.
    let mut shutdowns = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let (client, id) = (task_client(&socket).await, id.clone());
        shutdowns.spawn(async move {
            client
                .shutdown(
                    ctx(),
                    &api::ShutdownRequest {
                        id,
                        ..Default::default()
                    },
                )
                .await
        });
    }
    let mut answered = 0;
    while let Some(shutdown) = bounded("a Shutdown", shutdowns.join_next()).await {
        match shutdown.expect("shutdown caller") {
            Ok(_) => answered += 1,
            Err(err) => assert!(is_transport_error(&err), "Shutdown refused: {err:?}"),
        }
    }
    assert!(
        answered >= 1,
        "the Shutdown that ended the shim was answered"
    );
    assert!(
        gone(pid, Duration::from_secs(5)).await,
        "the shim exits once the last Shutdown is answered"
    );
    assert!(!socket.exists(), "the shim removes its socket");
    assert_eq!(
        events.topics(),
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ],
        "events reached containerd in order before the shim went, none lost"
    );
}

/// A guest's exit is reported only once containerd's reader has taken its output: containerd
/// cancels a reader's unfinished open at task Delete, so an exit reported while the output
/// still sits in the FIFO could lose it on a loaded node (seen once in CI: an empty CRI log and
/// "reading from a closed fifo"). Here the reader opens its end but reads nothing for a while:
/// Wait must not be answered until it has read the guest's line.
#[tokio::test]
async fn the_exit_waits_until_the_reader_has_taken_the_output() {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;

    let events = EventServer::start().await;
    let id = unique("drain");
    let bundle = Bundle::wasm("hello", &[], None);
    let stdout = bundle.path().join("stdout.fifo");
    nix::unistd::mkfifo(&stdout, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("fifo");
    // containerd's reader: open at once (non-blocking), read later.
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&stdout)
        .expect("reader");
    let out = start(bundle.path(), &id, "", &events.address, &[]);
    let address = answered_address(&out);
    let socket = PathBuf::from(address.strip_prefix("unix://").expect("unix"));
    let client = task_client(&socket).await;
    create_and_start(&client, &id, bundle.path(), &stdout.display().to_string()).await;
    let wait_req = api::WaitRequest {
        id: id.clone(),
        ..Default::default()
    };
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.wait(ctx(), &wait_req).await }
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !waiting.is_finished(),
        "the exit was reported while the output was still unread"
    );
    let mut taken = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&taken).contains('\n') && std::time::Instant::now() < deadline {
        let mut buf = [0u8; 4096];
        match reader.read(&mut buf) {
            Ok(n) => taken.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(e) => panic!("reading the FIFO: {e}"),
        }
    }
    assert!(
        String::from_utf8_lossy(&taken).contains("Hello"),
        "{:?}",
        String::from_utf8_lossy(&taken)
    );
    let waited = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the exit is reported once the output is read")
        .expect("waiter")
        .expect("Wait");
    assert_eq!(waited.exit_status, 0);
    let delete = api::DeleteRequest {
        id: id.clone(),
        ..Default::default()
    };
    client.delete(ctx(), &delete).await.expect("delete");
    let _ = client
        .shutdown(ctx(), &api::ShutdownRequest::default())
        .await;
}

/// A bug that panics while a request is handled must not leave containerd waiting for an answer
/// that never comes: the request is answered with an INTERNAL error naming it and the panic, the
/// panic and where it happened are in the shim's log, and the shim serves on. (A debug build's
/// `SPORE_FAULT=create-panic` makes the Create panic.)
#[tokio::test]
async fn a_panic_handling_create_is_answered_logged_and_the_shim_serves_on() {
    let events = EventServer::start().await;
    let id = unique("panics");
    let broken = Bundle::wasm("hello", &[], None).with_env(&["SPORE_FAULT=create-panic"]);
    let healthy = Bundle::wasm("hello", &[], None);
    let address = answered_address(&start(broken.path(), &id, "", &events.address, &[]));
    let socket = PathBuf::from(address.strip_prefix("unix://").expect("unix"));
    let pid = shims_serving(&id)[0];
    let client = task_client(&socket).await;
    let create = api::CreateTaskRequest {
        id: id.clone(),
        bundle: broken.path().display().to_string(),
        ..Default::default()
    };
    match bounded("the panicking Create", client.create(ctx(), &create)).await {
        Err(ttrpc::Error::RpcStatus(status)) => {
            assert_eq!(status.code(), Code::INTERNAL, "{status:?}");
            assert!(
                status.message.contains("panicked handling Create")
                    && status
                        .message
                        .contains("fault injected by SPORE_FAULT=create-panic"),
                "{}",
                status.message
            );
        }
        other => panic!("expected an INTERNAL status, got {other:?}"),
    }
    let log = std::fs::read_to_string(broken.path().join("log")).expect("the shim's log");
    assert!(
        log.lines().any(|l| l.contains("ERROR")
            && l.contains("panic: fault injected by SPORE_FAULT=create-panic")
            && l.contains("faults.rs")),
        "the panic and its location are in the shim's log: {log}"
    );
    // The shim serves on: another container runs to its end.
    create_and_start(&client, "healthy", healthy.path(), "").await;
    let wait = api::WaitRequest {
        id: "healthy".into(),
        ..Default::default()
    };
    let waited = bounded("Wait", client.wait(ctx(), &wait))
        .await
        .expect("wait");
    assert_eq!(waited.exit_status, 0);
    let delete = api::DeleteRequest {
        id: "healthy".into(),
        ..Default::default()
    };
    bounded("Delete", client.delete(ctx(), &delete))
        .await
        .expect("delete");
    let _ = client
        .shutdown(ctx(), &api::ShutdownRequest::default())
        .await;
    assert!(gone(pid, Duration::from_secs(5)).await, "the shim exits");
}

/// The threads of `pid` named as tokio names a runtime's workers, counted again 200 ms after
/// they first were `expected` (a thread takes its name once it runs: right after the ready line
/// some may not have yet), or as many as there are after 5 s.
async fn runtime_workers_reaching(pid: i32, expected: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let workers = runtime_workers(pid);
        if workers == expected {
            tokio::time::sleep(Duration::from_millis(200)).await;
            return runtime_workers(pid);
        }
        if std::time::Instant::now() > deadline {
            return workers;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The threads of `pid` named as tokio names a runtime's workers.
fn runtime_workers(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the shim's threads")
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim() == "tokio-rt-worker")
        })
        .count()
}

/// The serving process's shared runtime has a worker per usable CPU, at most two, unless
/// `SPORE_SHIM_WORKERS` in its environment says otherwise; a value that is no number of workers
/// is named in the shim's log and the default applies. Counted before any Create, when no
/// blocking thread (which tokio names alike) has been started.
#[tokio::test]
async fn the_shared_runtime_has_at_most_two_workers_unless_the_environment_sets_another_number() {
    let events = EventServer::start().await;
    let default = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(2);
    for (setting, expected) in [
        (None, default),
        (Some("1"), 1),
        (Some("3"), 3),
        (Some("many"), default),
    ] {
        let id = unique("workers");
        let bundle = Bundle::wasm("hello", &[], None);
        let env: Vec<(&str, &str)> = setting
            .map(|value| ("SPORE_SHIM_WORKERS", value))
            .into_iter()
            .collect();
        let address = answered_address(&start_with_env(
            bundle.path(),
            &id,
            "",
            &events.address,
            &[],
            &env,
        ));
        let pid = shims_serving(&id)[0];
        assert_eq!(
            runtime_workers_reaching(pid, expected).await,
            expected,
            "SPORE_SHIM_WORKERS={setting:?}"
        );
        let log = std::fs::read_to_string(bundle.path().join("log")).expect("the shim's log");
        assert_eq!(
            log.contains("SPORE_SHIM_WORKERS is not a number of workers"),
            setting == Some("many"),
            "SPORE_SHIM_WORKERS={setting:?}: {log}"
        );
        shut_down(&address).await;
        assert!(gone(pid, Duration::from_secs(5)).await, "the shim exits");
    }
}

/// A test that fails with a bundle in hand leaves no shim behind: the bundle's drop, while the
/// test panics, kills the shim serving in it (nothing else would end it).
#[tokio::test]
async fn a_failed_tests_shim_is_killed_when_its_bundle_goes() {
    let events = EventServer::start().await;
    let id = unique("failed");
    let bundle = Bundle::wasm("hello", &[], None);
    answered_address(&start(bundle.path(), &id, "", &events.address, &[]));
    let pid = shims_serving(&id)[0];
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _bundle = bundle;
        panic!("a failing step, on purpose");
    }));
    assert!(failed.is_err());
    assert!(
        gone(pid, Duration::from_secs(5)).await,
        "the failed test's shim was killed"
    );
}
