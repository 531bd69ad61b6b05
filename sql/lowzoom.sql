-- Generalised tables for low zooms, so that a z0-z12 metatile reads about what it
-- draws and not every row under it (a z8 metatile over a country would otherwise read
-- every polygon of the country to keep the big ones):
--
--   public.lowzoom_areas   landcover and water for z0-z12. Each polygon of
--                          planet_osm_polygon that covers more than two pixels at some
--                          zoom <= 12 gets a size class,
--                          `minzoom`, the lowest such zoom; the polygons of one class,
--                          landcover kind (the style's classes) and cell (the tile of
--                          zoom minzoom + 2, 6 to 12, holding them) are dissolved into
--                          one row. Partitioned on minzoom: a query at zoom z reads the
--                          partitions minzoom <= z only. `way` is
--                          simplified for z12 (a quarter pixel, 9.6 m), `way_z8` for z8
--                          and below (153 m). The parts, one row per polygon, are kept
--                          in metatiled.lowzoom_area_parts.
--   public.lowzoom_roads   major roads and main railways (planet_osm_roads) merged per
--                          class (`kind`) and per cell of a z10 tile (39 km), `way`
--                          simplified for z11 (half a pixel, 38 m) without stretches
--                          shorter than two pixels there, `way_z8` the same for z8.
--   planet_osm_point_place a partial GiST index for the place names read from z10,
--   planet_osm_line_*      and partial GiST indexes for what each road and rail layer
--                          reads (section 4).
--
-- Kept fresh: statement-level triggers on planet_osm_polygon and planet_osm_roads
-- replace, in the same transaction, the parts of the osm_ids a statement changed and
-- the dissolved rows of their cells (or the merged roads of their cells). They never
-- touch metatiled's own change triggers (migrations V2/V3): those log the base table's
-- change; the style's low-zoom layers read these tables, so `metatiled watch` puts its
-- triggers on them too, and a change expires low-zoom metatiles only when it changed a
-- generalised row.
--
-- Idempotent. scripts/setup runs it after every import (osm2pgsql --create drops the
-- tables with their triggers and the index) and when this file changes; it rebuilds
-- the tables from scratch (half a minute for 13 million features, well under a second
-- for a city). No view or foreign key refers to the planet_osm_* tables, so osm2pgsql
-- can still drop them. Tables made by an older version of this file (another comment)
-- are dropped and made again; `metatiled watch` (or watch.install_on_start) then puts
-- its triggers back on them.

BEGIN;
SET LOCAL client_min_messages = warning;

CREATE SCHEMA IF NOT EXISTS metatiled;

DO $version$
BEGIN
    IF obj_description(to_regclass('public.lowzoom_areas'), 'pg_class') IS DISTINCT FROM
           'metatiled lowzoom v3: landcover and water for z0-z12, dissolved per size class, kind and cell (sql/lowzoom.sql)'
       OR obj_description(to_regclass('public.lowzoom_roads'), 'pg_class') IS DISTINCT FROM
           'metatiled lowzoom v3: planet_osm_roads merged per kind and z10 cell, for z5-z11 (sql/lowzoom.sql)' THEN
        DROP TABLE IF EXISTS public.lowzoom_areas, public.lowzoom_roads, metatiled.lowzoom_area_parts;
    END IF;
END
$version$;

-- The lowest zoom (0..) at which an area of `way_area` m2 (EPSG:3857) covers more than
-- two pixels: way_area > 2 * (156543.03 / 2^z)^2. (From z13 the style reads
-- planet_osm_polygon and draws down to half a pixel; below, the specks between half a
-- pixel and two are left out: they cost as much to draw as the rest and show little.)
CREATE OR REPLACE FUNCTION metatiled.lowzoom_minzoom(way_area double precision)
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN way_area IS NULL OR way_area <= 0 THEN 99
                ELSE greatest(0, floor(ln(2 * 156543.03392804097 ^ 2 / way_area) / ln(4))::int + 1)
           END
$$;

