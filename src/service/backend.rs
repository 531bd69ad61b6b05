//! [`MetatileBackend`]: what one render job does in the pool. The fetch stage queries
//! PostGIS (I/O on the runtime); the paint stage, on a render thread, decodes the rows,
//! paints with tiny-skia, encodes the tiles and writes the metatile (and, for styles with
//! interactivity, its UTFGrids from the same rows, into `<style>@grid`). A failure is
//! logged here, once, with its cause; every waiter of the job gets it without logging
//! again. Faults outside the server (database, disk, permissions) are warnings counted
//! by cause; a fetch refused because the database is known to be down is not logged
//! again (the outage was, once). While the database is down the pool holds stale and
//! bulk jobs in their queues ([`RenderBackend::paused`]) instead of failing them.
//!
//! A composite style's job blends its inputs' tiles: an input metatile that is fresh on
//! disk (and not being re-rendered) is read from the cache; any other is queried here and
//! rendered (and stored) on the same render thread first. Rendering inputs inside the
//! composite's own job, rather than waiting for their jobs, keeps the pool free of
//! jobs that wait for other jobs, so it cannot deadlock.
//!
//! With a cache shared by several nodes (`cache.shared`), the fetch stage first takes
//! the metatile's render lock ([`RenderLocks`]), waiting while another node renders it;
//! then, if the file has become fresh meanwhile (and the job was not a forced
//! re-render of a fresh file), the job is done without rendering: the other node's file
//! is what the waiters are served.

use super::fault::Fault;
use super::metrics::Metrics;
use crate::cache::{FileStamp, MetatileState, TileCache};
use crate::fleet::{RenderLockGuard, RenderLocks};
use crate::purge::{Change, Purger};
use crate::queue::{JobKey, Priority, RenderBackend, RenderFailure, RenderPool};
use crate::render::{
    blend_tiles, give_way, render_metatile, BlendInput, PngMode, RenderedMetatile,
};
use crate::source::{PostgisSource, RawMetatile, SourceError};
use crate::style::{LiveStyles, Style, StyleKind};
use crate::text::FontSet;
use crate::tile::MetatileCoord;
use futures_util::future::BoxFuture;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

/// Fetches from PostGIS, paints with tiny-skia, writes the metatile.
pub struct MetatileBackend {
    /// Shared with the tile service; a job takes the style current when it starts.
    styles: Arc<LiveStyles>,
    source: PostgisSource,
    cache: Arc<TileCache>,
    png: PngMode,
    metrics: Arc<Metrics>,
    /// The process's fonts, shared by every render thread.
    fonts: Arc<FontSet>,
    /// The pool running this backend, to see whether a composite's input is being
    /// re-rendered (set once the pool has started).
    pool: Arc<OnceLock<Weak<RenderPool<MetatileBackend>>>>,
    /// Told when a render replaces a metatile file.
    purger: Arc<Purger>,
    /// Render locks across the nodes sharing the cache (`cache.shared`).
    locks: Option<RenderLocks>,
}

/// What the fetch stage hands to a render thread.
pub struct Fetched {
    style: Arc<Style>,
    work: Work,
    started: Instant,
    /// The metatile's render lock, released when the job is done.
    _lock: Option<RenderLockGuard>,
}

enum Work {
    /// A rendered style: its rows, not yet decoded.
    Rows(RawMetatile),
    /// A composite: per input, where its tiles come from.
    Composite(Vec<InputTiles>),
    /// Nothing: another node sharing the cache has just rendered the metatile.
    RenderedElsewhere,
}

enum InputTiles {
    /// Fresh in the cache: read the metatile file.
    Cached(Arc<Style>),
    /// Render it first, from these rows.
    Rows(Arc<Style>, RawMetatile),
}

/// Lets the backend see its own pool once the pool has started.
#[derive(Clone, Default)]
pub struct PoolLink(Arc<OnceLock<Weak<RenderPool<MetatileBackend>>>>);

impl PoolLink {
    pub fn attach(&self, pool: &Arc<RenderPool<MetatileBackend>>) {
        let _ = self.0.set(Arc::downgrade(pool));
    }
}

