"""Lists every tile of a style in a mod_tile metatile cache as URL paths, and writes
them out as static z/x/y.png files (for the nginx yardstick of scripts/bench-serve).
Reads .meta files as METATILE.md describes: 532-byte header, then the blobs.
usage: bench_tiles.py CACHE_DIR STYLE STATIC_DIR PATHS_FILE"""
import os, struct, sys

cache, style, static, paths_file = sys.argv[1:5]
paths = []
for root, _, files in os.walk(os.path.join(cache, style)):
    for name in files:
        if not name.endswith(".meta"):
            continue
        with open(os.path.join(root, name), "rb") as f:
            data = f.read()
        magic, count, mx, my, z = struct.unpack_from("<4siiii", data, 0)
        if magic != b"META" or count != 64:
            continue
        for i in range(64):
            offset, size = struct.unpack_from("<ii", data, 20 + 8 * i)
            if size == 0:
                continue
            x, y = mx + i // 8, my + i % 8
            d = os.path.join(static, style, str(z), str(x))
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, f"{y}.png"), "wb") as out:
                out.write(data[offset:offset + size])
            paths.append(f"/{style}/{z}/{x}/{y}.png")
with open(paths_file, "w") as f:
    f.write("\n".join(sorted(paths)) + "\n")
print(f"bench_tiles: {len(paths)} tiles", file=sys.stderr)