-- A cell: the tile of zoom z holding the centre of a geometry's box, as one number
-- z * 1e12 + x * 1e6 + y, and back to the tile's box.
CREATE OR REPLACE FUNCTION metatiled.lowzoom_tile(g geometry, z integer)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT z::bigint * 1000000000000
         + floor(((ST_XMin(g) + ST_XMax(g)) / 2 + 20037508.342789244) / 40075016.68557849 * 2 ^ z)::bigint * 1000000
         + floor((20037508.342789244 - (ST_YMin(g) + ST_YMax(g)) / 2) / 40075016.68557849 * 2 ^ z)::bigint
$$;

CREATE OR REPLACE FUNCTION metatiled.lowzoom_tile_box(tile bigint)
RETURNS geometry LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ST_MakeEnvelope(-20037508.342789244 + x * size, 20037508.342789244 - (y + 1) * size,
                           -20037508.342789244 + (x + 1) * size, 20037508.342789244 - y * size, 3857)
      FROM (SELECT tile / 1000000 % 1000000 AS x, tile % 1000000 AS y,
                   40075016.68557849 / 2 ^ (tile / 1000000000000) AS size) AS t
$$;

-- The cell of an area of size class m: a tile of zoom m + 2 (between 6 and 12). A
-- metatile at zoom m covers 32 x 32 of them, one at zoom m + 3 and above fewer than
-- 6 x 6 (with its buffer): rows stay few where a class starts to show, and compact
-- where it is drawn in detail.
CREATE OR REPLACE FUNCTION metatiled.lowzoom_area_cell(g geometry, minzoom integer)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT metatiled.lowzoom_tile(g, least(greatest(minzoom + 2, 6), 12))
$$;

-- The cell of a major road: a z10 tile (39 km).
CREATE OR REPLACE FUNCTION metatiled.lowzoom_road_cell(g geometry)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT metatiled.lowzoom_tile(g, 10)
$$;

-- The union of a collection (overlapping parts would leave holes when filled
-- even-odd); the collection itself if GEOS fails on it.
CREATE OR REPLACE FUNCTION metatiled.lowzoom_union(g geometry)
RETURNS geometry LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN ST_UnaryUnion(g);
EXCEPTION WHEN OTHERS THEN
    RETURN g;
END;
$$;

-- 1. Areas ------------------------------------------------------------------------
-- Two steps. metatiled.lowzoom_area_parts: one row per polygon big enough for z12,
-- classified (the same classes as the style's landcover layer; `is_water` for its
-- water layer), simplified, with its size class `minzoom` and its `cell`.
-- public.lowzoom_areas: the parts of one class, kind and cell dissolved into one row
-- (ST_UnaryUnion), so that a metatile at zoom z reads a few hundred rows per class
-- <= z instead of every polygon.

CREATE TABLE IF NOT EXISTS metatiled.lowzoom_area_parts (
    osm_id bigint NOT NULL,
    minzoom smallint NOT NULL,
    cell bigint NOT NULL,
    kind text,
    is_water boolean NOT NULL,
    way_area real NOT NULL,
    way geometry(Geometry, 3857) NOT NULL
);

CREATE TABLE IF NOT EXISTS public.lowzoom_areas (
    minzoom smallint NOT NULL,
    cell bigint NOT NULL,
    kind text,
    is_water boolean NOT NULL,
    -- the smallest part's area
    way_area real NOT NULL,
    way geometry(Geometry, 3857) NOT NULL,
    way_z8 geometry(Geometry, 3857)
) PARTITION BY RANGE (minzoom);
CREATE TABLE IF NOT EXISTS public.lowzoom_areas_z0_6 PARTITION OF public.lowzoom_areas FOR VALUES FROM (0) TO (7);
CREATE TABLE IF NOT EXISTS public.lowzoom_areas_z7 PARTITION OF public.lowzoom_areas FOR VALUES FROM (7) TO (8);
CREATE TABLE IF NOT EXISTS public.lowzoom_areas_z8 PARTITION OF public.lowzoom_areas FOR VALUES FROM (8) TO (9);
CREATE TABLE IF NOT EXISTS public.lowzoom_areas_z9 PARTITION OF public.lowzoom_areas FOR VALUES FROM (9) TO (10);
CREATE TABLE IF NOT EXISTS public.lowzoom_areas_z10 PARTITION OF public.lowzoom_areas FOR VALUES FROM (10) TO (11);
CREATE TABLE IF NOT EXISTS public.lowzoom_areas_z11 PARTITION OF public.lowzoom_areas FOR VALUES FROM (11) TO (12);
CREATE TABLE IF NOT EXISTS public.lowzoom_areas_z12 PARTITION OF public.lowzoom_areas FOR VALUES FROM (12) TO (13);

