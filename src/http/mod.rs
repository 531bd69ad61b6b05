//! The actix-web front end: the only module that knows about HTTP. Handlers parse,
//! call the [`TileService`](crate::service::TileService) and shape responses; status
//! codes are decided in [`error`] alone.
//!
//! Two listeners, two apps: the public one (tiles, TileJSON, viewer, health, metrics)
//! and the admin one (expire, seed, jobs, status), so no admin route can ever be
//! reached on the public port.

pub mod admin;
pub mod error;
mod meta;
pub mod tiles;

use crate::service::TileService;
use crate::source::Pool;
use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderValue;
use actix_web::{web, App, HttpResponse, HttpServer};
use error::HttpError;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the public handlers share.
pub struct PublicState {
    pub service: Arc<TileService>,
    pub db: Pool,
    /// The data's extent (minlon, minlat, maxlon, maxlat), for TileJSON and the viewer.
    pub bounds: [f64; 4],
    pub cors_origin: Option<HeaderValue>,
    pub retry_after_secs: u64,
}

/// Listener options common to both servers.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub workers: usize,
    pub shutdown_timeout: Duration,
}

/// Counts every response by status and logs it at debug.
async fn observe<B: MessageBody>(
    req: ServiceRequest,
    next: actix_web::middleware::Next<B>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    // The request line is only copied when debug logging is on: this runs per tile hit.
    let logged = tracing::enabled!(tracing::Level::DEBUG)
        .then(|| (Instant::now(), req.method().clone(), req.path().to_string()));
    let service = req
        .app_data::<web::Data<PublicState>>()
        .map(|s| s.service.clone());
    let res = next.call(req).await?;
    let status = res.status();
    if let Some(service) = service {
        service.metrics().count_response(status.as_u16());
    }
    if let Some((started, method, path)) = logged {
        tracing::debug!(
            %method,
            path,
            status = status.as_u16(),
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
    }
    Ok(res)
}

/// Unmatched paths: a 400 for what looks like a broken tile URL, else 404.
async fn no_route(req: actix_web::HttpRequest) -> Result<HttpResponse, HttpError> {
    if req.path().ends_with(".png") {
        return Err(HttpError::BadRequest(
            "tile paths are /{style}/{z}/{x}/{y}.png".into(),
        ));
    }
    Err(HttpError::NotFound("not found".into()))
}

/// Configures the public routes; used by `public_server` and by tests.
pub fn public_routes(cfg: &mut web::ServiceConfig) {
    // The tile route comes first: the router tries routes in order and every dynamic
    // pattern is a regex match, so a tile hit should cost one. Digits-only z and x keep
    // `/assets/leaflet/images/x.png` out of it; other malformed tile paths fall through
    // to `no_route`, which answers 400 for anything ending in `.png`.
    cfg.service(
        web::resource(r"/{style}/{z:\d+}/{x:\d+}/{file}")
            .route(web::get().to(tiles::get_tile))
            .route(web::head().to(tiles::get_tile)),
    )
    .route("/", web::get().to(meta::viewer))
    .route("/health", web::get().to(meta::health))
    .route("/ready", web::get().to(meta::ready))
    .route("/metrics", web::get().to(meta::metrics))
    .route("/assets/leaflet/{path:.*}", web::get().to(meta::asset))
    .route("/{style}/tile.json", web::get().to(meta::tilejson))
    .default_service(web::to(no_route));
}

/// The public listener on an already bound socket (port 0 in tests).
pub fn public_server(
    listener: TcpListener,
    state: PublicState,
    options: &ServerOptions,
) -> std::io::Result<Server> {
    let state = web::Data::new(state);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(actix_web::middleware::from_fn(observe))
            .configure(public_routes)
    })
    .shutdown_timeout(options.shutdown_timeout.as_secs())
    .disable_signals()
    .listen(listener)?;
    if options.workers > 0 {
        server = server.workers(options.workers);
    }
    Ok(server.run())
}
