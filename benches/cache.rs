//! Single-tile reads per second from the disk cache (page cache warm) and from the
//! memory layer, on 1 and 2 threads; and metatile writes per second.
//!
//! `cargo bench --bench cache` (optionally `-- SECONDS`, default 3 per figure).
//! The cache is 64 metatiles of z14 with tiles of 2-30 KiB (like OSM PNGs), 52 MiB.

use metatiled::cache::{Lookup, TileCache};
use metatiled::config::CacheSettings;
use metatiled::tile::{MetatileCoord, StyleName, TileCoord};
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::{Duration, Instant};

const METATILES_PER_SIDE: u32 = 8;

fn main() {
    let seconds: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    let run_for = Duration::from_secs(seconds);
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = CacheSettings {
        dir: dir.path().to_path_buf(),
        memory_bytes: 512 * 1024 * 1024,
        revalidate_secs: 5,
        planet_check_secs: 5,
        fsync: false,
    };
    let cache = Arc::new(TileCache::open(&settings).expect("open cache"));
    let style = StyleName::parse("osm").expect("style");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let metas: Vec<MetatileCoord> = (0..METATILES_PER_SIDE)
        .flat_map(|i| (0..METATILES_PER_SIDE).map(move |j| (i, j)))
        .map(|(i, j)| {
            MetatileCoord::try_new(14, u64::from(9000 + i * 8), u64::from(4000 + j * 8))
                .expect("metatile")
        })
        .collect();
    let mut bytes_total = 0usize;
    let t = Instant::now();
    for m in &metas {
        let tiles: Vec<Vec<u8>> = (0..64)
            .map(|_| {
                let len = rng.random_range(2048..30 * 1024);
                bytes_total += len;
                (0..len).map(|_| rng.random()).collect()
            })
            .collect();
        cache.store_metatile(&style, *m, &tiles).expect("store");
    }
    let write_secs = t.elapsed().as_secs_f64();
    println!(
        "cache: {} metatiles, {:.1} MiB of tiles, mean tile {:.1} KiB",
        metas.len(),
        bytes_total as f64 / 1048576.0,
        bytes_total as f64 / (metas.len() * 64) as f64 / 1024.0
    );
    println!(
        "write (fsync off): {:.0} metatiles/s ({:.2} ms each)",
        metas.len() as f64 / write_secs,
        write_secs * 1000.0 / metas.len() as f64
    );
    let fsync_cache = TileCache::open(&CacheSettings {
        fsync: true,
        ..settings.clone()
    })
    .expect("open cache");
    let tiles: Vec<Vec<u8>> = (0..64).map(|_| vec![0u8; 16 * 1024]).collect();
    let t = Instant::now();
    for m in metas.iter().take(16) {
        fsync_cache
            .store_metatile(&style, *m, &tiles)
            .expect("store");
    }
    let fsync_secs = t.elapsed().as_secs_f64();
    println!(
        "write (fsync on, 1 MiB metatiles): {:.0} metatiles/s ({:.2} ms each)",
        16.0 / fsync_secs,
        fsync_secs * 1000.0 / 16.0
    );
    let all_tiles: Vec<TileCoord> = metas.iter().flat_map(|m| m.tiles()).collect();
    let tiles_of = Arc::new(all_tiles);

    // Warm the page cache.
    for t in tiles_of.iter() {
        let _ = cache.read_from_disk(&style, *t).expect("read");
    }

    for threads in [1, 2] {
        let (n, per) = run(threads, run_for, &tiles_of, |t| {
            let l = cache.read_from_disk(&style, t).expect("read");
            assert!(matches!(l, Lookup::Disk(_)));
        });
        println!(
            "disk read + validate + SHA-256 ETag, {threads} thread(s): {:.0} reads/s ({:.1} us per read per thread)",
            n, per
        );
        let disk = cache.disk().clone();
        let (n, per) = run(threads, run_for, &tiles_of, |t| {
            let r = disk.read_tile(&style, t).expect("read");
            assert!(r.is_some());
        });
        println!(
            "disk read + validate (no ETag), {threads} thread(s): {:.0} reads/s ({:.1} us per read per thread)",
            n, per
        );
    }

    for t in tiles_of.iter() {
        let _ = cache.lookup(&style, *t).expect("fill");
    }
    for threads in [1, 2] {
        let (n, per) = run(threads, run_for, &tiles_of, |t| {
            let l = cache.lookup(&style, t).expect("lookup");
            assert!(matches!(l, Lookup::Memory(_)));
        });
        println!(
            "memory hit (lookup, revalidate every 5 s), {threads} thread(s): {:.0} reads/s ({:.2} us per read per thread)",
            n, per
        );
    }
    let stats = cache.memory_stats();
    println!(
        "memory layer: {} entries, {:.1} MiB",
        stats.entries,
        stats.bytes as f64 / 1048576.0
    );
}

/// Runs `f` on random tiles from `threads` threads for `run_for`; returns the total
/// reads per second and the mean microseconds per read of one thread.
fn run(
    threads: usize,
    run_for: Duration,
    tiles: &Arc<Vec<TileCoord>>,
    f: impl Fn(TileCoord) + Sync,
) -> (f64, f64) {
    let counts: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let f = &f;
                let tiles = tiles.clone();
                s.spawn(move || {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
                    let start = Instant::now();
                    let mut n = 0u64;
                    while start.elapsed() < run_for {
                        for _ in 0..64 {
                            f(tiles[rng.random_range(0..tiles.len())]);
                        }
                        n += 64;
                    }
                    n
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect()
    });
    let total: u64 = counts.iter().sum();
    let rate = total as f64 / run_for.as_secs_f64();
    (rate, 1e6 * threads as f64 / rate)
}
