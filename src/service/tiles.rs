//! [`TileService`]: the request flow behind every tile URL — memory, disk, then a
//! single-flight render. HTTP-free, so the admin API, `seed` and tests use the same
//! paths as web maps; generic over the [`RenderBackend`], so the flow is unit-tested
//! with a backend that counts and holds renders.

use super::backend::MetatileBackend;
use super::fault::Fault;
use super::limits::{ClientId, Limits, Refusal};
use super::metrics::{LookupResult, Metrics};
use super::placeholder::{Placeholder, Placeholders};
use crate::archive::{ArchiveError, ArchiveReader, ArchiveStamp};
use crate::cache::FileStamp;
use crate::cache::{CachedTile, Lookup, TileCache};
use crate::purge::Purger;
use crate::queue::{
    JobKey, Priority, RenderBackend, RenderFailure, RenderPool, Submit, SubmitError,
};
use crate::source::{SourceHealth, Unavailable};
use crate::style::{LiveStyles, Style, StyleSet};
use crate::tile::{StyleName, TileCoord};
use prometheus::IntCounter;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why a tile could not be served. Says what happened, keeps the cause; the status
/// code is decided by the HTTP layer alone.
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
    /// A miss while the database is known to be down: refused at once, without queueing
    /// a render that would fail (logged once, when the database went down); a style
    /// with placeholders answers it with one.
    #[error("the tile is not cached and the database is unavailable")]
    SourceUnavailable(#[source] Unavailable),
    /// Logged once by the backend where it failed; not again here.
    #[error("the render failed")]
    RenderFailed(#[source] RenderFailure),
    /// The metatile was stored, yet reading the tile back failed: a bug or a disk fault.
    #[error("tile {0} missing after its metatile was rendered")]
    MissingAfterRender(TileCoord),
    #[error("style {0} has no UTFGrid (no interactivity section)")]
    NoGrid(String),
    /// An archive-backed style does not hold this tile.
    #[error("the archive of style {style} has no tile {tile}")]
    NotInArchive { style: String, tile: TileCoord },
    /// An archive-backed style's file could not be read.
    #[error("style {style}: reading its archive failed")]
    Archive {
        style: String,
        #[source]
        source: Arc<ArchiveError>,
    },
    /// The client spent its budget of requests or renders.
    #[error("over the client's {} budget", .0.budget.as_str())]
    Throttled(Refusal),
    /// The node started as many renders this second as it may.
    #[error("at the node's render ceiling")]
    RenderCeiling(Refusal),
}

impl ServiceError {
    /// Whether the tile could be served if it could be rendered now: the outcomes a
    /// placeholder may stand in for.
    pub fn cannot_render_now(&self) -> bool {
        matches!(
            self,
            ServiceError::QueueFull
                | ServiceError::MissTimeout
                | ServiceError::SourceUnavailable(_)
                | ServiceError::RenderFailed(_)
                | ServiceError::RenderCeiling(_)
        )
    }

    /// The `reason` label of a placeholder served for this error.
    fn placeholder_reason(&self) -> &'static str {
        match self {
            ServiceError::QueueFull => "queue_full",
            ServiceError::MissTimeout => "miss_timeout",
            ServiceError::SourceUnavailable(_) => "database_unavailable",
            ServiceError::RenderFailed(_) => "render_failed",
            ServiceError::RenderCeiling(_) => "render_ceiling",
            _ => "other",
        }
    }
}

impl ServiceError {
    /// What outside the server caused this, if anything did: such failures are worth a
    /// retry; the others are bugs.
    pub fn fault(&self) -> Option<Fault> {
        match self {
            ServiceError::SourceUnavailable(_) => Some(Fault::Database),
            ServiceError::RenderFailed(failure) => Fault::of(failure),
            _ => None,
        }
    }
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
    /// Set when this is a placeholder cut from this ancestor, not the tile itself: send
    /// no validators, say so in a header.
    pub placeholder: Option<TileCoord>,
}

/// Timing knobs of the request flow.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    pub miss_timeout: Duration,
    pub stale_max_age_secs: u64,
    /// `max-age` of placeholders (styles with `placeholder = true`).
    pub placeholder_max_age_secs: u64,
}

