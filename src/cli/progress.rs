//! Progress of a long command on stderr: a bar on a terminal; on a pipe or a log file,
//! a plain line every few seconds instead (no escape codes in logs). Each command
//! formats its own lines; this owns when to write them.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often a plain progress line is written when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

pub(super) struct Progress {
    bar: Option<ProgressBar>,
    pub(super) total: u64,
    pub(super) started: Instant,
    last_line: Instant,
}

impl Progress {
    /// `template` is indicatif's, used only on a terminal.
    pub(super) fn new(total: u64, template: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(template)
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

    /// The bar, when stderr is a terminal.
    pub(super) fn bar(&self) -> Option<&ProgressBar> {
        self.bar.as_ref()
    }

    /// Without a bar: whether a plain line is due now (then the next one is due
    /// [`LOG_EVERY`] later). Seconds since the start, for rates, when it is.
    pub(super) fn line_due(&mut self) -> Option<f64> {
        if self.bar.is_some() || self.last_line.elapsed() < LOG_EVERY {
            return None;
        }
        self.last_line = Instant::now();
        Some(self.started.elapsed().as_secs_f64().max(1e-3))
    }

    /// Clears the bar before the command's summary line.
    pub(super) fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
