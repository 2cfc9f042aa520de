#!/usr/bin/env bash
# Spore's benchmarks on a private containerd, against runc on the same containerd.
#   hack/bench.sh start [N] [flags]   ctr run --rm: examples/rust/hello (spore) vs busybox echo (runc), N=20
#   hack/bench.sh pod   [N] [flags]   CRI pods: start latency (N=10) and PSS per idle pod at 1/10/50
#   hack/bench.sh languages [N]       CRI pods of the Rust, JavaScript and Python examples: size,
#                                     cold and warm start (N=5 warm), HTTP req/s at 1 and 16 conns
# Flags go to spore-bench (e.g. pod: --handler-a runc --handler-b runc, --pods 1,10,50,
# --skip-latency, --skip-memory). Builds the guests, the release shim and spore-bench first;
# containerd runs the shim from target/release. Needs root (hack/setup.sh installs the rest).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mode=${1:-}
case "$mode" in
  start|pod|languages) shift ;;
  *) echo "usage: hack/bench.sh start|pod|languages [N] [spore-bench flags]" >&2; exit 2 ;;
esac
cd "$root"
export CARGO_TARGET_DIR="$root/target"
bash hack/setup.sh >/dev/null
bash hack/build-guests.sh
cargo build -q --release -p spore-shim -p spore-e2e --bin containerd-shim-spore-v1 --bin spore-bench
echo "bench: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exec "$root/target/release/spore-bench" "$mode" --shim-dir "$root/target/release" "$@"
