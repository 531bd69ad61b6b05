//! The admin API's domain, free of HTTP: requests to expire and seed tile ranges become
//! [`MetatileSet`](crate::area::MetatileSet)s, plans and [`ServiceTarget`]s; small ones
//! run at once on a blocking thread, large ones become [`jobs`](super::jobs) with
//! progress and cancellation.
//!
//! - [`request`]: the JSON bodies and query parameters, and their validation.
//! - [`lines`]: streaming a text tile list from a body into a set, in bounded memory.
//! - [`Admin`]: deciding between answering now and starting a job, running expiries
//!   (every input deduplicated to metatiles before any file is touched) and seeds.
//!
//! Fleet: once an expiry is applied here (and was not a dry run or cancelled), it is
//! published for the other nodes ([`FleetHandle::publish_expiry`]); the answer says so
//! under `fleet`.
//!
//! Bounded work: an expiry answers synchronously when it names at most
//! [`DEFAULT_SYNC_MAX_METATILES`] metatiles (over all its styles) and no more re-renders
//! than the bulk queue holds; anything larger is a job. Big blocks are walked on disk
//! ([`crate::expire::apply`]), so a world bbox to zoom 20 costs what the cache holds.
//!
//! Bounded memory: the squares of all [`MetatileSet`]s held at once (being built, or
//! held by a request or a job) stay within `admin.max_area_squares`. Inputs are turned
//! into sets one at a time, each within what the others left (an input that needs more
//! stops early, in bounded time: 413 when it needs more than the whole budget, else 503
//! with Retry-After). A job drops its input when it ends; the registry keeps only
//! reports, up to a count and an age.

pub mod lines;
pub mod request;

use super::expiry::{ServiceTarget, WithDependents};
use super::export::{self, ExportError, ExportObserver, ExportPlan, ExportSummary};
use super::jobs::{Job, JobLimits, JobReport, JobState, Jobs, TooManyJobs};
use super::seed::{self, SeedError, SeedObserver, SeedPlan, SeedSummary};
use super::TileService;
use crate::area::MetatileSet;
use crate::expire::{apply, ActionCounts, ExpireMode, ExpireProgress, ExpireSummary};
use crate::fleet::FleetHandle;
use crate::source::fleet::NodeStatus;
use crate::tile::StyleName;
use bytes::Bytes;
use lines::{BuiltInput, ChunkReader, CHANNEL_CHUNKS};
use request::{BadLines, ExpireOptions, ExpireSpec, ExportSpec, JsonInput, SeedSpec};
use serde::Serialize;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::mpsc;

/// Largest expiry answered synchronously, in metatiles (all styles together): a few
/// seconds of `stat`s and renames at worst; anything larger is a job.
pub const DEFAULT_SYNC_MAX_METATILES: u64 = 10_000;
/// How often a running seed job refreshes its counts.
const SEED_REPORT_EVERY: Duration = Duration::from_millis(250);

