#!/usr/bin/env bash
# The end-to-end suite (hack/e2e.sh) on a kind cluster: hack/kind-up.sh makes the cluster and a
# registry at localhost:5001 (the nodes reach it through containerd's certs.d), then hack/e2e.sh
# builds and pushes Spore's images and the example components there and runs every step.
# Needs Docker (a running daemon), kind and kubectl. Environment: SPORE_KIND_CLUSTER (spore-e2e),
# SPORE_REGISTRY_PORT (5001).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cluster=${SPORE_KIND_CLUSTER:-spore-e2e}
reg_port=${SPORE_REGISTRY_PORT:-5001}
if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  echo "e2e-kind: no Docker daemon here (docker info fails); kind needs one. On any other cluster: SPORE_E2E_KUBECONFIG=... hack/e2e.sh" >&2
  exit 1
fi
"$root/hack/kind-up.sh"
kubeconfig=$(mktemp)
trap 'rm -f "$kubeconfig"' EXIT
kind get kubeconfig --name "$cluster" > "$kubeconfig"
SPORE_E2E_KUBECONFIG="$kubeconfig" SPORE_E2E_REGISTRY="localhost:${reg_port}" exec bash "$root/hack/e2e.sh"
