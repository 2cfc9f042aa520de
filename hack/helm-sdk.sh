#!/usr/bin/env bash
# Makes Helm v4 available without a helm binary (Debian has none): the PyPI wheel helm-sdkpy
# carries it as a shared library (libhelm_sdkpy.so), which hack/helm_lint.py and
# hack/helm_release.py call through ctypes. Its Python wrapper asks for Python 3.12; the library
# itself does not, so the wheel is only unpacked, never pip-installed. Installs idempotently into
# .tools/: the wheel, and jsonschema + PyYAML when Python lacks them (into .tools/pylib).
# Prints the library's path; callers add .tools/pylib to PYTHONPATH.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$root/.tools"
helm_version=0.1.32
helm_dir="$tools/helm-sdkpy-$helm_version"
lib="$helm_dir/helm_sdkpy/_lib/linux-amd64/libhelm_sdkpy.so"
pylib="$tools/pylib"

log() { printf 'helm-sdk: %s\n' "$*" >&2; }

if [ "$(uname -m)" != "x86_64" ]; then
  log "helm-sdkpy ships only a linux-amd64 library; this machine is $(uname -m)"
  exit 1
fi

if [ ! -f "$lib" ]; then
  log "fetching helm-sdkpy $helm_version (Helm v4 as a shared library) from PyPI"
  dl=$(mktemp -d)
  trap 'rm -rf "$dl"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 "helm-sdkpy==$helm_version" -d "$dl" >&2
  rm -rf "$helm_dir.tmp" && mkdir -p "$helm_dir.tmp" >&2
  python3 -m zipfile -e "$dl"/helm_sdkpy-"$helm_version"-*.whl "$helm_dir.tmp" >&2
  rm -rf "$helm_dir" && mv "$helm_dir.tmp" "$helm_dir"
fi

export PYTHONPATH="$pylib${PYTHONPATH:+:$PYTHONPATH}"
if ! python3 -c 'import jsonschema, yaml' 2>/dev/null; then
  log "installing jsonschema and PyYAML into $pylib"
  python3 -m pip install --quiet --target "$pylib" 'jsonschema>=4' 'PyYAML>=6' >&2
fi

echo "$lib"