/// Why an admin request was refused or failed.
#[derive(Debug, Error)]
pub enum AdminError {
    /// Malformed or invalid request; the message says what to fix.
    #[error("{0}")]
    BadRequest(String),
    #[error("unknown style {0}")]
    UnknownStyle(String),
    #[error("no job {0}")]
    UnknownJob(u64),
    #[error(transparent)]
    TooManyJobs(#[from] TooManyJobs),
    /// The input names more than one request may hold (`admin.max_area_squares`).
    #[error("{0}")]
    TooLarge(String),
    /// Other requests and jobs hold the admin API's memory budget: retry later.
    #[error("{0}")]
    Busy(String),
    /// A worker thread failed (logged where it happened).
    #[error("{0}")]
    Internal(String),
}

/// Default of [`AdminOptions::max_area_squares`]: at most ~60 MB of squares; a world
/// polygon at zoom 20 needs 1.35 million, a tile list of millions of z18 tiles fewer.
pub const DEFAULT_MAX_AREA_SQUARES: usize = 2_000_000;

/// Limits of the admin work.
#[derive(Debug, Clone)]
pub struct AdminOptions {
    /// Where `POST /export` writes its files (`export.dir`).
    pub export_dir: std::path::PathBuf,
    /// See [`DEFAULT_SYNC_MAX_METATILES`].
    pub sync_max_metatiles: u64,
    /// Capacity of the render pool's bulk queue: synchronous `render` expiries never
    /// queue more than this.
    pub bulk_queue: usize,
    /// Most quadtree squares (see [`MetatileSet`]) one input may name, and all inputs
    /// held by requests and jobs together.
    pub max_area_squares: usize,
    /// The job registry's bounds.
    pub jobs: JobLimits,
}

/// The squares held by admin requests and jobs, against `max_area_squares`.
#[derive(Debug)]
struct SquareBudget {
    limit: usize,
    used: Mutex<usize>,
}

/// Squares reserved from the budget, given back when dropped (a request ends, a job
/// finishes).
#[derive(Debug)]
struct Held {
    budget: Arc<SquareBudget>,
    squares: usize,
}

impl SquareBudget {
    fn used(&self) -> usize {
        *self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is left for the next input.
    fn room(&self) -> usize {
        self.limit.saturating_sub(self.used())
    }

    fn reserve(self: &Arc<Self>, squares: usize) -> Result<Held, AdminError> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if *used + squares > self.limit {
            return Err(self.busy(*used));
        }
        *used += squares;
        Ok(Held {
            budget: self.clone(),
            squares,
        })
    }

    fn busy(&self, used: usize) -> AdminError {
        AdminError::Busy(format!(
            "other admin requests and jobs hold {used} of the {} area squares \
             (admin.max_area_squares) and this input needs more than is left: retry when \
             they are done",
            self.limit
        ))
    }

    /// The refusal of a set that overflowed `room`: too large for anyone, or busy.
    fn overflowed(&self, room: usize, max_zoom: u8) -> AdminError {
        if room >= self.limit {
            too_large(self.limit, max_zoom)
        } else {
            self.busy(self.limit - room)
        }
    }
}

/// An input turned into a set, with its squares reserved until it is dropped.
#[derive(Debug)]
pub struct Admitted {
    pub input: BuiltInput,
    held: Held,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(self.squares);
    }
}

/// The refusal of a set that overflowed.
fn too_large(limit: usize, max_zoom: u8) -> AdminError {
    AdminError::TooLarge(format!(
        "the input names more than {limit} area squares at maxzoom {max_zoom} \
         (admin.max_area_squares): lower maxzoom, simplify the outline or split the input"
    ))
}

/// The answer to an expiry: its report, or the job that will produce it.
#[derive(Debug)]
pub enum ExpireAnswer {
    Done(Box<ExpireReport>),
    Job(JobAccepted),
}

/// `202 Accepted`: where to follow a job.
#[derive(Debug, Clone, Serialize)]
pub struct JobAccepted {
    pub id: u64,
    pub kind: String,
    pub state: JobState,
    /// Metatiles the job covers (candidates, most of which may not exist).
    pub total: u64,
}

/// Counts of one action, as reported.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CountsReport {
    pub matched: u64,
    pub changed: u64,
    pub already_dirty: u64,
    pub absent: u64,
    pub errors: u64,
}

impl From<ActionCounts> for CountsReport {
    fn from(c: ActionCounts) -> Self {
        Self {
            matched: c.matched,
            changed: c.changed,
            already_dirty: c.already_dirty,
            absent: c.absent,
            errors: c.errors,
        }
    }
}

/// A bad line as reported: its number (1-based; the position in a JSON list), the
/// text, and why.
#[derive(Debug, Clone, Serialize)]
pub struct BadLineReport {
    pub line: u64,
    pub text: String,
    pub error: String,
}

