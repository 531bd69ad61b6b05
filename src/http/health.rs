//! `GET /health`, `GET /ready` and `GET /metrics`: what orchestrators and monitoring
//! poll.

use super::error::HttpError;
use super::PublicState;
use actix_web::http::header;
use actix_web::{web, HttpResponse};

/// `GET /health`: 200 while the process runs.
pub(super) async fn health() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("text/plain")
        .body("ok\n")
}

/// `GET /ready`: 200 only when the database answers, and 503 while the node drains
/// before stopping (a balancer takes it out of rotation while it still serves).
/// Answered from the source's health state at once (a probe checks the database in the
/// background when nothing has answered lately); without one, by a query.
pub(super) async fn ready(state: web::Data<PublicState>) -> Result<HttpResponse, HttpError> {
    if state.drain.is_draining() {
        return Err(HttpError::Draining);
    }
    let ok = match state.service.source_health() {
        Some(health) => {
            health.suspect();
            health.is_healthy()
        }
        None => match state.db.get().await {
            Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        },
    };
    if !ok {
        return Err(HttpError::NotReady);
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("text/plain")
        .body("ready\n"))
}

/// `GET /metrics`: Prometheus text format.
pub(super) async fn metrics(state: web::Data<PublicState>) -> HttpResponse {
    state.service.update_gauges();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("text/plain; version=0.0.4")
        .body(state.service.metrics().render_text())
}
