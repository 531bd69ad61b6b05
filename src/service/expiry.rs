//! Expiry inside the running server: the [`ExpireTarget`] that the admin API and the
//! database watcher hand to [`crate::expire::apply`]. Deleting and marking dirty go
//! through the [`TileCache`](crate::cache::TileCache) (so the memory layer forgets the
//! tiles); re-rendering queues the metatile at `bulk` priority, waiting for room when
//! the bulk queue is full (woken when a job leaves it, never crowding out interactive
//! misses); a dry run only looks. Every change is counted in
//! `metatiled_expired_metatiles_total{mode}`.

use super::TileService;
use crate::cache::{CacheError, DiskCache, ExpireOutcome};
use crate::expire::{ExpireMode, ExpireTarget};
use crate::fleet::FleetTargets;
use crate::queue::{JobKey, Priority};
use crate::tile::{MetatileCoord, StyleName};
use crate::watch::BatchTargets;
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

    fn count(&self, mode: ExpireMode, outcome: &Result<ExpireOutcome, CacheError>) {
        if let Ok(ExpireOutcome::Changed) = outcome {
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
        self.count(ExpireMode::Delete, &outcome);
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
        self.count(ExpireMode::Dirty, &outcome);
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
                .block_on(pool.submit_when_room(key, Priority::Bulk, &self.cancel));
        if queued.is_err() {
            // Cancelled or shutting down: not re-rendered.
            return Ok(ExpireOutcome::Absent);
        }
        let outcome = Ok(ExpireOutcome::Changed);
        self.count(ExpireMode::Render, &outcome);
        outcome
    }
}

/// The watcher's batches expire through the server's target.
pub struct ServiceBatchTargets(pub Arc<TileService>);

impl BatchTargets for ServiceBatchTargets {
    fn target(&self, cancel: CancellationToken) -> Box<dyn ExpireTarget + Send> {
        Box::new(ServiceTarget::new(self.0.clone()).cancelled_by(cancel))
    }
}

/// Expiries published by other nodes of the fleet go to the same target; with a shared
/// cache, only the memory layer needs to look at the files again.
pub struct ServiceFleetTargets(pub Arc<TileService>);

impl FleetTargets for ServiceFleetTargets {
    fn target(&self, cancel: CancellationToken) -> Box<dyn ExpireTarget + Send> {
        Box::new(ServiceTarget::new(self.0.clone()).cancelled_by(cancel))
    }

    fn revalidate_memory(&self) {
        self.0.cache().revalidate_all();
    }
}
