//! Serves a `wasi:http/proxy` component with the shim's HTTP server, outside containerd: for
//! benchmarks (`hack/bench-http.sh`) and trying a component by hand.
//!
//! `cargo run --release -p spore-shim --example serve_component -- app.wasm [PORT]`
//!
//! The component runs exactly as in a container (same engine, linker, per-request instances,
//! limits); its rootfs is the component's directory, its env is `PORT` plus the `SPORE_HTTP_*`
//! variables of this process, its stdout and stderr go to /dev/null unless `SPORE_STDOUT` /
//! `SPORE_STDERR` name files. Ctrl-C is SIGTERM: in-flight requests drain, then it exits.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use spore_shim::host::stats::Usage;
use spore_shim::host::stdio::StdioPaths;
use spore_shim::spec::ContainerSpec;
use spore_shim::wasm::guest::WasmGuest;
use spore_shim::wasm::linker::Linkers;
use tokio::sync::watch;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(wasm) = args.next() else {
        bail!("usage: serve_component APP.wasm [PORT]");
    };
    let wasm = std::fs::canonicalize(&wasm).with_context(|| format!("finding {wasm}"))?;
    let port = args.next().unwrap_or_else(|| "8080".to_string());
    let (Some(dir), Some(name)) = (wasm.parent(), wasm.file_name()) else {
        bail!("{} is not a file path", wasm.display());
    };
    let mut env = vec![("PORT".to_string(), port.clone())];
    env.extend(std::env::vars().filter(|(key, _)| key.starts_with("SPORE_HTTP_")));
    let spec = ContainerSpec {
        args: vec![format!("/{}", name.to_string_lossy())],
        env,
        cwd: "/".into(),
        root: PathBuf::from(dir),
        root_read_only: true,
        ..ContainerSpec::default()
    };
    let output = |var: &str| {
        std::env::var(var)
            .map(|path| format!("file://{path}"))
            .unwrap_or_default()
    };
    let stdio = StdioPaths::parse("", &output("SPORE_STDOUT"), &output("SPORE_STDERR"))?;

    let engine = spore_shim::wasm::engine::shared_engine()?;
    let linkers = Linkers::new(engine);
    let guest = WasmGuest::prepare(engine, &linkers, &spec)?;
    eprintln!(
        "serving {} ({}) on 0.0.0.0:{port}",
        wasm.display(),
        guest.kind()
    );

    let (kill, kill_rx) = watch::channel(None);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            kill.send_replace(Some(spore_shim::signal::Signal::TERM));
            // Keep the sender: dropping it would read as "no signal will ever come".
            std::future::pending::<()>().await;
        }
    });
    let status = guest
        .run(
            &spec,
            &stdio,
            None,
            Arc::new(Usage::new(spec.memory_limit)),
            kill_rx,
        )
        .await;
    if let Some(message) = status.message {
        eprintln!("{message}");
    }
    std::process::exit(status.code as i32);
}
