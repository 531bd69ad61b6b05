//! Seeding: pre-render the metatiles of an area (bbox or polygons) and zoom range
//! through the same render pool, renderer and cache writer as web requests, at `bulk`
//! priority. Fresh metatiles are skipped (unless `force`), so an interrupted seed
//! resumes by running it again. [`run`] is shared by `metatiled seed` (progress on
//! stderr) and the admin API's seed jobs (progress into the job, cancellable) through
//! a [`SeedObserver`].

use crate::app::{Core, UsageError};
use crate::cache::MetatileState;
use crate::config::Settings;
use crate::expire::area::Area;
use crate::expire::ExpireSet;
use crate::queue::{JobKey, Priority, SubmitError, Waiter};
use crate::service::{ServiceError, TileService};
use crate::tile::{StyleName, MAX_ZOOM};
use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};
use thiserror::Error;

pub use crate::expire::area::{check_bbox, parse_bbox};

/// How long to wait for room when the bulk queue is full and nothing is in flight.
const FULL_QUEUE_BACKOFF: Duration = Duration::from_millis(50);

/// What to seed: the metatiles of `area` (as an [`ExpireSet`] built up to `max_zoom`)
/// at zooms `min_zoom..=max_zoom`, clipped to the style's zoom range.
#[derive(Debug, Clone)]
pub struct SeedPlan {
    pub style: StyleName,
    pub area: ExpireSet,
    pub min_zoom: u8,
    pub max_zoom: u8,
    pub force: bool,
}

impl SeedPlan {
    /// The plan for an area: builds its squares (cheap for a bbox; for polygons the
    /// cost grows with the outline, so the server builds it on a blocking thread).
    pub fn new(style: StyleName, area: &Area, min_zoom: u8, max_zoom: u8, force: bool) -> Self {
        Self {
            style,
            area: area.to_set(max_zoom),
            min_zoom,
            max_zoom,
            force,
        }
    }
}

/// Why a seed could not run.
#[derive(Debug, Error)]
pub enum SeedError {
    #[error(transparent)]
    Style(#[from] ServiceError),
    #[error("the render pool stopped")]
    PoolStopped,
}

/// Receives a seed's progress and may stop it.
pub trait SeedObserver: Send {
    /// Called after every metatile (rate-limit on your side).
    fn progress(&mut self, summary: &SeedSummary, zoom: u8);
    /// Polled before every metatile: true ends the seed early.
    fn cancelled(&self) -> bool {
        false
    }
}

/// Parses `A-B` or `A` into an inclusive zoom range.
pub fn parse_zoom_range(text: &str) -> Result<(u8, u8), String> {
    let (a, b) = match text.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (text.trim(), text.trim()),
    };
    let parse = |s: &str| {
        s.parse::<u8>()
            .ok()
            .filter(|z| *z <= MAX_ZOOM)
            .ok_or_else(|| format!("zoom {s:?} must be a whole number from 0 to {MAX_ZOOM}"))
    };
    let (a, b) = (parse(a)?, parse(b)?);
    if a > b {
        return Err(format!("zoom range {text:?} is reversed"));
    }
    Ok((a, b))
}

/// Counts of one seed run.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SeedSummary {
    pub rendered: u64,
    pub skipped_fresh: u64,
    pub failed: u64,
    pub total: u64,
    /// Metatiles not reached because the seed was cancelled.
    pub not_reached: u64,
}

impl SeedSummary {
    /// Metatiles handled so far.
    pub fn done(&self) -> u64 {
        self.rendered + self.skipped_fresh + self.failed
    }
}

/// The zoom range of `plan` within the style's, and how many metatiles it holds.
pub fn plan_total(service: &TileService, plan: &SeedPlan) -> Result<(u8, u8, u64), SeedError> {
    let style = service.style(&plan.style)?;
    let (min_z, max_z) = (
        plan.min_zoom.max(style.minzoom),
        plan.max_zoom.min(style.maxzoom).min(plan.area.max_zoom()),
    );
    let total = plan
        .area
        .blocks(min_z)
        .take_while(|b| b.z <= max_z)
        .map(|b| b.len())
        .sum();
    Ok((min_z, max_z, total))
}

