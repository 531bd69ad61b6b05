//! Freshness from the database itself: when rows change in the tables a style reads,
//! the server expires exactly the metatiles whose area changed.
//!
//! 1. Statement-level triggers (`migrations/V2__change_log.sql`, `V3__...`) log the
//!    changed boxes of every INSERT, UPDATE (old and new rows), DELETE and TRUNCATE to
//!    `metatiled.change_log`, merged per grid cell (a bulk statement writes a bounded
//!    number of rows), and NOTIFY once per statement.
//! 2. `metatiled watch` / `unwatch` install and remove them on every table the styles'
//!    SQL reads (or an explicit list); `watch.install_on_start` does it when `serve`
//!    starts ([`install_for_styles`]).
//! 3. [`Watcher`] (in `serve`, with `watch.enabled`) follows the log and expires
//!    through the [`ExpireTarget`](crate::expire::ExpireTarget) the server gives it.
//!
//! # Layout
//! - [`plan`]: tables read by styles, box merging, boxes -> metatiles per zoom. Pure.
//! - `listener`: the [`Watcher`]: connection, LISTEN, batches, reconnects.
//! - `metrics`: the watcher's Prometheus series.
//! - here: the settings, and the trigger installation shared by the commands and `serve`.

mod listener;
mod metrics;
pub(crate) mod plan;

pub(crate) use listener::{BatchTargets, Watcher};
pub(crate) use metrics::WatchMetrics;

use crate::expire::ExpireMode;
use crate::source::changes::{self, geometry_tables, ChangeError, GeometryTable};
use crate::style::{Style, StyleSet};
use crate::tile::StyleName;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio_postgres::Client;

#[derive(Debug, Error)]
pub(crate) enum WatchError {
    #[error(transparent)]
    Database(#[from] ChangeError),
    #[error(transparent)]
    Cursor(#[from] crate::source::fleet::FleetDbError),
    #[error("the connection closed: {0}")]
    Closed(String),
    #[error("the expiry task failed")]
    Task(#[source] tokio::task::JoinError),
    #[error("unknown style {0}")]
    UnknownStyle(String),
    #[error("no style reads a table with a geometry column")]
    NothingToWatch,
}

/// The tables among `candidates` that the SQL of any layer of `styles` names.
pub(crate) fn tables_read_by<'a>(
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
pub(crate) fn select_styles<'a>(
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
pub(crate) async fn install_for_styles(
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

/// The `[watch]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WatchSettings {
    /// Follow changes in the database (triggers + LISTEN) and expire what they touch.
    pub enabled: bool,
    /// Install the triggers for every style when `serve` starts.
    pub install_on_start: bool,
    /// What a change does to its metatiles: "dirty", "delete" or "render".
    pub mode: ExpireMode,
    /// Re-render (instead of `mode`) the changed metatiles of zooms up to this one
    /// (-1 = none).
    pub render_up_to_zoom: i32,
    /// The change log is also read this often, in case a notification was missed.
    pub poll_secs: u64,
}

impl Default for WatchSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            install_on_start: false,
            mode: ExpireMode::Dirty,
            render_up_to_zoom: -1,
            poll_secs: 30,
        }
    }
}

impl WatchSettings {
    /// What a change does, from `mode` and `render_up_to_zoom`.
    pub fn policy(&self) -> plan::WatchPolicy {
        plan::WatchPolicy {
            mode: self.mode,
            render_up_to: u8::try_from(self.render_up_to_zoom).ok(),
        }
    }
}
