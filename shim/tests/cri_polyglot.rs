//! The JavaScript (componentize-js) and Python (componentize-py) examples, built from source by
//! `hack/build-guests.sh`, published with `spore push` and run as pods through CRI, each
//! container with a memory limit: a command's output, arguments, environment and exit code,
//! and its error when it fails or throws; an HTTP handler's GET, a POST whose body (larger than
//! one WASI stream write) comes back, a route that throws (500, the error in the log, the server
//! goes on) and a 404. Every pod's cgroup is limited as the kubelet limits it for
//! `examples/apps/{javascript,python}.yaml`: the container's 128 MiB plus the RuntimeClass's
//! 16 MiB overhead. (The first compile of an interpreter needs more than that; it must not be
//! charged to the pod, or the shim is OOM-killed before the guest starts.)

mod cri_common;

use std::time::Duration;

use cri_common::{CriFixture, http_addr, spore_push, termination_message};
use spore_e2e::cri_log::{stream_text, wait_for_log_line};
use spore_e2e::{ContainerSpec, ContainerdVersion, LogStream, Pod, PodSpec, http, read_cri_log};

/// Interpreters inside components are large: their first compile takes a while on a debug
/// build of the shim with two cores.
const START: Duration = Duration::from_secs(240);
const MEMORY_LIMIT: i64 = 128 << 20;
/// The pod's limit: the container's plus the chart's RuntimeClass overhead.
const POD_MEMORY_LIMIT: i64 = MEMORY_LIMIT + (16 << 20);

/// A `spore` pod whose cgroup is limited to [`POD_MEMORY_LIMIT`].
async fn limited_pod(f: &mut CriFixture, name: &str) -> Pod {
    let spec = PodSpec {
        memory_limit: Some(POD_MEMORY_LIMIT),
        ..PodSpec::new(name, "default", "spore")
    };
    match f.cri.run_pod(spec).await {
        Ok(pod) => pod,
        Err(e) => panic!("RunPodSandbox: {e}\n{}", f.log_tail()),
    }
}

struct Language {
    /// The folder under `examples/` and `target/examples/`.
    dir: &'static str,
    /// How the examples name their language.
    name: &'static str,
    /// How the command prints its arguments `["one", "two words"]`.
    args_line: &'static str,
    /// What the command's `throw` argument puts on stderr.
    thrown: &'static str,
}

const JAVASCRIPT: Language = Language {
    dir: "js",
    name: "JavaScript",
    args_line: r#"args: ["one","two words"]"#,
    thrown: "thrown on purpose, as asked",
};

const PYTHON: Language = Language {
    dir: "python",
    name: "Python",
    args_line: r#"args: ["one", "two words"]"#,
    thrown: "raised on purpose",
};

/// Publishes the example `name` of `language` with the `spore` CLI and pulls it through CRI.
async fn push_example(f: &mut CriFixture, language: &Language, name: &str) -> String {
    let wasm = spore_e2e::tools::example_wasm(language.dir, name).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join(format!("{name}.wasm"));
    std::fs::write(&file, wasm).expect("write the component");
    let reference = format!("{}/examples/{}-{name}:v1", f.registry.host(), language.dir);
    let said = spore_push(&file, &reference);
    assert!(!said.contains("warning"), "spore push warned: {said}");
    f.cri.pull_image(&reference).await.expect("PullImage");
    reference
}

/// Runs the command example with `args` to its end; returns its exit code, stdout and stderr
/// lines, and termination message.
async fn run_command(
    f: &mut CriFixture,
    pod: &Pod,
    image: &str,
    name: &str,
    args: &[&str],
) -> (i32, Vec<String>, Vec<String>, String) {
    let spec = ContainerSpec::new(name, image)
        .args(args.iter().copied())
        .env("GREETING_NAME", "Spore")
        .memory_limit(MEMORY_LIMIT);
    let container = match f.cri.run_container(pod, &spec).await {
        Ok(c) => c,
        Err(e) => panic!("{name}: {e}\n{}", f.log_tail()),
    };
    let status = match f.cri.wait_for_exit(&container.id, START).await {
        Ok(status) => status,
        Err(e) => panic!("{name} did not exit: {e}\n{}", f.log_tail()),
    };
    // The greeting is the first line every run prints.
    wait_for_log_line(&container.log_path, "from a", START)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let lines = read_cri_log(&container.log_path).expect("CRI log");
    (
        status.exit_code,
        stream_text(&lines, LogStream::Stdout),
        stream_text(&lines, LogStream::Stderr),
        termination_message(&container),
    )
}

