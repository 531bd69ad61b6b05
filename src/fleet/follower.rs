//! [`ExpiryFollower`]: applies the admin expiries that other nodes received. Its own
//! connection LISTENs on [`EXPIRY_CHANNEL`] and reads `metatiled.expiry_log` past this
//! node's cursor on start, on every notification and every `fleet.poll_secs`; the
//! cursor moves only once an expiry is applied, so a stop or a lost connection means
//! it is applied again (harmless), never skipped. Reconnects with exponential backoff.
//!
//! With its own cache a node applies the expiry to its files ([`FleetTargets::target`]:
//! the same target as the admin API, so `render` re-renders what this node holds).
//! With a shared cache the node that received the expiry changed the files already;
//! the others make their memory layer compare every tile with its file at its next hit
//! ([`FleetTargets::revalidate_memory`]), so no node serves an expired tile from memory.

use super::FleetHandle;
use crate::area::MetatileSet;
use crate::errors::error_chain;
use crate::expire::{apply, ExpirePlan, ExpireSummary, ExpireTarget};
use crate::source::changes::{poll_interval, ChangeError, ChangeFeed, Wake};
use crate::source::fleet::{
    self as db, ExpiryRow, FleetDbError, LogCursor, LogKind, EXPIRY_CHANNEL, FLEET_APPLICATION_NAME,
};
use crate::source::DatabaseSettings;
use crate::style::StyleSet;
use crate::tile::StyleName;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

/// Expiries read at once (each can name a large area).
const BATCH_ROWS: i64 = 16;
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where the follower's expiries go (the server's own cache and memory layer).
pub(crate) trait FleetTargets: Send + Sync + 'static {
    /// The server's expiry target, stopping early once `cancel` is cancelled.
    fn target(&self, cancel: CancellationToken) -> Box<dyn ExpireTarget + Send>;
    /// Shared cache: every memory-cached tile is compared with its file at its next hit.
    fn revalidate_memory(&self);
}

