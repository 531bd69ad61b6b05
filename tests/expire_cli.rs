//! `metatiled expire` run as a program on a cache of a few thousand metatiles, against
//! results computed by hand (in the comments) for the delete / touch / zoom boundaries,
//! z0-2 included.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

use metatiled::cache::DiskCache;
use metatiled::tile::{tiles_per_axis, MetatileCoord, StyleName};
use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

/// What render_expired does: 20 years of 365.25 days.
const TWENTY_YEARS: Duration = Duration::from_secs(7305 * 24 * 3600);

fn style() -> StyleName {
    StyleName::parse("test").unwrap()
}

fn m(z: u8, x: u32, y: u32) -> MetatileCoord {
    MetatileCoord::try_new(u32::from(z), u64::from(x), u64::from(y)).unwrap()
}

/// Every metatile of zooms 0..=max_zoom, each with mtime `rendered`.
fn full_cache(dir: &Path, max_zoom: u8, rendered: SystemTime) -> Vec<MetatileCoord> {
    let disk = DiskCache::new(dir, false);
    let mut tiles = vec![Vec::new(); 64];
    tiles[0] = b"png".to_vec();
    let mut all = Vec::new();
    for z in 0..=max_zoom {
        let n = tiles_per_axis(z);
        for x in (0..n).step_by(8) {
            for y in (0..n).step_by(8) {
                let meta = m(z, x, y);
                let path = disk.write_metatile(&style(), meta, &tiles).unwrap();
                filetime::set_file_mtime(&path, filetime::FileTime::from_system_time(rendered))
                    .unwrap();
                all.push(meta);
            }
        }
    }
    all
}

struct Run {
    code: i32,
    summary: HashMap<String, String>,
    stderr: String,
}

fn expire(dir: &Path, args: &[&str], input: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_metatiled"))
        .env_clear()
        .arg("expire")
        .arg("--cache-dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let summary = stdout
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Run {
        code: out.status.code().unwrap_or(-1),
        summary,
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn mtime(dir: &Path, meta: MetatileCoord) -> Option<SystemTime> {
    let path = DiskCache::new(dir, false).path_of(&style(), meta);
    std::fs::metadata(path)
        .ok()
        .map(|md| md.modified().unwrap())
}

const INPUT: &str = "8/200/100\n13/6000/3000\n3/5/2\nfoo\n3/8/0\n\n8/200/100\n";

#[test]
fn expire_deletes_and_marks_exactly_the_hand_computed_metatiles() {
    let dir = tempfile::tempdir().unwrap();
    let rendered = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000);
    let all = full_cache(dir.path(), 9, rendered);
    // 1 + 1 + 1 + 1 + 4 + 16 + 64 + 256 + 1024 + 4096 metatiles at z0..z9.
    assert_eq!(all.len(), 5464);
    // One metatile of the input is missing from the cache.
    std::fs::remove_file(DiskCache::new(dir.path(), false).path_of(&style(), m(8, 200, 96)))
        .unwrap();

    // 8/200/100 is metatile (200,96) at z8, and its ancestors below.
    // 13/6000/3000 is carried to z8: tile (187,93), inside the area of 3/5/2.
    // 3/5/2 stands for tiles x 160..191, y 64..95 at z8, i.e. 4x4 metatiles.
    let deleted: BTreeSet<MetatileCoord> = [160, 168, 176, 184]
        .into_iter()
        .flat_map(|x| [64, 72, 80, 88].map(|y| m(8, x, y)))
        // z7: 3/5/2 covers tiles 80..95 x 32..47 -> 2x2 metatiles; 8/200/100 is tile
        // (100,50) -> (96,48); 13/6000/3000 is tile (93,46) -> (88,40), already there.
        .chain([
            m(7, 80, 32),
            m(7, 80, 40),
            m(7, 88, 32),
            m(7, 88, 40),
            m(7, 96, 48),
        ])
        .collect();
    let marked: BTreeSet<MetatileCoord> = [
        // z6: 3/5/2 -> tiles 40..47 x 16..23 -> (40,16); 8/200/100 -> (50,25) -> (48,24).
        m(6, 40, 16),
        m(6, 48, 24),
        // z5: tiles 20..23 x 8..11 -> (16,8); (25,12) -> (24,8).
        m(5, 16, 8),
        m(5, 24, 8),
        // z4: tiles 10..11 x 4..5 and (12,6): both in (8,0).
        m(4, 8, 0),
        m(3, 0, 0),
        m(2, 0, 0),
        // z1 is below touch-from: "render", which offline marks dirty.
        m(1, 0, 0),
    ]
    .into_iter()
    .collect();

    let args = [
        "--style",
        "test",
        "--min-zoom",
        "1",
        "--max-zoom",
        "8",
        "--touch-from",
        "2",
        "--delete-from",
        "7",
    ];
    let run = expire(dir.path(), &args, INPUT);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let s = &run.summary;
    assert_eq!(s["lines read"], "7");
    assert_eq!(s["bad lines"], "2");
    assert!(run.stderr.contains("line 4: \"foo\""), "{}", run.stderr);
    assert!(run.stderr.contains("line 5: \"3/8/0\""), "{}", run.stderr);
    assert_eq!(s["metatiles"], "30");
    assert_eq!(s["deleted"], "21");
    assert_eq!(s["marked dirty"], "7");
    assert_eq!(s["marked dirty for re-render"], "1");
    assert_eq!(s["already dirty"], "0");
    assert_eq!(s["absent"], "1");
    assert_eq!(s["errors"], "0");

    for meta in &all {
        let now = mtime(dir.path(), *meta);
        if deleted.contains(meta) || *meta == m(8, 200, 96) {
            assert_eq!(now, None, "{meta} should be gone");
        } else if marked.contains(meta) {
            assert_eq!(now, Some(rendered - TWENTY_YEARS), "{meta} should be dirty");
        } else {
            assert_eq!(now, Some(rendered), "{meta} should be untouched");
        }
    }

    // The same list again: nothing left to delete, every mark already there.
    let again = expire(dir.path(), &args, INPUT);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.summary["deleted"], "0");
    assert_eq!(again.summary["marked dirty"], "0");
    assert_eq!(again.summary["already dirty"], "8");
    assert_eq!(again.summary["absent"], "22");
    for meta in &marked {
        assert_eq!(mtime(dir.path(), *meta), Some(rendered - TWENTY_YEARS));
    }
}

#[test]
fn expire_reaches_zooms_0_to_2_which_render_expired_never_touches() {
    let dir = tempfile::tempdir().unwrap();
    let rendered = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000);
    full_cache(dir.path(), 3, rendered);
    let run = expire(
        dir.path(),
        &[
            "--style",
            "test",
            "--min-zoom",
            "0",
            "--max-zoom",
            "2",
            "--delete-from",
            "1",
            "--touch-from",
            "0",
        ],
        "5/3/3\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.summary["metatiles"], "3");
    assert_eq!(run.summary["deleted"], "2");
    assert_eq!(run.summary["marked dirty"], "1");
    assert_eq!(mtime(dir.path(), m(0, 0, 0)), Some(rendered - TWENTY_YEARS));
    assert_eq!(mtime(dir.path(), m(1, 0, 0)), None);
    assert_eq!(mtime(dir.path(), m(2, 0, 0)), None);
    assert_eq!(mtime(dir.path(), m(3, 0, 0)), Some(rendered));
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--style", "test", "--min-zoom", "5", "--max-zoom", "3"][..],
        &["--style", "../etc"][..],
        &["--style", "test", "--max-zoom", "21"][..],
    ] {
        let run = expire(dir.path(), args, "");
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    }
}

