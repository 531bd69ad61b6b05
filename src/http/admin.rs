//! The admin listener: operator endpoints that never share a port with the public app.
//! Handlers only read the request, call [`Admin`](crate::service::admin::Admin) and
//! shape the answer.
//!
//! - Every request needs `Authorization: Bearer <admin.token>` when a token is set
//!   (compared in constant time), else 401.
//! - Bodies are capped at `admin.max_body_bytes` (413 beyond), counted as they stream;
//!   JSON bodies, held whole while parsed, at `admin.max_json_bytes`. At most
//!   [`MAX_BODIES_AT_ONCE`] bodies are read and turned into work at a time (the others
//!   wait their turn), so the memory they take is bounded whatever the clients send.
//! - `POST /expire`: JSON (`tiles`, `bbox` or `geometry` plus options), or `text/plain`
//!   `z/x/y` lines streamed to the parser (options in the query string). 200 with the
//!   counts, or 202 `{"id": ...}` for a job.
//! - `POST /seed`: JSON, always a job (202).
//! - `POST /export`: JSON, always a job (202), writing a file into `export.dir`.
//! - `GET /jobs`, `GET /jobs/{id}`, `DELETE /jobs/{id}` (cancel), `GET /status`,
//!   `GET /health`.

use crate::service::admin::{Admin, ExpireAnswer, JobAccepted};
use crate::service::TileService;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use actix_web::middleware::Next;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::BytesMut;
use futures_util::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::net::TcpListener;
use std::sync::Arc;

use super::error::HttpError;
use super::{Listener, ServerOptions};

/// Requests whose bodies are read and turned into work at the same time.
pub(crate) const MAX_BODIES_AT_ONCE: usize = 2;

/// The largest bodies accepted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    /// Any body (text lists stream under it).
    pub any: usize,
    /// JSON bodies, held whole.
    pub json: usize,
}

/// What the admin handlers share.
pub(crate) struct AdminState {
    service: Arc<TileService>,
    admin: Arc<Admin>,
    /// SHA-256 of the bearer token, when one is required (hashing first makes the
    /// comparison constant-time whatever the lengths).
    token_digest: Option<[u8; 32]>,
    limits: BodyLimits,
    /// Turns of reading a body ([`MAX_BODIES_AT_ONCE`]).
    bodies: tokio::sync::Semaphore,
    /// `POST /styles/reload`; absent in tests that build no reloader.
    reloader: Option<Arc<crate::service::reload::StyleReloader>>,
}

impl AdminState {
    /// `token`: the bearer token every request must carry, if any.
    pub(crate) fn new(admin: Arc<Admin>, token: Option<&str>, limits: BodyLimits) -> Self {
        Self {
            service: admin.service().clone(),
            admin,
            token_digest: token.map(digest),
            limits: BodyLimits {
                any: limits.any,
                json: limits.json.min(limits.any),
            },
            bodies: tokio::sync::Semaphore::new(MAX_BODIES_AT_ONCE),
            reloader: None,
        }
    }

    pub(crate) fn with_reloader(
        mut self,
        reloader: Arc<crate::service::reload::StyleReloader>,
    ) -> Self {
        self.reloader = Some(reloader);
        self
    }

    /// Waits for a turn to read a body and act on it.
    async fn body_turn(&self) -> Result<tokio::sync::SemaphorePermit<'_>, HttpError> {
        self.bodies.acquire().await.map_err(|_| HttpError::Internal)
    }

    /// Whether the request carries the token (or none is needed).
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.token_digest else {
            return true;
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        match given {
            Some(token) => constant_time_eq(&digest(token), expected),
            None => false,
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares without an early exit, so the time taken says nothing about where the
/// bytes differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// 401 for every request without the token, before any handler runs.
async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let allowed = req
        .app_data::<web::Data<AdminState>>()
        .is_some_and(|state| state.authorized(req.headers()));
    if !allowed {
        return Err(HttpError::Unauthorized.into());
    }
    next.call(req).await
}

/// 413 at once when the declared length is over the cap.
fn check_declared_length(req: &HttpRequest, limit: usize) -> Result<(), HttpError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => Err(HttpError::PayloadTooLarge(limit)),
        _ => Ok(()),
    }
}

/// The whole body, up to `limit` bytes (JSON is parsed whole).
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<bytes::Bytes, HttpError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| HttpError::BadRequest(format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(HttpError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn is_text(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/plain")
        })
}

fn accepted(job: &JobAccepted) -> HttpResponse {
    HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/jobs/{}", job.id)))
        .json(job)
}

/// `POST /styles/reload`: reads the style files again; answers what changed and what
/// was refused (the old version of a refused style keeps serving).
async fn post_reload(state: web::Data<AdminState>) -> Result<HttpResponse, HttpError> {
    let Some(reloader) = &state.reloader else {
        return Err(HttpError::NotFound("no style reloader".into()));
    };
    Ok(HttpResponse::Ok().json(reloader.reload().await))
}

