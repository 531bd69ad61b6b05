//! The tile cache: mod_tile's metatile tree on disk with a memory layer in front.
//!
//! The cache stores bytes and timestamps and knows nothing of rendering. It owns:
//! - [`format`]: the `.meta` file format, byte-compatible with mod_tile/renderd.
//! - [`path`]: the hashed path scheme, both ways.
//! - [`disk`]: one-blob reads (pread), atomic writes, dirty marks, deletes, walking.
//! - [`freshness`]: planet time, dirty marks and staleness, from mtimes only.
//! - `memory`: the moka layer of single tiles with their ETag.
//! - [`report`]: what `metatiled cache inspect` and `metatiled cache stats` print.
//!
//! [`TileCache::lookup`] goes memory -> disk. A memory entry is compared with its file
//! at most every `cache.revalidate_secs`, so changes made on disk by other tools
//! (render_expired, another metatiled, a new `planet-import-complete`) show within that
//! bound; a tile read from disk always reflects the file as it is. Changes made through
//! this [`TileCache`] (store, mark dirty, delete) drop the metatile's tiles from memory
//! at once.
//!
//! A file that fails validation is never served: a bad header or index, a blob that is
//! not a whole PNG of the style's tile size (when the caller said what to expect with
//! [`TileCache::expect_png_tiles`]; checked before a tile is served or kept in memory),
//! or anything but a regular file where a metatile belongs. It is logged, counted in
//! `metatiled_corrupt_metatiles_total{reason}`, moved aside to `<h0>.meta.corrupt`, and
//! reported as a miss, so it is rendered again.

pub mod disk;
pub mod format;
pub mod freshness;
mod memory;
pub mod path;
pub mod quota;
pub mod report;
mod slots;

pub use disk::{DiskCache, FileStamp, WalkItem};
pub use format::FormatError;
pub use memory::MemoryStats;
pub use path::PathError;

use crate::tile::{MetatileCoord, StyleName, TileCoord};
use bytes::Bytes;
use memory::{MemoryKey, MemoryLayer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use slots::{StyleId, StyleSlots};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use thiserror::Error;

/// What went wrong in the cache. Corrupt files surface only from [`DiskCache`] and the
/// tools; [`TileCache::lookup`] turns them into a logged miss.
#[derive(Debug, Error)]
pub enum CacheError {
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid metatile")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: FormatError,
    },
    #[error("cannot encode metatile {meta}")]
    Encode {
        meta: MetatileCoord,
        #[source]
        source: FormatError,
    },
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("cannot create the cache's metrics")]
    Metrics(#[source] prometheus::Error),
}

/// A tile ready to serve: its bytes, ETag and render time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedTile {
    pub bytes: Bytes,
    /// `"` + the first 16 hex digits of the SHA-256 of `bytes` + `"`; computed once.
    pub etag: SharedText,
    /// The metatile file's mtime (long ago for a dirty-marked file).
    pub rendered_at: SystemTime,
    /// `rendered_at` as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`), formatted once.
    pub rendered_at_http: SharedText,
    /// Whether the tile needs a re-render, as of the lookup that returned it.
    pub stale: bool,
}

impl CachedTile {
    pub fn new(bytes: Bytes, rendered_at: SystemTime, stale: bool) -> Self {
        let etag = SharedText::from(etag_of(&bytes));
        Self {
            bytes,
            etag,
            rendered_at,
            rendered_at_http: SharedText::from(httpdate::fmt_http_date(rendered_at)),
            stale,
        }
    }

    fn with_stale(&self, stale: bool) -> Self {
        Self {
            stale,
            ..self.clone()
        }
    }
}

/// Text computed once and sent many times (as an HTTP header): cloning it shares the
/// bytes instead of copying them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedText(Bytes);