/// What an expiry did (the synchronous answer, or a finished job's `result`).
#[derive(Debug, Clone, Serialize)]
pub struct ExpireReport {
    pub kind: &'static str,
    pub styles: Vec<String>,
    /// `dirty`, `delete`, `render`, or `bands` (delete_from / touch_from).
    pub mode: &'static str,
    pub minzoom: u8,
    pub maxzoom: u8,
    pub dry_run: bool,
    /// Tiles accepted from a tile list.
    pub tiles: u64,
    /// Lines read from a text list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<u64>,
    pub bad_lines: u64,
    pub bad_line_examples: Vec<BadLineReport>,
    /// Metatiles named by the input at the requested zooms, in every style.
    pub matched: u64,
    /// Deleted, marked dirty or queued for re-rendering (with `dry_run`: would be).
    pub changed: u64,
    pub already_dirty: u64,
    pub absent: u64,
    /// `already_dirty + absent`.
    pub skipped: u64,
    pub errors: u64,
    /// Per action: `delete`, `dirty`, `render`.
    pub actions: ActionsReport,
    pub cancelled: bool,
    pub ms: u64,
    /// Whether the other nodes of the fleet were told (absent for a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetPublish>,
}

/// The expiry's publication to the other nodes.
#[derive(Debug, Clone, Serialize)]
pub struct FleetPublish {
    pub published: bool,
    /// Its id in `metatiled.expiry_log`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One node of the fleet as `GET /status` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct FleetNodeReport {
    pub node: String,
    /// This is the node answering.
    pub this_node: bool,
    /// `up` (heartbeats arrive), `draining`, `down` (missed heartbeats), or `gone`
    /// (away longer than the retention: logs no longer wait for it).
    pub state: &'static str,
    pub version: String,
    pub cache_shared: bool,
    pub last_seen_secs_ago: f64,
    pub started_secs_ago: f64,
    /// How far behind it is in the change log (absent: it does not watch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<LagReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiries: Option<LagReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LagReport {
    /// Log rows it has not applied yet.
    pub pending: i64,
    /// Age of the oldest of them, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_secs: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ActionsReport {
    pub delete: CountsReport,
    pub dirty: CountsReport,
    pub render: CountsReport,
}

impl ExpireReport {
    fn new(
        spec: &ExpireSpec,
        input: &BuiltInput,
        summary: &ExpireSummary,
        cancelled: bool,
        ms: u64,
    ) -> Self {
        let total = summary.total();
        Self {
            kind: spec.kind,
            styles: spec.styles.iter().map(|s| s.to_string()).collect(),
            mode: spec.mode.map_or("bands", ExpireMode::as_str),
            minzoom: spec.plan.min_zoom,
            maxzoom: spec.plan.max_zoom,
            dry_run: spec.dry_run,
            tiles: input.tiles,
            lines: input.lines,
            bad_lines: input.bad.count,
            bad_line_examples: bad_line_reports(&input.bad),
            matched: total.matched,
            changed: total.changed,
            already_dirty: total.already_dirty,
            absent: total.absent,
            skipped: total.already_dirty + total.absent,
            errors: total.errors,
            actions: ActionsReport {
                delete: summary.delete.into(),
                dirty: summary.mark_dirty.into(),
                render: summary.render.into(),
            },
            cancelled,
            ms,
            fleet: None,
        }
    }

    fn log(&self, job: Option<u64>) {
        tracing::info!(
            kind = self.kind,
            styles = %self.styles.join(","),
            mode = self.mode,
            zooms = %format!("{}-{}", self.minzoom, self.maxzoom),
            dry_run = self.dry_run,
            job = ?job,
            matched = self.matched,
            changed = self.changed,
            already_dirty = self.already_dirty,
            absent = self.absent,
            errors = self.errors,
            bad_lines = self.bad_lines,
            cancelled = self.cancelled,
            ms = self.ms,
            "expired"
        );
    }
}

fn bad_line_reports(bad: &BadLines) -> Vec<BadLineReport> {
    bad.examples
        .iter()
        .map(|b| BadLineReport {
            line: b.line_no,
            text: b.text.clone(),
            error: b.error.to_string(),
        })
        .collect()
}

fn to_json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// The admin API's state: the service it acts on, its jobs, and the fleet it tells.
pub struct Admin {
    service: Arc<TileService>,
    jobs: Jobs,
    options: AdminOptions,
    squares: Arc<SquareBudget>,
    /// Inputs are turned into sets one at a time, each within what is left.
    building: Arc<tokio::sync::Mutex<()>>,
    fleet: Option<Arc<FleetHandle>>,
}

