//! The request flow alone: a real cache in a temporary directory, the real render pool,
//! and a backend whose fetch waits at a gate the test opens, so timeouts, coalescing,
//! promotion and shutdown are checked in paused time, without a database.

use super::*;
use crate::cache::CacheSettings;
use crate::queue::PoolConfig;
use crate::render::{encode_png, PngMode};
use crate::service::limits::{ClientId, Limits};
use crate::source::SourceHealth;
use crate::style::parse_style;
use crate::tile::MetatileCoord;
use futures_util::future::BoxFuture;
use std::path::Path;
use std::sync::Mutex;
use tokio::sync::watch;

const STYLE: &str = r##"
name = "osm"
background = "#f2efe9"
minzoom = 0
maxzoom = 19
[[layer]]
name = "roads"
sql = "SELECT ST_AsBinary(way) AS geom FROM planet_osm_line WHERE way && !bbox!"
[[layer.rule]]
stroke = { color = "#fff", width = 1 }
"##;

const MISS_TIMEOUT: Duration = Duration::from_secs(10);

/// Stores a metatile of plain tiles once its fetch passes the gate.
struct GatedBackend {
    cache: Arc<TileCache>,
    gate: watch::Receiver<bool>,
    renders: Mutex<Vec<(JobKey, Priority)>>,
}

impl RenderBackend for GatedBackend {
    type Fetched = ();

    fn fetch(
        self: Arc<Self>,
        _key: JobKey,
        _priority: Priority,
    ) -> BoxFuture<'static, Result<(), RenderFailure>> {
        let mut gate = self.gate.clone();
        Box::pin(async move {
            gate.wait_for(|open| *open)
                .await
                .map_err(|_| RenderFailure::new("the test ended"))?;
            Ok(())
        })
    }

    fn paint_and_store(&self, key: &JobKey, p: Priority, (): ()) -> Result<(), RenderFailure> {
        self.renders.lock().unwrap().push((key.clone(), p));
        let png = encode_png(&vec![0xff33_6699; 256 * 256], 256, 256, PngMode::Palette)
            .map_err(|e| RenderFailure::caused_by("encoding", e))?;
        let tiles = vec![png; 64];
        self.cache
            .store_metatile(&key.style, key.meta, &tiles)
            .map_err(|e| RenderFailure::caused_by("storing", e))
    }
}

struct Fixture {
    service: TileService<GatedBackend>,
    open: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// A service with `fetch_slots` fetches at once and `queue` places per priority.
    fn new(fetch_slots: usize, queue: usize) -> Self {
        Self::with(STYLE, fetch_slots, queue, None)
    }

    /// The same, with a style of its own and client budgets.
    fn with(
        style: &str,
        fetch_slots: usize,
        queue: usize,
        limits: Option<crate::service::limits::LimitOptions>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(
            TileCache::open(&CacheSettings {
                dir: dir.path().to_path_buf(),
                fsync: false,
                ..CacheSettings::default()
            })
            .unwrap(),
        );
        let mut styles = StyleSet::default();
        for style in parse_style(style, Path::new("osm.toml"), "osm").unwrap() {
            styles.insert(style).unwrap();
        }
        let (open, gate) = watch::channel(false);
        let backend = GatedBackend {
            cache: cache.clone(),
            gate,
            renders: Mutex::default(),
        };
        let pool = RenderPool::start(
            backend,
            PoolConfig {
                threads: 1,
                fetch_slots,
                capacity: [queue; 3],
            },
        )
        .unwrap();
        let metrics = Arc::new(Metrics::new().unwrap());
        let mut service = TileService::new(
            Arc::new(crate::style::LiveStyles::new(Arc::new(styles))),
            cache,
            Arc::new(pool),
            metrics.clone(),
            ServiceOptions {
                miss_timeout: MISS_TIMEOUT,
                stale_max_age_secs: 60,
                placeholder_max_age_secs: 10,
            },
        );
        if let Some(options) = limits {
            service = service.with_limits(Arc::new(Limits::new(&options, &metrics)));
        }
        Fixture {
            service,
            open,
            _dir: dir,
        }
    }

