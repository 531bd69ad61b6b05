//! Seeding: pre-render the metatiles of an area (bbox or polygons) and zoom range
//! through the same render pool, renderer and cache writer as web requests, at `bulk`
//! priority. Fresh metatiles are skipped (unless `force`), so an interrupted seed
//! resumes by running it again. [`run`] is shared by `metatiled seed` (progress on
//! stderr) and the admin API's seed jobs (progress into the job, cancellable) through
//! a [`SeedObserver`]. When the bulk queue is full, it waits for the oldest metatile in
//! flight, or for room in the queue: never a sleep.

use super::{ServiceError, TileService};
use crate::area::{Area, MetatileSet};
use crate::cache::MetatileState;
use crate::queue::{JobKey, Priority, SubmitError, Waiter};
use crate::tile::{StyleName, ZoomRange};
use std::collections::VecDeque;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

/// What to seed: the metatiles of `area` (as a [`MetatileSet`] built up to the highest
/// zoom) at the zooms of `zooms`, clipped to the style's zoom range.
#[derive(Debug, Clone)]
pub struct SeedPlan {
    pub style: StyleName,
    pub area: MetatileSet,
    pub zooms: ZoomRange,
    pub force: bool,
}

impl SeedPlan {
    /// The plan for an area: builds its squares (cheap for a bbox; for polygons the
    /// cost grows with the outline, so the server builds it on a blocking thread).
    pub fn new(style: StyleName, area: &Area, zooms: ZoomRange, force: bool) -> Self {
        Self {
            style,
            area: area.to_set(zooms.max()),
            zooms,
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
    #[error("style {0} is served from an archive: nothing to render")]
    NotRendered(StyleName),
}

/// Receives a seed's progress. Called after every metatile: rate-limit on your side.
pub trait SeedObserver: Send {
    fn progress(&mut self, summary: &SeedSummary, zoom: u8);
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

/// The zoom range of `plan` within the style's (`None`: they do not overlap), and how
/// many metatiles it holds.
pub fn plan_total(
    service: &TileService,
    plan: &SeedPlan,
) -> Result<(Option<ZoomRange>, u64), SeedError> {
    let style = service.style(&plan.style)?;
    if !style.is_rendered() {
        return Err(SeedError::NotRendered(plan.style.clone()));
    }
    let zooms = ZoomRange::new(style.minzoom, style.maxzoom.min(plan.area.max_zoom()))
        .ok()
        .and_then(|s| plan.zooms.intersect(s));
    let total = zooms.map_or(0, |zooms| {
        plan.area
            .blocks(zooms.min())
            .take_while(|b| b.z <= zooms.max())
            .map(|b| b.len())
            .sum()
    });
    Ok((zooms, total))
}

/// Runs the plan through the service's render pool with at most `in_flight` jobs
/// outstanding, reporting to `observer` after every metatile, until done or `cancel`.
pub async fn run(
    service: &TileService,
    plan: &SeedPlan,
    in_flight: usize,
    observer: &mut dyn SeedObserver,
    cancel: &CancellationToken,
) -> Result<SeedSummary, SeedError> {
    let in_flight = in_flight.max(1);
    let (zooms, total) = plan_total(service, plan)?;
    let mut summary = SeedSummary {
        total,
        ..SeedSummary::default()
    };
    let Some(zooms) = zooms else {
        return Ok(summary);
    };
    let (min_z, max_z) = (zooms.min(), zooms.max());
    let mut waiting: VecDeque<Waiter> = VecDeque::new();
    let metatiles = plan
        .area
        .blocks(min_z)
        .take_while(|b| b.z <= max_z)
        .flat_map(|b| b.metatiles());
    'all: for meta in metatiles {
        if cancel.is_cancelled() {
            break 'all;
        }
        let z = meta.z;
        // A fresh area is a stat per metatile and nothing else: let other tasks run.
        tokio::task::consume_budget().await;
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
            let submitted = if waiting.is_empty() {
                // Nothing of ours in flight to wait for: wait for room in the queue.
                service
                    .pool()
                    .submit_when_room(key.clone(), Priority::Bulk, cancel)
                    .await
            } else {
                service.pool().submit(key.clone(), Priority::Bulk)
            };
            match submitted {
                Ok(submit) => {
                    waiting.push_back(submit.into_waiter());
                    break;
                }
                Err(SubmitError::QueueFull(_)) => {
                    settle_one(&mut waiting, &mut summary).await;
                    observer.progress(&summary, z);
                }
                Err(SubmitError::Cancelled) => break 'all,
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
            // Logged by the render backend where it failed.
            Err(_) => summary.failed += 1,
        }
    }
}
