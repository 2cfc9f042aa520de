# syntax=docker/dockerfile:1.7
# The Spore operator (`spore-operator run`). Build from the repository root:
#   docker build -f images/operator.Dockerfile -t spore-operator:dev .
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=spore-target-gnu \
    cargo build --release --locked -p spore-operator --bin spore-operator \
 && install -D -m 0755 target/release/spore-operator /out/spore-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/spore-operator /usr/local/bin/spore-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/spore-operator"]
CMD ["run"]