COMMENT ON TABLE public.lowzoom_areas IS
    'metatiled lowzoom v3: landcover and water for z0-z12, dissolved per size class, kind and cell (sql/lowzoom.sql)';

-- Replaces the parts of these osm_ids (all parts when NULL) from planet_osm_polygon,
-- then the dissolved rows of every (minzoom, cell) whose parts changed.
CREATE OR REPLACE FUNCTION metatiled.lowzoom_areas_fill(ids bigint[]) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    n bigint;
    parts constant text := $q$
        INSERT INTO metatiled.lowzoom_area_parts (osm_id, minzoom, cell, kind, is_water, way_area, way)
        SELECT osm_id, minzoom, metatiled.lowzoom_area_cell(way, minzoom), kind, is_water, way_area,
               ST_SimplifyPreserveTopology(way, 9.554628535647032)
          FROM (SELECT p.osm_id, p.way, p.way_area, metatiled.lowzoom_minzoom(p.way_area) AS minzoom,
                       CASE WHEN p.building IS NOT NULL THEN NULL
                         WHEN leisure IN ('park', 'garden', 'dog_park', 'common', 'village_green') THEN 'park'
                         WHEN leisure IN ('pitch', 'track', 'sports_centre', 'stadium') THEN 'pitch'
                         WHEN leisure = 'playground' THEN 'playground'
                         WHEN landuse IN ('grass', 'meadow', 'village_green', 'recreation_ground', 'greenfield')
                           OR "natural" = 'grassland' THEN 'grass'
                         WHEN landuse = 'forest' OR "natural" = 'wood' THEN 'wood'
                         WHEN "natural" = 'scrub' THEN 'scrub'
                         WHEN "natural" = 'heath' THEN 'heath'
                         WHEN "natural" IN ('bare_rock', 'scree', 'sand') THEN 'bare'
                         WHEN landuse = 'residential' THEN 'residential'
                         WHEN landuse IN ('commercial', 'civil') THEN 'commercial'
                         WHEN landuse = 'retail' THEN 'retail'
                         WHEN landuse IN ('industrial', 'railway') THEN 'industrial'
                         WHEN landuse IN ('construction', 'brownfield') THEN 'construction'
                         WHEN landuse = 'cemetery' OR amenity = 'grave_yard' THEN 'cemetery'
                         WHEN amenity IN ('school', 'university', 'college', 'kindergarten') THEN 'education'
                       END AS kind,
                       COALESCE("natural" IN ('water', 'bay') OR water IS NOT NULL
                                OR waterway IN ('riverbank', 'dock') OR landuse IN ('reservoir', 'basin')
                                OR leisure = 'swimming_pool', false) AS is_water
                  FROM public.planet_osm_polygon p
                 WHERE %s
                   AND (landuse IS NOT NULL OR leisure IS NOT NULL OR "natural" IS NOT NULL
                        OR amenity IS NOT NULL OR water IS NOT NULL OR waterway IS NOT NULL)) AS p
         WHERE minzoom <= 12 AND (kind IS NOT NULL OR is_water) AND NOT ST_IsEmpty(way)
        RETURNING minzoom, cell
    $q$;
    groups constant text := $q$
        INSERT INTO public.lowzoom_areas (minzoom, cell, kind, is_water, way_area, way, way_z8)
        SELECT minzoom, cell, kind, is_water, way_area, u, u8
          FROM (SELECT minzoom, cell, kind, is_water, min(way_area) AS way_area,
                       metatiled.lowzoom_union(ST_Collect(way)) AS u,
                       CASE WHEN minzoom <= 8 THEN metatiled.lowzoom_union(
                           ST_Collect(ST_SimplifyPreserveTopology(way, 152.8740565703525))) END AS u8
                  FROM metatiled.lowzoom_area_parts
                 WHERE %s
                 GROUP BY minzoom, cell, kind, is_water) AS g
         WHERE u IS NOT NULL AND NOT ST_IsEmpty(u)
    $q$;
    ms smallint[];
    cs bigint[];
    ms_added smallint[];
    cs_added bigint[];
