//! Applies `migrations/` (embedded at build time) with refinery. The history table lives
//! in the `metatiled` schema, next to everything else the server owns.

use super::pool::{DbError, DbPool};

/// Advisory lock held while migrating ("mtmg"): nodes of a fleet that start together
/// migrate one after the other, and the later ones find nothing left to do.
const MIGRATION_LOCK: i64 = 0x6d74_6d67;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Names of the migrations applied by this run (empty when already up to date).
    pub applied: Vec<String>,
}

pub async fn run_migrations(pool: &DbPool) -> Result<MigrationReport, DbError> {
    let mut client = pool.get().await.map_err(DbError::Pool)?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(DbError::Query)?;
    let result = migrate(&mut client).await;
    // Released with the session anyway if this fails; the connection goes back to the
    // pool, so release it here.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(DbError::Query);
    let report = result?;
    unlocked?;
    Ok(report)
}

async fn migrate(client: &mut tokio_postgres::Client) -> Result<MigrationReport, DbError> {
    client
        .batch_execute("CREATE SCHEMA IF NOT EXISTS metatiled")
        .await
        .map_err(DbError::Query)?;
    let mut runner = embedded::migrations::runner()
        // A database already migrated by a newer metatiled (rolling upgrade, or two
        // versions sharing a database) is not a reason to refuse to start.
        .set_abort_missing(false);
    runner.set_migration_table_name("metatiled.schema_history");
    let report = runner.run_async(client).await.map_err(DbError::Migration)?;
    Ok(MigrationReport {
        applied: report
            .applied_migrations()
            .iter()
            .map(|m| format!("V{}__{}", m.version(), m.name()))
            .collect(),
    })
}