/// Runs the plan through the service's render pool with at most `in_flight` jobs
/// outstanding, reporting to `observer` after every metatile.
pub async fn run(
    service: &TileService,
    plan: &SeedPlan,
    in_flight: usize,
    observer: &mut dyn SeedObserver,
) -> Result<SeedSummary, SeedError> {
    let in_flight = in_flight.max(1);
    let (min_z, max_z, total) = plan_total(service, plan)?;
    let mut summary = SeedSummary {
        total,
        ..SeedSummary::default()
    };
    let mut waiting: VecDeque<Waiter> = VecDeque::new();
    let metatiles = plan
        .area
        .blocks(min_z)
        .take_while(|b| b.z <= max_z)
        .flat_map(|b| b.metatiles());
    'all: for meta in metatiles {
        if observer.cancelled() {
            break 'all;
        }
        let z = meta.z;
        if !plan.force {
            if let Ok(MetatileState::Fresh) = service.cache().metatile_state(&plan.style, meta) {
                summary.skipped_fresh += 1;
                observer.progress(&summary, z);
                continue;
            }
        }
        let key = JobKey {
            style: plan.style.clone(),
            meta,
        };
        loop {
            if waiting.len() >= in_flight {
                settle_one(&mut waiting, &mut summary).await;
                observer.progress(&summary, z);
            }
            match service.pool().submit(key.clone(), Priority::Bulk) {
                Ok(submit) => {
                    waiting.push_back(submit.into_waiter());
                    break;
                }
                Err(SubmitError::QueueFull(_)) if !waiting.is_empty() => {
                    settle_one(&mut waiting, &mut summary).await;
                    observer.progress(&summary, z);
                }
                Err(SubmitError::QueueFull(_)) => {
                    if observer.cancelled() {
                        break 'all;
                    }
                    tokio::time::sleep(FULL_QUEUE_BACKOFF).await;
                }
                Err(SubmitError::ShuttingDown) => return Err(SeedError::PoolStopped),
            }
        }
    }
    while !waiting.is_empty() {
        settle_one(&mut waiting, &mut summary).await;
        observer.progress(&summary, max_z);
    }
    summary.not_reached = summary.total.saturating_sub(summary.done());
    Ok(summary)
}

async fn settle_one(waiting: &mut VecDeque<Waiter>, summary: &mut SeedSummary) {
    if let Some(w) = waiting.pop_front() {
        match w.wait().await {
            Ok(()) => summary.rendered += 1,
            Err(e) => {
                summary.failed += 1;
                tracing::warn!(error = %e, "seed: a metatile failed to render");
            }
        }
    }
}

/// A progress line on stderr: rewritten in place on a terminal, every few seconds in
/// logs.
struct Progress {
    total: u64,
    started: Instant,
    last: Instant,
    tty: bool,
}

