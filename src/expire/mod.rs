//! Expiry with render_expired's semantics and the fixes of METATILE.md: what to do
//! ([`ExpireMode`], [`ExpirePlan`]) with the existing metatiles of a
//! [`MetatileSet`](crate::area::MetatileSet), and [`apply`], which does it through an
//! [`ExpireTarget`]: the disk cache offline (`metatiled expire`), the tile cache in the
//! server, or the server's own target that also queues renders.
//!
//! [`apply`] acts on every metatile that exists: [`ExpirePlan::action_at`] gives
//! delete (z >= delete-from), mark dirty (z >= touch-from) or render (below). A big
//! block is walked on disk (only directories that exist are read) rather than
//! enumerated, so its cost is what the cache holds; a zoom without a directory is
//! skipped whole.

use crate::area::MetatileSet;
use crate::cache::path::hash_components;
use crate::cache::{CacheError, DiskCache, ExpireOutcome, TileCache};
use crate::tile::{MetatileCoord, StyleName, MAX_ZOOM};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::SystemTime;
use thiserror::Error;

/// Blocks with more metatiles than this are walked on disk instead of enumerated.
pub const WALK_ABOVE: u64 = 1024;
/// Metatiles between two progress reports of [`apply`].
const PROGRESS_STEP: u64 = 4096;

/// What to do with existing metatiles: the mode of an expiry (admin request, watch,
/// configuration) and the action of one zoom of a plan. Parsed once, where it enters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum ExpireMode {
    /// Rewind its mtime: served stale, re-rendered in the background.
    Dirty,
    /// Remove the file (the next request renders it).
    Delete,
    /// Re-render it (offline, without a render queue, it is marked dirty instead).
    Render,
}

impl ExpireMode {
    pub const ALL: [ExpireMode; 3] = [ExpireMode::Dirty, ExpireMode::Delete, ExpireMode::Render];

    pub fn as_str(self) -> &'static str {
        match self {
            ExpireMode::Delete => "delete",
            ExpireMode::Dirty => "dirty",
            ExpireMode::Render => "render",
        }
    }
}

impl std::fmt::Display for ExpireMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mode that is none of `dirty`, `delete`, `render`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("unknown mode {0:?}: use \"dirty\", \"delete\" or \"render\"")]
pub struct UnknownMode(pub String);

impl TryFrom<String> for ExpireMode {
    type Error = UnknownMode;
    fn try_from(text: String) -> Result<Self, UnknownMode> {
        text.parse()
    }
}

impl std::str::FromStr for ExpireMode {
    type Err = UnknownMode;
    fn from_str(text: &str) -> Result<Self, UnknownMode> {
        ExpireMode::ALL
            .into_iter()
            .find(|m| m.as_str() == text)
            .ok_or_else(|| UnknownMode(text.to_string()))
    }
}

/// Why an expiry plan is refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PlanError {
    #[error("max-zoom {0} is above {MAX_ZOOM}, the highest zoom of the cache layout")]
    ZoomTooHigh(u8),
    #[error("min-zoom {min} is above max-zoom {max}")]
    MinAboveMax { min: u8, max: u8 },
}

/// Zoom range and per-zoom action, as render_expired's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpirePlan {
    pub min_zoom: u8,
    pub max_zoom: u8,
    /// Delete metatiles at this zoom and above.
    pub delete_from: Option<u8>,
    /// Mark metatiles dirty at this zoom and above (below `delete_from`).
    pub touch_from: Option<u8>,
}

impl ExpirePlan {
    pub fn new(
        min_zoom: u8,
        max_zoom: u8,
        delete_from: Option<u8>,
        touch_from: Option<u8>,
    ) -> Result<Self, PlanError> {
        if max_zoom > MAX_ZOOM {
            return Err(PlanError::ZoomTooHigh(max_zoom));
        }
        if min_zoom > max_zoom {
            return Err(PlanError::MinAboveMax {
                min: min_zoom,
                max: max_zoom,
            });
        }
        Ok(Self {
            min_zoom,
            max_zoom,
            delete_from,
            touch_from,
        })
    }

    /// One mode at every zoom of `min_zoom..=max_zoom`.
    pub fn for_mode(min_zoom: u8, max_zoom: u8, mode: ExpireMode) -> Result<Self, PlanError> {
        Self::for_mode_from(min_zoom, max_zoom, mode, 0)
    }

    /// `mode` at zooms from `from` up, re-rendering below it.
    pub fn for_mode_from(
        min_zoom: u8,
        max_zoom: u8,
        mode: ExpireMode,
        from: u8,
    ) -> Result<Self, PlanError> {
        let (delete_from, touch_from) = match mode {
            ExpireMode::Delete => (Some(from), None),
            ExpireMode::Dirty => (None, Some(from)),
            ExpireMode::Render => (None, None),
        };
        Self::new(min_zoom, max_zoom, delete_from, touch_from)
    }