impl SharedText {
    pub fn as_str(&self) -> &str {
        // Only ever built from a String, so always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

impl From<String> for SharedText {
    fn from(text: String) -> Self {
        Self(Bytes::from(text))
    }
}

impl PartialEq<&str> for SharedText {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The ETag of tile bytes (DESIGN.md): `"` + first 16 hex digits of SHA-256 + `"`.
pub fn etag_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!("\"{}\"", hex::encode(&digest[..8]))
}

/// The result of a lookup. A stale tile is served (and re-rendered in the background).
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Fresh, from the memory layer.
    Memory(Arc<CachedTile>),
    /// Fresh, read from its metatile file (and now in memory).
    Disk(Arc<CachedTile>),
    /// In the cache (memory or disk) but stale: dirty-marked or older than the planet.
    Stale(Arc<CachedTile>),
    /// No such tile, or its metatile file is invalid.
    Miss,
}

impl Lookup {
    pub fn tile(&self) -> Option<&Arc<CachedTile>> {
        match self {
            Lookup::Memory(t) | Lookup::Disk(t) | Lookup::Stale(t) => Some(t),
            Lookup::Miss => None,
        }
    }
}

/// Whether a metatile file exists and needs a render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetatileState {
    Absent,
    Fresh,
    Stale,
}

/// What an expiry action did to one metatile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpireOutcome {
    /// Marked dirty, or deleted.
    Changed,
    /// Marking found it already dirty: nothing changed.
    AlreadyDirty,
    /// There is no such metatile file.
    Absent,
}

/// Disk and memory layers of one cache directory. Share it behind an `Arc`.
#[derive(Debug)]
pub struct TileCache {
    disk: DiskCache,
    memory: MemoryLayer,
    planet: freshness::PlanetClock,
    /// Ids of the styles seen: memory keys and planet times are indexed by them.
    styles: StyleSlots,
    /// Bumped after every change made through this cache; a disk read that overlapped
    /// one does not leave its (possibly old) tile in memory.
    changes: AtomicU64,
    /// When metatiles were last served and the bytes on disk, for the disk quota (off
    /// without one).
    served: quota::ServedClock,
    /// Per style id: the edge in pixels of its PNG tiles, 0 = not checked.
    png_sizes: Box<[AtomicU32]>,
    /// `metatiled_corrupt_metatiles_total{reason}`; registered by whoever exposes
    /// metrics ([`TileCache::corrupt_counter`]).
    corrupt: prometheus::IntCounterVec,
}

impl TileCache {
    /// Creates the cache directory if needed and removes abandoned temp files (a walk of
    /// the whole tree: see [`DiskCache::clean_temp_files`] for its cost).
    pub fn open(settings: &CacheSettings) -> Result<TileCache, CacheError> {
        let disk = DiskCache::new(&settings.dir, settings.fsync);
        disk.create_root()?;
        let removed = disk.clean_temp_files(settings.shared)?;
        if removed > 0 {
            tracing::info!(removed, dir = %settings.dir.display(), "removed abandoned temp files");
        }
        Ok(TileCache {
            planet: freshness::PlanetClock::new(
                settings.dir.clone(),
                Duration::from_secs(settings.planet_check_secs),
            ),
            memory: MemoryLayer::new(
                settings.memory_bytes,
                Duration::from_secs(settings.revalidate_secs),
            ),
            disk,
            styles: StyleSlots::new(),
            changes: AtomicU64::new(0),
            served: quota::ServedClock::new(settings.has_quota()),
            png_sizes: (0..slots::MAX_STYLES).map(|_| AtomicU32::new(0)).collect(),
            corrupt: corrupt_counter()?,
        })
    }

    /// From now on, every tile of `style` read from disk must be a whole PNG of `size` x
    /// `size` pixels, or its metatile is corrupt. (Styles beyond the 256th name seen are
    /// not checked.)
    pub fn expect_png_tiles(&self, style: &StyleName, size: u32) {
        if let Some(id) = self.styles.id(style) {
            self.png_sizes[id.index()].store(size, Ordering::Relaxed);
        }
    }

    /// The counter of corrupt metatiles found, by reason, to register for `/metrics`.
    pub fn corrupt_counter(&self) -> &prometheus::IntCounterVec {
        &self.corrupt
    }

