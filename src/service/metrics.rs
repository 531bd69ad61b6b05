//! Prometheus metrics: one registry per app, the series DESIGN.md promises under their
//! contract names, plus a few more (the watcher registers its own in the same registry). Recording is cheap (atomic increments on handles
//! resolved per label set); `/metrics` renders the text format.

use crate::expire::ExpireMode;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Render times span a few milliseconds (empty low-zoom metatiles) to tens of seconds.
const RENDER_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Layer queries are usually milliseconds; the statement timeout bounds them.
const QUERY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// How a tile lookup was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupResult {
    Memory,
    Disk,
    Stale,
    Miss,
}

impl LookupResult {
    pub fn as_str(self) -> &'static str {
        match self {
            LookupResult::Memory => "memory",
            LookupResult::Disk => "disk",
            LookupResult::Stale => "stale",
            LookupResult::Miss => "miss",
        }
    }
}

/// Status codes whose counters are resolved once, so counting a response on the hot
/// path is one atomic increment (no label hashing, no lock).
const COMMON_STATUSES: [u16; 8] = [200, 304, 400, 403, 404, 429, 500, 503];

pub struct Metrics {
    registry: Registry,
    common_statuses: Vec<IntCounter>,
    pub http_requests: IntCounterVec,
    pub tile_lookups: IntCounterVec,
    pub renders: IntCounterVec,
    pub render_seconds: HistogramVec,
    pub queue_depth: IntGaugeVec,
    pub coalesced_requests: IntCounter,
    pub db_query_seconds: Histogram,
    pub expired_metatiles: IntCounterVec,
    pub render_rejected: IntCounterVec,
    pub miss_timeouts: IntCounter,
    pub memory_cache_bytes: IntGauge,
    pub memory_cache_entries: IntGauge,
    pub render_threads_busy: IntGauge,
    pub jobs_running: IntGauge,
    pub fault_responses: IntCounterVec,
    pub render_faults: IntCounterVec,
    pub database_up: IntGauge,
    /// Requests refused by a budget: `budget="requests|renders|node_renders"`.
    pub throttled: IntCounterVec,
    /// Clients forgotten at once because more than `limits.max_clients` were tracked.
    pub limit_clients_forgotten: IntCounter,
    /// Clients with a budget in use (request and render buckets).
    pub limit_clients: IntGauge,
    /// Requests refused by a style's access rules: `reason="key|referer"`.
    pub access_denied: IntCounterVec,
    /// Placeholders served instead of a 503, by why the tile could not be rendered.
    pub placeholders: IntCounterVec,
    /// Bytes of metatiles on disk (counted by the quota's walks, kept up between them).
    pub cache_disk_bytes: IntGauge,
    /// `cache.max_bytes` (0 = none).
    pub cache_quota_bytes: IntGauge,
    pub cache_evicted_metatiles: IntCounter,
    pub cache_evicted_bytes: IntCounter,
    pub cache_sweeps: IntCounter,
    pub cache_sweep_seconds: Histogram,
    /// Style reloads per style: `outcome="changed|unchanged|refused|added|removed"`.
    pub style_reloads: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let m = Self {
            http_requests: IntCounterVec::new(
                Opts::new(
                    "metatiled_http_requests_total",
                    "HTTP responses by status code",
                ),
                &["status"],
            )?,
            tile_lookups: IntCounterVec::new(
                Opts::new(
                    "metatiled_tile_lookups_total",
                    "Tile lookups by where they were answered",
                ),
                &["style", "result"],
            )?,
            renders: IntCounterVec::new(
                Opts::new(
                    "metatiled_renders_total",
                    "Metatile renders by priority and outcome",
                ),
                &["style", "priority", "outcome"],
            )?,
            render_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "metatiled_render_seconds",
                    "Metatile render time, fetch to stored",
                )
                .buckets(RENDER_BUCKETS.to_vec()),
                &["style", "zoom"],
            )?,
            queue_depth: IntGaugeVec::new(
                Opts::new("metatiled_queue_depth", "Queued render jobs by priority"),
                &["priority"],
            )?,
            coalesced_requests: IntCounter::new(
                "metatiled_coalesced_requests_total",
                "Requests that joined a render already queued or running",
            )?,
            db_query_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "metatiled_db_query_seconds",
                    "Time of the layer queries of one metatile (run together)",
                )
                .buckets(QUERY_BUCKETS.to_vec()),
            )?,
            expired_metatiles: IntCounterVec::new(
                Opts::new(
                    "metatiled_expired_metatiles_total",
                    "Metatiles expired, by mode",
                ),
                &["mode"],
            )?,
            render_rejected: IntCounterVec::new(
                Opts::new(
                    "metatiled_render_rejected_total",
                    "Render requests refused because their queue was full",
                ),
                &["priority"],
            )?,
            miss_timeouts: IntCounter::new(
                "metatiled_miss_timeouts_total",
                "Clients answered 503 because their render took longer than the miss timeout",
            )?,
            memory_cache_bytes: IntGauge::new(
                "metatiled_memory_cache_bytes",
                "Bytes of tile data in the memory cache",
            )?,
            memory_cache_entries: IntGauge::new(
                "metatiled_memory_cache_entries",
                "Tiles in the memory cache",
            )?,
            render_threads_busy: IntGauge::new(
                "metatiled_render_threads_busy",
                "Render threads painting right now",
            )?,
            jobs_running: IntGauge::new(
                "metatiled_render_jobs_running",
                "Render jobs between fetch start and stored",
            )?,
            fault_responses: IntCounterVec::new(
                Opts::new(
                    "metatiled_fault_responses_total",
                    "Tile requests refused (503 or a placeholder) because of a fault outside \
                     the server, by cause: database, disk_full, permission, io",
                ),
                &["cause"],
            )?,
            render_faults: IntCounterVec::new(
                Opts::new(
                    "metatiled_render_faults_total",
                    "Renders that failed because of a fault outside the server, by cause",
                ),
                &["cause"],
            )?,
            database_up: IntGauge::new(
                "metatiled_database_up",
                "1 while the database answers, 0 while it is known to be unavailable",
            )?,
            throttled: IntCounterVec::new(
                Opts::new(
                    "metatiled_throttled_total",
                    "Tile requests refused by a budget (429, or 503 for the node's render ceiling)",
                ),
                &["budget"],
            )?,
            limit_clients_forgotten: IntCounter::new(
                "metatiled_limit_clients_forgotten_total",
                "Client budgets dropped at once because more than limits.max_clients were tracked",
            )?,
            limit_clients: IntGauge::new(
                "metatiled_limit_clients",
                "Client budgets in use (request and render buckets)",
            )?,
            access_denied: IntCounterVec::new(
                Opts::new(
                    "metatiled_access_denied_total",
                    "Requests refused (403) by a style's access rules",
                ),
                &["reason"],
            )?,
            placeholders: IntCounterVec::new(
                Opts::new(
                    "metatiled_placeholders_total",
                    "Placeholder tiles (a cached ancestor scaled up) served instead of a 503",
                ),
                &["style", "reason"],
            )?,
            cache_disk_bytes: IntGauge::new(
                "metatiled_cache_disk_bytes",
                "Bytes of metatiles on disk (with a disk quota)",
            )?,
            cache_quota_bytes: IntGauge::new(
                "metatiled_cache_quota_bytes",
                "The disk quota of the metatile tree (cache.max_bytes; 0 = none)",
            )?,
            cache_evicted_metatiles: IntCounter::new(
                "metatiled_cache_evicted_metatiles_total",
                "Metatiles evicted by the disk quota, least recently served first",
            )?,
            cache_evicted_bytes: IntCounter::new(
                "metatiled_cache_evicted_bytes_total",
                "Bytes of metatiles evicted by the disk quota",
            )?,
            cache_sweeps: IntCounter::new(
                "metatiled_cache_sweeps_total",
                "Walks of the metatile tree by the disk quota's sweep",
            )?,
            cache_sweep_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "metatiled_cache_sweep_seconds",
                    "Time of one quota sweep (walk and evictions)",
                )
                .buckets(RENDER_BUCKETS.to_vec()),
            )?,
            style_reloads: IntCounterVec::new(
                Opts::new(
                    "metatiled_style_reloads_total",
                    "Styles seen by a reload: changed, unchanged, refused (the old one keeps serving), added, removed",
                ),
                &["style", "outcome"],
            )?,
            registry,
            common_statuses: Vec::new(),
        };
        let mut m = m;
        m.common_statuses = COMMON_STATUSES
            .iter()
            .map(|s| m.http_requests.with_label_values(&[&s.to_string()]))
            .collect();
        m.registry.register(Box::new(m.http_requests.clone()))?;
        m.registry.register(Box::new(m.cache_disk_bytes.clone()))?;
        m.registry.register(Box::new(m.cache_quota_bytes.clone()))?;
        m.registry
            .register(Box::new(m.cache_evicted_metatiles.clone()))?;
        m.registry
            .register(Box::new(m.cache_evicted_bytes.clone()))?;
        m.registry.register(Box::new(m.cache_sweeps.clone()))?;
        m.registry
            .register(Box::new(m.cache_sweep_seconds.clone()))?;
        m.registry.register(Box::new(m.style_reloads.clone()))?;
        m.registry.register(Box::new(m.tile_lookups.clone()))?;
        m.registry.register(Box::new(m.renders.clone()))?;
        m.registry.register(Box::new(m.render_seconds.clone()))?;
        m.registry.register(Box::new(m.queue_depth.clone()))?;
        m.registry
            .register(Box::new(m.coalesced_requests.clone()))?;
        m.registry.register(Box::new(m.db_query_seconds.clone()))?;
        m.registry.register(Box::new(m.expired_metatiles.clone()))?;
        m.registry.register(Box::new(m.render_rejected.clone()))?;
        m.registry.register(Box::new(m.miss_timeouts.clone()))?;
        m.registry
            .register(Box::new(m.memory_cache_bytes.clone()))?;
        m.registry
            .register(Box::new(m.memory_cache_entries.clone()))?;
        m.registry
            .register(Box::new(m.render_threads_busy.clone()))?;
        m.registry.register(Box::new(m.jobs_running.clone()))?;
        m.registry.register(Box::new(m.fault_responses.clone()))?;
        m.registry.register(Box::new(m.render_faults.clone()))?;
        m.registry.register(Box::new(m.database_up.clone()))?;
        m.database_up.set(1);
        m.registry.register(Box::new(m.throttled.clone()))?;
        m.registry
            .register(Box::new(m.limit_clients_forgotten.clone()))?;
        m.registry.register(Box::new(m.limit_clients.clone()))?;
        m.registry.register(Box::new(m.access_denied.clone()))?;
        m.registry.register(Box::new(m.placeholders.clone()))?;
        for b in ["requests", "renders", "node_renders"] {
            m.throttled.with_label_values(&[b]);
        }
        for r in ["key", "referer"] {
            m.access_denied.with_label_values(&[r]);
        }
        // Every priority and expiry mode shows from the start, at 0.
        for p in ["interactive", "stale", "bulk"] {
            m.queue_depth.with_label_values(&[p]).set(0);
            m.render_rejected.with_label_values(&[p]);
        }
        for mode in ExpireMode::ALL {
            m.expired_metatiles.with_label_values(&[mode.as_str()]);
        }
        for fault in super::Fault::ALL {
            m.fault_responses.with_label_values(&[fault.as_str()]);
            m.render_faults.with_label_values(&[fault.as_str()]);
        }
        Ok(m)
    }

    /// The registry, for series owned by other modules (the watcher's).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts one HTTP response by status.
    pub fn count_response(&self, status: u16) {
        match COMMON_STATUSES.iter().position(|s| *s == status) {
            Some(i) => self.common_statuses[i].inc(),
            None => self
                .http_requests
                .with_label_values(&[&status.to_string()])
                .inc(),
        }
    }

    /// The Prometheus text exposition of every series.
    pub fn render_text(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            return format!("# metrics encoding failed: {e}\n");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_series_are_exposed_under_their_names() {
        let m = Metrics::new().unwrap();
        m.http_requests.with_label_values(&["200"]).inc();
        m.tile_lookups.with_label_values(&["osm", "memory"]).inc();
        m.renders
            .with_label_values(&["osm", "interactive", "ok"])
            .inc();
        m.render_seconds
            .with_label_values(&["osm", "15"])
            .observe(0.2);
        m.db_query_seconds.observe(0.01);
        m.coalesced_requests.inc();
        let text = m.render_text();
        for name in [
            "metatiled_http_requests_total{status=\"200\"} 1",
            "metatiled_tile_lookups_total{result=\"memory\",style=\"osm\"} 1",
            "metatiled_renders_total{outcome=\"ok\",priority=\"interactive\",style=\"osm\"} 1",
            "metatiled_render_seconds_bucket",
            "metatiled_queue_depth{priority=\"bulk\"} 0",
            "metatiled_coalesced_requests_total 1",
            "metatiled_db_query_seconds_count 1",
            "metatiled_expired_metatiles_total{mode=\"dirty\"} 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