async fn command_example(language: Language) {
    let mut f = CriFixture::start(ContainerdVersion::V2, false).await;
    let image = push_example(&mut f, &language, "hello").await;
    let pod = limited_pod(&mut f, &format!("{}-command", language.dir)).await;

    let (code, stdout, stderr, _) =
        run_command(&mut f, &pod, &image, "greet", &["one", "two words"]).await;
    assert_eq!(code, 0, "stdout {stdout:?} stderr {stderr:?}");
    let greeting = format!("Hello, Spore, from a {} component on Spore!", language.name);
    assert_eq!(
        stdout,
        [greeting.as_str(), language.args_line],
        "{stderr:?}"
    );

    let (code, _, stderr, _) = run_command(&mut f, &pod, &image, "fail", &["fail"]).await;
    assert_eq!(code, 1, "WASI 0.2's exit carries failure as 1: {stderr:?}");
    assert!(
        stderr.iter().any(|l| l.contains("failing on purpose")),
        "{stderr:?}"
    );

    let (code, _, stderr, message) = run_command(&mut f, &pod, &image, "throw", &["throw"]).await;
    assert_ne!(code, 0, "an uncaught error fails the container");
    let shown = format!("{}\n{message}", stderr.join("\n"));
    assert!(
        shown.contains(language.thrown),
        "the error is where kubectl shows it: {shown}"
    );
    f.cri.teardown_pod(&pod).await.expect("teardown");
}

async fn http_example(language: Language) {
    let mut f = CriFixture::start(ContainerdVersion::V2, false).await;
    let image = push_example(&mut f, &language, "hello-http").await;
    let pod = limited_pod(&mut f, &format!("{}-http", language.dir)).await;
    let spec = ContainerSpec::new("server", &image)
        .env("GREETING_NAME", "Spore")
        .memory_limit(MEMORY_LIMIT);
    let container = match f.cri.run_container(&pod, &spec).await {
        Ok(c) => c,
        Err(e) => panic!("server: {e}\n{}", f.log_tail()),
    };
    let addr = http_addr(&mut f.cri, &pod, START).await;
    let url = |path: &str| format!("http://{addr}{path}");

    let greeting = http::request("GET", &url("/"), &[], b"").expect("GET /");
    assert_eq!(
        greeting.status,
        200,
        "{}\n{}",
        greeting.text(),
        f.log_tail()
    );
    assert_eq!(
        greeting.text(),
        format!(
            "Hello, Spore, from a {} HTTP component on Spore!\n",
            language.name
        )
    );

    // A JSON body of about 12 KiB: more than one 4 KiB write of a WASI output stream.
    let items: Vec<String> = (0..400)
        .map(|i| format!(r#"{{"id":{i},"name":"item {i}"}}"#))
        .collect();
    let body = format!("[{}]", items.join(","));
    let echoed = http::request(
        "POST",
        &url("/echo"),
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .expect("POST /echo");
    assert_eq!(echoed.status, 200, "{}", echoed.text());
    assert_eq!(echoed.header("content-type"), Some("application/json"));
    assert!(
        echoed.body == body.as_bytes(),
        "{} bytes back",
        echoed.body.len()
    );

    let trap = http::request("GET", &url("/trap"), &[], b"").expect("GET /trap");
    assert_eq!(trap.status, 500, "{}", trap.text());
    wait_for_log_line(&container.log_path, "on purpose", START)
        .await
        .unwrap_or_else(|e| panic!("the handler's error reaches the log: {e}"));
    let missing = http::request("GET", &url("/nothing-here"), &[], b"").expect("GET 404");
    assert_eq!(missing.status, 404);
    let again = http::request("GET", &url("/"), &[], b"").expect("GET / again");
    assert_eq!(
        again.status, 200,
        "the server goes on after a failed request"
    );

    wait_for_log_line(&container.log_path, "POST /echo", START)
        .await
        .unwrap_or_else(|e| panic!("one stdout line per request: {e}"));
    let status = f
        .cri
        .container_status(&container.id)
        .await
        .expect("ContainerStatus");
    assert_eq!(
        status.state,
        k8s_cri::v1::ContainerState::ContainerRunning as i32
    );
    f.cri.teardown_pod(&pod).await.expect("teardown");
}

#[tokio::test]
async fn the_javascript_command_runs_with_its_args_env_and_exit_codes() {
    command_example(JAVASCRIPT).await;
}

#[tokio::test]
async fn the_javascript_http_handler_answers_echoes_and_survives_a_throw() {
    http_example(JAVASCRIPT).await;
}

#[tokio::test]
async fn the_python_command_runs_with_its_args_env_and_exit_codes() {
    command_example(PYTHON).await;
}

#[tokio::test]
async fn the_python_http_handler_answers_echoes_and_survives_a_raise() {
    http_example(PYTHON).await;
}
