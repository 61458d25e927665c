# syntax=docker/dockerfile:1
#
# The rulewatch image: `docker build -t rulewatch .` compiles the engine in a Rust image
# and copies it into a small Debian runtime.
#
#   docker run --rm -e RULEWATCH_BROKERS=kafka:9092 rulewatch              # rulewatch run
#   docker run --rm -v "$PWD/my-rules:/rules:ro" -e RULEWATCH_BROKERS=... rulewatch
#   docker run --rm rulewatch loadgen --brokers kafka:9092 --rate 2000 --live
#
# Image layout:
#   /usr/local/bin/rulewatch         the engine (ENTRYPOINT; CMD is `run`)
#   /rules                           the rules folder (RULEWATCH_RULES). It ships with the crash
#                                    rule (crash.toml + crash.wasm), so the image works as it
#                                    is; mount your own folder over it (it is watched: changes
#                                    apply while running). A folder without a loadable rule is
#                                    an error, not a silent fallback to the built-in rule.
#   /usr/share/rulewatch/rules       a pristine copy of the shipped crash rule; a mounted
#                                    rule's TOML may name its module by absolute path, e.g.
#                                    module = "/usr/share/rulewatch/rules/crash.wasm"
#                                    (RULEWATCH_MODULE_DIRS lets modules come from there)
#   /var/lib/rulewatch               checkpoints (RULEWATCH_CHECKPOINT_DIR), owned by the user
#   /etc/rulewatch                   the working directory: a rulewatch.toml here is read
#                                    (the RULEWATCH_* variables below still override it)
#   port 9898                        status page, /metrics, /healthz, /readyz
#
# CI builds the same runtime stage without a Rust image, from a binary and crash.wasm built
# on the host (see .ci/container-test):
#   buildah bud --format docker --build-arg BINARY_STAGE=prebuilt \
#     --build-context prebuilt-bin=DIR_WITH_rulewatch_AND_crash.wasm \
#     --build-arg BASE_IMAGE=localhost/rulewatch-ci-base:bookworm -t rulewatch:ci .
# The `build` stage is then unused and skipped (BuildKit, and buildah >= 1.28 by default:
# --skip-unused-stages=true), so the Rust image is never pulled.
#
# podman/buildah before 1.29 (Debian 12's 1.28) ignore ARG defaults when they decide which
# stages are used, so they skip `build` in a plain build and then fail with "build: image not
# known": add --build-arg BINARY_STAGE=build there.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG BASE_IMAGE=debian:bookworm-slim
# Which stage provides /out/rulewatch and /out/crash.wasm: `build` or `prebuilt`.
ARG BINARY_STAGE=build

# --- build: the engine from source ---------------------------------------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
# The toolchain rust-toolchain.toml names, with the wasm32 target: build.rs compiles the
# built-in crash rule for it with a nested cargo.
COPY rust-toolchain.toml ./
RUN rustup toolchain install \
 && rustup target add wasm32-unknown-unknown \
 && rustup show active-toolchain
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p rulewatch \
 && mkdir -p /out \
 && cp target/release/rulewatch /out/rulewatch \
 && cp target/rules/wasm32-unknown-unknown/rule/crash.wasm /out/crash.wasm

# --- prebuilt: a binary and crash.wasm built elsewhere (CI) ---------------------------------
# Given as the extra build context `prebuilt-bin`, a folder holding `rulewatch` and
# `crash.wasm`.
FROM scratch AS prebuilt
COPY --from=prebuilt-bin rulewatch crash.wasm /out/

# --- the chosen one -------------------------------------------------------------------------
FROM ${BINARY_STAGE} AS binary
# A no-op instruction: buildah 1.28 leaves a working container behind for a stage that is
# only a FROM.
LABEL rulewatch.stage="binary"

# --- runtime ----------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime
# The binary needs libc, libm, libgcc_s and zlib, in every Debian base image, and OpenSSL
# (libssl3) for TLS to Kafka, with the CA certificates to check brokers against.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 rulewatch \
 && useradd --uid 10001 --gid rulewatch --no-create-home \
      --home-dir /var/lib/rulewatch --shell /usr/sbin/nologin rulewatch \
 && install -d -o rulewatch -g rulewatch -m 0750 /var/lib/rulewatch \
 && install -d -m 0755 /rules /usr/share/rulewatch/rules /etc/rulewatch
COPY --from=binary /out/rulewatch /usr/local/bin/rulewatch
COPY --from=binary /out/crash.wasm /usr/share/rulewatch/rules/crash.wasm
COPY rules/crash/crash.toml /usr/share/rulewatch/rules/crash.toml
# Seed the rules folder (before VOLUME, so that it stays in the image and new volumes get it),
# and fail the build now if the binary does not run here or the rule does not load.
RUN chmod 0755 /usr/local/bin/rulewatch \
 && chmod 0644 /usr/share/rulewatch/rules/* \
 && cp /usr/share/rulewatch/rules/crash.toml /usr/share/rulewatch/rules/crash.wasm /rules/ \
 && rulewatch --version \
 && RULEWATCH_CACHE_DIR=off rulewatch check /rules

# NO_COLOR: plain log lines in `docker logs` (no ANSI colour codes). Compiled modules are
# cached in the container's /tmp, not in the state volume beside the checkpoints.
ENV RULEWATCH_RULES=/rules \
    RULEWATCH_CACHE_DIR=/tmp/rulewatch-cache \
    RULEWATCH_MODULE_DIRS=/usr/share/rulewatch/rules \
    RULEWATCH_CHECKPOINT_DIR=/var/lib/rulewatch \
    RULEWATCH_HTTP_LISTEN=0.0.0.0:9898 \
    NO_COLOR=1

LABEL org.opencontainers.image.title="rulewatch" \
      org.opencontainers.image.description="A stream rule engine: JSON events from Kafka, event-time windows, rules in WebAssembly." \
      org.opencontainers.image.source="https://github.com/rulewatch/rulewatch" \
      org.opencontainers.image.licenses="Apache-2.0"

WORKDIR /etc/rulewatch
VOLUME ["/rules", "/var/lib/rulewatch"]
EXPOSE 9898
# Numeric, so that Kubernetes' runAsNonRoot can verify it; the name is `rulewatch`.
USER 10001:10001
# `rulewatch health` asks http://127.0.0.1:9898/healthz (RULEWATCH_HEALTH_URL; with TLS on
# the endpoint, set it to https://127.0.0.1:9898/healthz): exit 0 when it answers 200. No curl in the image. (Kept by Docker and by `buildah bud --format docker`;
# the OCI image format has no health checks.) A container running `loadgen` serves no
# /healthz: disable the check for it (compose: healthcheck: disable: true).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["rulewatch", "health"]
ENTRYPOINT ["rulewatch"]
CMD ["run"]
