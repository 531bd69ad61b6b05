//! The disk quota: a background sweep that keeps the metatile tree under
//! `cache.max_bytes` (and the quotas of single styles), evicting the least recently
//! served metatiles from the high watermark down to the low one. A metatile being
//! rendered, or served within the last seconds, is never evicted; a reader that opened
//! a file before it was removed reads it whole (POSIX), and one that comes after finds
//! a miss and renders it again.

use super::TileService;
use crate::cache::quota::{Candidate, Census};
use crate::cache::CacheSettings;
use crate::queue::JobKey;
use crate::tile::StyleName;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A metatile served this recently is not evicted: someone is using it now.
pub const RECENTLY_SERVED: Duration = Duration::from_secs(10);

/// The quota as the sweep applies it.
#[derive(Debug, Clone)]
pub struct QuotaOptions {
    /// 0 = no quota of the whole tree.
    pub max_bytes: u64,
    pub style_max_bytes: BTreeMap<StyleName, u64>,
    pub high_watermark: f64,
    pub low_watermark: f64,
    pub check_every: Duration,
    pub walk_every: Duration,
}

impl QuotaOptions {
    /// `None` without any quota. Style names that are not names are skipped (config
    /// validation refuses them first).
    pub fn from_settings(s: &CacheSettings) -> Option<Self> {
        if !s.has_quota() {
            return None;
        }
        Some(Self {
            max_bytes: s.max_bytes,
            style_max_bytes: s
                .style_max_bytes
                .iter()
                .filter_map(|(name, &b)| Some((StyleName::parse(name).ok()?, b)))
                .filter(|(_, b)| *b > 0)
                .collect(),
            high_watermark: s.high_watermark,
            low_watermark: s.low_watermark,
            check_every: Duration::from_secs(s.sweep_secs.max(1)),
            walk_every: Duration::from_secs(s.sweep_walk_secs.max(1)),
        })
    }

    fn high(&self, quota: u64) -> u64 {
        (quota as f64 * self.high_watermark) as u64
    }

    fn low(&self, quota: u64) -> u64 {
        (quota as f64 * self.low_watermark) as u64
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub evicted: u64,
    pub evicted_bytes: u64,
    /// Candidates kept because they were being rendered or just served.
    pub kept: u64,
}

/// The background sweep of one cache.
pub struct Sweeper {
    service: Arc<TileService>,
    options: QuotaOptions,
}

impl Sweeper {
    pub fn new(service: Arc<TileService>, options: QuotaOptions) -> Self {
        service
            .metrics()
            .cache_quota_bytes
            .set(i64::try_from(options.max_bytes).unwrap_or(i64::MAX));
        Self { service, options }
    }

    /// Checks the bytes on disk every `check_every`; sweeps (on a blocking thread) when
    /// they pass the high watermark, and walks the tree every `walk_every` anyway (at
    /// start first) to count what other tools wrote and to apply the style quotas.
    pub fn run(self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let this = Arc::new(self);
        tokio::spawn(async move {
            let mut last_walk: Option<Instant> = None;
            let mut tick = tokio::time::interval(this.options.check_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => return,
                }
                let cache = this.service.cache();
                let over = this.options.max_bytes > 0
                    && cache.disk_bytes() > this.options.high(this.options.max_bytes);
                let walk_due = last_walk.map_or(true, |t| t.elapsed() >= this.options.walk_every);
                if !over && !walk_due {
                    continue;
                }
                let sweeper = this.clone();
                match tokio::task::spawn_blocking(move || sweeper.sweep()).await {
                    Ok(report) => {
                        last_walk = Some(Instant::now());
                        if report.evicted > 0 {
                            tracing::info!(
                                evicted = report.evicted,
                                evicted.bytes = report.evicted_bytes,
                                bytes.before = report.bytes_before,
                                bytes.after = report.bytes_after,
                                kept = report.kept,
                                "disk quota: evicted the least recently served metatiles"
                            );
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "the quota sweep failed"),
                }
            }
        })
    }

    /// One sweep: a walk of the tree, then evictions, least recently served first, of
    /// each style over its quota and of the whole tree over `max_bytes`. Blocking.
    pub fn sweep(&self) -> SweepReport {
        let started = Instant::now();
        let cache = self.service.cache();
        let Census {
            mut candidates,
            bytes,
            total,
        } = cache.census();
        candidates.sort_by_key(|c| c.served_at);
        let mut report = SweepReport {
            bytes_before: total,
            ..SweepReport::default()
        };
        let mut total_now = total;
        let mut gone = vec![false; candidates.len()];
        for (style, &quota) in &self.options.style_max_bytes {
            let mut used = bytes.get(style).copied().unwrap_or(0);
            if used <= self.options.high(quota) {
                continue;
            }
            let target = self.options.low(quota);
            for (i, c) in candidates.iter().enumerate() {
                if used <= target {
                    break;
                }
                if c.style == *style && !gone[i] && self.evict(c, &mut report) {
                    gone[i] = true;
                    used -= c.bytes();
                    total_now -= c.bytes();
                }
            }
        }
        let max = self.options.max_bytes;
        if max > 0 && total_now > self.options.high(max) {
            let target = self.options.low(max);
            for (i, c) in candidates.iter().enumerate() {
                if total_now <= target {
                    break;
                }
                if !gone[i] && self.evict(c, &mut report) {
                    gone[i] = true;
                    total_now -= c.bytes();
                }
            }
            if total_now > self.options.high(max) {
                tracing::warn!(
                    bytes = total_now,
                    quota = max,
                    kept = report.kept,
                    "disk quota: still over the high watermark; what is left is in use"
                );
            }
        }
        report.bytes_after = total_now;
        let m = self.service.metrics();
        m.cache_disk_bytes
            .set(i64::try_from(cache.disk_bytes()).unwrap_or(i64::MAX));
        m.cache_sweeps.inc();
        m.cache_sweep_seconds
            .observe(started.elapsed().as_secs_f64());
        report
    }

    fn evict(&self, c: &Candidate, report: &mut SweepReport) -> bool {
        let key = JobKey {
            style: c.style.clone(),
            meta: c.meta,
        };
        if self.service.pool().job_priority(&key).is_some() {
            report.kept += 1;
            return false;
        }
        match self.service.cache().evict(c, RECENTLY_SERVED) {
            Ok(true) => {
                report.evicted += 1;
                report.evicted_bytes += c.bytes();
                let m = self.service.metrics();
                m.cache_evicted_metatiles.inc();
                m.cache_evicted_bytes.inc_by(c.bytes());
                true
            }
            Ok(false) => {
                report.kept += 1;
                false
            }
            Err(e) => {
                tracing::warn!(style = %c.style, meta = %c.meta, error = %crate::errors::error_chain(&e), "disk quota: cannot evict");
                false
            }
        }
    }
}
