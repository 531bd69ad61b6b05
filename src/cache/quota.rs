//! The disk quota's cache side: when each metatile was last served (tracked here, since
//! file systems are often mounted `noatime`), the bytes on disk, and the sweep that
//! evicts the least recently served metatiles. What may not be evicted (a metatile being
//! rendered) is decided by the caller.
//!
//! Last served = the last disk read of one of its tiles, or the last revalidation of
//! one held in memory (every `cache.revalidate_secs`): no cost on a memory hit. A
//! metatile not served since the server started counts as served at its file's atime
//! or mtime, whichever is later (a dirty-marked file goes first).

use super::disk::{io_err, FileStamp, WalkItem};
use super::slots::StyleId;
use super::CacheError;
use crate::tile::{MetatileCoord, StyleName};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the epoch: what the served clock stores.
fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// When metatiles were last served, and the bytes on disk (estimated between sweeps).
#[derive(Debug, Default)]
pub(super) struct ServedClock {
    enabled: bool,
    served: Mutex<HashMap<(StyleId, MetatileCoord), u64>>,
    disk_bytes: AtomicU64,
}

impl ServedClock {
    pub(super) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            ..Self::default()
        }
    }

    pub(super) fn record(&self, id: Option<StyleId>, meta: MetatileCoord, now: SystemTime) {
        let (true, Some(id)) = (self.enabled, id) else {
            return;
        };
        let mut served = self.served.lock().unwrap_or_else(PoisonError::into_inner);
        served.insert((id, meta), secs(now));
    }

    fn last(&self, id: Option<StyleId>, meta: MetatileCoord) -> Option<u64> {
        let id = id?;
        let served = self.served.lock().unwrap_or_else(PoisonError::into_inner);
        served.get(&(id, meta)).copied()
    }

    fn forget(&self, id: Option<StyleId>, meta: MetatileCoord) {
        if let Some(id) = id {
            let mut served = self.served.lock().unwrap_or_else(PoisonError::into_inner);
            served.remove(&(id, meta));
        }
    }

    /// A file of `old` bytes (0: none) replaced by one of `new` bytes.
    pub(super) fn resized(&self, old: u64, new: u64) {
        if !self.enabled {
            return;
        }
        if new >= old {
            self.disk_bytes.fetch_add(new - old, Ordering::Relaxed);
        } else {
            let _ = self
                .disk_bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    Some(b.saturating_sub(old - new))
                });
        }
    }

    pub(super) fn is_enabled(&self) -> bool {
        self.enabled
    }
}

/// A metatile that may be evicted.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub style: StyleName,
    pub meta: MetatileCoord,
    path: PathBuf,
    stamp: FileStamp,
    /// Seconds since the epoch.
    pub served_at: u64,
}

impl Candidate {
    pub fn bytes(&self) -> u64 {
        self.stamp.len
    }
}

/// Every metatile on disk with when it was last served, and the bytes per style.
#[derive(Debug, Default)]
pub struct Census {
    pub candidates: Vec<Candidate>,
    pub bytes: BTreeMap<StyleName, u64>,
    pub total: u64,
}

impl super::TileCache {
    /// Walks the cache: every metatile with its size and when it was last served. Sets
    /// the bytes-on-disk estimate to what was found. Unreadable entries are skipped.
    pub fn census(&self) -> Census {
        let mut census = Census::default();
        for item in self.disk.walk(None) {
            let Ok(WalkItem::Metatile { style, meta, path }) = item else {
                continue;
            };
            let Ok(md) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let Ok(mtime) = md.modified() else { continue };
            let stamp = FileStamp {
                mtime,
                dev: md.dev(),
                ino: md.ino(),
                len: md.len(),
            };
            let fallback = secs(mtime).max(u64::try_from(md.atime()).unwrap_or(0));
            let served_at = self
                .served
                .last(self.styles.id(&style), meta)
                .unwrap_or(fallback);
            *census.bytes.entry(style.clone()).or_default() += stamp.len;
            census.total += stamp.len;
            census.candidates.push(Candidate {
                style,
                meta,
                path,
                stamp,
                served_at,
            });
        }
        self.served
            .disk_bytes
            .store(census.total, Ordering::Relaxed);
        census
    }

    /// Bytes of metatiles on disk: the last census, plus writes and minus deletes made
    /// through this cache since.
    pub fn disk_bytes(&self) -> u64 {
        self.served.disk_bytes.load(Ordering::Relaxed)
    }

    /// Removes a metatile found by [`TileCache::census`], unless it changed since (a new
    /// render, a dirty mark) or was served within `recent`. `Ok(false)` when kept.
    pub fn evict(&self, c: &Candidate, recent: Duration) -> Result<bool, CacheError> {
        let id = self.styles.id(&c.style);
        let now = secs(SystemTime::now());
        if self
            .served
            .last(id, c.meta)
            .is_some_and(|t| t + recent.as_secs() > now)
        {
            return Ok(false);
        }
        if self.disk.stamp(&c.style, c.meta)? != Some(c.stamp) {
            return Ok(false);
        }
        match std::fs::remove_file(&c.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("evict", &c.path, e)),
        }
        self.served.resized(c.stamp.len, 0);
        self.served.forget(id, c.meta);
        self.forget(&c.style, c.meta);
        Ok(true)
    }
}
