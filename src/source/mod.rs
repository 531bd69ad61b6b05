//! PostGIS: the connection pool, migrations, and (in `postgis`) one query per style
//! layer per metatile. The only module that runs SQL.

mod migrate;
mod pool;
mod postgis;

pub use migrate::{run_migrations, MigrationReport};
pub use pool::{build_pool, describe_target, DbError, ImportInfo, Pool};
pub use postgis::{
    query_bbox, Feature, FetchTimings, LayerData, MetatileData, PostgisSource, SourceError,
};
