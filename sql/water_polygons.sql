-- The sea: public.water_polygons and public.simplified_water_polygons (EPSG:3857,
-- geometry column `way`) built from the import's natural=coastline ways (osm2pgsql
-- --keep-coastlines puts them in planet_osm_line). Same names and column as the
-- tables openstreetmap-carto loads from osmdata.openstreetmap.de, so a user can load
-- those instead (see README, "Sea and coast"); a table that this file did not build
-- (no "metatiled:" comment) is left alone.
--
-- How: the coastlines are merged, clipped to the imported area (the bounds in
-- metatiled.import_info, else the data's extent), their open ends taken to the nearest
-- point of the area's edge (an extract cut at a bbox ends each coastline at its last
-- node inside, a few metres from the edge), and the lines plus the edge polygonized.
-- Each face is sea or land by vote: OSM coastlines have the land on their left, so a
-- point a centimetre to the right of each coastline segment votes "sea" for the face
-- it falls in and one to the left votes "land". Sea faces are cut into pieces of at
-- most 256 vertices (ST_Subdivide, as osmdata's split files are) so that a tile reads
-- only the pieces near it. An open coastline ending far inside the area (a broken
-- extract) cannot be closed and is left out, with a NOTICE.
--
-- osmcoastline is what builds osmdata's planet-wide files, but it needs every
-- coastline closed and every node present: on an extract cut at a bbox it stops at
-- "locations missing" (522 on the Helsinki sample), so the extract is done here.
--
-- Idempotent; scripts/setup runs it after each import (and when the tables are
-- missing). Rows are replaced with DELETE + INSERT inside one transaction, so readers
-- never see an empty sea and the change triggers of `metatiled watch` see the change.

BEGIN;
SET LOCAL client_min_messages = warning;

CREATE TABLE IF NOT EXISTS public.water_polygons (
    way geometry(Polygon, 3857) NOT NULL
);
CREATE TABLE IF NOT EXISTS public.simplified_water_polygons (
    way geometry(Polygon, 3857) NOT NULL
);
CREATE INDEX IF NOT EXISTS water_polygons_way_idx
    ON public.water_polygons USING gist (way);
CREATE INDEX IF NOT EXISTS simplified_water_polygons_way_idx
    ON public.simplified_water_polygons USING gist (way);

DO $build$
DECLARE
    mine boolean;
    region geometry;
    tolerance double precision;
    dropped integer;
    n_sea integer;
BEGIN
    -- This block's NOTICEs are its report (setup runs psql with warnings only).
    PERFORM set_config('client_min_messages', 'notice', true);
    -- Only tables this file made (or just created, still without a comment).
    SELECT bool_and(COALESCE(obj_description(c.oid, 'pg_class'), 'metatiled:') LIKE 'metatiled:%')
      INTO mine
      FROM pg_class c
     WHERE c.oid IN ('public.water_polygons'::regclass, 'public.simplified_water_polygons'::regclass);
    IF NOT mine THEN
        RAISE NOTICE 'water_polygons: left as they are (not built by metatiled: loaded from elsewhere)';
        RETURN;
    END IF;

    SELECT ST_Transform(ST_MakeEnvelope(minlon, minlat, maxlon, maxlat, 4326), 3857)
      INTO region FROM metatiled.import_info;
    IF region IS NULL THEN
        SELECT ST_SetSRID(ST_Extent(way)::geometry, 3857) INTO region
          FROM (SELECT way FROM public.planet_osm_point
                UNION ALL SELECT way FROM public.planet_osm_line
                UNION ALL SELECT way FROM public.planet_osm_polygon) AS everything;
    END IF;

    COMMENT ON TABLE public.water_polygons IS
        'metatiled: the sea, built by sql/water_polygons.sql from natural=coastline in planet_osm_line';
    COMMENT ON TABLE public.simplified_water_polygons IS
        'metatiled: public.water_polygons simplified for low zooms (sql/water_polygons.sql)';
    DELETE FROM public.water_polygons;
    DELETE FROM public.simplified_water_polygons;
    IF region IS NULL OR ST_Area(region) = 0 THEN
        RAISE NOTICE 'water_polygons: no imported area, no sea';
        RETURN;
    END IF;
    -- How far from the edge an open coastline may end and still be closed along it.
    tolerance := greatest(50, 0.01 * least(ST_XMax(region) - ST_XMin(region), ST_YMax(region) - ST_YMin(region)));

    CREATE TEMP TABLE coast_pieces ON COMMIT DROP AS
    WITH merged AS (
        SELECT (ST_Dump(ST_LineMerge(ST_Collect(way)))).geom AS g
          FROM public.planet_osm_line
         WHERE "natural" = 'coastline' AND way && region
    ),
    clipped AS (
        SELECT (ST_Dump(ST_Intersection(g, region))).geom AS g FROM merged
    )
    SELECT g,
           ST_IsClosed(g)
             OR (ST_Distance(ST_StartPoint(g), ST_Boundary(region)) <= tolerance
                 AND ST_Distance(ST_EndPoint(g), ST_Boundary(region)) <= tolerance) AS usable
      FROM clipped
     WHERE GeometryType(g) = 'LINESTRING' AND ST_NPoints(g) >= 2;

    SELECT count(*) INTO dropped FROM coast_pieces WHERE NOT usable;
    IF dropped > 0 THEN
        RAISE NOTICE 'water_polygons: % coastline piece(s) end more than % m inside the imported area and are left out',
            dropped, round(tolerance);
    END IF;

    CREATE TEMP TABLE coast_faces ON COMMIT DROP AS
    WITH closed AS (
        SELECT CASE WHEN ST_IsClosed(g) THEN g
                    ELSE ST_MakeLine(ARRAY[ST_ClosestPoint(ST_Boundary(region), ST_StartPoint(g)), g,
                                           ST_ClosestPoint(ST_Boundary(region), ST_EndPoint(g))])
               END AS g
          FROM coast_pieces WHERE usable
    ),
    noded AS (
        SELECT ST_Node(ST_Collect(g)) AS lines
          FROM (SELECT g FROM closed UNION ALL SELECT ST_Boundary(region)) AS all_lines
    )
    SELECT row_number() OVER () AS id, (ST_Dump(ST_Polygonize(lines))).geom AS face
      FROM noded
     WHERE EXISTS (SELECT FROM coast_pieces WHERE usable);
    CREATE INDEX ON coast_faces USING gist (face);

    -- The votes: a point 1 cm right (sea) and left (land) of each segment's middle.
    CREATE TEMP TABLE coast_votes ON COMMIT DROP AS
    WITH segments AS (
        SELECT ST_X(ST_PointN(g, i)) AS ax, ST_Y(ST_PointN(g, i)) AS ay,
               ST_X(ST_PointN(g, i + 1)) AS bx, ST_Y(ST_PointN(g, i + 1)) AS by
          FROM coast_pieces, generate_series(1, ST_NPoints(g) - 1) AS i
         WHERE usable
    ),
    unit AS (
        SELECT (ax + bx) / 2 AS mx, (ay + by) / 2 AS my,
               (by - ay) / len * 0.01 AS nx, (ax - bx) / len * 0.01 AS ny
          FROM (SELECT *, sqrt((bx - ax) ^ 2 + (by - ay) ^ 2) AS len FROM segments) AS s
         WHERE len > 0
    )
    SELECT ST_SetSRID(ST_MakePoint(mx + nx, my + ny), 3857) AS p, 1 AS vote FROM unit
    UNION ALL
    SELECT ST_SetSRID(ST_MakePoint(mx - nx, my - ny), 3857), -1 FROM unit;

    INSERT INTO public.water_polygons (way)
    SELECT ST_Subdivide(face, 256)
      FROM coast_faces f
     WHERE (SELECT sum(vote) FROM coast_votes v WHERE ST_Intersects(f.face, v.p)) > 0;
    GET DIAGNOSTICS n_sea = ROW_COUNT;

    -- For low zooms: the sea simplified at about a z9 pixel (305 m / 4) and without
    -- the pieces too small to show there.
    INSERT INTO public.simplified_water_polygons (way)
    SELECT ST_Subdivide(g, 256)
      FROM (SELECT ST_SimplifyPreserveTopology(ST_Union(way), 76) AS g FROM public.water_polygons) AS u
     WHERE g IS NOT NULL AND NOT ST_IsEmpty(g);

    RAISE NOTICE 'water_polygons: % sea piece(s) from % coastline piece(s)',
        n_sea, (SELECT count(*) FROM coast_pieces WHERE usable);
END
$build$;

ANALYZE public.water_polygons;
ANALYZE public.simplified_water_polygons;

COMMIT;