pub struct TileService<B: RenderBackend = MetatileBackend> {
    /// Shared with the render backend; replaced whole by a style reload.
    styles: Arc<LiveStyles>,
    cache: Arc<TileCache>,
    pool: Arc<RenderPool<B>>,
    metrics: Arc<Metrics>,
    options: ServiceOptions,
    /// Every served style with what a hit needs, found by one (fast) hash of the name;
    /// replaced whole by a style reload.
    served: RwLock<ServedMap>,
    /// The database's health, when the backend reads one: misses fail fast while down.
    health: Option<Arc<SourceHealth>>,
    /// Client budgets; `None` = unlimited.
    limits: Option<Arc<Limits>>,
    placeholders: Placeholders,
    /// `Cache-Control` of a placeholder.
    placeholder_cache_control: String,
    /// Caches downstream to tell about changed metatiles; disabled by default.
    purger: Arc<Purger>,
    /// Whether any served style has access rules (keys, origins).
    access_rules: std::sync::atomic::AtomicBool,
}

type ServedMap = HashMap<String, Arc<ServedStyle>, foldhash::fast::RandomState>;

/// Text kept for the life of the process, once per distinct value: the Cache-Control
/// values of styles, which responses borrow without counting references while a reload
/// may replace the style. Bounded by the distinct max-ages ever configured.
fn intern(text: String) -> &'static str {
    static SEEN: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(found) = seen.iter().find(|s| **s == text) {
        return found;
    }
    let leaked: &'static str = Box::leak(text.into_boxed_str());
    seen.push(leaked);
    leaked
}

/// The served styles of `styles`; an archive-backed style keeps the open archive of
/// the same name in `old` (a reload does not reopen archives).
fn served_map(
    styles: &StyleSet,
    metrics: &Metrics,
    stale_max_age_secs: u64,
    old: Option<&ServedMap>,
) -> ServedMap {
    styles
        .iter()
        .map(|style| {
            let cache_control = |max_age: u64| {
                intern(format!(
                    "public, max-age={max_age}, stale-while-revalidate={}",
                    style.stale_while_revalidate_secs
                ))
            };
            let archive = old
                .and_then(|old| old.get(style.name.as_str()))
                .and_then(|served| served.archive.clone());
            let served = ServedStyle {
                style: style.clone(),
                tiles: Tree::new(style.name.clone(), metrics),
                grid: style.grid_name().map(|g| Tree::new(g, metrics)),
                archive,
                fresh_cache_control: cache_control(style.max_age_secs),
                stale_cache_control: cache_control(stale_max_age_secs),
            };
            (style.name.as_str().to_string(), Arc::new(served))
        })
        .collect()
}

/// A style as the request flow needs it: the style, its cache trees with their
/// `tile_lookups` counters (resolved once: a hit costs one increment), its Cache-Control
/// values (formatted once) and, for an archive-backed style, its archive.
struct ServedStyle {
    style: Arc<Style>,
    tiles: Tree,
    /// `<style>@grid`, for styles with interactivity.
    grid: Option<Tree>,
    archive: Option<Arc<ArchiveTiles>>,
    fresh_cache_control: &'static str,
    stale_cache_control: &'static str,
}

/// One cache tree (the tiles, or the UTFGrids) and its lookup counters.
struct Tree {
    name: StyleName,
    lookups: [IntCounter; 4],
}