impl Admin {
    pub fn new(service: Arc<TileService>, options: AdminOptions) -> Self {
        Self {
            service,
            jobs: Jobs::new(options.jobs),
            squares: Arc::new(SquareBudget {
                limit: options.max_area_squares,
                used: Mutex::new(0),
            }),
            building: Arc::new(tokio::sync::Mutex::new(())),
            options,
            fleet: None,
        }
    }

    /// Squares held by requests and jobs right now (for `/status`).
    pub fn area_squares_held(&self) -> usize {
        self.squares.used()
    }

    /// Publishes applied expiries to the other nodes, and lists them in the status.
    pub fn with_fleet(mut self, fleet: Arc<FleetHandle>) -> Self {
        self.fleet = Some(fleet);
        self
    }

    pub fn fleet(&self) -> Option<&Arc<FleetHandle>> {
        self.fleet.as_ref()
    }

    /// The fleet as the database sees it (`None` without a fleet handle).
    pub async fn fleet_status(&self) -> Option<Result<Vec<FleetNodeReport>, String>> {
        let fleet = self.fleet.as_ref()?;
        Some(
            fleet
                .status()
                .await
                .map(|nodes| nodes.iter().map(|n| node_report(fleet, n)).collect())
                .map_err(|e| {
                    tracing::warn!(error = %crate::errors::error_chain(&e), "admin: cannot read the fleet");
                    "cannot read the fleet from the database".to_string()
                }),
        )
    }

    pub fn service(&self) -> &Arc<TileService> {
        &self.service
    }

    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// Parses and checks a JSON expiry.
    pub fn parse_expire_json(&self, body: &[u8]) -> Result<(ExpireSpec, JsonInput), AdminError> {
        request::parse_expire_json(&self.service.styles(), body)
    }

    /// Checks the options of a text expiry (from its query string).
    pub fn parse_expire_text_options(&self, query: &str) -> Result<ExpireSpec, AdminError> {
        let options: ExpireOptions = request::parse_expire_query(query)?;
        request::expire_spec(&self.service.styles(), &options, "text")
    }

    /// Builds the set of a JSON input on a blocking thread (polygons can take a while),
    /// within the squares left (see the module docs).
    pub async fn build_json_input(
        &self,
        input: JsonInput,
        max_zoom: u8,
    ) -> Result<Admitted, AdminError> {
        let _building = self.building.lock().await;
        let limit = self.squares.room();
        let built = tokio::task::spawn_blocking(move || match input {
            JsonInput::Tiles(list) => {
                let mut set = MetatileSet::with_limit(max_zoom, limit);
                for tile in &list.tiles {
                    set.insert(*tile);
                }
                BuiltInput {
                    set,
                    tiles: list.tiles.len() as u64,
                    lines: None,
                    bad: list.bad,
                }
            }
            JsonInput::Area(area) => BuiltInput {
                set: area.to_set_within(max_zoom, limit),
                tiles: 0,
                lines: None,
                bad: BadLines::default(),
            },
        })
        .await
        .map_err(|e| internal("building the expiry set", &e))?;
        if built.set.overflowed() {
            return Err(self.squares.overflowed(limit, max_zoom));
        }
        let held = self.squares.reserve(built.set.len())?;
        Ok(Admitted { input: built, held })
    }

    /// Starts parsing a text tile list once it is this input's turn: feed the body's
    /// chunks into the sender (drop it at the end of the body), then await the future
    /// for the built input.
    pub async fn text_input(
        &self,
        max_zoom: u8,
    ) -> (
        mpsc::Sender<std::io::Result<Bytes>>,
        impl Future<Output = Result<Admitted, AdminError>>,
    ) {
        let building = self.building.clone().lock_owned().await;
        let squares = self.squares.clone();
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let limit = squares.room();
        let parser = tokio::task::spawn_blocking(move || {
            lines::read_tile_text(
                ChunkReader::new(rx),
                MetatileSet::with_limit(max_zoom, limit),
            )
        });
        let built = async move {
            let _building = building;
            let built = match parser.await {
                Ok(Ok(built)) if built.set.overflowed() => Err(squares.overflowed(limit, max_zoom)),
                Ok(Ok(built)) if built.lines == Some(0) => Err(AdminError::BadRequest(
                    "the body is empty: send z/x/y lines, one per line".into(),
                )),
                Ok(Ok(built)) => Ok(built),
                Ok(Err(e)) => Err(AdminError::BadRequest(format!("cannot read the body: {e}"))),
                Err(e) => Err(internal("reading the tile list", &e)),
            }?;
            let held = squares.reserve(built.set.len())?;
            Ok(Admitted { input: built, held })
        };
        (tx, built)
    }

