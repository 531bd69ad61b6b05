//! The composition root: builds the database pool, caches, render pool and listeners
//! once, for `serve` and for tests that run the real app on port 0.

use crate::config::Settings;
use crate::source;
use anyhow::Context;

/// `metatiled migrate`: apply the migrations and report what was done.
pub async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let pool = source::build_pool(&settings.database).await?;
    let report = source::run_migrations(&pool).await?;
    if report.applied.is_empty() {
        tracing::info!("database schema is up to date; nothing to apply");
    } else {
        tracing::info!(applied = ?report.applied, "applied migrations");
    }
    Ok(())
}

/// `metatiled serve`: run until SIGINT/SIGTERM.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let pool = source::build_pool(&settings.database).await?;
    if settings.database.migrate_on_start {
        source::run_migrations(&pool).await?;
    }
    let server = crate::http::public_server(&settings, pool)
        .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
    tracing::info!(listen = %settings.server.listen, "serving");
    server.await?;
    Ok(())
}
