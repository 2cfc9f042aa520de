#!/usr/bin/env bash
# Builds the Wasm guests:
# - examples/rust/ for wasm32-wasip2, and the shim's test guests for wasm32-wasip2 and
#   wasm32-wasip1 (cargo): under target/wasm32-wasip{1,2}/release/;
# - examples/js/ with componentize-js from the npm registry (examples/js/package-lock.json) and
#   examples/python/ with componentize-py from PyPI (examples/python/requirements.txt, installed
#   into .tools/componentize-py): under target/examples/{js,python}/, rebuilt only when their
#   sources, tools or Spore's wit/ changed (SPORE_GUESTS=rust skips them).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
case "$CARGO_TARGET_DIR" in /*) ;; *) CARGO_TARGET_DIR="$root/$CARGO_TARGET_DIR" ;; esac
cargo build --release --target wasm32-wasip2 --manifest-path "$root/examples/rust/Cargo.toml"
# The HTTP examples are library components (cargo names them with underscores): give them the
# names of their packages, as the binaries have.
for lib in hello-http json-api; do
  cp "$CARGO_TARGET_DIR/wasm32-wasip2/release/${lib//-/_}.wasm" "$CARGO_TARGET_DIR/wasm32-wasip2/release/$lib.wasm"
done
cargo build --release --target wasm32-wasip2 --manifest-path "$root/shim/tests/guests/Cargo.toml"
cargo build --release --target wasm32-wasip1 --manifest-path "$root/shim/tests/guests/Cargo.toml" --bin exit3

# SPORE_GUESTS=rust: the cargo-built guests only (the README's demo needs no more).
[ "${SPORE_GUESTS:-all}" = rust ] && exit 0

# True when an output is missing or older than a file under the given inputs.
stale() {
  local outputs=$1
  shift
  local out
  for out in $outputs; do
    [ -f "$out" ] || return 0
    if [ -n "$(find "$@" -path '*/node_modules' -prune -o -path '*/__pycache__' -prune \
      -o -type f -newer "$out" -print -quit)" ]; then
      return 0
    fi
  done
  return 1
}

timed() {
  local label=$1 start=$SECONDS
  shift
  "$@"
  echo "build-guests: $label in $((SECONDS - start)) s"
}

js_out="$CARGO_TARGET_DIR/examples/js"
if stale "$js_out/hello.wasm $js_out/hello-http.wasm" "$root/examples/js" "$root/wit"; then
  mkdir -p "$js_out"
  cd "$root/examples/js"
  timed "npm ci (componentize-js)" npm ci --no-audit --no-fund --loglevel=error
  OUT_DIR="$js_out" timed "JavaScript examples" npm run --silent build
  cd "$root"
fi

py_tool="$root/.tools/componentize-py"
py_out="$CARGO_TARGET_DIR/examples/python"
requirements="$root/examples/python/requirements.txt"
if [ ! -x "$py_tool/bin/componentize-py" ] || [ "$requirements" -nt "$py_tool/bin/componentize-py" ]; then
  rm -rf "$py_tool"
  python3 -m venv "$py_tool"
  timed "pip install (componentize-py)" "$py_tool/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  touch "$py_tool/bin/componentize-py"
fi
if stale "$py_out/hello.wasm $py_out/hello-http.wasm" "$root/examples/python" "$root/wit" "$py_tool/bin/componentize-py"; then
  mkdir -p "$py_out"
  for app in hello hello-http; do
    world=command
    [ "$app" = hello-http ] && world=http
    cd "$root/examples/python/$app"
    timed "Python example $app" "$py_tool/bin/componentize-py" --wit-path "$root/wit" \
      --world "spore:host/$world" --quiet componentize app --output "$py_out/$app.wasm"
    cd "$root"
  done
fi
