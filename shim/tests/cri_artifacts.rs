//! OCI Wasm artifacts through CRI: a component published with `spore push` runs as a pod, the
//! second pod of it starts from the node's compile cache, a damaged cache entry is recompiled,
//! precompiled code inside an image is refused, and two first starts at once both run.

mod cri_common;

use std::path::PathBuf;
use std::time::Duration;

use cri_common::{HANDLER, HELLO_GREETING, guest};
use spore_e2e::cri_log::{stream_text, wait_for_log_line};
use spore_e2e::image::WasmArtifact;
use spore_e2e::{
    ContainerSpec, Containerd, ContainerdOptions, CriClient, LogStream, Registry, read_cri_log,
};

const EXIT: Duration = Duration::from_secs(60);

struct Node {
    registry: Registry,
    containerd: Containerd,
    cri: CriClient,
    cache: tempfile::TempDir,
}

impl Node {
    async fn start() -> Node {
        let registry = Registry::start().expect("registry");
        let cache = tempfile::Builder::new()
            .prefix("spore-cache-")
            .tempdir()
            .expect("cache dir");
        let containerd = Containerd::start(
            ContainerdOptions::default()
                .spore_shim_from_target()
                .plain_http_registry(registry.host())
                .spore_option(
                    "CacheDir",
                    format!("{:?}", cache.path().display().to_string()),
                )
                .env("SPORE_SHIM_LOG", "warn,spore_shim=debug"),
        )
        .expect("containerd");
        let cri = CriClient::for_containerd(&containerd).await.expect("CRI");
        Node {
            registry,
            containerd,
            cri,
            cache,
        }
    }

    /// Publishes `wasm` with the `spore` CLI and pulls it through CRI.
    async fn push_with_spore_cli(&mut self, file: &std::path::Path, repo: &str) -> String {
        let reference = format!("{}/{repo}:v1", self.registry.host());
        cri_common::spore_push(file, &reference);
        self.cri
            .pull_image(&reference)
            .await
            .expect("PullImage of the artifact");
        reference
    }

    /// One pod running `image` to completion; returns its stdout lines. (`spore push` records an
    /// Entrypoint; artifacts made otherwise need the pod to name a command, as here.)
    async fn run_once(&mut self, name: &str, image: &str) -> Vec<String> {
        let pod = self
            .cri
            .run_pod_sandbox(name, "default", HANDLER)
            .await
            .expect("RunPodSandbox");
        let spec = ContainerSpec::new("app", image);
        let spec = if image.contains("hello-artifact") {
            spec
        } else {
            spec.command(["app.wasm"])
        };
        let container = match self.cri.run_container(&pod, &spec).await {
            Ok(c) => c,
            Err(e) => panic!("{name}: {e}\n{}", self.containerd.log()),
        };
        let status = self
            .cri
            .wait_for_exit(&container.id, EXIT)
            .await
            .expect("exits");
        assert_eq!(status.exit_code, 0, "{status:?}");
        wait_for_log_line(&container.log_path, HELLO_GREETING, EXIT)
            .await
            .expect("the greeting reaches the CRI log");
        let lines = read_cri_log(&container.log_path).expect("CRI log");
        self.cri.teardown_pod(&pod).await.expect("teardown");
        stream_text(&lines, LogStream::Stdout)
    }

    /// The shim's compile-cache counters logged for container creates, in order.
    fn cache_counts(&self) -> Vec<(u64, u64)> {
        self.containerd
            .log()
            .lines()
            .filter(|l| l.contains("compile cache"))
            .filter_map(|l| Some((field(l, "hits=")?, field(l, "misses=")?)))
            .collect()
    }

    fn cache_entries(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.cache.path())
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn field(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn hello_file() -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new()
        .suffix(".wasm")
        .tempfile()
        .expect("temp");
    std::fs::write(file.path(), guest("hello")).expect("write");
    file
}

#[tokio::test]
async fn an_artifact_pushed_with_spore_runs_and_the_second_pod_hits_the_cache() {
    let mut node = Node::start().await;
    let file = hello_file();
    let image = node
        .push_with_spore_cli(file.path(), "spore/hello-artifact")
        .await;

    assert_eq!(
        node.run_once("first", &image).await,
        [HELLO_GREETING, "args: []"]
    );
    assert_eq!(
        node.cache_counts().last(),
        Some(&(0, 1)),
        "first start compiles"
    );
    assert_eq!(node.cache_entries().len(), 1, "one entry written");
    // At debug the shim says how long each task request took (docs/troubleshooting.md).
    let log = node.containerd.log();
    for request in ["create{", "start{", "guest{"] {
        assert!(
            log.lines()
                .any(|l| l.contains(request) && l.contains("close time.busy=")),
            "no timed close of {request}...}} in containerd's log:\n{log}"
        );
    }

    // A new pod is a new shim process: it finds the code on disk.
    assert_eq!(
        node.run_once("second", &image).await,
        [HELLO_GREETING, "args: []"]
    );
    assert_eq!(
        node.cache_counts().last(),
        Some(&(1, 0)),
        "second start loads"
    );

    // A damaged entry is never trusted: the third pod recompiles and still runs.
    let entry = node.cache_entries().pop().expect("entry");
    let mut bytes = std::fs::read(&entry).expect("read entry");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, bytes).expect("damage entry");
    assert_eq!(
        node.run_once("third", &image).await,
        [HELLO_GREETING, "args: []"]
    );
    assert_eq!(
        node.cache_counts().last(),
        Some(&(0, 1)),
        "damaged entry recompiled"
    );
}

