//! The database's health as the server last saw it, and the probe that heals it.
//!
//! [`SourceHealth`] is shared by the source (which reports every fetch's outcome and
//! fails fast while the database is known to be down), the tile service (which refuses
//! misses at once) and `/ready` (which answers from it, never with a query of its own).
//!
//! - **Down**: a connection or query failure of any kind (refused, reset, a connect,
//!   create or wait timeout, a probe that got no answer) marks the source unavailable,
//!   logged once with its cause. Fetches then fail at once with
//!   [`Unavailable`]; fetches still waiting on a connection are woken and fail too, so
//!   no request waits on a dead connection.
//! - **Silent peer**: a fetch without an answer after `suspect_after` asks for a probe
//!   (unless something else succeeded that recently); a probe without an answer within
//!   `probe_timeout` marks the source down. They are 40% and 50% of the connect
//!   timeout, so a first miss on a silent database is answered within it.
//! - **Up again**: while down, [`run_monitor`] probes (a fresh connection and
//!   `SELECT 1`) at growing intervals up to `probe_max_interval`, without waiting for
//!   a slow probe to end before starting the next one; the first success (of a probe or
//!   of a real query) clears the state, logged once with the outage's length.

use futures_util::future::BoxFuture;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use thiserror::Error;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The first pause between probes while the database is down; it doubles up to the
/// configured maximum.
pub const FIRST_PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// Probes running at once while the database is down (each lasts at most the probe
/// timeout): enough that a slow, doomed probe never delays the one that would succeed.
const MAX_PROBES_IN_FLIGHT: usize = 4;
/// While down, a reminder is logged this often (the transition itself is logged once).
const STILL_DOWN_LOG_EVERY: Duration = Duration::from_secs(60);

/// The database is known to be unreachable; says since when and why.
#[derive(Debug, Clone, Error)]
#[error("the database is unavailable since {}: {cause}", httpdate::fmt_http_date(*.since))]
pub struct Unavailable {
    pub since: SystemTime,
    /// The failure that marked it down, on one line.
    pub cause: Arc<str>,
}

/// Why a probe failed.
#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot connect")]
    Connect(#[source] tokio_postgres::Error),
    #[error("SELECT 1 failed")]
    Query(#[source] tokio_postgres::Error),
    #[error("the connection closed during the probe")]
    Closed,
}

/// A fetch that did not answer in time.
#[derive(Debug, Clone, Copy, Error)]
#[error("no answer from the database within {0:?}")]
pub struct NoAnswer(pub Duration);

/// Timing of the health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthOptions {
    /// A fetch without an answer for this long asks for a probe.
    pub suspect_after: Duration,
    /// A probe (connect + `SELECT 1`) must answer within this.
    pub probe_timeout: Duration,
    /// Largest pause between probes while the database is down.
    pub probe_max_interval: Duration,
}

impl HealthOptions {
    /// Derived from the database settings: a silent database is suspected after 40% of
    /// the connect timeout and a probe gets half of it, so the first request on a
    /// silent database is answered within the connect timeout.
    pub fn from_settings(settings: &super::DatabaseSettings) -> Self {
        let connect = settings.connect_timeout_ms.max(10);
        Self {
            suspect_after: Duration::from_millis(connect * 2 / 5),
            probe_timeout: Duration::from_millis(connect / 2),
            probe_max_interval: Duration::from_millis(settings.probe_interval_max_ms.max(1)),
        }
    }
}

/// What `/status` and the metrics show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSnapshot {
    pub healthy: bool,
    /// When the current state began (`None`: healthy since start).
    pub since: Option<SystemTime>,
    /// Why it is down (the last cause seen while down).
    pub cause: Option<Arc<str>>,
    /// Outages since start.
    pub outages: u64,
}

#[derive(Debug)]
struct Detail {
    since: Option<SystemTime>,
    down_at: Option<Instant>,
    cause: Option<Arc<str>>,
    outages: u64,
}

/// See the module docs. Share it behind an `Arc`.
#[derive(Debug)]
pub struct SourceHealth {
    healthy: AtomicBool,
    /// The same flag, for tasks that wait for a change.
    changes: watch::Sender<bool>,
    detail: Mutex<Detail>,
    /// Milliseconds after `born` of the last success (query or probe).
    last_ok_ms: AtomicU64,
    born: Instant,
    /// Someone suspects the database is silent: the monitor probes.
    probe_wanted: Notify,
    options: HealthOptions,
    /// The pool whose idle connections are dropped whenever the state changes: going
    /// down they are likely dead; coming back they may be half-open.
    pool: Option<super::DbPool>,
}

impl SourceHealth {
    /// Healthy until told otherwise.
    pub fn new(options: HealthOptions) -> Arc<Self> {
        Arc::new(Self::build(options, None))
    }

