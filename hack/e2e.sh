#!/usr/bin/env bash
# Spore's end-to-end suite on a real cluster, from its kubeconfig: builds Spore's images
# (hack/images.sh) and the example components (hack/push-examples.sh), pushes them to a
# registry the cluster pulls from, then runs spore-e2e-cluster (e2e/src/cluster/), which
# `helm install`s charts/spore, checks every node, applies examples/apps/, checks HTTP through a
# Service, logs, `kubectl scale wa`, the HPA, `helm upgrade` and `helm uninstall`, printing each
# step with its time. Exit 0 only when every step passed.
#
#   SPORE_E2E_KUBECONFIG=~/.kube/config SPORE_E2E_REGISTRY=localhost:5001 hack/e2e.sh
#
# Environment:
#   SPORE_E2E_KUBECONFIG         the cluster (required)
#   SPORE_E2E_REGISTRY           registry the nodes pull from and this machine pushes to, over
#                                plain HTTP for localhost/127.x (kind: localhost:5001 from
#                                hack/kind-up.sh). Unset: a private docker-registry is started
#                                on 127.0.0.1:${SPORE_E2E_REGISTRY_PORT:-5000} for the run, which
#                                serves nodes on this machine only.
#   SPORE_E2E_VALUES             extra chart values files, colon-separated (e.g. the node's
#                                nodeInstaller.containerdConfig/containerdSocket/containerdRestart)
#   SPORE_E2E_CONTAINERD_CONFIG  containerd's config path on the nodes (/etc/containerd/config.toml)
#   SPORE_E2E_TAG                tag of Spore's images (e2e-<UTC time>: new each run)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf 'e2e: %s\n' "$*" >&2; }
if [ -z "${SPORE_E2E_KUBECONFIG:-}" ]; then
  echo "e2e: SPORE_E2E_KUBECONFIG is not set: give the kubeconfig of the cluster to test" >&2
  exit 2
fi
[ -r "$SPORE_E2E_KUBECONFIG" ] || { log "cannot read $SPORE_E2E_KUBECONFIG"; exit 2; }
# A new tag per run: the chart pulls IfNotPresent, so that the uninstall hook still starts when
# the registry is gone, and a node must never run an image of an earlier run.
export SPORE_E2E_TAG=${SPORE_E2E_TAG:-e2e-$(date -u +%Y%m%d%H%M%S)}
target_dir=${CARGO_TARGET_DIR:-$root/target}
started=$(date +%s)

if [ -z "${SPORE_E2E_REGISTRY:-}" ]; then
  port=${SPORE_E2E_REGISTRY_PORT:-5000}
  store=$(mktemp -d)
  cat > "$store/config.yml" <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $store/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
log:
  level: warn
YAML
  command -v docker-registry >/dev/null || { log "docker-registry is missing (hack/setup.sh installs it)"; exit 1; }
  docker-registry serve "$store/config.yml" > "$store/registry.log" 2>&1 &
  registry_pid=$!
  trap 'kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; rm -rf "$store"' EXIT
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null || { log "the registry did not start:"; cat "$store/registry.log" >&2; exit 1; }
  export SPORE_E2E_REGISTRY="127.0.0.1:$port"
  log "registry for this run at http://$SPORE_E2E_REGISTRY (nodes on this machine only)"
fi

log "images: hack/images.sh $SPORE_E2E_REGISTRY $SPORE_E2E_TAG"
bash "$root/hack/images.sh" "$SPORE_E2E_REGISTRY" "$SPORE_E2E_TAG"
log "example components: hack/push-examples.sh $SPORE_E2E_REGISTRY"
bash "$root/hack/push-examples.sh" "$SPORE_E2E_REGISTRY"
cargo build --locked --manifest-path "$root/Cargo.toml" -p spore-e2e --bin spore-e2e-cluster >&2
log "build and push took $(( $(date +%s) - started )) s; running the suite"
"$target_dir/debug/spore-e2e-cluster"
