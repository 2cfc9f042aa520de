#!/usr/bin/env bash
# Lints charts/spore with Helm's own linter and checks its values schema and CRD copy.
# There is no helm binary in Debian: the PyPI wheel helm-sdkpy carries Helm v4 as a shared library
# (libhelm_sdkpy.so) that hack/helm_lint.py calls through ctypes. Its Python wrapper asks for
# Python 3.12; the library itself does not, so the wheel is only unpacked, never pip-installed.
# Installs idempotently into .tools/: the wheel, and jsonschema + PyYAML when Python lacks them.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$root/.tools"
helm_version=0.1.32
helm_dir="$tools/helm-sdkpy-$helm_version"
lib="$helm_dir/helm_sdkpy/_lib/linux-amd64/libhelm_sdkpy.so"
pylib="$tools/pylib"

log() { printf 'helm-lint: %s\n' "$*" >&2; }

if [ "$(uname -m)" != "x86_64" ]; then
  log "helm-sdkpy ships only a linux-amd64 library; this machine is $(uname -m)"
  exit 1
fi

if [ ! -f "$lib" ]; then
  log "fetching helm-sdkpy $helm_version (Helm v4 as a shared library) from PyPI"
  dl=$(mktemp -d)
  trap 'rm -rf "$dl"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 "helm-sdkpy==$helm_version" -d "$dl"
  rm -rf "$helm_dir.tmp" && mkdir -p "$helm_dir.tmp"
  python3 -m zipfile -e "$dl"/helm_sdkpy-"$helm_version"-*.whl "$helm_dir.tmp"
  rm -rf "$helm_dir" && mv "$helm_dir.tmp" "$helm_dir"
fi

export PYTHONPATH="$pylib${PYTHONPATH:+:$PYTHONPATH}"
if ! python3 -c 'import jsonschema, yaml' 2>/dev/null; then
  log "installing jsonschema and PyYAML into $pylib"
  python3 -m pip install --quiet --target "$pylib" 'jsonschema>=4' 'PyYAML>=6'
fi

exec python3 "$root/hack/helm_lint.py" "$lib"
