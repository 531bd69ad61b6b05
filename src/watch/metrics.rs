//! The watcher's Prometheus series, registered in the server's registry.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Change-to-expiry lag of the database watcher: sub-second normally, minutes or hours
/// for changes made while the server was down.
const LAG_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
];

/// Handles to the `metatiled_watch_*` series.
#[derive(Clone)]
pub(crate) struct WatchMetrics {
    pub changes: IntCounterVec,
    pub changed_rows: IntCounterVec,
    pub expired_metatiles: IntCounterVec,
    pub lag_seconds: Histogram,
    pub connected: IntGauge,
    pub reconnects: IntCounter,
}

impl WatchMetrics {
    /// Creates the series and registers them in `registry`.
    pub(crate) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            changes: IntCounterVec::new(
                Opts::new(
                    "metatiled_watch_changes_total",
                    "Change-log rows (merged changed boxes) applied by this node's database watcher",
                ),
                &["table"],
            )?,
            changed_rows: IntCounterVec::new(
                Opts::new(
                    "metatiled_watch_changed_rows_total",
                    "Changed geometries behind the applied change-log rows (old and new for updates)",
                ),
                &["table"],
            )?,
            expired_metatiles: IntCounterVec::new(
                Opts::new(
                    "metatiled_watch_expired_metatiles_total",
                    "Metatiles expired by the database watcher, by style and mode",
                ),
                &["style", "mode"],
            )?,
            lag_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "metatiled_watch_lag_seconds",
                    "Time from a row change (its trigger) to its metatiles being expired",
                )
                .buckets(LAG_BUCKETS.to_vec()),
            )?,
            connected: IntGauge::new(
                "metatiled_watch_connected",
                "1 while the database watcher is connected and listening",
            )?,
            reconnects: IntCounter::new(
                "metatiled_watch_reconnects_total",
                "Times the database watcher lost its connection and connected again",
            )?,
        };
        registry.register(Box::new(m.changes.clone()))?;
        registry.register(Box::new(m.changed_rows.clone()))?;
        registry.register(Box::new(m.expired_metatiles.clone()))?;
        registry.register(Box::new(m.lag_seconds.clone()))?;
        registry.register(Box::new(m.connected.clone()))?;
        registry.register(Box::new(m.reconnects.clone()))?;
        Ok(m)
    }
}
