//! The memory layer: single tiles (bytes, ETag, the stamp of the file they came from)
//! in a moka cache weighted by bytes.
//!
//! An entry remembers when it was last checked against its file. Once that is more than
//! `cache.revalidate_secs` ago, the next hit `stat`s the file; a different stamp (dirty
//! mark, rewrite, delete — by us, render_expired or another process) drops the entry.
//! Staleness is not stored as truth: it is recomputed from the stamp's mtime and the
//! planet time on every hit (two comparisons).

use super::disk::FileStamp;
use super::CachedTile;
use crate::tile::{StyleName, TileCoord};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes an entry costs beyond its tile bytes (key, ETag, stamp, moka's bookkeeping).
const ENTRY_OVERHEAD: usize = 160;

pub(crate) type MemoryKey = (StyleName, TileCoord);

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
    tiles: moka::sync::Cache<MemoryKey, Arc<MemoryEntry>>,
    revalidate_ms: u64,
    started: Instant,
    capacity: u64,
}

impl MemoryLayer {
    pub fn new(capacity_bytes: u64, revalidate: Duration) -> Self {
        let tiles = moka::sync::Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|_k: &MemoryKey, v: &Arc<MemoryEntry>| {
                u32::try_from(v.tile.bytes.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .build();
        Self {
            tiles,
            revalidate_ms: u64::try_from(revalidate.as_millis()).unwrap_or(u64::MAX),
            started: Instant::now(),
            capacity: capacity_bytes,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn get(&self, key: &MemoryKey) -> Option<Arc<MemoryEntry>> {
        self.tiles.get(key)
    }

    /// Whether the entry is due for a comparison with its file.
    pub fn needs_check(&self, entry: &MemoryEntry) -> bool {
        self.now_ms()
            .saturating_sub(entry.checked_ms.load(Ordering::Relaxed))
            >= self.revalidate_ms
    }

    pub fn mark_checked(&self, entry: &MemoryEntry) {
        entry.checked_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    pub fn insert(&self, key: MemoryKey, tile: Arc<CachedTile>, stamp: FileStamp) {
        let entry = MemoryEntry {
            tile,
            stamp,
            checked_ms: AtomicU64::new(self.now_ms()),
        };
        self.tiles.insert(key, Arc::new(entry));
    }

    /// Replaces an entry's tile (a new staleness), keeping its stamp and check time.
    pub fn replace_tile(&self, key: MemoryKey, old: &MemoryEntry, tile: Arc<CachedTile>) {
        let entry = MemoryEntry {
            tile,
            stamp: old.stamp,
            checked_ms: AtomicU64::new(old.checked_ms.load(Ordering::Relaxed)),
        };
        self.tiles.insert(key, Arc::new(entry));
    }

    pub fn invalidate(&self, key: &MemoryKey) {
        self.tiles.invalidate(key);
    }

    pub fn stats(&self) -> MemoryStats {
        self.tiles.run_pending_tasks();
        MemoryStats {
            entries: self.tiles.entry_count(),
            bytes: self.tiles.weighted_size(),
            capacity_bytes: self.capacity,
        }
    }
}