#[tokio::test]
async fn a_plain_image_and_an_artifact_of_the_same_component_both_run() {
    let mut node = Node::start().await;
    let plain = cri_common::wasm_guests_image()
        .build()
        .expect("image")
        .push_http(&node.registry.host(), "spore/plain", "v1")
        .expect("push");
    node.cri.pull_image(&plain).await.expect("pull plain");
    let artifact = WasmArtifact::new(guest("hello"))
        .build()
        .push_http(&node.registry.host(), "spore/artifact", "v1")
        .expect("push artifact");
    node.cri.pull_image(&artifact).await.expect("pull artifact");

    let pod = node
        .cri
        .run_pod_sandbox("plain", "default", HANDLER)
        .await
        .expect("pod");
    let c = node
        .cri
        .run_container(
            &pod,
            &ContainerSpec::new("app", &plain).command(["/hello.wasm"]),
        )
        .await
        .expect("plain image container");
    assert_eq!(
        node.cri
            .wait_for_exit(&c.id, EXIT)
            .await
            .expect("exit")
            .exit_code,
        0
    );
    node.cri.teardown_pod(&pod).await.expect("teardown");
    assert_eq!(
        node.run_once("artifact", &artifact).await[0],
        HELLO_GREETING
    );
}

#[tokio::test]
async fn precompiled_code_inside_an_artifact_is_refused() {
    let mut node = Node::start().await;
    let elf = std::fs::read("/bin/true").expect("an ELF file");
    let image = WasmArtifact::new(elf)
        .build()
        .push_http(&node.registry.host(), "spore/precompiled", "v1")
        .expect("push");
    node.cri.pull_image(&image).await.expect("pull");
    let pod = node
        .cri
        .run_pod_sandbox("cwasm", "default", HANDLER)
        .await
        .expect("pod");
    let err = node
        .cri
        .run_container(
            &pod,
            &ContainerSpec::new("app", &image).command(["app.wasm"]),
        )
        .await
        .expect_err("precompiled code must not run");
    let text = err.to_string();
    assert!(text.contains(&image), "the error names the image: {text}");
    assert!(text.contains("precompiled"), "{text}");
    assert!(node.cache_entries().is_empty(), "nothing cached");
    node.cri.teardown_pod(&pod).await.expect("teardown");
}

#[tokio::test]
async fn two_first_starts_of_one_new_component_both_run() {
    let mut node = Node::start().await;
    let image = WasmArtifact::new(guest("hello"))
        .build()
        .push_http(&node.registry.host(), "spore/twice", "v1")
        .expect("push");
    node.cri.pull_image(&image).await.expect("pull");
    let mut second = CriClient::for_containerd(&node.containerd)
        .await
        .expect("CRI");
    let pods = [
        node.cri
            .run_pod_sandbox("one", "default", HANDLER)
            .await
            .expect("pod one"),
        second
            .run_pod_sandbox("two", "default", HANDLER)
            .await
            .expect("pod two"),
    ];
    let spec = ContainerSpec::new("app", &image).command(["app.wasm"]);
    let (a, b) = tokio::join!(
        node.cri.run_container(&pods[0], &spec),
        second.run_container(&pods[1], &spec)
    );
    for c in [a.expect("container one"), b.expect("container two")] {
        let status = node.cri.wait_for_exit(&c.id, EXIT).await.expect("exits");
        assert_eq!(status.exit_code, 0, "{status:?}");
        // The CRI logger may write the last line just after the container shows exited.
        wait_for_log_line(&c.log_path, HELLO_GREETING, EXIT)
            .await
            .expect("the greeting reaches the CRI log");
        let lines = read_cri_log(&c.log_path).expect("log");
        assert_eq!(stream_text(&lines, LogStream::Stdout)[0], HELLO_GREETING);
    }
    assert_eq!(node.cache_entries().len(), 1, "one entry for one component");
    for pod in &pods {
        node.cri.teardown_pod(pod).await.expect("teardown");
    }
}

#[tokio::test]
async fn compiled_code_of_removed_images_is_cleaned_up() {
    let mut node = Node::start().await;
    let first = WasmArtifact::new(guest("hello"))
        .build()
        .push_http(&node.registry.host(), "spore/gone", "v1")
        .expect("push");
    node.cri.pull_image(&first).await.expect("pull");
    assert_eq!(node.run_once("gone", &first).await[0], HELLO_GREETING);
    let old_entries = node.cache_entries();
    assert_eq!(old_entries.len(), 1, "{old_entries:?}");

    // The image goes (the kubelet's image GC); the next shim's first artifact start cleans up.
    node.cri.remove_image(&first).await.expect("RemoveImage");
    let second = WasmArtifact::new(cri_common::guest("files"))
        .build()
        .push_http(&node.registry.host(), "spore/stays", "v1")
        .expect("push");
    node.cri.pull_image(&second).await.expect("pull");
    let pod = node
        .cri
        .run_pod_sandbox("stays", "default", HANDLER)
        .await
        .expect("pod");
    let c = node
        .cri
        .run_container(
            &pod,
            &ContainerSpec::new("app", &second).command(["files.wasm"]),
        )
        .await
        .expect("container");
    node.cri.wait_for_exit(&c.id, EXIT).await.expect("exits");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while old_entries.iter().any(|e| e.exists()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the removed image's entry is still there: {old_entries:?}\n{}",
            node.containerd.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        node.cache_entries().len(),
        1,
        "only the present image's code is left"
    );
    node.cri.teardown_pod(&pod).await.expect("teardown");
}