    /// The action for metatiles of zoom `z`.
    pub fn action_at(&self, z: u8) -> ExpireMode {
        if self.delete_from.is_some_and(|d| z >= d) {
            ExpireMode::Delete
        } else if self.touch_from.is_some_and(|t| z >= t) {
            ExpireMode::Dirty
        } else {
            ExpireMode::Render
        }
    }
}

/// Where expiry acts: the disk cache offline, the [`TileCache`] (with its memory layer)
/// in the server, or the server's own wrapper that queues renders.
pub trait ExpireTarget {
    fn disk(&self) -> &DiskCache;
    fn delete(&self, style: &StyleName, meta: MetatileCoord) -> Result<ExpireOutcome, CacheError>;
    fn mark_dirty(
        &self,
        style: &StyleName,
        meta: MetatileCoord,
    ) -> Result<ExpireOutcome, CacheError>;
    /// Re-render an existing metatile (`Absent` when it does not exist).
    fn render(&self, style: &StyleName, meta: MetatileCoord) -> Result<ExpireOutcome, CacheError>;
    /// True once the work should end early (a cancelled job); [`apply`] then stops at
    /// the next block.
    fn stopped(&self) -> bool {
        false
    }
}

/// Offline: no render queue, so `render` marks dirty (the server re-renders a dirty
/// metatile when it is next asked for).
impl ExpireTarget for DiskCache {
    fn disk(&self) -> &DiskCache {
        self
    }
    fn delete(&self, style: &StyleName, meta: MetatileCoord) -> Result<ExpireOutcome, CacheError> {
        DiskCache::delete(self, style, meta)
    }
    fn mark_dirty(
        &self,
        style: &StyleName,
        meta: MetatileCoord,
    ) -> Result<ExpireOutcome, CacheError> {
        DiskCache::mark_dirty(self, style, meta, SystemTime::now())
    }
    fn render(&self, style: &StyleName, meta: MetatileCoord) -> Result<ExpireOutcome, CacheError> {
        DiskCache::mark_dirty(self, style, meta, SystemTime::now())
    }
}

/// Like the offline target, and the memory layer forgets what changed.
impl ExpireTarget for TileCache {
    fn disk(&self) -> &DiskCache {
        TileCache::disk(self)
    }
    fn delete(&self, style: &StyleName, meta: MetatileCoord) -> Result<ExpireOutcome, CacheError> {
        TileCache::delete(self, style, meta)
    }
    fn mark_dirty(
        &self,
        style: &StyleName,
        meta: MetatileCoord,
    ) -> Result<ExpireOutcome, CacheError> {
        TileCache::mark_dirty(self, style, meta)
    }
    fn render(&self, style: &StyleName, meta: MetatileCoord) -> Result<ExpireOutcome, CacheError> {
        TileCache::mark_dirty(self, style, meta)
    }
}

/// What one action did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActionCounts {
    /// Metatiles of the input at the zooms of this action (existing or not).
    pub matched: u64,
    /// Deleted, marked dirty, or rendered.
    pub changed: u64,
    /// Already dirty: left as they were.
    pub already_dirty: u64,
    /// Not in the cache.
    pub absent: u64,
    /// Failed (logged); the run goes on.
    pub errors: u64,
}

impl ActionCounts {
    fn record(&mut self, outcome: &Result<ExpireOutcome, CacheError>) {
        match outcome {
            Ok(ExpireOutcome::Changed) => self.changed += 1,
            Ok(ExpireOutcome::AlreadyDirty) => self.already_dirty += 1,
            Ok(ExpireOutcome::Absent) => self.absent += 1,
            Err(_) => self.errors += 1,
        }
    }

    pub fn add(&mut self, o: &ActionCounts) {
        self.matched += o.matched;
        self.changed += o.changed;
        self.already_dirty += o.already_dirty;
        self.absent += o.absent;
        self.errors += o.errors;
    }
}

/// The result of [`apply`], per action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpireSummary {
    pub delete: ActionCounts,
    pub mark_dirty: ActionCounts,
    pub render: ActionCounts,
}

impl ExpireSummary {
    pub fn for_action(&mut self, action: ExpireMode) -> &mut ActionCounts {
        match action {
            ExpireMode::Delete => &mut self.delete,
            ExpireMode::Dirty => &mut self.mark_dirty,
            ExpireMode::Render => &mut self.render,
        }
    }

    /// Adds another summary's counts to these.
    pub fn add(&mut self, o: &ExpireSummary) {
        self.delete.add(&o.delete);
        self.mark_dirty.add(&o.mark_dirty);
        self.render.add(&o.render);
    }