    /// Expires now (small) or as a job (large).
    pub async fn expire(
        &self,
        spec: ExpireSpec,
        input: Admitted,
    ) -> Result<ExpireAnswer, AdminError> {
        let Admitted { input, held } = input;
        // Counting walks the set's squares at every zoom: a blocking thread's work for
        // big sets.
        let (spec, input, total, renders) = tokio::task::spawn_blocking(move || {
            let (total, renders) = candidates(&spec, &input);
            (spec, input, total, renders)
        })
        .await
        .map_err(|e| internal("counting metatiles", &e))?;
        let service = self.service.clone();
        if total <= self.options.sync_max_metatiles && renders <= self.options.bulk_queue as u64 {
            let (mut report, spec, input) = tokio::task::spawn_blocking(move || {
                let report = run_expiry(&service, &spec, &input, None);
                (report, spec, input)
            })
            .await
            .map_err(|e| internal("expiring", &e))?;
            report.fleet = publish(self.fleet.as_deref(), &spec, &input, &report).await;
            drop(input);
            drop(held);
            report.log(None);
            return Ok(ExpireAnswer::Done(Box::new(report)));
        }
        let description = format!(
            "{} {}{} {} z{}-{}",
            spec.kind,
            spec.mode.map_or("bands", ExpireMode::as_str),
            if spec.dry_run { " (dry run)" } else { "" },
            spec.styles
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(","),
            spec.plan.min_zoom,
            spec.plan.max_zoom
        );
        let job = self.jobs.create("expire", description)?;
        job.set_total(total);
        let accepted = JobAccepted {
            id: job.id,
            kind: job.kind.clone(),
            state: job.state(),
            total,
        };
        let fleet = self.fleet.clone();
        self.jobs.spawn(job, move |job| async move {
            // The input and its squares are let go when the job ends.
            let _held = held;
            let id = job.id;
            let worker = job.clone();
            let (mut report, spec, input) = tokio::task::spawn_blocking(move || {
                let report = run_expiry(&service, &spec, &input, Some(&worker));
                (report, spec, input)
            })
            .await
            .map_err(|e| {
                tracing::error!(job = id, error = %e, "expire job failed");
                format!("the expiry stopped: {e}")
            })?;
            report.fleet = publish(fleet.as_deref(), &spec, &input, &report).await;
            report.log(Some(id));
            job.set_result(to_json(&report));
            Ok(())
        });
        Ok(ExpireAnswer::Job(accepted))
    }

    /// Parses and checks a seed.
    pub fn parse_seed_json(&self, body: &[u8]) -> Result<SeedSpec, AdminError> {
        request::parse_seed_json(&self.service.styles(), body)
    }