    /// A corrupt metatile: moved aside, logged and counted once (by the reader that
    /// moved it), forgotten; a miss from now on. A file replaced since it was read is
    /// left alone.
    fn found_corrupt(
        &self,
        style: &StyleName,
        meta: MetatileCoord,
        path: &Path,
        why: &FormatError,
        found: Option<FileStamp>,
    ) {
        let reason = match why {
            FormatError::NotPng { .. }
            | FormatError::WrongTileSize { .. }
            | FormatError::PngCutShort { .. } => "bad_tile",
            FormatError::NotRegularFile => "not_a_file",
            _ => "bad_file",
        };
        match self.disk.move_aside(style, meta, found) {
            Ok(Some(aside)) => tracing::warn!(
                path = %path.display(),
                moved_to = %aside.display(),
                error = %why,
                "corrupt metatile moved aside; rendering it again"
            ),
            Ok(None) => return,
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %why,
                move_error = %crate::errors::error_chain(&e),
                "corrupt metatile (cannot be moved aside); rendering it again"
            ),
        }
        self.corrupt.with_label_values(&[reason]).inc();
        self.forget(style, meta);
    }

    pub fn disk(&self) -> &DiskCache {
        &self.disk
    }

    /// Memory, then disk. Never fails on a corrupt file (logged, reported as a miss);
    /// fails only when the file system does (permissions, I/O errors).
    pub fn lookup(&self, style: &StyleName, tile: TileCoord) -> Result<Lookup, CacheError> {
        let now = SystemTime::now();
        let id = self.styles.id(style);
        let planet = self.planet.planet_time(style, id);
        let Some(id) = id else {
            return self.read_disk(style, tile, None, now, planet);
        };
        let key = MemoryKey::new(id, tile);
        if let Some(entry) = self.memory.get(key) {
            let current = !self.memory.needs_check(&entry)
                || match self.file_check(style, id, tile.metatile()) {
                    Some(check) if check.stamp == entry.stamp => {
                        self.memory.mark_checked(&entry, check);
                        true
                    }
                    _ => false,
                };
            if current {
                let stale = freshness::is_stale(entry.stamp.mtime, planet, now);
                let cached = if stale == entry.tile.stale {
                    entry.tile.clone()
                } else {
                    let updated = Arc::new(entry.tile.with_stale(stale));
                    self.memory.replace_tile(key, &entry, updated.clone());
                    updated
                };
                return Ok(if stale {
                    Lookup::Stale(cached)
                } else {
                    Lookup::Memory(cached)
                });
            }
            self.memory.invalidate(key);
        }
        self.read_disk(style, tile, Some(key), now, planet)
    }

    /// Reads a tile from its metatile file, bypassing (and not filling) memory.
    pub fn read_from_disk(&self, style: &StyleName, tile: TileCoord) -> Result<Lookup, CacheError> {
        self.read_disk(
            style,
            tile,
            None,
            SystemTime::now(),
            self.planet_time(style),
        )
    }

    /// The stamp of a metatile file: a `stat` made by an earlier lookup of any of its
    /// tiles within `cache.revalidate_secs`, else a new one. `None` when the file is gone
    /// or cannot be read.
    fn file_check(
        &self,
        style: &StyleName,
        id: StyleId,
        meta: MetatileCoord,
    ) -> Option<memory::FileCheck> {
        let file = MemoryKey::file(id, meta);
        if let Some(check) = self.memory.recent_file_check(file) {
            return Some(check);
        }
        match self.disk.stamp(style, meta) {
            Ok(Some(stamp)) => {
                // A tile held in memory is served: its metatile is recently used.
                self.served.record(Some(id), meta, SystemTime::now());
                Some(self.memory.record_file_check(file, stamp))
            }
            _ => {
                self.memory.forget_file_check(file);
                None
            }
        }
    }

    /// Reads a tile from disk; with a memory key, also keeps it in memory.
    fn read_disk(
        &self,
        style: &StyleName,
        tile: TileCoord,
        fill: Option<MemoryKey>,
        now: SystemTime,
        planet: Option<SystemTime>,
    ) -> Result<Lookup, CacheError> {
        let changes = self.changes.load(Ordering::SeqCst);
        let meta = tile.metatile();
        let read = match self.disk.read_tile_stamped(style, tile) {
            Ok(Some(read)) => read,
            Ok(None) => return Ok(Lookup::Miss),
            Err(disk::ReadError {
                error: CacheError::Corrupt { path, source },
                stamp,
            }) => {
                self.found_corrupt(style, meta, &path, &source, stamp);
                return Ok(Lookup::Miss);
            }
            Err(e) => return Err(e.error),
        };
        let png_size = match self.styles.id(style) {
            Some(id) => self.png_sizes[id.index()].load(Ordering::Relaxed),
            None => 0,
        };
        if png_size > 0 {
            if let Err(why) =
                format::check_png_tile(tile.index_in_metatile(), &read.bytes, png_size)
            {
                let path = self.disk.path_of(style, meta);
                self.found_corrupt(style, meta, &path, &why, Some(read.stamp));
                return Ok(Lookup::Miss);
            }
        }
        if self.served.is_enabled() {
            self.served.record(self.styles.id(style), meta, now);
        }
        let stale = freshness::is_stale(read.stamp.mtime, planet, now);
        let tile = Arc::new(CachedTile::new(
            Bytes::from(read.bytes),
            read.stamp.mtime,
            stale,
        ));
        if let Some(key) = fill {
            self.memory.insert(key, tile.clone(), read.stamp);
            if self.changes.load(Ordering::SeqCst) != changes {
                self.memory.invalidate(key);
            }
        }
        Ok(if stale {
            Lookup::Stale(tile)
        } else {
            Lookup::Disk(tile)
        })
    }

    /// A tile of a source other than the metatile tree (an archive), from memory: found
    /// only when it was kept with the same `stamp` (the source file's), so replacing the
    /// file makes every entry of it a miss.
    pub fn memory_get(
        &self,
        style: &StyleName,
        tile: TileCoord,
        stamp: FileStamp,
    ) -> Option<Arc<CachedTile>> {
        let key = MemoryKey::new(self.styles.id(style)?, tile);
        let entry = self.memory.get(key)?;
        if entry.stamp == stamp {
            return Some(entry.tile.clone());
        }
        self.memory.invalidate(key);
        None
    }

    /// Keeps a tile of another source in memory (see [`TileCache::memory_get`]); its
    /// render time is the source file's mtime, and it is never stale.
    pub fn memory_put(
        &self,
        style: &StyleName,
        tile: TileCoord,
        bytes: Bytes,
        stamp: FileStamp,
    ) -> Arc<CachedTile> {
        let cached = Arc::new(CachedTile::new(bytes, stamp.mtime, false));
        if let Some(id) = self.styles.id(style) {
            self.memory
                .insert(MemoryKey::new(id, tile), cached.clone(), stamp);
        }
        cached
    }

    /// Writes a whole metatile atomically (64 blobs in index order, empty = no tile),
    /// then drops its tiles from memory.
    pub fn store_metatile(
        &self,
        style: &StyleName,
        meta: MetatileCoord,
        tiles: &[Vec<u8>],
    ) -> Result<(), CacheError> {
        let old = self.quota_len(style, meta);
        let result = self.disk.write_metatile(style, meta, tiles);
        if let Ok(path) = &result {
            if self.served.is_enabled() {
                let new = std::fs::metadata(path).map_or(0, |m| m.len());
                self.served.resized(old, new);
            }
        }
        self.forget(style, meta);
        result.map(|_| ())
    }

    pub fn metatile_state(
        &self,
        style: &StyleName,
        meta: MetatileCoord,
    ) -> Result<MetatileState, CacheError> {
        let Some(stamp) = self.disk.stamp(style, meta)? else {
            return Ok(MetatileState::Absent);
        };
        let planet = self.planet_time(style);
        Ok(
            if freshness::is_stale(stamp.mtime, planet, SystemTime::now()) {
                MetatileState::Stale
            } else {
                MetatileState::Fresh
            },
        )
    }

    /// Marks a metatile dirty (mtime back 20 years, once; atime kept).
    pub fn mark_dirty(
        &self,
        style: &StyleName,
        meta: MetatileCoord,
    ) -> Result<ExpireOutcome, CacheError> {
        let outcome = self.disk.mark_dirty(style, meta, SystemTime::now())?;
        self.forget_unless_absent(style, meta, outcome);
        Ok(outcome)
    }

    pub fn delete(
        &self,
        style: &StyleName,
        meta: MetatileCoord,
    ) -> Result<ExpireOutcome, CacheError> {
        let old = self.quota_len(style, meta);
        let outcome = self.disk.delete(style, meta)?;
        if outcome == ExpireOutcome::Changed {
            self.served.resized(old, 0);
        }
        self.forget_unless_absent(style, meta, outcome);
        Ok(outcome)
    }

    /// The size of a metatile's file when a quota counts it (0 when absent or no quota).
    fn quota_len(&self, style: &StyleName, meta: MetatileCoord) -> u64 {
        if !self.served.is_enabled() {
            return 0;
        }
        self.disk
            .stamp(style, meta)
            .ok()
            .flatten()
            .map_or(0, |s| s.len)
    }

    /// Expiring a metatile that has no file changes nothing here: skipping its 64
    /// invalidations keeps big expiries (mostly absent metatiles) cheap. Whatever memory
    /// still holds of a file removed by another tool is dropped at its next revalidation.
    fn forget_unless_absent(&self, style: &StyleName, meta: MetatileCoord, outcome: ExpireOutcome) {
        if outcome != ExpireOutcome::Absent {
            self.forget(style, meta);
        }
    }

    /// Drops a metatile's tiles from memory (after a change on disk).
    pub fn forget(&self, style: &StyleName, meta: MetatileCoord) {
        self.changes.fetch_add(1, Ordering::SeqCst);
        let Some(id) = self.styles.id(style) else {
            return;
        };
        for tile in meta.tiles() {
            self.memory.invalidate(MemoryKey::new(id, tile));
        }
        self.memory.forget_file_check(MemoryKey::file(id, meta));
    }

    /// Makes every memory-cached tile compare itself with its file at its next hit (one
    /// `stat` per metatile), whenever it was last checked: for changes made to a shared
    /// cache directory by another node, which this node hears of through the fleet.
    pub fn revalidate_all(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
        self.memory.revalidate_all();
    }

    pub fn memory_stats(&self) -> MemoryStats {
        self.memory.stats()
    }

    /// The planet time of a style (cached up to `cache.planet_check_secs`).
    pub fn planet_time(&self, style: &StyleName) -> Option<SystemTime> {
        self.planet.planet_time(style, self.styles.id(style))
    }

    /// Sets the planet time (see [`touch_planet_import_complete`]) and makes this cache
    /// use it at once.
    pub fn set_planet_time(
        &self,
        style: Option<&StyleName>,
        time: SystemTime,
    ) -> Result<PathBuf, CacheError> {
        let path = touch_planet_import_complete(self.disk.root(), style, time)?;
        self.planet.forget();
        Ok(path)
    }

    /// Makes every tile rendered before `time` stale, whatever its style: the global
    /// `planet-import-complete` and every style's own one (which would otherwise win
    /// with its older time) are set to `time`.
    pub fn mark_all_stale(&self, time: SystemTime) -> Result<(), CacheError> {
        let root = self.disk.root();
        touch_planet_import_complete(root, None, time)?;
        let entries = match std::fs::read_dir(root) {
            Ok(entries) => entries,
            Err(e) => return Err(disk::io_err("list", root, e)),
        };
        for entry in entries.flatten() {
            let Some(style) = entry
                .file_name()
                .to_str()
                .and_then(|n| StyleName::parse(n).ok())
            else {
                continue;
            };
            if freshness::planet_file(root, Some(&style)).is_file() {
                touch_planet_import_complete(root, Some(&style), time)?;
            }
        }
        self.planet.forget();
        Ok(())
    }
}

