//! `metatiled export`: an area's tiles (`--bbox`, `--polygon`, else the imported data's
//! bounds) into one MBTiles or PMTiles file, rendering what the cache lacks through the
//! same render pool as the server, with a progress bar on a terminal (a line every few
//! seconds in a log) and a summary at the end.

use super::area::given_or_import_bounds;
use super::progress::Progress;
use super::ExportArgs;
use crate::app::Core;
use crate::archive::ArchiveFormat;
use crate::config::{Settings, UsageError};
use crate::service::export::{self, plan_total, ExportObserver, ExportPlan, ExportSummary};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Time the render pool gets to finish what is in flight once the export is done.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);

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
    let given_area = args.area.given_or_usage()?;
    if let Some(t) = args.threads {
        settings.render.threads = t;
    }
    let core = Core::build(&settings).await?;
    let area = given_or_import_bounds(given_area, &core)?;
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
    let mut progress = Progress::new(
        total,
        "export [{bar:30}] {pos}/{len} metatiles, {per_sec}, ETA {eta}",
    );
    let in_flight = settings.render_threads() * 4;
    let never = CancellationToken::new();
    let result = export::run(&core.service, &plan, &set, in_flight, &mut progress, &never).await;
    core.shutdown(SHUTDOWN_TIMEOUT).await;
    let summary = result?;
    report_done(&progress, &summary);
    if summary.failed > 0 {
        anyhow::bail!(
            "{} metatiles failed to render: their tiles are missing from {}",
            summary.failed,
            summary.path.display()
        );
    }
    Ok(())
}

fn report_done(progress: &Progress, s: &ExportSummary) {
    progress.clear();
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

impl ExportObserver for Progress {
    fn progress(&mut self, s: &ExportSummary) {
        if let Some(bar) = self.bar() {
            bar.set_position(s.done());
            return;
        }
        let Some(secs) = self.line_due() else {
            return;
        };
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