    /// Starts a seed job.
    pub async fn seed(&self, spec: SeedSpec) -> Result<JobAccepted, AdminError> {
        let SeedSpec {
            styles,
            area,
            zooms,
            force,
        } = spec;
        // One copy of the set per style.
        let building = self.building.lock().await;
        let copies = styles.len().max(1);
        let limit = self.squares.room() / copies;
        let set = tokio::task::spawn_blocking(move || area.to_set_within(zooms.max(), limit))
            .await
            .map_err(|e| internal("building the seed area", &e))?;
        if set.overflowed() {
            return Err(self.squares.overflowed(limit * copies, zooms.max()));
        }
        let held = self.squares.reserve(set.len().saturating_mul(copies))?;
        drop(building);
        let plans: Vec<SeedPlan> = styles
            .iter()
            .map(|style| SeedPlan {
                style: style.clone(),
                area: set.clone(),
                zooms,
                force,
            })
            .collect();
        let mut total = 0u64;
        for plan in &plans {
            let (_, n) = seed::plan_total(&self.service, plan).map_err(|e| match e {
                SeedError::Style(_) => AdminError::UnknownStyle(plan.style.to_string()),
                SeedError::PoolStopped => AdminError::Internal("the render pool stopped".into()),
                e @ SeedError::NotRendered(_) => AdminError::BadRequest(e.to_string()),
            })?;
            total = total.saturating_add(n);
        }
        let description = format!(
            "{}{} z{zooms}",
            styles
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(","),
            if force { " (force)" } else { "" }
        );
        let job = self.jobs.create("seed", description)?;
        job.set_total(total);
        let accepted = JobAccepted {
            id: job.id,
            kind: job.kind.clone(),
            state: job.state(),
            total,
        };
        let service = self.service.clone();
        self.jobs.spawn(job, move |job| async move {
            let _held = held;
            run_seed_job(&service, &plans, total, &job).await
        });
        Ok(accepted)
    }

    /// Parses and checks an export.
    pub fn parse_export_json(&self, body: &[u8]) -> Result<ExportSpec, AdminError> {
        request::parse_export_json(&self.service.styles(), body)
    }

    /// Starts an export job writing `export.dir/<file>`.
    pub async fn export(&self, spec: ExportSpec) -> Result<JobAccepted, AdminError> {
        let plan = ExportPlan {
            style: spec.style.clone(),
            area: spec.area.clone(),
            zooms: spec.zooms,
            format: spec.format,
            path: self.options.export_dir.join(&spec.file),
        };
        let max_zoom = plan.zooms.max();
        let area = plan.area.clone();
        // Within the squares left, like every admin input (see the module docs).
        let building = self.building.lock().await;
        let limit = self.squares.room();
        let set = tokio::task::spawn_blocking(move || area.to_set_within(max_zoom, limit))
            .await
            .map_err(|e| internal("building the export area", &e))?;
        if set.overflowed() {
            return Err(self.squares.overflowed(limit, max_zoom));
        }
        let held = self.squares.reserve(set.len())?;
        drop(building);
        let (_, total) = export::plan_total(&self.service, &plan, &set).map_err(|e| match e {
            ExportError::Style(_) => AdminError::UnknownStyle(plan.style.to_string()),
            other => AdminError::BadRequest(other.to_string()),
        })?;
        std::fs::create_dir_all(&self.options.export_dir).map_err(|e| {
            tracing::error!(dir = %self.options.export_dir.display(), error = %e, "cannot create the export directory");
            AdminError::Internal("cannot create the export directory".into())
        })?;
        let description = format!(
            "{} z{} {} -> {}",
            spec.style, spec.zooms, spec.format, spec.file
        );
        let job = self.jobs.create("export", description)?;
        job.set_total(total);
        let accepted = JobAccepted {
            id: job.id,
            kind: job.kind.clone(),
            state: job.state(),
            total,
        };
        let service = self.service.clone();
        self.jobs.spawn(job, move |job| async move {
            let _held = held;
            let in_flight = service.pool().stats().threads * 4;
            let mut observer = ExportJobObserver {
                job: &job,
                last_report: Instant::now(),
            };
            let result =
                export::run(&service, &plan, &set, in_flight, &mut observer, &job.cancel_token())
                    .await;
            match result {
                Ok(summary) => {
                    job.set_result(to_json(&summary));
                    job.add_errors(summary.failed);
                    tracing::info!(
                        job = job.id,
                        style = %plan.style,
                        path = %plan.path.display(),
                        tiles = summary.archive.tiles,
                        unique = summary.archive.unique_tiles,
                        bytes = summary.archive.file_bytes,
                        rendered = summary.rendered,
                        failed = summary.failed,
                        secs = summary.seconds,
                        "exported"
                    );
                    Ok(())
                }
                Err(ExportError::Cancelled) => Ok(()),
                Err(e) => {
                    tracing::error!(job = job.id, error = %crate::errors::error_chain(&e), "export failed");
                    Err(e.to_string())
                }
            }
        });
        Ok(accepted)
    }

