//! Tests of [`TileCache`]: the layers together.

use super::*;
use crate::tile::TileCoord;
use std::time::Duration;

fn style() -> StyleName {
    StyleName::parse("osm").unwrap()
}

fn settings(dir: &Path, revalidate_secs: u64) -> CacheSettings {
    CacheSettings {
        dir: dir.to_path_buf(),
        memory_bytes: 16 * 1024 * 1024,
        revalidate_secs,
        planet_check_secs: 0,
        fsync: false,
        shared: false,
    }
}

fn tiles_for(meta: MetatileCoord, tag: u8) -> Vec<Vec<u8>> {
    (0..64)
        .map(|i| {
            if format::entry_in_world(meta.z, i) {
                vec![tag; 10 + i]
            } else {
                Vec::new()
            }
        })
        .collect()
}

fn tile(z: u32, x: u64, y: u64) -> TileCoord {
    TileCoord::try_new(z, x, y).unwrap()
}

#[test]
fn a_tile_comes_from_disk_first_then_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TileCache::open(&settings(dir.path(), 60)).unwrap();
    let t = tile(14, 9000, 4000);
    assert!(matches!(cache.lookup(&style(), t).unwrap(), Lookup::Miss));
    cache
        .store_metatile(&style(), t.metatile(), &tiles_for(t.metatile(), 7))
        .unwrap();
    let first = cache.lookup(&style(), t).unwrap();
    let Lookup::Disk(from_disk) = &first else {
        panic!("expected a disk hit, got {first:?}")
    };
    assert_eq!(from_disk.bytes.len(), 10 + t.index_in_metatile());
    assert!(!from_disk.stale);
    let second = cache.lookup(&style(), t).unwrap();
    let Lookup::Memory(from_memory) = &second else {
        panic!("expected a memory hit, got {second:?}")
    };
    assert_eq!(from_memory, from_disk);
    assert_eq!(cache.memory_stats().entries, 1);
}

#[test]
fn the_etag_is_the_quoted_first_16_hex_digits_of_sha256() {
    let t = CachedTile::new(Bytes::from_static(b"abc"), SystemTime::now(), false);
    // sha256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
    assert_eq!(t.etag, "\"ba7816bf8f01cfea\"");
}

#[test]
fn storing_a_metatile_replaces_what_memory_holds() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TileCache::open(&settings(dir.path(), 3600)).unwrap();
    let t = tile(3, 1, 2);
    let m = t.metatile();
    cache.store_metatile(&style(), m, &tiles_for(m, 1)).unwrap();
    cache.lookup(&style(), t).unwrap();
    cache.store_metatile(&style(), m, &tiles_for(m, 2)).unwrap();
    let after = cache.lookup(&style(), t).unwrap();
    assert!(matches!(after, Lookup::Disk(_)), "{after:?}");
    assert_eq!(after.tile().unwrap().bytes[0], 2);
}

#[test]
fn a_change_by_another_process_is_seen_after_the_revalidation_interval() {
    let dir = tempfile::tempdir().unwrap();
    let t = tile(10, 100, 100);
    let m = t.metatile();
    // An interval of an hour: memory keeps serving what it has.
    let slow = TileCache::open(&settings(dir.path(), 3600)).unwrap();
    // An interval of zero: every hit compares with the file.
    let eager = TileCache::open(&settings(dir.path(), 0)).unwrap();
    let other = DiskCache::new(dir.path(), false);
    other.write_metatile(&style(), m, &tiles_for(m, 1)).unwrap();
    for cache in [&slow, &eager] {
        assert_eq!(
            cache.lookup(&style(), t).unwrap().tile().unwrap().bytes[0],
            1
        );
    }
    other.write_metatile(&style(), m, &tiles_for(m, 2)).unwrap();
    assert_eq!(
        slow.lookup(&style(), t).unwrap().tile().unwrap().bytes[0],
        1
    );
    let seen = eager.lookup(&style(), t).unwrap();
    assert!(matches!(seen, Lookup::Disk(_)), "{seen:?}");
    assert_eq!(seen.tile().unwrap().bytes[0], 2);

    other.mark_dirty(&style(), m, SystemTime::now()).unwrap();
    assert!(matches!(
        eager.lookup(&style(), t).unwrap(),
        Lookup::Stale(_)
    ));
    other.delete(&style(), m).unwrap();
    assert!(matches!(eager.lookup(&style(), t).unwrap(), Lookup::Miss));
}

