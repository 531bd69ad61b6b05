//! The composition root: builds the database pool, styles, caches, render pool, admin
//! API, watcher and both listeners once, for `serve` and for tests that run the real
//! app on port 0. Nothing below it knows how the parts are put together.

use crate::archive::ArchiveReader;
use crate::area::LonLatBbox;
use crate::cache::TileCache;
use crate::config::{AdminSettings, Settings, UsageError};
use crate::fleet::{Drain, ExpiryFollower, FleetHandle, FleetMetrics, Membership, RenderLocks};
use crate::http::admin::{admin_server, AdminState, BodyLimits};
use crate::http::{public_server, Listener, PublicOptions, PublicState, ServerOptions};
use crate::purge::Purger;
use crate::queue::{PoolConfig, RenderPool};
use crate::service::access::ApiKeys;
use crate::service::admin::{Admin, AdminOptions, DEFAULT_SYNC_MAX_METATILES};
use crate::service::expiry::{ServiceBatchTargets, ServiceFleetTargets};
use crate::service::jobs::JobLimits;
use crate::service::limits::{LimitOptions, Limits};
use crate::service::reload::StyleReloader;
use crate::service::{MetatileBackend, Metrics, ServiceOptions, TileService};
use crate::source::health::{HealthOptions, MonitorHandle, PgProbe};
use crate::source::{self, DbPool, ImportInfo, PostgisSource, SourceHealth};
use crate::style::{LiveStyles, StyleKind, StyleSet};
use crate::tile::StyleName;
use crate::watch::{WatchMetrics, Watcher};
use anyhow::Context;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Everything that renders and serves tiles, without listeners: what `serve` wraps in
/// HTTP and what `seed` drives directly.
pub struct Core {
    pub db: DbPool,
    pub service: Arc<TileService>,
    pub import: Option<ImportInfo>,
    /// Reads the style files again (SIGHUP, `POST /styles/reload`, `styles.watch`).
    pub reloader: Arc<StyleReloader>,
    /// Probes the database while it is down (and when a fetch hangs); stops when
    /// dropped.
    pub health_monitor: MonitorHandle,
    pub(crate) fleet_metrics: FleetMetrics,
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
        let health =
            SourceHealth::for_pool(HealthOptions::from_settings(&settings.database), db.clone());
        let health_monitor = MonitorHandle::start(
            health.clone(),
            Arc::new(PgProbe::new(source::connect_config(&settings.database)?)),
        );
        let postgis =
            PostgisSource::new(db.clone()).with_health(health.clone(), &settings.database);
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
            tracing::warn!(error = %crate::errors::error_chain(&e), "cannot read metatiled.import_info; advertising world bounds");
            None
        });
        if let Some(info) = &import {
            crate::cache::touch_planet_import_complete(&settings.cache.dir, None, info.imported_at)
                .context("cannot update planet-import-complete")?;
            // A style's own file (a style reload writes one) wins over the global one:
            // one older than the import must not hide it.
            for style in styles.iter() {
                let own =
                    crate::cache::freshness::planet_file(&settings.cache.dir, Some(&style.name));
                let older = std::fs::metadata(&own)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < info.imported_at);
                if older {
                    crate::cache::touch_planet_import_complete(
                        &settings.cache.dir,
                        Some(&style.name),
                        info.imported_at,
                    )
                    .context("cannot update a style's planet-import-complete")?;
                }
            }
        }
        let styles = Arc::new(LiveStyles::new(styles));
        let metrics = Arc::new(Metrics::new()?);
        metrics
            .registry()
            .register(Box::new(cache.corrupt_counter().clone()))?;
        let fleet_metrics = FleetMetrics::register(metrics.registry())?;
        let purger = Arc::new(
            Purger::new(
                &settings.purge,
                settings.server.public_url.as_deref(),
                metrics.registry(),
            )
            .map_err(|e| UsageError(crate::errors::error_chain(&e)))?,
        );
        let mut backend = MetatileBackend::new(
            styles.clone(),
            postgis.clone(),
            cache.clone(),
            settings.render.png,
            metrics.clone(),
            fonts.clone(),
        )
        .with_purger(purger.clone());
        if settings.cache.shared {
            let locks = crate::source::fleet::FleetLocks::new(&settings.database);
            backend = backend.with_render_locks(RenderLocks::new(locks, fleet_metrics.clone()));
        }
        let link = backend.pool_link();
        let threads = settings.render_threads();
        let r = &settings.render;
        let pool = Arc::new(RenderPool::start(
            backend,
            PoolConfig {
                threads,
                fetch_slots: fetch_slots(threads, settings.database.pool_size),
                capacity: [r.queue_interactive, r.queue_stale, r.queue_bulk],
            },
        )?);
        link.attach(&pool);
        let archives = open_archives(&styles.current()).await?;
        let mut service = TileService::new(
            styles,
            cache,
            pool,
            metrics.clone(),
            ServiceOptions {
                miss_timeout: Duration::from_secs(settings.server.miss_timeout_secs),
                stale_max_age_secs: settings.server.stale_max_age_secs,
                placeholder_max_age_secs: settings.server.placeholder_max_age_secs,
            },
        )
        .with_source_health(health)
        .with_archives(
            archives,
            Duration::from_secs(settings.cache.revalidate_secs),
        )
        .with_purger(purger);
        if settings.limits.enabled {
            let l = &settings.limits;
            let options = LimitOptions {
                requests_per_second: l.requests_per_second,
                request_burst: l.request_burst,
                renders_per_minute: l.renders_per_minute,
                render_burst: l.render_burst,
                node_renders_per_second: l.node_renders_per_second,
                exempt: l.exempt.clone(),
                exempt_keys: l.exempt_keys.clone(),
                max_clients: l.max_clients,
            };
            service = service.with_limits(Arc::new(Limits::new(&options, &metrics)));
        }
        let service = Arc::new(service);
        let reloader = Arc::new(StyleReloader::new(
            settings.styles.dir.clone(),
            fonts,
            postgis,
            service.clone(),
        ));
        Ok(Self {
            db,
            service,
            import,
            reloader,
            health_monitor,
            fleet_metrics,
        })
    }

    /// Closes the render pool: running renders finish and are stored, up to `timeout`;
    /// then stops probing the database.
    pub async fn shutdown(self, timeout: Duration) {
        self.service.pool().shutdown(timeout).await;
        self.health_monitor.stop().await;
    }
}