/// `POST /expire`.
async fn post_expire(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, HttpError> {
    let text = is_text(&req);
    let limit = if text {
        state.limits.any
    } else {
        state.limits.json
    };
    check_declared_length(&req, limit)?;
    let _turn = state.body_turn().await?;
    let admin = &state.admin;
    let (spec, input) = if text {
        let spec = admin.parse_expire_text_options(req.query_string())?;
        let (feed, built) = admin.text_input(spec.plan.max_zoom).await;
        pump(payload, feed, limit).await?;
        (spec, built.await?)
    } else {
        let body = read_body(payload, limit).await?;
        let (spec, input) = admin.parse_expire_json(&body)?;
        let max_zoom = spec.plan.max_zoom;
        (spec, admin.build_json_input(input, max_zoom).await?)
    };
    Ok(match admin.expire(spec, input).await? {
        ExpireAnswer::Done(report) => HttpResponse::Ok().json(report),
        ExpireAnswer::Job(job) => accepted(&job),
    })
}

/// Streams the body into the tile-list parser, counting bytes against the cap.
async fn pump(
    mut payload: web::Payload,
    feed: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    limit: usize,
) -> Result<(), HttpError> {
    let mut received = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                let message = format!("cannot read the body: {e}");
                let _ = feed.send(Err(std::io::Error::other(e.to_string()))).await;
                return Err(HttpError::BadRequest(message));
            }
        };
        received += chunk.len();
        if received > limit {
            return Err(HttpError::PayloadTooLarge(limit));
        }
        if feed.send(Ok(chunk)).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// `POST /export`: always a job (202); the file appears in `export.dir` when done.
async fn post_export(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, HttpError> {
    check_declared_length(&req, state.limits.json)?;
    let _turn = state.body_turn().await?;
    let body = read_body(payload, state.limits.json).await?;
    let spec = state.admin.parse_export_json(&body)?;
    Ok(accepted(&state.admin.export(spec).await?))
}

/// `POST /seed`.
async fn post_seed(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, HttpError> {
    check_declared_length(&req, state.limits.json)?;
    let _turn = state.body_turn().await?;
    let body = read_body(payload, state.limits.json).await?;
    let spec = state.admin.parse_seed_json(&body)?;
    Ok(accepted(&state.admin.seed(spec).await?))
}

fn job_id(text: &str) -> Result<u64, HttpError> {
    text.parse()
        .map_err(|_| HttpError::NotFound(format!("no job {text}")))
}

/// `GET /jobs`: recent jobs, newest first.
async fn list_jobs(state: web::Data<AdminState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "jobs": state.admin.jobs().list() }))
}

/// `GET /jobs/{id}`.
async fn get_job(
    id: web::Path<String>,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, HttpError> {
    let report = state.admin.job_report(job_id(&id)?)?;
    Ok(HttpResponse::Ok().json(report))
}

/// `DELETE /jobs/{id}`: cancel (the report shows `cancelled` once the job stops).
async fn cancel_job(
    id: web::Path<String>,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, HttpError> {
    let report = state.admin.cancel_job(job_id(&id)?)?;
    Ok(HttpResponse::Ok().json(report))
}

/// `GET /status`: workers, queue depths, memory cache, jobs, client budgets and the top
/// clients by renders caused, this node and the fleet as the database sees it.
async fn status(state: web::Data<AdminState>) -> HttpResponse {
    let pool = state.service.pool().stats();
    let mem = state.service.cache().memory_stats();
    let (queued, running) = state.admin.jobs().active();
    let node = state.admin.fleet().map(|f| {
        json!({
            "id": f.node_id(),
            "cache_shared": f.cache_shared(),
            "draining": f.drain().is_draining(),
        })
    });
    let fleet = match state.admin.fleet_status().await {
        None => serde_json::Value::Null,
        Some(Ok(nodes)) => json!(nodes),
        Some(Err(e)) => json!({ "error": e }),
    };
    let limits = match state.service.limits() {
        Some(limits) => json!({
            "enabled": true,
            "tracked_clients": limits.tracked_clients(),
            "top_clients": limits.top_clients(),
        }),
        None => json!({ "enabled": false }),
    };
    HttpResponse::Ok().json(json!({
        "node": node,
        "fleet": fleet,
        "limits": limits,
        "render": {
            "threads": pool.threads,
            "fetch_slots": pool.fetch_slots,
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
        "jobs": {
            "queued": queued,
            "running": running,
            "area_squares_held": state.admin.area_squares_held(),
        },
        "styles": state.service.styles().iter().filter(|s| s.scale == 1.0).map(|s| json!({
            "name": s.name.as_str(),
            "minzoom": s.minzoom,
            "maxzoom": s.maxzoom,
            "hidpi": state.service.styles().has_hidpi(&s.name),
        })).collect::<Vec<_>>(),
        "database": state.service.source_health().map(|h| {
            let health = h.snapshot();
            json!({
                "up": health.healthy,
                "since": health.since.map(httpdate::fmt_http_date),
                "cause": health.cause.as_deref(),
                "outages": health.outages,
            })
        }),
    }))
}

async fn no_route() -> Result<HttpResponse, HttpError> {
    Err(HttpError::NotFound("not found".into()))
}

pub(crate) fn admin_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/status", web::get().to(status))
        .route("/health", web::get().to(super::health::health))
        .route("/expire", web::post().to(post_expire))
        .route("/seed", web::post().to(post_seed))
        .route("/styles/reload", web::post().to(post_reload))
        .route("/export", web::post().to(post_export))
        .route("/jobs", web::get().to(list_jobs))
        .service(
            web::resource("/jobs/{id}")
                .route(web::get().to(get_job))
                .route(web::delete().to(cancel_job)),
        )
        .default_service(web::to(no_route));
}

pub(crate) fn admin_server(
    listener: TcpListener,
    state: AdminState,
    options: &ServerOptions,
) -> std::io::Result<Listener> {
    let state = web::Data::new(state);
    Ok(Listener(
        HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(actix_web::middleware::from_fn(require_token))
                .configure(admin_routes)
        })
        .workers(1)
        .shutdown_timeout(options.shutdown_timeout.as_secs())
        .disable_signals()
        .listen(listener)?
        .run(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_equal_only_when_they_are_equal() {
        assert!(constant_time_eq(&digest("s3cret"), &digest("s3cret")));
        assert!(!constant_time_eq(&digest("s3cret"), &digest("s3cret ")));
        assert!(!constant_time_eq(&digest("s3cret"), &digest("")));
    }
}
