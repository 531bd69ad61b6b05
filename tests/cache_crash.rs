//! Crash safety of metatile writes: writer processes are SIGKILLed at random moments;
//! afterwards every `.meta` file must be byte-identical to one complete write (a reader
//! never finds half a file), and opening the cache removes the temp files they left.
//!
//! The writers are this test binary itself, re-run with `--exact crash_child_writer`
//! and the cache directory in [`CHILD_DIR_ENV`]; without it that test does nothing.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

use metatiled::cache::{format, DiskCache, TileCache, WalkItem};
use metatiled::config::CacheSettings;
use metatiled::tile::{MetatileCoord, StyleName};
use rand::Rng;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CHILD_DIR_ENV: &str = "CACHE_CRASH_CHILD_DIR";
const ROUNDS: usize = 25;
const WRITERS: usize = 2;

fn style() -> StyleName {
    StyleName::parse("crash").unwrap()
}

/// The metatiles written; both writers write all of them, so they also race.
fn metas() -> Vec<MetatileCoord> {
    [
        (0, 0, 0),
        (2, 0, 0),
        (12, 2344, 1232),
        (12, 2352, 1232),
        (18, 131064, 87376),
    ]
    .into_iter()
    .map(|(z, x, y)| MetatileCoord::try_new(z, x, y).unwrap())
    .collect()
}

/// The tiles of one version of a metatile: tile 0 starts with the version, so a file
/// names the complete write it must be identical to.
fn tiles(meta: MetatileCoord, version: u64) -> Vec<Vec<u8>> {
    (0..64)
        .map(|i| {
            if !format::entry_in_world(meta.z, i) {
                return Vec::new();
            }
            let len = 1000 + ((version as usize).wrapping_mul(7919) + i * 131) % 20_000;
            let mut t = vec![(version as u8) ^ (i as u8); len];
            t[..8].copy_from_slice(&version.to_le_bytes());
            t
        })
        .collect()
}

#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let disk = DiskCache::new(dir, true);
    let mut rng = rand::rng();
    let metas = metas();
    loop {
        let meta = metas[rng.random_range(0..metas.len())];
        let version: u64 = rng.random();
        disk.write_metatile(&style(), meta, &tiles(meta, version))
            .unwrap();
    }
}

fn spawn_writer(dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_writer",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_DIR_ENV, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Checks every file; returns (metatiles, temp files) found.
fn check_cache(dir: &Path) -> (usize, usize) {
    let disk = DiskCache::new(dir, false);
    let (mut metatiles, mut temps) = (0, 0);
    for item in disk.walk(None) {
        match item.unwrap() {
            WalkItem::Metatile { meta, path, .. } => {
                let bytes = std::fs::read(&path).unwrap();
                let decoded = format::decode_metatile(&bytes, Some(meta))
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let first = decoded.tiles.iter().find(|t| !t.is_empty()).unwrap();
                let version = u64::from_le_bytes(first[..8].try_into().unwrap());
                let complete = format::encode_metatile(meta, &tiles(meta, version)).unwrap();
                assert!(
                    bytes == complete,
                    "{} differs from a complete write",
                    path.display()
                );
                metatiles += 1;
            }
            WalkItem::TempFile(_) => temps += 1,
            WalkItem::Foreign(p) => panic!("unexpected file {}", p.display()),
        }
    }
    (metatiles, temps)
}

#[test]
fn writers_killed_at_random_moments_leave_only_complete_metatiles() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rng();
    let mut interrupted_rounds = 0;
    for round in 0..ROUNDS {
        let mut writers: Vec<Child> = (0..WRITERS).map(|_| spawn_writer(dir.path())).collect();
        std::thread::sleep(Duration::from_millis(rng.random_range(30..150)));
        for w in &mut writers {
            w.kill().unwrap(); // SIGKILL: no destructor, no cleanup runs
            w.wait().unwrap();
        }
        let (_, temps) = check_cache(dir.path());
        if temps > 0 {
            interrupted_rounds += 1;
        }
        if round + 1 < ROUNDS {
            DiskCache::new(dir.path(), false)
                .clean_temp_files(false)
                .unwrap();
        }
    }
    let (metatiles, _) = check_cache(dir.path());
    assert_eq!(
        metatiles,
        metas().len(),
        "every metatile was written at least once"
    );
    eprintln!("{interrupted_rounds} of {ROUNDS} kills landed inside a write");
    assert!(
        interrupted_rounds > 0,
        "no kill landed inside a write: the test proved nothing"
    );

    TileCache::open(&CacheSettings {
        dir: dir.path().to_path_buf(),
        fsync: true,
        ..CacheSettings::default()
    })
    .unwrap();
    assert_eq!(
        check_cache(dir.path()),
        (metas().len(), 0),
        "temp files remain"
    );
}