    /// Like [`SourceHealth::new`], and drops the idle connections of `pool` at every
    /// change of state.
    pub fn for_pool(options: HealthOptions, pool: super::DbPool) -> Arc<Self> {
        Arc::new(Self::build(options, Some(pool)))
    }

    fn build(options: HealthOptions, pool: Option<super::DbPool>) -> Self {
        Self {
            healthy: AtomicBool::new(true),
            changes: watch::Sender::new(true),
            detail: Mutex::new(Detail {
                since: None,
                down_at: None,
                cause: None,
                outages: 0,
            }),
            last_ok_ms: AtomicU64::new(0),
            born: Instant::now(),
            probe_wanted: Notify::new(),
            options,
            pool,
        }
    }

    fn drop_idle_connections(&self) {
        if let Some(pool) = &self.pool {
            pool.retain(|_, _| false);
        }
    }

    pub fn options(&self) -> &HealthOptions {
        &self.options
    }

    fn detail(&self) -> MutexGuard<'_, Detail> {
        self.detail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One atomic load: cheap enough for every miss.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// `Err` while the database is known to be down.
    pub fn check(&self) -> Result<(), Unavailable> {
        if self.is_healthy() {
            Ok(())
        } else {
            Err(self.unavailable())
        }
    }

    /// The current outage (or a generic one if it just ended).
    pub fn unavailable(&self) -> Unavailable {
        let detail = self.detail();
        Unavailable {
            since: detail.since.unwrap_or_else(SystemTime::now),
            cause: detail
                .cause
                .clone()
                .unwrap_or_else(|| Arc::from("the database stopped answering")),
        }
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        let detail = self.detail();
        let healthy = self.is_healthy();
        HealthSnapshot {
            healthy,
            since: detail.since,
            cause: if healthy { None } else { detail.cause.clone() },
            outages: detail.outages,
        }
    }

    /// A query or probe succeeded: the database answers. Clears an outage.
    pub fn record_ok(&self) {
        let now = self.born.elapsed().as_millis() as u64;
        self.last_ok_ms.fetch_max(now, Ordering::Relaxed);
        if self.is_healthy() {
            return;
        }
        let mut detail = self.detail();
        if self.is_healthy() {
            return;
        }
        let down_for = detail.down_at.map(|t| t.elapsed()).unwrap_or_default();
        detail.since = Some(SystemTime::now());
        detail.down_at = None;
        self.healthy.store(true, Ordering::Release);
        self.changes.send_replace(true);
        drop(detail);
        self.drop_idle_connections();
        tracing::info!(
            outage.ms = down_for.as_millis() as u64,
            "database available again; rendering resumes"
        );
    }

    /// A connection-level failure: marks the source down (logged once per outage).
    pub fn record_failure(&self, cause: &dyn std::error::Error) {
        if !self.is_healthy() {
            return;
        }
        let mut detail = self.detail();
        if !self.is_healthy() {
            return;
        }
        let cause: Arc<str> = Arc::from(super::pool::chain(cause));
        detail.since = Some(SystemTime::now());
        detail.down_at = Some(Instant::now());
        detail.cause = Some(cause.clone());
        detail.outages += 1;
        self.healthy.store(false, Ordering::Release);
        self.changes.send_replace(false);
        drop(detail);
        self.probe_wanted.notify_one();
        self.drop_idle_connections();
        tracing::warn!(
            error = %cause,
            "database unavailable: misses are answered 503 at once until a probe succeeds"
        );
    }

    /// A fetch has waited `suspect_after` without an answer: probe, unless the database
    /// answered something that recently or is already known to be down.
    pub fn suspect(&self) {
        if !self.is_healthy() {
            return;
        }
        let now = self.born.elapsed().as_millis() as u64;
        let last_ok = self.last_ok_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last_ok) >= self.options.suspect_after.as_millis() as u64 {
            self.probe_wanted.notify_one();
        }
    }

    /// Resolves once the source is (or already was) marked down.
    pub fn went_down(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.changes.subscribe();
        async move {
            let _ = rx.wait_for(|healthy| !*healthy).await;
        }
    }

    /// Resolves once the source is (or already was) healthy.
    pub fn until_healthy(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.changes.subscribe();
        async move {
            let _ = rx.wait_for(|healthy| *healthy).await;
        }
    }

    /// Runs `work` (a fetch) while watching the database: asks for a probe every
    /// `suspect_after` it goes without an answer, and gives up when the source is marked
    /// down ([`Abort::Down`]) or at `deadline` ([`Abort::NoAnswer`]).
    pub async fn watch<T>(
        &self,
        deadline: Instant,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, Abort> {
        let started = Instant::now();
        tokio::pin!(work);
        let down = self.went_down();
        tokio::pin!(down);
        loop {
            let suspect_at = (Instant::now() + self.options.suspect_after).min(deadline);
            tokio::select! {
                biased;
                out = &mut work => return Ok(out),
                () = &mut down => return Err(Abort::Down(self.unavailable())),
                () = tokio::time::sleep_until(suspect_at) => {
                    if Instant::now() >= deadline {
                        return Err(Abort::NoAnswer(NoAnswer(started.elapsed())));
                    }
                    self.suspect();
                }
            }
        }
    }
}

