#!/usr/bin/env bash
# Runs a command as on a new machine: in a private mount namespace where /run/containerd (the
# shims' sockets, containerd's runtime state) and Spore's cache and state (/var/lib/spore) start
# empty, whatever earlier runs left on this machine. Nothing outside the namespace changes, but
# for the two empty mount points, which are made if missing (and removed again if this made them).
#
#   bash hack/fresh-machine.sh bash hack/demo.sh
#   bash hack/fresh-machine.sh bash hack/test.sh
set -euo pipefail
if [ "$(id -u)" != 0 ] || [ $# -eq 0 ]; then
  echo "usage (as root): bash hack/fresh-machine.sh COMMAND [ARGS...]" >&2
  exit 2
fi
made=()
for dir in /run/containerd /var/lib/spore; do
  if [ ! -d "$dir" ]; then
    mkdir -p "$dir"
    made+=("$dir")
  fi
done
cleanup() {
  for dir in "${made[@]}"; do rmdir "$dir" 2>/dev/null || true; done
}
trap cleanup EXIT
status=0
unshare --mount --propagation private -- bash -c '
  set -e
  mount -t tmpfs -o mode=0711 spore-fresh /run/containerd
  mount -t tmpfs -o mode=0755 spore-fresh /var/lib/spore
  exec "$@"
' fresh-machine "$@" || status=$?
exit "$status"
