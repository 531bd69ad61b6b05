//! The command line: clap arguments of the DESIGN.md contract, one file per
//! subcommand, usage errors and exit codes, progress output. The only layer that
//! knows clap; [`run`] is all `main` calls.
//!
//! Values are parsed once here, into the library's types (`StyleName`, `ZoomRange`,
//! `LonLatBbox`): a bad one stops the program with exit code 2 and one line.

mod area;
mod cache;
mod expire;
mod export;
mod fleet;
mod progress;
mod seed;
mod serve;
mod watch;

use crate::archive::ArchiveFormat;
use crate::config::{self, ConfigSources, Loaded, Override, UsageError};
use crate::tile::{StyleName, ZoomRange};
use area::AreaArgs;
use clap::{Args, Parser, Subcommand};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code for bad usage or configuration, as clap uses for bad arguments.
const EXIT_USAGE: u8 = 2;
/// Exit code for failures at run time (database down, disk full, ...).
const EXIT_FAILURE: u8 = 1;

/// Parses the command line, loads the configuration, starts tracing and runs one
/// subcommand. 0 on success, 2 on bad usage or configuration (one line on stderr), 1
/// on a failure at run time.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return bad_arguments(e),
    };
    match cli.command {
        Command::Serve(args) => with_config(&args.common, args.overrides(), |loaded| {
            run_async(serve::serve(loaded.settings))
        }),
        Command::Migrate(common) => with_config(&common, common.overrides(), |loaded| {
            run_async(serve::migrate(loaded.settings))
        }),
        Command::Seed(args) => {
            let common = args.common.clone();
            with_config(&common, common.overrides(), |loaded| {
                run_async(seed::run(loaded.settings, args))
            })
        }
        Command::Export(args) => {
            let common = args.common.clone();
            with_config(&common, common.overrides(), |loaded| {
                run_async(export::run(loaded.settings, args))
            })
        }
        Command::Expire(args) => match expire::ExpireCommand::from_args(&args) {
            Ok(cmd) => with_config(&args.common, args.common.overrides(), |loaded| {
                Ok(cmd.run(&loaded.settings)?)
            }),
            Err(e) => usage_error("expire", &e),
        },
        Command::Cache(CacheCommand::Inspect { file }) => finish(cache::inspect(&file)),
        Command::Cache(CacheCommand::Stats { common, style }) => {
            with_config(&common, common.overrides(), |loaded| {
                cache::stats(&loaded.settings, style.as_ref())
            })
        }
        Command::Watch(args) => with_config(&args.common, args.common.overrides(), |loaded| {
            run_async(watch::watch(loaded.settings, &args))
        }),
        Command::Unwatch(args) => with_config(&args.common, args.common.overrides(), |loaded| {
            run_async(watch::unwatch(loaded.settings, &args))
        }),
        Command::Fleet(FleetCommand::HaproxyConfig(args)) => finish(fleet::haproxy_config(*args)),
        Command::Fleet(FleetCommand::Status(common)) => {
            with_config(&common, common.overrides(), |loaded| {
                run_async(fleet::status(loaded.settings))
            })
        }
        Command::Fleet(FleetCommand::Forget { common, node }) => {
            with_config(&common, common.overrides(), |loaded| {
                run_async(fleet::forget(loaded.settings, &node))
            })
        }
    }
}

/// Loads the configuration (exit 2 on error), handles `--print-config`, starts tracing
/// and runs `f`.
fn with_config(
    common: &CommonArgs,
    flags: Vec<Override>,
    f: impl FnOnce(Loaded) -> anyhow::Result<()>,
) -> ExitCode {
    let loaded = match config::load(&ConfigSources::from_process(common.config.clone(), flags)) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("metatiled: bad configuration: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if common.print_config {
        print!("{}", loaded.settings.to_redacted_toml());
        return ExitCode::SUCCESS;
    }
    init_tracing(&loaded.settings.log.level);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    finish(f(loaded))
}

fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(fut)
}

/// Logs to stderr; colours only on a terminal, so log files stay plain text.
fn init_tracing(level: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Every layer states the most verbose level it may want, so that tracing knows the
    // filter's (`info` by default): a disabled `debug!` on the hit path is then one
    // comparison, not a call into the subscriber per request.
    let most_verbose =
        tracing_subscriber::Layer::<tracing_subscriber::Registry>::max_level_hint(&filter);
    let mut not_client_errors =
        tracing_subscriber::filter::filter_fn(|meta| !is_client_protocol_error(meta));
    if let Some(hint) = most_verbose {
        not_client_errors = not_client_errors.with_max_level_hint(hint);
    }
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_filter(not_client_errors);
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(ClientProtocolErrors)
        .init();
}