/// Opens the archive of every archive-backed style; a missing or unreadable archive
/// stops the start like a bad style file.
async fn open_archives(styles: &StyleSet) -> anyhow::Result<Vec<(StyleName, ArchiveReader)>> {
    let mut out = Vec::new();
    for style in styles.iter() {
        if let StyleKind::Archive { path, format } = &style.kind {
            let reader = ArchiveReader::open(path, *format).await.map_err(|e| {
                UsageError(format!(
                    "style {} (file {}): {}",
                    style.name,
                    style.file.display(),
                    crate::errors::error_chain(&e)
                ))
            })?;
            tracing::info!(style = %style.name, archive = %path.display(), format = %format, "serving an archive");
            out.push((style.name.clone(), reader));
        }
    }
    Ok(out)
}

/// Fetches in flight: one ahead per render thread keeps the painters busy while queries
/// run, but never more than the database pool holds, less one connection kept for
/// readiness checks, the admin API and the watcher's installs.
fn fetch_slots(threads: usize, db_pool_size: usize) -> usize {
    (threads * 2).min(db_pool_size.saturating_sub(1)).max(1)
}

/// The job registry's bounds from `[admin]`.
fn job_limits(admin: &AdminSettings) -> JobLimits {
    JobLimits {
        max_active: admin.max_active_jobs,
        kept: admin.jobs_kept,
        kept_for: Duration::from_secs(admin.jobs_kept_secs),
    }
}

/// A built, not yet running server.
pub struct Application {
    public_addr: SocketAddr,
    admin_addr: SocketAddr,
    public: Listener,
    admin: Listener,
    /// The admin API, whose jobs are cancelled at shutdown.
    admin_api: Arc<Admin>,
    service: Arc<TileService>,
    watcher: Option<Watcher>,
    health_monitor: MonitorHandle,
    membership: Membership,
    follower: ExpiryFollower,
    fleet: Arc<FleetHandle>,
    drain_for: Duration,
    keys: Arc<ApiKeys>,
    shutdown_timeout: Duration,
    /// The disk quota, swept in the background while running.
    quota: Option<crate::service::quota::QuotaOptions>,
    reloader: Arc<StyleReloader>,
    /// Whether the styles folder is watched for changes (`styles.watch`).
    watch_styles: bool,
}

/// How long shutdown waits for the purges still queued to go out.
const PURGE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// How often client budgets are pruned and the API keys file is checked for changes.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(2);

/// The data's extent from the tables' statistics, when `metatiled.import_info` has none
/// (a database imported without `scripts/setup`); the world if that fails too.
async fn data_bounds(db: &DbPool) -> LonLatBbox {
    match source::data_extent(db).await {
        Ok(Some(extent)) => match LonLatBbox::new(extent) {
            Ok(bounds) => return bounds,
            Err(e) => tracing::warn!(error = %e, "the data's extent is not a valid bbox"),
        },
        Ok(None) => tracing::warn!("no metatiled.import_info and no table statistics (run ANALYZE); advertising world bounds"),
        Err(e) => tracing::warn!(error = %crate::errors::error_chain(&e), "cannot read the data's extent; advertising world bounds"),
    }
    LonLatBbox::WORLD
}