/// Creates (if needed) `planet-import-complete` for one style (`<cache_dir>/<style>/`) or
/// for all (`<cache_dir>/`) and sets its mtime and atime to `time`: tiles rendered
/// before it become stale.
pub fn touch_planet_import_complete(
    cache_dir: &Path,
    style: Option<&StyleName>,
    time: SystemTime,
) -> Result<PathBuf, CacheError> {
    let path = freshness::planet_file(cache_dir, style);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| disk::io_err("create directory", dir, e))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| disk::io_err("create", &path, e))?;
    let t = filetime::FileTime::from_system_time(time);
    filetime::set_file_times(&path, t, t)
        .map_err(|e| disk::io_err("set the times of", &path, e))?;
    Ok(path)
}

fn corrupt_counter() -> Result<prometheus::IntCounterVec, CacheError> {
    prometheus::IntCounterVec::new(
        prometheus::Opts::new(
            "metatiled_corrupt_metatiles_total",
            "Metatiles found invalid, moved aside and rendered again, by reason: bad_file \
             (header or index), bad_tile (a blob not a whole PNG of the tile size), not_a_file",
        ),
        &["reason"],
    )
    .map_err(CacheError::Metrics)
    .inspect(|counter| {
        for reason in ["bad_file", "bad_tile", "not_a_file"] {
            counter.with_label_values(&[reason]);
        }
    })
}

