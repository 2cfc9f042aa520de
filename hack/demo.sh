#!/usr/bin/env bash
# Spore's main job on a new machine: installs what it needs, builds the shim and the examples,
# then, through a private containerd and a loopback registry, runs examples/rust/hello with
# `ctr run` and serves examples/rust/hello-http as a pod through CRI (what the kubelet does).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [ "$(id -u)" != 0 ]; then
  echo "hack/demo.sh starts containerd and must run as root" >&2
  exit 1
fi
echo "==> setup (Debian packages, containerd 2.x into .tools/, Rust Wasm targets)"
bash hack/setup.sh
echo "==> building the shim (containerd-shim-spore-v1), the demo and the Wasm examples"
if [ ! -x "${CARGO_TARGET_DIR:-target}/debug/containerd-shim-spore-v1" ]; then
  echo "    (the first build compiles wasmtime: about 15 minutes on 2 cores; cargo shows its progress)"
fi
if [ "${SPORE_DEMO_BUILD:-}" = workspace ]; then
  # hack/test.sh: the binaries its test build made (tests enable dev-dependency features, so a
  # build of only these two would compile wasmtime a second time with other features).
  cargo build --workspace --tests --bins
else
  cargo build -p spore-shim --bin containerd-shim-spore-v1 -p spore-e2e --bin spore-demo
fi
SPORE_GUESTS=rust bash hack/build-guests.sh
target_dir=${CARGO_TARGET_DIR:-$root/target}
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
exec "$target_dir/debug/spore-demo"
