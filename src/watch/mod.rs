//! Freshness from the database itself: when rows change in the tables a style reads,
//! the server expires exactly the metatiles whose area changed.
//!
//! 1. Statement-level triggers (`migrations/V2__change_log.sql`, `V3__...`) log the
//!    changed boxes of every INSERT, UPDATE (old and new rows), DELETE and TRUNCATE to
//!    `metatiled.change_log`, merged per grid cell (a bulk statement writes a bounded
//!    number of rows), and NOTIFY once per statement.
//! 2. `metatiled watch` installs them on every table the styles' SQL reads (or an
//!    explicit list), `metatiled unwatch` removes them ([`watch_command`],
//!    [`unwatch_command`]); `watch.install_on_start` does it when `serve` starts
//!    ([`install_for_styles`]).
//! 3. [`Watcher`] (in `serve`, with `watch.enabled`) follows the log and expires.
//!
//! # Layout
//! - [`plan`]: tables read by styles, box merging, boxes -> metatiles per zoom. Pure.
//! - `listener`: the [`Watcher`]: connection, LISTEN, batches, reconnects, metrics.
//! - here: the commands and the trigger installation they share with `serve`.

mod listener;
pub mod plan;

pub use listener::{policy_from, Watcher};

use crate::app::UsageError;
use crate::config::Settings;
use crate::source::changes::{
    self, geometry_tables, resolve_tables, ChangeError, GeometryTable, TableRef,
};
use crate::style::{Style, StyleSet};
use crate::tile::StyleName;
use std::io::Write;
use thiserror::Error;
use tokio_postgres::Client;

#[derive(Debug, Error)]
pub enum WatchError {
    #[error(transparent)]
    Database(#[from] ChangeError),
    #[error("the connection closed: {0}")]
    Closed(String),
    #[error("the expiry task failed: {0}")]
    Task(String),
    #[error("watch.mode {0:?} is not \"dirty\", \"delete\" or \"render\"")]
    BadMode(String),
    #[error("unknown style {0}")]
    UnknownStyle(String),
    #[error("no style reads a table with a geometry column")]
    NothingToWatch,
}

/// The tables among `candidates` that the SQL of any layer of `styles` names.
pub fn tables_read_by<'a>(
    styles: impl IntoIterator<Item = &'a Style>,
    candidates: &[GeometryTable],
) -> Vec<GeometryTable> {
    let styles: Vec<&Style> = styles.into_iter().collect();
    candidates
        .iter()
        .filter(|c| {
            styles.iter().any(|s| {
                s.layers
                    .iter()
                    .any(|l| plan::sql_reads_table(&l.sql, &c.table.schema, &c.table.name))
            })
        })
        .cloned()
        .collect()
}

/// The styles `--style` selects: that one (and its `@2x` twin), or all.
fn select_styles<'a>(
    styles: &'a StyleSet,
    only: Option<&StyleName>,
) -> Result<Vec<&'a Style>, WatchError> {
    let chosen: Vec<&Style> = styles
        .iter()
        .filter(|s| only.map_or(true, |n| s.name == *n || s.base_name == *n))
        .map(|s| s.as_ref())
        .collect();
    match (only, chosen.is_empty()) {
        (Some(n), true) => Err(WatchError::UnknownStyle(n.to_string())),
        _ => Ok(chosen),
    }
}

/// Installs (or replaces) the triggers on every table the styles read (`only` one
/// style, or all), returning the tables.
pub async fn install_for_styles(
    client: &Client,
    styles: &StyleSet,
    only: Option<&StyleName>,
) -> Result<Vec<GeometryTable>, WatchError> {
    let chosen = select_styles(styles, only)?;
    let tables = tables_read_by(chosen, &geometry_tables(client).await?);
    if tables.is_empty() {
        return Err(WatchError::NothingToWatch);
    }
    for t in &tables {
        changes::install_triggers(client, t).await?;
    }
    Ok(tables)
}

fn usage(e: WatchError) -> anyhow::Error {
    match e {
        WatchError::Database(ChangeError::UnknownTable(_))
        | WatchError::UnknownStyle(_)
        | WatchError::NothingToWatch => UsageError(e.to_string()).into(),
        other => other.into(),
    }
}

/// Loads the styles and connects (running the migrations when
/// `database.migrate_on_start`, so the trigger functions exist).
async fn prepare(
    settings: &Settings,
    style: Option<&str>,
) -> anyhow::Result<(StyleSet, Option<StyleName>, crate::source::Pool)> {
    let style = style
        .map(StyleName::parse)
        .transpose()
        .map_err(|e| UsageError(format!("--style: {e}")))?;
    let styles = StyleSet::load_dir(&settings.styles.dir).map_err(|e| UsageError(e.to_string()))?;
    let pool = crate::source::build_pool(&settings.database).await?;
    if settings.database.migrate_on_start {
        crate::source::run_migrations(&pool).await?;
    }
    Ok((styles, style, pool))
}

/// `metatiled watch [--style S] [--tables a,b]`: installs the triggers on the listed
/// tables, or on every table the style (default: every style) reads. Idempotent.
pub async fn watch_command(
    settings: Settings,
    style: Option<&str>,
    tables: &[String],
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (styles, style, pool) = prepare(&settings, style).await?;
    let client = pool.get().await?;
    let chosen = if tables.is_empty() {
        let chosen = select_styles(&styles, style.as_ref()).map_err(usage)?;
        let found = tables_read_by(chosen, &geometry_tables(&client).await?);
        if found.is_empty() {
            return Err(usage(WatchError::NothingToWatch));
        }
        found
    } else {
        let wanted: Vec<TableRef> = tables.iter().map(|t| TableRef::parse(t)).collect();
        resolve_tables(&geometry_tables(&client).await?, &wanted).map_err(|e| usage(e.into()))?
    };
    for t in &chosen {
        changes::install_triggers(&client, t).await?;
        writeln!(
            out,
            "watching {} (geometry column {})",
            t.table, t.geometry_column
        )?;
    }
    Ok(())
}

/// `metatiled unwatch [--style S] [--tables a,b]`: removes the triggers from the listed
/// tables, from the tables the style reads, or (neither given) from every table that
/// has them. Idempotent.
pub async fn unwatch_command(
    settings: Settings,
    style: Option<&str>,
    tables: &[String],
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (styles, style, pool) = prepare(&settings, style).await?;
    let client = pool.get().await?;
    let chosen: Vec<TableRef> = if !tables.is_empty() {
        let wanted: Vec<TableRef> = tables.iter().map(|t| TableRef::parse(t)).collect();
        resolve_tables(&geometry_tables(&client).await?, &wanted)
            .map_err(|e| usage(e.into()))?
            .into_iter()
            .map(|t| t.table)
            .collect()
    } else if style.is_some() {
        let chosen = select_styles(&styles, style.as_ref()).map_err(usage)?;
        tables_read_by(chosen, &geometry_tables(&client).await?)
            .into_iter()
            .map(|t| t.table)
            .collect()
    } else {
        changes::watched_tables(&client).await?
    };
    for t in &chosen {
        changes::remove_triggers(&client, t).await?;
        writeln!(out, "no longer watching {t}")?;
    }
    if chosen.is_empty() {
        writeln!(out, "no watched tables")?;
    }
    Ok(())
}
