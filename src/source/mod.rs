//! PostGIS: the connection pool, migrations, and (in `postgis`) one query per style
//! layer per metatile, and (in `changes`) the change log and its triggers. The only module
//! that runs SQL.

pub mod changes;
mod migrate;
mod pool;
mod postgis;

pub use migrate::{run_migrations, MigrationReport};
pub use pool::{build_pool, describe_target, DbError, ImportInfo, Pool};
pub use postgis::{
    query_bbox, Feature, FetchTimings, LayerData, MetatileData, PostgisSource, SourceError,
};