impl Tree {
    fn new(name: StyleName, metrics: &Metrics) -> Self {
        let counter = |r: LookupResult| {
            metrics
                .tile_lookups
                .with_label_values(&[name.as_str(), r.as_str()])
        };
        Self {
            lookups: [
                counter(LookupResult::Memory),
                counter(LookupResult::Disk),
                counter(LookupResult::Stale),
                counter(LookupResult::Miss),
            ],
            name,
        }
    }

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

/// The archive of an archive-backed style: its open reader, re-opened when the file at
/// its path is replaced (checked at most every `revalidate`).
struct ArchiveTiles {
    current: Mutex<(Arc<ArchiveReader>, Instant)>,
    revalidate: Duration,
}

impl ArchiveTiles {
    /// The reader of the file now at the path.
    async fn reader(&self) -> Result<Arc<ArchiveReader>, ArchiveError> {
        let (reader, checked) = {
            let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            (current.0.clone(), current.1)
        };
        if checked.elapsed() < self.revalidate {
            return Ok(reader);
        }
        let now = ArchiveStamp::of(reader.path());
        let reader = match now {
            Ok(stamp) if stamp != reader.stamp() => {
                let reopened = Arc::new(ArchiveReader::open(reader.path(), reader.format()).await?);
                tracing::info!(path = %reader.path().display(), "archive replaced: reopened");
                reopened
            }
            // Gone or unreadable: keep serving the file we hold open.
            _ => reader,
        };
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = (reader.clone(), Instant::now());
        Ok(reader)
    }
}

fn file_stamp(s: ArchiveStamp) -> FileStamp {
    FileStamp {
        mtime: s.mtime,
        dev: s.dev,
        ino: s.ino,
        len: s.len,
    }
}

impl<B: RenderBackend> TileService<B> {
    /// `styles` is shared with the render backend: [`TileService::replace_styles`]
    /// replaces it for both.
    pub fn new(
        styles: Arc<LiveStyles>,
        cache: Arc<TileCache>,
        pool: Arc<RenderPool<B>>,
        metrics: Arc<Metrics>,
        options: ServiceOptions,
    ) -> Self {
        let served = RwLock::new(served_map(
            &styles.current(),
            &metrics,
            options.stale_max_age_secs,
            None,
        ));
        for style in styles.current().iter() {
            // Every blob read from disk is checked to be a PNG of the style's size
            // before it is served or kept in memory.
            cache.expect_png_tiles(&style.name, style.tile_size);
        }
        let placeholder_cache_control =
            format!("public, max-age={}", options.placeholder_max_age_secs);
        let service = Self {
            styles,
            cache,
            pool,
            metrics,
            placeholders: Placeholders::new(Duration::from_secs(options.placeholder_max_age_secs)),
            placeholder_cache_control,
            options,
            served,
            health: None,
            limits: None,
            purger: Arc::new(Purger::disabled()),
            access_rules: std::sync::atomic::AtomicBool::new(false),
        };
        service.note_access_rules(&service.styles());
        service
    }

