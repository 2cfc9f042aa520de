#!/usr/bin/env bash
# Lints charts/spore with Helm's own linter and checks its values schema and CRD copy.
# Helm v4 comes as a library (hack/helm-sdk.sh fetches it), called by hack/helm_lint.py.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lib=$(bash "$root/hack/helm-sdk.sh")
export PYTHONPATH="$root/.tools/pylib${PYTHONPATH:+:$PYTHONPATH}"
exec python3 "$root/hack/helm_lint.py" "$lib"
