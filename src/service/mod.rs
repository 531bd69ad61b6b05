//! HTTP-free use cases: everything the server does, behind the HTTP layer and beside
//! the command line.
//!
//! - [`TileService`]: the request flow behind every tile URL (memory -> disk ->
//!   single-flight render), generic over its render backend.
//! - `backend`: [`MetatileBackend`], what one render job does (query, decode, paint,
//!   encode, store).
//! - [`fault`]: failures caused outside the server (database, disk, permissions), told
//!   apart from bugs.
//! - [`expiry`]: the server's expiry target (cache, memory layer, bulk re-renders).
//! - [`export`]: an area's tiles into an MBTiles or PMTiles file (CLI and admin jobs).
//! - [`seed`]: pre-rendering an area and zoom range through the render pool.
//! - [`jobs`]: long admin work as jobs: progress, cancellation, a bounded registry.
//! - [`admin`]: the admin API's requests, answered now or as jobs.
//! - [`metrics`]: the Prometheus series.
//! - [`access`]: API keys and allowed origins of styles.
//! - [`limits`]: per-client budgets of requests and renders caused, the node's render
//!   ceiling.
//! - [`placeholder`]: an ancestor scaled up, for a miss that cannot be rendered now.
//! - [`quota`]: the disk quota's background sweep (least recently served first).
//! - [`reload`]: style hot reload: refuse what fails, keep serving, versions.

pub mod access;
pub mod admin;
mod backend;
pub mod expiry;
pub mod export;
pub mod fault;
pub mod jobs;
pub mod limits;
pub mod metrics;
pub mod placeholder;
pub mod quota;
pub mod reload;
pub mod seed;
mod tiles;

pub use backend::MetatileBackend;
pub use fault::Fault;
pub use metrics::Metrics;
pub use tiles::{ServedTile, ServiceError, ServiceOptions, TileService};
