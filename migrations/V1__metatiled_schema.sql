-- The server's own schema. Everything metatiled creates lives in `metatiled`;
-- osm2pgsql's tables (planet_osm_*) are never touched by migrations.
CREATE SCHEMA IF NOT EXISTS metatiled;

-- What was imported, when, and where: advertised as TileJSON bounds and used to
-- refresh `planet-import-complete`. scripts/setup fills it (see sql/import_info.sql,
-- which creates the same table when setup runs before the first migration).
CREATE TABLE IF NOT EXISTS metatiled.import_info (
    id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    source_file text NOT NULL,
    source_sha256 text NOT NULL,
    imported_at timestamptz NOT NULL,
    minlon double precision NOT NULL,
    minlat double precision NOT NULL,
    maxlon double precision NOT NULL,
    maxlat double precision NOT NULL,
    osm2pgsql_version text
);
