#!/usr/bin/env bash
# Builds the example components (Rust, JavaScript, Python) and pushes each as a Wasm OCI
# artifact (`spore push`) under the name examples/apps/*.yaml give it, on REGISTRY instead of
# registry.example.com:
#   hack/push-examples.sh REGISTRY     e.g. localhost:5001 -> localhost:5001/spore/hello-http:0.1.0
# NAME-js and NAME-python are examples/js/NAME and examples/python/NAME; other names are the Rust
# crates of examples/rust (the command example `hello-cli` is the crate `hello`). Pushes over
# plain HTTP (--insecure): the registries this is for are local ones.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ $# -eq 1 ] || { echo "usage: hack/push-examples.sh REGISTRY" >&2; exit 2; }
registry=${1%/}
target_dir=${CARGO_TARGET_DIR:-$root/target}
log() { printf 'push-examples: %s\n' "$*" >&2; }

log "building the example components (Rust, JavaScript, Python)"
bash "$root/hack/build-guests.sh" >&2
cargo build --locked -p spore-cli --bin spore --manifest-path "$root/Cargo.toml" >&2
spore_cli="$target_dir/debug/spore"
rust_dir="$target_dir/wasm32-wasip2/release"
refs=$(grep -ho 'registry\.example\.com/spore/[a-z0-9._-]*:[A-Za-z0-9._-]*' "$root"/examples/apps/*.yaml | sort -u)
for ref in $refs; do
  name_tag=${ref#registry.example.com/spore/}
  name=${name_tag%%:*}
  candidates=("$rust_dir/$name.wasm" "$rust_dir/${name//-/_}.wasm" "$rust_dir/${name%-cli}.wasm")
  case "$name" in
    *-js) candidates=("$target_dir/examples/js/${name%-js}.wasm") ;;
    *-python) candidates=("$target_dir/examples/python/${name%-python}.wasm") ;;
  esac
  wasm=""
  for candidate in "${candidates[@]}"; do
    if [ -f "$candidate" ]; then wasm="$candidate"; break; fi
  done
  if [ -z "$wasm" ]; then
    log "no component for $ref: expected one of ${candidates[*]}"
    exit 1
  fi
  log "pushing $wasm as $registry/spore/$name_tag"
  "$spore_cli" push --insecure "$wasm" "$registry/spore/$name_tag" >&2
done
