//! Export: the tiles of an area and zoom range into one MBTiles or PMTiles file, for
//! `metatiled export` and the admin API's export jobs.
//!
//! The metatiles are those seeding names ([`MetatileSet`] blocks), zoom by zoom, in
//! PMTiles tile-id order (an aligned metatile is one run of the Hilbert curve, so the
//! archive comes out clustered). A metatile fresh in the cache is read from it; a missing
//! or stale one is rendered first through the render pool at `bulk` priority (never
//! crowding out interactive misses), with at most `in_flight` of them outstanding. The
//! file is written on a blocking thread that reads each metatile once, keeps the tiles
//! the area holds ([`AreaTiles`]) and adds them in tile-id order; it goes to a temp name
//! and is renamed into place only when complete ([`ArchiveWriter`]), so a crash or a
//! cancelled job never leaves a file that claims to be whole.

use super::{ServiceError, TileService};
use crate::archive::{
    tile_id, ArchiveError, ArchiveFormat, ArchiveMetadata, ArchiveStats, ArchiveWriter,
};
use crate::area::{Area, AreaTiles, MetatileSet};
use crate::cache::{DiskCache, MetatileState};
use crate::queue::{JobKey, Priority, SubmitError, Waiter};
use crate::tile::{MetatileCoord, StyleName, TileCoord, ZoomRange};
use serde::Serialize;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Instant;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

/// Metatiles handed to the writer thread ahead of it.
const WRITER_QUEUE: usize = 64;

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportPlan {
    pub style: StyleName,
    pub area: Area,
    pub zooms: ZoomRange,
    pub format: ArchiveFormat,
    /// The finished file (written under a temp name beside it first).
    pub path: PathBuf,
}

/// Why an export could not run or did not finish.
#[derive(Debug, Error)]
pub enum ExportError {
    #[error(transparent)]
    Style(#[from] ServiceError),
    #[error("style {0} is served from an archive: export its file instead")]
    NotRendered(StyleName),
    #[error("zooms {zooms} are outside style {style}'s {min}-{max}")]
    NoZooms {
        style: StyleName,
        zooms: ZoomRange,
        min: u8,
        max: u8,
    },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("the render pool stopped")]
    PoolStopped,
    #[error("cancelled; no file was written")]
    Cancelled,
    #[error("the archive writer thread failed")]
    Writer,
}

/// Counts of an export, as it goes and at the end.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ExportSummary {
    /// Metatiles of the area and zooms.
    pub metatiles: u64,
    /// Metatiles rendered first (missing or stale), read from the cache, or failed.
    pub rendered: u64,
    pub from_cache: u64,
    pub failed: u64,
    /// What the archive holds (tiles, distinct tiles, bytes); final at the end.
    #[serde(flatten)]
    pub archive: ArchiveStats,
    pub path: PathBuf,
    pub format: String,
    pub seconds: f64,
}

impl ExportSummary {
    /// Metatiles handled so far.
    pub fn done(&self) -> u64 {
        self.rendered + self.from_cache + self.failed
    }
}

/// Receives an export's progress after every metatile: rate-limit on your side.
pub trait ExportObserver: Send {
    fn progress(&mut self, summary: &ExportSummary);
}

/// The zooms the plan exports (within the style's) and how many metatiles they hold.
pub fn plan_total(
    service: &TileService,
    plan: &ExportPlan,
    set: &MetatileSet,
) -> Result<(ZoomRange, u64), ExportError> {
    let style = service.style(&plan.style)?;
    if !style.is_rendered() {
        return Err(ExportError::NotRendered(plan.style.clone()));
    }
    let zooms = ZoomRange::new(style.minzoom, style.maxzoom)
        .ok()
        .and_then(|s| plan.zooms.intersect(s))
        .ok_or_else(|| ExportError::NoZooms {
            style: plan.style.clone(),
            zooms: plan.zooms,
            min: style.minzoom,
            max: style.maxzoom,
        })?;
    let total = set
        .blocks(zooms.min())
        .take_while(|b| b.z <= zooms.max())
        .map(|b| b.len())
        .sum();
    Ok((zooms, total))
}

/// What the writer thread gets: a metatile to copy, or the end.
enum ToWriter {
    Metatile(MetatileCoord),
    Finish(Box<ArchiveMetadata>),
}