BEGIN
    IF ids IS NULL THEN
        TRUNCATE metatiled.lowzoom_area_parts, public.lowzoom_areas;
        EXECUTE format(parts, 'true');
        EXECUTE format(groups, 'true');
    ELSE
        WITH gone AS (DELETE FROM metatiled.lowzoom_area_parts WHERE osm_id = ANY (ids) RETURNING minzoom, cell)
        SELECT array_agg(minzoom), array_agg(cell) INTO ms, cs FROM gone;
        EXECUTE format('WITH added AS (%s) SELECT array_agg(minzoom), array_agg(cell) FROM added',
                       format(parts, 'p.osm_id = ANY ($1)'))
            INTO ms_added, cs_added USING ids;
        ms := ms || ms_added;
        cs := cs || cs_added;
        IF ms IS NULL THEN
            RETURN 0;
        END IF;
        DELETE FROM public.lowzoom_areas a
         USING unnest(ms, cs) AS t(minzoom, cell)
         WHERE a.minzoom = t.minzoom AND a.cell = t.cell;
        EXECUTE format(groups, '(minzoom, cell) IN (SELECT * FROM unnest($1, $2))') USING ms, cs;
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$fn$;

-- 2. Major roads and main railways, merged --------------------------------------

-- The lines of a (multi)line at least `min_length` long (the empty collection if
-- none): a merged stretch of road shorter than two pixels is a speck at that zoom.
CREATE OR REPLACE FUNCTION metatiled.lowzoom_long_lines(g geometry, min_length double precision)
RETURNS geometry LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT COALESCE(ST_Collect(d.geom), ST_SetSRID('GEOMETRYCOLLECTION EMPTY'::geometry, 3857))
      FROM ST_Dump(g) AS d
     WHERE ST_Length(d.geom) >= min_length
$$;

CREATE TABLE IF NOT EXISTS public.lowzoom_roads (
    cell bigint NOT NULL,
    kind text NOT NULL,
    z_order integer NOT NULL,
    way geometry(Geometry, 3857) NOT NULL,
    way_z8 geometry(Geometry, 3857) NOT NULL
);
COMMENT ON TABLE public.lowzoom_roads IS
    'metatiled lowzoom v3: planet_osm_roads merged per kind and z10 cell, for z5-z11 (sql/lowzoom.sql)';

-- Replaces the rows of these cells (all rows when NULL) from planet_osm_roads.
CREATE OR REPLACE FUNCTION metatiled.lowzoom_roads_fill(cells bigint[]) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    n bigint;
    query constant text := $q$
        INSERT INTO public.lowzoom_roads (cell, kind, z_order, way, way_z8)
        SELECT cell, kind, max(z_order),
               metatiled.lowzoom_long_lines(ST_Simplify(ST_LineMerge(ST_Collect(way)), 38.21851414258813), 152.8740565703525),
               metatiled.lowzoom_long_lines(ST_Simplify(ST_LineMerge(ST_Collect(way)), 305.748113140705), 1222.992452562820)
          FROM (SELECT metatiled.lowzoom_road_cell(way) AS cell, COALESCE(z_order, 0) AS z_order, way,
                       CASE
                         WHEN railway = 'rail' AND service IS NULL AND (tunnel IS NULL OR tunnel = 'no') THEN 'rail'
                         WHEN highway IN ('motorway', 'motorway_link', 'trunk', 'trunk_link') THEN 'motorway'
                         WHEN highway IN ('primary', 'primary_link') THEN 'primary'
                         WHEN highway IN ('secondary', 'secondary_link') THEN 'secondary'
                       END AS kind
                  FROM %s
                 WHERE highway IS NOT NULL OR railway IS NOT NULL) AS r
         WHERE kind IS NOT NULL
         GROUP BY cell, kind
    $q$;
