//! Containers made through containerd's own API (as `ctr`, `nerdctl` and other clients make
//! them, without CRI) on a real containerd 2.x: OCI Wasm artifacts and Wasm-layer images found
//! from containerd's container record, signals out of range, a network namespace of its own, and
//! a panic in the shim's task running a guest.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::{Fixture, NAMESPACE, RUNTIME, guest, text};
use spore_e2e::image::{ImageBuilder, WasmArtifact, wasm_layer_image};

const STARTS: usize = 3;

/// `ctr run --rm --runtime spore IMAGE ID ARGS...`; returns (success, stdout, stderr).
fn run_image(
    f: &Fixture,
    image: &str,
    id: &str,
    extra: &[&str],
    args: &[&str],
) -> (bool, String, String) {
    let mut argv: Vec<String> = vec![
        "run".into(),
        "--rm".into(),
        "--runtime".into(),
        RUNTIME.into(),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    argv.push(image.into());
    argv.push(id.into());
    argv.extend(args.iter().map(|s| s.to_string()));
    let out = f.ctr_command(&argv).output().expect("ctr runs");
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn push_and_pull(f: &Fixture, image: spore_e2e::image::BuiltImage, repo: &str) -> String {
    let reference = image
        .push_http(&f.registry.host(), repo, "1")
        .expect("push");
    f.containerd.ctr_pull(NAMESPACE, &reference).expect("pull");
    reference
}

/// Creates container `id` of `image` through containerd's Containers API with an OCI spec whose
/// process runs `args` (no rootfs snapshot: an artifact has none), as a client that builds its
/// own spec does; then `ctr task start` runs it in the foreground. `ctr run` itself cannot make
/// a container of an OCI Wasm artifact: it reads the image config to build the spec, and fails
/// with "unknown image config media type application/vnd.wasm.config.v0+json".
fn run_with_spec(f: &Fixture, image: &str, id: &str, args: &[&str]) -> (bool, String, String) {
    use containerd_client::services::v1::container::Runtime;
    use containerd_client::services::v1::containers_client::ContainersClient;
    use containerd_client::services::v1::{Container, CreateContainerRequest};
    let out = f.ctr(&["oci", "spec"]);
    let mut spec: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ctr oci spec");
    spec["process"]["args"] = serde_json::json!(args);
    spec["process"]["terminal"] = serde_json::json!(false);
    let mut container = Container {
        id: id.into(),
        image: image.into(),
        runtime: Some(Runtime {
            name: RUNTIME.into(),
            options: None,
        }),
        ..Default::default()
    };
    let mut any = container.spec.take().unwrap_or_default();
    any.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Spec".into();
    any.value = spec.to_string().into_bytes();
    container.spec = Some(any);
    let socket = f.containerd.socket().to_path_buf();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let channel = containerd_client::connect(&socket).await.expect("connect");
        let mut request = containerd_client::tonic::Request::new(CreateContainerRequest {
            container: Some(container),
        });
        request
            .metadata_mut()
            .insert("containerd-namespace", NAMESPACE.parse().expect("ns"));
        ContainersClient::new(channel)
            .create(request)
            .await
            .expect("Containers.Create");
    });
    let out = f.ctr(&["task", "start", id]);
    let result = (out.status.success(), text(&out.stdout), text(&out.stderr));
    let _ = f.ctr(&["task", "delete", id]);
    let _ = f.ctr(&["containers", "delete", id]);
    result
}

