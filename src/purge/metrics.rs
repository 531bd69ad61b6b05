//! The `metatiled_purge_*` series, registered in the server's registry.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Handles to the `metatiled_purge_*` series.
#[derive(Clone)]
pub struct PurgeMetrics {
    changes: IntCounterVec,
    items: IntCounterVec,
    requests: IntCounterVec,
    queued: IntGaugeVec,
}

/// The series of one target, resolved once.
#[derive(Clone)]
pub(super) struct TargetMetrics {
    pub accepted: IntCounter,
    pub deduplicated: IntCounter,
    pub dropped: IntCounter,
    pub sent: IntCounter,
    pub failed: IntCounter,
    pub requests_ok: IntCounter,
    pub requests_retried: IntCounter,
    pub requests_failed: IntCounter,
    pub queued: IntGauge,
}

impl PurgeMetrics {
    pub(super) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            changes: IntCounterVec::new(
                Opts::new(
                    "metatiled_purge_changes_total",
                    "Changes (metatiles, styles) handed to a purge target: queued, deduplicated (already waiting) or dropped (queue full)",
                ),
                &["target", "outcome"],
            )?,
            items: IntCounterVec::new(
                Opts::new(
                    "metatiled_purge_items_total",
                    "Keys, URLs or changes a target acknowledged (sent) or that were given up after retries (failed)",
                ),
                &["target", "outcome"],
            )?,
            requests: IntCounterVec::new(
                Opts::new(
                    "metatiled_purge_requests_total",
                    "Purge requests by outcome: ok, retried, failed",
                ),
                &["target", "outcome"],
            )?,
            queued: IntGaugeVec::new(
                Opts::new(
                    "metatiled_purge_queued",
                    "Distinct changes waiting to be sent to a target",
                ),
                &["target"],
            )?,
        };
        registry.register(Box::new(m.changes.clone()))?;
        registry.register(Box::new(m.items.clone()))?;
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.queued.clone()))?;
        Ok(m)
    }

    pub(super) fn target(&self, name: &str) -> TargetMetrics {
        TargetMetrics {
            accepted: self.changes.with_label_values(&[name, "queued"]),
            deduplicated: self.changes.with_label_values(&[name, "deduplicated"]),
            dropped: self.changes.with_label_values(&[name, "dropped"]),
            sent: self.items.with_label_values(&[name, "sent"]),
            failed: self.items.with_label_values(&[name, "failed"]),
            requests_ok: self.requests.with_label_values(&[name, "ok"]),
            requests_retried: self.requests.with_label_values(&[name, "retried"]),
            requests_failed: self.requests.with_label_values(&[name, "failed"]),
            queued: self.queued.with_label_values(&[name]),
        }
    }
}
