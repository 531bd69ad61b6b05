//! `metatiled cache inspect FILE` and `metatiled cache stats [--style S]`: the reports
//! of [`crate::cache::report`] on stdout, notes on stderr.

use crate::cache::report;
use crate::config::Settings;
use crate::tile::StyleName;
use std::path::Path;

pub(super) fn inspect(file: &Path) -> anyhow::Result<()> {
    Ok(report::inspect(file, &mut std::io::stdout().lock())?)
}

pub(super) fn stats(settings: &Settings, style: Option<&StyleName>) -> anyhow::Result<()> {
    let out = &mut std::io::stdout().lock();
    let mut note = |line: &str| eprintln!("cache stats: {line}");
    Ok(report::stats(
        &settings.cache.dir,
        style,
        Some(&settings.cache),
        out,
        &mut note,
    )?)
}
