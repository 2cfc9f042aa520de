#!/usr/bin/env bash
# Spore's benchmarks on a private containerd, against runc on the same containerd.
#   hack/bench.sh start [N] [flags]   ctr run --rm: examples/rust/hello (spore) vs busybox echo (runc), N=20
#   hack/bench.sh pod   [N] [flags]   CRI pods: start latency (N=10) and PSS per idle pod at 1/10/100
#   hack/bench.sh languages [N]       CRI pods of the Rust, JavaScript and Python examples: size,
#                                     cold and warm start (N=5 warm), HTTP req/s at 1 and 16 conns
#   hack/bench.sh http [N]            HTTP req/s, p50, p99 (wrk; N=3 rounds of 10 s): hello and JSON
#                                     components served by Spore, by runwasi's
#                                     containerd-shim-wasmtime-v1 when it is on PATH (same containerd,
#                                     CRI pods) and by `wasmtime serve` 48 (installed into .tools/)
#   hack/bench.sh kubelet [N] [flags] the pod bench through a single-node cluster's kubelet, run on
#                                     its node: start latency (N=10) and PSS per idle pod, Wasm on
#                                     RuntimeClass spore vs busybox on the node's runc. Needs
#                                     SPORE_E2E_KUBECONFIG and SPORE_E2E_REGISTRY (as hack/e2e.sh);
#                                     --containerd-socket names the node's containerd
# Flags go to spore-bench (e.g. pod: --handler-a runc --handler-b runc, --pods 1,10,100,1000,
# --skip-latency, --skip-memory; --containerd-env KEY=VALUE for the bench's own containerd, e.g.
# GOMAXPROCS=4, see docs/benchmarks.md). Builds the guests, the release shim and spore-bench first
# (fat LTO, as the shim ships: about 15 minutes on 2 cores from scratch);
# containerd runs the shim from target/release. Needs root (hack/setup.sh installs the rest).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mode=${1:-}
case "$mode" in
  start|pod|languages|http|kubelet) shift ;;
  *) echo "usage: hack/bench.sh start|pod|languages|http|kubelet [N] [spore-bench flags]" >&2; exit 2 ;;
esac
cd "$root"
export CARGO_TARGET_DIR="$root/target"
# containerd and its shims inherit this environment; nodes do not set these. With
# RUST_BACKTRACE=1 wasmtime 48 captures a backtrace for every HTTP request's instance (about
# 5 % of `wasmtime serve`'s CPU), which would skew the servers' figures.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
bash hack/setup.sh >/dev/null
bash hack/build-guests.sh
if [ "$mode" = http ]; then
  command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)" >&2; exit 1; }
  bash hack/install-wasmtime-cli.sh
fi
cargo build -q --release -p spore-shim -p spore-e2e --bin containerd-shim-spore-v1 --bin spore-bench
echo "bench: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exec "$root/target/release/spore-bench" "$mode" --shim-dir "$root/target/release" "$@"
