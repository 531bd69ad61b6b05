#!/bin/sh
# Entry point of the compose "import" service: imports /data/$OSM_PBF into
# $DATABASE_URL with scripts/setup (which does nothing when that file is
# already imported). The default, helsinki.osm.pbf, is fetched when absent.
set -eu

: "${DATABASE_URL:?import: error: DATABASE_URL must point at the database}"
name=${OSM_PBF:-helsinki.osm.pbf}
pbf=/data/$name

if [ -f "$pbf" ]; then
    exec /app/scripts/setup "$pbf"
fi
if [ "$name" = helsinki.osm.pbf ]; then
    echo "import: $pbf not found; using the Helsinki sample" >&2
    exec /app/scripts/setup
fi
echo "import: error: $pbf not found: put $name in OSM_DATA_DIR (default ./.data) or set OSM_PBF" >&2
exit 1