#[test]
fn revalidating_everything_makes_memory_see_another_nodes_change_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (tile(10, 100, 100), tile(10, 101, 103));
    let m = a.metatile();
    // An hour between checks: only revalidate_all makes memory look at the file.
    let cache = TileCache::open(&settings(dir.path(), 3600)).unwrap();
    let other = DiskCache::new(dir.path(), false);
    other.write_metatile(&style(), m, &tiles_for(m, 1)).unwrap();
    for t in [a, b] {
        cache.lookup(&style(), t).unwrap();
        assert!(matches!(
            cache.lookup(&style(), t).unwrap(),
            Lookup::Memory(_)
        ));
    }
    other.mark_dirty(&style(), m, SystemTime::now()).unwrap();
    assert!(matches!(
        cache.lookup(&style(), a).unwrap(),
        Lookup::Memory(_)
    ));
    cache.revalidate_all();
    for t in [a, b] {
        let seen = cache.lookup(&style(), t).unwrap();
        assert!(matches!(seen, Lookup::Stale(_)), "{seen:?}");
    }
    other.delete(&style(), m).unwrap();
    cache.revalidate_all();
    assert!(matches!(cache.lookup(&style(), a).unwrap(), Lookup::Miss));
    assert!(matches!(cache.lookup(&style(), b).unwrap(), Lookup::Miss));
}

#[test]
fn one_stat_revalidates_a_whole_metatile_but_never_beyond_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (tile(10, 100, 100), tile(10, 101, 103));
    let m = a.metatile();
    assert_eq!(b.metatile(), m);
    let cache = TileCache::open(&settings(dir.path(), 1)).unwrap();
    let other = DiskCache::new(dir.path(), false);
    other.write_metatile(&style(), m, &tiles_for(m, 1)).unwrap();
    let first_byte = |t| cache.lookup(&style(), t).unwrap().tile().unwrap().bytes[0];
    assert_eq!((first_byte(a), first_byte(b)), (1, 1));

    // Both entries are due; a's hit stats the file (unchanged), then it changes.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(first_byte(a), 1);
    other.write_metatile(&style(), m, &tiles_for(m, 2)).unwrap();
    // b is revalidated by a's stat, made within the interval: still the old tile.
    assert_eq!(first_byte(b), 1);
    // One interval after that stat, neither entry is trusted any more.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!((first_byte(b), first_byte(a)), (2, 2));
}

#[test]
fn a_planet_file_newer_than_a_tile_makes_it_stale_even_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TileCache::open(&settings(dir.path(), 3600)).unwrap();
    let t = tile(12, 2345, 1234);
    let m = t.metatile();
    cache.store_metatile(&style(), m, &tiles_for(m, 1)).unwrap();
    // Without a planet file a week-old tile is fresh.
    let week_ago = SystemTime::now() - Duration::from_secs(7 * 24 * 3600);
    filetime::set_file_mtime(
        cache.disk().path_of(&style(), m),
        filetime::FileTime::from_system_time(week_ago),
    )
    .unwrap();
    assert!(matches!(
        cache.lookup(&style(), t).unwrap(),
        Lookup::Disk(_)
    ));
    assert_eq!(
        cache.metatile_state(&style(), m).unwrap(),
        MetatileState::Fresh
    );
    assert!(matches!(
        cache.lookup(&style(), t).unwrap(),
        Lookup::Memory(_)
    ));
    // The global planet file, a day ago: the tile is stale, in memory too.
    touch_planet_import_complete(
        dir.path(),
        None,
        SystemTime::now() - Duration::from_secs(24 * 3600),
    )
    .unwrap();
    let l = cache.lookup(&style(), t).unwrap();
    assert!(matches!(&l, Lookup::Stale(tile) if tile.stale), "{l:?}");
    assert_eq!(
        cache.metatile_state(&style(), m).unwrap(),
        MetatileState::Stale
    );
    // A style's own planet file wins: two weeks ago, the tile is fresh again.
    cache
        .set_planet_time(
            Some(&style()),
            SystemTime::now() - Duration::from_secs(14 * 24 * 3600),
        )
        .unwrap();
    assert!(matches!(
        cache.lookup(&style(), t).unwrap(),
        Lookup::Memory(_)
    ));
}