    fn note_access_rules(&self, styles: &StyleSet) {
        let any = styles
            .iter()
            .any(|s| s.access != crate::style::StyleAccess::default());
        self.access_rules
            .store(any, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether any served style has access rules (a key, allowed origins).
    pub fn has_access_rules(&self) -> bool {
        self.access_rules.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Tells `purger`'s targets about every metatile this service changes.
    pub fn with_purger(mut self, purger: Arc<Purger>) -> Self {
        self.purger = purger;
        self
    }

    pub fn purger(&self) -> &Arc<Purger> {
        &self.purger
    }

    /// Serves `styles` from now on (renders already started keep their style; open
    /// archives are kept by name).
    pub fn replace_styles(&self, styles: Arc<StyleSet>) {
        let mut served = self.served.write().unwrap_or_else(PoisonError::into_inner);
        let map = served_map(
            &styles,
            &self.metrics,
            self.options.stale_max_age_secs,
            Some(&served),
        );
        for style in styles.iter() {
            self.cache.expect_png_tiles(&style.name, style.tile_size);
        }
        self.note_access_rules(&styles);
        self.styles.replace(styles);
        *served = map;
    }

    /// Misses fail fast ([`ServiceError::SourceUnavailable`]) while `health` says the
    /// database is down.
    pub fn with_source_health(mut self, health: Arc<SourceHealth>) -> Self {
        self.health = Some(health);
        self
    }

    pub fn source_health(&self) -> Option<&Arc<SourceHealth>> {
        self.health.as_ref()
    }

    /// Serves the archive-backed styles from these open archives (re-opened when their
    /// file is replaced, checked at most every `revalidate`).
    pub fn with_archives(
        mut self,
        archives: Vec<(StyleName, ArchiveReader)>,
        revalidate: Duration,
    ) -> Self {
        let served = self
            .served
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for (name, reader) in archives {
            // Only just built: no other reference to the entry yet.
            if let Some(served) = served.get_mut(name.as_str()).and_then(Arc::get_mut) {
                served.archive = Some(Arc::new(ArchiveTiles {
                    current: Mutex::new((Arc::new(reader), Instant::now())),
                    revalidate,
                }));
            }
        }
        self
    }

    /// The archive an archive-backed style serves now.
    pub async fn archive(&self, name: &StyleName) -> Option<Arc<ArchiveReader>> {
        let archive = self.served_style(name.as_str()).ok()?.archive.clone()?;
        archive.reader().await.ok()
    }

    /// Applies client budgets to [`TileService::get_tile_for`].
    pub fn with_limits(mut self, limits: Arc<Limits>) -> Self {
        self.limits = Some(limits);
        self
    }

    pub fn limits(&self) -> Option<&Arc<Limits>> {
        self.limits.as_ref()
    }

    /// The styles served now (a snapshot: a reload does not change it).
    pub fn styles(&self) -> Arc<StyleSet> {
        self.styles.current()
    }

    pub fn cache(&self) -> &Arc<TileCache> {
        &self.cache
    }

    pub fn pool(&self) -> &Arc<RenderPool<B>> {
        &self.pool
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The style serving `name`, or why there is none.
    pub fn style(&self, name: &StyleName) -> Result<Arc<Style>, ServiceError> {
        self.served_style(name.as_str())
            .map(|served| served.style.clone())
    }

    /// The style serving `name` (as in a URL: `osm`, `osm@2x`), if any.
    pub fn style_named(&self, name: &str) -> Option<Arc<Style>> {
        let served = self.served.read().unwrap_or_else(PoisonError::into_inner);
        served.get(name).map(|served| served.style.clone())
    }

    /// The served style of `name` as it is now (a reload may replace it meanwhile).
    fn served_style(&self, name: &str) -> Result<Arc<ServedStyle>, ServiceError> {
        let served = self.served.read().unwrap_or_else(PoisonError::into_inner);
        served
            .get(name)
            .cloned()
            .ok_or_else(|| ServiceError::UnknownStyle(name.to_string()))
    }

    /// Memory -> disk -> render. A stale tile is served at once and queued for a
    /// background re-render; a miss waits (up to the miss timeout) for its metatile,
    /// whose render goes on after a timeout and lands in the cache. An archive-backed
    /// style's tiles come from memory, else from its archive.
    /// `name` needs no validation: only names of loaded styles are found.
    /// No budget applies (seeding, tests): see [`TileService::get_tile_for`].
    pub async fn get_tile(
        &self,
        name: &str,
        tile: TileCoord,
    ) -> Result<ServedTile<'_>, ServiceError> {
        self.get_tile_for(name, tile, None).await
    }

    /// [`TileService::get_tile`] on behalf of `client`: the request spends one of its
    /// requests, and a miss that starts a render one of its renders and one of the
    /// node's (a miss joining a render under way spends none). With a style that
    /// enables placeholders, a miss that cannot be rendered now is answered with one.
    pub async fn get_tile_for(
        &self,
        name: &str,
        tile: TileCoord,
        client: Option<&ClientId>,
    ) -> Result<ServedTile<'_>, ServiceError> {
        if let (Some(limits), Some(client)) = (&self.limits, client) {
            limits
                .check_request(client)
                .map_err(ServiceError::Throttled)?;
        }
        let served = self.served_style(name)?;
        check_zoom(&served.style, tile)?;
        if let Some(archive) = &served.archive {
            return self.archive_tile(&served, archive, tile).await;
        }
        self.cached_or_rendered(&served, &served.tiles, tile, client)
            .await
    }

    /// The UTFGrid of a tile (`/{style}/{z}/{x}/{y}.grid.json`): like a tile, from the
    /// `<style>@grid` tree, made by the render of the style's metatile. No budget
    /// applies: see [`TileService::get_grid_for`].
    pub async fn get_grid(
        &self,
        name: &str,
        tile: TileCoord,
    ) -> Result<ServedTile<'_>, ServiceError> {
        self.get_grid_for(name, tile, None).await
    }

    /// [`TileService::get_grid`] on behalf of `client`, whose budgets it spends as a
    /// tile request does (never answered with a placeholder).
    pub async fn get_grid_for(
        &self,
        name: &str,
        tile: TileCoord,
        client: Option<&ClientId>,
    ) -> Result<ServedTile<'_>, ServiceError> {
        if let (Some(limits), Some(client)) = (&self.limits, client) {
            limits
                .check_request(client)
                .map_err(ServiceError::Throttled)?;
        }
        let served = self.served_style(name)?;
        let Some(grid) = &served.grid else {
            return Err(ServiceError::NoGrid(name.to_string()));
        };
        check_zoom(&served.style, tile)?;
        self.cached_or_rendered(&served, grid, tile, client).await
    }