#[derive(Debug, Error)]
enum FollowError {
    #[error(transparent)]
    Feed(#[from] ChangeError),
    #[error(transparent)]
    Cursor(#[from] FleetDbError),
    #[error("the connection closed: {0}")]
    Closed(String),
    #[error("the expiry task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// Follows the expiry log. Build with [`ExpiryFollower::new`], run with
/// [`ExpiryFollower::run`].
pub(crate) struct ExpiryFollower {
    db: DatabaseSettings,
    handle: Arc<FleetHandle>,
    styles: Arc<StyleSet>,
    targets: Arc<dyn FleetTargets>,
    poll: Duration,
}

impl ExpiryFollower {
    pub(crate) fn new(
        db: &DatabaseSettings,
        handle: Arc<FleetHandle>,
        styles: Arc<StyleSet>,
        targets: Arc<dyn FleetTargets>,
        poll_secs: u64,
    ) -> Self {
        Self {
            db: db.clone(),
            handle,
            styles,
            targets,
            poll: Duration::from_secs(poll_secs.max(1)),
        }
    }

    /// Runs until `stop` is cancelled: connect, follow, reconnect with backoff.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let connected = self.handle.metrics.connected.clone();
        let mut backoff = MIN_BACKOFF;
        loop {
            let feed = tokio::select! {
                _ = stop.cancelled() => return,
                feed = ChangeFeed::connect_to(&self.db, EXPIRY_CHANNEL, FLEET_APPLICATION_NAME) => feed,
            };
            match feed {
                Ok(mut feed) => {
                    connected.set(1);
                    let outcome = self.follow(&mut feed, &stop, &mut backoff).await;
                    connected.set(0);
                    match outcome {
                        Ok(()) => return,
                        Err(e) => {
                            tracing::warn!(error = %error_chain(&e), retry.ms = backoff.as_millis() as u64, "fleet: the expiry follower lost its connection; reconnecting");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), retry.ms = backoff.as_millis() as u64, "fleet: the expiry follower cannot connect; retrying");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn follow(
        &self,
        feed: &mut ChangeFeed,
        stop: &CancellationToken,
        backoff: &mut Duration,
    ) -> Result<(), FollowError> {
        let node = self.handle.node_id();
        // A new node applies the expiries published from now on (its cache is new, or
        // shared and kept current by the others).
        let (mut cursor, new) =
            db::load_cursor(feed.client(), node, LogKind::Expiries, db::Start::End).await?;
        if new {
            tracing::info!(
                node,
                "fleet: first start of this node: following the expiry log"
            );
        }
        if self.drain(feed, &mut cursor, stop).await? {
            return Ok(());
        }
        *backoff = MIN_BACKOFF;
        let mut poll = poll_interval(self.poll);
        loop {
            match feed.wait_to_read(&mut poll, stop).await {
                Wake::Read => {}
                Wake::Stopped => return Ok(()),
                Wake::Closed(reason) => return Err(FollowError::Closed(reason)),
            }
            if self.drain(feed, &mut cursor, stop).await? {
                return Ok(());
            }
        }
    }

    /// Applies everything past the cursor. `Ok(true)` when stopped midway.
    async fn drain(
        &self,
        feed: &ChangeFeed,
        cursor: &mut LogCursor,
        stop: &CancellationToken,
    ) -> Result<bool, FollowError> {
        let node = self.handle.node_id();
        loop {
            let read = db::read_expiries(
                feed.client(),
                cursor,
                (self.handle.fleet_name(), node),
                BATCH_ROWS,
            )
            .await?;
            for row in &read.rows {
                let started = Instant::now();
                if self.apply(row, stop).await? {
                    return Ok(true);
                }
                let m = &self.handle.metrics;
                m.expiries_applied.inc();
                m.expiry_lag_seconds
                    .observe((row.age + started.elapsed()).as_secs_f64());
            }
            if cursor.advance(
                read.rows.iter().map(|r| (r.id, r.xact)),
                read.snapshot_xmin,
                read.complete,
            ) {
                db::save_cursor(feed.client(), node, LogKind::Expiries, cursor).await?;
            }
            if read.complete {
                return Ok(false);
            }
        }
    }

    /// Applies one expiry; `Ok(true)` when stopped before it was done.
    async fn apply(&self, row: &ExpiryRow, stop: &CancellationToken) -> Result<bool, FollowError> {
        let r = &row.record;
        if self.handle.cache_shared() {
            self.targets.revalidate_memory();
            tracing::info!(id = row.id, origin = %r.origin, styles = %r.styles.join(","), lag.ms = row.age.as_millis() as u64, "fleet: expiry from another node: memory re-checks its tiles against the shared cache");
            return Ok(false);
        }
        let plan = match ExpirePlan::new(r.min_zoom, r.max_zoom, r.delete_from, r.touch_from) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::warn!(id = row.id, origin = %r.origin, error = %e, "fleet: skipping an expiry this node cannot read");
                return Ok(false);
            }
        };
        let (set, bad) = MetatileSet::from_squares_flat(r.set_max_zoom, &r.squares);
        if bad > 0 {
            tracing::warn!(id = row.id, origin = %r.origin, bad, "fleet: an expiry named squares outside the grid; skipped those");
        }
        let mut styles: Vec<StyleName> = Vec::new();
        for name in &r.styles {
            match StyleName::parse(name)
                .ok()
                .filter(|n| self.styles.get(n).is_some())
            {
                Some(n) => styles.push(n),
                None => {
                    tracing::warn!(id = row.id, origin = %r.origin, style = %name, "fleet: an expiry names a style this node does not serve; skipped it")
                }
            }
        }
        let cancel = stop.child_token();
        let target = self.targets.target(cancel.clone());
        let started = Instant::now();
        let mut job = tokio::task::spawn_blocking(move || {
            let mut summary = ExpireSummary::default();
            for style in &styles {
                summary.add(&apply(target.as_ref(), style, &plan, &set, &mut |_| {}));
            }
            summary
        });
        let summary = tokio::select! {
            done = &mut job => done.map_err(FollowError::Task)?,
            _ = stop.cancelled() => {
                cancel.cancel();
                let _ = job.await;
                return Ok(true);
            }
        };
        let total = summary.total();
        tracing::info!(
            id = row.id,
            origin = %r.origin,
            styles = %r.styles.join(","),
            matched = total.matched,
            changed = total.changed,
            errors = total.errors,
            lag.ms = row.age.as_millis() as u64,
            expire.ms = started.elapsed().as_millis() as u64,
            "fleet: applied an expiry from another node"
        );
        Ok(false)
    }
}
