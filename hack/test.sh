#!/usr/bin/env bash
# Spore's one test command: installs what the tests need (hack/setup.sh), builds everything once,
# runs every test (unit and integration against real containerd 2.x and 1.7, runc, CNI and a
# registry) and the README's main command (hack/demo.sh), both as on a new machine (an empty
# /run/containerd and Spore cache, hack/fresh-machine.sh), then the Helm chart lint, fmt and
# clippy. No test is retried. The end-to-end suite runs when SPORE_E2E_KUBECONFIG names a cluster.
#
#   bash hack/test.sh                          # everything
#   SPORE_TEST_FILTER=shim bash hack/test.sh   # only crates whose name contains "shim"
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
started=$(date +%s)
step() { printf '\n=== %s (%s, +%ss)\n' "$*" "$(date -u +%H:%M:%S)" "$(($(date +%s) - started))"; }

if [ "$(id -u)" != 0 ]; then
  echo "hack/test.sh: the integration tests start containerd, runc and CNI and must run as root" >&2
  exit 1
fi

step "setup: system packages, containerd 2.x and 1.7, Rust targets, cargo-nextest"
bash hack/setup.sh
SPORE_CONTAINERD=1.7 bash hack/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

step "format"
cargo fmt --all -- --check

step "build: Wasm guests, then the workspace and its tests (once)"
bash hack/build-guests.sh
cargo nextest run --workspace --no-run
cargo build --workspace --tests --bins

step "tests, as on a new machine (no retries)"
filter=()
[ -n "${SPORE_TEST_FILTER:-}" ] && filter=(-E "package(~${SPORE_TEST_FILTER})")
# Tests wait on containerd and the registry more than on the CPU: run more of them than cores.
tests=0
bash hack/fresh-machine.sh cargo nextest run --workspace --profile ci --test-threads 4 \
  "${filter[@]}" || tests=$?

step "the README's main command (hack/demo.sh), as on a new machine"
demo=0
SPORE_DEMO_BUILD=workspace bash hack/fresh-machine.sh bash hack/demo.sh || demo=$?

step "helm chart lint"
bash hack/helm-lint.sh

step "clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "end-to-end suite on a real cluster"
if [ -n "${SPORE_E2E_KUBECONFIG:-}" ]; then
  bash hack/e2e.sh
else
  echo "e2e: skipped: SPORE_E2E_KUBECONFIG is not set (hack/e2e.sh needs a cluster's kubeconfig; hack/kind-up.sh makes one on a Docker host)"
fi

step "versions tested against"
bash hack/versions.sh

step "done"
if [ "$tests" != 0 ] || [ "$demo" != 0 ]; then
  echo "FAILED: tests exit $tests, demo exit $demo" >&2
  exit 1
fi
