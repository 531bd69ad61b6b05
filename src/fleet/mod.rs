//! Several nodes as one tile service, coordinated through the PostgreSQL they already
//! share (no balancer or coordinator of our own: HAProxy routes, PostgreSQL remembers).
//!
//! - Every node has an id (`node.id`, default the host name), registers in
//!   `metatiled.fleet_node` and sends a heartbeat ([`Membership`]); `GET /status` on
//!   the admin port lists the fleet as the database sees it.
//! - Every node applies every logged row change (the watcher, `crate::watch`) and every
//!   admin expiry another node received ([`ExpiryFollower`]) exactly once, each from its
//!   own cursor (`crate::source::fleet`), including what happened while it was down,
//!   within `fleet.retention_secs`. An admin expiry is applied by the node that receives
//!   it, then published ([`FleetHandle::publish_expiry`]).
//! - Two cache topologies (`cache.shared`): each node its own cache (a published expiry
//!   is applied to each node's own files), or one shared directory (the receiving node
//!   changed the files; the others make their memory layer re-check every tile against
//!   its file at its next hit, and renders of one metatile are serialized across nodes
//!   by an advisory lock: [`RenderLocks`]).
//! - On SIGTERM a node drains first ([`Drain`]: `/ready` answers 503 for
//!   `node.drain_secs` while it keeps serving) so the balancer stops sending it requests
//!   before it stops.
//! - [`haproxy`]: the HAProxy configuration that routes each metatile to one node.
//!
//! # Layout
//! - here: settings, the node id, [`Drain`], [`FleetHandle`] (publish, status).
//! - `membership`: registration, heartbeats, pruning of the logs.
//! - `follower`: the expiry log's reader.
//! - `lock`: one render per metatile across nodes sharing a cache.
//! - `metrics`: the `metatiled_fleet_*` series.
//! - [`haproxy`]: the balancer's configuration.

mod follower;
pub mod haproxy;
mod lock;
mod membership;
mod metrics;

pub(crate) use follower::{ExpiryFollower, FleetTargets};
pub(crate) use lock::{RenderLockGuard, RenderLocks};
pub(crate) use membership::Membership;
pub(crate) use metrics::FleetMetrics;

use crate::area::MetatileSet;
use crate::expire::ExpirePlan;
use crate::source::fleet::{self as db, ExpiryRecord, FleetDbError, NodeStatus};
use crate::source::{DbClient, DbPool};
use crate::tile::StyleName;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use thiserror::Error;

/// Longest node id: ids go into logs, metrics and HAProxy server names.
pub const MAX_NODE_ID_LEN: usize = 63;

#[derive(Debug, Error)]
pub enum FleetError {
    #[error("no database connection")]
    Pool(#[source] deadpool_postgres::PoolError),
    #[error(transparent)]
    Database(#[from] FleetDbError),
}

/// The `[node]` section: this process in a fleet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSettings {
    /// This node's id in the fleet (its cursors in the logs, `/status`); default the
    /// host name, which `docker compose --scale` and Kubernetes make unique.
    pub id: String,
    /// On SIGTERM/SIGINT, answer `/ready` with 503 for this long while still serving,
    /// so a balancer marks the node down before it stops (0 = stop at once).
    pub drain_secs: u64,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            id: host_name(),
            drain_secs: 0,
        }
    }
}

/// The `[fleet]` section: what the nodes of a fleet share through PostgreSQL.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FleetSettings {
    /// The fleet this node belongs to: nodes apply the admin expiries of their own
    /// fleet and list only it in `/status`, so several fleets (staging and production,
    /// one per region) can share a database. Row changes reach every watching node.
    pub name: String,
    /// Seconds between a node's heartbeats (`last_seen` in `/status`).
    pub heartbeat_secs: u64,
    /// How long logged changes and expiries wait for a node that is down (a node away
    /// longer finds its cache outdated: see the README).
    pub retention_secs: u64,
    /// The expiry log is also read this often, in case a notification was missed.
    pub poll_secs: u64,
}

impl Default for FleetSettings {
    fn default() -> Self {
        Self {
            name: "default".into(),
            heartbeat_secs: 5,
            retention_secs: 24 * 3600,
            poll_secs: 10,
        }
    }
}

/// The host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`), or `metatiled`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "metatiled".to_string())
}

