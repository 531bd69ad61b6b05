//! The admin listener: operator endpoints that never share a port with the public app.

use crate::service::TileService;
use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::json;
use std::net::TcpListener;
use std::sync::Arc;

use super::error::HttpError;
use super::ServerOptions;

/// What the admin handlers share.
pub struct AdminState {
    pub service: Arc<TileService>,
}

/// `GET /status`: workers, queue depths, memory cache.
async fn status(state: web::Data<AdminState>) -> HttpResponse {
    let pool = state.service.pool().stats();
    let mem = state.service.cache().memory_stats();
    HttpResponse::Ok().json(json!({
        "render": {
            "threads": pool.threads,
            "busy": pool.painting,
            "running": pool.running,
            "queued": {
                "interactive": pool.queued[0],
                "stale": pool.queued[1],
                "bulk": pool.queued[2],
            },
            "coalesced": pool.coalesced,
            "promoted": pool.promoted,
        },
        "memory_cache": { "entries": mem.entries, "bytes": mem.bytes },
        "styles": state.service.styles().iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
    }))
}

async fn no_route() -> Result<HttpResponse, HttpError> {
    Err(HttpError::NotFound("not found".into()))
}

pub fn admin_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/status", web::get().to(status))
        .route("/health", web::get().to(super::meta::health))
        .default_service(web::to(no_route));
}

pub fn admin_server(
    listener: TcpListener,
    state: AdminState,
    options: &ServerOptions,
) -> std::io::Result<Server> {
    let state = web::Data::new(state);
    Ok(
        HttpServer::new(move || App::new().app_data(state.clone()).configure(admin_routes))
            .workers(1)
            .shutdown_timeout(options.shutdown_timeout.as_secs())
            .disable_signals()
            .listen(listener)?
            .run(),
    )
}
