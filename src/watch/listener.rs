//! The watcher `serve` runs when `watch.enabled`: a [`ChangeFeed`] (its own connection,
//! not a pooled one) that LISTENs for the triggers' notifications and reads the change
//! log past this node's cursor (`node.id`, see [`crate::source::fleet`]) on start, on
//! every notification and every `watch.poll_secs` (in case one was missed). Each batch
//! of rows is turned into metatiles per style and zoom ([`super::plan`]), expired
//! through the server's [`BatchTargets`] on a blocking thread, and only then recorded in
//! the cursor: a crash, a stop or a lost connection in between means the rows are read
//! and expired again (expiring twice is harmless), never lost. Every node of a fleet
//! applies every row once; the rows leave the log when every live node is past them
//! (pruned by the fleet's membership loop). When the connection goes, it reconnects
//! with exponential backoff.

use super::plan::{expire_work, group_by_style, StyleZooms, WatchPolicy};
use super::{WatchError, WatchMetrics, WatchSettings};
use crate::expire::{ExpireMode, ExpireTarget};
use crate::source::changes::{poll_interval, ChangeFeed, ChangeRow, TableRef, Wake};
use crate::source::fleet::{self, LogCursor, LogKind};
use crate::source::DatabaseSettings;
use crate::style::StyleSet;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Log rows read (and expired together) at once: bounds memory and the time before
/// the first rows of a long backlog are done. One statement writes at most 289 rows.
const BATCH_ROWS: i64 = 1000;
/// First wait before reconnecting; doubled after each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where the watcher's expiries go: for each batch, a target that stops early once
/// `cancel` is cancelled (the server's own: cache, memory layer and re-renders).
pub(crate) trait BatchTargets: Send + Sync + 'static {
    fn target(&self, cancel: CancellationToken) -> Box<dyn ExpireTarget + Send>;
}

/// Follows the change log and expires what changed. Build it with [`Watcher::new`],
/// run it with [`Watcher::run`].
pub(crate) struct Watcher {
    db: DatabaseSettings,
    /// This node's id: whose cursor in the change log to follow.
    node_id: String,
    /// The cache is shared with other nodes (see [`fleet::Start::EndIfOthers`]).
    shared_cache: bool,
    styles: Arc<StyleSet>,
    expiry: Arc<dyn BatchTargets>,
    metrics: WatchMetrics,
    policy: WatchPolicy,
    poll: Duration,
    /// Styles and zooms per logged table name (styles do not change while serving).
    targets: HashMap<String, Arc<Vec<StyleZooms>>>,
}

impl Watcher {
    pub(crate) fn new(
        db: &DatabaseSettings,
        node: (&str, bool),
        settings: &WatchSettings,
        styles: Arc<StyleSet>,
        expiry: Arc<dyn BatchTargets>,
        metrics: WatchMetrics,
    ) -> Watcher {
        Watcher {
            db: db.clone(),
            node_id: node.0.to_string(),
            shared_cache: node.1,
            styles,
            expiry,
            metrics,
            policy: settings.policy(),
            poll: Duration::from_secs(settings.poll_secs.max(1)),
            targets: HashMap::new(),
        }
    }