    pub fn total(&self) -> ActionCounts {
        let mut t = ActionCounts::default();
        for c in [&self.delete, &self.mark_dirty, &self.render] {
            t.add(c);
        }
        t
    }
}

/// Progress of [`apply`]: metatiles handled out of the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpireProgress {
    pub done: u64,
    pub total: u64,
}

/// Which of a zoom's top two hash directories exist, learnt as metatiles are looked
/// up: a metatile under a missing directory is absent without a system call. Edges of
/// huge areas enumerate many single metatiles that a sparse cache does not hold; this
/// makes them cost a hash lookup each. At most 256 + 65,536 entries per zoom.
#[derive(Debug, Default)]
struct DirPresence {
    zoom: Option<u8>,
    zoom_dir: PathBuf,
    zoom_present: bool,
    top: HashMap<u8, bool>,
    second: HashMap<(u8, u8), bool>,
}

impl DirPresence {
    fn new(style_dir: PathBuf, z: u8) -> Self {
        let zoom_dir = style_dir.join(z.to_string());
        Self {
            zoom: Some(z),
            zoom_present: zoom_dir.is_dir(),
            zoom_dir,
            top: HashMap::new(),
            second: HashMap::new(),
        }
    }

    /// False when the metatile's directory is known not to exist.
    fn may_hold(&mut self, meta: MetatileCoord) -> bool {
        let h = hash_components(meta);
        let (h4, h3) = (h[4], h[3]);
        let dir = &self.zoom_dir;
        let top = *self
            .top
            .entry(h4)
            .or_insert_with(|| dir.join(h4.to_string()).is_dir());
        top && *self
            .second
            .entry((h4, h3))
            .or_insert_with(|| dir.join(h4.to_string()).join(h3.to_string()).is_dir())
    }
}

/// Acts on every existing metatile of `set` at zooms `plan.min_zoom..=plan.max_zoom`,
/// each once. Failures on single metatiles are logged and counted; the run goes on.
/// `progress` is called every few thousand metatiles and after big blocks.
pub fn apply(
    target: &dyn ExpireTarget,
    style: &StyleName,
    plan: &ExpirePlan,
    set: &MetatileSet,
    progress: &mut dyn FnMut(ExpireProgress),
) -> ExpireSummary {
    let total = set.metatile_count(plan.min_zoom);
    let mut summary = ExpireSummary::default();
    let mut done = 0u64;
    let mut next_report = PROGRESS_STEP;
    let mut dirs = DirPresence::default();
    for block in set.blocks(plan.min_zoom) {
        if target.stopped() {
            break;
        }
        let action = plan.action_at(block.z);
        let act = |meta: MetatileCoord| {
            let outcome = match action {
                ExpireMode::Delete => target.delete(style, meta),
                ExpireMode::Dirty => target.mark_dirty(style, meta),
                ExpireMode::Render => target.render(style, meta),
            };
            if let Err(e) = &outcome {
                tracing::warn!(%style, meta.z = meta.z, meta.x = meta.x, meta.y = meta.y, error = %crate::errors::error_chain(e), "expire failed");
            }
            outcome
        };
        let counts = summary.for_action(action);
        counts.matched += block.len();
        if dirs.zoom != Some(block.z) {
            dirs = DirPresence::new(target.disk().style_dir(style), block.z);
        }
        if !dirs.zoom_present {
            // Nothing of this style at this zoom: no file to look for.
            counts.absent += block.len();
            done += block.len();
            if done >= next_report {
                progress(ExpireProgress { done, total });
                next_report = done + PROGRESS_STEP;
            }
        } else if block.len() > WALK_ABOVE {
            let mut found = 0u64;
            let walked = target.disk().for_each_existing_in(
                style,
                block.z,
                (block.mx, block.my, block.side),
                &mut |meta| {
                    found += 1;
                    counts.record(&act(meta));
                    Ok(())
                },
            );
            counts.absent += block.len().saturating_sub(found);
            if let Err(e) = walked {
                tracing::warn!(%style, z = block.z, error = %crate::errors::error_chain(&e), "cannot walk the cache");
                counts.errors += 1;
            }
            done += block.len();
            progress(ExpireProgress { done, total });
        } else {
            for meta in block.metatiles() {
                if dirs.may_hold(meta) {
                    counts.record(&act(meta));
                } else {
                    counts.absent += 1;
                }
            }
            done += block.len();
            if done >= next_report {
                progress(ExpireProgress { done, total });
                next_report = done + PROGRESS_STEP;
            }
        }
    }
    progress(ExpireProgress { done, total });
    summary
}

#[cfg(test)]
mod tests;
