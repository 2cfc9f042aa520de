#!/usr/bin/env bash
# Spore's main job on a fresh machine: installs what it needs, builds the shim and the example,
# then serves examples/hello through a private containerd from a loopback registry.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [ "$(id -u)" != 0 ]; then
  echo "hack/demo.sh starts containerd and must run as root" >&2
  exit 1
fi
echo "==> setup (packages, containerd 2.x into .tools/, Rust Wasm targets)"
bash hack/setup.sh >/dev/null
echo "==> building the shim (containerd-shim-spore-v1) and the Wasm examples"
cargo build --quiet -p spore-shim --bin containerd-shim-spore-v1
cargo build --quiet -p spore-e2e --bin spore-demo
bash hack/build-guests.sh
exec "$root/target/debug/spore-demo"
