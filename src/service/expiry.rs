//! Expiry inside the running server: the [`ExpireTarget`] that the admin API and the
//! database watcher hand to [`crate::expire::apply`]. Deleting and marking dirty go
//! through the [`TileCache`](crate::cache::TileCache) (so the memory layer forgets the
//! tiles); re-rendering queues the metatile at `bulk` priority, waiting for room when
//! the bulk queue is full (woken when a job leaves it, never crowding out interactive
//! misses); a dry run only looks. Every change is counted in
//! `metatiled_expired_metatiles_total{mode}`.
//!
//! [`WithDependents`] wraps any target so that what happens to a style's metatile also
//! happens to the trees made from it ([`StyleSet::dependents`]): its UTFGrids (deleted
//! or marked dirty with it; a re-render rewrites them anyway) and the composites that
//! blend it (same action). The admin API, the watcher and `metatiled expire` all expire
//! through it.

use super::TileService;
use crate::cache::{CacheError, DiskCache, ExpireOutcome};
use crate::expire::{ExpireMode, ExpireTarget};
use crate::fleet::FleetTargets;
use crate::purge::Change;
use crate::queue::{JobKey, Priority};
use crate::style::{Dependent, StyleSet};
use crate::tile::{MetatileCoord, StyleName};
use crate::watch::BatchTargets;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// The server's expiry target. Blocking: run it on a blocking thread of the runtime
/// (`spawn_blocking`), whose handle it keeps to wait for room in the bulk queue.
pub struct ServiceTarget {
    service: Arc<TileService>,
    runtime: Handle,
    dry_run: bool,
    cancel: CancellationToken,
}

impl ServiceTarget {
    /// Must be called inside the tokio runtime.
    pub fn new(service: Arc<TileService>) -> Self {
        Self {
            service,
            runtime: Handle::current(),
            dry_run: false,
            cancel: CancellationToken::new(),
        }
    }

    /// Only reports what would change; touches nothing.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Once `cancel` is cancelled, the remaining metatiles are skipped (counted absent).
    pub fn cancelled_by(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// The dry-run answer: `Changed` when the metatile exists.
    fn would_change(
        &self,
        style: &StyleName,
        meta: MetatileCoord,
    ) -> Result<ExpireOutcome, CacheError> {
        Ok(match self.service.cache().disk().stamp(style, meta)? {
            Some(_) => ExpireOutcome::Changed,
            None => ExpireOutcome::Absent,
        })
    }

    /// Counts a change, and tells caches downstream about a deleted or dirty-marked
    /// metatile of a served style (a re-render tells them when it replaces the file). A
    /// style's UTFGrid tree (`<style>@grid`) is no served style: its grids are served
    /// under the style's own key, purged with the style's metatile.
    fn count(
        &self,
        mode: ExpireMode,
        style: &StyleName,
        meta: MetatileCoord,
        outcome: &Result<ExpireOutcome, CacheError>,
    ) {
        if let Ok(ExpireOutcome::Changed) = outcome {
            if mode != ExpireMode::Render && self.service.styles().get(style).is_some() {
                self.service
                    .purger()
                    .changed(Change::Metatile(style.clone(), meta));
            }
            self.service
                .metrics()
                .expired_metatiles
                .with_label_values(&[mode.as_str()])
                .inc();
        }
    }
}

impl ExpireTarget for ServiceTarget {
    fn disk(&self) -> &DiskCache {
        self.service.cache().disk()
    }

    fn stopped(&self) -> bool {
        self.cancel.is_cancelled()
    }

    fn delete(&self, style: &StyleName, meta: MetatileCoord) -> Result<ExpireOutcome, CacheError> {
        if self.stopped() {
            return Ok(ExpireOutcome::Absent);
        }
        if self.dry_run {
            return self.would_change(style, meta);
        }
        let outcome = self.service.cache().delete(style, meta);
        self.count(ExpireMode::Delete, style, meta, &outcome);
        outcome
    }

    fn mark_dirty(
        &self,
        style: &StyleName,
        meta: MetatileCoord,
    ) -> Result<ExpireOutcome, CacheError> {
        if self.stopped() {
            return Ok(ExpireOutcome::Absent);
        }
        if self.dry_run {
            return self.would_change(style, meta);
        }
        let outcome = self.service.cache().mark_dirty(style, meta);
        self.count(ExpireMode::Dirty, style, meta, &outcome);
        outcome
    }

    fn render(&self, style: &StyleName, meta: MetatileCoord) -> Result<ExpireOutcome, CacheError> {
        if self.stopped() {
            return Ok(ExpireOutcome::Absent);
        }
        let exists = self.would_change(style, meta)?;
        if self.dry_run || exists == ExpireOutcome::Absent {
            return Ok(exists);
        }
        let key = JobKey {
            style: style.clone(),
            meta,
        };
        let pool = self.service.pool();
        let queued =
            self.runtime
                .block_on(pool.submit_after_change(key, Priority::Bulk, &self.cancel));
        if queued.is_err() {
            // Cancelled or shutting down: not re-rendered.
            return Ok(ExpireOutcome::Absent);
        }
        let outcome = Ok(ExpireOutcome::Changed);
        self.count(ExpireMode::Render, style, meta, &outcome);
        outcome
    }
}

/// The watcher's batches expire through the server's target, dependents included.
pub struct ServiceBatchTargets(pub Arc<TileService>);

impl BatchTargets for ServiceBatchTargets {
    fn target(&self, cancel: CancellationToken) -> Box<dyn ExpireTarget + Send> {
        let styles = self.0.styles().clone();
        Box::new(WithDependents::new(
            ServiceTarget::new(self.0.clone()).cancelled_by(cancel),
            &styles,
        ))
    }
}

/// A target whose every change to a style's metatile is repeated on the metatiles of
/// the same coordinates in the trees made from it (see the module docs).
pub struct WithDependents<T> {
    inner: T,
    dependents: HashMap<StyleName, Vec<Dependent>>,
}

impl<T: ExpireTarget> WithDependents<T> {
    pub fn new(inner: T, styles: &StyleSet) -> Self {
        let dependents = styles
            .iter()
            .map(|s| (s.name.clone(), styles.dependents(&s.name)))
            .filter(|(_, d)| !d.is_empty())
            .collect();
        Self { inner, dependents }
    }

