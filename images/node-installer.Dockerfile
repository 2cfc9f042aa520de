# syntax=docker/dockerfile:1.7
# The node installer: `spore-operator node-install` plus the shim it copies onto each node.
# Build from the repository root:
#   docker build -f images/node-installer.Dockerfile -t spore-node-installer:dev .
#
# The shim runs on the node, not in this image, next to whatever C library the node has: it is
# built as a static musl binary so it runs on any Linux node of the architecture.
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
    --mount=type=cache,target=/src/target,id=spore-target-node \
    target="$(cat /musl-target)" \
 && cargo build --release --locked -p spore-operator --bin spore-operator \
 && cargo build --release --locked --target "$target" -p spore-shim --bin containerd-shim-spore-v1 \
 && install -D -m 0755 target/release/spore-operator /out/spore-operator \
 && install -D -m 0755 "target/$target/release/containerd-shim-spore-v1" /out/containerd-shim-spore-v1

# Debian slim: the installer needs nsenter (util-linux) to restart containerd through the host's
# PID 1, and the uninstall hook's pods idle with `sleep`.
FROM debian:bookworm-slim
COPY --from=build /out/spore-operator /usr/local/bin/spore-operator
COPY --from=build /out/containerd-shim-spore-v1 /usr/local/bin/containerd-shim-spore-v1
ENV SPORE_SHIM_SOURCE=/usr/local/bin/containerd-shim-spore-v1
ENTRYPOINT ["/usr/local/bin/spore-operator"]
CMD ["node-install"]
