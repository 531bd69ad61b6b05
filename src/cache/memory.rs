//! The memory layer: single tiles (bytes, ETag, the stamp of the file they came from)
//! in a moka cache weighted by bytes.
//!
//! An entry remembers when it was last checked against its file. Once that is more than
//! `cache.revalidate_secs` ago, the next hit compares it with the file's stamp; a
//! different stamp (dirty mark, rewrite, delete — by us, render_expired or another
//! process) drops the entry. The 64 tiles of a metatile share one file, so a `stat` is
//! remembered per metatile for the same interval: one `stat` revalidates every tile of
//! it (each entry then counts as checked when the `stat` was made, so no entry is ever
//! trusted longer than the interval).
//! Staleness is not stored as truth: it is recomputed from the stamp's mtime and the
//! planet time on every hit (two comparisons).

use super::disk::FileStamp;
use super::slots::StyleId;
use super::CachedTile;
use crate::tile::{MetatileCoord, TileCoord};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes an entry costs beyond its tile bytes (key, ETag, stamp, moka's bookkeeping).
const ENTRY_OVERHEAD: usize = 160;

/// A tile of one style packed in a word: hashing and comparing it costs next to nothing
/// on the hit path. Style id in bits 56-63, z in 48-55, x in 24-47, y in 0-23 (x and y
/// are below 2^20 at zoom 20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct MemoryKey(u64);

impl MemoryKey {
    pub(super) fn new(style: StyleId, tile: TileCoord) -> Self {
        let style = style.index() as u64; // below MAX_STYLES = 256
        Self(style << 56 | u64::from(tile.z) << 48 | u64::from(tile.x) << 24 | u64::from(tile.y))
    }

    /// The key of a metatile file (in the file-check table).
    pub(super) fn file(style: StyleId, meta: MetatileCoord) -> Self {
        Self::new(
            style,
            TileCoord {
                z: meta.z,
                x: meta.x,
                y: meta.y,
            },
        )
    }
}

/// Most metatile `stat`s remembered; beyond it the least used are forgotten (each only
/// costs one more `stat`).
const FILE_CHECKS: u64 = 65_536;

/// The stamp a metatile file had when it was last `stat`ed, and when.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileCheck {
    pub stamp: FileStamp,
    pub checked_ms: u64,
}

type Hasher = foldhash::fast::RandomState;

/// One memory-cached tile.
#[derive(Debug)]
pub(crate) struct MemoryEntry {
    pub tile: Arc<CachedTile>,
    pub stamp: FileStamp,
    /// Milliseconds since the layer's start when the file was last compared.
    checked_ms: AtomicU64,
}

/// Entry counts and size of the memory layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryStats {
    pub entries: u64,
    /// Weighted size: tile bytes plus a fixed per-entry overhead.
    pub bytes: u64,
    pub capacity_bytes: u64,
}

#[derive(Debug)]
pub(crate) struct MemoryLayer {
    tiles: moka::sync::Cache<MemoryKey, Arc<MemoryEntry>, Hasher>,
    /// Recent `stat`s of metatile files, by [`MemoryKey::file`].
    files: moka::sync::Cache<MemoryKey, FileCheck, Hasher>,
    revalidate_ms: u64,
    /// Entries and file checks made before this instant (ms since `started`) are due
    /// for a check whatever their age ([`MemoryLayer::revalidate_all`]); 0 = none.
    revalidate_before_ms: AtomicU64,
    started: Instant,
    capacity: u64,
}

