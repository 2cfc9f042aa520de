#!/usr/bin/env bash
# Installs wasmtime-cli 48.0.8 (the wasmtime the shim is built on) into .tools/wasmtime-cli, for
# the HTTP benchmarks' `wasmtime serve` column; a long build on 2 cores, done once.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=48.0.8
bin=$root/.tools/wasmtime-cli/bin/wasmtime
if [[ -x $bin ]] && [[ $("$bin" --version) == "wasmtime $version"* ]]; then
    exit 0
fi
echo "installing wasmtime-cli $version into .tools/wasmtime-cli (long)" >&2
cargo install -q wasmtime-cli --version "$version" --locked --root "$root/.tools/wasmtime-cli"