impl MetatileBackend {
    pub fn new(
        styles: Arc<LiveStyles>,
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
            pool: Arc::default(),
            purger: Arc::new(Purger::disabled()),
            locks: None,
        }
    }

    /// Tells `purger`'s targets when a render replaces a metatile.
    pub fn with_purger(mut self, purger: Arc<Purger>) -> Self {
        self.purger = purger;
        self
    }

    /// Stores a style's metatile; when it replaces a file (one stat, only with purge
    /// targets), caches downstream are told (its tiles and grids share its key).
    fn store(
        &self,
        style: &Style,
        meta: MetatileCoord,
        tiles: &[Vec<u8>],
    ) -> Result<(), crate::cache::CacheError> {
        let replaces = self.purger.is_enabled()
            && matches!(self.cache.disk().stamp(&style.name, meta), Ok(Some(_)));
        self.cache.store_metatile(&style.name, meta, tiles)?;
        if replaces {
            self.purger
                .changed(Change::Metatile(style.name.clone(), meta));
        }
        Ok(())
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

    /// The link to give the pool once it runs ([`PoolLink::attach`]).
    pub fn pool_link(&self) -> PoolLink {
        PoolLink(self.pool.clone())
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
                        error = %crate::errors::error_chain(&failure),
                        "render failed"
                    );
                }
            }
            None => tracing::error!(
                style = %key.style,
                meta = %key.meta,
                priority = priority.as_str(),
                error = %crate::errors::error_chain(&failure),
                "render failed"
            ),
        }
        failure
    }

    /// Whether a composite may read this input's metatile from the cache: fresh, and no
    /// re-render of it queued or running (which would make it newer than what we read).
    fn input_is_current(&self, style: &Style, meta: MetatileCoord) -> bool {
        let fresh = matches!(
            self.cache.metatile_state(&style.name, meta),
            Ok(MetatileState::Fresh)
        );
        let rendering = self.pool.get().and_then(Weak::upgrade).is_some_and(|pool| {
            pool.is_active(&JobKey {
                style: style.name.clone(),
                meta,
            })
        });
        fresh && !rendering
    }

    async fn fetch_composite(
        &self,
        style: &Style,
        meta: MetatileCoord,
    ) -> Result<Vec<InputTiles>, RenderFailure> {
        let mut inputs = Vec::with_capacity(style.inputs().len());
        for input in style.inputs() {
            let Some(input_style) = self.styles.current().get(&input.style).cloned() else {
                return Err(RenderFailure::new(format!(
                    "input style {} is not loaded",
                    input.style
                )));
            };
            if self.input_is_current(&input_style, meta) {
                inputs.push(InputTiles::Cached(input_style));
                continue;
            }
            let rows = self
                .source
                .query_metatile(&input_style, meta)
                .await
                .map_err(|e| RenderFailure::caused_by("an input's data", e))?;
            self.metrics
                .db_query_seconds
                .observe(rows.timings().query.as_secs_f64());
            inputs.push(InputTiles::Rows(input_style, rows));
        }
        Ok(inputs)
    }

    /// Decodes, renders and stores one rendered style's metatile (tiles, then grids).
    fn render_and_store(
        &self,
        style: &Style,
        meta: MetatileCoord,
        rows: RawMetatile,
    ) -> Result<RenderedMetatile, RenderFailure> {
        let data = rows
            .decode_giving_way(style, &give_way)
            .map_err(|e| RenderFailure::caused_by("the metatile's data", e))?;
        let rendered = render_metatile(style, meta, &data, &self.fonts, self.png)
            .map_err(|e| RenderFailure::caused_by("painting", e))?;
        self.store(style, meta, &rendered.tiles)
            .map_err(|e| RenderFailure::caused_by("storing the metatile", e))?;
        if let (Some(grids), Some(grid_name)) = (&rendered.grids, style.grid_name()) {
            self.cache
                .store_metatile(&grid_name, meta, grids)
                .map_err(|e| RenderFailure::caused_by("storing the UTFGrids", e))?;
        }
        Ok(rendered)
    }

    /// Renders what inputs need it, blends, stores the composite's metatile.
    fn blend_and_store(
        &self,
        style: &Style,
        meta: MetatileCoord,
        inputs: Vec<InputTiles>,
    ) -> Result<usize, RenderFailure> {
        let mut tiles: Vec<Vec<Vec<u8>>> = Vec::with_capacity(inputs.len());
        for input in inputs {
            tiles.push(match input {
                InputTiles::Rows(input_style, rows) => {
                    self.render_and_store(&input_style, meta, rows)?.tiles
                }
                InputTiles::Cached(input_style) => {
                    match self.cache.disk().read_metatile(&input_style.name, meta) {
                        Ok(Some((tiles, _))) => tiles,
                        Ok(None) => {
                            return Err(RenderFailure::new(format!(
                                "input {} was removed while the composite was made",
                                input_style.name
                            )))
                        }
                        Err(e) => return Err(RenderFailure::caused_by("reading an input", e)),
                    }
                }
            });
        }
        let blend: Vec<BlendInput<'_>> = style
            .inputs()
            .iter()
            .zip(&tiles)
            .map(|(input, tiles)| BlendInput {
                tiles,
                opacity: input.opacity,
                blend: input.blend,
            })
            .collect();
        let blended = blend_tiles(&blend, style.tile_size, self.png)
            .map_err(|e| RenderFailure::caused_by("blending", e))?;
        self.store(style, meta, &blended)
            .map_err(|e| RenderFailure::caused_by("storing the metatile", e))?;
        Ok(blended.iter().map(Vec::len).sum())
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
            let Some(style) = self.styles.current().get(&key.style).cloned() else {
                let failure = RenderFailure::new(format!("style {} is not loaded", key.style));
                return Err(self.failed(&key, priority, failure));
            };
            let mut lock = None;
            if let (Some(locks), false) =
                (&self.locks, matches!(style.kind, StyleKind::Archive { .. }))
            {
                let before = self.cache.disk().stamp(&key.style, key.meta).ok().flatten();
                let (guard, waited) = locks.acquire(&key.style, key.meta).await;
                lock = guard;
                if self.rendered_elsewhere(&key, priority, before) {
                    tracing::debug!(style = %key.style, meta = %key.meta, waited, "rendered by another node meanwhile");
                    return Ok(Fetched {
                        style,
                        work: Work::RenderedElsewhere,
                        started,
                        _lock: lock,
                    });
                }
            }
            let work = match &style.kind {
                StyleKind::Rendered => match self.source.query_metatile(&style, key.meta).await {
                    Ok(rows) => {
                        self.metrics
                            .db_query_seconds
                            .observe(rows.timings().query.as_secs_f64());
                        Work::Rows(rows)
                    }
                    Err(e) => {
                        let failure = RenderFailure::data_unavailable(e);
                        return Err(self.failed(&key, priority, failure));
                    }
                },
                StyleKind::Composite(_) => match self.fetch_composite(&style, key.meta).await {
                    Ok(inputs) => Work::Composite(inputs),
                    Err(failure) => return Err(self.failed(&key, priority, failure)),
                },
                StyleKind::Archive { .. } => {
                    let failure = RenderFailure::new(format!(
                        "style {} is served from an archive: it is not rendered",
                        key.style
                    ));
                    return Err(self.failed(&key, priority, failure));
                }
            };
            Ok(Fetched {
                style,
                work,
                started,
                _lock: lock,
            })
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
            work,
            started,
            _lock,
        } = fetched;
        let result = match work {
            Work::Rows(rows) => self
                .render_and_store(&style, key.meta, rows)
                .map(|r| r.bytes()),
            Work::Composite(inputs) => self.blend_and_store(&style, key.meta, inputs),
            Work::RenderedElsewhere => {
                // Another node wrote the files: what memory holds of them is old.
                self.cache.forget(&key.style, key.meta);
                if let Some(grid_name) = style.grid_name() {
                    self.cache.forget(&grid_name, key.meta);
                }
                if let Some(locks) = &self.locks {
                    locks.skipped(&key.style);
                }
                return Ok(());
            }
        };
        let bytes = result.map_err(|failure| self.failed(key, priority, failure))?;
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
            bytes,
            "rendered metatile"
        );
        Ok(())
    }
}