#[test]
fn artifacts_and_wasm_layer_images_run_when_ctr_makes_the_container() {
    let f = Fixture::start();
    let hello = guest("wasm32-wasip2", "hello");
    // The CNCF layout without a command in its config (wkg, oras): every arg is an argument.
    let bare = push_and_pull(&f, WasmArtifact::new(hello.clone()).build(), "spore/bare");
    // As `spore push` makes it, with an Entrypoint in its config.
    let pushed = push_and_pull(
        &f,
        WasmArtifact::new(hello.clone())
            .entrypoint(["/hello.wasm"])
            .build(),
        "spore/pushed",
    );
    // runwasi's layout: an ordinary image config and a component layer.
    let layered = push_and_pull(
        &f,
        wasm_layer_image(hello, &["/hello.wasm"]),
        "spore/layered",
    );
    for n in 0..STARTS {
        let (ok, stdout, stderr) = run_with_spec(&f, &bare, &format!("bare-{n}"), &["x", "y"]);
        assert!(ok, "{stderr}\n{}", f.containerd.log());
        assert!(stdout.contains(r#"args: ["x", "y"]"#), "{stdout}");
        let (ok, stdout, stderr) =
            run_with_spec(&f, &pushed, &format!("pushed-{n}"), &["/hello.wasm", "z"]);
        assert!(ok, "{stderr}");
        assert!(stdout.contains(r#"args: ["z"]"#), "{stdout}");
        let (ok, stdout, stderr) = run_image(&f, &layered, &format!("layered-{n}"), &[], &[]);
        assert!(ok, "{stderr}");
        assert!(stdout.contains("Hello, world"), "{stdout}");
    }
}

#[test]
fn a_signal_out_of_range_is_refused_and_the_guest_runs_on() {
    let f = Fixture::start();
    let mut run = f.run_until_first_line("signals", "sleeper", true, "sleeping");
    let out = f.ctr(&["task", "kill", "--signal", "70", "signals"]);
    assert!(!out.status.success(), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("signal 70 is not a signal"), "{stderr}");
    let out = f.ctr(&["task", "ls"]);
    assert!(
        text(&out.stdout)
            .lines()
            .any(|l| l.starts_with("signals") && l.contains("RUNNING")),
        "{out:?}"
    );
    let out = f.ctr(&["task", "kill", "--signal", "9", "signals"]);
    assert!(out.status.success(), "{out:?}");
    let status = run.wait().expect("ctr run ends");
    assert_eq!(status.code(), Some(137));
}

/// A free TCP port on the host's loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn a_container_without_a_namespace_path_gets_a_network_of_its_own() {
    let f = Fixture::start();
    let image = ImageBuilder::new()
        .file("/listen.wasm", guest("wasm32-wasip2", "listen"))
        .entrypoint(["/listen.wasm"])
        .build()
        .expect("image");
    let image = push_and_pull(&f, image, "spore/listen");
    for (id, host_network) in [("isolated", false), ("host-net", true)] {
        let port = free_port();
        let mut argv: Vec<String> = vec![
            "run".into(),
            "--rm".into(),
            "--runtime".into(),
            RUNTIME.into(),
        ];
        argv.extend(["--env".into(), format!("PORT={port}")]);
        if host_network {
            argv.push("--net-host".into());
        }
        argv.extend([image.clone(), id.into()]);
        let mut run = f
            .ctr_command(&argv)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("ctr run");
        let mut first = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(run.stdout.take().expect("stdout")),
            &mut first,
        )
        .expect("read");
        assert_eq!(first.trim(), format!("listening on 127.0.0.1:{port}"));
        let reached =
            TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2));
        assert_eq!(
            reached.is_ok(),
            host_network,
            "{id}: the guest's loopback is the host's only with --net-host"
        );
        assert!(
            f.ctr(&["task", "kill", "--signal", "9", id])
                .status
                .success()
        );
        let _ = run.wait();
    }
}

#[test]
fn a_panic_in_the_task_running_a_guest_ends_the_container_with_a_message() {
    let f = Fixture::start();
    let (ok, _stdout, stderr) = {
        let out = f.run(
            "panics",
            &["--env", "SPORE_FAULT=guest-panic"],
            &["/hello.wasm"],
        );
        assert_eq!(out.status.code(), Some(255), "{out:?}");
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    assert!(!ok);
    assert!(
        stderr.contains(
            "the shim failed while running this container (a bug in Spore): panic: fault injected"
        ),
        "{stderr}"
    );
    // Wait ended and Delete went through: nothing of the container is left.
    assert!(
        f.containerd
            .leftovers_after(Duration::from_secs(5))
            .is_empty()
    );
}
