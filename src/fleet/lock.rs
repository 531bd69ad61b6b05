//! [`RenderLocks`]: one render per metatile among nodes that share a cache directory.
//!
//! Inside a node the render pool already coalesces the misses of one metatile into one
//! job. Across nodes (a failover, a client that bypasses the balancer) each job first
//! takes a PostgreSQL advisory lock named after the metatile; a node that finds it taken
//! polls every [`POLL`] until it is free, then the render backend looks at the file: if
//! another node has just rendered it, the job is done without rendering again.
//!
//! Why PostgreSQL and not a lock file in the shared directory: a session lock is released
//! by the server the moment its holder dies (a lock file outlives a killed node and
//! needs a staleness rule that trades waiting against double renders), it works on any
//! shared file system (NFS locking and FUSE object stores vary), it leaves nothing in
//! the cache tree, and every node already talks to the database. The cost is two round
//! trips per render (see the README for the measured figures).

use super::FleetMetrics;
use crate::errors::error_chain;
use crate::source::fleet::{render_lock_key, FleetLocks};
use crate::tile::{MetatileCoord, StyleName};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

/// How often a waiting node retries the lock: a fraction of a render (tens to hundreds
/// of milliseconds), and one cheap round trip each.
const POLL: Duration = Duration::from_millis(20);
/// Longest wait for another node's render before rendering anyway (a stuck holder
/// must not stall this node's clients forever).
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Takes render locks for a node with a shared cache.
pub(crate) struct RenderLocks {
    locks: Arc<FleetLocks>,
    metrics: FleetMetrics,
}

impl RenderLocks {
    pub(crate) fn new(locks: FleetLocks, metrics: FleetMetrics) -> Self {
        Self {
            locks: Arc::new(locks),
            metrics,
        }
    }

    /// Counts a render not done because another node had just done it.
    pub(crate) fn skipped(&self, style: &StyleName) {
        self.metrics
            .renders_skipped
            .with_label_values(&[style.as_str()])
            .inc();
    }

    /// Waits until this node holds the metatile's lock, held until the guard is
    /// dropped; `None` when the database failed or the wait was too long (render
    /// anyway). Also returns whether it had to wait.
    pub(crate) async fn acquire(
        &self,
        style: &StyleName,
        meta: MetatileCoord,
    ) -> (Option<RenderLockGuard>, bool) {
        let key = render_lock_key(style.as_str(), meta.z, meta.x, meta.y);
        let started = Instant::now();
        let mut waited = false;
        loop {
            match self.locks.try_lock(key).await {
                Ok(true) => {
                    if waited {
                        self.metrics
                            .lock_wait_seconds
                            .observe(started.elapsed().as_secs_f64());
                    }
                    let guard = RenderLockGuard {
                        locks: self.locks.clone(),
                        key,
                        runtime: Handle::current(),
                    };
                    return (Some(guard), waited);
                }
                Ok(false) => {
                    if !waited {
                        waited = true;
                        self.metrics.lock_waits.inc();
                    }
                    if started.elapsed() >= MAX_WAIT {
                        tracing::warn!(%style, %meta, waited.ms = started.elapsed().as_millis() as u64, "fleet: another node holds this metatile's render lock too long; rendering anyway");
                        return (None, waited);
                    }
                    tokio::time::sleep(POLL).await;
                }
                Err(e) => {
                    self.metrics.lock_errors.inc();
                    tracing::warn!(%style, %meta, error = %error_chain(&e), "fleet: cannot take the render lock; rendering without it");
                    return (None, waited);
                }
            }
        }
    }
}

/// Releases the lock when dropped (from any thread: the release runs on the runtime).
pub(crate) struct RenderLockGuard {
    locks: Arc<FleetLocks>,
    key: i32,
    runtime: Handle,
}

impl Drop for RenderLockGuard {
    fn drop(&mut self) {
        let locks = self.locks.clone();
        let key = self.key;
        self.runtime.spawn(async move {
            if let Err(e) = locks.unlock(key).await {
                tracing::warn!(error = %error_chain(&e), "fleet: cannot release a render lock (the database releases it with the connection)");
            }
        });
    }
}