impl Application {
    /// Builds the [`Core`] and binds both listeners.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let Core {
            db,
            service,
            import,
            reloader,
            health_monitor,
            fleet_metrics,
        } = Core::build(settings).await?;
        let drain = Arc::new(Drain::default());
        let fleet = Arc::new(FleetHandle::new(
            &settings.node,
            settings.cache.shared,
            &settings.fleet,
            db.clone(),
            fleet_metrics,
            drain.clone(),
        ));
        let outdated_cache = service.cache().clone();
        let membership = Membership::new(
            fleet.clone(),
            settings.fleet.clone(),
            Box::new(move || {
                if let Err(e) = outdated_cache.mark_all_stale(std::time::SystemTime::now()) {
                    tracing::error!(error = %crate::errors::error_chain(&e), "cannot mark the cache stale");
                }
            }),
        );
        let follower = ExpiryFollower::new(
            &settings.database,
            fleet.clone(),
            service.styles().clone(),
            Arc::new(ServiceFleetTargets(service.clone())),
            settings.fleet.poll_secs,
        );
        if settings.watch.install_on_start {
            let client = db
                .get()
                .await
                .context("cannot install the change triggers")?;
            let tables = crate::watch::install_for_styles(&client, &service.styles(), None)
                .await
                .context("cannot install the change triggers (watch.install_on_start)")?;
            let names: Vec<String> = tables.iter().map(|t| t.table.to_string()).collect();
            tracing::info!(tables = ?names, "change triggers installed");
        }
        let watcher = if settings.watch.enabled {
            let metrics = WatchMetrics::register(service.metrics().registry())?;
            Some(Watcher::new(
                &settings.database,
                (&settings.node.id, settings.cache.shared),
                &settings.watch,
                service.styles(),
                Arc::new(ServiceBatchTargets(service.clone())),
                metrics,
            ))
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
        let bounds = match import.as_ref().and_then(|i| LonLatBbox::new(i.bounds).ok()) {
            Some(bounds) => bounds,
            None => data_bounds(&db).await,
        };
        let keys = Arc::new(match &settings.access.keys_file {
            Some(path) => ApiKeys::load(path).map_err(|e| {
                UsageError(format!(
                    "access.keys_file: {}",
                    crate::errors::error_chain(&e)
                ))
            })?,
            None => ApiKeys::none(),
        });
        let s = &settings.server;
        let tls = s.tls_cert.clone().zip(s.tls_key.clone());
        let public_state = PublicState::new(
            service.clone(),
            db,
            bounds,
            &PublicOptions {
                cors_origin: &s.cors_origin,
                public_url: s.public_url.as_deref(),
                trusted_proxies: s.trusted_proxies.clone(),
                retry_after_secs: s.retry_after_secs,
                tls: tls.clone(),
                keys: keys.clone(),
                listen_addr: public_addr,
            },
        )
        .map_err(|e| UsageError(e.to_string()))?
        .with_drain(drain);
        let public = public_server(public_listener, public_state, &options, tls.as_ref())
            .map_err(|e| UsageError(crate::errors::error_chain(&e)))?;
        let admin_api = Arc::new(
            Admin::new(
                service.clone(),
                AdminOptions {
                    export_dir: settings.export.dir.clone(),
                    sync_max_metatiles: DEFAULT_SYNC_MAX_METATILES,
                    bulk_queue: settings.render.queue_bulk,
                    max_area_squares: settings.admin.max_area_squares,
                    jobs: job_limits(&settings.admin),
                },
            )
            .with_fleet(fleet.clone()),
        );
        let admin_state = AdminState::new(
            admin_api.clone(),
            settings.admin.token.as_deref(),
            BodyLimits {
                any: settings.admin.max_body_bytes,
                json: settings.admin.max_json_bytes,
            },
        )
        .with_reloader(reloader.clone());
        let admin = admin_server(admin_listener, admin_state, &options)?;
        Ok(Self {
            public_addr,
            admin_addr,
            public,
            admin,
            admin_api,
            service,
            watcher,
            health_monitor,
            membership,
            follower,
            fleet,
            drain_for: Duration::from_secs(settings.node.drain_secs),
            keys,
            shutdown_timeout: options.shutdown_timeout,
            quota: crate::service::quota::QuotaOptions::from_settings(&settings.cache),
            reloader,
            watch_styles: settings.styles.watch,
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

    /// Reloads the styles (what SIGHUP does).
    pub fn reloader(&self) -> &Arc<StyleReloader> {
        &self.reloader
    }

    /// This node in the fleet.
    pub fn fleet(&self) -> &Arc<FleetHandle> {
        &self.fleet
    }

    /// [`Application::run_until_drained`] with nothing to cut the drain short.
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        self.run_until_drained(stop, std::future::pending()).await
    }

    /// Runs both listeners, the fleet's membership and expiry follower (and the
    /// database watcher, when enabled) until `stop` resolves. Then drains for
    /// `node.drain_secs` (`/ready` answers 503 while everything keeps serving; `hurry`
    /// resolving, e.g. a second signal, cuts it short) and shuts down gracefully: stop
    /// accepting, finish in-flight requests, renders and writes within the shutdown
    /// timeout, stop watching and following (an unfinished batch is read again at the
    /// next start), release the node id.
    pub async fn run_until_drained(
        self,
        stop: impl std::future::Future<Output = ()>,
        hurry: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let handles = [self.public.stop_handle(), self.admin.stop_handle()];
        let public = tokio::spawn(self.public.run());
        let admin = tokio::spawn(self.admin.run());
        let stop_background = CancellationToken::new();
        let stop_purging = CancellationToken::new();
        let purging = self.service.purger().run(stop_purging.clone());
        let sweeping = self.quota.map(|q| {
            crate::service::quota::Sweeper::new(self.service.clone(), q).run(stop_purging.clone())
        });
        let watcher = self
            .watcher
            .map(|w| tokio::spawn(w.run(stop_background.clone())));
        let follower = tokio::spawn(self.follower.run(stop_background.clone()));
        let stop_membership = CancellationToken::new();
        let membership = tokio::spawn(self.membership.run(stop_membership.clone()));
        let housekeeping = {
            let (service, keys) = (self.service.clone(), self.keys.clone());
            let reloader = self.watch_styles.then(|| self.reloader.clone());
            let mut folder = reloader
                .as_ref()
                .map(|r| crate::service::reload::folder_stamp(r.dir()));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if let (Some(reloader), Some(before)) = (&reloader, &mut folder) {
                        let now = crate::service::reload::folder_stamp(reloader.dir());
                        if now != *before {
                            *before = now;
                            tracing::info!("a style file changed; reloading the styles");
                            reloader.reload().await;
                        }
                    }
                    let (service, keys) = (service.clone(), keys.clone());
                    // A walk of the budgets (up to limits.max_clients) and a stat of the
                    // keys file: not on the runtime's threads.
                    let _ = tokio::task::spawn_blocking(move || {
                        if let Some(limits) = service.limits() {
                            limits.housekeeping();
                        }
                        keys.reload_if_changed();
                    })
                    .await;
                }
            })
        };
        stop.await;
        if !self.drain_for.is_zero() {
            self.fleet.drain().start();
            tracing::info!(
                drain.secs = self.drain_for.as_secs(),
                "draining: /ready answers 503 while serving; a second signal stops at once"
            );
            tokio::select! {
                _ = tokio::time::sleep(self.drain_for) => {}
                _ = hurry => tracing::info!("drain cut short"),
            }
        }
        housekeeping.abort();
        tracing::info!("shutting down: finishing in-flight requests and renders");
        self.admin_api.jobs().cancel_all();
        stop_background.cancel();
        for h in &handles {
            h.stop().await;
        }
        for server in [public, admin] {
            if let Ok(Err(e)) = server.await {
                tracing::warn!(error = %e, "a listener ended with an error");
            }
        }
        if let Some(w) = watcher {
            let _ = w.await;
        }
        let _ = follower.await;
        stop_membership.cancel();
        let _ = membership.await;
        self.service.pool().shutdown(self.shutdown_timeout).await;
        // The last renders' changes go out once, within the purge deadline.
        stop_purging.cancel();
        if let Some(sweeping) = sweeping {
            let _ = sweeping.await;
        }
        if tokio::time::timeout(PURGE_FLUSH_TIMEOUT, purging)
            .await
            .is_err()
        {
            tracing::warn!("purges still queued at shutdown were not all sent");
        }
        self.health_monitor.stop().await;
        tracing::info!("stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_settings_default_to_the_admin_services_own_limits() {
        let admin = AdminSettings::default();
        assert_eq!(job_limits(&admin), JobLimits::default());
        assert_eq!(
            admin.max_area_squares,
            crate::service::admin::DEFAULT_MAX_AREA_SQUARES
        );
    }

    #[test]
    fn fetches_in_flight_never_exceed_the_database_pool() {
        assert_eq!(fetch_slots(2, 8), 4);
        assert_eq!(fetch_slots(8, 8), 7);
        assert_eq!(fetch_slots(4, 1), 1);
    }
}
