#!/usr/bin/env bash
# End-to-end test on a kind cluster: `helm install` the chart, apply the examples, and check that
#   - every node gets the shim and the label spore.dev/shim=ready;
#   - the HTTP app answers through its Service (probed from a pod in the cluster);
#   - the command app runs to completion (exit code 0, its greeting in the log);
#   - the sidecar app's pods run, the Wasm container next to an ordinary container;
#   - the bad app reports Degraded with reason MissingReference;
#   - `helm uninstall` leaves every node's containerd config as it was (same sha256), without
#     the shim and the label.
# Needs Docker (a running daemon), kind, kubectl and helm; builds everything with hack/kind-up.sh.
# Environment: SPORE_KIND_CLUSTER (spore-e2e), SPORE_REGISTRY_PORT (5001), SPORE_KEEP_CLUSTER=1
# to keep the cluster afterwards.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cluster=${SPORE_KIND_CLUSTER:-spore-e2e}
reg_port=${SPORE_REGISTRY_PORT:-5001}
ns=spore-system
apps_ns=spore-e2e
release=spore

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  echo "e2e-kind: no Docker daemon here (docker info fails); the kind end-to-end test needs one" >&2
  exit 1
fi
for tool in kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "e2e-kind: $tool is not installed" >&2; exit 1; }
done

log() { printf 'e2e-kind: %s\n' "$*" >&2; }
fail() {
  log "FAIL: $*"
  kubectl get wa,deploy,pods -A -o wide >&2 || true
  kubectl -n "$ns" logs -l app.kubernetes.io/component=node-installer --tail=50 >&2 || true
  kubectl -n "$ns" logs -l app.kubernetes.io/component=operator --tail=50 >&2 || true
  exit 1
}
k() { kubectl --context "kind-$cluster" "$@"; }

"$root/hack/kind-up.sh"
mapfile -t nodes < <(kind get nodes --name "$cluster")
node_config=/etc/containerd/config.toml

# containerd's config on every node before Spore.
declare -A before
for node in "${nodes[@]}"; do
  before[$node]=$(docker exec "$node" sha256sum "$node_config" | cut -d' ' -f1)
done

log "helm install $release"
helm --kube-context "kind-$cluster" upgrade --install "$release" "$root/charts/spore" \
  --namespace "$ns" --create-namespace --wait --timeout 5m \
  --set operator.image.repository=spore-operator --set operator.image.tag=e2e \
  --set operator.image.pullPolicy=Never \
  --set nodeInstaller.image.repository=spore-node-installer --set nodeInstaller.image.tag=e2e \
  --set nodeInstaller.image.pullPolicy=Never

log "waiting for every node to be labelled spore.dev/shim=ready"
for _ in $(seq 1 90); do
  ready=$(k get nodes -l spore.dev/shim=ready -o name | wc -l)
  [ "$ready" -eq "${#nodes[@]}" ] && break
  sleep 2
done
[ "$ready" -eq "${#nodes[@]}" ] || fail "only $ready of ${#nodes[@]} nodes are labelled spore.dev/shim=ready"
for node in "${nodes[@]}"; do
  docker exec "$node" test -x /opt/spore/bin/containerd-shim-spore-v1 || fail "no shim on $node"
  docker exec "$node" grep -q 'io.containerd.spore.v1' "$node_config" || fail "no spore runtime in $node's config"
done

log "applying examples/apps (images from localhost:$reg_port)"
k create namespace "$apps_ns" --dry-run=client -o yaml | k apply -f - >/dev/null
for f in "$root"/examples/apps/*.yaml; do
  sed -e "s#registry\.example\.com/#localhost:${reg_port}/#g" "$f" | k -n "$apps_ns" apply -f -
done

log "HTTP app: answers through its Service"
k -n "$apps_ns" wait wa/hello-http --for=condition=Ready --timeout=180s || fail "hello-http is not Ready"
body=$(k -n "$apps_ns" run http-probe --image="localhost:${reg_port}/busybox:1.36" --restart=Never --rm -i --quiet \
  --command -- wget -qO- -T 10 "http://hello-http.${apps_ns}.svc:8080/") || fail "hello-http's Service does not answer"
[ -n "$body" ] || fail "hello-http answered with an empty body"
log "hello-http said: $body"

for app in hello-http-js hello-http-python; do
  log "$app: answers through its Service"
  k -n "$apps_ns" wait "wa/$app" --for=condition=Ready --timeout=300s || fail "$app is not Ready"
  body=$(k -n "$apps_ns" run "probe-$app" --image="localhost:${reg_port}/busybox:1.36" --restart=Never --rm -i --quiet \
    --command -- wget -qO- -T 30 "http://$app.${apps_ns}.svc:8080/") || fail "$app's Service does not answer"
  case "$body" in *"Hello, Kubernetes"*) ;; *) fail "$app answered '$body'" ;; esac
done

log "command app: runs to completion"
completed=""
for _ in $(seq 1 60); do
  completed=$(k -n "$apps_ns" get pods -l spore.dev/app=hello-cli -o jsonpath='{range .items[*].status.containerStatuses[*]}{.state.terminated.exitCode}{.lastState.terminated.exitCode}{"\n"}{end}' | grep -x 0 || true)
  [ -n "$completed" ] && break
  sleep 2
done
[ -n "$completed" ] || fail "hello-cli never exited with code 0"
pod=$(k -n "$apps_ns" get pods -l spore.dev/app=hello-cli -o jsonpath='{.items[0].metadata.name}')
k -n "$apps_ns" logs "$pod" --all-containers --previous 2>/dev/null | grep -q 'hello from Wasm' ||
  k -n "$apps_ns" logs "$pod" --all-containers | grep -q 'hello from Wasm' ||
  fail "hello-cli's log lacks its greeting"

log "sidecar app: Wasm container and ordinary container run together"
k -n "$apps_ns" wait pods -l spore.dev/app=static-site --for=condition=Ready --timeout=180s ||
  fail "static-site's pods are not Ready"
containers=$(k -n "$apps_ns" get pods -l spore.dev/app=static-site -o jsonpath='{.items[0].spec.containers[*].name}')
case " $containers " in *" log-tailer "*) ;; *) fail "static-site's pod has no sidecar (containers: $containers)" ;; esac

log "bad app: Degraded with a reason"
k -n "$apps_ns" wait wa/broken-app --for=condition=Degraded --timeout=120s || fail "broken-app is not Degraded"
reason=$(k -n "$apps_ns" get wa/broken-app -o jsonpath='{.status.conditions[?(@.type=="Degraded")].reason}')
[ "$reason" = "MissingReference" ] || fail "broken-app's Degraded reason is '$reason', not MissingReference"

log "helm uninstall: nodes get their containerd config back"
k delete namespace "$apps_ns" --wait --timeout=120s >/dev/null
helm --kube-context "kind-$cluster" uninstall "$release" --namespace "$ns" --wait --timeout 10m
for node in "${nodes[@]}"; do
  after=$(docker exec "$node" sha256sum "$node_config" | cut -d' ' -f1)
  [ "$after" = "${before[$node]}" ] || fail "$node's $node_config differs after helm uninstall"
  if docker exec "$node" test -e /opt/spore/bin/containerd-shim-spore-v1; then
    fail "the shim is still on $node"
  fi
done
left=$(k get nodes -l spore.dev/shim -o name | wc -l)
[ "$left" -eq 0 ] || fail "$left nodes still carry the spore.dev/shim label"

if [ "${SPORE_KEEP_CLUSTER:-0}" != "1" ]; then
  kind delete cluster --name "$cluster"
fi
log "PASS"
