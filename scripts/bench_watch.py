#!/usr/bin/env python3
"""Lag from COMMIT to a fresh tile, as a web map sees it (used by scripts/bench-watch).

A test park in an empty z16 tile is moved RUNS times, one UPDATE per run through a
long-lived psql (so the time taken is the COMMIT's, not psql's start-up). After each
COMMIT the tile is fetched every 10 ms until its ETag changes. Prints one line per run
and the median, min and max in milliseconds. Removes the park at the end.

usage: bench_watch.py BASE_URL DATABASE_URL Z X Y RUNS
"""
import http.client
import statistics
import subprocess
import sys
import time
import urllib.parse

NAME = "metatiled-bench-watch"


def tile_bbox(z, x, y):
    half = 20037508.342789244
    span = 2 * half / (1 << z)
    minx = -half + x * span
    maxy = half - y * span
    return minx, maxy - span, minx + span, maxy


class Psql:
    def __init__(self, url):
        self.p = subprocess.Popen(
            ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def run(self, sql):
        """Runs one autocommitted statement; returns when the COMMIT is done."""
        self.p.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo __done__\n")
        self.p.stdin.flush()
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise SystemExit("psql ended: " + sql)
            if line.strip() == "__done__":
                return

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def main():
    base, db_url, z, x, y, runs = sys.argv[1:7]
    z, x, y, runs = int(z), int(x), int(y), int(runs)
    u = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    path = f"/osm/{z}/{x}/{y}.png"

    def etag():
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise SystemExit(f"{path}: HTTP {r.status}")
        return r.getheader("ETag")

    minx, miny, maxx, maxy = tile_bbox(z, x, y)
    w = maxx - minx

    def box(i):
        # Alternate between two places in the tile so every run changes the picture.
        left = minx + (0.1 if i % 2 == 0 else 0.55) * w
        return (f"ST_MakeEnvelope({left}, {miny + 0.2 * w}, {left + 0.35 * w}, "
                f"{miny + 0.8 * w}, 3857)")

    db = Psql(db_url)
    db.run(f"DELETE FROM planet_osm_polygon WHERE name = '{NAME}'")
    db.run("INSERT INTO planet_osm_polygon (osm_id, leisure, name, way, way_area) "
           f"SELECT -900000000002, 'park', '{NAME}', g, ST_Area(g) FROM (SELECT {box(1)} AS g) s")
    time.sleep(1.0)
    before = etag()
    # Let the insert settle (the first fetch may be stale and queue a re-render).
    deadline = time.time() + 30
    while time.time() < deadline:
        time.sleep(0.3)
        now = etag()
        if now == before:
            break
        before = now
    lags = []
    try:
        for i in range(runs):
            before = etag()
            db.run(f"UPDATE planet_osm_polygon SET way = g, way_area = ST_Area(g) "
                   f"FROM (SELECT {box(i)} AS g) s WHERE name = '{NAME}'")
            t0 = time.perf_counter()
            while True:
                if etag() != before:
                    break
                if time.perf_counter() - t0 > 30:
                    raise SystemExit("no fresh tile within 30 s")
                time.sleep(0.01)
            lag = (time.perf_counter() - t0) * 1000
            lags.append(lag)
            print(f"  run {i + 1}: {lag:.0f} ms", file=sys.stderr)
            time.sleep(0.5)
    finally:
        db.run(f"DELETE FROM planet_osm_polygon WHERE name = '{NAME}'")
        db.close()
    print(f"median {statistics.median(lags):.0f} ms, min {min(lags):.0f} ms, "
          f"max {max(lags):.0f} ms over {len(lags)} runs")


if __name__ == "__main__":
    main()
