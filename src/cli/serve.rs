//! `metatiled serve` and `metatiled migrate`.

use crate::app::Application;
use crate::config::Settings;

/// `metatiled serve`: run until SIGINT/SIGTERM (after `node.drain_secs` of draining,
/// which a second signal cuts short).
pub(super) async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(&settings).await?;
    tracing::info!(
        public = %app.public_addr(),
        admin = %app.admin_addr(),
        node = %app.fleet().node_id(),
        styles = ?app.service().styles().public_names(),
        "serving"
    );
    let (first_tx, first) = tokio::sync::oneshot::channel::<()>();
    let (second_tx, second) = tokio::sync::oneshot::channel::<()>();
    let signals = tokio::spawn(async move {
        shutdown_signal().await;
        let _ = first_tx.send(());
        shutdown_signal().await;
        let _ = second_tx.send(());
    });
    let result = app
        .run_until_drained(
            async {
                let _ = first.await;
            },
            async {
                let _ = second.await;
            },
        )
        .await;
    signals.abort();
    result
}

/// `metatiled migrate`: apply the migrations and report what was done.
pub(super) async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let pool = crate::source::build_pool(&settings.database).await?;
    let report = crate::source::run_migrations(&pool).await?;
    if report.applied.is_empty() {
        tracing::info!("database schema is up to date; nothing to apply");
    } else {
        tracing::info!(applied = ?report.applied, "applied migrations");
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
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
