//! `metatiled seed`: pre-render the metatiles of a bbox and zoom range through the same
//! render pool, renderer and cache writer as web requests, at `bulk` priority. Fresh
//! metatiles are skipped (unless `--force`), so an interrupted seed resumes by running
//! it again.

use crate::app::{Core, UsageError};
use crate::cache::MetatileState;
use crate::config::Settings;
use crate::queue::{JobKey, Priority, SubmitError, Waiter};
use crate::tile::{Bbox, LonLat, MetatileCoord, StyleName, MAX_ZOOM};
use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// What to seed.
#[derive(Debug, Clone)]
pub struct SeedPlan {
    pub style: StyleName,
    pub bbox: Bbox,
    pub min_zoom: u8,
    pub max_zoom: u8,
    pub force: bool,
}

/// Parses `MINLON,MINLAT,MAXLON,MAXLAT` (degrees).
pub fn parse_bbox(text: &str) -> Result<[f64; 4], String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    if parts.len() != 4 {
        return Err(format!("bbox {text:?} must be MINLON,MINLAT,MAXLON,MAXLAT"));
    }
    let mut v = [0.0; 4];
    for (slot, part) in v.iter_mut().zip(&parts) {
        *slot = part
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or_else(|| format!("bbox value {part:?} is not a number"))?;
    }
    check_bbox(v)?;
    Ok(v)
}

/// A lon/lat bbox must be ordered and inside the world.
pub fn check_bbox(v: [f64; 4]) -> Result<(), String> {
    let [minlon, minlat, maxlon, maxlat] = v;
    if !(-180.0..=180.0).contains(&minlon) || !(-180.0..=180.0).contains(&maxlon) {
        return Err("bbox longitudes must be within -180..180".into());
    }
    if !(-90.0..=90.0).contains(&minlat) || !(-90.0..=90.0).contains(&maxlat) {
        return Err("bbox latitudes must be within -90..90".into());
    }
    if minlon > maxlon || minlat > maxlat {
        return Err("bbox minimum must not exceed maximum (MINLON,MINLAT,MAXLON,MAXLAT)".into());
    }
    Ok(())
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
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeedSummary {
    pub rendered: u64,
    pub skipped_fresh: u64,
    pub failed: u64,
    pub total: u64,
}

/// Metatiles of the plan at one zoom, clipped to the style's zoom range by the caller.
fn metatiles_at(bbox: &Bbox, z: u8) -> impl Iterator<Item = MetatileCoord> {
    bbox.tile_range(z).metatiles().iter()
}

/// Runs the plan through the core's render pool with at most `in_flight` jobs
/// outstanding, printing progress to stderr.
pub async fn run(core: &Core, plan: &SeedPlan, in_flight: usize) -> anyhow::Result<SeedSummary> {
    let service = &core.service;
    let style = service
        .style(&plan.style)
        .map_err(|e| UsageError(e.to_string()))?
        .clone();
    let (min_z, max_z) = (
        plan.min_zoom.max(style.minzoom),
        plan.max_zoom.min(style.maxzoom),
    );
    let total: u64 = (min_z..=max_z)
        .map(|z| plan.bbox.tile_range(z).metatiles().len())
        .sum();
    let mut summary = SeedSummary {
        total,
        ..SeedSummary::default()
    };
    let mut progress = Progress::new(total);
    let mut waiting: VecDeque<Waiter> = VecDeque::new();
    for z in min_z..=max_z {
        for meta in metatiles_at(&plan.bbox, z) {
            if !plan.force {
                if let Ok(MetatileState::Fresh) = service.cache().metatile_state(&plan.style, meta)
                {
                    summary.skipped_fresh += 1;
                    progress.step(&summary, z);
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
                    progress.step(&summary, z);
                }
                match service.pool().submit(key.clone(), Priority::Bulk) {
                    Ok(submit) => {
                        waiting.push_back(submit.into_waiter());
                        break;
                    }
                    Err(SubmitError::QueueFull(_)) if !waiting.is_empty() => {
                        settle_one(&mut waiting, &mut summary).await;
                        progress.step(&summary, z);
                    }
                    Err(SubmitError::QueueFull(_)) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(SubmitError::ShuttingDown) => anyhow::bail!("render pool stopped"),
                }
            }
        }
        while !waiting.is_empty() {
            settle_one(&mut waiting, &mut summary).await;
            progress.step(&summary, z);
        }
    }
    progress.finish(&summary);
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

    fn step(&mut self, s: &SeedSummary, z: u8) {
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let done = s.rendered + s.skipped_fresh + s.failed;
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

/// `metatiled seed` from the command line.
pub async fn seed_command(
    mut settings: Settings,
    style: &str,
    bbox: Option<&str>,
    zoom: &str,
    threads: Option<usize>,
    force: bool,
) -> anyhow::Result<()> {
    let style = StyleName::parse(style).map_err(|e| UsageError(format!("--style: {e}")))?;
    let (min_zoom, max_zoom) =
        parse_zoom_range(zoom).map_err(|e| UsageError(format!("--zoom: {e}")))?;
    let given_bbox = bbox
        .map(parse_bbox)
        .transpose()
        .map_err(|e| UsageError(format!("--bbox: {e}")))?;
    if let Some(t) = threads {
        settings.render.threads = t;
    }
    let core = Core::build(&settings).await?;
    let lonlat = match (given_bbox, &core.import) {
        (Some(b), _) => b,
        (None, Some(info)) => info.bounds,
        (None, None) => {
            return Err(UsageError("--bbox is needed: no import bounds are recorded".into()).into())
        }
    };
    let plan = SeedPlan {
        style,
        bbox: Bbox::from_lonlat(
            LonLat {
                lon: lonlat[0],
                lat: lonlat[1],
            },
            LonLat {
                lon: lonlat[2],
                lat: lonlat[3],
            },
        ),
        min_zoom,
        max_zoom,
        force,
    };
    let in_flight = settings.render_threads() * 4;
    let summary = run(&core, &plan, in_flight).await?;
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
