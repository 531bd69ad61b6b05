//! `metatiled seed`: pre-render an area (`--bbox`, `--polygon`, else the imported data's
//! bounds) through the same render pool and cache writer as the server, with a progress
//! bar on a terminal (a line every few seconds in a log) and a summary at the end.

use super::SeedArgs;
use crate::app::Core;
use crate::area::Area;
use crate::config::{Settings, UsageError};
use crate::service::seed::{self, plan_total, SeedObserver, SeedPlan, SeedSummary};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Time the render pool gets to finish what is in flight once the seed is done.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);
/// Between two progress lines when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

pub(super) async fn run(mut settings: Settings, args: SeedArgs) -> anyhow::Result<()> {
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
    let plan = SeedPlan::new(args.style, &area, args.zoom, args.force);
    let (_, total) = plan_total(&core.service, &plan).map_err(|e| UsageError(e.to_string()))?;
    let mut progress = Progress::new(total);
    let in_flight = settings.render_threads() * 4;
    let never = CancellationToken::new();
    let summary = seed::run(&core.service, &plan, in_flight, &mut progress, &never).await;
    core.shutdown(SHUTDOWN_TIMEOUT).await;
    let summary = summary?;
    progress.finish(&summary);
    if summary.failed > 0 {
        anyhow::bail!("{} metatiles failed to render", summary.failed);
    }
    Ok(())
}

/// A progress bar on a terminal; on a pipe or a log file, a plain line every few
/// seconds instead (no escape codes in logs).
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
                    "seed {msg} [{bar:30}] {pos}/{len} metatiles, {per_sec}, ETA {eta}",
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

    fn finish(&self, s: &SeedSummary) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
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
        if let Some(bar) = &self.bar {
            bar.set_position(s.done());
            bar.set_message(format!("z{z}"));
            return;
        }
        if self.last_line.elapsed() < LOG_EVERY {
            return;
        }
        self.last_line = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = s.rendered as f64 / secs;
        let left = self.total.saturating_sub(s.done());
        let eta = if rate > 0.0 {
            format!("{:.0}s", left as f64 / rate)
        } else {
            "?".into()
        };
        eprintln!(
            "seed: z{z} {}/{} metatiles ({:.0}%), {rate:.1} metatiles/s ({:.0} tiles/s), ETA {eta}",
            s.done(),
            self.total,
            100.0 * s.done() as f64 / self.total.max(1) as f64,
            rate * 64.0,
        );
    }
}