#[test]
fn a_dirty_mark_makes_tiles_stale_once_and_for_all() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TileCache::open(&settings(dir.path(), 3600)).unwrap();
    let t = tile(15, 17000, 11000);
    let m = t.metatile();
    assert_eq!(
        cache.mark_dirty(&style(), m).unwrap(),
        ExpireOutcome::Absent
    );
    assert_eq!(
        cache.metatile_state(&style(), m).unwrap(),
        MetatileState::Absent
    );
    cache.store_metatile(&style(), m, &tiles_for(m, 1)).unwrap();
    assert!(matches!(
        cache.lookup(&style(), t).unwrap(),
        Lookup::Disk(_)
    ));
    assert_eq!(
        cache.mark_dirty(&style(), m).unwrap(),
        ExpireOutcome::Changed
    );
    let mtime = cache.disk().stamp(&style(), m).unwrap().unwrap().mtime;
    assert_eq!(
        cache.mark_dirty(&style(), m).unwrap(),
        ExpireOutcome::AlreadyDirty
    );
    assert_eq!(
        cache.disk().stamp(&style(), m).unwrap().unwrap().mtime,
        mtime
    );
    let l = cache.lookup(&style(), t).unwrap();
    assert!(
        matches!(&l, Lookup::Stale(tile) if tile.rendered_at == mtime),
        "{l:?}"
    );
    assert!(matches!(
        cache.lookup(&style(), t).unwrap(),
        Lookup::Stale(_)
    ));
    assert_eq!(
        cache.metatile_state(&style(), m).unwrap(),
        MetatileState::Stale
    );
    assert_eq!(cache.delete(&style(), m).unwrap(), ExpireOutcome::Changed);
    assert!(matches!(cache.lookup(&style(), t).unwrap(), Lookup::Miss));
}

#[test]
fn a_corrupt_metatile_is_a_miss_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TileCache::open(&settings(dir.path(), 0)).unwrap();
    let t = tile(8, 10, 10);
    let path = cache.disk().path_of(&style(), t.metatile());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"META this is not a metatile").unwrap();
    assert!(matches!(cache.lookup(&style(), t).unwrap(), Lookup::Miss));
    std::fs::write(&path, vec![0u8; 5000]).unwrap();
    assert!(matches!(cache.lookup(&style(), t).unwrap(), Lookup::Miss));
}

#[test]
fn opening_the_cache_removes_abandoned_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let leaf = dir.path().join("osm/5/0/0/0/0");
    std::fs::create_dir_all(&leaf).unwrap();
    let abandoned = leaf.join("0.meta.tmp.4000000000.0123abcd");
    std::fs::write(&abandoned, b"half a file").unwrap();
    TileCache::open(&settings(dir.path(), 5)).unwrap();
    assert!(!abandoned.exists());
}

#[test]
fn concurrent_writers_of_one_metatile_leave_one_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(TileCache::open(&settings(dir.path(), 0)).unwrap());
    let m = MetatileCoord::try_new(16, 800, 808).unwrap();
    let versions: Vec<Vec<Vec<u8>>> = (0..4u8)
        .map(|v| (0..64).map(|i| vec![v; 2000 + i * 37]).collect())
        .collect();
    std::thread::scope(|s| {
        for tiles in &versions {
            let cache = cache.clone();
            let tiles = tiles.clone();
            s.spawn(move || {
                for _ in 0..30 {
                    cache.store_metatile(&style(), m, &tiles).unwrap();
                }
            });
        }
        s.spawn(|| {
            for _ in 0..300 {
                // Readers never see anything but a complete version.
                if let Some(t) = cache.lookup(&style(), tile(16, 803, 810)).unwrap().tile() {
                    let v = t.bytes[0];
                    assert_eq!(t.bytes.len(), 2000 + 3 * 8 * 37 + 2 * 37);
                    assert!(t.bytes.iter().all(|b| *b == v));
                }
            }
        });
    });
    let bytes = std::fs::read(cache.disk().path_of(&style(), m)).unwrap();
    let decoded = format::decode_metatile(&bytes, Some(m)).unwrap();
    assert!(versions.contains(&decoded.tiles));
    let names: Vec<_> = std::fs::read_dir(cache.disk().path_of(&style(), m).parent().unwrap())
        .unwrap()
        .collect();
    assert_eq!(names.len(), 1, "only the metatile remains");
}

#[test]
fn the_memory_layer_keeps_within_its_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), 60);
    s.memory_bytes = 64 * 1024;
    let cache = TileCache::open(&s).unwrap();
    let m = MetatileCoord::try_new(9, 16, 16).unwrap();
    let tiles: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 4000]).collect();
    cache.store_metatile(&style(), m, &tiles).unwrap();
    for t in m.tiles() {
        assert!(cache.lookup(&style(), t).unwrap().tile().is_some());
    }
    let stats = cache.memory_stats();
    assert!(stats.bytes <= 64 * 1024, "{stats:?}");
    assert!(stats.entries >= 1 && stats.entries < 64, "{stats:?}");
}
