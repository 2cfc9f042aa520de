# syntax=docker/dockerfile:1.7
# The Spore operator (`spore-operator run`) on an empty base, as user 65532. Build from the
# repository root:
#   docker build -f images/operator.Dockerfile -t spore-operator:dev .
# hack/images.sh builds the same image without Docker (same binary, same layout, one layer).
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
      -p spore-operator --bin spore-operator \
 && install -D -m 0755 "target/$target/release/spore-operator" /out/usr/local/bin/spore-operator \
 && strip --strip-all /out/usr/local/bin/spore-operator \
 && install -d -m 1777 /out/tmp

FROM scratch
COPY --from=build /out/ /
ENV PATH=/usr/local/bin
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/spore-operator"]
CMD ["run"]
