//! The composition root: builds the database pool, styles, caches, render pool and both
//! listeners once, for `serve` and for tests that run the real app on port 0.

use crate::cache::TileCache;
use crate::config::Settings;
use crate::http::admin::{admin_server, AdminState};
use crate::http::{public_server, PublicState, ServerOptions};
use crate::metrics::Metrics;
use crate::queue::RenderPool;
use crate::render::PngMode;
use crate::service::{MetatileBackend, ServiceOptions, TileService};
use crate::source::{self, ImportInfo, PostgisSource};
use crate::style::StyleSet;
use crate::watch::Watcher;
use actix_web::dev::{Server, ServerHandle};
use actix_web::http::header::HeaderValue;
use anyhow::Context;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Bad usage or configuration found after parsing (a style that does not load, a bad
/// bbox), as opposed to a failing environment:
/// `main` exits 2 on these.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The world, for TileJSON when nothing was recorded about the import.
const WORLD_BOUNDS: [f64; 4] = [-180.0, -85.051_129, 180.0, 85.051_129];

/// Everything that renders and serves tiles, without listeners: what `serve` wraps in
/// HTTP and what `seed` drives directly.
pub struct Core {
    pub db: source::Pool,
    pub service: Arc<TileService>,
    pub import: Option<ImportInfo>,
}

impl Core {
    /// Connects, migrates, loads and checks the styles, opens the cache and starts the
    /// render pool. Must run inside a tokio runtime.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let db = source::build_pool(&settings.database).await?;
        if settings.database.migrate_on_start {
            let report = source::run_migrations(&db).await?;
            if !report.applied.is_empty() {
                tracing::info!(applied = ?report.applied, "applied migrations");
            }
        }
        let styles =
            StyleSet::load_dir(&settings.styles.dir).map_err(|e| UsageError(e.to_string()))?;
        // Fonts: read once per process, shared by every render thread.
        let fonts = Arc::new(
            settings
                .render
                .load_fonts()
                .context("cannot load the fonts for labels (render.fonts)")?,
        );
        styles
            .check_fonts(&fonts)
            .map_err(|e| UsageError(e.to_string()))?;
        let styles = Arc::new(styles);
        let postgis = PostgisSource::new(db.clone());
        for style in styles.iter() {
            postgis
                .check_style(style)
                .await
                .map_err(|e| UsageError(e.to_string()))?;
        }
        let cache = Arc::new(TileCache::open(&settings.cache).with_context(|| {
            format!(
                "cannot open the tile cache at {}",
                settings.cache.dir.display()
            )
        })?);
        let import = ImportInfo::load(&db).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read metatiled.import_info; advertising world bounds");
            None
        });
        if let Some(info) = &import {
            crate::cache::touch_planet_import_complete(&settings.cache.dir, None, info.imported_at)
                .context("cannot update planet-import-complete")?;
        }
        let metrics = Arc::new(Metrics::new()?);
        let png = match settings.render.png.as_str() {
            "rgba" => PngMode::Rgba,
            _ => PngMode::Palette,
        };
        let backend = MetatileBackend::new(
            styles.clone(),
            postgis,
            cache.clone(),
            png,
            metrics.clone(),
            fonts,
        );
        let r = &settings.render;
        let pool = Arc::new(RenderPool::start(
            backend,
            settings.render_threads(),
            [r.queue_interactive, r.queue_stale, r.queue_bulk],
        )?);
        let service = Arc::new(TileService::new(
            styles,
            cache,
            pool,
            metrics,
            ServiceOptions {
                miss_timeout: Duration::from_secs(settings.server.miss_timeout_secs),
                stale_max_age_secs: settings.server.stale_max_age_secs,
            },
        ));
        Ok(Self {
            db,
            service,
            import,
        })
    }
}

/// A built, not yet running server.
pub struct Application {
    public_addr: SocketAddr,
    admin_addr: SocketAddr,
    public: Server,
    admin: Server,
    /// The admin API, whose jobs are cancelled at shutdown.
    admin_api: Arc<crate::admin::Admin>,
    service: Arc<TileService>,
    watcher: Option<Watcher>,
    shutdown_timeout: Duration,
}

