//! `metatiled seed` with a `--polygon` GeoJSON file, as the admin API's `POST /seed`
//! takes a geometry: the same area code, the same metatiles.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

mod common;

use metatiled::cache::DiskCache;
use metatiled::tile::{MetatileCoord, StyleName};
use std::process::Command;

fn m(z: u8, x: u32, y: u32) -> MetatileCoord {
    MetatileCoord::try_new(u32::from(z), u64::from(x), u64::from(y)).unwrap()
}

#[test]
fn seed_renders_the_metatiles_a_polygon_file_covers() {
    let Some(url) = common::database_url() else {
        eprintln!("skipping: no DATABASE_URL");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("area.geojson");
    // A triangle in central Helsinki: one metatile at z12 and one at z13.
    std::fs::write(
        &file,
        r#"{"type":"Polygon","coordinates":[[[24.94,60.165],[24.95,60.165],[24.94,60.175],[24.94,60.165]]]}"#,
    )
    .unwrap();
    let cache = dir.path().join("tiles");
    let styles = common::repo_root().join("styles");
    let run = |polygon: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_metatiled"))
            .args([
                "seed",
                "--style",
                "osm",
                "--zoom",
                "12-13",
                "--threads",
                "2",
            ])
            .arg("--polygon")
            .arg(polygon)
            .arg("--cache-dir")
            .arg(&cache)
            .arg("--styles-dir")
            .arg(&styles)
            .args(["--database-url", &url])
            .output()
            .unwrap()
    };
    let out = run(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("2 rendered"), "{stderr}");
    let disk = DiskCache::new(&cache, false);
    let osm = StyleName::parse("osm").unwrap();
    for meta in [m(12, 2328, 1184), m(13, 4656, 2368)] {
        assert!(
            disk.stamp(&osm, meta).unwrap().is_some(),
            "{meta} not seeded"
        );
    }

    std::fs::write(&file, r#"{"type":"Point","coordinates":[24.94,60.17]}"#).unwrap();
    let out = run(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a Point"), "{stderr}");
}
