#!/usr/bin/env bash
# Installs, idempotently, everything Spore's builds and tests need on a fresh Debian 12 machine.
#   - Debian bookworm packages: runc, CNI plugins, the CNCF registry, protoc, image tools, load tools
#   - containerd 2.x from Debian sid (default) or 1.7 from trixie (SPORE_CONTAINERD=1.7), unpacked
#     with dpkg -x into .tools/ — never installed system-wide
#   - the wasm32-wasip2 and wasm32-wasip1 Rust targets
# Prints where containerd lives; other scripts source hack/env.sh to find it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$root/.tools"
mkdir -p "$tools"

log() { printf 'setup: %s\n' "$*" >&2; }

debs=(runc containernetworking-plugins docker-registry protobuf-compiler umoci skopeo
      busybox-static iproute2 iptables wrk curl jq ca-certificates procps psmisc util-linux)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# containerd from a newer Debian suite, unpacked project-locally.
want=${SPORE_CONTAINERD:-2}
case "$want" in
  2|2.x) suite=sid ;;
  1.7) suite=trixie ;;
  *) echo "setup: SPORE_CONTAINERD must be 2 or 1.7, not '$want'" >&2; exit 2 ;;
esac
dest="$tools/containerd-$suite"
if [ ! -x "$dest/usr/bin/containerd" ]; then
  log "fetching containerd from Debian $suite"
  aptdir="$tools/apt-$suite"
  mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial" "$aptdir/dl"
  cat > "$aptdir/sources.list" <<SRC
deb http://deb.debian.org/debian $suite main
SRC
  aptopts=(-o Dir::Etc::SourceList="$aptdir/sources.list" -o Dir::Etc::SourceParts=/dev/null
           -o Dir::State::Lists="$aptdir/lists" -o Dir::Cache="$aptdir/cache"
           -o APT::Get::List-Cleanup=0 -o Debug::NoLocking=1)
  apt-get "${aptopts[@]}" update -qq
  (cd "$aptdir/dl" && rm -f ./*.deb && apt-get "${aptopts[@]}" download containerd >/dev/null)
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  dpkg -x "$aptdir"/dl/containerd_*.deb "$dest.tmp"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
fi
"$dest/usr/bin/containerd" --version >&2

# Rust targets for the guests.
if command -v rustup >/dev/null; then
  for t in wasm32-wasip2 wasm32-wasip1; do
    rustup target list --installed | grep -qx "$t" || rustup target add "$t" >&2
  done
fi
echo "$dest"