    /// Runs until `stop` is cancelled: connect, follow, and reconnect with backoff.
    pub(crate) async fn run(mut self, stop: CancellationToken) {
        let metrics = self.metrics.clone();
        let mut backoff = MIN_BACKOFF;
        let mut lost = false;
        loop {
            let connected = tokio::select! {
                _ = stop.cancelled() => return,
                feed = ChangeFeed::connect(&self.db) => feed,
            };
            match connected {
                Ok(mut feed) => {
                    metrics.connected.set(1);
                    if lost {
                        metrics.reconnects.inc();
                        tracing::info!("watch: reconnected to the database");
                    }
                    let outcome = self.follow(&mut feed, &stop, &mut backoff).await;
                    metrics.connected.set(0);
                    match outcome {
                        Ok(()) => return,
                        Err(e) => {
                            lost = true;
                            tracing::warn!(error = %e, retry.ms = backoff.as_millis() as u64, "watch: lost the database connection; reconnecting");
                        }
                    }
                }
                Err(e) => {
                    lost = true;
                    tracing::warn!(error = %e, retry.ms = backoff.as_millis() as u64, "watch: cannot connect to the database; retrying");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Reads the backlog, then waits for notifications (or the poll interval) and reads
    /// again; `Ok` when stopped, `Err` when the connection failed.
    async fn follow(
        &mut self,
        feed: &mut ChangeFeed,
        stop: &CancellationToken,
        backoff: &mut Duration,
    ) -> Result<(), WatchError> {
        let watched = feed.watched_tables().await?;
        if watched.is_empty() {
            tracing::warn!("watch: no table has the change triggers; run `metatiled watch` or set watch.install_on_start");
        } else {
            let names: Vec<String> = watched.iter().map(TableRef::to_string).collect();
            tracing::info!(tables = ?names, "watch: listening for changes");
        }
        // A new node with a shared cache that others keep current starts at the end.
        let start = if self.shared_cache {
            fleet::Start::EndIfOthers
        } else {
            fleet::Start::Beginning
        };
        let (mut cursor, new) =
            fleet::load_cursor(feed.client(), &self.node_id, LogKind::Changes, start).await?;
        if new {
            tracing::info!(node = %self.node_id, horizon = cursor.horizon, "watch: first start of this node: following the change log");
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
                Wake::Closed(reason) => return Err(WatchError::Closed(reason)),
            }
            if self.drain(feed, &mut cursor, stop).await? {
                return Ok(());
            }
        }
    }

    fn targets_for(&mut self, table: &str) -> Arc<Vec<StyleZooms>> {
        if let Some(t) = self.targets.get(table) {
            return t.clone();
        }
        let name = TableRef::parse(table);
        let targets = Arc::new(super::plan::targets_for_table(
            &self.styles,
            &name.schema,
            &name.name,
        ));
        for t in targets.iter() {
            tracing::debug!(table, style = %t.style.name, zooms = ?t.zooms.iter().collect::<Vec<_>>(), "watch: table affects style");
        }
        self.targets.insert(table.to_string(), targets.clone());
        targets
    }

    /// Expires everything past the cursor, batch by batch, moving the cursor after each.
    /// `Ok(true)` when stopped midway (the unfinished batch is read again next time).
    async fn drain(
        &mut self,
        feed: &ChangeFeed,
        cursor: &mut LogCursor,
        stop: &CancellationToken,
    ) -> Result<bool, WatchError> {
        loop {
            let read = fleet::read_changes(feed.client(), cursor, BATCH_ROWS).await?;
            let rows = read.rows;
            if rows.is_empty() {
                if cursor.advance([], read.snapshot_xmin, read.complete) {
                    fleet::save_cursor(feed.client(), &self.node_id, LogKind::Changes, cursor)
                        .await?;
                }
                return Ok(false);
            }
            let started = Instant::now();
            let targets: Vec<Arc<Vec<StyleZooms>>> =
                rows.iter().map(|r| self.targets_for(&r.table)).collect();
            let work = group_by_style(
                targets
                    .iter()
                    .zip(&rows)
                    .map(|(t, r)| (t.as_slice(), r.bbox)),
            );
            let cancel = stop.child_token();
            let target = self.expiry.target(cancel.clone());
            let policy = self.policy;
            let mut job =
                tokio::task::spawn_blocking(move || expire_work(target.as_ref(), policy, work));
            let summary = tokio::select! {
                done = &mut job => done.map_err(WatchError::Task)?,
                _ = stop.cancelled() => {
                    cancel.cancel();
                    let _ = job.await;
                    return Ok(true);
                }
            };
            cursor.advance(
                rows.iter().map(|r| (r.id, r.xact)),
                read.snapshot_xmin,
                read.complete,
            );
            fleet::save_cursor(feed.client(), &self.node_id, LogKind::Changes, cursor).await?;
            self.record(&rows, &summary, started.elapsed());
            if read.complete {
                return Ok(false);
            }
        }
    }

    fn record(&self, rows: &[ChangeRow], summary: &super::plan::BatchSummary, took: Duration) {
        let metrics = &self.metrics;
        let mut max_lag = Duration::ZERO;
        let mut changed_rows = 0u64;
        let mut tables: Vec<&str> = Vec::new();
        for r in rows {
            let n = u64::try_from(r.changed_rows).unwrap_or(0);
            changed_rows += n;
            metrics.changes.with_label_values(&[&r.table]).inc();
            metrics
                .changed_rows
                .with_label_values(&[&r.table])
                .inc_by(n);
            let lag = r.age + took;
            metrics.lag_seconds.observe(lag.as_secs_f64());
            max_lag = max_lag.max(lag);
            if !tables.contains(&r.table.as_str()) {
                tables.push(&r.table);
            }
        }
        for (style, s) in &summary.per_style {
            for (action, counts) in [
                (ExpireMode::Delete, s.delete),
                (ExpireMode::Dirty, s.mark_dirty),
                (ExpireMode::Render, s.render),
            ] {
                if counts.changed > 0 {
                    metrics
                        .expired_metatiles
                        .with_label_values(&[style.as_str(), action.as_str()])
                        .inc_by(counts.changed);
                }
            }
        }
        tracing::info!(
            boxes = rows.len(),
            rows = changed_rows,
            tables = ?tables,
            metatiles = summary.changed(),
            matched = summary.matched(),
            errors = summary.errors(),
            lag.ms = max_lag.as_millis() as u64,
            expire.ms = took.as_millis() as u64,
            "watch: expired changed areas"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_settings_become_a_policy() {
        let mut s = WatchSettings::default();
        let p = s.policy();
        assert_eq!(p.mode, ExpireMode::Dirty);
        assert_eq!(p.render_up_to, None);
        s.mode = ExpireMode::Render;
        s.render_up_to_zoom = 12;
        let p = s.policy();
        assert_eq!(p.mode, ExpireMode::Render);
        assert_eq!(p.render_up_to, Some(12));
    }
}
