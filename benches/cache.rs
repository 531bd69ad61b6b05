//! Single-tile reads per second from the disk cache (page cache warm) and from the
//! memory layer, on 1 and 2 threads; and metatile writes per second.
//!
//! `cargo bench --bench cache` (optionally `-- SECONDS`, default 3 per figure). Run
//! without `--bench` (as `cargo test --all-targets` does) it is a short smoke test.
//! The cache is 64 metatiles of z14 with random tiles of 2-30 KiB (mean 16 KiB, like OSM
//! PNGs), 64 MiB in all.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

use metatiled::cache::{Lookup, TileCache};
use metatiled::config::CacheSettings;
use metatiled::tile::{MetatileCoord, StyleName, TileCoord};
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::{Duration, Instant};

const METATILES_PER_SIDE: u32 = 8;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this as a quick
    // smoke test instead.
    let bench = std::env::args().any(|a| a == "--bench");
    let seconds: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(if bench { 3.0 } else { 0.02 });
    let run_for = Duration::from_secs_f64(seconds);
    let side = if bench { METATILES_PER_SIDE } else { 2 };
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = CacheSettings {
        dir: dir.path().to_path_buf(),
        memory_bytes: 512 * 1024 * 1024,
        revalidate_secs: 5,
        planet_check_secs: 5,
        fsync: false,
        shared: false,
    };
    let cache = Arc::new(TileCache::open(&settings).expect("open cache"));
    let style = StyleName::parse("osm").expect("style");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let metas: Vec<MetatileCoord> = (0..side)
        .flat_map(|i| (0..side).map(move |j| (i, j)))
        .map(|(i, j)| {
            MetatileCoord::try_new(14, u64::from(9000 + i * 8), u64::from(4000 + j * 8))
                .expect("metatile")
        })
        .collect();
    let mut bytes_total = 0usize;
    let contents: Vec<Vec<Vec<u8>>> = metas
        .iter()
        .map(|_| {
            (0..64)
                .map(|_| {
                    let len = rng.random_range(2048..30 * 1024);
                    bytes_total += len;
                    (0..len).map(|_| rng.random()).collect()
                })
                .collect()
        })
        .collect();
    println!(
        "cache: {} metatiles, {:.1} MiB of tiles, mean tile {:.1} KiB",
        metas.len(),
        bytes_total as f64 / 1048576.0,
        bytes_total as f64 / (metas.len() * 64) as f64 / 1024.0
    );
    let write_pass = |style: &StyleName, what: &str| {
        let t = Instant::now();
        for (m, tiles) in metas.iter().zip(&contents) {
            cache.store_metatile(style, *m, tiles).expect("store");
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "write, fsync off, {what}: {:.0} metatiles/s ({:.2} ms each)",
            metas.len() as f64 / secs,
            secs * 1000.0 / metas.len() as f64
        );
    };
    let scratch = StyleName::parse("scratch").expect("style");
    write_pass(&scratch, "new files in new directories (first pass)");
    write_pass(&style, "new files in new directories");
    write_pass(&style, "replacing existing files");
    let fsync_cache = TileCache::open(&CacheSettings {
        fsync: true,
        ..settings.clone()
    })
    .expect("open cache");
    let tiles: Vec<Vec<u8>> = (0..64).map(|_| vec![0u8; 16 * 1024]).collect();
    let t = Instant::now();
    let fsync_count = metas.len().min(16);
    for m in metas.iter().take(fsync_count) {
        fsync_cache
            .store_metatile(&scratch, *m, &tiles)
            .expect("store");
    }
    let fsync_secs = t.elapsed().as_secs_f64();
    println!(
        "write, fsync on, replacing existing 1 MiB files: {:.0} metatiles/s ({:.2} ms each)",
        fsync_count as f64 / fsync_secs,
        fsync_secs * 1000.0 / fsync_count as f64
    );
    let all_tiles: Vec<TileCoord> = metas.iter().flat_map(|m| m.tiles()).collect();
    let tiles_of = Arc::new(all_tiles);

    // Warm the page cache.
    for t in tiles_of.iter() {
        let _ = cache.read_from_disk(&style, *t).expect("read");
    }

    let tile = vec![7u8; 16 * 1024];
    let t = Instant::now();
    let mut etags = 0usize;
    while t.elapsed() < run_for {
        etags += std::hint::black_box(metatiled::cache::etag_of(&tile)).len();
    }
    println!(
        "SHA-256 ETag of a 16 KiB tile: {:.1} us",
        1e6 * t.elapsed().as_secs_f64() / (etags / 18) as f64
    );

    for threads in [1, 2] {
        let figures = run(threads, run_for, &tiles_of, |t| {
            let l = cache.read_from_disk(&style, t).expect("read");
            assert!(matches!(l, Lookup::Disk(_)));
        });
        println!("disk read + validate + SHA-256 ETag, {threads} thread(s): {figures}");
        let disk = cache.disk().clone();
        let figures = run(threads, run_for, &tiles_of, |t| {
            let r = disk.read_tile(&style, t).expect("read");
            assert!(r.is_some());
        });
        println!("disk read + validate (no ETag), {threads} thread(s): {figures}");
    }

    for t in tiles_of.iter() {
        let _ = cache.lookup(&style, *t).expect("fill");
    }
    for threads in [1, 2] {
        let figures = run(threads, run_for, &tiles_of, |t| {
            let l = cache.lookup(&style, t).expect("lookup");
            assert!(matches!(l, Lookup::Memory(_)));
        });
        println!("memory hit (lookup, revalidate every 5 s), {threads} thread(s): {figures}");
    }
    let stats = cache.memory_stats();
    println!(
        "memory layer: {} entries, {:.1} MiB",
        stats.entries,
        stats.bytes as f64 / 1048576.0
    );
}

/// Nanoseconds this thread has spent on a CPU (Linux `schedstat`), to tell our cost
/// from the time other processes on a busy machine take.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// What [`run`] measured.
struct Figures {
    /// Reads per second, all threads together.
    rate: f64,
    /// Wall-clock microseconds per read, per thread.
    wall_us: f64,
    /// CPU microseconds per read (when the kernel tells).
    cpu_us: Option<f64>,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} reads/s ({:.2} us per read per thread",
            self.rate, self.wall_us
        )?;
        match self.cpu_us {
            Some(cpu) => write!(f, ", {cpu:.2} us of CPU per read)"),
            None => write!(f, ")"),
        }
    }
}

/// Runs `f` on random tiles from `threads` threads for `run_for`.
fn run(
    threads: usize,
    run_for: Duration,
    tiles: &Arc<Vec<TileCoord>>,
    f: impl Fn(TileCoord) + Sync,
) -> Figures {
    let results: Vec<(u64, Option<u64>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let f = &f;
                let tiles = tiles.clone();
                s.spawn(move || {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
                    let cpu_start = thread_cpu_ns();
                    let start = Instant::now();
                    let mut n = 0u64;
                    while start.elapsed() < run_for {
                        for _ in 0..64 {
                            f(tiles[rng.random_range(0..tiles.len())]);
                        }
                        n += 64;
                    }
                    let cpu = cpu_start.and_then(|a| thread_cpu_ns().map(|b| b - a));
                    (n, cpu)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect()
    });
    let total: u64 = results.iter().map(|r| r.0).sum();
    let cpu: Option<u64> = results.iter().map(|r| r.1).sum();
    let rate = total as f64 / run_for.as_secs_f64();
    Figures {
        rate,
        wall_us: 1e6 * threads as f64 / rate,
        cpu_us: cpu.map(|ns| ns as f64 / 1000.0 / total as f64),
    }
}