impl Progress {
    fn new(total: u64) -> Self {
        let now = Instant::now();
        Self {
            total,
            started: now,
            last: now,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn finish(&self, s: &SeedSummary) {
        if self.tty {
            eprintln!();
        }
        eprintln!(
            "seed: done in {:.1}s: {} rendered, {} already fresh, {} failed, {} in all",
            self.started.elapsed().as_secs_f64(),
            s.rendered,
            s.skipped_fresh,
            s.failed,
            s.total
        );
    }
}

impl SeedObserver for Progress {
    fn progress(&mut self, s: &SeedSummary, z: u8) {
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let done = s.done();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = s.rendered as f64 / secs;
        let left = self.total.saturating_sub(done);
        let eta = if rate > 0.0 {
            format!("{:.0}s", left as f64 / rate)
        } else {
            "?".into()
        };
        let line = format!(
            "seed: z{z} {done}/{} metatiles ({:.0}%), {:.1} metatiles/s ({:.0} tiles/s), ETA {eta}",
            self.total,
            100.0 * done as f64 / self.total.max(1) as f64,
            rate,
            rate * 64.0,
        );
        let mut err = std::io::stderr();
        if self.tty {
            let _ = write!(err, "\r{line}\x1b[K");
        } else {
            let _ = writeln!(err, "{line}");
        }
    }
}

/// What `metatiled seed` was asked on the command line.
#[derive(Debug, Clone, Default)]
pub struct SeedCommand<'a> {
    pub style: &'a str,
    pub bbox: Option<&'a str>,
    pub polygon: Option<&'a Path>,
    pub zoom: &'a str,
    pub threads: Option<usize>,
    pub force: bool,
}

/// `metatiled seed` from the command line: the area is `--bbox`, `--polygon` (a GeoJSON
/// file) or else the imported data's bounds.
pub async fn seed_command(mut settings: Settings, args: SeedCommand<'_>) -> anyhow::Result<()> {
    let style = StyleName::parse(args.style).map_err(|e| UsageError(format!("--style: {e}")))?;
    let (min_zoom, max_zoom) =
        parse_zoom_range(args.zoom).map_err(|e| UsageError(format!("--zoom: {e}")))?;
    let given_area = match (args.bbox, args.polygon) {
        (Some(b), _) => Some(Area::Bbox(
            parse_bbox(b).map_err(|e| UsageError(format!("--bbox: {e}")))?,
        )),
        (None, Some(file)) => Some(
            Area::from_geojson_file(file)
                .map_err(|e| UsageError(format!("--polygon: {}", crate::cache::error_chain(&e))))?,
        ),
        (None, None) => None,
    };
    if let Some(t) = args.threads {
        settings.render.threads = t;
    }
    let core = Core::build(&settings).await?;
    let area = match (given_area, &core.import) {
        (Some(area), _) => area,
        (None, Some(info)) => Area::bbox(info.bounds)
            .map_err(|e| UsageError(format!("the recorded import bounds: {e}")))?,
        (None, None) => {
            return Err(UsageError(
                "--bbox or --polygon is needed: no import bounds are recorded".into(),
            )
            .into())
        }
    };
    let plan = SeedPlan::new(style, &area, min_zoom, max_zoom, args.force);
    let (_, _, total) = plan_total(&core.service, &plan).map_err(|e| UsageError(e.to_string()))?;
    let mut progress = Progress::new(total);
    let in_flight = settings.render_threads() * 4;
    let summary = run(&core.service, &plan, in_flight, &mut progress).await?;
    progress.finish(&summary);
    core.service.pool().shutdown(Duration::from_secs(60)).await;
    if summary.failed > 0 {
        anyhow::bail!("{} metatiles failed to render", summary.failed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bboxes_and_zoom_ranges_parse_or_say_why_not() {
        assert_eq!(
            parse_bbox("24.93,60.16,24.96,60.18").unwrap(),
            [24.93, 60.16, 24.96, 60.18]
        );
        assert!(parse_bbox("24.96,60.16,24.93,60.18")
            .unwrap_err()
            .contains("minimum"));
        assert!(parse_bbox("1,2,3").is_err());
        assert!(parse_bbox("a,2,3,4").is_err());
        assert!(parse_bbox("-200,0,0,1").is_err());
        assert!(parse_bbox("NaN,0,1,1").is_err());
        assert_eq!(parse_zoom_range("10-14").unwrap(), (10, 14));
        assert_eq!(parse_zoom_range("7").unwrap(), (7, 7));
        assert!(parse_zoom_range("14-10").unwrap_err().contains("reversed"));
        assert!(parse_zoom_range("0-25").is_err());
        assert!(parse_zoom_range("x").is_err());
    }
}