/// Why a node id (or fleet name) is refused: it must be 1-63 characters of letters,
/// digits, `.`, `_`, `-`.
pub fn check_node_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_NODE_ID_LEN {
        return Err(format!(
            "must be 1-{MAX_NODE_ID_LEN} characters, got {id:?}"
        ));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(format!(
            "{id:?}: only letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

/// `up`, `draining`, `down` (heartbeats missed) or `gone` (away longer than the
/// retention: the logs no longer wait for it).
pub fn node_state(settings: &FleetSettings, n: &NodeStatus) -> &'static str {
    let away = n.last_seen_secs_ago;
    if away > settings.retention_secs as f64 {
        "gone"
    } else if away > MISSED_HEARTBEATS_DOWN * settings.heartbeat_secs.max(1) as f64 {
        "down"
    } else if n.draining {
        "draining"
    } else {
        "up"
    }
}

/// Whether this node is draining (stopping soon: `/ready` answers 503).
#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
    started: tokio::sync::Notify,
}

impl Drain {
    pub fn start(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.started.notify_waiters();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Resolves once draining has started.
    pub async fn started(&self) {
        loop {
            let notified = self.started.notified();
            if self.is_draining() {
                return;
            }
            notified.await;
        }
    }
}

/// This node's handle on the fleet: its id, publishing expiries, the fleet's status.
pub struct FleetHandle {
    node_id: String,
    cache_shared: bool,
    settings: FleetSettings,
    db: DbPool,
    metrics: FleetMetrics,
    drain: Arc<Drain>,
}

/// Heartbeats a node may miss before `/status` calls it down.
const MISSED_HEARTBEATS_DOWN: f64 = 3.0;

impl FleetHandle {
    /// A connection from the server's pool.
    pub(crate) async fn client(&self) -> Result<DbClient, FleetError> {
        self.db.get().await.map_err(FleetError::Pool)
    }

    pub(crate) fn new(
        node: &NodeSettings,
        cache_shared: bool,
        settings: &FleetSettings,
        db: DbPool,
        metrics: FleetMetrics,
        drain: Arc<Drain>,
    ) -> Self {
        Self {
            node_id: node.id.clone(),
            cache_shared,
            settings: settings.clone(),
            db,
            metrics,
            drain,
        }
    }

    /// See [`node_state`].
    pub fn node_state(&self, n: &NodeStatus) -> &'static str {
        node_state(&self.settings, n)
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// `fleet.name`.
    pub fn fleet_name(&self) -> &str {
        &self.settings.name
    }

    pub fn cache_shared(&self) -> bool {
        self.cache_shared
    }

    pub fn drain(&self) -> &Arc<Drain> {
        &self.drain
    }

    /// Publishes an expiry this node has applied, for the others; its id in the log.
    pub async fn publish_expiry(
        &self,
        styles: &[StyleName],
        plan: &ExpirePlan,
        set: &MetatileSet,
    ) -> Result<i64, FleetError> {
        let record = ExpiryRecord {
            fleet: self.settings.name.clone(),
            origin: self.node_id.clone(),
            styles: styles.iter().map(|s| s.to_string()).collect(),
            min_zoom: plan.min_zoom,
            max_zoom: plan.max_zoom,
            delete_from: plan.delete_from,
            touch_from: plan.touch_from,
            set_max_zoom: set.max_zoom(),
            squares: set.squares_flat(),
        };
        let result = async {
            let client = self.client().await?;
            Ok(db::publish_expiry(&client, &record).await?)
        }
        .await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .expiries_published
            .with_label_values(&[outcome])
            .inc();
        result
    }

    /// The fleet as the database sees it.
    pub async fn status(&self) -> Result<Vec<NodeStatus>, FleetError> {
        let client = self.client().await?;
        Ok(db::fleet_status(&client, &self.settings.name).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_short_plain_names() {
        assert!(check_node_id("tiles-1.example").is_ok());
        assert!(check_node_id("a1b2c3d4e5f6").is_ok());
        assert!(check_node_id("").is_err());
        assert!(check_node_id("has space").is_err());
        assert!(check_node_id(&"x".repeat(64)).is_err());
        assert!(!host_name().is_empty());
    }

    #[tokio::test]
    async fn draining_is_a_one_way_switch_that_wakes_its_waiters() {
        let d = Arc::new(Drain::default());
        assert!(!d.is_draining());
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.started().await }
        });
        tokio::task::yield_now().await;
        d.start();
        assert!(d.is_draining());
        waiter.await.unwrap();
        d.started().await;
    }
}