    /// Asks a job to stop; its report.
    pub fn cancel_job(&self, id: u64) -> Result<JobReport, AdminError> {
        let job = self.jobs.get(id).ok_or(AdminError::UnknownJob(id))?;
        job.cancel();
        Ok(job.report())
    }

    pub fn job_report(&self, id: u64) -> Result<JobReport, AdminError> {
        self.jobs
            .get(id)
            .map(|j| j.report())
            .ok_or(AdminError::UnknownJob(id))
    }
}

/// Tells the other nodes about an expiry applied here; `None` when there is nothing to
/// tell (no fleet, a dry run, a cancelled job).
async fn publish(
    fleet: Option<&FleetHandle>,
    spec: &ExpireSpec,
    input: &BuiltInput,
    report: &ExpireReport,
) -> Option<FleetPublish> {
    let fleet = fleet?;
    if spec.dry_run || report.cancelled {
        return None;
    }
    Some(
        match fleet
            .publish_expiry(&spec.styles, &spec.plan, &input.set)
            .await
        {
            Ok(id) => FleetPublish {
                published: true,
                id: Some(id),
                error: None,
            },
            Err(e) => {
                tracing::warn!(error = %crate::errors::error_chain(&e), "admin: expired here, but cannot tell the other nodes");
                FleetPublish {
                    published: false,
                    id: None,
                    error: Some("cannot publish the expiry to the fleet (database)".into()),
                }
            }
        },
    )
}

fn node_report(fleet: &FleetHandle, n: &NodeStatus) -> FleetNodeReport {
    let lag = |l: &Option<crate::source::fleet::LogLag>| {
        l.as_ref().map(|l| LagReport {
            pending: l.pending,
            lag_secs: l.oldest_pending_secs,
        })
    };
    FleetNodeReport {
        node: n.node_id.clone(),
        this_node: n.node_id == fleet.node_id(),
        state: fleet.node_state(n),
        version: n.version.clone(),
        cache_shared: n.cache_shared,
        last_seen_secs_ago: n.last_seen_secs_ago,
        started_secs_ago: n.started_secs_ago,
        changes: lag(&n.changes),
        expiries: lag(&n.expiries),
    }
}

/// The metatiles an expiry names (all styles) and how many of them it would re-render.
fn candidates(spec: &ExpireSpec, input: &BuiltInput) -> (u64, u64) {
    let styles = spec.styles.len() as u64;
    let (mut total, mut renders) = (0u64, 0u64);
    for block in input.set.blocks(spec.plan.min_zoom) {
        total = total.saturating_add(block.len());
        if !spec.dry_run && spec.plan.action_at(block.z) == ExpireMode::Render {
            renders = renders.saturating_add(block.len());
        }
    }
    (total.saturating_mul(styles), renders.saturating_mul(styles))
}

fn internal(what: &str, e: &dyn std::error::Error) -> AdminError {
    tracing::error!(error = %e, "admin: {what} failed");
    AdminError::Internal(format!("{what} failed"))
}

/// Runs an expiry over every style of the spec (blocking). With a job: progress and
/// partial counts go into it, and its cancellation stops the run.
fn run_expiry(
    service: &Arc<TileService>,
    spec: &ExpireSpec,
    input: &BuiltInput,
    job: Option<&Job>,
) -> ExpireReport {
    let started = Instant::now();
    let per_style = input.set.metatile_count(spec.plan.min_zoom);
    let total = per_style.saturating_mul(spec.styles.len() as u64);
    let mut summary = ExpireSummary::default();
    for (i, style) in spec.styles.iter().enumerate() {
        let mut target = ServiceTarget::new(service.clone()).dry_run(spec.dry_run);
        if let Some(job) = job {
            if job.is_cancelled() {
                break;
            }
            target = target.cancelled_by(job.cancel_token());
        }
        let offset = per_style.saturating_mul(i as u64);
        let mut progress = |p: ExpireProgress| {
            if let Some(job) = job {
                job.set_progress(offset + p.done, total);
            }
        };
        let target = WithDependents::new(target, &service.styles());
        let done = apply(&target, style, &spec.plan, &input.set, &mut progress);
        summary.add(&done);
        if let Some(job) = job {
            job.add_errors(done.total().errors);
            let ms = started.elapsed().as_millis() as u64;
            job.set_result(to_json(&ExpireReport::new(
                spec, input, &summary, false, ms,
            )));
        }
    }
    let cancelled = job.is_some_and(Job::is_cancelled);
    ExpireReport::new(
        spec,
        input,
        &summary,
        cancelled,
        started.elapsed().as_millis() as u64,
    )
}

