//! `metatiled watch` and `metatiled unwatch`: install or remove the change triggers on
//! the tables a style reads (or an explicit list). Both are idempotent and say what
//! they did, one line per table.

use super::WatchArgs;
use crate::config::{Settings, UsageError};
use crate::source::changes::{
    self, geometry_tables, resolve_tables, ChangeError, GeometryTable, TableRef,
};
use crate::source::DbPool;
use crate::style::StyleSet;
use crate::watch::{select_styles, tables_read_by, WatchError};

/// A wrong style, table or an empty selection is the user's to fix (exit 2).
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
async fn prepare(settings: &Settings) -> anyhow::Result<(StyleSet, DbPool)> {
    let styles = StyleSet::load_dir(&settings.styles.dir).map_err(|e| UsageError(e.to_string()))?;
    let pool = crate::source::build_pool(&settings.database).await?;
    if settings.database.migrate_on_start {
        crate::source::run_migrations(&pool).await?;
    }
    Ok((styles, pool))
}

/// The tables named by `--tables`, as the database knows them.
async fn named_tables(
    client: &tokio_postgres::Client,
    tables: &[String],
) -> anyhow::Result<Vec<GeometryTable>> {
    let wanted: Vec<TableRef> = tables.iter().map(|t| TableRef::parse(t)).collect();
    resolve_tables(&geometry_tables(client).await?, &wanted).map_err(|e| usage(e.into()))
}

/// `metatiled watch [--style S] [--tables a,b]`: installs the triggers on the listed
/// tables, or on every table the style (default: every style) reads.
pub(super) async fn watch(settings: Settings, args: &WatchArgs) -> anyhow::Result<()> {
    let (styles, pool) = prepare(&settings).await?;
    let client = pool.get().await?;
    let chosen = if args.tables.is_empty() {
        let chosen = select_styles(&styles, args.style.as_ref()).map_err(usage)?;
        let found = tables_read_by(chosen, &geometry_tables(&client).await?);
        if found.is_empty() {
            return Err(usage(WatchError::NothingToWatch));
        }
        found
    } else {
        named_tables(&client, &args.tables).await?
    };
    for t in &chosen {
        changes::install_triggers(&client, t).await?;
        println!(
            "watching {} (geometry column {})",
            t.table, t.geometry_column
        );
    }
    Ok(())
}

/// `metatiled unwatch [--style S] [--tables a,b]`: removes the triggers from the listed
/// tables, from the tables the style reads, or (neither given) from every table that
/// has them.
pub(super) async fn unwatch(settings: Settings, args: &WatchArgs) -> anyhow::Result<()> {
    let (styles, pool) = prepare(&settings).await?;
    let client = pool.get().await?;
    let chosen: Vec<TableRef> = if !args.tables.is_empty() {
        named_tables(&client, &args.tables)
            .await?
            .into_iter()
            .map(|t| t.table)
            .collect()
    } else if args.style.is_some() {
        let chosen = select_styles(&styles, args.style.as_ref()).map_err(usage)?;
        tables_read_by(chosen, &geometry_tables(&client).await?)
            .into_iter()
            .map(|t| t.table)
            .collect()
    } else {
        changes::watched_tables(&client).await?
    };
    for t in &chosen {
        changes::remove_triggers(&client, t).await?;
        println!("no longer watching {t}");
    }
    if chosen.is_empty() {
        println!("no watched tables");
    }
    Ok(())
}
