# syntax=docker/dockerfile:1
#
# The metatiled server. docker-compose.yml builds and runs it beside PostGIS;
# on its own:
#   docker build -t metatiled .
#   docker run -p 8080:8080 -e DATABASE_URL=postgres://... metatiled

# --- build --------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
# Only what `cargo build` reads: manifests, sources, and the directories the
# code embeds or may embed at compile time (assets: the viewer page and
# Leaflet; migrations; styles; sql). tests/compose.rs checks this list against
# the include_*!/embed_migrations! in src/.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY assets ./assets
COPY benches ./benches
COPY migrations ./migrations
COPY styles ./styles
COPY sql ./sql
# The registry and target caches survive between builds (BuildKit); the binary
# is copied out of the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin metatiled \
    && install -m 0755 target/release/metatiled /usr/local/bin/metatiled

# --- run ----------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
# Fonts for labels; curl for the health check and for reaching the admin port
# from inside the container (docker compose exec metatiled curl ...).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates curl fonts-dejavu-core fonts-noto-core \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --user-group --home-dir /var/cache/metatiled \
        --shell /usr/sbin/nologin metatiled \
    && install -d -o metatiled -g metatiled /var/cache/metatiled
COPY --from=builder /usr/local/bin/metatiled /usr/local/bin/metatiled
WORKDIR /app
COPY styles ./styles
COPY migrations ./migrations
COPY sql ./sql
COPY metatiled.toml ./metatiled.toml
USER metatiled
# glibc keeps up to 8 malloc arenas per core, each holding on to memory its threads once
# freed: 2 keep the server's resident size close to what it uses (see README, "Memory").
ENV MALLOC_ARENA_MAX=2
# 8080: tiles, viewer, health, metrics. 8081: admin (keep it unpublished).
EXPOSE 8080 8081
VOLUME ["/var/cache/metatiled"]
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["metatiled"]
CMD ["serve", "--config", "/app/metatiled.toml", \
     "--listen", "0.0.0.0:8080", "--admin-listen", "0.0.0.0:8081", \
     "--cache-dir", "/var/cache/metatiled", "--styles-dir", "/app/styles"]
