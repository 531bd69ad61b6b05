//! `metatiled export` and the admin API's export jobs, checked with other programs'
//! readers: SQLite's shell and GDAL for the MBTiles file, PyPI's `pmtiles` for the
//! PMTiles file. The window GDAL cuts out is kept in `target/tmp/export-window.png`
//! to be looked at (one such window is docs/export-window.png).
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

mod common;
mod support;
mod tools;

use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Central Helsinki, inside the imported data.
const BBOX: [f64; 4] = [24.94, 60.165, 24.95, 60.175];
const ZOOMS: std::ops::RangeInclusive<u8> = 13..=17;

fn bbox_arg() -> String {
    BBOX.map(|v| v.to_string()).join(",")
}

fn export(url: &str, cache: &Path, out: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_metatiled"))
        .args([
            "export",
            "--style",
            "osm",
            "--zoom",
            "13-17",
            "--threads",
            "2",
        ])
        .args(["--bbox", &bbox_arg()])
        .arg("--cache-dir")
        .arg(cache)
        .arg("--styles-dir")
        .arg(common::repo_root().join("styles"))
        .args(["--database-url", url])
        .arg(out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("0 failed"), "{stderr}");
}

/// Reads a PMTiles file with PyPI's reader: header, metadata, every tile's z/x/y.
const READ_PMTILES: &str = r#"
import json, sys
from pmtiles.reader import Reader, MmapSource, all_tiles
with open(sys.argv[1], "rb") as f:
    r = Reader(MmapSource(f))
    h = r.header()
    tiles = [list(zxy) for zxy, _ in all_tiles(r.get_bytes)]
    z, x, y = (int(v) for v in sys.argv[2:5])
    tile = r.get(z, x, y)
    print(json.dumps({
        "clustered": h["clustered"], "tile_type": h["tile_type"].value,
        "tile_compression": h["tile_compression"].value,
        "min_zoom": h["min_zoom"], "max_zoom": h["max_zoom"],
        "addressed": h["addressed_tiles_count"], "contents": h["tile_contents_count"],
        "metadata": r.metadata(), "tiles": tiles,
        "tile_hex": tile.hex() if tile else None,
    }))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_are_read_by_sqlite_gdal_and_the_pmtiles_package() {
    let Some(url) = common::database_url() else {
        eprintln!("skipping: no DATABASE_URL");
        return;
    };
    let (Some(sqlite3), Some(gdalinfo), Some(gdal_translate), Some(python)) = (
        tools::program("sqlite3"),
        tools::program("gdalinfo"),
        tools::program("gdal_translate"),
        tools::pmtiles_python(),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("tiles");
    let mbtiles = dir.path().join("helsinki.mbtiles");
    let pmtiles = dir.path().join("helsinki.pmtiles");
    let url2 = url.clone();
    let (c2, m2, p2) = (cache.clone(), mbtiles.clone(), pmtiles.clone());
    tokio::task::spawn_blocking(move || {
        export(&url2, &c2, &m2);
        // The second export finds every metatile in the cache.
        export(&url2, &c2, &p2);
    })
    .await
    .unwrap();
    let expected = tools::tile_count(BBOX, ZOOMS);
    assert!(expected > 50, "{expected}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // SQLite's own shell: the tile count is the area's, the metadata MBTiles 1.3 asks for.
    let sql = |q: &str| tools::run(Command::new(&sqlite3).arg(&mbtiles).arg(q));
    assert_eq!(
        sql("SELECT count(*) FROM tiles").trim(),
        expected.to_string()
    );
    for z in ZOOMS {
        let (x0, y0, x1, y1) = tools::tile_range(BBOX, z);
        let n = u64::from(x1 - x0 + 1) * u64::from(y1 - y0 + 1);
        let got = sql(&format!(
            "SELECT count(*) FROM tiles WHERE zoom_level = {z}"
        ));
        assert_eq!(got.trim(), n.to_string(), "zoom {z}");
    }
    let metadata = sql("SELECT name || '=' || value FROM metadata ORDER BY name");
    for line in [
        "name=osm",
        "format=png",
        "minzoom=13",
        "maxzoom=17",
        "attribution=© OpenStreetMap contributors",
        "bounds=24.94,60.165,24.95,60.175",
    ] {
        assert!(metadata.contains(line), "{line} not in\n{metadata}");
    }
    let center = metadata
        .lines()
        .find_map(|l| l.strip_prefix("center="))
        .unwrap();
    let c: Vec<f64> = center.split(',').map(|v| v.parse().unwrap()).collect();
    assert!(
        (c[0] - 24.945).abs() < 1e-9 && (c[1] - 60.17).abs() < 1e-9,
        "{center}"
    );
    assert!(ZOOMS.contains(&(c[2] as u8)), "{center}");
    let distinct = sql("SELECT count(*) FROM images");
    assert!(distinct.trim().parse::<u64>().unwrap() <= expected);

    // GDAL: the raster, and a window of it as a PNG to look at.
    let info = tools::run(Command::new(&gdalinfo).arg(&mbtiles));
    assert!(info.contains("Driver: MBTiles/MBTiles"), "{info}");
    assert!(info.contains("Pseudo-Mercator"), "{info}");
    let window = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("export-window.png");
    let _ = std::fs::remove_file(&window);
    tools::run(
        Command::new(&gdal_translate)
            .args(["-q", "-of", "PNG", "-srcwin", "0", "0", "512", "512"])
            .arg(&mbtiles)
            .arg(&window),
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&window).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).unwrap();
    assert_eq!((frame.width, frame.height), (512, 512));
    let channels = frame.color_type.samples();
    let mut colours = std::collections::HashSet::new();
    let mut land = 0;
    for p in buf[..frame.buffer_size()].chunks(channels) {
        colours.insert(p[..3].to_vec());
        if p[..3] == [0xf2, 0xef, 0xe9] {
            land += 1;
        }
    }
    assert!(colours.len() > 20, "{} colours: not a map", colours.len());
    assert!(
        land > 512 * 512 / 20,
        "the osm land colour covers {land} pixels"
    );
    eprintln!("GDAL window: {}", window.display());

    // PyPI's pmtiles: header, count, and a tile byte-equal to the server's.
    let (z, x, y) = {
        let (x0, y0, _, _) = tools::tile_range(BBOX, 16);
        (16u8, x0 + 1, y0 + 1)
    };
    let out = tools::run(
        Command::new(&python)
            .args(["-c", READ_PMTILES])
            .arg(&pmtiles)
            .args([z.to_string(), x.to_string(), y.to_string()]),
    );
    let read: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(read["clustered"], true);
    assert_eq!(read["tile_type"], 2, "PNG");
    assert_eq!(read["tile_compression"], 1, "tiles stored as they are");
    assert_eq!(
        (read["min_zoom"].as_u64(), read["max_zoom"].as_u64()),
        (Some(13), Some(17))
    );
    assert_eq!(read["addressed"], expected);
    assert_eq!(read["tiles"].as_array().unwrap().len() as u64, expected);
    assert_eq!(
        read["metadata"]["attribution"],
        "© OpenStreetMap contributors"
    );
    let contents = read["contents"].as_u64().unwrap();
    assert!(contents <= expected);
    assert_eq!(
        distinct.trim(),
        contents.to_string(),
        "both formats store each content once"
    );

    let Some(app) = support::spawn_app_with(|s| s.cache.dir = cache.clone()).await else {
        return;
    };
    let res = app.get(&format!("/osm/{z}/{x}/{y}.png")).await;
    assert_eq!(res.status(), 200);
    let served = res.bytes().await.unwrap();
    assert_eq!(
        read["tile_hex"].as_str(),
        Some(hex::encode(&served).as_str())
    );
    let tms = (1u32 << z) - 1 - y;
    let from_sqlite = sql(&format!(
        "SELECT hex(tile_data) FROM tiles WHERE zoom_level = {z} AND tile_column = {x} AND tile_row = {tms}"
    ));
    assert_eq!(
        from_sqlite.trim().to_ascii_lowercase(),
        hex::encode(&served)
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_export_job_writes_its_file_into_the_export_directory() {
    let exports = tempfile::tempdir().unwrap();
    let dir = exports.path().to_path_buf();
    let Some(app) = support::spawn_app_with(|s| s.export.dir = dir.clone()).await else {
        return;
    };
    let post = |body: Value| app.client.post(app.admin_url("/export")).json(&body).send();
    let bad = post(json!({"style": "osm", "bbox": BBOX, "maxzoom": 15, "file": "../x.pmtiles"}))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let bad = post(json!({"style": "osm", "bbox": BBOX, "maxzoom": 15, "file": "x.zip"}))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let res = post(json!({
        "style": "osm", "bbox": BBOX, "minzoom": 14, "maxzoom": 15, "file": "job.pmtiles"
    }))
    .await
    .unwrap();
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
    let started = Instant::now();
    let report = loop {
        let report: Value = app
            .client
            .get(app.admin_url(&format!("/jobs/{id}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !matches!(report["state"].as_str(), Some("queued" | "running")) {
            break report;
        }
        assert!(started.elapsed() < Duration::from_secs(180), "{report}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(report["state"], "done", "{report}");
    assert_eq!(report["kind"], "export");
    assert_eq!(report["done"], report["total"]);
    let expected = tools::tile_count(BBOX, 14..=15);
    assert_eq!(report["result"]["tiles"], expected, "{report}");
    let file = exports.path().join("job.pmtiles");
    assert_eq!(
        report["result"]["file_bytes"],
        std::fs::metadata(&file).unwrap().len()
    );
    let names: Vec<_> = std::fs::read_dir(exports.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["job.pmtiles"]);
    app.stop().await;
}
