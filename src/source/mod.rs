//! PostGIS: the connection pool, migrations, one query per style layer per metatile
//! (`postgis`, which owns the bind order of the style placeholders), the change log
//! and its triggers (`changes`), the fleet's bookkeeping: nodes, cursors, the expiry
//! log and render locks (`fleet`), and the database's health (`health`: fail fast while
//! it is down, probe until it is back). The only module that runs SQL.

pub mod changes;
pub mod fleet;
pub mod health;
mod migrate;
mod pool;
mod postgis;

pub use health::{SourceHealth, Unavailable};
pub use migrate::{run_migrations, MigrationReport};
pub use pool::{
    build_pool, connect_config, data_extent, describe_target, DatabaseSettings, DbClient, DbError,
    DbPool, DbUrlError, ImportInfo,
};
pub use postgis::{
    query_bbox, AttributeValue, Feature, FetchTimings, LayerData, MetatileData, PostgisSource,
    RawMetatile, SourceError,
};