    async fn archive_tile<'a>(
        &self,
        served: &ServedStyle,
        archive: &ArchiveTiles,
        tile: TileCoord,
    ) -> Result<ServedTile<'a>, ServiceError> {
        let name = &served.style.name;
        let failed = |e: ArchiveError| {
            tracing::error!(style = %name, tile = %tile, error = %crate::errors::error_chain(&e), "archive read failed");
            ServiceError::Archive {
                style: name.to_string(),
                source: Arc::new(e),
            }
        };
        let reader = archive.reader().await.map_err(failed)?;
        let stamp = file_stamp(reader.stamp());
        if let Some(found) = self.cache.memory_get(name, tile, stamp) {
            served.tiles.count_lookup(LookupResult::Memory);
            return Ok(ServedTile {
                tile: found,
                stale: false,
                cache_control: served.fresh_cache_control,
                placeholder: None,
            });
        }
        let Some(bytes) = reader.get(tile).await.map_err(failed)? else {
            served.tiles.count_lookup(LookupResult::Miss);
            return Err(ServiceError::NotInArchive {
                style: name.to_string(),
                tile,
            });
        };
        served.tiles.count_lookup(LookupResult::Disk);
        Ok(ServedTile {
            tile: self.cache.memory_put(name, tile, bytes, stamp),
            stale: false,
            cache_control: served.fresh_cache_control,
            placeholder: None,
        })
    }

    /// A tile (or grid) of a cache tree, rendering the style's metatile on a miss.
    async fn cached_or_rendered<'a>(
        &'a self,
        served: &ServedStyle,
        tree: &Tree,
        tile: TileCoord,
        client: Option<&ClientId>,
    ) -> Result<ServedTile<'a>, ServiceError> {
        let style = &served.style;
        if let Some(found) = self.lookup(served, tree, tile, true) {
            return Ok(found);
        }
        tree.count_lookup(LookupResult::Miss);
        match self.render(served, tree, tile, client).await {
            // A placeholder is a scaled-up ancestor image: tiles only, never grids.
            Err(e)
                if style.placeholder
                    && e.cannot_render_now()
                    && std::ptr::eq(tree, &served.tiles) =>
            {
                self.placeholder(served, tile, e).await
            }
            answer => answer,
        }
    }

    /// Renders the metatile of a missing tile (or grid) of `tree`, or joins its render,
    /// and waits for it. While the database is known to be down it is refused at once.
    async fn render<'a>(
        &self,
        served: &ServedStyle,
        tree: &Tree,
        tile: TileCoord,
        client: Option<&ClientId>,
    ) -> Result<ServedTile<'a>, ServiceError> {
        if let Some(Err(down)) = self.health.as_ref().map(|h| h.check()) {
            return Err(self.refused(ServiceError::SourceUnavailable(down)));
        }
        let style = &served.style;
        let key = JobKey {
            style: style.name.clone(),
            meta: tile.metatile(),
        };
        // Only a request that starts a render spends a render: joining one under way
        // costs nothing (a race that turns a start into a join spends one, harmlessly).
        if let Some(limits) = &self.limits {
            if self.pool.job_priority(&key).is_none() {
                limits.check_render(client).map_err(|refusal| {
                    if refusal.budget == super::limits::Budget::NodeRenders {
                        ServiceError::RenderCeiling(refusal)
                    } else {
                        ServiceError::Throttled(refusal)
                    }
                })?;
            }
        }
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
            Err(SubmitError::ShuttingDown | SubmitError::Cancelled) => {
                return Err(ServiceError::ShuttingDown)
            }
        };
        match tokio::time::timeout(self.options.miss_timeout, waiter.wait()).await {
            Err(_) => {
                self.metrics.miss_timeouts.inc();
                Err(ServiceError::MissTimeout)
            }
            Ok(Err(failure)) => Err(self.refused(ServiceError::RenderFailed(failure))),
            Ok(Ok(())) => self
                .lookup(served, tree, tile, false)
                .ok_or(ServiceError::MissingAfterRender(tile)),
        }
    }

    /// Counts a failure caused outside the server by its cause.
    fn refused(&self, e: ServiceError) -> ServiceError {
        if let Some(fault) = e.fault() {
            self.metrics
                .fault_responses
                .with_label_values(&[fault.as_str()])
                .inc();
        }
        e
    }

    /// The answer for a miss that cannot be rendered now (`cause`): a placeholder cut
    /// from the nearest cached ancestor, or `cause` itself when there is none. Any
    /// "cannot render now" outcome may use it (the database-down path too).
    async fn placeholder<'a>(
        &'a self,
        served: &ServedStyle,
        tile: TileCoord,
        cause: ServiceError,
    ) -> Result<ServedTile<'a>, ServiceError> {
        let style = &served.style;
        let Some(Placeholder {
            tile: made,
            ancestor,
        }) = self.placeholders.make(&self.cache, style, tile).await
        else {
            return Err(cause);
        };
        self.metrics
            .placeholders
            .with_label_values(&[style.name.as_str(), cause.placeholder_reason()])
            .inc();
        tracing::debug!(style = %style.name, tile = %tile, ancestor = %ancestor, cause = %cause, "served a placeholder");
        Ok(ServedTile {
            tile: made,
            stale: false,
            cache_control: &self.placeholder_cache_control,
            placeholder: Some(ancestor),
        })
    }

    /// A cache lookup; `None` is a miss (a corrupt file counts as one, and is logged).
    fn lookup<'a>(
        &self,
        served: &ServedStyle,
        tree: &Tree,
        tile: TileCoord,
        count: bool,
    ) -> Option<ServedTile<'a>> {
        let name = &tree.name;
        let (found, result) = match self.cache.lookup(name, tile) {
            Ok(Lookup::Memory(t)) => (t, LookupResult::Memory),
            Ok(Lookup::Disk(t)) => (t, LookupResult::Disk),
            Ok(Lookup::Stale(t)) => (t, LookupResult::Stale),
            Ok(Lookup::Miss) => return None,
            Err(e) => {
                tracing::warn!(style = %name, tile = %tile, error = %crate::errors::error_chain(&e), "cache read failed; rendering");
                return None;
            }
        };
        if count {
            tree.count_lookup(result);
        }
        let stale = result == LookupResult::Stale;
        if stale {
            self.refresh_in_background(&served.style.name, tile);
        }
        let cache_control = if stale {
            served.stale_cache_control
        } else {
            served.fresh_cache_control
        };
        Some(ServedTile {
            tile: found,
            stale,
            cache_control,
            placeholder: None,
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
        if let Some(health) = &self.health {
            self.metrics.database_up.set(i64::from(health.is_healthy()));
        }
        if let Some(limits) = &self.limits {
            self.metrics
                .limit_clients
                .set(limits.tracked_clients() as i64);
        }
    }
}

fn check_zoom(style: &Style, tile: TileCoord) -> Result<(), ServiceError> {
    if tile.z < style.minzoom || tile.z > style.maxzoom {
        return Err(ServiceError::ZoomOutOfRange {
            z: tile.z,
            min: style.minzoom,
            max: style.maxzoom,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