impl Application {
    /// Builds the [`Core`] and binds both listeners.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let Core {
            db,
            service,
            import,
        } = Core::build(settings).await?;
        if settings.watch.install_on_start {
            let client = db
                .get()
                .await
                .context("cannot install the change triggers")?;
            let tables = crate::watch::install_for_styles(&client, service.styles(), None)
                .await
                .context("cannot install the change triggers (watch.install_on_start)")?;
            let names: Vec<String> = tables.iter().map(|t| t.table.to_string()).collect();
            tracing::info!(tables = ?names, "change triggers installed");
        }
        let watcher = if settings.watch.enabled {
            Some(
                Watcher::new(&settings.database, &settings.watch, service.clone())
                    .map_err(|e| UsageError(e.to_string()))?,
            )
        } else {
            None
        };
        let options = ServerOptions {
            workers: settings.server.workers,
            shutdown_timeout: Duration::from_secs(settings.server.shutdown_timeout_secs),
        };
        let public_listener = TcpListener::bind(settings.server.listen)
            .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
        let admin_listener = TcpListener::bind(settings.admin.listen)
            .with_context(|| format!("cannot listen on {} (admin)", settings.admin.listen))?;
        let public_addr = public_listener.local_addr()?;
        let admin_addr = admin_listener.local_addr()?;
        let cors_origin = match settings.server.cors_origin.as_str() {
            "" => None,
            origin => Some(HeaderValue::from_str(origin).map_err(|_| {
                UsageError(format!(
                    "server.cors_origin {origin:?} is not a valid header value"
                ))
            })?),
        };
        let public = public_server(
            public_listener,
            PublicState {
                service: service.clone(),
                db,
                bounds: import.map_or(WORLD_BOUNDS, |i| i.bounds),
                cors_origin,
                retry_after_secs: settings.server.retry_after_secs,
            },
            &options,
        )?;
        let admin_state = AdminState::new(service.clone(), settings);
        let admin_api = admin_state.admin.clone();
        let admin = admin_server(admin_listener, admin_state, &options)?;
        Ok(Self {
            public_addr,
            admin_addr,
            public,
            admin,
            admin_api,
            service,
            watcher,
            shutdown_timeout: options.shutdown_timeout,
        })
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.public_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn service(&self) -> &Arc<TileService> {
        &self.service
    }

    /// Runs both listeners (and the database watcher, when enabled) until `stop`
    /// resolves, then shuts down gracefully: stop accepting, stop watching (an
    /// unfinished batch stays in the change log), finish in-flight requests, renders
    /// and writes.
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let handles: [ServerHandle; 2] = [self.public.handle(), self.admin.handle()];
        let public = tokio::spawn(self.public);
        let admin = tokio::spawn(self.admin);
        let (stop_watch, watch_stopped) = tokio::sync::watch::channel(false);
        let watcher = self.watcher.map(|w| tokio::spawn(w.run(watch_stopped)));
        stop.await;
        tracing::info!("shutting down: finishing in-flight requests and renders");
        self.admin_api.jobs().cancel_all();
        let _ = stop_watch.send(true);
        for h in &handles {
            h.stop(true).await;
        }
        let _ = public.await;
        let _ = admin.await;
        if let Some(w) = watcher {
            let _ = w.await;
        }
        self.service.pool().shutdown(self.shutdown_timeout).await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// `metatiled migrate`: apply the migrations and report what was done.
pub async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let pool = source::build_pool(&settings.database).await?;
    let report = source::run_migrations(&pool).await?;
    if report.applied.is_empty() {
        tracing::info!("database schema is up to date; nothing to apply");
    } else {
        tracing::info!(applied = ?report.applied, "applied migrations");
    }
    Ok(())
}

/// `metatiled serve`: run until SIGINT/SIGTERM.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(&settings).await?;
    tracing::info!(
        public = %app.public_addr(),
        admin = %app.admin_addr(),
        styles = ?app.service().styles().iter().map(|s| s.name.to_string()).collect::<Vec<_>>(),
        "serving"
    );
    app.run_until(shutdown_signal()).await
}
