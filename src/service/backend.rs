//! [`MetatileBackend`]: what one render job does in the pool. The fetch stage queries
//! PostGIS (I/O on the runtime); the paint stage, on a render thread, decodes the rows,
//! paints with tiny-skia, encodes the tiles and writes the metatile. A failure is logged
//! here, once, with its cause; every waiter of the job gets it without logging again.
//! Faults outside the server (database, disk, permissions) are warnings counted by
//! cause; a fetch refused because the database is known to be down is not logged again
//! (the outage was, once). While the database is down the pool holds stale and bulk
//! jobs in their queues ([`RenderBackend::paused`]) instead of failing them.

use super::fault::Fault;
use super::metrics::Metrics;
use crate::cache::TileCache;
use crate::queue::{JobKey, Priority, RenderBackend, RenderFailure};
use crate::render::{render_metatile, PngMode};
use crate::source::{PostgisSource, RawMetatile, SourceError};
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
}

/// What the fetch stage hands to a render thread: the rows, not yet decoded.
pub struct Fetched {
    style: Arc<Style>,
    rows: RawMetatile,
    started: Instant,
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
        }
    }

    fn count(&self, key: &JobKey, priority: Priority, outcome: &str) {
        self.metrics
            .renders
            .with_label_values(&[key.style.as_str(), priority.as_str(), outcome])
            .inc();
    }

    /// Logs and counts a failed job once, and hands the failure to its waiters.
    fn failed(&self, key: &JobKey, priority: Priority, failure: RenderFailure) -> RenderFailure {
        self.count(key, priority, "error");
        let refused = failure
            .cause()
            .and_then(|c| c.downcast_ref::<SourceError>())
            .is_some_and(|e| matches!(e, SourceError::Unavailable { .. }));
        match Fault::of(&failure) {
            Some(fault) => {
                self.metrics
                    .render_faults
                    .with_label_values(&[fault.as_str()])
                    .inc();
                if refused {
                    tracing::debug!(
                        style = %key.style,
                        meta = %key.meta,
                        priority = priority.as_str(),
                        "render refused: the database is unavailable"
                    );
                } else {
                    tracing::warn!(
                        style = %key.style,
                        meta = %key.meta,
                        priority = priority.as_str(),
                        cause = fault.as_str(),
                        error = %crate::cache::error_chain(&failure),
                        "render failed"
                    );
                }
            }
            None => tracing::error!(
                style = %key.style,
                meta = %key.meta,
                priority = priority.as_str(),
                error = %crate::cache::error_chain(&failure),
                "render failed"
            ),
        }
        failure
    }
}

impl RenderBackend for MetatileBackend {
    type Fetched = Fetched;

    fn paused(&self) -> Option<BoxFuture<'static, ()>> {
        let health = self.source.health()?;
        if health.is_healthy() {
            return None;
        }
        Some(Box::pin(health.until_healthy()))
    }

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
            match self.source.query_metatile(&style, key.meta).await {
                Ok(rows) => {
                    self.metrics
                        .db_query_seconds
                        .observe(rows.timings().query.as_secs_f64());
                    Ok(Fetched {
                        style,
                        rows,
                        started,
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
        } = fetched;
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
