//! `metatiled export`: an area's tiles (`--bbox`, `--polygon`, else the imported data's
//! bounds) into one MBTiles or PMTiles file, rendering what the cache lacks through the
//! same render pool as the server, with a progress bar on a terminal (a line every few
//! seconds in a log) and a summary at the end.

use super::ExportArgs;
use crate::app::Core;
use crate::archive::ArchiveFormat;
use crate::area::Area;
use crate::config::{Settings, UsageError};
use crate::service::export::{self, plan_total, ExportObserver, ExportPlan, ExportSummary};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Time the render pool gets to finish what is in flight once the export is done.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);
/// Between two progress lines when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

pub(super) async fn run(mut settings: Settings, args: ExportArgs) -> anyhow::Result<()> {
    let format = match (args.format, ArchiveFormat::from_path(&args.out)) {
        (Some(f), _) | (None, Some(f)) => f,
        (None, None) => {
            return Err(UsageError(format!(
                "--format mbtiles|pmtiles is needed: {} does not end in .mbtiles or .pmtiles",
                args.out.display()
            ))
            .into())
        }
    };
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(UsageError(format!("{} is not a directory", dir.display())).into());
        }
    }
    let given_area = match (args.bbox, &args.polygon) {
        (Some(b), _) => Some(Area::Bbox(b)),
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
    let plan = ExportPlan {
        style: args.style,
        area,
        zooms: args.zoom,
        format,
        path: args.out,
    };
    let set = plan.area.to_set(plan.zooms.max());
    let (_, total) =
        plan_total(&core.service, &plan, &set).map_err(|e| UsageError(e.to_string()))?;
    let mut progress = Progress::new(total);
    let in_flight = settings.render_threads() * 4;
    let never = CancellationToken::new();
    let result = export::run(&core.service, &plan, &set, in_flight, &mut progress, &never).await;
    core.shutdown(SHUTDOWN_TIMEOUT).await;
    let summary = result?;
    progress.finish(&summary);
    if summary.failed > 0 {
        anyhow::bail!(
            "{} metatiles failed to render: their tiles are missing from {}",
            summary.failed,
            summary.path.display()
        );
    }
    Ok(())
}

/// A progress bar on a terminal; on a pipe or a log file, a plain line every few
/// seconds instead.
struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "export [{bar:30}] {pos}/{len} metatiles, {per_sec}, ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        Self {
            bar,
            total,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    fn finish(&self, s: &ExportSummary) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let secs = s.seconds.max(1e-3);
        eprintln!(
            "export: {} ({}) done in {:.3}s: {} tiles ({} distinct), {} bytes of tiles, file {} bytes; {:.0} tiles/s; metatiles: {} rendered, {} from the cache, {} failed",
            s.path.display(),
            s.format,
            s.seconds,
            s.archive.tiles,
            s.archive.unique_tiles,
            s.archive.tile_bytes,
            s.archive.file_bytes,
            s.archive.tiles as f64 / secs,
            s.rendered,
            s.from_cache,
            s.failed,
        );
    }
}

impl ExportObserver for Progress {
    fn progress(&mut self, s: &ExportSummary) {
        if let Some(bar) = &self.bar {
            bar.set_position(s.done());
            return;
        }
        if self.last_line.elapsed() < LOG_EVERY {
            return;
        }
        self.last_line = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        eprintln!(
            "export: {}/{} metatiles ({:.0}%), {:.1} metatiles/s ({} rendered, {} from the cache)",
            s.done(),
            self.total,
            100.0 * s.done() as f64 / self.total.max(1) as f64,
            s.done() as f64 / secs,
            s.rendered,
            s.from_cache,
        );
    }
}
