//! The disk quota under load: a cache seeded to twice its quota converges under it,
//! the most recently served metatiles stay (though their files are the oldest), and no
//! read fails while metatiles are evicted.
#![allow(clippy::unwrap_used)] // tests fail loudly on what they set up

mod common;
mod support;

use metatiled::cache::DiskCache;
use metatiled::tile::{MetatileCoord, StyleName};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const QUOTA_METATILES: u64 = 64;

/// A real 256 x 256 PNG of one grey (the server checks that what it reads from disk is
/// a PNG of the style's tile size, and treats anything else as corrupt).
fn grey_png(level: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, 256, 256);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&vec![level; 256 * 256]).unwrap();
    writer.finish().unwrap();
    out
}

fn meta(i: u32) -> MetatileCoord {
    MetatileCoord {
        z: 16,
        x: i * 8,
        y: 0,
    }
}

/// Sum of the sizes of the metatile files under `dir`: what the disk holds.
fn bytes_on_disk(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let md = entry.metadata().unwrap();
            if md.is_dir() {
                pending.push(entry.path());
            } else if entry.path().extension().is_some_and(|e| e == "meta") {
                total += md.len();
            }
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cache_seeded_to_twice_its_quota_keeps_what_was_served_last() {
    // Measure one metatile first, to set the quota in metatiles.
    let probe = tempfile::tempdir().unwrap();
    let osm = StyleName::parse("osm").unwrap();
    let tiles: Vec<Vec<u8>> = (0..64).map(|i| grey_png(i as u8)).collect();
    let one = std::fs::metadata(
        DiskCache::new(probe.path(), false)
            .write_metatile(&osm, meta(0), &tiles)
            .unwrap(),
    )
    .unwrap()
    .len();
    let quota = one * QUOTA_METATILES;
    let Some(app) = support::spawn_app_with(|s| {
        s.cache.max_bytes = quota;
        s.cache.sweep_secs = 1;
        s.cache.sweep_walk_secs = 1;
        // The load comes from one client, far over a public client's budget.
        s.limits.enabled = false;
    })
    .await
    else {
        return;
    };
    let disk = DiskCache::new(app.cache_dir.path(), false);
    // Old enough to be the first to go by their files' times, fresh all the same.
    let planet = app
        .service
        .cache()
        .planet_time(&osm)
        .unwrap_or(SystemTime::now() - Duration::from_secs(7200));
    let write = |i: u32, age: u64| {
        let path = disk.write_metatile(&osm, meta(i), &tiles).unwrap();
        let t = filetime::FileTime::from_system_time(planet + Duration::from_secs(age));
        filetime::set_file_times(&path, t, t).unwrap();
        std::fs::metadata(&path).unwrap().ino()
    };
    // The served set: the 8 oldest files, served now.
    let served: Vec<(u32, u64)> = (0..8).map(|i| (i, write(i, 1))).collect();
    for (i, _) in &served {
        let m = meta(*i);
        let res = app.get(&format!("/osm/16/{}/{}.png", m.x, m.y)).await;
        assert_eq!(res.status(), 200);
    }
    // Then the rest, to twice the quota, newer files never served.
    for i in 8..(2 * QUOTA_METATILES as u32) {
        write(i, 2);
    }
    assert!(bytes_on_disk(app.cache_dir.path()) >= 2 * quota);

    // Load: every tile of the served set and of a few others, until the quota holds.
    let failures = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut load = Vec::new();
    for worker in 0..4u32 {
        let (client, base) = (app.client.clone(), app.url(""));
        let (failures, requests, stop) = (failures.clone(), requests.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut n = worker;
            while !stop.is_cancelled() {
                // Metatiles 0..8 (served) and 100..104 (served from now on).
                let i = if n % 3 == 0 { 100 + n % 4 } else { n % 8 };
                let m = meta(i);
                let url = format!("{base}/osm/16/{}/{}.png", m.x + n % 8, m.y + (n / 8) % 8);
                match client.get(&url).send().await {
                    Ok(res) if res.status() == 200 => {}
                    other => {
                        eprintln!("{url}: {:?}", other.map(|r| r.status()));
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                requests.fetch_add(1, Ordering::Relaxed);
                n += 4;
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while bytes_on_disk(app.cache_dir.path()) > quota {
        assert!(
            Instant::now() < deadline,
            "the cache did not get under its quota"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One more moment of load after the eviction, then stop.
    let after = requests.load(Ordering::Relaxed) + 100;
    while requests.load(Ordering::Relaxed) < after {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0, "no read failed");
    let used = bytes_on_disk(app.cache_dir.path());
    assert!(used <= quota, "{used} > {quota}");
    for (i, ino) in served {
        let path = disk.path_of(&osm, meta(i));
        let md = std::fs::metadata(&path).unwrap_or_else(|_| panic!("{i} was evicted"));
        assert_eq!(md.ino(), ino, "metatile {i} was evicted and rendered again");
    }
    assert!(app.metric("metatiled_cache_evicted_metatiles_total").await >= 64.0);
    assert!(app.metric("metatiled_cache_disk_bytes").await <= quota as f64);
    app.stop().await;
}
