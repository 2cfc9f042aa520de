#!/usr/bin/env bash
# Creates the kind cluster for Spore's end-to-end suite, with a local registry at localhost:5001
# that the nodes pull from (hack/e2e.sh pushes Spore's images, the example components and busybox
# there). Needs: docker (with a running daemon), kind, kubectl. Idempotent: reuses a running
# cluster and registry. Environment: SPORE_KIND_CLUSTER (spore-e2e), SPORE_REGISTRY_PORT (5001).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cluster=${SPORE_KIND_CLUSTER:-spore-e2e}
reg_name=kind-registry
reg_port=${SPORE_REGISTRY_PORT:-5001}

log() { printf 'kind-up: %s\n' "$*" >&2; }

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { log "$tool is not installed"; exit 1; }
done
if ! docker info >/dev/null 2>&1; then
  log "no Docker daemon answers (docker info failed); kind needs one"
  exit 1
fi

# 1. The registry the nodes pull Wasm artifacts from.
if [ "$(docker inspect -f '{{.State.Running}}' "$reg_name" 2>/dev/null || true)" != "true" ]; then
  log "starting registry $reg_name on 127.0.0.1:$reg_port"
  docker rm -f "$reg_name" >/dev/null 2>&1 || true
  docker run -d --restart=always -p "127.0.0.1:${reg_port}:5000" --network bridge --name "$reg_name" registry:2 >/dev/null
fi

# 2. The cluster.
if ! kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  log "creating kind cluster $cluster"
  kind create cluster --name "$cluster" --config "$root/e2e/kind/config.yaml" --wait 120s
fi
kubectl config use-context "kind-$cluster" >/dev/null
if [ "$(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' "$reg_name")" = "null" ]; then
  docker network connect kind "$reg_name"
fi
for node in $(kind get nodes --name "$cluster"); do
  docker exec "$node" mkdir -p "/etc/containerd/certs.d/localhost:${reg_port}"
  printf '[host."http://%s:5000"]\n' "$reg_name" |
    docker exec -i "$node" cp /dev/stdin "/etc/containerd/certs.d/localhost:${reg_port}/hosts.toml"
done
# Tell tools where the local registry is (KEP-1755).
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-registry-hosting
  namespace: kube-public
data:
  localRegistryHosting.v1: |
    host: "localhost:${reg_port}"
    help: "https://kind.sigs.k8s.io/docs/user/local-registry/"
YAML

log "cluster $cluster is up (kubectl context kind-$cluster)"
