//! Spore's benchmarks against runc on one private containerd; run by `hack/bench.sh`, which
//! builds the release shim and the guests first.
//!
//! `spore-bench start [N]`: `ctr run --rm` of examples/rust/hello (Spore) vs busybox echo (runc).
//! `spore-bench pod [N]`: CRI pod start latency and per-pod PSS, `spore` vs `runc` handlers.
//! `spore-bench languages [N]`: the Rust, JavaScript and Python examples through the CRI: size,
//! cold and warm pod start, HTTP req/s.
//! `spore-bench http [N]`: HTTP req/s and latency of Spore, runwasi's wasmtime shim (when on
//! `PATH`) and `wasmtime serve`, hello and JSON components, 1/16/50 connections.
//! `spore-bench kubelet [N]`: pod start latency and per-pod PSS through a single-node cluster's
//! kubelet (`SPORE_E2E_KUBECONFIG`, `SPORE_E2E_REGISTRY`), run on its node.

use std::process::ExitCode;

use spore_e2e::bench::{BenchArgs, BenchError, Mode, http, kubelet, languages, pod, start};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match BenchArgs::parse(&argv) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    let outcome = match args.mode {
        Mode::Start => start::run(&args),
        Mode::Pod => on_tokio(pod::run(&args)),
        Mode::Languages => on_tokio(languages::run(&args)),
        Mode::Http => on_tokio(http::run(&args)),
        Mode::Kubelet => on_tokio(kubelet::run(&args)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("spore-bench failed: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs an async bench on a multi-threaded tokio runtime.
fn on_tokio(bench: impl Future<Output = Result<(), BenchError>>) -> Result<(), BenchError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| BenchError::Spawn {
            what: "the tokio runtime".into(),
            source,
        })?
        .block_on(bench)
}
