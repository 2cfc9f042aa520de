#!/usr/bin/env bash
# Copies into wit/deps/ the WASI WIT packages that the shim's linkers are generated from: the
# WIT folders of the wasmtime-wasi and wasmtime-wasi-http crates at the versions Cargo.lock
# names, from cargo's registry. Run it after changing the wasmtime version;
# shim/tests/wit_worlds.rs fails until wit/deps/ is what the shim links.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
cargo fetch --locked --quiet
crate_dir() {
  python3 - "$1" <<'PY'
import glob, os, sys, tomllib
name = sys.argv[1]
with open("Cargo.lock", "rb") as f:
    versions = [p["version"] for p in tomllib.load(f)["package"] if p["name"] == name]
if len(versions) != 1:
    sys.exit(f"Cargo.lock names {name} {len(versions)} times")
home = os.environ.get("CARGO_HOME") or os.path.expanduser("~/.cargo")
found = glob.glob(f"{home}/registry/src/*/{name}-{versions[0]}")
if not found:
    sys.exit(f"{name} {versions[0]} is not in {home}/registry/src")
print(found[0])
PY
}
wasi=$(crate_dir wasmtime-wasi)
http=$(crate_dir wasmtime-wasi-http)
rm -rf wit/deps
mkdir -p wit/deps
cp "$wasi"/src/p2/wit/deps/*.wit wit/deps/
cp "$http"/wit/deps/http.wit wit/deps/
echo "wit/deps: from $(basename "$wasi") and $(basename "$http"):"
head -qn1 wit/deps/*.wit
