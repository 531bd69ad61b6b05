//! The typed settings and their defaults. Every section denies unknown keys, so a typo in
//! the file is an error naming the key, not a silently ignored line.

use crate::render::PngMode;
use serde::{Deserialize, Serialize};

pub use crate::cache::CacheSettings;
pub use crate::fleet::{FleetSettings, NodeSettings};
pub use crate::purge::PurgeSettings;
pub use crate::source::DatabaseSettings;
pub use crate::watch::WatchSettings;
use ipnet::IpNet;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub cache: CacheSettings,
    pub render: RenderSettings,
    pub styles: StylesSettings,
    pub admin: AdminSettings,
    pub watch: WatchSettings,
    pub export: ExportSettings,
    pub limits: LimitsSettings,
    pub access: AccessSettings,
    pub purge: PurgeSettings,
    pub node: NodeSettings,
    pub fleet: FleetSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ExportSettings {
    /// Where `POST /export` (admin) writes its MBTiles and PMTiles files.
    pub dir: PathBuf,
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("exports"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Public listener (tiles, TileJSON, viewer, health, metrics).
    pub listen: SocketAddr,
    /// Base of every URL the server writes (TileJSON, viewer), e.g.
    /// `https://tiles.example.com`; unset = from the request (its `Host`, or the
    /// forwarded host and scheme of a trusted proxy).
    pub public_url: Option<String>,
    /// Peers (CIDRs) whose `Forwarded` / `X-Forwarded-*` headers are believed; none by
    /// default, loopback included.
    pub trusted_proxies: Vec<IpNet>,
    /// PEM certificate chain and private key: with both, the public listener speaks TLS
    /// (ALPN h2 and http/1.1) instead of plain HTTP (h2c prior knowledge and HTTP/1.1).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// HTTP worker threads; 0 = two per core.
    pub workers: usize,
    /// Value of `Access-Control-Allow-Origin` on public responses; empty = no header.
    pub cors_origin: String,
    /// How long a client waits for a missing tile before a 503 + Retry-After.
    pub miss_timeout_secs: u64,
    /// `max-age` of a stale tile served while it is re-rendered.
    pub stale_max_age_secs: u64,
    /// Seconds in `Retry-After` on a 503.
    pub retry_after_secs: u64,
    /// `max-age` of a placeholder (an ancestor tile scaled up) sent instead of a 503 by
    /// styles with `placeholder = true`.
    pub placeholder_max_age_secs: u64,
    /// Seconds to finish in-flight requests and renders on SIGTERM/SIGINT.
    pub shutdown_timeout_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            trusted_proxies: Vec::new(),
            tls_cert: None,
            tls_key: None,
            workers: 0,
            cors_origin: "*".into(),
            miss_timeout_secs: 10,
            stale_max_age_secs: 60,
            retry_after_secs: 2,
            placeholder_max_age_secs: 10,
            shutdown_timeout_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RenderSettings {
    /// Render threads; 0 = one per core.
    pub threads: usize,
    /// Queue capacity for renders a client is waiting for.
    pub queue_interactive: usize,
    /// Queue capacity for re-renders of stale tiles that were served.
    pub queue_stale: usize,
    /// Queue capacity for seeding and admin re-renders.
    pub queue_bulk: usize,
    /// PNG flavour: "palette" (8-bit, like Mapnik's png256) or "rgba".
    pub png: PngMode,
    /// Font files and folders for labels, in fallback order; empty = the text engine's
    /// defaults (`crate::text::DEFAULT_FONT_PATHS`: DejaVu Sans, then Noto).
    pub fonts: Vec<PathBuf>,
}

impl RenderSettings {
    /// Loads the fonts of `fonts` (or the defaults): once per process, at start.
    pub fn load_fonts(&self) -> Result<crate::text::FontSet, crate::text::TextError> {
        let fonts = if self.fonts.is_empty() {
            crate::text::FontSet::system_default()?
        } else {
            crate::text::FontSet::load(&self.fonts)?
        };
        tracing::info!(faces = fonts.len(), "loaded fonts for labels");
        Ok(fonts)
    }
}

impl Default for RenderSettings {
    fn default() -> Self {
        Self {
            threads: 0,
            queue_interactive: 64,
            queue_stale: 256,
            queue_bulk: 1024,
            png: PngMode::Palette,
            fonts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StylesSettings {
    /// Folder of style files (`*.toml`), one per style.
    pub dir: PathBuf,
    /// Reload the styles when a file in `dir` changes (checked every 2 s). SIGHUP and
    /// the admin `POST /styles/reload` reload them whatever this says.
    pub watch: bool,
}

impl Default for StylesSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("styles"),
            watch: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Admin listener (expire, seed, jobs, status); never the public one.
    pub listen: SocketAddr,
    /// Bearer token required on every admin request when set.
    pub token: Option<String>,
    /// Largest accepted request body (text tile lists stream under it).
    pub max_body_bytes: usize,
    /// Largest accepted JSON body: held whole while it is parsed.
    pub max_json_bytes: usize,
    /// Most quadtree squares one input may name, and all inputs held at once by admin
    /// requests and jobs (~30 bytes each).
    pub max_area_squares: usize,
    /// Jobs queued or running at once; more are refused (503).
    pub max_active_jobs: usize,
    /// Finished jobs remembered by `GET /jobs`, the most recent ones...
    pub jobs_kept: usize,
    /// ...for at most this many seconds after they ended.
    pub jobs_kept_secs: u64,
}

impl Default for AdminSettings {
    /// The same defaults as the admin service's own (`service::admin`,
    /// `service::jobs::JobLimits`); `app` checks they agree.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            token: None,
            max_body_bytes: 64 * 1024 * 1024,
            max_json_bytes: 16 * 1024 * 1024,
            max_area_squares: 2_000_000,
            max_active_jobs: 32,
            jobs_kept: 100,
            jobs_kept_secs: 24 * 3600,
        }
    }
}

/// `[limits]`: what one client may cost, and the node's render ceiling. Budgets are
/// token buckets (GCRA): a burst, refilled at a steady rate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSettings {
    /// Off = no budget is checked (the node ceiling included).
    pub enabled: bool,
    /// Tile requests per second per client, sustained.
    pub requests_per_second: u32,
    /// Tile requests a client may make at once before the rate applies.
    pub request_burst: u32,
    /// Renders a client may cause per minute, sustained (hits cost none).
    pub renders_per_minute: u32,
    /// Renders a client may cause at once.
    pub render_burst: u32,
    /// Renders this node starts per second, all clients together; 0 = no ceiling.
    pub node_renders_per_second: u32,
    /// Clients (CIDRs, after trusted proxies) that no budget applies to.
    pub exempt: Vec<IpNet>,
    /// API keys that no budget applies to.
    pub exempt_keys: Vec<String>,
    /// Clients tracked at most; beyond, idle ones are dropped first, then all.
    pub max_clients: usize,
}

impl Default for LimitsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            requests_per_second: 100,
            request_burst: 1000,
            renders_per_minute: 120,
            render_burst: 100,
            node_renders_per_second: 100,
            exempt: Vec::new(),
            exempt_keys: Vec::new(),
            max_clients: 200_000,
        }
    }
}

/// `[access]`: API keys for the styles that require them (`access.key = "required"` in
/// the style file).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AccessSettings {
    /// A file of API keys, one per line: `KEY [style,style...]` (no styles = every
    /// style); `#` starts a comment. Re-read when it changes.
    pub keys_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// A tracing filter such as "info" or "metatiled=debug,actix_web=info"; `RUST_LOG` wins.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}
