//! `metatiled expire`: reads `z/x/y` lines on stdin (or takes a `--bbox` or a
//! `--polygon` GeoJSON file, as the admin API does) and expires the disk cache offline,
//! like render_expired. Bad lines go to stderr with their number (the first
//! [`MAX_SHOWN_BAD_LINES`]), progress to stderr every few seconds, the summary to
//! stdout as `name: value` lines.

use super::ExpireArgs;
use crate::area::{Area, AreaFileError, MetatileSet, TileLines};
use crate::cache::DiskCache;
use crate::config::Settings;
use crate::expire::{apply, ExpireMode, ExpirePlan, ExpireProgress, ExpireSummary, PlanError};
use crate::service::expiry::WithDependents;
use crate::style::{Dependent, StyleSet};
use crate::tile::StyleName;
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Bad lines printed before the rest are only counted.
pub(super) const MAX_SHOWN_BAD_LINES: u64 = 20;
/// Time between two progress lines.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Error)]
pub(super) enum ExpireCliError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("bad --polygon: {}", crate::errors::error_chain(.0))]
    Polygon(#[source] AreaFileError),
    #[error("cannot read the tile list")]
    Input(#[source] std::io::Error),
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
    #[error("{0} metatiles could not be expired (see the log)")]
    Failed(u64),
}

/// A validated `metatiled expire` invocation.
#[derive(Debug, Clone)]
pub(super) struct ExpireCommand {
    pub style: StyleName,
    pub plan: ExpirePlan,
    /// `--bbox` or `--polygon`; `None` reads tile lines.
    pub area: Option<Area>,
}

/// What a run read and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ExpireReport {
    pub lines: u64,
    pub bad_lines: u64,
    pub summary: ExpireSummary,
}

impl ExpireCommand {
    /// Checks the arguments; errors here are usage errors (exit 2).
    pub(super) fn from_args(args: &ExpireArgs) -> Result<Self, ExpireCliError> {
        let area = args.area.given().map_err(ExpireCliError::Polygon)?;
        Ok(Self {
            area,
            style: args.style.clone(),
            plan: ExpirePlan::new(
                args.min_zoom,
                args.max_zoom,
                args.delete_from,
                args.touch_from,
            )?,
        })
    }

    /// Runs on stdin (unless an area was given) against `cache.dir`, printing to stdout
    /// and stderr.
    pub(super) fn run(&self, settings: &Settings) -> Result<(), ExpireCliError> {
        let stdin = std::io::stdin();
        // The trees made from this style (its UTFGrids, the composites over it) follow
        // its metatiles; without loadable styles only the style itself is expired.
        let dependents = match StyleSet::load_dir(&settings.styles.dir) {
            Ok(styles) => styles.dependents(&self.style),
            Err(e) => {
                eprintln!("expire: warning: cannot load the styles ({e}): UTFGrids and composites made from {} are not expired", self.style);
                Vec::new()
            }
        };
        let report = match self.run_with(
            &settings.cache.dir,
            &dependents,
            stdin.lock(),
            &mut std::io::stdout().lock(),
            &mut std::io::stderr(),
        ) {
            Err(ExpireCliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                return Ok(())
            }
            other => other?,
        };
        match report.summary.total().errors {
            0 => Ok(()),
            n => Err(ExpireCliError::Failed(n)),
        }
    }

    /// The whole command over any input and outputs.
    pub(super) fn run_with(
        &self,
        cache_dir: &Path,
        dependents: &[Dependent],
        input: impl BufRead,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<ExpireReport, ExpireCliError> {
        let started = Instant::now();
        let disk = DiskCache::new(cache_dir, false);
        let style_dir = disk.style_dir(&self.style);
        if !style_dir.is_dir() {
            writeln!(
                err,
                "expire: warning: {} does not exist: no metatiles of style {} to expire",
                style_dir.display(),
                self.style
            )
            .map_err(ExpireCliError::Output)?;
        }

        let (set, line_count, bad_lines) = match &self.area {
            Some(area) => (area.to_set(self.plan.max_zoom), 0, 0),
            None => read_lines(self.plan.max_zoom, input, err)?,
        };

        let mut last_progress = Instant::now();
        let mut progress = |p: ExpireProgress| {
            if last_progress.elapsed() >= PROGRESS_EVERY && p.total > 0 {
                let _ = writeln!(
                    err,
                    "expire: {}/{} metatiles ({:.0}%)...",
                    p.done,
                    p.total,
                    100.0 * p.done as f64 / p.total as f64
                );
                last_progress = Instant::now();
            }
        };
        let target = WithDependents::with(disk, self.style.clone(), dependents.to_vec());
        let summary = apply(&target, &self.style, &self.plan, &set, &mut progress);

        let total = summary.total();
        let p = &self.plan;
        let mut lines_out = vec![
            format!("style: {}", self.style),
            format!(
                "input: {}",
                self.area.as_ref().map_or("tile list", Area::kind)
            ),
            format!("zooms: {}-{}", p.min_zoom, p.max_zoom),
            format!("lines read: {line_count}"),
            format!("bad lines: {bad_lines}"),
            format!("metatiles: {}", total.matched),
        ];
        for (action, label) in [
            (ExpireMode::Delete, "deleted"),
            (ExpireMode::Dirty, "marked dirty"),
            (ExpireMode::Render, "marked dirty for re-render"),
        ] {
            let c = match action {
                ExpireMode::Delete => summary.delete,
                ExpireMode::Dirty => summary.mark_dirty,
                ExpireMode::Render => summary.render,
            };
            lines_out.push(format!("{label}: {}", c.changed));
        }
        lines_out.push(format!("already dirty: {}", total.already_dirty));
        lines_out.push(format!("absent: {}", total.absent));
        lines_out.push(format!("errors: {}", total.errors));
        lines_out.push(format!("seconds: {:.2}", started.elapsed().as_secs_f64()));
        for line in lines_out {
            writeln!(out, "{line}").map_err(ExpireCliError::Output)?;
        }
        Ok(ExpireReport {
            lines: line_count,
            bad_lines,
            summary,
        })
    }
}

/// Reads the tile list into a set: (set, lines read, bad lines), bad lines reported on
/// `err`.
fn read_lines(
    max_zoom: u8,
    input: impl BufRead,
    err: &mut dyn Write,
) -> Result<(MetatileSet, u64, u64), ExpireCliError> {
    let mut set = MetatileSet::new(max_zoom);
    let mut lines = TileLines::new(input);
    let mut bad_lines = 0u64;
    let mut last_progress = Instant::now();
    while let Some(item) = lines.next() {
        match item.map_err(ExpireCliError::Input)? {
            Ok(tile) => set.insert(tile),
            Err(bad) => {
                bad_lines += 1;
                if bad_lines <= MAX_SHOWN_BAD_LINES {
                    writeln!(err, "expire: skipping {bad}").map_err(ExpireCliError::Output)?;
                } else if bad_lines == MAX_SHOWN_BAD_LINES + 1 {
                    writeln!(err, "expire: more bad lines are counted, not shown")
                        .map_err(ExpireCliError::Output)?;
                }
            }
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            writeln!(err, "expire: read {} lines...", lines.lines_read())
                .map_err(ExpireCliError::Output)?;
            last_progress = Instant::now();
        }
    }
    Ok((set, lines.lines_read(), bad_lines))
}
