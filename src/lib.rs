//! metatiled: a render-on-miss raster tile server with a mod_tile-compatible cache.
//!
//! A web map asks for `/{style}/{z}/{x}/{y}.png`. The request is parsed and validated,
//! then answered from the in-memory tile cache, else from the on-disk metatile cache
//! (8x8 tiles per `.meta` file, byte-compatible with mod_tile/renderd), else the
//! metatile is queued for rendering: one PostGIS query per style layer over the
//! metatile plus a buffer, painted whole with tiny-skia, cut into 64 PNG tiles, written
//! atomically, and every waiting request is answered from the result.
//!
//! # Where a tile request goes
//! 1. `http/mod.rs` splits the raw path ([`http`]'s `PublicPath`); `http/tiles.rs`
//!    parses it into a style name and a [`tile::TileCoord`].
//! 2. `service/tiles.rs`: [`service::TileService::get_tile`] checks the style's zooms
//!    and asks the cache.
//! 3. `cache/mod.rs`: [`cache::TileCache::lookup`], memory (`cache/memory.rs`) then the
//!    `.meta` file (`cache/disk.rs`, `cache/format.rs`); fresh or stale by mtime
//!    (`cache/freshness.rs`).
//! 4. On a miss, `queue/pool.rs` queues the metatile (or joins its job) and waits.
//! 5. `service/backend.rs` runs the job: `source/postgis.rs` queries, then on a render
//!    thread decodes, `render/` paints and encodes, `cache/disk.rs` writes atomically.
//! 6. Back in `http/tiles.rs`: 200 or 304 with cache headers; `http/error.rs` decides
//!    every other status.
//!
//! A `.grid.json` URL takes the same path through the `<style>@grid` tree (the grids
//! are written by the style's own render). A composite style's render blends its
//! inputs' tiles (`render/blend.rs`), rendering inputs that are missing or stale first.
//! An archive-backed style's tiles come from memory, else from its MBTiles or PMTiles
//! file ([`archive`]); nothing is rendered.
//!
//! # Layout
//! Dependencies run one way: `main -> cli -> app -> http -> service -> {watch, fleet,
//! expire, purge, queue, render, source, cache, style, area, text} -> {archive, tile, errors}`
//! (checked by `tests/layering.rs`).
//! - [`cli`]: the command line (argument parsing), one file per subcommand, exit codes.
//! - [`app`]: the composition root that builds everything `serve` runs.
//! - [`config`]: settings layered from defaults, file, environment and flags.
//! - [`http`]: actix-web handlers and listeners; the only module that knows HTTP.
//! - [`service`]: HTTP-free use cases: the tile service, render backend, admin API,
//!   jobs, seeding, expiry in the server, metrics.
//! - [`watch`]: freshness from the database: change triggers and the listener that
//!   expires the metatiles of changed rows.
//! - [`fleet`]: several nodes as one service through the shared PostgreSQL: node
//!   registry, expiries for every node, render locks for a shared cache, draining,
//!   the HAProxy configuration.
//! - [`expire`]: what to do with existing metatiles (render_expired semantics).
//! - [`purge`]: telling caches downstream (Varnish, CDNs, webhooks) what changed.
//! - [`queue`]: the bounded render pool: priorities, single flight, backpressure.
//! - [`render`]: features -> tiny-skia pixmap of a whole metatile -> 64 PNG tiles.
//! - [`source`]: PostgreSQL pool, migrations, layer queries, change log. The only SQL.
//! - [`cache`]: the mod_tile-compatible metatile cache on disk and the memory layer.
//! - [`style`]: style files (`styles/*.toml`) -> validated [`style::Style`]s.
//! - [`archive`]: MBTiles and PMTiles files, read and written tile by tile (the only
//!   SQLite); what exports write and archive-backed styles serve.
//! - [`area`]: tile lists, bboxes and GeoJSON areas, and the metatiles they name.
//! - [`text`]: labels: fonts, shaping, glyph outlines with halos, collision-free
//!   placement of point and line labels on a metatile canvas.
//! - [`tile`]: tile and metatile coordinates, Web Mercator math, zoom ranges. Pure.
//! - [`errors`]: an error and its causes as one line of text, for logs and messages.

pub mod app;
pub mod archive;
pub mod area;
pub mod cache;
pub mod cli;
pub mod config;
pub mod errors;
pub mod expire;
pub mod fleet;
pub(crate) mod http;
pub mod purge;
pub(crate) mod queue;
pub mod render;
pub mod service;
pub mod source;
pub mod style;
pub mod text;
pub mod tile;
pub(crate) mod watch;