/// Runs the export: renders what needs it, writes the archive, renames it into place.
/// `set` is `plan.area.to_set(plan.zooms.max())` (built by the caller, on a blocking
/// thread for big polygons).
pub async fn run(
    service: &TileService,
    plan: &ExportPlan,
    set: &MetatileSet,
    in_flight: usize,
    observer: &mut dyn ExportObserver,
    cancel: &CancellationToken,
) -> Result<ExportSummary, ExportError> {
    let started = Instant::now();
    let (zooms, total) = plan_total(service, plan, set)?;
    let style = service.style(&plan.style)?.clone();
    let bounds = plan.area.bounds();
    let (lon, lat) = bounds.center();
    let metadata = ArchiveMetadata {
        name: style.name.to_string(),
        description: style.description.clone(),
        attribution: style.attribution.clone(),
        bounds: Some(bounds.to_array()),
        center: Some([lon, lat, f64::from((zooms.min() + zooms.max()) / 2)]),
        minzoom: zooms.min(),
        maxzoom: zooms.max(),
    };
    let mut summary = ExportSummary {
        metatiles: total,
        path: plan.path.clone(),
        format: plan.format.to_string(),
        ..ExportSummary::default()
    };

    // The writer: a blocking thread that owns the file.
    let (tx, rx) = crossbeam_channel::bounded::<ToWriter>(WRITER_QUEUE);
    let writer = {
        let path = plan.path.clone();
        let format = plan.format;
        let disk = service.cache().disk().clone();
        let name = plan.style.clone();
        let tiles = plan.area.tiles();
        let metadata = metadata.clone();
        tokio::task::spawn_blocking(move || {
            write_archive(&path, format, &metadata, &disk, &name, &tiles, rx)
        })
    };

    let in_flight = in_flight.max(1);
    let mut pending: VecDeque<(MetatileCoord, Option<Waiter>)> = VecDeque::new();
    let mut stopped = None;
    'zooms: for z in zooms.iter() {
        let mut metas: Vec<MetatileCoord> = set
            .blocks(z)
            .take_while(|b| b.z == z)
            .flat_map(|b| b.metatiles())
            .collect();
        metas.sort_unstable_by_key(|m| {
            tile_id(TileCoord {
                z: m.z,
                x: m.x,
                y: m.y,
            })
        });
        for meta in metas {
            if cancel.is_cancelled() {
                stopped = Some(ExportError::Cancelled);
                break 'zooms;
            }
            tokio::task::consume_budget().await;
            while pending.len() >= in_flight {
                if settle(&mut pending, &tx, &mut summary).await.is_err() {
                    break 'zooms;
                }
                observer.progress(&summary);
            }
            if let Ok(MetatileState::Fresh) = service.cache().metatile_state(&plan.style, meta) {
                pending.push_back((meta, None));
                continue;
            }
            let key = JobKey {
                style: plan.style.clone(),
                meta,
            };
            loop {
                let submitted = if pending.iter().all(|(_, w)| w.is_none()) {
                    // Nothing of ours rendering to wait for: hand over what is ready,
                    // then wait for room in the queue.
                    while !pending.is_empty() {
                        if settle(&mut pending, &tx, &mut summary).await.is_err() {
                            break 'zooms;
                        }
                    }
                    observer.progress(&summary);
                    service
                        .pool()
                        .submit_when_room(key.clone(), Priority::Bulk, cancel)
                        .await
                } else {
                    service.pool().submit(key.clone(), Priority::Bulk)
                };
                match submitted {
                    Ok(submit) => {
                        pending.push_back((meta, Some(submit.into_waiter())));
                        break;
                    }
                    Err(SubmitError::QueueFull(_)) => {
                        if settle(&mut pending, &tx, &mut summary).await.is_err() {
                            break 'zooms;
                        }
                        observer.progress(&summary);
                    }
                    Err(SubmitError::Cancelled) => {
                        stopped = Some(ExportError::Cancelled);
                        break 'zooms;
                    }
                    Err(SubmitError::ShuttingDown) => {
                        stopped = Some(ExportError::PoolStopped);
                        break 'zooms;
                    }
                }
            }
        }
    }
    if stopped.is_none() {
        while !pending.is_empty() {
            if settle(&mut pending, &tx, &mut summary).await.is_err() {
                break;
            }
            observer.progress(&summary);
        }
        let _ = tx.send(ToWriter::Finish(Box::new(metadata)));
    }
    // Dropping the sender without `Finish` ends the writer, which removes its temp file.
    drop(tx);
    let written = writer.await.map_err(|_| ExportError::Writer)?;
    if let Some(e) = stopped {
        return Err(e);
    }
    summary.archive = written?;
    summary.seconds = started.elapsed().as_secs_f64();
    observer.progress(&summary);
    Ok(summary)
}

/// Waits for the oldest pending metatile and hands it to the writer; `Err` when the
/// writer has stopped (its error is what it returns).
async fn settle(
    pending: &mut VecDeque<(MetatileCoord, Option<Waiter>)>,
    tx: &crossbeam_channel::Sender<ToWriter>,
    summary: &mut ExportSummary,
) -> Result<(), ()> {
    let Some((meta, waiter)) = pending.pop_front() else {
        return Ok(());
    };
    match waiter {
        None => summary.from_cache += 1,
        Some(w) => match w.wait().await {
            Ok(()) => summary.rendered += 1,
            // Logged by the render backend; its tiles are left out.
            Err(_) => {
                summary.failed += 1;
                return Ok(());
            }
        },
    }
    // Blocks only when the writer is a whole queue behind: off the async threads.
    let tx = tx.clone();
    match tokio::task::spawn_blocking(move || tx.send(ToWriter::Metatile(meta))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// The writer thread: copies each metatile's tiles of the area, in tile-id order.
fn write_archive(
    path: &std::path::Path,
    format: ArchiveFormat,
    metadata: &ArchiveMetadata,
    disk: &DiskCache,
    style: &StyleName,
    area: &AreaTiles,
    rx: crossbeam_channel::Receiver<ToWriter>,
) -> Result<ArchiveStats, ExportError> {
    let mut writer = ArchiveWriter::create(path, format, metadata)?;
    for message in rx {
        let meta = match message {
            ToWriter::Metatile(meta) => meta,
            ToWriter::Finish(metadata) => return Ok(writer.finish(&metadata)?),
        };
        let tiles = match disk.read_metatile(style, meta) {
            Ok(Some((tiles, _))) => tiles,
            Ok(None) => {
                tracing::warn!(%style, meta = %meta, "export: metatile gone before it was read; its tiles are left out");
                continue;
            }
            Err(e) => {
                tracing::warn!(%style, meta = %meta, error = %crate::errors::error_chain(&e), "export: cannot read a metatile; its tiles are left out");
                continue;
            }
        };
        let mut wanted = area.tiles_of(meta);
        wanted.sort_unstable_by_key(|t| tile_id(*t));
        for t in wanted {
            if let Some(bytes) = tiles.get(t.index_in_metatile()) {
                writer.add(t, bytes)?;
            }
        }
    }
    // The sender went away without finishing: cancelled or failed. Dropping the writer
    // removes the temp file.
    Err(ExportError::Cancelled)
}
