#!/usr/bin/env bash
# Creates the kind cluster for Spore's end-to-end test, with a local registry, and loads freshly
# built images into it:
#   - spore-operator:e2e and spore-node-installer:e2e (images/*.Dockerfile), loaded into the nodes;
#   - the example Wasm components (examples/, wasm32-wasip2), pushed as Wasm OCI artifacts with
#     `spore push` to the registry at localhost:5001;
#   - busybox for the sidecar example and the in-cluster HTTP probe.
# Needs: docker (with a running daemon), kind, kubectl, cargo. Idempotent: reuses a running
# cluster and registry. Environment: SPORE_KIND_CLUSTER (spore-e2e), SPORE_REGISTRY_PORT (5001).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cluster=${SPORE_KIND_CLUSTER:-spore-e2e}
reg_name=kind-registry
reg_port=${SPORE_REGISTRY_PORT:-5001}
tag=e2e

log() { printf 'kind-up: %s\n' "$*" >&2; }

for tool in docker kind kubectl cargo; do
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

# 3. Spore's images, built from this checkout and loaded into every node.
log "building spore-operator:$tag and spore-node-installer:$tag"
docker build -q -f "$root/images/operator.Dockerfile" -t "spore-operator:$tag" "$root" >/dev/null
docker build -q -f "$root/images/node-installer.Dockerfile" -t "spore-node-installer:$tag" "$root" >/dev/null
kind load docker-image --name "$cluster" "spore-operator:$tag" "spore-node-installer:$tag"

# 4. The example components, as Wasm artifacts, named as examples/apps/*.yaml name them
#    (registry.example.com/spore/NAME:TAG -> localhost:PORT/spore/NAME:TAG): NAME-js and
#    NAME-python are examples/js/NAME and examples/python/NAME, other names the Rust crates of
#    examples/rust (the command example `hello-cli` is the crate `hello`).
log "building the example components (Rust, JavaScript, Python)"
bash "$root/hack/build-guests.sh"
cargo build -p spore-cli --bin spore --manifest-path "$root/Cargo.toml"
spore_cli="$root/target/debug/spore"
rust_dir="$root/target/wasm32-wasip2/release"
grep -ho 'registry\.example\.com/spore/[a-z0-9._-]*:[A-Za-z0-9._-]*' "$root"/examples/apps/*.yaml | sort -u |
  while read -r ref; do
    name_tag=${ref#registry.example.com/spore/}
    name=${name_tag%%:*}
    candidates=("$rust_dir/$name.wasm" "$rust_dir/${name//-/_}.wasm" "$rust_dir/${name%-cli}.wasm")
    case "$name" in
      *-js) candidates=("$root/target/examples/js/${name%-js}.wasm") ;;
      *-python) candidates=("$root/target/examples/python/${name%-python}.wasm") ;;
    esac
    wasm=""
    for candidate in "${candidates[@]}"; do
      if [ -f "$candidate" ]; then wasm="$candidate"; break; fi
    done
    if [ -z "$wasm" ]; then
      log "no component for $ref: expected one of ${candidates[*]}"
      exit 1
    fi
    log "pushing $wasm as localhost:${reg_port}/spore/$name_tag"
    "$spore_cli" push --insecure "$wasm" "localhost:${reg_port}/spore/$name_tag"
  done

# 5. busybox: the sidecar example's ordinary container and the HTTP probe.
docker pull -q busybox:1.36 >/dev/null
docker tag busybox:1.36 "localhost:${reg_port}/busybox:1.36"
docker push -q "localhost:${reg_port}/busybox:1.36" >/dev/null

log "cluster $cluster is up (kubectl context kind-$cluster)"
