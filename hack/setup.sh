#!/usr/bin/env bash
# Installs, idempotently, everything Spore's builds, demo and tests need on a new Debian 12
# machine, and says what it does:
#   - Debian bookworm packages: runc, CNI plugins, the CNCF registry, protoc, image tools, load
#     tools, Python's pip (for the Helm chart lint), musl-tools (static binaries for the images)
#   - containerd 2.x from Debian sid (default) or 1.7 from trixie (SPORE_CONTAINERD=1.7), fetched
#     with apt-get download and unpacked with dpkg -x into .tools/ (never installed system-wide)
#   - the wasm32-wasip2 and wasm32-wasip1 Rust targets, and cargo-nextest
#
# Debian's suites move on: the containerd lines Spore is tested on are 2.1 (sid) and 1.7
# (trixie). When a suite carries another line, setup says so and goes on with it; when it no
# longer carries containerd at all, setup stops and says how to give it a .deb
# (SPORE_CONTAINERD_DEB=/path/to/containerd_*.deb).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$root/.tools"
mkdir -p "$tools"

log() { printf 'setup: %s\n' "$*" >&2; }

debs=(runc containernetworking-plugins docker-registry protobuf-compiler umoci skopeo
      busybox-static iproute2 iptables wrk curl jq ca-certificates procps psmisc util-linux
      python3 python3-pip musl-tools)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A Python with its own pip (pyenv, a venv) does not need Debian's.
if python3 -m pip --version >/dev/null 2>&1; then
  missing=("${missing[@]/python3-pip/}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "Debian packages: all present"
fi

# containerd from a newer Debian suite, unpacked project-locally.
want=${SPORE_CONTAINERD:-2}
case "$want" in
  2|2.x) suite=sid; tested=2.1 ;;
  1.7) suite=trixie; tested=1.7 ;;
  *) echo "setup: SPORE_CONTAINERD must be 2 or 1.7, not '$want'" >&2; exit 2 ;;
esac
dest="$tools/containerd-$suite"
if [ ! -x "$dest/usr/bin/containerd" ]; then
  aptdir="$tools/apt-$suite"
  mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial" "$aptdir/dl"
  if [ -n "${SPORE_CONTAINERD_DEB:-}" ]; then
    log "containerd $want: using $SPORE_CONTAINERD_DEB"
    deb=$SPORE_CONTAINERD_DEB
  else
    log "containerd $want: fetching Debian $suite's containerd package into $aptdir"
    cat > "$aptdir/sources.list" <<SRC
deb http://deb.debian.org/debian $suite main
SRC
    aptopts=(-o Dir::Etc::SourceList="$aptdir/sources.list" -o Dir::Etc::SourceParts=/dev/null
             -o Dir::State::Lists="$aptdir/lists" -o Dir::Cache="$aptdir/cache"
             -o APT::Get::List-Cleanup=0 -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
    apt-get "${aptopts[@]}" update -qq
    rm -f "$aptdir"/dl/*.deb
    if ! (cd "$aptdir/dl" && apt-get "${aptopts[@]}" download containerd >/dev/null 2>&1); then
      echo "setup: Debian $suite no longer carries a containerd package; download a containerd $tested .deb" \
        "and run again with SPORE_CONTAINERD_DEB=/path/to/containerd_*.deb" >&2
      exit 1
    fi
    deb=$(ls "$aptdir"/dl/containerd_*.deb)
  fi
  version=$(dpkg-deb -f "$deb" Version)
  case "$version" in
    "$tested".*|"$tested"~*) log "containerd $version (the tested $tested line)" ;;
    *) log "NOTE: Debian $suite now carries containerd $version, not the $tested line Spore is tested on; going on with $version" ;;
  esac
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  dpkg -x "$deb" "$dest.tmp"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
fi
log "$("$dest/usr/bin/containerd" --version) in $dest"

# Rust targets for the guests and the images' static binaries, and the test runner.
if command -v rustup >/dev/null; then
  for t in wasm32-wasip2 wasm32-wasip1 x86_64-unknown-linux-musl; do
    if ! rustup target list --installed | grep -qx "$t"; then
      log "adding the Rust target $t"
      rustup target add "$t" >&2
    fi
  done
fi
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo-nextest >/dev/null; then
  log "installing cargo-nextest (cargo install --locked)"
  cargo install --locked cargo-nextest >&2
fi
