//! The actix-web front end: the only module that knows about HTTP. Handlers parse,
//! call the [`TileService`](crate::service::TileService) or the admin API and shape
//! responses; status codes are decided in [`error`] alone.
//!
//! Two listeners, two apps: the public one (tiles, TileJSON, viewer, health, metrics)
//! and the admin one (expire, seed, jobs, status), so no admin route can ever be
//! reached on the public port.
//!
//! - here: the public router ([`public_routes`]: fixed paths, then [`PublicPath`]
//!   dispatch), the per-response middleware, and [`Listener`], a bound server.
//! - [`tiles`]: `/{style}/{z}/{x}/{y}.png`; `tilejson`, `viewer`, `health`: the rest
//!   of the public API; [`admin`]: the admin listener; [`error`]: the status table.
//! - [`edge`]: trusted proxies, CORS, `server.public_url`, per-style access.
//! - `tls`: the certificate and key of an HTTPS public listener; `plain`: telling
//!   HTTP/1.1 from h2c on a plain socket, with a deadline for a silent client.
//!
//! The public listener speaks HTTP/1.1 and HTTP/2: h2c with prior knowledge on a plain
//! socket, or ALPN `h2` / `http/1.1` over TLS when `server.tls_cert`/`tls_key` are set.

pub(crate) mod admin;
pub(crate) mod edge;
pub(crate) mod error;
mod health;
mod plain;
mod tilejson;
pub(crate) mod tiles;
mod tls;
mod viewer;

use crate::area::LonLatBbox;
use crate::fleet::Drain;
use crate::service::TileService;
use crate::source::DbPool;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Server, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use edge::Edge;
use error::HttpError;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// What the public handlers share.
pub(crate) struct PublicState {
    service: Arc<TileService>,
    db: DbPool,
    /// The data's extent, for TileJSON and the viewer.
    bounds: LonLatBbox,
    edge: Edge,
    retry_after_secs: u64,
    /// The surrogate-key header of tile responses (`purge.key_header`), if any.
    surrogate_keys: Option<(header::HeaderName, crate::purge::KeyHeader)>,
    /// Set once the node drains before stopping: `/ready` answers 503.
    drain: Arc<Drain>,
}

/// A setting the HTTP layer cannot use.
#[derive(Debug, Error)]
pub(crate) enum HttpSetupError {
    #[error("server.cors_origin {0:?} is not a valid header value")]
    CorsOrigin(String),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("purge.key_header {0:?} is not a valid header name")]
    KeyHeader(String),
}

/// The public listener's settings, as `[server]` gives them.
pub(crate) struct PublicOptions<'a> {
    /// `Access-Control-Allow-Origin`; empty = none.
    pub cors_origin: &'a str,
    pub public_url: Option<&'a str>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub retry_after_secs: u64,
    /// Certificate chain and key (PEM) of an HTTPS listener.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub keys: Arc<crate::service::access::ApiKeys>,
    /// The bound address: the host of URLs for a request with no `Host`.
    pub listen_addr: std::net::SocketAddr,
}

impl PublicState {
    pub(crate) fn new(
        service: Arc<TileService>,
        db: DbPool,
        bounds: LonLatBbox,
        options: &PublicOptions<'_>,
    ) -> Result<Self, HttpSetupError> {
        let cors_origin = match options.cors_origin {
            "" => None,
            origin => Some(
                HeaderValue::from_str(origin)
                    .map_err(|_| HttpSetupError::CorsOrigin(origin.to_string()))?,
            ),
        };
        let edge = Edge::new(
            edge::proxies::TrustedProxies::new(options.trusted_proxies.clone()),
            edge::cors::Cors::new(cors_origin),
            options.public_url,
            options.tls.is_some(),
            options.keys.clone(),
            options.listen_addr,
        );
        let surrogate_keys = match service.purger().key_header() {
            Some(keys) => Some((
                header::HeaderName::from_bytes(keys.name.as_bytes())
                    .map_err(|_| HttpSetupError::KeyHeader(keys.name.clone()))?,
                keys.clone(),
            )),
            None => None,
        };
        Ok(Self {
            service,
            db,
            bounds,
            edge,
            retry_after_secs: options.retry_after_secs,
            surrogate_keys,
            drain: Arc::new(Drain::default()),
        })
    }

    /// `/ready` answers 503 once `drain` has started.
    pub(crate) fn with_drain(mut self, drain: Arc<Drain>) -> Self {
        self.drain = drain;
        self
    }
}

/// A bound HTTP server, not yet running: [`Listener::run`] serves until stopped
/// through its [`StopHandle`].
pub(crate) struct Listener(Server);

/// Stops a [`Listener`]: no new connections, in-flight requests finish (up to the
/// server's shutdown timeout).
#[derive(Clone)]
pub(crate) struct StopHandle(ServerHandle);