    /// The same, with misses refused while `health` says the database is down.
    fn with_health(self, health: Arc<SourceHealth>) -> Self {
        let Fixture {
            service,
            open,
            _dir,
        } = self;
        Fixture {
            service: service.with_source_health(health),
            open,
            _dir,
        }
    }

    fn open_gate(&self) {
        self.open.send_replace(true);
    }

    fn renders(&self) -> Vec<(JobKey, Priority)> {
        self.service
            .pool()
            .backend()
            .renders
            .lock()
            .unwrap()
            .clone()
    }

    fn key(&self, meta: MetatileCoord) -> JobKey {
        JobKey {
            style: StyleName::parse("osm").unwrap(),
            meta,
        }
    }

    /// A waiter on the job of `meta`, which must be queued or running, joined at
    /// `priority` (a higher one would promote it).
    fn join(&self, meta: MetatileCoord, priority: Priority) -> crate::queue::Waiter {
        match self.service.pool().submit(self.key(meta), priority) {
            Ok(Submit::Joined(w)) => w,
            Ok(Submit::Queued(_)) => panic!("no job for {meta} was running"),
            Err(e) => panic!("{e}"),
        }
    }
}

fn tile(z: u32, x: u64, y: u64) -> TileCoord {
    TileCoord::try_new(z, x, y).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_miss_that_outlasts_the_timeout_is_a_503_and_its_render_lands_in_the_cache() {
    let f = Fixture::new(2, 8);
    let t = tile(15, 18654, 9484);
    let started = tokio::time::Instant::now();
    let answer = f.service.get_tile("osm", t).await;
    assert!(
        matches!(answer, Err(ServiceError::MissTimeout)),
        "{answer:?}"
    );
    assert_eq!(started.elapsed(), MISS_TIMEOUT);
    assert_eq!(f.service.metrics().miss_timeouts.get(), 1);

    // The render was not cancelled: it finishes and the next request is a hit.
    let still_running = f.join(t.metatile(), Priority::Interactive);
    f.open_gate();
    still_running.wait().await.unwrap();
    let served = f.service.get_tile("osm", t).await.unwrap();
    assert!(!served.stale);
    assert_eq!(f.renders().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_of_one_metatile_render_it_once() {
    let f = Arc::new(Fixture::new(2, 8));
    let origin = tile(15, 18648, 9480);
    let requests: Vec<_> = (0..64u64)
        .map(|i| {
            let f = f.clone();
            let t = tile(15, u64::from(origin.x) + i / 8, u64::from(origin.y) + i % 8);
            tokio::spawn(async move { f.service.get_tile("osm", t).await.map(|s| s.stale) })
        })
        .collect();
    while f.service.pool().stats().coalesced < 63 {
        tokio::task::yield_now().await;
    }
    f.open_gate();
    for r in requests {
        assert!(!r.await.unwrap().unwrap());
    }
    assert_eq!(f.renders().len(), 1);
    assert_eq!(f.service.metrics().coalesced_requests.get(), 63);
}

#[tokio::test(start_paused = true)]
async fn a_stale_tile_is_served_at_once_and_refreshed_in_the_background() {
    let f = Fixture::new(2, 8);
    let t = tile(14, 9327, 4742);
    f.open_gate();
    f.service.get_tile("osm", t).await.unwrap();
    let meta = t.metatile();
    let style = StyleName::parse("osm").unwrap();
    f.service.cache().mark_dirty(&style, meta).unwrap();

    let served = f.service.get_tile("osm", t).await.unwrap();
    assert!(served.stale);
    assert!(
        served.cache_control.contains("max-age=60,"),
        "{}",
        served.cache_control
    );
    let refresh = f.join(meta, Priority::Stale);
    refresh.wait().await.unwrap();
    assert_eq!(
        f.renders().iter().map(|(_, p)| *p).collect::<Vec<_>>(),
        [Priority::Interactive, Priority::Stale]
    );
    assert!(!f.service.get_tile("osm", t).await.unwrap().stale);
}

#[tokio::test(start_paused = true)]
async fn a_client_waiting_for_a_queued_bulk_render_promotes_it() {
    // One fetch slot: the first bulk job takes it, the second waits in the queue.
    let f = Arc::new(Fixture::new(1, 8));
    let (a, b) = (tile(16, 37312, 18968), tile(16, 37320, 18968));
    let pool = f.service.pool();
    let first = pool.submit(f.key(a.metatile()), Priority::Bulk).unwrap();
    let second = pool.submit(f.key(b.metatile()), Priority::Bulk).unwrap();
    while pool.stats().running < 1 {
        tokio::task::yield_now().await;
    }
    let client = {
        let f = f.clone();
        tokio::spawn(async move { f.service.get_tile("osm", b).await.map(|s| s.stale) })
    };
    while pool.job_priority(&f.key(b.metatile())) != Some(Priority::Interactive) {
        tokio::task::yield_now().await;
    }
    f.open_gate();
    assert!(!client.await.unwrap().unwrap());
    first.into_waiter().wait().await.unwrap();
    second.into_waiter().wait().await.unwrap();
    assert_eq!(pool.stats().promoted, 1);
    assert_eq!(
        f.renders(),
        [
            (f.key(a.metatile()), Priority::Bulk),
            (f.key(b.metatile()), Priority::Interactive)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_is_refused_at_once() {
    // One fetch slot and one queue place: the third distinct miss finds no room.
    let f = Arc::new(Fixture::new(1, 1));
    let miss = |t: TileCoord| {
        let f = f.clone();
        tokio::spawn(async move { f.service.get_tile("osm", t).await.is_ok() })
    };
    let fetching = miss(tile(12, 0, 0));
    while f.service.pool().stats().running < 1 {
        tokio::task::yield_now().await;
    }
    let queued = miss(tile(12, 8, 0));
    while f.service.pool().stats().queued[0] < 1 {
        tokio::task::yield_now().await;
    }
    let started = tokio::time::Instant::now();
    let refused = f.service.get_tile("osm", tile(12, 16, 0)).await;
    assert!(
        matches!(refused, Err(ServiceError::QueueFull)),
        "{refused:?}"
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
    f.open_gate();
    assert!(fetching.await.unwrap());
    assert!(queued.await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn after_shutdown_hits_are_served_and_misses_refused() {
    let f = Fixture::new(2, 8);
    f.open_gate();
    let cached = tile(13, 4663, 2371);
    f.service.get_tile("osm", cached).await.unwrap();
    let report = f.service.pool().shutdown(Duration::from_secs(5)).await;
    assert_eq!((report.dropped, report.unfinished), (0, 0));
    assert!(f.service.get_tile("osm", cached).await.is_ok());
    let miss = f.service.get_tile("osm", tile(13, 0, 0)).await;
    assert!(matches!(miss, Err(ServiceError::ShuttingDown)), "{miss:?}");
}

#[tokio::test(start_paused = true)]
async fn unknown_styles_and_zooms_outside_the_style_are_told_apart() {
    let f = Fixture::new(1, 1);
    assert!(matches!(
        f.service.get_tile("nope", tile(1, 0, 0)).await,
        Err(ServiceError::UnknownStyle(name)) if name == "nope"
    ));
    assert!(matches!(
        f.service.get_tile("osm", tile(20, 0, 0)).await,
        Err(ServiceError::ZoomOutOfRange {
            z: 20,
            min: 0,
            max: 19
        })
    ));
    assert!(f.renders().is_empty());
}

fn health() -> Arc<SourceHealth> {
    SourceHealth::new(crate::source::health::HealthOptions {
        suspect_after: Duration::from_secs(1),
        probe_timeout: Duration::from_secs(1),
        probe_max_interval: Duration::from_secs(1),
    })
}

#[derive(Debug, thiserror::Error)]
#[error("connection refused")]
struct Refused;

#[tokio::test(start_paused = true)]
async fn while_the_database_is_down_misses_fail_at_once_and_cached_tiles_are_served() {
    let health = health();
    let f = Fixture::new(2, 8).with_health(health.clone());
    f.open_gate();
    let cached = tile(13, 4663, 2371);
    f.service.get_tile("osm", cached).await.unwrap();

    health.record_failure(&Refused);
    let started = tokio::time::Instant::now();
    let miss = f.service.get_tile("osm", tile(13, 0, 0)).await;
    assert!(
        matches!(&miss, Err(e @ ServiceError::SourceUnavailable(_)) if e.fault() == Some(Fault::Database)),
        "{miss:?}"
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(f.renders().len(), 1, "no render was queued for the miss");
    let refused = f
        .service
        .metrics()
        .fault_responses
        .with_label_values(&["database"]);
    assert_eq!(refused.get(), 1);
    assert!(f.service.get_tile("osm", cached).await.is_ok());

    health.record_ok();
    assert!(f.service.get_tile("osm", tile(13, 0, 0)).await.is_ok());
}

#[test]
fn a_render_failed_by_a_full_disk_is_a_fault_not_a_bug() {
    let e = ServiceError::RenderFailed(RenderFailure::caused_by(
        "storing the metatile",
        crate::cache::CacheError::Io {
            action: "write",
            path: "/cache/osm/0/0/0/0/0/0.meta".into(),
            source: std::io::Error::from_raw_os_error(28),
        },
    ));
    assert_eq!(e.fault(), Some(Fault::DiskFull));
    let bug = ServiceError::RenderFailed(RenderFailure::new("the renderer panicked"));
    assert_eq!(bug.fault(), None);
}

/// Garbage where the tiles of `meta` should be: a valid header and index, blobs that
/// are not PNGs (the first one), or are PNGs of the wrong size (the others).
fn write_garbage_metatile(f: &Fixture, meta: MetatileCoord) -> std::path::PathBuf {
    let wrong_size = encode_png(&vec![0; 16 * 16], 16, 16, PngMode::Palette).unwrap();
    let mut blobs = vec![wrong_size; 64];
    blobs[0] = b"<html>not a tile</html>".to_vec();
    let style = StyleName::parse("osm").unwrap();
    f.service
        .cache()
        .disk()
        .write_metatile(&style, meta, &blobs)
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_metatile_of_garbage_is_moved_aside_and_rendered_again() {
    let f = Fixture::new(2, 8);
    f.open_gate();
    let meta = MetatileCoord::try_new(14, 9320, 4736).unwrap();
    let path = write_garbage_metatile(&f, meta);
    for t in [tile(14, 9320, 4736), tile(14, 9321, 4736)] {
        let served = f.service.get_tile("osm", t).await.unwrap();
        crate::cache::format::check_png_tile(0, &served.tile.bytes, 256).unwrap();
    }
    assert_eq!(
        f.renders().len(),
        1,
        "rendered once, then served from the new file"
    );
    assert!(path.with_extension("meta.corrupt").is_file());
    let corrupt = f.service.cache().corrupt_counter();
    assert_eq!(corrupt.with_label_values(&["bad_tile"]).get(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_directory_where_a_metatile_belongs_is_moved_aside_and_rendered_again() {
    let f = Fixture::new(2, 8);
    f.open_gate();
    let t = tile(14, 9328, 4736);
    let style = StyleName::parse("osm").unwrap();
    let path = f.service.cache().disk().path_of(&style, t.metatile());
    std::fs::create_dir_all(path.join("inside")).unwrap();
    let served = f.service.get_tile("osm", t).await.unwrap();
    crate::cache::format::check_png_tile(0, &served.tile.bytes, 256).unwrap();
    assert!(path.is_file());
    assert!(path.with_extension("meta.corrupt").join("inside").is_dir());
    let corrupt = f.service.cache().corrupt_counter();
    assert_eq!(corrupt.with_label_values(&["not_a_file"]).get(), 1);
}

fn budgets(render_burst: u32) -> crate::service::limits::LimitOptions {
    crate::service::limits::LimitOptions {
        requests_per_second: 1000,
        request_burst: 1000,
        renders_per_minute: 1,
        render_burst,
        node_renders_per_second: 0,
        exempt: Vec::new(),
        exempt_keys: Vec::new(),
        max_clients: 1000,
    }
}

#[tokio::test(start_paused = true)]
async fn only_a_miss_that_starts_a_render_spends_a_render() {
    let f = Arc::new(Fixture::with(STYLE, 2, 8, Some(budgets(1))));
    let client = ClientId::ip("192.0.2.7".parse().unwrap());
    let miss = |t: TileCoord| {
        let (f, client) = (f.clone(), client.clone());
        tokio::spawn(async move {
            f.service
                .get_tile_for("osm", t, Some(&client))
                .await
                .is_ok()
        })
    };
    // Two tiles of one metatile: the first starts its render, the second joins it.
    let first = miss(tile(15, 18648, 9480));
    while f.service.pool().stats().running < 1 {
        tokio::task::yield_now().await;
    }
    let joined = miss(tile(15, 18649, 9481));
    while f.service.pool().stats().coalesced < 1 {
        tokio::task::yield_now().await;
    }
    f.open_gate();
    assert!(first.await.unwrap() && joined.await.unwrap());
    // Hits spend nothing either.
    for _ in 0..10 {
        f.service
            .get_tile_for("osm", tile(15, 18650, 9482), Some(&client))
            .await
            .unwrap();
    }
    // The budget (one render) is spent: a new render is refused, at once.
    let refused = f
        .service
        .get_tile_for("osm", tile(15, 0, 0), Some(&client))
        .await;
    assert!(
        matches!(&refused, Err(ServiceError::Throttled(r)) if r.budget == crate::service::limits::Budget::Renders),
        "{refused:?}"
    );
    assert_eq!(f.renders().len(), 1);
    // Another client has its own budget.
    let other = ClientId::ip("192.0.2.8".parse().unwrap());
    assert!(f
        .service
        .get_tile_for("osm", tile(15, 0, 0), Some(&other))
        .await
        .is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_placeholder_style_answers_a_slow_miss_with_its_parent_scaled_up() {
    let style = STYLE.replace("maxzoom = 19", "maxzoom = 19\nplaceholder = true");
    let f = Fixture::with(&style, 2, 8, None);
    // The parent's metatile, cached: a plain colour.
    let parent = tile(14, 9327, 4742);
    let png = encode_png(&vec![0xff33_6699; 256 * 256], 256, 256, PngMode::Palette).unwrap();
    let name = StyleName::parse("osm").unwrap();
    f.service
        .cache()
        .store_metatile(&name, parent.metatile(), &vec![png; 64])
        .unwrap();
    // The render of the child never finishes (the gate stays shut): after the miss
    // timeout, the placeholder.
    let child = tile(15, 18654, 9484);
    let served = f.service.get_tile("osm", child).await.unwrap();
    assert_eq!(served.placeholder, Some(parent));
    assert_eq!(served.cache_control, "public, max-age=10");
    let pixmap = tiny_skia::Pixmap::decode_png(&served.tile.bytes).unwrap();
    let c = pixmap.pixel(128, 128).unwrap();
    assert_eq!((c.red(), c.green(), c.blue()), (0x99, 0x66, 0x33));
    // No ancestor cached within reach: the error itself.
    let far = f.service.get_tile("osm", tile(15, 0, 0)).await;
    assert!(matches!(far, Err(ServiceError::MissTimeout)), "{far:?}");
    assert_eq!(
        f.service
            .metrics()
            .placeholders
            .with_label_values(&["osm", "miss_timeout"])
            .get(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn while_the_database_is_down_a_placeholder_style_answers_a_miss_at_once() {
    let style = STYLE.replace("maxzoom = 19", "maxzoom = 19\nplaceholder = true");
    let health = health();
    let f = Fixture::with(&style, 2, 8, None).with_health(health.clone());
    let parent = tile(14, 9327, 4742);
    let png = encode_png(&vec![0xff33_6699; 256 * 256], 256, 256, PngMode::Palette).unwrap();
    let name = StyleName::parse("osm").unwrap();
    f.service
        .cache()
        .store_metatile(&name, parent.metatile(), &vec![png; 64])
        .unwrap();

    health.record_failure(&Refused);
    let started = tokio::time::Instant::now();
    let served = f
        .service
        .get_tile("osm", tile(15, 18654, 9484))
        .await
        .unwrap();
    assert_eq!(served.placeholder, Some(parent));
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert!(f.renders().is_empty(), "no render was queued");
    let far = f.service.get_tile("osm", tile(15, 0, 0)).await;
    assert!(
        matches!(far, Err(ServiceError::SourceUnavailable(_))),
        "{far:?}"
    );
    assert_eq!(
        f.service
            .metrics()
            .placeholders
            .with_label_values(&["osm", "database_unavailable"])
            .get(),
        1
    );
}
