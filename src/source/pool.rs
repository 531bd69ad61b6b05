//! The deadpool-postgres pool and database facts the server advertises.

use crate::config::DatabaseSettings;
use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod, Runtime, Timeouts};
use std::time::{Duration, SystemTime};
use thiserror::Error;
use tokio_postgres::NoTls;

pub type Pool = deadpool_postgres::Pool;

#[derive(Debug, Error)]
pub enum DbError {
    #[error(
        "no database URL: set database.url, METATILED_DATABASE_URL, DATABASE_URL or --database-url"
    )]
    NoUrl,
    #[error("invalid database URL: {0}")]
    BadUrl(String),
    #[error("cannot connect to PostgreSQL at {target}: {cause}")]
    Connect { target: String, cause: String },
    #[error("database error: {0}")]
    Query(String),
}

/// Flattens an error and its sources into one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        cur = s.source();
    }
    out.replace('\n', " ")
}

/// `host:port/dbname as user` for messages (never the password).
pub fn describe_target(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port}/{} as {}",
        config.get_dbname().unwrap_or("?"),
        config.get_user().unwrap_or("?")
    )
}

/// Builds the pool and opens one connection, so a wrong URL fails at start with the host
/// named, not at the first tile request.
pub async fn build_pool(settings: &DatabaseSettings) -> Result<Pool, DbError> {
    let url = settings.url.as_deref().ok_or(DbError::NoUrl)?;
    let mut pg: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| DbError::BadUrl(chain(&e)))?;
    pg.connect_timeout(Duration::from_millis(settings.connect_timeout_ms));
    pg.application_name("metatiled");
    pg.options(format!(
        "-c statement_timeout={}",
        settings.statement_timeout_ms
    ));
    let target = describe_target(&pg);
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let wait = Duration::from_millis(settings.connect_timeout_ms);
    let pool = Pool::builder(manager)
        .max_size(settings.pool_size)
        .runtime(Runtime::Tokio1)
        .timeouts(Timeouts {
            wait: Some(wait),
            create: Some(wait),
            recycle: Some(wait),
        })
        .build()
        .map_err(|e| DbError::BadUrl(e.to_string()))?;
    let client = pool.get().await.map_err(|e| DbError::Connect {
        target: target.clone(),
        cause: chain(&e),
    })?;
    client
        .simple_query("SELECT 1")
        .await
        .map_err(|e| DbError::Connect {
            target,
            cause: chain(&e),
        })?;
    Ok(pool)
}

/// What `scripts/setup` recorded about the imported data.
#[derive(Debug, Clone)]
pub struct ImportInfo {
    pub source_file: String,
    pub imported_at: SystemTime,
    /// minlon, minlat, maxlon, maxlat in degrees.
    pub bounds: [f64; 4],
}

impl ImportInfo {
    /// Reads `metatiled.import_info`; `None` when the table or the row is missing.
    pub async fn load(pool: &Pool) -> Result<Option<Self>, DbError> {
        let client = pool.get().await.map_err(|e| DbError::Query(chain(&e)))?;
        let exists = client
            .query_one(
                "SELECT to_regclass('metatiled.import_info') IS NOT NULL",
                &[],
            )
            .await
            .map_err(|e| DbError::Query(chain(&e)))?;
        if !exists.get::<_, bool>(0) {
            return Ok(None);
        }
        let row = client
            .query_opt(
                "SELECT source_file, extract(epoch from imported_at)::float8, minlon, minlat, maxlon, maxlat \
                 FROM metatiled.import_info LIMIT 1",
                &[],
            )
            .await
            .map_err(|e| DbError::Query(chain(&e)))?;
        Ok(row.map(|r| {
            let epoch: f64 = r.get(1);
            ImportInfo {
                source_file: r.get(0),
                imported_at: SystemTime::UNIX_EPOCH + Duration::from_secs_f64(epoch.max(0.0)),
                bounds: [r.get(2), r.get(3), r.get(4), r.get(5)],
            }
        }))
    }
}
