//! The deadpool-postgres pool and database facts the server advertises.

use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod, Runtime, Timeouts};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};
use thiserror::Error;
use tokio_postgres::NoTls;

/// Unanswered keepalive probes before a connection is given up.
const KEEPALIVE_RETRIES: u32 = 3;

/// The pool of database connections (as opposed to the render pool).
pub type DbPool = deadpool_postgres::Pool;
/// A connection taken from a [`DbPool`] (back to the pool when dropped).
pub type DbClient = deadpool_postgres::Object;

/// The database URL is missing or does not parse (every connection of the server reads
/// the same one).
#[derive(Debug, Error)]
pub enum DbUrlError {
    #[error(
        "no database URL: set database.url, METATILED_DATABASE_URL, DATABASE_URL or --database-url"
    )]
    Missing,
    #[error("invalid database URL")]
    Invalid(#[source] tokio_postgres::Error),
}

#[derive(Debug, Error)]
pub enum DbError {
    #[error(transparent)]
    Url(#[from] DbUrlError),
    #[error("cannot build the connection pool")]
    Build(#[source] deadpool_postgres::BuildError),
    #[error("cannot connect to PostgreSQL at {target}")]
    Connect {
        target: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("no database connection")]
    Pool(#[source] deadpool_postgres::PoolError),
    #[error("database query failed")]
    Query(#[source] tokio_postgres::Error),
    #[error("a migration failed")]
    Migration(#[source] refinery::Error),
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

/// The connection settings of the pool's connections.
pub fn connect_config(settings: &DatabaseSettings) -> Result<tokio_postgres::Config, DbError> {
    // NOTICEs (e.g. "schema already exists, skipping") are not worth a log line.
    Ok(session_config(settings, "metatiled", "warning")?)
}

/// The settings every database connection of the server uses, the pool's and those
/// outside it (the change feed, the fleet's render locks): the URL, the connect and
/// statement timeouts, TCP keepalives (so a peer that vanished is noticed in seconds,
/// not hours), its `application_name` and the least severe message it is sent.
pub(crate) fn session_config(
    settings: &DatabaseSettings,
    application_name: &str,
    client_min_messages: &str,
) -> Result<tokio_postgres::Config, DbUrlError> {
    let url = settings.url.as_deref().ok_or(DbUrlError::Missing)?;
    let mut pg: tokio_postgres::Config = url.parse().map_err(DbUrlError::Invalid)?;
    pg.connect_timeout(Duration::from_millis(settings.connect_timeout_ms));
    pg.application_name(application_name);
    pg.options(format!(
        "-c statement_timeout={} -c client_min_messages={client_min_messages}",
        settings.statement_timeout_ms
    ));
    set_keepalives(&mut pg, settings);
    Ok(pg)
}

/// TCP keepalives per `database.keepalive_secs` (the operating system's when it is 0).
fn set_keepalives(pg: &mut tokio_postgres::Config, settings: &DatabaseSettings) {
    if settings.keepalive_secs > 0 {
        let idle = Duration::from_secs(settings.keepalive_secs);
        let interval = Duration::from_secs((settings.keepalive_secs / 3).max(1));
        pg.keepalives(true)
            .keepalives_idle(idle)
            .keepalives_interval(interval)
            .keepalives_retries(KEEPALIVE_RETRIES)
            // Data sent but never acknowledged (a peer that vanished mid-query) ends the
            // connection after as long as an idle one takes to be given up.
            .tcp_user_timeout(idle + interval * KEEPALIVE_RETRIES);
    }
}

/// Builds the pool and opens one connection, so a wrong URL fails at start with the host
/// named, not at the first tile request.
pub async fn build_pool(settings: &DatabaseSettings) -> Result<DbPool, DbError> {
    let pg = connect_config(settings)?;
    let target = describe_target(&pg);
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let wait = Duration::from_millis(settings.connect_timeout_ms);
    let pool = DbPool::builder(manager)
        .max_size(settings.pool_size)
        .runtime(Runtime::Tokio1)
        .timeouts(Timeouts {
            wait: Some(wait),
            create: Some(wait),
            recycle: Some(wait),
        })
        .build()
        .map_err(DbError::Build)?;
    let client = pool.get().await.map_err(|e| DbError::Connect {
        target: target.clone(),
        source: Box::new(e),
    })?;
    client
        .simple_query("SELECT 1")
        .await
        .map_err(|e| DbError::Connect {
            target,
            source: Box::new(e),
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
    pub async fn load(pool: &DbPool) -> Result<Option<Self>, DbError> {
        let client = pool.get().await.map_err(DbError::Pool)?;
        let exists = client
            .query_one(
                "SELECT to_regclass('metatiled.import_info') IS NOT NULL",
                &[],
            )
            .await
            .map_err(DbError::Query)?;
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
            .map_err(DbError::Query)?;
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

/// The extent of the imported data in degrees (minlon, minlat, maxlon, maxlat), from
/// the planner's statistics of the osm2pgsql tables (`ST_EstimatedExtent`: no table
/// scan, so it is instant on a planet too); `None` when no table has statistics.
pub async fn data_extent(pool: &DbPool) -> Result<Option<[f64; 4]>, DbError> {
    let client = pool.get().await.map_err(DbError::Pool)?;
    let row = client
        .query_opt(
            "WITH e AS ( \
               SELECT ST_EstimatedExtent('public', t, 'way')::geometry AS box \
               FROM unnest(ARRAY['planet_osm_polygon', 'planet_osm_line', 'planet_osm_point']) AS t \
               WHERE to_regclass('public.' || t) IS NOT NULL \
             ), u AS ( \
               SELECT ST_Transform(ST_SetSRID(ST_Extent(box)::geometry, 3857), 4326) AS g FROM e \
             ) \
             SELECT ST_XMin(g), ST_YMin(g), ST_XMax(g), ST_YMax(g) FROM u WHERE g IS NOT NULL",
            &[],
        )
        .await
        .map_err(DbError::Query)?;
    Ok(
        row.and_then(|r| match [r.get(0), r.get(1), r.get(2), r.get(3)] {
            [Some(a), Some(b), Some(c), Some(d)] => Some([a, b, c, d]),
            _ => None,
        }),
    )
}

/// The `[database]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://user:password@host:port/dbname`; `DATABASE_URL` is used when unset.
    pub url: Option<String>,
    /// Connections in the pool; keep it >= render threads.
    pub pool_size: usize,
    /// Per-query time limit (PostgreSQL `statement_timeout`).
    pub statement_timeout_ms: u64,
    /// Time limit for opening a connection or waiting for a free one. A database that
    /// does not answer is also detected within it (see `source::health`).
    pub connect_timeout_ms: u64,
    /// TCP keepalive: an idle connection is checked after this many seconds and given up
    /// after three unanswered checks (a third of it apart); 0 = the system's defaults.
    pub keepalive_secs: u64,
    /// While the database is unavailable it is probed after 100 ms, then at doubling
    /// intervals up to this many milliseconds.
    pub probe_interval_max_ms: u64,
    /// Apply `migrations/` when `serve` starts.
    pub migrate_on_start: bool,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: 8,
            statement_timeout_ms: 30_000,
            connect_timeout_ms: 5_000,
            keepalive_secs: 10,
            probe_interval_max_ms: 1_000,
            migrate_on_start: true,
        }
    }
}