impl MemoryLayer {
    pub(super) fn new(capacity_bytes: u64, revalidate: Duration) -> Self {
        let tiles = moka::sync::Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|_k: &MemoryKey, v: &Arc<MemoryEntry>| {
                u32::try_from(v.tile.bytes.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .build_with_hasher(Hasher::default());
        let files = moka::sync::Cache::builder()
            .max_capacity(FILE_CHECKS)
            .time_to_live(revalidate)
            .build_with_hasher(Hasher::default());
        Self {
            tiles,
            files,
            revalidate_ms: u64::try_from(revalidate.as_millis()).unwrap_or(u64::MAX),
            revalidate_before_ms: AtomicU64::new(0),
            started: Instant::now(),
            capacity: capacity_bytes,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn get(&self, key: MemoryKey) -> Option<Arc<MemoryEntry>> {
        self.tiles.get(&key)
    }

    /// Whether the entry is due for a comparison with its file.
    pub(super) fn needs_check(&self, entry: &MemoryEntry) -> bool {
        !self.still_valid(entry.checked_ms.load(Ordering::Relaxed))
    }

    /// Whether a check made at `checked_ms` still holds.
    fn still_valid(&self, checked_ms: u64) -> bool {
        self.now_ms().saturating_sub(checked_ms) < self.revalidate_ms
            && checked_ms >= self.revalidate_before_ms.load(Ordering::SeqCst)
    }

    /// Every entry and file check made until now is due for a comparison with its file
    /// at its next use (see [`super::TileCache::revalidate_all`]).
    pub(super) fn revalidate_all(&self) {
        self.revalidate_before_ms
            .fetch_max(self.now_ms() + 1, Ordering::SeqCst);
    }

    /// A `stat` of the file made less than the interval ago, if any.
    pub(super) fn recent_file_check(&self, file: MemoryKey) -> Option<FileCheck> {
        let check = self.files.get(&file)?;
        self.still_valid(check.checked_ms).then_some(check)
    }

    /// Remembers a `stat` made just now; returns it.
    pub(super) fn record_file_check(&self, file: MemoryKey, stamp: FileStamp) -> FileCheck {
        let check = FileCheck {
            stamp,
            checked_ms: self.now_ms(),
        };
        self.files.insert(file, check);
        check
    }

    /// Forgets the last `stat` of a file (after changing it).
    pub(super) fn forget_file_check(&self, file: MemoryKey) {
        self.files.invalidate(&file);
    }

    /// Records that the entry matched its file as of `check`.
    pub(super) fn mark_checked(&self, entry: &MemoryEntry, check: FileCheck) {
        entry.checked_ms.store(check.checked_ms, Ordering::Relaxed);
    }

    pub(super) fn insert(&self, key: MemoryKey, tile: Arc<CachedTile>, stamp: FileStamp) {
        let entry = MemoryEntry {
            tile,
            stamp,
            checked_ms: AtomicU64::new(self.now_ms()),
        };
        self.tiles.insert(key, Arc::new(entry));
    }

    /// Replaces an entry's tile (a new staleness), keeping its stamp and check time.
    pub(super) fn replace_tile(&self, key: MemoryKey, old: &MemoryEntry, tile: Arc<CachedTile>) {
        let entry = MemoryEntry {
            tile,
            stamp: old.stamp,
            checked_ms: AtomicU64::new(old.checked_ms.load(Ordering::Relaxed)),
        };
        self.tiles.insert(key, Arc::new(entry));
    }

    pub(super) fn invalidate(&self, key: MemoryKey) {
        self.tiles.invalidate(&key);
    }

    pub(super) fn stats(&self) -> MemoryStats {
        self.tiles.run_pending_tasks();
        self.files.run_pending_tasks();
        MemoryStats {
            entries: self.tiles.entry_count(),
            bytes: self.tiles.weighted_size(),
            capacity_bytes: self.capacity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::slots::StyleSlots;
    use crate::tile::StyleName;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn keys_of_different_tiles_differ(
            (z, x, y) in (0u8..=20).prop_flat_map(|z| (Just(z), 0..1u32 << z, 0..1u32 << z)),
            (z2, x2, y2) in (0u8..=20).prop_flat_map(|z| (Just(z), 0..1u32 << z, 0..1u32 << z)),
            other_style in any::<bool>(),
        ) {
            let slots = StyleSlots::new();
            let osm = slots.id(&StyleName::parse("osm").unwrap()).unwrap();
            let hidpi = slots.id(&StyleName::parse("osm@2x").unwrap()).unwrap();
            let a = MemoryKey::new(osm, TileCoord { z, x, y });
            let b = MemoryKey::new(if other_style { hidpi } else { osm }, TileCoord { z: z2, x: x2, y: y2 });
            prop_assert_eq!(a == b, !other_style && (z, x, y) == (z2, x2, y2));
        }
    }
}
