//! Purge fan-out: tells caches downstream (Varnish, CDNs, webhooks) which metatiles and
//! styles changed, so that they drop their copies instead of serving them for a day and
//! a week of grace.
//!
//! Whatever changes a metatile (an expiry in any mode, the database watcher, a
//! re-render that replaces a file, a style reload) calls [`Purger::changed`], which never
//! blocks and never fails: each target has its own bounded queue of distinct changes
//! (a change already waiting is not queued twice; a full queue drops and counts). One
//! task per target gathers a batch (`purge.batch_delay_ms`, up to `purge.batch_max`),
//! sends it, and retries what failed with exponential backoff; given-up changes are
//! counted. Nothing here is on a request's path.
//!
//! Surrogate keys: every tile response names its metatile (`osm/15/18648/9480`) and its
//! style (`osm`); see [`KeyHeader`].

mod metrics;
mod send;
mod settings;

pub use metrics::PurgeMetrics;
pub use settings::{PurgeSettings, TargetKind, TargetSettings, DEFAULT_PURGE_QUEUE};

use crate::tile::{MetatileCoord, StyleName};
use send::Target;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What changed downstream caches must forget.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Change {
    /// The 64 tiles of one metatile of a style (`osm@2x` for the 512 px ones).
    Metatile(StyleName, MetatileCoord),
    /// Every tile of a style (a style reload changed it).
    Style(StyleName),
}

impl Change {
    /// The surrogate key naming this change, as tiles carry it.
    pub fn key(&self) -> String {
        match self {
            Change::Metatile(style, meta) => metatile_key(style, *meta),
            Change::Style(style) => style.as_str().to_string(),
        }
    }
}

/// The surrogate key of a metatile: `{style}/{z}/{x}/{y}` of its origin.
pub fn metatile_key(style: &StyleName, meta: MetatileCoord) -> String {
    format!("{style}/{}/{}/{}", meta.z, meta.x, meta.y)
}

/// The path of a tile of `style` as a client asks for it (`osm@2x` -> `osm/...@2x.png`).
pub fn tile_path(style: &StyleName, tile: crate::tile::TileCoord) -> String {
    match style.as_str().strip_suffix("@2x") {
        Some(base) => format!("/{base}/{}/{}/{}@2x.png", tile.z, tile.x, tile.y),
        None => format!("/{style}/{}/{}/{}.png", tile.z, tile.x, tile.y),
    }
}

/// The response header naming a tile's surrogate keys, and how keys are joined in it.
#[derive(Debug, Clone)]
pub struct KeyHeader {
    pub name: String,
    separator: &'static str,
}

impl KeyHeader {
    /// `None` when `name` is empty (no header).
    pub fn new(name: &str) -> Option<Self> {
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        // Cloudflare's Cache-Tag is comma-separated; Surrogate-Key and xkey use spaces.
        let separator = if name.eq_ignore_ascii_case("cache-tag") {
            ","
        } else {
            " "
        };
        Some(Self {
            name: name.to_string(),
            separator,
        })
    }

    /// The header value of a tile of `meta`: its metatile's key, then its style's.
    pub fn value(&self, style: &str, meta: MetatileCoord) -> String {
        format!(
            "{style}/{}/{}/{}{}{style}",
            meta.z, meta.x, meta.y, self.separator
        )
    }
}