BEGIN
    IF cells IS NULL THEN
        TRUNCATE public.lowzoom_roads;
        EXECUTE format(query, 'public.planet_osm_roads r');
    ELSE
        DELETE FROM public.lowzoom_roads WHERE cell = ANY (cells);
        -- The rows whose box centre is in one of the cells, found through each cell's box.
        EXECUTE format(query, 'unnest($1) AS wanted(id) JOIN public.planet_osm_roads r
                                 ON r.way && metatiled.lowzoom_tile_box(wanted.id)
                                AND metatiled.lowzoom_road_cell(r.way) = wanted.id') USING cells;
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$fn$;

-- 3. The triggers -----------------------------------------------------------------

-- planet_osm_polygon: the osm_ids of a statement's old and new rows.
CREATE OR REPLACE FUNCTION metatiled.lowzoom_polygon_changed() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    ids bigint[];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        TRUNCATE public.lowzoom_areas;
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT osm_id) INTO ids FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT osm_id) INTO ids FROM old_rows;
    ELSE
        SELECT array_agg(DISTINCT osm_id) INTO ids
          FROM (SELECT osm_id FROM old_rows UNION ALL SELECT osm_id FROM new_rows) AS changed;
    END IF;
    IF ids IS NOT NULL THEN
        PERFORM metatiled.lowzoom_areas_fill(ids);
    END IF;
    RETURN NULL;
END;
$fn$;

-- planet_osm_roads: the cells of a statement's old and new rows.
CREATE OR REPLACE FUNCTION metatiled.lowzoom_roads_changed() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    cells bigint[];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        TRUNCATE public.lowzoom_roads;
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT metatiled.lowzoom_road_cell(way)) INTO cells FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT metatiled.lowzoom_road_cell(way)) INTO cells FROM old_rows;
    ELSE
        SELECT array_agg(DISTINCT metatiled.lowzoom_road_cell(way)) INTO cells
          FROM (SELECT way FROM old_rows UNION ALL SELECT way FROM new_rows) AS changed;
    END IF;
    IF cells IS NOT NULL THEN
        PERFORM metatiled.lowzoom_roads_fill(cells);
    END IF;
    RETURN NULL;
END;
$fn$;