impl Listener {
    pub(crate) fn stop_handle(&self) -> StopHandle {
        StopHandle(self.0.handle())
    }

    /// Serves until stopped.
    pub(crate) async fn run(self) -> std::io::Result<()> {
        self.0.await
    }
}

impl StopHandle {
    pub(crate) async fn stop(&self) {
        self.0.stop(true).await;
    }
}

/// Listener options common to both servers.
#[derive(Debug, Clone)]
pub(crate) struct ServerOptions {
    /// HTTP worker threads; 0 = two per core.
    pub workers: usize,
    pub shutdown_timeout: Duration,
}

impl ServerOptions {
    /// Workers of the public listener. Twice the cores by default: hits never block,
    /// but on a busy machine a worker gets descheduled now and then, and each of its
    /// connections waits for it; more workers means fewer waiting connections each
    /// (p99 of hits went from ~4 ms to ~2.7 ms in `scripts/bench-serve`, same req/s).
    pub(crate) fn http_workers(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        std::thread::available_parallelism().map_or(2, |n| n.get() * 2)
    }
}

/// Answers `OPTIONS` (CORS preflights) itself, adds the CORS headers to every other
/// response, errors included, counts every response by status and logs it at debug.
async fn observe<B: MessageBody>(
    req: ServiceRequest,
    next: actix_web::middleware::Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    // The request line is only copied when debug logging is on: this runs per tile hit.
    let logged = tracing::enabled!(tracing::Level::DEBUG)
        .then(|| (Instant::now(), req.method().clone(), req.path().to_string()));
    let mut res = if req.method() == Method::OPTIONS {
        let preflight = match req.app_data::<web::Data<PublicState>>() {
            Some(state) => state.edge.cors.preflight(),
            None => HttpResponse::NoContent().finish(),
        };
        req.into_response(preflight).map_into_right_body()
    } else {
        next.call(req).await?.map_into_left_body()
    };
    let status = res.status();
    // The request is an `Rc` (this thread's own count); the state is borrowed from it, so
    // no reference count shared by every worker goes up and down per request.
    let request = res.request().clone();
    if let Some(state) = request.app_data::<web::Data<PublicState>>() {
        state.edge.cors.apply(res.headers_mut());
        state.service.metrics().count_response(status.as_u16());
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

/// What a public path that is not one of the fixed routes names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublicPath<'a> {
    /// `/{style}/{z}/{x}/{file}`: checked further by [`tiles::parse_tile_path`].
    Tile([&'a str; 4]),
    /// `/{style}/tile.json`.
    TileJson(&'a str),
    /// `/assets/leaflet/{path}`.
    Asset(&'a str),
    /// Anything else: a 400 when it looks like a broken tile URL, else 404.
    Unknown { looks_like_tile: bool },
}

impl<'a> PublicPath<'a> {
    /// Splits the raw request path, never percent-decoded: a `%` anywhere in a style
    /// name makes it invalid rather than something else.
    fn classify(path: &'a str) -> Self {
        if let Some(asset) = path.strip_prefix("/assets/leaflet/") {
            return PublicPath::Asset(asset);
        }
        let mut segments = path.strip_prefix('/').unwrap_or(path).split('/');
        let mut parts = [""; 4];
        let mut count = 0;
        for segment in segments.by_ref().take(4) {
            parts[count] = segment;
            count += 1;
        }
        match (count, segments.next()) {
            (4, None) => PublicPath::Tile(parts),
            (2, None) if parts[1] == "tile.json" => PublicPath::TileJson(parts[0]),
            _ => PublicPath::Unknown {
                looks_like_tile: path.ends_with(".png") || path.ends_with(".grid.json"),
            },
        }
    }
}

/// Every public path but the fixed ones (`/`, `/health`, `/ready`, `/metrics`): tiles,
/// TileJSON and the viewer's assets. Matched by hand rather than by route patterns,
/// which the router tries one regex at a time: a tile hit is the hot path.
async fn dispatch(req: HttpRequest) -> Result<HttpResponse, HttpError> {
    let Some(state) = req.app_data::<web::Data<PublicState>>() else {
        tracing::error!("public state missing from the app");
        return Err(HttpError::Internal);
    };
    let path = PublicPath::classify(req.path());
    if !matches!(path, PublicPath::Unknown { .. })
        && req.method() != Method::GET
        && req.method() != Method::HEAD
    {
        return Err(HttpError::MethodNotAllowed);
    }
    match path {
        PublicPath::Tile(segments) => tiles::get_tile(&req, state, segments).await,
        PublicPath::TileJson(style) => tilejson::tilejson(&req, style, state),
        PublicPath::Asset(asset) => viewer::asset(asset),
        PublicPath::Unknown {
            looks_like_tile: true,
        } => Err(HttpError::BadRequest(
            "tile paths are /{style}/{z}/{x}/{y}.png".into(),
        )),
        PublicPath::Unknown {
            looks_like_tile: false,
        } => Err(HttpError::NotFound("not found".into())),
    }
}

/// Configures the public routes; used by `public_server` and by tests. The fixed paths
/// are plain string comparisons for the router; everything else goes to [`dispatch`].
pub(crate) fn public_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(viewer::viewer))
        .route("/health", web::get().to(health::health))
        .route("/ready", web::get().to(health::ready))
        .route("/metrics", web::get().to(health::metrics))
        .default_service(web::to(dispatch));
}

/// The public listener on an already bound socket (port 0 in tests): HTTPS (ALPN h2
/// and http/1.1) with a certificate, else plain HTTP/1.1 and h2c (prior knowledge).
pub(crate) fn public_server(
    listener: TcpListener,
    state: PublicState,
    options: &ServerOptions,
    tls: Option<&(PathBuf, PathBuf)>,
) -> Result<Listener, HttpSetupError> {
    let state = web::Data::new(state);
    let app = move || {
        App::new()
            .app_data(state.clone())
            .wrap(actix_web::middleware::from_fn(observe))
            .configure(public_routes)
    };
    let Some((cert, key)) = tls else {
        return plain_public_server(listener, app, options);
    };
    let server = HttpServer::new(app)
        .shutdown_timeout(options.shutdown_timeout.as_secs())
        .disable_signals()
        .listen_rustls_0_23(listener, tls::server_config(cert, key)?)
        .map_err(tls::TlsError::Listen)?;
    Ok(Listener(server.workers(options.http_workers()).run()))
}

/// HTTP/1.1 and h2c on a plain socket, as `HttpServer::listen_auto_h2c` builds it (its
/// defaults: keep-alive and request heads 5 s, disconnect 1 s, idle connections closed
/// on a graceful stop) but with a deadline for a connection's first bytes ([`plain`]).
fn plain_public_server<F, I>(
    listener: TcpListener,
    app: F,
    options: &ServerOptions,
) -> Result<Listener, HttpSetupError>
where
    F: Fn() -> App<I> + Send + Clone + 'static,
    I: actix_web::dev::ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<EitherBody<actix_web::body::BoxBody>>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
{
    use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
    let addr = listener.local_addr().map_err(tls::TlsError::Listen)?;
    let builder = actix_server::Server::build()
        .workers(options.http_workers())
        .shutdown_timeout(options.shutdown_timeout.as_secs())
        .disable_signals();
    let stopping = builder.graceful_shutdown_signal();
    let builder = builder
        .listen("metatiled-public", listener, move || {
            let (stopping, silent_until) = (stopping.clone(), stopping.clone());
            let http = actix_http::HttpService::build()
                .keep_alive(actix_http::KeepAlive::Timeout(Duration::from_secs(5)))
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                .h1_allow_half_closed(true)
                .local_addr(addr)
                .graceful_shutdown_signal(move || {
                    let stopping = stopping.clone();
                    async move { stopping.notified().await }
                })
                .finish(map_config(
                    app()
                        .into_factory()
                        .map_err(|e: actix_web::Error| e.error_response()),
                    |_| actix_web::dev::AppConfig::default(),
                ));
            fn_service(move |io| {
                let stopping = silent_until.clone();
                async move { plain::protocol_of(io, async move { stopping.notified().await }).await }
            })
            .and_then(http)
        })
        .map_err(tls::TlsError::Listen)?;
    Ok(Listener(builder.run()))
}

#[cfg(test)]
mod tests {
    use super::PublicPath;

    #[test]
    fn public_paths_are_told_apart_by_their_segments() {
        assert_eq!(
            PublicPath::classify("/osm/15/18654/9486.png"),
            PublicPath::Tile(["osm", "15", "18654", "9486.png"])
        );
        assert_eq!(
            PublicPath::classify("/osm/tile.json"),
            PublicPath::TileJson("osm")
        );
        assert_eq!(
            PublicPath::classify("/assets/leaflet/images/layers.png"),
            PublicPath::Asset("images/layers.png")
        );
        assert_eq!(
            PublicPath::classify("/%2e%2e/1/0/0.png"),
            PublicPath::Tile(["%2e%2e", "1", "0", "0.png"]),
            "never decoded: the style check refuses the '%'"
        );
        for broken in ["/osm/1/0.png", "/osm/1/0/0/0.png", "//1/0/0/x.png"] {
            assert_eq!(
                PublicPath::classify(broken),
                PublicPath::Unknown {
                    looks_like_tile: true
                },
                "{broken}"
            );
        }
        assert_eq!(
            PublicPath::classify("/nothing-here"),
            PublicPath::Unknown {
                looks_like_tile: false
            }
        );
    }
}
