//! [`TileService`]: the request flow behind every tile URL — memory, disk, then a
//! single-flight render — plus the [`MetatileBackend`] the render pool drives.
//! HTTP-free, so the admin API, `seed` and tests use the same paths as web maps.

use crate::cache::{CachedTile, Lookup, TileCache};
use crate::metrics::{LookupResult, Metrics};
use crate::queue::{
    JobKey, Priority, RenderBackend, RenderFailure, RenderPool, Submit, SubmitError,
};
use crate::render::{render_metatile, PngMode};
use crate::source::{MetatileData, PostgisSource};
use crate::style::{Style, StyleSet};
use crate::text::FontSet;
use crate::tile::{StyleName, TileCoord};
use futures_util::future::BoxFuture;
use prometheus::IntCounter;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ServiceError {
    #[error("unknown style {0}")]
    UnknownStyle(String),
    #[error("zoom {z} is outside the style's range {min}-{max}")]
    ZoomOutOfRange { z: u8, min: u8, max: u8 },
    #[error("the render queue is full")]
    QueueFull,
    #[error("the render did not finish within the miss timeout")]
    MissTimeout,
    #[error("shutting down")]
    ShuttingDown,
    #[error("render failed: {0}")]
    RenderFailed(String),
}

/// A tile ready to send, with the caching policy that applies to it.
#[derive(Debug, Clone)]
pub struct ServedTile<'a> {
    pub tile: Arc<CachedTile>,
    pub stale: bool,
    /// `public, max-age=N, stale-while-revalidate=M`: the style's max-age, or
    /// `server.stale_max_age_secs` for a stale tile. Formatted once per style and
    /// borrowed from the service (no count shared by all threads to bump).
    pub cache_control: &'a str,
}

/// Timing knobs of the request flow.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    pub miss_timeout: Duration,
    pub stale_max_age_secs: u64,
}

pub type Pool = RenderPool<MetatileBackend>;

pub struct TileService {
    styles: Arc<StyleSet>,
    cache: Arc<TileCache>,
    pool: Arc<Pool>,
    metrics: Arc<Metrics>,
    options: ServiceOptions,
    /// Every served style with what a hit needs, found by one (fast) hash of the name.
    served: HashMap<String, ServedStyle, foldhash::fast::RandomState>,
}

impl ServedStyle {
    fn count_lookup(&self, result: LookupResult) {
        let i = match result {
            LookupResult::Memory => 0,
            LookupResult::Disk => 1,
            LookupResult::Stale => 2,
            LookupResult::Miss => 3,
        };
        self.lookups[i].inc();
    }
}

/// A style as the request flow needs it: the style, its `tile_lookups` counters (resolved
/// once: a hit costs one increment) and its Cache-Control values (formatted once).
struct ServedStyle {
    style: Arc<Style>,
    lookups: [IntCounter; 4],
    fresh_cache_control: String,
    stale_cache_control: String,
}

impl TileService {
    pub fn new(
        styles: Arc<StyleSet>,
        cache: Arc<TileCache>,
        pool: Arc<Pool>,
        metrics: Arc<Metrics>,
        options: ServiceOptions,
    ) -> Self {
        let served = styles
            .iter()
            .map(|style| {
                let counter = |r: LookupResult| {
                    metrics
                        .tile_lookups
                        .with_label_values(&[style.name.as_str(), r.as_str()])
                };
                let cache_control = |max_age: u64| {
                    format!(
                        "public, max-age={max_age}, stale-while-revalidate={}",
                        style.stale_while_revalidate_secs
                    )
                };
                let served = ServedStyle {
                    style: style.clone(),
                    lookups: [
                        counter(LookupResult::Memory),
                        counter(LookupResult::Disk),
                        counter(LookupResult::Stale),
                        counter(LookupResult::Miss),
                    ],
                    fresh_cache_control: cache_control(style.max_age_secs),
                    stale_cache_control: cache_control(options.stale_max_age_secs),
                };
                (style.name.as_str().to_string(), served)
            })
            .collect();
        Self {
            styles,
            cache,
            pool,
            metrics,
            options,
            served,
        }
    }

    pub fn styles(&self) -> &Arc<StyleSet> {
        &self.styles
    }

