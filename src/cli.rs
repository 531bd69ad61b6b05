//! The command line (clap): subcommands of the DESIGN.md contract and the flags every
//! subcommand shares. Parsing only; `main` dispatches and `config` layers the flags.

use crate::config::Override;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "metatiled",
    version,
    about = "A render-on-miss raster tile server with a mod_tile-compatible metatile cache",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve tiles over HTTP (public listener) and the admin API (admin listener).
    Serve(ServeArgs),
    /// Pre-render the metatiles of a bbox and zoom range (like renderd's render_list).
    Seed(SeedArgs),
    /// Expire metatiles from `z/x/y` lines on stdin (or a --bbox or --polygon), offline
    /// (like render_expired).
    Expire(ExpireArgs),
    /// Apply the server's database migrations (`migrations/`).
    Migrate(CommonArgs),
    /// Inspect the on-disk metatile cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Install change-tracking triggers on the tables a style reads.
    Watch(WatchArgs),
    /// Remove the change-tracking triggers.
    Unwatch(WatchArgs),
}

/// Flags shared by every subcommand that touches the database, the styles or the cache.
#[derive(Debug, Args, Clone, Default)]
pub struct CommonArgs {
    /// TOML configuration file (see metatiled.toml).
    #[arg(long, short = 'c', env = "METATILED_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// PostgreSQL URL; overrides the file and METATILED_DATABASE_URL / DATABASE_URL.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Folder of style files.
    #[arg(long, value_name = "DIR")]
    pub styles_dir: Option<PathBuf>,
    /// Root of the metatile cache.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Print the effective configuration (after all layers) as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

impl CommonArgs {
    pub fn overrides(&self) -> Vec<Override> {
        let mut out = Vec::new();
        push(
            &mut out,
            "database.url",
            "--database-url",
            self.database_url.clone(),
        );
        push(
            &mut out,
            "styles.dir",
            "--styles-dir",
            self.styles_dir.as_ref().map(|p| p.display().to_string()),
        );
        push(
            &mut out,
            "cache.dir",
            "--cache-dir",
            self.cache_dir.as_ref().map(|p| p.display().to_string()),
        );
        out
    }
}

fn push(out: &mut Vec<Override>, key: &str, flag: &str, value: Option<String>) {
    if let Some(value) = value {
        out.push(Override {
            key: key.into(),
            value,
            origin: flag.into(),
        });
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Public listen address.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Admin listen address (keep it private).
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
}

impl ServeArgs {
    pub fn overrides(&self) -> Vec<Override> {
        let mut out = self.common.overrides();
        push(
            &mut out,
            "server.listen",
            "--listen",
            self.listen.map(|a| a.to_string()),
        );
        push(
            &mut out,
            "admin.listen",
            "--admin-listen",
            self.admin_listen.map(|a| a.to_string()),
        );
        out
    }
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Style to render.
    #[arg(long)]
    pub style: String,
    /// MINLON,MINLAT,MAXLON,MAXLAT in degrees; default: the imported data's bounds.
    #[arg(long, allow_hyphen_values = true)]
    pub bbox: Option<String>,
    /// GeoJSON file with a Polygon or MultiPolygon (EPSG:4326) instead of a bbox.
    #[arg(long, value_name = "FILE", conflicts_with = "bbox")]
    pub polygon: Option<PathBuf>,
    /// Zoom range, `A-B` or a single zoom.
    #[arg(long)]
    pub zoom: String,
    /// Render threads (default: render.threads).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Re-render metatiles that are already fresh in the cache.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ExpireArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Style whose cache to expire.
    #[arg(long)]
    pub style: String,
    /// Expire a MINLON,MINLAT,MAXLON,MAXLAT box (degrees) instead of reading stdin.
    #[arg(long, allow_hyphen_values = true)]
    pub bbox: Option<String>,
    /// Expire what a GeoJSON Polygon or MultiPolygon (EPSG:4326) file covers instead of
    /// reading stdin.
    #[arg(long, value_name = "FILE", conflicts_with = "bbox")]
    pub polygon: Option<PathBuf>,
    /// Lowest zoom to act on.
    #[arg(long, default_value_t = 0)]
    pub min_zoom: u8,
    /// Highest zoom to act on (input tiles are carried to it).
    #[arg(long, default_value_t = 18)]
    pub max_zoom: u8,
    /// Delete metatiles at this zoom and above.
    #[arg(long)]
    pub delete_from: Option<u8>,
    /// Mark metatiles dirty at this zoom and above (below delete-from).
    #[arg(long)]
    pub touch_from: Option<u8>,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Print a `.meta` file's header and index.
    Inspect {
        /// The `.meta` file.
        file: PathBuf,
    },
    /// Count metatiles and bytes per zoom.
    Stats {
        #[command(flatten)]
        common: CommonArgs,
        /// Only this style.
        #[arg(long)]
        style: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Style whose tables to watch (default: every style; `unwatch` without a style
    /// or tables removes the triggers from every table that has them).
    #[arg(long)]
    pub style: Option<String>,
    /// Explicit tables (`table` or `schema.table`) instead of the ones the style reads.
    #[arg(long, value_delimiter = ',')]
    pub tables: Vec<String>,
}
