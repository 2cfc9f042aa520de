#!/usr/bin/env bash
# Prints the versions of the real parts the tests and the demo ran against.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
line() { printf '  %-22s %s\n' "$1" "$2"; }
version_of() { "$@" 2>/dev/null | head -n1 || echo "not found"; }
echo "Spore was tested against:"
line "containerd 2.x" "$(version_of "$root/.tools/containerd-sid/usr/bin/containerd" --version)"
line "containerd 1.7" "$(version_of "$root/.tools/containerd-trixie/usr/bin/containerd" --version)"
line "runc" "$(version_of runc --version)"
line "CNI plugins" "$(dpkg-query -W -f='${Package} ${Version}' containernetworking-plugins 2>/dev/null || echo 'not found')"
line "docker-registry" "$(dpkg-query -W -f='${Package} ${Version}' docker-registry 2>/dev/null || echo 'not found')"
line "wasmtime (crate)" "$(grep -A1 '^name = "wasmtime"$' "$root/Cargo.lock" | sed -n 's/^version = "\(.*\)"/\1/p' | head -n1)"
line "rustc" "$(version_of rustc --version)"
line "kernel" "$(uname -r)"
