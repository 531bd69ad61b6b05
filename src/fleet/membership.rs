//! [`Membership`]: this node in `metatiled.fleet_node`. It registers (retrying until the
//! database answers), sends a heartbeat every `fleet.heartbeat_secs` (at once when
//! draining starts), prunes what every live node has applied from the logs every
//! [`PRUNE_EVERY`], and releases the node id when the server stops.
//!
//! A node that comes back after longer than `fleet.retention_secs` may have missed
//! changes that were pruned meanwhile: with its own cache it then treats every cached
//! tile as stale (the `outdated` callback; tiles are served and re-rendered one by one
//! as they are asked for). With a shared cache the other nodes kept the files current.

use super::{FleetHandle, FleetSettings};
use crate::errors::error_chain;
use crate::source::fleet as db;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often a node prunes the logs (every node does; the deletes are idempotent).
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// A node not seen for this many retentions is forgotten (cursors and all).
const FORGET_AFTER_RETENTIONS: u32 = 2;
/// Longest wait for the final update when stopping.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// Called when this node was away longer than the retention (see the module docs).
pub(crate) type Outdated = Box<dyn Fn() + Send + Sync>;

/// Registration, heartbeats and pruning of one node. Build with [`Membership::new`],
/// run with [`Membership::run`].
pub(crate) struct Membership {
    handle: Arc<FleetHandle>,
    settings: FleetSettings,
    instance: String,
    outdated: Outdated,
}

impl Membership {
    pub(crate) fn new(
        handle: Arc<FleetHandle>,
        settings: FleetSettings,
        outdated: Outdated,
    ) -> Self {
        Self {
            handle,
            settings,
            instance: format!("{:016x}", rand::random::<u64>()),
            outdated,
        }
    }

    fn record(&self) -> db::NodeRecord {
        db::NodeRecord {
            node_id: self.handle.node_id.clone(),
            fleet: self.settings.name.clone(),
            instance: self.instance.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            cache_shared: self.handle.cache_shared,
        }
    }

    /// Runs until `stop` is cancelled, then releases the node id.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let heartbeat = Duration::from_secs(self.settings.heartbeat_secs.max(1));
        let mut tick = tokio::time::interval(heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut registered = false;
        let mut failing = false;
        let mut warned_shared_id = false;
        let mut last_prune: Option<tokio::time::Instant> = None;
        let drain = self.handle.drain.clone();
        let mut drain_reported = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
                _ = drain.started(), if !drain_reported => drain_reported = true,
            }
            let result = if registered {
                self.beat(&mut registered, &mut warned_shared_id).await
            } else {
                self.register(heartbeat).await.map(|()| registered = true)
            };
            match result {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!(node = %self.handle.node_id, "fleet: heartbeat works again");
                }
                Ok(()) => {}
                Err(e) => {
                    self.handle.metrics.heartbeat_errors.inc();
                    if !failing {
                        tracing::warn!(node = %self.handle.node_id, error = %error_chain(&e), "fleet: heartbeat failed; retrying");
                    }
                    failing = true;
                    continue;
                }
            }
            if !last_prune.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
                last_prune = Some(tokio::time::Instant::now());
                self.prune().await;
            }
        }
        if registered {
            let release = async {
                let client = self.handle.db.get().await.ok()?;
                db::release_node(&client, &self.handle.node_id, &self.instance)
                    .await
                    .ok()
            };
            let _ = tokio::time::timeout(RELEASE_TIMEOUT, release).await;
        }
    }

    async fn register(&self, heartbeat: Duration) -> Result<(), super::FleetError> {
        let client = self.handle.client().await?;
        let reg = db::register_node(&client, &self.record()).await?;
        let node = &self.handle.node_id;
        match reg.away_secs {
            None => tracing::info!(node = %node, "fleet: registered a new node"),
            Some(away) => {
                tracing::info!(node = %node, away.secs = away as u64, "fleet: node registered again");
                if reg
                    .previous_instance
                    .as_deref()
                    .is_some_and(|i| !i.is_empty())
                    && away < 3.0 * heartbeat.as_secs_f64()
                {
                    tracing::warn!(node = %node, "fleet: another process sent a heartbeat as this node moments ago (or this node was killed and restarted at once); two processes sharing a node.id share cursors and each misses changes: give each its own node.id");
                }
                if away > self.settings.retention_secs as f64 {
                    if self.handle.cache_shared {
                        tracing::warn!(node = %node, away.secs = away as u64, "fleet: this node was away longer than fleet.retention_secs; the shared cache was kept current by the others");
                    } else {
                        tracing::warn!(node = %node, away.secs = away as u64, "fleet: this node was away longer than fleet.retention_secs and may have missed changes: every tile of its cache is now stale and is re-rendered when next asked for");
                        (self.outdated)();
                    }
                }
            }
        }
        Ok(())
    }

    async fn beat(
        &self,
        registered: &mut bool,
        warned_shared_id: &mut bool,
    ) -> Result<(), super::FleetError> {
        let client = self.handle.client().await?;
        let draining = self.handle.drain.is_draining();
        match db::heartbeat(&client, &self.handle.node_id, draining).await? {
            None => {
                tracing::info!(node = %self.handle.node_id, "fleet: this node's registration is gone (forgotten); registering again");
                *registered = false;
            }
            Some(instance) if instance != self.instance && !*warned_shared_id => {
                *warned_shared_id = true;
                tracing::warn!(node = %self.handle.node_id, "fleet: another process registered with this node.id; processes sharing a node.id share cursors and each misses changes: give each its own node.id");
            }
            Some(_) => {}
        }
        Ok(())
    }

    async fn prune(&self) {
        let retention = Duration::from_secs(self.settings.retention_secs);
        let result = async {
            let client = self.handle.client().await?;
            Ok::<_, super::FleetError>(
                db::prune(&client, retention, retention * FORGET_AFTER_RETENTIONS).await?,
            )
        }
        .await;
        match result {
            Ok(p) => {
                let m = &self.handle.metrics.pruned;
                m.with_label_values(&["changes"]).inc_by(p.changes);
                m.with_label_values(&["expiries"]).inc_by(p.expiries);
                m.with_label_values(&["nodes"]).inc_by(p.nodes);
                if p != db::Pruned::default() {
                    tracing::debug!(
                        changes = p.changes,
                        expiries = p.expiries,
                        nodes = p.nodes,
                        "fleet: pruned the logs"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "fleet: cannot prune the logs");
            }
        }
    }
}
