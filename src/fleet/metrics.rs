//! The `metatiled_fleet_*` series, registered in the server's registry.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// From an expiry's publication by one node to its application by another: well under
/// a second normally, up to the retention for a node that was down.
const LAG_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0, 3600.0, 86400.0,
];
/// Waits for another node's render of the same metatile (shared cache).
const WAIT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Handles to the `metatiled_fleet_*` series.
#[derive(Clone)]
pub(crate) struct FleetMetrics {
    pub expiries_published: IntCounterVec,
    pub expiries_applied: IntCounter,
    pub expiry_lag_seconds: Histogram,
    pub connected: IntGauge,
    pub heartbeat_errors: IntCounter,
    pub pruned: IntCounterVec,
    pub lock_waits: IntCounter,
    pub lock_wait_seconds: Histogram,
    pub lock_errors: IntCounter,
    pub renders_skipped: IntCounterVec,
}

impl FleetMetrics {
    /// Creates the series and registers them in `registry`.
    pub(crate) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            expiries_published: IntCounterVec::new(
                Opts::new(
                    "metatiled_fleet_expiries_published_total",
                    "Admin expiries this node applied and published for the other nodes",
                ),
                &["outcome"],
            )?,
            expiries_applied: IntCounter::new(
                "metatiled_fleet_expiries_applied_total",
                "Admin expiries received by other nodes and applied by this one",
            )?,
            expiry_lag_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "metatiled_fleet_expiry_lag_seconds",
                    "Time from an expiry's publication by another node to its application here",
                )
                .buckets(LAG_BUCKETS.to_vec()),
            )?,
            connected: IntGauge::new(
                "metatiled_fleet_connected",
                "1 while the expiry log's follower is connected and listening",
            )?,
            heartbeat_errors: IntCounter::new(
                "metatiled_fleet_heartbeat_errors_total",
                "Heartbeats (and registrations) that failed",
            )?,
            pruned: IntCounterVec::new(
                Opts::new(
                    "metatiled_fleet_pruned_total",
                    "Log rows (and nodes) removed because every live node was past them or they outlived the retention",
                ),
                &["log"],
            )?,
            lock_waits: IntCounter::new(
                "metatiled_fleet_render_lock_waits_total",
                "Renders that waited for another node's render of the same metatile (shared cache)",
            )?,
            lock_wait_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "metatiled_fleet_render_lock_wait_seconds",
                    "Time spent waiting for another node's render of the same metatile",
                )
                .buckets(WAIT_BUCKETS.to_vec()),
            )?,
            lock_errors: IntCounter::new(
                "metatiled_fleet_render_lock_errors_total",
                "Render locks that could not be taken (the render went ahead without one)",
            )?,
            renders_skipped: IntCounterVec::new(
                Opts::new(
                    "metatiled_fleet_renders_skipped_total",
                    "Renders not done because another node had just rendered the metatile (shared cache)",
                ),
                &["style"],
            )?,
        };
        registry.register(Box::new(m.expiries_published.clone()))?;
        registry.register(Box::new(m.expiries_applied.clone()))?;
        registry.register(Box::new(m.expiry_lag_seconds.clone()))?;
        registry.register(Box::new(m.connected.clone()))?;
        registry.register(Box::new(m.heartbeat_errors.clone()))?;
        registry.register(Box::new(m.pruned.clone()))?;
        registry.register(Box::new(m.lock_waits.clone()))?;
        registry.register(Box::new(m.lock_wait_seconds.clone()))?;
        registry.register(Box::new(m.lock_errors.clone()))?;
        registry.register(Box::new(m.renders_skipped.clone()))?;
        Ok(m)
    }
}
