//! Spore's main job, end to end on one machine: a private containerd with the Spore shim, a
//! loopback OCI registry, `examples/hello` pushed there as an image, pulled and run through
//! containerd with the `spore` runtime. Run by `hack/demo.sh`, which builds what it needs first.

use std::process::ExitCode;

use spore_e2e::image::ImageBuilder;
use spore_e2e::{Containerd, ContainerdOptions, Registry};

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
            .plain_http_registry(registry.host())
            .import_pause_image(false),
    )?;
    println!("    containerd socket {}", containerd.socket().display());

    step("pushing examples/hello as an image (/hello.wasm in its rootfs)");
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
            "io.containerd.spore.v1",
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

    let left = containerd.shutdown();
    if !left.is_empty() {
        return Err(format!("containerd left things behind: {left}").into());
    }
    step("done: containerd stopped, nothing left behind");
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    | {l}\n")).collect()
}