/// Runs `expire` with no stdin (an area replaces the tile list).
fn expire_area(dir: &Path, args: &[&str]) -> Run {
    expire(dir, args, "")
}

#[test]
fn expire_takes_a_bbox_or_a_polygon_file_as_the_admin_api_does() {
    use metatiled::tile::TileCoord;
    let dir = tempfile::tempdir().unwrap();
    let rendered = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000);
    full_cache(dir.path(), 9, rendered);
    // A box well inside tile 8/200/100: one metatile per zoom, (200,96) at z8.
    let b = TileCoord {
        z: 8,
        x: 200,
        y: 100,
    }
    .bbox();
    let (sw, ne) = b.buffered(-b.width() * 0.25).to_lonlat();
    let bbox = format!("{},{},{},{}", sw.lon, sw.lat, ne.lon, ne.lat);
    let zooms = ["--min-zoom", "5", "--max-zoom", "8", "--delete-from", "8"];
    let mut args = vec!["--style", "test", "--bbox", &bbox];
    args.extend(zooms);
    let run = expire_area(dir.path(), &args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.summary["input"], "bbox");
    assert_eq!(run.summary["metatiles"], "4");
    assert_eq!(run.summary["deleted"], "1");
    assert_eq!(run.summary["marked dirty for re-render"], "3");
    assert_eq!(mtime(dir.path(), m(8, 200, 96)), None);
    assert_eq!(
        mtime(dir.path(), m(7, 96, 48)),
        Some(rendered - TWENTY_YEARS)
    );

    // The same box as a GeoJSON Feature: the same metatiles.
    let file = dir.path().join("area.geojson");
    let ring = format!(
        "[[{w},{s}],[{e},{s}],[{e},{n}],[{w},{n}],[{w},{s}]]",
        w = sw.lon,
        s = sw.lat,
        e = ne.lon,
        n = ne.lat
    );
    std::fs::write(
        &file,
        format!(
            r#"{{"type":"Feature","properties":{{}},"geometry":{{"type":"Polygon","coordinates":[{ring}]}}}}"#
        ),
    )
    .unwrap();
    let file_arg = file.display().to_string();
    let mut args = vec!["--style", "test", "--polygon", &file_arg];
    args.extend(zooms);
    let run = expire_area(dir.path(), &args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.summary["input"], "polygon");
    assert_eq!(run.summary["metatiles"], "4");
    assert_eq!(run.summary["absent"], "1", "deleted by the first run");
    assert_eq!(run.summary["already dirty"], "3");

    // Bad areas are usage errors.
    std::fs::write(&file, r#"{"type":"Point","coordinates":[1,2]}"#).unwrap();
    for args in [
        &["--style", "test", "--bbox", "3,2,1,4"][..],
        &["--style", "test", "--polygon", &file_arg][..],
        &["--style", "test", "--polygon", "/nonexistent.geojson"][..],
        &[
            "--style",
            "test",
            "--bbox",
            "1,2,3,4",
            "--polygon",
            &file_arg,
        ][..],
    ] {
        let run = expire_area(dir.path(), args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
    }
}
