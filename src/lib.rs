//! metatiled: a render-on-miss raster tile server with a mod_tile-compatible cache.
//!
//! A web map asks for `/{style}/{z}/{x}/{y}.png`. The request is parsed and validated,
//! then answered from the in-memory tile cache, else from the on-disk metatile cache
//! (8x8 tiles per `.meta` file, byte-compatible with mod_tile/renderd), else the
//! metatile is queued for rendering: one PostGIS query per style layer over the
//! metatile plus a buffer, painted whole with tiny-skia, cut into 64 PNG tiles, written
//! atomically, and every waiting request is answered from the result.
//!
//! # Layout
//! - [`tile`]: tile and metatile coordinates, Web Mercator math. Pure.
//! - [`config`]: settings layered from defaults, file, environment and flags.
//! - [`cli`]: the command line.
//! - [`source`]: PostgreSQL pool, migrations, layer queries. The only module with SQL.
//! - [`cache`]: the mod_tile-compatible metatile cache on disk and the memory layer.
//! - [`expire`]: `z/x/y` tile lists to metatile actions (render_expired semantics).
//! - [`style`]: style files (`styles/*.toml`) -> validated [`style::Style`]s.
//! - [`render`]: features -> tiny-skia pixmap of a whole metatile -> 64 PNG tiles.
//! - [`expiry`]: the server-side expiry target (cache + memory + bulk re-renders).
//! - [`jobs`]: long admin work as jobs: progress, cancellation, a bounded registry.
//! - [`admin`]: the admin API's domain: expiry and seed requests, now or as jobs.
//! - [`watch`]: freshness from the database: change triggers, `metatiled watch`, and the
//!   listener that expires the metatiles of changed rows.
//! - [`queue`]: the bounded render pool: priorities, single flight, backpressure.
//! - [`service`]: `TileService`, the request flow (memory -> disk -> single-flight render).
//! - [`seed`]: pre-rendering an area (bbox or polygon) and zoom range through the render pool.
//! - [`metrics`]: the Prometheus series.
//! - [`text`]: labels: fonts, shaping, glyph outlines with halos, collision-free
//!   placement of point and line labels on a metatile canvas.
//! - [`app`]: the composition root that builds everything `serve` runs.
//! - [`http`]: actix-web handlers; the only module that knows about HTTP.

pub mod admin;
pub mod app;
pub mod cache;
pub mod cli;
pub mod config;
pub mod expire;
pub mod expiry;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod queue;
pub mod render;
pub mod seed;
pub mod service;
pub mod source;
pub mod style;
pub mod text;
pub mod tile;
pub mod watch;