#[cfg(test)]
mod tests;

/// Default memory-cache capacity: 256 MiB of tile bytes holds ~50,000 typical OSM tiles.
pub const DEFAULT_MEMORY_BYTES: u64 = 256 * 1024 * 1024;

/// The `[cache]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// Root of the mod_tile-compatible metatile tree (`<dir>/<style>/<z>/...`).
    pub dir: PathBuf,
    /// Capacity of the in-memory tile cache, in bytes of tile data.
    pub memory_bytes: u64,
    /// How often a memory-cached tile is re-checked against its file's mtime.
    pub revalidate_secs: u64,
    /// How often `planet-import-complete` is re-read.
    pub planet_check_secs: u64,
    /// fsync metatiles before renaming them into place (durability across power loss).
    pub fsync: bool,
    /// Disk quota of the metatile tree, in bytes; 0 = none. A background sweep keeps
    /// the tree under `high_watermark` of it, evicting the least recently served
    /// metatiles down to `low_watermark`.
    pub max_bytes: u64,
    /// Quotas of single styles (`osm = 10_000_000_000`), kept the same way, within
    /// `max_bytes`.
    pub style_max_bytes: std::collections::BTreeMap<String, u64>,
    /// Fraction of a quota above which the sweep evicts.
    pub high_watermark: f64,
    /// Fraction of a quota the sweep evicts down to.
    pub low_watermark: f64,
    /// How often the bytes on disk are compared with the quota (a walk of the tree runs
    /// only when over it, and every `sweep_walk_secs` to count what other tools wrote).
    pub sweep_secs: u64,
    /// How often the tree is walked to recount its bytes even when under the quota.
    pub sweep_walk_secs: u64,
    /// The directory is shared with other nodes (a shared volume, NFS): renders of one
    /// metatile are serialized across nodes, expiries received by another node make the
    /// memory layer re-check its tiles, and only old temp files are cleaned at start.
    pub shared: bool,
}

impl CacheSettings {
    /// Whether any disk quota applies.
    pub fn has_quota(&self) -> bool {
        self.max_bytes > 0 || self.style_max_bytes.values().any(|&b| b > 0)
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("tiles"),
            memory_bytes: DEFAULT_MEMORY_BYTES,
            revalidate_secs: 5,
            planet_check_secs: 5,
            fsync: true,
            max_bytes: 0,
            style_max_bytes: std::collections::BTreeMap::new(),
            high_watermark: 0.95,
            low_watermark: 0.85,
            sweep_secs: 10,
            sweep_walk_secs: 3600,
            shared: false,
        }
    }
}
