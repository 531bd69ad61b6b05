//! The actix-web front end: the only module that knows about HTTP.

use crate::config::Settings;
use crate::source::Pool;
use actix_web::{dev::Server, web, App, HttpResponse, HttpServer};

async fn health() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn ready(pool: web::Data<Pool>) -> HttpResponse {
    match pool.get().await {
        Ok(client) if client.simple_query("SELECT 1").await.is_ok() => HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n"),
        _ => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("database unavailable\n"),
    }
}

/// The public listener.
pub fn public_server(settings: &Settings, pool: Pool) -> std::io::Result<Server> {
    let pool = web::Data::new(pool);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(pool.clone())
            .route("/health", web::get().to(health))
            .route("/ready", web::get().to(ready))
    })
    .bind(settings.server.listen)?;
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    Ok(server.run())
}
