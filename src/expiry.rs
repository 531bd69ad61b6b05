//! Expiry inside the running server: the [`ExpireTarget`] that the admin API and the
//! database change listener hand to [`crate::expire::apply`]. Deleting and marking dirty
//! go through the [`TileCache`] (so the memory layer forgets the tiles); re-rendering
//! queues the metatile at `bulk` priority, waiting for room when the bulk queue is full
//! (never crowding out interactive misses); a dry run only looks. Every change is
//! counted in `metatiled_expired_metatiles_total{mode}`.

use crate::cache::{CacheError, DiskCache, ExpireOutcome};
use crate::expire::ExpireTarget;
use crate::queue::{JobKey, Priority, SubmitError};
use crate::service::TileService;
use crate::tile::{MetatileCoord, StyleName};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a bulk re-render waits between tries when the bulk queue is full.
const FULL_QUEUE_BACKOFF: Duration = Duration::from_millis(20);

/// The server's expiry target. Blocking: run it on a blocking thread.
pub struct ServiceTarget {
    service: Arc<TileService>,
    dry_run: bool,
    cancel: Option<Arc<AtomicBool>>,
}

impl ServiceTarget {
    pub fn new(service: Arc<TileService>) -> Self {
        Self {
            service,
            dry_run: false,
            cancel: None,
        }
    }

    /// Only reports what would change; touches nothing.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Once the flag is set, the remaining metatiles are skipped (counted absent).
    pub fn cancelled_by(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = Some(flag);
        self
    }

    fn stopped(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
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

    fn count(&self, mode: &str, outcome: &Result<ExpireOutcome, CacheError>) {
        if let Ok(ExpireOutcome::Changed) = outcome {
            self.service
                .metrics()
                .expired_metatiles
                .with_label_values(&[mode])
                .inc();
        }
    }
}

impl ExpireTarget for ServiceTarget {
    fn disk(&self) -> &DiskCache {
        self.service.cache().disk()
    }

    fn delete(&self, style: &StyleName, meta: MetatileCoord) -> Result<ExpireOutcome, CacheError> {
        if self.stopped() {
            return Ok(ExpireOutcome::Absent);
        }
        if self.dry_run {
            return self.would_change(style, meta);
        }
        let outcome = self.service.cache().delete(style, meta);
        self.count("delete", &outcome);
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
        self.count("dirty", &outcome);
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
        loop {
            match self.service.pool().submit(key.clone(), Priority::Bulk) {
                Ok(_) => break,
                Err(SubmitError::QueueFull(_)) if !self.stopped() => {
                    std::thread::sleep(FULL_QUEUE_BACKOFF);
                }
                Err(_) => return Ok(ExpireOutcome::Absent),
            }
        }
        let outcome = Ok(ExpireOutcome::Changed);
        self.count("render", &outcome);
        outcome
    }
}
