# syntax=docker/dockerfile:1.7
# The node installer: `spore-operator node-install` plus the shim it copies onto each node, on an
# empty base. Build from the repository root:
#   docker build -f images/node-installer.Dockerfile -t spore-node-installer:dev .
# hack/images.sh builds the same image without Docker (same binaries, same layout, one layer).
#
# Both binaries are static musl builds: the shim runs on the node, next to whatever C library the
# node has, and the image has no C library. The installer needs no nsenter (it joins the host's
# namespaces itself) and the uninstall hook no sleep or kubectl (`spore-operator idle`,
# `spore-operator wait-daemonset`).
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
ARG TARGETARCH
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends protobuf-compiler musl-tools \
 && rm -rf /var/lib/apt/lists/*
RUN case "${TARGETARCH:-amd64}" in \
      amd64) echo x86_64-unknown-linux-musl > /musl-target ;; \
      arm64) echo aarch64-unknown-linux-musl > /musl-target ;; \
      *) echo "unsupported TARGETARCH ${TARGETARCH}" >&2; exit 1 ;; \
    esac \
 && rustup target add "$(cat /musl-target)"
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=spore-target-musl \
    target="$(cat /musl-target)" \
 && CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release --locked --target "$target" \
      -p spore-operator --bin spore-operator -p spore-shim --bin containerd-shim-spore-v1 \
 && install -D -m 0755 "target/$target/release/spore-operator" /out/usr/local/bin/spore-operator \
 && install -D -m 0755 "target/$target/release/containerd-shim-spore-v1" /out/usr/local/bin/containerd-shim-spore-v1 \
 && strip --strip-all /out/usr/local/bin/* \
 && install -d -m 1777 /out/tmp

FROM scratch
COPY --from=build /out/ /
ENV PATH=/usr/local/bin
ENV SPORE_SHIM_SOURCE=/usr/local/bin/containerd-shim-spore-v1
ENTRYPOINT ["/usr/local/bin/spore-operator"]
CMD ["node-install"]
