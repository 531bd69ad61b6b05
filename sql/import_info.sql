-- What scripts/setup imported into this database: one row, replaced on every
-- import. scripts/setup reads it to skip an import that is already done (same
-- source sha256 and options, tables present); the server reads the bounds
-- (TileJSON) and imported_at. migrations/V1 creates the same table when the
-- server migrates before setup ever ran; whichever comes first wins, so the
-- CREATE below matches it column for column, and setup's own columns are added
-- separately.
--
-- Idempotent: safe to run before every import; changes nothing the second time.

CREATE SCHEMA IF NOT EXISTS metatiled;

CREATE TABLE IF NOT EXISTS metatiled.import_info (
    -- A single-row table.
    id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    -- Base name of the imported .osm.pbf, and the sha256 of its content.
    source_file text NOT NULL,
    source_sha256 text NOT NULL,
    imported_at timestamptz NOT NULL,
    -- Extent of planet_osm_point/line/polygon in EPSG:4326 (degrees).
    minlon double precision NOT NULL,
    minlat double precision NOT NULL,
    maxlon double precision NOT NULL,
    maxlat double precision NOT NULL,
    -- "1.8.0"
    osm2pgsql_version text
);

-- setup's bookkeeping, on either origin of the table.
ALTER TABLE metatiled.import_info
    -- Size of the .osm.pbf in bytes.
    ADD COLUMN IF NOT EXISTS source_bytes bigint,
    -- The osm2pgsql flags that shape the tables (not connection or cache):
    -- a change re-imports the same file.
    ADD COLUMN IF NOT EXISTS osm2pgsql_options text,
    -- Wall time of the osm2pgsql run.
    ADD COLUMN IF NOT EXISTS import_seconds double precision,
    -- sha256 (16 hex) of sql/water_polygons.sql + sql/lowzoom.sql when they last
    -- built the derived tables from this import; NULL until they have.
    ADD COLUMN IF NOT EXISTS derived_sha256 text;
