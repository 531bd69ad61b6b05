//! [`MetatileBackend`]: what one render job does in the pool. The fetch stage queries
//! PostGIS (I/O on the runtime); the paint stage, on a render thread, decodes the rows,
//! paints with tiny-skia, encodes the tiles and writes the metatile. A failure is logged
//! here, once, with its cause; every waiter of the job gets it without logging again.
//!
//! With a cache shared by several nodes (`cache.shared`), the fetch stage first takes
//! the metatile's render lock ([`RenderLocks`]), waiting while another node renders it;
//! then, if the file has become fresh meanwhile (and the job was not a forced
//! re-render of a fresh file), the job is done without rendering: the other node's file
//! is what the waiters are served.

use super::metrics::Metrics;
use crate::cache::{FileStamp, MetatileState, TileCache};
use crate::fleet::{RenderLockGuard, RenderLocks};
use crate::queue::{JobKey, Priority, RenderBackend, RenderFailure};
use crate::render::{render_metatile, PngMode};
use crate::source::{PostgisSource, RawMetatile};
use crate::style::{Style, StyleSet};
use crate::text::FontSet;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::time::Instant;

/// Fetches from PostGIS, paints with tiny-skia, writes the metatile.
pub struct MetatileBackend {
    styles: Arc<StyleSet>,
    source: PostgisSource,
    cache: Arc<TileCache>,
    png: PngMode,
    metrics: Arc<Metrics>,
    /// The process's fonts, shared by every render thread.
    fonts: Arc<FontSet>,
    /// Render locks across the nodes sharing the cache (`cache.shared`).
    locks: Option<RenderLocks>,
}

/// What the fetch stage hands to a render thread: the rows, not yet decoded (or
/// nothing, when another node has just rendered the metatile).
pub struct Fetched {
    style: Arc<Style>,
    rows: Option<RawMetatile>,
    started: Instant,
    /// The metatile's render lock, released when the job is done.
    _lock: Option<RenderLockGuard>,
}

impl MetatileBackend {
    pub fn new(
        styles: Arc<StyleSet>,
        source: PostgisSource,
        cache: Arc<TileCache>,
        png: PngMode,
        metrics: Arc<Metrics>,
        fonts: Arc<FontSet>,
    ) -> Self {
        Self {
            styles,
            source,
            cache,
            png,
            metrics,
            fonts,
            locks: None,
        }
    }

    /// Serializes renders of one metatile across the nodes that share the cache.
    pub(crate) fn with_render_locks(mut self, locks: RenderLocks) -> Self {
        self.locks = Some(locks);
        self
    }

    /// Whether the metatile needs no render after all: its file is fresh now and, for a
    /// forced re-render (bulk), it changed since the job started.
    fn rendered_elsewhere(
        &self,
        key: &JobKey,
        priority: Priority,
        before: Option<FileStamp>,
    ) -> bool {
        let fresh = matches!(
            self.cache.metatile_state(&key.style, key.meta),
            Ok(MetatileState::Fresh)
        );
        let now = self.cache.disk().stamp(&key.style, key.meta).ok().flatten();
        fresh && (priority != Priority::Bulk || now != before)
    }

    fn count(&self, key: &JobKey, priority: Priority, outcome: &str) {
        self.metrics
            .renders
            .with_label_values(&[key.style.as_str(), priority.as_str(), outcome])
            .inc();
    }

    /// Logs and counts a failed job once, and hands the failure to its waiters.
    fn failed(&self, key: &JobKey, priority: Priority, failure: RenderFailure) -> RenderFailure {
        tracing::error!(
            style = %key.style,
            meta = %key.meta,
            priority = priority.as_str(),
            error = %crate::cache::error_chain(&failure),
            "render failed"
        );
        self.count(key, priority, "error");
        failure
    }
}

impl RenderBackend for MetatileBackend {
    type Fetched = Fetched;

    fn fetch(
        self: Arc<Self>,
        key: JobKey,
        priority: Priority,
    ) -> BoxFuture<'static, Result<Fetched, RenderFailure>> {
        Box::pin(async move {
            let started = Instant::now();
            let Some(style) = self.styles.get(&key.style).cloned() else {
                let failure = RenderFailure::new(format!("style {} is not loaded", key.style));
                return Err(self.failed(&key, priority, failure));
            };
            let mut lock = None;
            if let Some(locks) = &self.locks {
                let before = self.cache.disk().stamp(&key.style, key.meta).ok().flatten();
                let (guard, waited) = locks.acquire(&key.style, key.meta).await;
                lock = guard;
                if self.rendered_elsewhere(&key, priority, before) {
                    tracing::debug!(style = %key.style, meta = %key.meta, waited, "rendered by another node meanwhile");
                    return Ok(Fetched {
                        style,
                        rows: None,
                        started,
                        _lock: lock,
                    });
                }
            }
            match self.source.query_metatile(&style, key.meta).await {
                Ok(rows) => {
                    self.metrics
                        .db_query_seconds
                        .observe(rows.timings().query.as_secs_f64());
                    Ok(Fetched {
                        style,
                        rows: Some(rows),
                        started,
                        _lock: lock,
                    })
                }
                Err(e) => {
                    let failure = RenderFailure::data_unavailable(e);
                    Err(self.failed(&key, priority, failure))
                }
            }
        })
    }

    fn paint_and_store(
        &self,
        key: &JobKey,
        priority: Priority,
        fetched: Fetched,
    ) -> Result<(), RenderFailure> {
        let Fetched {
            style,
            rows,
            started,
            _lock,
        } = fetched;
        let Some(rows) = rows else {
            // Another node wrote the file: what memory holds of the metatile is old.
            self.cache.forget(&key.style, key.meta);
            if let Some(locks) = &self.locks {
                locks.skipped(&key.style);
            }
            return Ok(());
        };
        let result = rows
            .decode(&style)
            .map_err(|e| RenderFailure::caused_by("the metatile's data", e))
            .and_then(|data| {
                render_metatile(&style, key.meta, &data, &self.fonts, self.png)
                    .map_err(|e| RenderFailure::caused_by("painting", e))
            })
            .and_then(|rendered| {
                self.cache
                    .store_metatile(&key.style, key.meta, &rendered.tiles)
                    .map_err(|e| RenderFailure::caused_by("storing the metatile", e))
                    .map(|()| rendered)
            });
        let rendered = result.map_err(|failure| self.failed(key, priority, failure))?;
        let secs = started.elapsed().as_secs_f64();
        self.metrics
            .render_seconds
            .with_label_values(&[key.style.as_str(), &key.meta.z.to_string()])
            .observe(secs);
        self.count(key, priority, "ok");
        tracing::info!(
            style = %key.style,
            meta.z = key.meta.z,
            meta.x = key.meta.x,
            meta.y = key.meta.y,
            priority = priority.as_str(),
            render.ms = (secs * 1000.0) as u64,
            bytes = rendered.bytes(),
            "rendered metatile"
        );
        Ok(())
    }
}