    /// Only these dependents, for one style (when no style set is at hand).
    pub fn with(inner: T, style: StyleName, dependents: Vec<Dependent>) -> Self {
        Self {
            inner,
            dependents: HashMap::from([(style, dependents)]),
        }
    }

    fn follow(
        &self,
        style: &StyleName,
        meta: MetatileCoord,
        outcome: &Result<ExpireOutcome, CacheError>,
        act: impl Fn(&T, &Dependent) -> Result<ExpireOutcome, CacheError>,
    ) {
        // An absent metatile has nothing made from it (composites store their inputs,
        // and grids are written with the tiles); a failed one is reported as such.
        if !matches!(
            outcome,
            Ok(ExpireOutcome::Changed | ExpireOutcome::AlreadyDirty)
        ) {
            return;
        }
        for d in self.dependents.get(style).map_or(&[][..], |d| &d[..]) {
            if let Err(e) = act(&self.inner, d) {
                tracing::warn!(style = %d.name(), meta = %meta, error = %crate::errors::error_chain(&e), "expiring a dependent failed");
            }
        }
    }
}

impl<T: ExpireTarget> ExpireTarget for WithDependents<T> {
    fn disk(&self) -> &DiskCache {
        self.inner.disk()
    }

    fn stopped(&self) -> bool {
        self.inner.stopped()
    }

    fn delete(&self, style: &StyleName, meta: MetatileCoord) -> Result<ExpireOutcome, CacheError> {
        let outcome = self.inner.delete(style, meta);
        self.follow(style, meta, &outcome, |t, d| t.delete(d.name(), meta));
        outcome
    }

    fn mark_dirty(
        &self,
        style: &StyleName,
        meta: MetatileCoord,
    ) -> Result<ExpireOutcome, CacheError> {
        let outcome = self.inner.mark_dirty(style, meta);
        self.follow(style, meta, &outcome, |t, d| t.mark_dirty(d.name(), meta));
        outcome
    }

    fn render(&self, style: &StyleName, meta: MetatileCoord) -> Result<ExpireOutcome, CacheError> {
        let outcome = self.inner.render(style, meta);
        self.follow(style, meta, &outcome, |t, d| match d {
            // The style's own re-render rewrites its grids.
            Dependent::Grid(_) => Ok(ExpireOutcome::Absent),
            Dependent::Composite(name) => t.render(name, meta),
        });
        outcome
    }
}

/// Expiries published by other nodes of the fleet go to the same target, dependents
/// included; with a shared cache, only the memory layer needs to look at the files again.
pub struct ServiceFleetTargets(pub Arc<TileService>);

impl FleetTargets for ServiceFleetTargets {
    fn target(&self, cancel: CancellationToken) -> Box<dyn ExpireTarget + Send> {
        let styles = self.0.styles().clone();
        Box::new(WithDependents::new(
            ServiceTarget::new(self.0.clone()).cancelled_by(cancel),
            &styles,
        ))
    }

    fn revalidate_memory(&self) {
        self.0.cache().revalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::freshness::is_dirty;
    use std::time::SystemTime;

    fn name(s: &str) -> StyleName {
        StyleName::parse(s).unwrap()
    }

    #[test]
    fn dependents_follow_what_happens_to_their_style() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskCache::new(dir.path(), false);
        let meta = MetatileCoord::try_new(12, 2328, 1184).unwrap();
        let trees = ["osm", "osm@grid", "mix"];
        let tiles = vec![b"x".to_vec(); 64];
        for t in trees {
            disk.write_metatile(&name(t), meta, &tiles).unwrap();
        }
        let target = WithDependents::with(
            disk.clone(),
            name("osm"),
            vec![
                Dependent::Grid(name("osm@grid")),
                Dependent::Composite(name("mix")),
            ],
        );
        let dirty = |t: &str| {
            let stamp = disk.stamp(&name(t), meta).unwrap().unwrap();
            is_dirty(stamp.mtime, SystemTime::now())
        };
        // Offline, a re-render marks the style and its composites dirty; the grids
        // are rewritten by the style's own render.
        target.render(&name("osm"), meta).unwrap();
        assert!(dirty("osm") && dirty("mix") && !dirty("osm@grid"));
        target.mark_dirty(&name("osm"), meta).unwrap();
        assert!(trees.iter().all(|t| dirty(t)));
        target.delete(&name("osm"), meta).unwrap();
        for t in trees {
            assert_eq!(disk.stamp(&name(t), meta).unwrap(), None, "{t}");
        }
        // Another style's metatile leaves them alone.
        disk.write_metatile(&name("mix"), meta, &tiles).unwrap();
        target.delete(&name("other"), meta).unwrap();
        assert!(disk.stamp(&name("mix"), meta).unwrap().is_some());
    }
}