/// The HTTP/1 codec's "stream error" line, logged at ERROR for a malformed request (a
/// TLS hello or garbage on the plain port, a broken request line): the client's fault.
fn is_client_protocol_error(meta: &tracing::Metadata<'_>) -> bool {
    *meta.level() == tracing::Level::ERROR && meta.target() == "actix_http::h1::dispatcher"
}

/// Logs a client's malformed request again as one debug line (the original ERROR line
/// is filtered out of the output).
struct ClientProtocolErrors;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ClientProtocolErrors {
    /// It only looks at ERROR events.
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::ERROR)
    }

    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if !is_client_protocol_error(event.metadata()) {
            return;
        }
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        tracing::debug!(target: "metatiled::http", error = %message.0, "malformed request from a client");
    }
}

/// clap's answer to arguments it refused: a bad value is one line (which flag, why);
/// help, version and missing arguments are printed as clap words them.
fn bad_arguments(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let text = e.to_string();
            eprintln!(
                "metatiled: {}",
                text.lines().next().unwrap_or("bad arguments")
            );
            ExitCode::from(EXIT_USAGE)
        }
        _ => {
            let _ = e.print();
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE))
        }
    }
}

/// Exit 2 with a one-line reason, for arguments that are wrong before anything runs.
fn usage_error(name: &str, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("metatiled {name}: {e}");
    ExitCode::from(EXIT_USAGE)
}

/// Exit 0, or the error's cause chain on one line and 2 (usage) or 1 (run time).
fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("metatiled: {}", chain.join(": ").replace('\n', " "));
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::from(EXIT_FAILURE)
            }
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "metatiled",
    version,
    about = "A render-on-miss raster tile server with a mod_tile-compatible metatile cache",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve tiles over HTTP (public listener) and the admin API (admin listener).
    Serve(ServeArgs),
    /// Pre-render the metatiles of a bbox and zoom range (like renderd's render_list).
    Seed(SeedArgs),
    /// Write the tiles of an area and zoom range to an MBTiles or PMTiles file,
    /// rendering what the cache lacks.
    Export(ExportArgs),
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
    /// Run several nodes as one service: balancer configuration, the fleet's state.
    #[command(subcommand)]
    Fleet(FleetCommand),
}

#[derive(Debug, Subcommand)]
enum FleetCommand {
    /// Print an HAProxy configuration that routes each metatile to one node.
    HaproxyConfig(Box<fleet::HaproxyArgs>),
    /// List the nodes as the database sees them (last seen, how far behind).
    Status(CommonArgs),
    /// Forget a node that left for good (the logs stop waiting for it).
    Forget {
        #[command(flatten)]
        common: CommonArgs,
        /// Its node.id.
        node: String,
    },
}

/// Flags shared by every subcommand that touches the database, the styles or the cache.
#[derive(Debug, Args, Clone, Default)]
struct CommonArgs {
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
    fn overrides(&self) -> Vec<Override> {
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
struct ServeArgs {
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
    fn overrides(&self) -> Vec<Override> {
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
struct SeedArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Style to render.
    #[arg(long)]
    pub style: StyleName,
    /// The area; default: the imported data's bounds.
    #[command(flatten)]
    pub area: AreaArgs,
    /// Zoom range, `A-B` or a single zoom.
    #[arg(long)]
    pub zoom: ZoomRange,
    /// Render threads (default: render.threads).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Re-render metatiles that are already fresh in the cache.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
struct ExportArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Style to export (rendered or composite).
    #[arg(long)]
    pub style: StyleName,
    /// The area; default: the imported data's bounds.
    #[command(flatten)]
    pub area: AreaArgs,
    /// Zoom range, `A-B` or a single zoom.
    #[arg(long)]
    pub zoom: ZoomRange,
    /// `mbtiles` or `pmtiles` (default: from OUT's extension).
    #[arg(long)]
    pub format: Option<ArchiveFormat>,
    /// Render threads (default: render.threads).
    #[arg(long)]
    pub threads: Option<usize>,
    /// The file to write (replaced atomically when the export is complete).
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
struct ExpireArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Style whose cache to expire.
    #[arg(long)]
    pub style: StyleName,
    /// The area to expire instead of the `z/x/y` lines on stdin.
    #[command(flatten)]
    pub area: AreaArgs,
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
enum CacheCommand {
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
        style: Option<StyleName>,
    },
}

#[derive(Debug, Args)]
struct WatchArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Style whose tables to watch (default: every style; `unwatch` without a style
    /// or tables removes the triggers from every table that has them).
    #[arg(long)]
    pub style: Option<StyleName>,
    /// Explicit tables (`table` or `schema.table`) instead of the ones the style reads.
    #[arg(long, value_delimiter = ',')]
    pub tables: Vec<String>,
}