/// Why the purge settings were refused (at start: exit 2).
#[derive(Debug, Error)]
pub enum PurgeError {
    #[error("purge target {name}: {message}")]
    BadTarget { name: String, message: String },
    #[error("cannot build the HTTP client for purges")]
    Client(#[source] reqwest::Error),
    #[error("cannot register the purge metrics")]
    Metrics(#[source] prometheus::Error),
}

/// Changes waiting for one target, each once, oldest first.
#[derive(Default)]
struct Pending {
    order: VecDeque<Change>,
    set: HashSet<Change>,
}

/// One target with its queue.
struct Lane {
    target: Target,
    pending: Mutex<Pending>,
    wake: Notify,
}

impl Lane {
    fn take(&self, max: usize) -> Vec<Change> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let n = pending.order.len().min(max);
        let batch: Vec<Change> = pending.order.drain(..n).collect();
        for change in &batch {
            pending.set.remove(change);
        }
        self.target.metrics.queued.set(pending.order.len() as i64);
        batch
    }
}

/// Timing of batches and retries.
#[derive(Debug, Clone)]
struct Timing {
    capacity: usize,
    batch_max: usize,
    batch_delay: Duration,
    retries: u32,
    backoff: Duration,
}

/// The fan-out: [`Purger::changed`] queues, [`Purger::run`] sends. Share it behind an
/// `Arc`; with no targets it does nothing.
pub struct Purger {
    lanes: Vec<Arc<Lane>>,
    timing: Timing,
    key_header: Option<KeyHeader>,
}

impl Purger {
    /// Checks the targets and registers the `metatiled_purge_*` series in `registry`.
    /// `public_url` is the base of the URLs a webhook lists (paths alone without it).
    pub fn new(
        settings: &PurgeSettings,
        public_url: Option<&str>,
        registry: &prometheus::Registry,
    ) -> Result<Self, PurgeError> {
        let metrics = PurgeMetrics::register(registry).map_err(PurgeError::Metrics)?;
        let client = send::client(Duration::from_secs(settings.timeout_secs.max(1)))
            .map_err(PurgeError::Client)?;
        let lanes = settings
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let target = Target::new(t, i, client.clone(), public_url, &metrics)?;
                Ok(Arc::new(Lane {
                    target,
                    pending: Mutex::new(Pending::default()),
                    wake: Notify::new(),
                }))
            })
            .collect::<Result<Vec<_>, PurgeError>>()?;
        Ok(Self {
            lanes,
            timing: Timing {
                capacity: settings.queue.max(1),
                batch_max: settings.batch_max.max(1),
                batch_delay: Duration::from_millis(settings.batch_delay_ms),
                retries: settings.retries,
                backoff: Duration::from_millis(settings.backoff_ms.max(1)),
            },
            key_header: KeyHeader::new(&settings.key_header),
        })
    }

    /// A purger with no targets and no key header (tools, tests).
    pub fn disabled() -> Self {
        Self {
            lanes: Vec::new(),
            timing: Timing {
                capacity: 1,
                batch_max: 1,
                batch_delay: Duration::ZERO,
                retries: 0,
                backoff: Duration::from_millis(1),
            },
            key_header: None,
        }
    }

    /// The surrogate-key header of tile responses, if any.
    pub fn key_header(&self) -> Option<&KeyHeader> {
        self.key_header.as_ref()
    }

    /// Whether any target is configured.
    pub fn is_enabled(&self) -> bool {
        !self.lanes.is_empty()
    }

    /// Queues a change for every target. Never blocks on the network, never fails: a
    /// change already waiting is not queued again; a full queue drops it (counted).
    pub fn changed(&self, change: Change) {
        for lane in &self.lanes {
            let m = &lane.target.metrics;
            let mut pending = lane.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if pending.set.contains(&change) {
                m.deduplicated.inc();
                continue;
            }
            if pending.order.len() >= self.timing.capacity {
                m.dropped.inc();
                continue;
            }
            pending.set.insert(change.clone());
            pending.order.push_back(change.clone());
            m.queued.set(pending.order.len() as i64);
            m.accepted.inc();
            drop(pending);
            lane.wake.notify_one();
        }
    }

    /// Runs one sending task per target until `stop`; then sends what is still queued
    /// once more, without retries (bound the wait on the returned handle's caller).
    pub fn run(self: &Arc<Self>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let tasks: Vec<_> = self
            .lanes
            .iter()
            .map(|lane| {
                let (lane, timing, stop) = (lane.clone(), self.timing.clone(), stop.clone());
                tokio::spawn(async move { run_lane(lane, timing, stop).await })
            })
            .collect();
        tokio::spawn(async move {
            for task in tasks {
                let _ = task.await;
            }
        })
    }
}

async fn run_lane(lane: Arc<Lane>, timing: Timing, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = lane.wake.notified() => {}
            _ = stop.cancelled() => break,
        }
        // Gather what else changes meanwhile into this batch.
        tokio::select! {
            _ = tokio::time::sleep(timing.batch_delay) => {}
            _ = stop.cancelled() => break,
        }
        loop {
            let batch = lane.take(timing.batch_max);
            if batch.is_empty() {
                break;
            }
            lane.target.send(&batch, &timing, &stop).await;
        }
    }
    // Shutting down: what is queued goes out once, without retries.
    let last = Timing {
        retries: 0,
        ..timing.clone()
    };
    loop {
        let batch = lane.take(timing.batch_max);
        if batch.is_empty() {
            break;
        }
        lane.target
            .send(&batch, &last, &CancellationToken::new())
            .await;
    }
}

#[cfg(test)]
mod tests;
