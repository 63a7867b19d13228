# One image, seven binaries: the services auth, billing, order, mediator, items, slots, and
# ensure-secrets (the install Job that creates the shop's Secret if it is absent).
# Each Kubernetes workload picks its binary with `command: ["/usr/local/bin/<name>"]`.
#
# Build (BuildKit is needed for the cache mounts; it is the default builder since Docker 23):
#   docker build --provenance=false -t saga-shop:latest .    (README, kind: why the flag)
# then load it into the cluster: `kind load docker-image saga-shop:latest`
# or `minikube image load saga-shop:latest`.

########################################################################
# Builder
########################################################################
FROM rust:1.95-bookworm AS builder

WORKDIR /src

# sqlx: runtime queries only, migrations are embedded at compile time (each crate's
# migrations/ dir, the participants' tables.sql and common/src/ledger's templates);
# never try to reach a database while compiling.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never

COPY . .

# The registry and target dir live in BuildKit cache mounts, so a source change only
# recompiles the workspace crates. The cache is not part of the image, so the binaries
# are copied out of it in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bins \
        -p auth -p billing -p order -p mediator -p items -p slots -p ensure-secrets \
    && mkdir -p /out \
    && cp target/release/auth target/release/billing target/release/order \
          target/release/mediator target/release/items target/release/slots \
          target/release/ensure-secrets /out/

########################################################################
# Runtime
########################################################################
FROM debian:12.12-slim AS runtime

# The base image is pinned to a Debian point release; apt then installs that
# release's current (security-patched) ca-certificates. Pinning the package version
# too would break the build as soon as the archive drops the old version.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin app

COPY --from=builder /out/ /usr/local/bin/

ENV LISTEN_ADDR=0.0.0.0:8080 \
    LOG_FORMAT=json \
    RUST_LOG=info

USER 10001:10001
EXPOSE 8080

# Default only; every Deployment sets its own command.
CMD ["/usr/local/bin/auth"]
