//! The `metatiled` binary: parse the command line, load the configuration, start
//! tracing, run one subcommand. Exit codes: 0 success, 2 bad usage or configuration
//! (one line on stderr), 1 runtime failure.

use clap::Parser;
use metatiled::cli::{CacheCommand, Cli, Command, CommonArgs};
use metatiled::config::{self, ConfigSources, Loaded, Override};
use metatiled::tile::StyleName;
use std::process::ExitCode;

/// Exit code for bad usage or configuration, as clap uses for bad arguments.
const EXIT_USAGE: u8 = 2;
/// Exit code for failures at run time (database down, disk full, ...).
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => with_config(&args.common, args.overrides(), |loaded| {
            run_async(metatiled::app::serve(loaded.settings))
        }),
        Command::Migrate(common) => with_config(&common, common.overrides(), |loaded| {
            run_async(metatiled::app::migrate(loaded.settings))
        }),
        Command::Seed(args) => with_config(&args.common, args.common.overrides(), |loaded| {
            run_async(metatiled::seed::seed_command(
                loaded.settings,
                metatiled::seed::SeedCommand {
                    style: &args.style,
                    bbox: args.bbox.as_deref(),
                    polygon: args.polygon.as_deref(),
                    zoom: &args.zoom,
                    threads: args.threads,
                    force: args.force,
                },
            ))
        }),
        Command::Expire(args) => match metatiled::expire::cli::ExpireCommand::from_args(&args) {
            Ok(cmd) => with_config(&args.common, args.common.overrides(), |loaded| {
                Ok(cmd.run(&loaded.settings)?)
            }),
            Err(e) => usage_error("expire", &e),
        },
        Command::Cache(CacheCommand::Inspect { file }) => finish(
            metatiled::cache::cli::inspect(&file, &mut std::io::stdout().lock())
                .map_err(anyhow::Error::from),
        ),
        Command::Cache(CacheCommand::Stats { common, style }) => {
            match style.as_deref().map(StyleName::parse).transpose() {
                Ok(style) => with_config(&common, common.overrides(), |loaded| {
                    let out = &mut std::io::stdout().lock();
                    Ok(metatiled::cache::cli::stats(
                        &loaded.settings.cache.dir,
                        style.as_ref(),
                        out,
                    )?)
                }),
                Err(e) => usage_error("cache stats", &e),
            }
        }
        Command::Watch(args) => with_config(&args.common, args.common.overrides(), |loaded| {
            run_async(metatiled::watch::watch_command(
                loaded.settings,
                args.style.as_deref(),
                &args.tables,
                &mut std::io::stdout(),
            ))
        }),
        Command::Unwatch(args) => with_config(&args.common, args.common.overrides(), |loaded| {
            run_async(metatiled::watch::unwatch_command(
                loaded.settings,
                args.style.as_deref(),
                &args.tables,
                &mut std::io::stdout(),
            ))
        }),
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
    match f(loaded) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("metatiled: {}", chain.join(": ").replace('\n', " "));
            if e.downcast_ref::<metatiled::app::UsageError>().is_some() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::from(EXIT_FAILURE)
            }
        }
    }
}

fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(fut)
}

fn init_tracing(level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Exit 2 with a one-line reason, for arguments that are wrong before anything runs.
fn usage_error(name: &str, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("metatiled {name}: {e}");
    ExitCode::from(EXIT_USAGE)
}

/// Exit 0, or 1 with the error's cause chain on one line.
fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("metatiled: {}", chain.join(": ").replace('\n', " "));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