/// Export progress into a job.
struct ExportJobObserver<'a> {
    job: &'a Job,
    last_report: Instant,
}

impl ExportObserver for ExportJobObserver<'_> {
    fn progress(&mut self, s: &ExportSummary) {
        self.job.set_progress(s.done(), s.metatiles);
        if self.last_report.elapsed() >= SEED_REPORT_EVERY {
            self.last_report = Instant::now();
            self.job.set_result(to_json(s));
        }
    }
}

/// Seed progress into a job.
struct JobObserver<'a> {
    job: &'a Job,
    offset: u64,
    total: u64,
    /// Counts of the styles already seeded.
    before: SeedSummary,
    last_report: Instant,
}

impl JobObserver<'_> {
    fn combined(&self, s: &SeedSummary) -> SeedSummary {
        SeedSummary {
            rendered: self.before.rendered + s.rendered,
            skipped_fresh: self.before.skipped_fresh + s.skipped_fresh,
            failed: self.before.failed + s.failed,
            total: self.total,
            not_reached: self.before.not_reached + s.not_reached,
        }
    }
}

impl SeedObserver for JobObserver<'_> {
    fn progress(&mut self, s: &SeedSummary, _zoom: u8) {
        self.job.set_progress(self.offset + s.done(), self.total);
        if self.last_report.elapsed() >= SEED_REPORT_EVERY {
            self.last_report = Instant::now();
            self.job.set_result(to_json(&self.combined(s)));
        }
    }
}

async fn run_seed_job(
    service: &TileService,
    plans: &[SeedPlan],
    total: u64,
    job: &Job,
) -> Result<(), String> {
    let started = Instant::now();
    let in_flight = service.pool().stats().threads * 4;
    let mut observer = JobObserver {
        job,
        offset: 0,
        total,
        before: SeedSummary::default(),
        last_report: Instant::now(),
    };
    let mut styles_done: Vec<&StyleName> = Vec::new();
    for plan in plans {
        if job.is_cancelled() {
            break;
        }
        let summary = seed::run(service, plan, in_flight, &mut observer, &job.cancel_token())
            .await
            .map_err(|e| e.to_string())?;
        observer.before = observer.combined(&summary);
        observer.offset += summary.total;
        job.set_result(to_json(&observer.before));
        styles_done.push(&plan.style);
    }
    let mut s = observer.before.clone();
    s.not_reached = total.saturating_sub(s.done());
    job.set_result(to_json(&s));
    job.add_errors(s.failed);
    tracing::info!(
        job = job.id,
        styles = %styles_done.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","),
        rendered = s.rendered,
        skipped_fresh = s.skipped_fresh,
        failed = s.failed,
        not_reached = s.not_reached,
        cancelled = job.is_cancelled(),
        ms = started.elapsed().as_millis() as u64,
        "seeded"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squares_are_held_until_their_holder_is_dropped() {
        let budget = Arc::new(SquareBudget {
            limit: 100,
            used: Mutex::new(0),
        });
        let first = budget.reserve(60).unwrap();
        assert!(matches!(budget.reserve(50), Err(AdminError::Busy(_))));
        let second = budget.reserve(40).unwrap();
        drop(first);
        let third = budget.reserve(50).unwrap();
        drop((second, third));
        assert_eq!(*budget.used.lock().unwrap(), 0);
    }
}
