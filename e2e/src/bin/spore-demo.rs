//! Spore's main job, end to end on one machine: a private containerd with the Spore shim, a
//! loopback OCI registry, `examples/rust/hello` pushed there as an image, pulled and run through
//! containerd with the `spore` runtime. Run by `hack/demo.sh`, which builds what it needs first.

use std::process::ExitCode;

use spore_e2e::image::ImageBuilder;
use spore_e2e::{ContainerSpec, Containerd, ContainerdOptions, CriClient, Registry};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("demo failed: {err}");
            ExitCode::FAILURE
        }
    }
}

fn step(text: &str) {
    println!("\n==> {text}");
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let hello_path = spore_e2e::tools::target_dir().join("wasm32-wasip2/release/hello.wasm");
    let hello = std::fs::read(&hello_path).map_err(|e| {
        format!(
            "{}: {e} (run `bash hack/build-guests.sh`)",
            hello_path.display()
        )
    })?;

    step("starting a loopback OCI registry (Debian's docker-registry)");
    let registry = Registry::start()?;
    println!("    registry at http://{}", registry.host());

    step("starting a private containerd with the spore runtime (io.containerd.spore.v1)");
    let containerd = Containerd::start(
        ContainerdOptions::default()
            .spore_shim_from_target()
            .plain_http_registry(registry.host()),
    )?;
    println!("    containerd socket {}", containerd.socket().display());

    step("pushing examples/rust/hello as an image (/hello.wasm in its rootfs)");
    let image = ImageBuilder::new()
        .file("/hello.wasm", hello)
        .entrypoint(["/hello.wasm"])
        .build()?;
    let reference = image.push_http(&registry.host(), "spore/hello", "latest")?;
    println!("    pushed {reference}");

    step(&format!("ctr images pull {reference}"));
    containerd.ctr_pull("default", &reference)?;

    step("ctr run --runtime io.containerd.spore.v1 ... /hello.wasm from-spore");
    let started = std::time::Instant::now();
    let out = containerd.ctr_in(
        "default",
        &[
            "run",
            "--rm",
            "--runtime",
            spore_format::RUNTIME_TYPE,
            "--env",
            "GREETING_NAME=Kubernetes",
            &reference,
            "spore-demo",
            "/hello.wasm",
            "from-spore",
        ],
    )?;
    let took = started.elapsed();
    print!("{}", indent(&out.stdout));
    if !out.success() {
        return Err(format!("the Wasm task failed: {}", out.stderr.trim()).into());
    }
    println!(
        "    (create + start + exit through containerd in {} ms)",
        took.as_millis()
    );

    step(
        "an HTTP component as a pod through CRI (what the kubelet does): examples/rust/hello-http",
    );
    let http_path = spore_e2e::tools::target_dir().join("wasm32-wasip2/release/hello-http.wasm");
    let http_wasm = std::fs::read(&http_path).map_err(|e| {
        format!(
            "{}: {e} (run `bash hack/build-guests.sh`)",
            http_path.display()
        )
    })?;
    let http_image = ImageBuilder::new()
        .file("/hello-http.wasm", http_wasm)
        .entrypoint(["/hello-http.wasm"])
        .build()?
        .push_http(&registry.host(), "spore/hello-http", "latest")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve_http_pod(&containerd, &http_image))?;

    let left = containerd.shutdown();
    if !left.is_empty() {
        return Err(format!("containerd left things behind: {left}").into());
    }
    step("done: containerd stopped, nothing left behind");
    Ok(())
}

async fn serve_http_pod(
    containerd: &Containerd,
    image: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut cri = CriClient::for_containerd(containerd).await?;
    cri.pull_image(image).await?;
    let pod = cri
        .run_pod_sandbox("hello-http", "default", spore_format::RUNTIME_HANDLER)
        .await?;
    let spec = ContainerSpec::new("web", image).env("GREETING_NAME", "Kubernetes");
    cri.run_container(&pod, &spec).await?;
    let ip = cri.pod_ip(&pod.id).await?.ok_or("the pod has no IP")?;
    let addr = std::net::SocketAddr::from((ip, 8080));
    println!("    pod {} (handler spore) at {addr}", &pod.id[..12]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let answer = loop {
        match get(addr) {
            Ok(answer) => break answer,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            Err(e) => return Err(format!("GET http://{addr}/: {e}").into()),
        }
    };
    println!("    $ curl http://{addr}/");
    print!("{}", indent(&answer));
    cri.teardown_pod(&pod).await?;
    Ok(())
}

/// `GET /`; returns the body.
fn get(addr: std::net::SocketAddr) -> Result<String, spore_e2e::http::HttpError> {
    spore_e2e::http::request("GET", &format!("http://{addr}/"), &[], b"").map(|r| r.text())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    | {l}\n")).collect()
}
