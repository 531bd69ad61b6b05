-- Change tracking: which areas of the tables a style reads have changed, so the
-- server can expire exactly the metatiles there (see `metatiled watch`).
--
-- Statement-level triggers with transition tables: a statement that changes a million
-- rows writes one log row per coarse grid cell it touched (cells of a z10 tile, ~39 km)
-- with the extent of the changed geometries in that cell, and sends one NOTIFY.
-- The log is the truth; NOTIFY only wakes the reader, so nothing is lost while the
-- server is down or its connection drops.

CREATE TABLE IF NOT EXISTS metatiled.change_log (
    id bigserial PRIMARY KEY,
    table_name text NOT NULL,
    -- Extent of the changed geometries (old and new) in EPSG:3857.
    minx double precision NOT NULL,
    miny double precision NOT NULL,
    maxx double precision NOT NULL,
    maxy double precision NOT NULL,
    changed_rows bigint NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Logs the changed extents of one statement. TG_ARGV[0] is the geometry column.
CREATE OR REPLACE FUNCTION metatiled.log_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    geom text := COALESCE(TG_ARGV[0], 'way');
    -- Width of a z10 tile in metres: changes are merged per cell of this grid.
    cell constant double precision := 39135.75848201024;
    source text;
    logged bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        source := format('SELECT %I AS g FROM new_rows', geom);
    ELSIF TG_OP = 'DELETE' THEN
        source := format('SELECT %I AS g FROM old_rows', geom);
    ELSE
        source := format('SELECT %I AS g FROM old_rows UNION ALL SELECT %I AS g FROM new_rows', geom, geom);
    END IF;
    EXECUTE format(
        'INSERT INTO metatiled.change_log (table_name, minx, miny, maxx, maxy, changed_rows)
         SELECT %L, ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e), n
         FROM (
             SELECT ST_Extent(g)::geometry AS e, count(*) AS n
             FROM (%s) AS changed
             WHERE g IS NOT NULL AND NOT ST_IsEmpty(g)
             GROUP BY floor(ST_X(ST_Centroid(ST_Envelope(g))) / %s),
                      floor(ST_Y(ST_Centroid(ST_Envelope(g))) / %s)
         ) AS cells
         WHERE e IS NOT NULL',
        TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, source, cell, cell);
    GET DIAGNOSTICS logged = ROW_COUNT;
    IF logged > 0 THEN
        PERFORM pg_notify('metatiled_changes', TG_TABLE_NAME);
    END IF;
    RETURN NULL;
END;
$$;
