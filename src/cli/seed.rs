//! `metatiled seed`: pre-render an area (`--bbox`, `--polygon`, else the imported data's
//! bounds) through the same render pool and cache writer as the server, with a progress
//! bar on a terminal (a line every few seconds in a log) and a summary at the end.

use super::area::given_or_import_bounds;
use super::progress::Progress;
use super::SeedArgs;
use crate::app::Core;
use crate::config::{Settings, UsageError};
use crate::service::seed::{self, plan_total, SeedObserver, SeedPlan, SeedSummary};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Time the render pool gets to finish what is in flight once the seed is done.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) async fn run(mut settings: Settings, args: SeedArgs) -> anyhow::Result<()> {
    let given_area = args.area.given_or_usage()?;
    if let Some(t) = args.threads {
        settings.render.threads = t;
    }
    let core = Core::build(&settings).await?;
    let area = given_or_import_bounds(given_area, &core)?;
    let plan = SeedPlan::new(args.style, &area, args.zoom, args.force);
    let (_, total) = plan_total(&core.service, &plan).map_err(|e| UsageError(e.to_string()))?;
    let mut progress = Progress::new(
        total,
        "seed {msg} [{bar:30}] {pos}/{len} metatiles, {per_sec}, ETA {eta}",
    );
    let in_flight = settings.render_threads() * 4;
    let never = CancellationToken::new();
    let summary = seed::run(&core.service, &plan, in_flight, &mut progress, &never).await;
    core.shutdown(SHUTDOWN_TIMEOUT).await;
    let summary = summary?;
    report_done(&progress, &summary);
    if summary.failed > 0 {
        anyhow::bail!("{} metatiles failed to render", summary.failed);
    }
    Ok(())
}

impl SeedObserver for Progress {
    fn progress(&mut self, s: &SeedSummary, z: u8) {
        if let Some(bar) = self.bar() {
            bar.set_position(s.done());
            bar.set_message(format!("z{z}"));
            return;
        }
        let Some(secs) = self.line_due() else {
            return;
        };
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

fn report_done(progress: &Progress, s: &SeedSummary) {
    progress.clear();
    eprintln!(
        "seed: done in {:.1}s: {} rendered, {} already fresh, {} failed, {} in all",
        progress.started.elapsed().as_secs_f64(),
        s.rendered,
        s.skipped_fresh,
        s.failed,
        s.total
    );
}
