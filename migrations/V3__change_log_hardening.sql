-- Change tracking, second version of the trigger functions. V2 is already applied in
-- existing databases (and refinery refuses a changed migration), so the improvements
-- are here:
--
-- 1. A bounded number of log rows for any statement. Changed geometries are merged per
--    cell of a grid whose cell is a z12 tile (~9.8 km) for local edits, and grows with
--    the statement's extent so that the extent spans at most 16 cells per axis: a
--    statement writes at most 17 x 17 = 289 rows, whatever it changes (one row for a
--    local edit, a handful for a city-wide import, at most 289 for the planet).
--    One pass over the transition tables, ~3x faster than V2's query.
-- 2. Geometries in another SRID are logged in EPSG:3857 (their box, transformed); the
--    per-row work is skipped when the trigger says the column is 3857, or when one
--    cheap pass finds every geometry of the statement in 3857.
-- 3. The user's statement never fails because of us computing boxes: on any error the
--    whole world is logged (with a WARNING), which expires too much but loses nothing.
-- 4. SECURITY DEFINER with a pinned search_path: roles that write the data (osm2pgsql,
--    an editor) need no grant on metatiled.change_log.
-- 5. TRUNCATE (which has no transition table) logs the whole world.
--
-- `changed_rows` counts the geometries looked at (old and new for an UPDATE); 0 means
-- unknown (TRUNCATE, or the fallback above).

CREATE OR REPLACE FUNCTION metatiled.log_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $fn$
DECLARE
    -- Arguments: the geometry column (default way) and the column's SRID as
    -- geometry_columns declares it ('3857' skips the per-row SRID check).
    geom text := COALESCE(TG_ARGV[0], 'way');
    declared_srid text := COALESCE(TG_ARGV[1], '');
    relation text := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
    -- Width of a z12 tile in metres: the smallest merge cell.
    base_cell constant double precision := 9783.939620502561;
    -- Most cells per axis over the extent of one statement's changes.
    max_cells constant double precision := 16;
    source text;
    all_3857 boolean;
    logged bigint := 0;
BEGIN
    IF TG_OP = 'INSERT' THEN
        source := format('SELECT %I AS g FROM new_rows', geom);
    ELSIF TG_OP = 'DELETE' THEN
        source := format('SELECT %I AS g FROM old_rows', geom);
    ELSE
        source := format('SELECT %I AS g FROM old_rows UNION ALL SELECT %I AS g FROM new_rows',
                         geom, geom);
    END IF;
    IF declared_srid <> '3857' THEN
        -- A column of any SRID: one cheap pass to see whether this statement's
        -- geometries are all in EPSG:3857 (or unset) anyway.
        EXECUTE format('SELECT bool_and(ST_SRID(g) IN (0, 3857)) FROM (%s) AS s', source)
            INTO all_3857;
    END IF;
    IF NOT COALESCE(all_3857, true) THEN
        -- Boxes of geometries in another SRID, transformed to EPSG:3857.
        source := format(
            'SELECT CASE WHEN ST_SRID(g) IN (0, 3857) THEN g
                         ELSE ST_Transform(ST_SetSRID(Box2D(g)::geometry, ST_SRID(g)), 3857)
                    END AS g
             FROM (%s) AS any_srid OFFSET 0', source);
    END IF;
    BEGIN
        -- One pass over the rows: extents per base cell (keyed by each box's corner);
        -- then those extents are merged on a grid coarse enough to keep the whole
        -- statement within max_cells per axis.
        EXECUTE format($q$
            WITH cells AS (
                SELECT ST_Extent(g) AS e, count(*) AS n
                FROM (%s) AS changed
                GROUP BY floor(ST_XMin(g) / %s), floor(ST_YMin(g) / %s)
            ),
            boxes AS (
                SELECT ST_XMin(e) AS x0, ST_YMin(e) AS y0, ST_XMax(e) AS x1, ST_YMax(e) AS y1, n
                FROM cells WHERE e IS NOT NULL
            ),
            grid AS (
                SELECT greatest(%s, greatest(max(x1) - min(x0), max(y1) - min(y0)) / %s) AS cell
                FROM boxes
            )
            INSERT INTO metatiled.change_log (table_name, minx, miny, maxx, maxy, changed_rows)
            SELECT %L, min(x0), min(y0), max(x1), max(y1), sum(n)
            FROM boxes, grid
            GROUP BY floor(x0 / cell), floor(y0 / cell)
            $q$, source, base_cell, base_cell, base_cell, max_cells, relation);
        GET DIAGNOSTICS logged = ROW_COUNT;
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'metatiled.log_change on %: % (logging the whole world instead)',
            relation, SQLERRM;
        INSERT INTO metatiled.change_log (table_name, minx, miny, maxx, maxy, changed_rows)
        VALUES (relation, -20037508.342789244, -20037508.342789244,
                20037508.342789244, 20037508.342789244, 0);
        logged := 1;
    END;
    IF logged > 0 THEN
        PERFORM pg_notify('metatiled_changes', relation);
    END IF;
    RETURN NULL;
END;
$fn$;

CREATE OR REPLACE FUNCTION metatiled.log_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $fn$
DECLARE
    relation text := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
BEGIN
    INSERT INTO metatiled.change_log (table_name, minx, miny, maxx, maxy, changed_rows)
    VALUES (relation, -20037508.342789244, -20037508.342789244,
            20037508.342789244, 20037508.342789244, 0);
    PERFORM pg_notify('metatiled_changes', relation);
    RETURN NULL;
END;
$fn$;

-- Pin the search path of both (SECURITY DEFINER functions must not find objects a
-- caller could plant): the system catalog, PostGIS's schema, and pg_temp last.
DO $pin$
DECLARE
    postgis_schema text;
BEGIN
    SELECT n.nspname INTO postgis_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'postgis';
    EXECUTE format('ALTER FUNCTION metatiled.log_change() SET search_path = pg_catalog, %I, pg_temp',
                   COALESCE(postgis_schema, 'public'));
    EXECUTE 'ALTER FUNCTION metatiled.log_truncate() SET search_path = pg_catalog, pg_temp';
END
$pin$;

COMMENT ON TABLE metatiled.change_log IS
    'Areas (EPSG:3857 boxes) changed in watched tables, written by statement-level triggers '
    '(metatiled watch) and consumed (deleted) by the server once it has expired their metatiles.';
COMMENT ON FUNCTION metatiled.log_change() IS
    'Statement-level trigger (INSERT, UPDATE, DELETE with transition tables new_rows/old_rows): '
    'logs the changed boxes to metatiled.change_log and NOTIFYs metatiled_changes. '
    'Arguments: the geometry column (default way) and its declared SRID.';
COMMENT ON FUNCTION metatiled.log_truncate() IS
    'Statement-level TRUNCATE trigger: logs the whole world for the table.';
