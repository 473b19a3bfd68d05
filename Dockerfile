# syntax=docker/dockerfile:1.7
# One Dockerfile, three images: pick one with --target.
#
#   docker build --target dig-bootstrap -t <registry>/dig-bootstrap:<version> .
#   docker build --target dig-sidecar   -t <registry>/dig-sidecar:<version> .
#   docker build --target dig-operator  -t <registry>/dig-operator:<version> .
#
# The builder compiles all three binaries once (BuildKit cache mounts keep the cargo registry
# and the target folder between builds); each final image is distroless `cc` (glibc, CA
# certificates, no shell) running as the non-root user 65532.
#
# The final stages take the binaries from the `binaries` stage and start from `runtime-base`; the
# end-to-end tests build these same stages with buildah from prebuilt binaries and a base made of
# Debian's own files (e2e/cluster/images.sh):
#   --build-arg BINARIES=<image with /out/dig-*>  --build-arg RUNTIME_BASE=<image>

# At least the highest `rust-version` of the locked crates, and the workspace's `rust-version`
# (e2e/tests/images_dockerfile.rs fails otherwise).
ARG RUST_VERSION=1.89
ARG DEBIAN_RELEASE=bookworm
ARG RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot
ARG BINARIES=builder

FROM docker.io/library/rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /src
COPY . .
# --locked: the image is built from exactly the versions in Cargo.lock. The `dist` profile (root
# Cargo.toml: fat LTO, one codegen unit, size-optimised) takes longer to build than `--release` but
# gives binaries half the size, and an idle dig-sidecar 15 MiB resident instead of 21 MiB.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --profile dist --locked --bin dig-bootstrap --bin dig-sidecar --bin dig-operator \
    && mkdir -p /out /out/data \
    && cp target/dist/dig-bootstrap target/dist/dig-sidecar target/dist/dig-operator /out/

# Where the final stages copy the binaries from: the builder, or an image of prebuilt ones.
FROM ${BINARIES} AS binaries

FROM ${RUNTIME_BASE} AS runtime-base
LABEL org.opencontainers.image.source="https://github.com/dig-network/dig-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 65532:65532

# The peer registry: REST on 3000 (`--listen`).
FROM runtime-base AS dig-bootstrap
LABEL org.opencontainers.image.title="dig-bootstrap" \
      org.opencontainers.image.description="DIG Network peer registry"
COPY --from=binaries /out/dig-bootstrap /usr/local/bin/dig-bootstrap
EXPOSE 3000
ENTRYPOINT ["/usr/local/bin/dig-bootstrap"]

# The node: P2P on 4001 (TCP and QUIC), HTTP API on 8080; the data folder is a volume.
FROM runtime-base AS dig-sidecar
LABEL org.opencontainers.image.title="dig-sidecar" \
      org.opencontainers.image.description="DIG Network node: replicates a folder of .dig stores"
COPY --from=binaries /out/dig-sidecar /usr/local/bin/dig-sidecar
# An empty /data owned by the runtime user, so a fresh Docker volume is writable by it.
COPY --from=binaries --chown=65532:65532 /out/data /data
ENV DIG_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 4001/tcp 4001/udp 8080
ENTRYPOINT ["/usr/local/bin/dig-sidecar"]
CMD ["run"]

# The operator: metrics and probes on 8080, the webhook on 9443.
FROM runtime-base AS dig-operator
LABEL org.opencontainers.image.title="dig-operator" \
      org.opencontainers.image.description="Kubernetes operator for DIG Networks"
COPY --from=binaries /out/dig-operator /usr/local/bin/dig-operator
EXPOSE 8080 9443
ENTRYPOINT ["/usr/local/bin/dig-operator"]