    pub fn cache(&self) -> &Arc<TileCache> {
        &self.cache
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The style serving `name`, or why there is none.
    pub fn style(&self, name: &StyleName) -> Result<&Arc<Style>, ServiceError> {
        self.served_style(name.as_str()).map(|served| &served.style)
    }

    fn served_style(&self, name: &str) -> Result<&ServedStyle, ServiceError> {
        self.served
            .get(name)
            .ok_or_else(|| ServiceError::UnknownStyle(name.to_string()))
    }

    /// Memory -> disk -> render. A stale tile is served at once and queued for a
    /// background re-render; a miss waits (up to the miss timeout) for its metatile.
    /// `name` needs no validation: only names of loaded styles are found.
    pub async fn get_tile(
        &self,
        name: &str,
        tile: TileCoord,
    ) -> Result<ServedTile<'_>, ServiceError> {
        let served = self.served_style(name)?;
        let style = &served.style;
        if tile.z < style.minzoom || tile.z > style.maxzoom {
            return Err(ServiceError::ZoomOutOfRange {
                z: tile.z,
                min: style.minzoom,
                max: style.maxzoom,
            });
        }
        if let Some(found) = self.lookup(served, tile, true) {
            return Ok(found);
        }
        served.count_lookup(LookupResult::Miss);
        let key = JobKey {
            style: style.name.clone(),
            meta: tile.metatile(),
        };
        let waiter = match self.pool.submit(key, Priority::Interactive) {
            Ok(Submit::Queued(w)) => w,
            Ok(Submit::Joined(w)) => {
                self.metrics.coalesced_requests.inc();
                w
            }
            Err(SubmitError::QueueFull(p)) => {
                self.metrics
                    .render_rejected
                    .with_label_values(&[p.as_str()])
                    .inc();
                return Err(ServiceError::QueueFull);
            }
            Err(SubmitError::ShuttingDown) => return Err(ServiceError::ShuttingDown),
        };
        match tokio::time::timeout(self.options.miss_timeout, waiter.wait()).await {
            Err(_) => {
                self.metrics.miss_timeouts.inc();
                Err(ServiceError::MissTimeout)
            }
            Ok(Err(failure)) => Err(ServiceError::RenderFailed(failure.to_string())),
            Ok(Ok(())) => self.lookup(served, tile, false).ok_or_else(|| {
                ServiceError::RenderFailed(format!(
                    "tile {tile} missing after its metatile was rendered"
                ))
            }),
        }
    }

    /// A cache lookup; `None` is a miss (a corrupt file counts as one, and is logged).
    fn lookup<'a>(
        &self,
        served: &'a ServedStyle,
        tile: TileCoord,
        count: bool,
    ) -> Option<ServedTile<'a>> {
        let style = &served.style;
        let name = &style.name;
        let (found, result) = match self.cache.lookup(name, tile) {
            Ok(Lookup::Memory(t)) => (t, LookupResult::Memory),
            Ok(Lookup::Disk(t)) => (t, LookupResult::Disk),
            Ok(Lookup::Stale(t)) => (t, LookupResult::Stale),
            Ok(Lookup::Miss) => return None,
            Err(e) => {
                tracing::warn!(style = %name, tile = %tile, error = %e, "cache read failed; rendering");
                return None;
            }
        };
        if count {
            served.count_lookup(result);
        }
        let stale = result == LookupResult::Stale;
        if stale {
            self.refresh_in_background(name, tile);
        }
        let cache_control = if stale {
            &served.stale_cache_control
        } else {
            &served.fresh_cache_control
        };
        Some(ServedTile {
            tile: found,
            stale,
            cache_control,
        })
    }

    fn refresh_in_background(&self, name: &StyleName, tile: TileCoord) {
        let key = JobKey {
            style: name.clone(),
            meta: tile.metatile(),
        };
        if let Err(SubmitError::QueueFull(p)) = self.pool.submit(key, Priority::Stale) {
            self.metrics
                .render_rejected
                .with_label_values(&[p.as_str()])
                .inc();
        }
    }

    /// Refreshes the gauges that are read from live state rather than counted.
    pub fn update_gauges(&self) {
        let stats = self.pool.stats();
        for p in Priority::ALL {
            self.metrics
                .queue_depth
                .with_label_values(&[p.as_str()])
                .set(stats.queued[p as usize] as i64);
        }
        self.metrics.render_threads_busy.set(stats.painting as i64);
        self.metrics.jobs_running.set(stats.running as i64);
        let mem = self.cache.memory_stats();
        self.metrics.memory_cache_bytes.set(mem.bytes as i64);
        self.metrics.memory_cache_entries.set(mem.entries as i64);
    }
}

/// Fetches from PostGIS, paints with tiny-skia, writes the metatile: what one render job
/// does in the pool.
pub struct MetatileBackend {
    styles: Arc<StyleSet>,
    source: PostgisSource,
    cache: Arc<TileCache>,
    png: PngMode,
    metrics: Arc<Metrics>,
    /// The process's fonts, shared by every render thread.
    fonts: Arc<FontSet>,
}

/// What the fetch stage hands to a render thread.
pub struct Fetched {
    style: Arc<Style>,
    data: MetatileData,
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
                self.count(&key, priority, "error");
                return Err(RenderFailure::new(format!("unknown style {}", key.style)));
            };
            match self.source.fetch_metatile(&style, key.meta).await {
                Ok(data) => {
                    self.metrics
                        .db_query_seconds
                        .observe(data.timings.query.as_secs_f64());
                    Ok(Fetched {
                        style,
                        data,
                        started,
                    })
                }
                Err(e) => {
                    tracing::error!(style = %key.style, meta = %key.meta, error = %e, "metatile fetch failed");
                    self.count(&key, priority, "error");
                    Err(RenderFailure::new(e.to_string()))
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
        let result = render_metatile(
            &fetched.style,
            key.meta,
            &fetched.data,
            &self.fonts,
            self.png,
        )
        .map_err(|e| RenderFailure::new(e.to_string()))
        .and_then(|rendered| {
            self.cache
                .store_metatile(&key.style, key.meta, &rendered.tiles)
                .map_err(|e| RenderFailure::new(format!("cannot store metatile: {e}")))
                .map(|()| rendered)
        });
        match result {
            Ok(rendered) => {
                let secs = fetched.started.elapsed().as_secs_f64();
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
                    bytes = rendered.tiles.iter().map(Vec::len).sum::<usize>(),
                    "rendered metatile"
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!(style = %key.style, meta = %key.meta, error = %e, "render failed");
                self.count(key, priority, "error");
                Err(e)
            }
        }
    }
}
