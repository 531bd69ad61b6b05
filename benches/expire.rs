//! Expiry at scale, on a cache of synthetic metatiles (tiny tiles, real files and
//! paths), through the pieces the admin API runs: [`Area::to_set`], the streamed text
//! parser ([`read_tile_text`]) and [`apply`] on the [`TileCache`] (disk + memory).
//!
//! - a world bbox, z0-20, marking dirty and deleting (the walk path);
//! - a bbox of almost the world (lat +-85: edge rows of single metatiles at every zoom);
//! - a 100,000-line `z/x/y` list: parse and set building, then marking dirty.
//!
//! `cargo bench --bench expire`. Run without `--bench` (as `cargo test --all-targets`
//! does) it is a short smoke test on a small cache.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

use metatiled::area::{Area, MetatileSet};
use metatiled::cache::TileCache;
use metatiled::config::CacheSettings;
use metatiled::expire::{apply, ExpirePlan, ExpireSummary};
use metatiled::service::admin::lines::read_tile_text;
use metatiled::tile::{tiles_per_axis, MetatileCoord, StyleName, TileCoord};
use std::time::Instant;

/// Metatiles per side of the cached block at each zoom (capped by the world's size).
const SIDE: u32 = 32;
const LIST_LINES: u64 = 100_000;

/// Helsinki, whose metatiles the synthetic cache holds at every zoom.
const CENTRE: (f64, f64) = (24.94, 60.17);

fn centre_tile(z: u8) -> TileCoord {
    let n = f64::from(tiles_per_axis(z));
    let x = (CENTRE.0 + 180.0) / 360.0 * n;
    let lat = CENTRE.1.to_radians();
    let y = (1.0 - (lat.tan() + 1.0 / lat.cos()).ln() / std::f64::consts::PI) / 2.0 * n;
    TileCoord {
        z,
        x: x as u32,
        y: y as u32,
    }
}

/// Writes a block of `side` x `side` metatiles around Helsinki at every zoom 0..=20.
fn fill(cache: &TileCache, style: &StyleName, side: u32) -> u64 {
    let mut tiles = vec![Vec::new(); 64];
    tiles[0] = b"\x89PNG synthetic".to_vec();
    let mut n = 0;
    for z in 0..=20u8 {
        let metas_per_axis = tiles_per_axis(z).div_ceil(8);
        let side = side.min(metas_per_axis);
        let c = centre_tile(z).metatile();
        let (cx, cy) = (c.x / 8, c.y / 8);
        let x0 = cx.saturating_sub(side / 2).min(metas_per_axis - side);
        let y0 = cy.saturating_sub(side / 2).min(metas_per_axis - side);
        for mx in x0..x0 + side {
            for my in y0..y0 + side {
                let meta =
                    MetatileCoord::try_new(u32::from(z), u64::from(mx) * 8, u64::from(my) * 8)
                        .expect("metatile");
                cache.store_metatile(style, meta, &tiles).expect("write");
                n += 1;
            }
        }
    }
    n
}

fn timed(what: &str, f: impl FnOnce() -> ExpireSummary) -> ExpireSummary {
    let started = Instant::now();
    let summary = f();
    let t = summary.total();
    println!(
        "{what}: {:.3} s; {} metatiles named, {} changed, {} already dirty, {} absent, {} errors",
        started.elapsed().as_secs_f64(),
        t.matched,
        t.changed,
        t.already_dirty,
        t.absent,
        t.errors
    );
    summary
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let side = if bench { SIDE } else { 2 };
    let lines = if bench { LIST_LINES } else { 1_000 };
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = CacheSettings {
        dir: dir.path().to_path_buf(),
        memory_bytes: 64 * 1024 * 1024,
        revalidate_secs: 5,
        planet_check_secs: 5,
        fsync: false,
        ..CacheSettings::default()
    };
    let cache = TileCache::open(&settings).expect("open cache");
    let style = StyleName::parse("osm").expect("style");
    let started = Instant::now();
    let cached = fill(&cache, &style, side);
    println!(
        "cache: {cached} metatiles at z0-20 ({:.1} s to write)",
        started.elapsed().as_secs_f64()
    );
    let no_progress = &mut |_| {};
    let dirty = ExpirePlan::new(0, 20, None, Some(0)).expect("plan");
    let delete = ExpirePlan::new(0, 20, Some(0), None).expect("plan");

    let world = Area::bbox([-180.0, -85.0511, 180.0, 85.0511]).expect("bbox");
    let near_world = Area::bbox([-180.0, -85.0, 180.0, 85.0]).expect("bbox");
    let t = Instant::now();
    let world_set = world.to_set(20);
    let near_set = near_world.to_set(20);
    println!(
        "sets: world {} squares, lat +-85 {} squares ({:.3} s)",
        world_set.len(),
        near_set.len(),
        t.elapsed().as_secs_f64()
    );
    let s = timed("world bbox z0-20, dirty", || {
        apply(&cache, &style, &dirty, &world_set, no_progress)
    });
    assert_eq!(s.total().changed, cached);
    timed(
        "lat +-85 bbox z0-20, dirty again (all already dirty)",
        || apply(&cache, &style, &dirty, &near_set, no_progress),
    );
    let s = timed("world bbox z0-20, delete", || {
        apply(&cache, &style, &delete, &world_set, no_progress)
    });
    assert_eq!(s.total().changed, cached);

    fill(&cache, &style, side);
    let s = timed("lat +-85 bbox z0-20, delete", || {
        apply(&cache, &style, &delete, &near_set, no_progress)
    });
    assert_eq!(s.total().changed, cached);

    // A list of z18 tiles over the cached block, 400 per row.
    fill(&cache, &style, side);
    let c = centre_tile(18);
    let mut text = String::with_capacity(lines as usize * 17);
    for k in 0..lines {
        text.push_str(&format!(
            "18/{}/{}\n",
            c.x - 200 + (k % 400) as u32,
            c.y - 125 + (k / 400) as u32
        ));
    }
    let t = Instant::now();
    let built = read_tile_text(text.as_bytes(), MetatileSet::new(20)).expect("parse");
    let parse_secs = t.elapsed().as_secs_f64();
    println!(
        "list of {lines} lines ({:.1} MB): parsed into {} squares in {parse_secs:.3} s ({:.0} lines/s)",
        text.len() as f64 / 1e6,
        built.set.len(),
        lines as f64 / parse_secs
    );
    let set: MetatileSet = built.set;
    let t = Instant::now();
    timed("list, z0-20, dirty", || {
        apply(&cache, &style, &dirty, &set, no_progress)
    });
    let all_secs = parse_secs + t.elapsed().as_secs_f64();
    println!(
        "list end to end: {all_secs:.3} s ({:.0} lines/s)",
        lines as f64 / all_secs
    );
}
