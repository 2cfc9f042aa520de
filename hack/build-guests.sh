#!/usr/bin/env bash
# Builds the Wasm guests: examples/ for wasm32-wasip2, and the shim's test guests for
# wasm32-wasip2 and wasm32-wasip1. Output under target/wasm32-wasip{1,2}/release/.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR="$root/target"
cargo build --release --target wasm32-wasip2 --manifest-path "$root/examples/Cargo.toml"
cargo build --release --target wasm32-wasip2 --manifest-path "$root/shim/tests/guests/Cargo.toml"
cargo build --release --target wasm32-wasip1 --manifest-path "$root/shim/tests/guests/Cargo.toml" --bin exit3
