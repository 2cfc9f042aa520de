#!/usr/bin/env bash
# Builds Spore's two images without Docker and pushes them:
#   hack/images.sh REGISTRY TAG      e.g. hack/images.sh localhost:5000/spore 0.1.0
# gives REGISTRY/spore-operator:TAG and REGISTRY/spore-node-installer:TAG, for the chart's
#   --set operator.image.repository=REGISTRY/spore-operator,operator.image.tag=TAG
#   --set nodeInstaller.image.repository=REGISTRY/spore-node-installer,nodeInstaller.image.tag=TAG
#
# How: static musl release builds of spore-operator and the shim, stripped (the debug info is
# kept apart in target/images/debug/), placed on an empty base by `spore-images` (one layer,
# owner root, mtime 0: the same binaries give the same digests), written as OCI layouts under
# target/images/, pushed with skopeo. The images hold what images/*.Dockerfile's do, minus the
# Debian userland: the installer enters the host's namespaces itself (no nsenter) and the
# uninstall hook idles and waits with spore-operator (no sleep, no kubectl).
#
# Environment: SPORE_IMAGES_ARCH (amd64; arm64 needs the aarch64 musl target and a cross
# compiler), SPORE_IMAGES_INSECURE=1 to push over plain HTTP (the default for localhost and
# 127.x registries), SPORE_IMAGES_NO_PUSH=1 to only write the layouts.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ $# -ne 2 ]; then
  echo "usage: hack/images.sh REGISTRY TAG   (e.g. localhost:5000/spore 0.1.0)" >&2
  exit 2
fi
registry=${1%/}
tag=$2
arch=${SPORE_IMAGES_ARCH:-amd64}
log() { printf 'images: %s\n' "$*" >&2; }

case "$arch" in
  amd64) target=x86_64-unknown-linux-musl; cc_var=CC_x86_64_unknown_linux_musl; cc=musl-gcc ;;
  arm64) target=aarch64-unknown-linux-musl; cc_var=CC_aarch64_unknown_linux_musl; cc=aarch64-linux-musl-gcc ;;
  *) echo "images: SPORE_IMAGES_ARCH must be amd64 or arm64, not '$arch'" >&2; exit 2 ;;
esac
command -v "$cc" >/dev/null || { log "$cc is missing (hack/setup.sh installs musl-tools)"; exit 1; }
command -v skopeo >/dev/null || [ -n "${SPORE_IMAGES_NO_PUSH:-}" ] ||
  { log "skopeo is missing (hack/setup.sh installs it)"; exit 1; }
if ! rustup target list --installed | grep -qx "$target"; then
  log "adding the Rust target $target"
  rustup target add "$target" >&2
fi

target_dir=${CARGO_TARGET_DIR:-$root/target}
log "building spore-operator and containerd-shim-spore-v1 for $target (release)"
env "$cc_var=$cc" cargo build --release --locked --manifest-path "$root/Cargo.toml" --target "$target" \
  -p spore-operator --bin spore-operator -p spore-shim --bin containerd-shim-spore-v1 >&2
cargo build --locked --manifest-path "$root/Cargo.toml" -p spore-e2e --bin spore-images >&2

out="$target_dir/images"
mkdir -p "$out/bin" "$out/debug"
for bin in spore-operator containerd-shim-spore-v1; do
  built="$target_dir/$target/release/$bin"
  objcopy --only-keep-debug "$built" "$out/debug/$bin.debug"
  objcopy --strip-all --add-gnu-debuglink="$out/debug/$bin.debug" "$built" "$out/bin/$bin"
  # the debuglink section holds a CRC of the debug file only, not a path or a time
  log "$bin: $(du -h "$built" | cut -f1) built, $(du -h "$out/bin/$bin" | cut -f1) stripped"
done

"$target_dir/debug/spore-images" --operator "$out/bin/spore-operator" \
  --shim "$out/bin/containerd-shim-spore-v1" --tag "$tag" --arch "$arch" --out "$out" | tee "$out/images.txt"

if [ -n "${SPORE_IMAGES_NO_PUSH:-}" ]; then
  log "layouts written under $out (not pushed)"
  exit 0
fi
tls=(--dest-tls-verify=true)
case "$registry" in
  localhost:*|localhost/*|127.*) tls=(--dest-tls-verify=false) ;;
esac
[ -n "${SPORE_IMAGES_INSECURE:-}" ] && tls=(--dest-tls-verify=false)
for name in spore-operator spore-node-installer; do
  # --preserve-digests: the registry gets the very manifest written here (no recompression)
  skopeo copy --quiet --preserve-digests "${tls[@]}" "oci:$out/$name:$tag" "docker://$registry/$name:$tag"
  log "pushed $registry/$name:$tag"
done