/// Why [`SourceHealth::watch`] gave up on a fetch.
#[derive(Debug, Clone, Error)]
pub enum Abort {
    #[error(transparent)]
    Down(Unavailable),
    #[error(transparent)]
    NoAnswer(NoAnswer),
}

/// Checks that the database answers: a fresh connection and `SELECT 1`.
pub trait Probe: Send + Sync + 'static {
    fn probe(&self) -> BoxFuture<'static, Result<(), ProbeError>>;
}

/// The real probe: its own connection each time (never one of the pool's, which may be
/// the dead ones), dropped at the end or at the timeout.
pub struct PgProbe {
    config: tokio_postgres::Config,
}

impl PgProbe {
    pub fn new(config: tokio_postgres::Config) -> Self {
        Self { config }
    }
}

impl Probe for PgProbe {
    fn probe(&self) -> BoxFuture<'static, Result<(), ProbeError>> {
        let config = self.config.clone();
        Box::pin(async move {
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(ProbeError::Connect)?;
            // The connection is driven here, not spawned: dropping the probe (at its
            // timeout) drops the socket too.
            let query = client.simple_query("SELECT 1");
            tokio::pin!(connection);
            tokio::select! {
                answered = query => answered.map(drop).map_err(ProbeError::Query),
                ended = &mut connection => match ended {
                    Err(e) => Err(ProbeError::Query(e)),
                    Ok(()) => Err(ProbeError::Closed),
                },
            }
        })
    }
}

/// Probes on suspicion while healthy, and with backoff while down, until `cancel`.
pub async fn run_monitor(
    health: Arc<SourceHealth>,
    probe: Arc<dyn Probe>,
    cancel: CancellationToken,
) {
    let timeout = health.options.probe_timeout;
    let timed = move |probe: &Arc<dyn Probe>| {
        let attempt = probe.probe();
        async move {
            match tokio::time::timeout(timeout, attempt).await {
                Ok(result) => result,
                Err(_) => Err(ProbeError::Timeout(timeout)),
            }
        }
    };
    loop {
        if health.is_healthy() {
            tokio::select! {
                () = health.probe_wanted.notified() => {}
                () = cancel.cancelled() => return,
            }
            if !health.is_healthy() {
                continue;
            }
            let outcome = tokio::select! {
                outcome = timed(&probe) => outcome,
                () = cancel.cancelled() => return,
            };
            match outcome {
                Ok(()) => health.record_ok(),
                Err(e) => health.record_failure(&e),
            }
            continue;
        }
        // Down: probe now, then at growing intervals; slow probes overlap.
        let mut interval = FIRST_PROBE_INTERVAL.min(health.options.probe_max_interval);
        let mut next = Instant::now();
        let mut probes = tokio::task::JoinSet::new();
        let mut remind_at = Instant::now() + STILL_DOWN_LOG_EVERY;
        let mut failed_probes = 0u64;
        let healed = health.until_healthy();
        tokio::pin!(healed);
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next) => {
                    if probes.len() < MAX_PROBES_IN_FLIGHT {
                        probes.spawn(timed(&probe));
                    }
                    next = Instant::now() + interval;
                    interval = (interval * 2).min(health.options.probe_max_interval);
                }
                Some(done) = probes.join_next() => match done {
                    Ok(Ok(())) => {
                        health.record_ok();
                        break;
                    }
                    Ok(Err(e)) => {
                        failed_probes += 1;
                        tracing::debug!(error = %super::pool::chain(&e), "database probe failed");
                        if Instant::now() >= remind_at {
                            remind_at = Instant::now() + STILL_DOWN_LOG_EVERY;
                            tracing::warn!(
                                failed_probes,
                                error = %super::pool::chain(&e),
                                "database still unavailable"
                            );
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "a database probe panicked"),
                },
                () = &mut healed => break,
                () = cancel.cancelled() => return,
            }
        }
    }
}

/// Runs [`run_monitor`] on a task until dropped (or [`MonitorHandle::stop`]).
pub struct MonitorHandle {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl MonitorHandle {
    /// Starts the monitor on the current tokio runtime.
    pub fn start(health: Arc<SourceHealth>, probe: Arc<dyn Probe>) -> Self {
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_monitor(health, probe, cancel.clone()));
        Self { cancel, task }
    }

    /// Stops probing and waits for the task to end.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        let _ = (&mut self.task).await;
    }
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.task.abort();
    }
}

#[cfg(test)]
mod tests;