DO $triggers$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES ('planet_osm_polygon', 'metatiled.lowzoom_polygon_changed()'),
                                   ('planet_osm_roads', 'metatiled.lowzoom_roads_changed()')) AS v(tab, fn) LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS lowzoom_insert ON public.%I', t.tab);
        EXECUTE format('DROP TRIGGER IF EXISTS lowzoom_update ON public.%I', t.tab);
        EXECUTE format('DROP TRIGGER IF EXISTS lowzoom_delete ON public.%I', t.tab);
        EXECUTE format('DROP TRIGGER IF EXISTS lowzoom_truncate ON public.%I', t.tab);
        EXECUTE format('CREATE TRIGGER lowzoom_insert AFTER INSERT ON public.%I
                        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION %s', t.tab, t.fn);
        EXECUTE format('CREATE TRIGGER lowzoom_update AFTER UPDATE ON public.%I
                        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION %s',
                       t.tab, t.fn);
        EXECUTE format('CREATE TRIGGER lowzoom_delete AFTER DELETE ON public.%I
                        REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION %s', t.tab, t.fn);
        EXECUTE format('CREATE TRIGGER lowzoom_truncate AFTER TRUNCATE ON public.%I
                        FOR EACH STATEMENT EXECUTE FUNCTION %s', t.tab, t.fn);
    END LOOP;
END
$triggers$;

-- 4. Indexes the base tables need -------------------------------------------------

-- The triggers find rows by osm_id (osm2pgsql --slim makes this index; without
-- --slim there is none).
DO $idx$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'planet_osm_polygon'
                                            AND indexdef ~ '\(osm_id\)') THEN
        CREATE INDEX planet_osm_polygon_osm_id_idx ON public.planet_osm_polygon (osm_id);
    END IF;
END
$idx$;
-- The lines each road and rail layer reads, so that a z12-z13 metatile over a country
-- reads what it draws and not every path under it (the style's queries repeat each
-- predicate word for word so the planner can use the index):
--   planet_osm_line_lowzoom   what z13 draws, a quarter of the lines (roads);
--   planet_osm_line_major     what z12 draws, motorway to tertiary (roads);
--   planet_osm_line_tunnels   road tunnels, at every zoom (tunnels);
--   planet_osm_line_bridges   road and rail bridges, at every zoom (bridges);
--   planet_osm_line_railways  railways, at every zoom (railways, and its yard test).
CREATE INDEX IF NOT EXISTS planet_osm_line_lowzoom ON public.planet_osm_line USING gist (way)
    WHERE highway IN ('motorway', 'motorway_link', 'trunk', 'trunk_link', 'primary', 'primary_link',
                      'secondary', 'secondary_link', 'tertiary', 'tertiary_link', 'residential',
                      'unclassified', 'living_street', 'road')
       OR railway IN ('rail', 'tram', 'light_rail', 'subway');
CREATE INDEX IF NOT EXISTS planet_osm_line_major ON public.planet_osm_line USING gist (way)
    WHERE highway IN ('motorway', 'motorway_link', 'trunk', 'trunk_link', 'primary', 'primary_link',
                      'secondary', 'secondary_link', 'tertiary', 'tertiary_link');
CREATE INDEX IF NOT EXISTS planet_osm_line_tunnels ON public.planet_osm_line USING gist (way)
    WHERE highway IS NOT NULL AND tunnel IS NOT NULL AND tunnel NOT IN ('no', 'building_passage');
CREATE INDEX IF NOT EXISTS planet_osm_line_bridges ON public.planet_osm_line USING gist (way)
    WHERE bridge IS NOT NULL AND bridge <> 'no' AND (highway IS NOT NULL OR railway IS NOT NULL);
CREATE INDEX IF NOT EXISTS planet_osm_line_railways ON public.planet_osm_line USING gist (way)
    WHERE railway IN ('rail', 'tram', 'light_rail', 'subway');
-- Place names from z10: the few named places among all points.
CREATE INDEX IF NOT EXISTS planet_osm_point_place ON public.planet_osm_point USING gist (way)
    WHERE place IS NOT NULL AND name IS NOT NULL;

-- 5. Fill -------------------------------------------------------------------------
-- Indexes made after the rows are in (much faster than growing them row by row).

DROP INDEX IF EXISTS public.lowzoom_areas_way_idx;
DROP INDEX IF EXISTS public.lowzoom_roads_way_idx;
SET LOCAL client_min_messages = notice;
DO $fill$
DECLARE
    areas bigint := metatiled.lowzoom_areas_fill(NULL);
    roads bigint := metatiled.lowzoom_roads_fill(NULL);
BEGIN
    RAISE NOTICE 'low-zoom tables: lowzoom_areas % rows, lowzoom_roads % rows', areas, roads;
END
$fill$;
SET LOCAL client_min_messages = warning;
CREATE INDEX lowzoom_areas_way_idx ON public.lowzoom_areas USING gist (way);
CREATE INDEX IF NOT EXISTS lowzoom_areas_cell_idx ON public.lowzoom_areas (minzoom, cell);
CREATE INDEX IF NOT EXISTS lowzoom_area_parts_osm_id_idx ON metatiled.lowzoom_area_parts (osm_id);
CREATE INDEX IF NOT EXISTS lowzoom_area_parts_cell_idx ON metatiled.lowzoom_area_parts (minzoom, cell);
CREATE INDEX lowzoom_roads_way_idx ON public.lowzoom_roads USING gist (way);
CREATE INDEX IF NOT EXISTS lowzoom_roads_cell_idx ON public.lowzoom_roads (cell);

COMMIT;

ANALYZE metatiled.lowzoom_area_parts;
ANALYZE public.lowzoom_areas;
ANALYZE public.lowzoom_roads;
ANALYZE public.planet_osm_point;
ANALYZE public.planet_osm_line;
