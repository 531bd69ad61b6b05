# The one-shot OSM import of docker-compose.yml: osm2pgsql + psql running
# scripts/setup against the db service (DATABASE_URL), so it skips an import
# that is already in the database, exactly as on a developer's machine.
FROM debian:bookworm-slim
# python3-pip only for fetching the Helsinki sample when no .osm.pbf is mounted.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        osm2pgsql postgresql-client ca-certificates python3 python3-pip \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY scripts ./scripts
COPY sql ./sql
COPY docker/import-entrypoint.sh /usr/local/bin/metatiled-import
# No fonts needed here; downloads go to a volume, not the read-only /data.
ENV METATILED_INSTALL_FONTS=0 \
    METATILED_DATA_DIR=/var/cache/metatiled-import
ENTRYPOINT ["metatiled-import"]
