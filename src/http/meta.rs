//! Everything public that is not a tile: TileJSON, the viewer page and its assets,
//! health, readiness and metrics.

use super::error::HttpError;
use super::PublicState;
use crate::style::Style;
use crate::tile::StyleName;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

const VIEWER_HTML: &str = include_str!("../../assets/viewer.html");
const LEAFLET_JS: &[u8] = include_bytes!("../../assets/vendor/leaflet/leaflet.js");
const LEAFLET_CSS: &[u8] = include_bytes!("../../assets/vendor/leaflet/leaflet.css");
const LEAFLET_LAYERS_PNG: &[u8] = include_bytes!("../../assets/vendor/leaflet/images/layers.png");
const LEAFLET_LAYERS_2X_PNG: &[u8] =
    include_bytes!("../../assets/vendor/leaflet/images/layers-2x.png");

/// The zoom the viewer opens at: the deepest at which the data's bounds fit ~1000 px.
fn initial_zoom(bounds: [f64; 4], style: &Style) -> u8 {
    let span = (bounds[2] - bounds[0])
        .max((bounds[3] - bounds[1]) * 2.0)
        .max(1e-6);
    let fit = (360.0 * 1000.0 / (256.0 * span)).log2().floor();
    (fit.max(0.0) as u8).clamp(style.minzoom, style.maxzoom.min(18))
}

fn center(state: &PublicState, style: &Style) -> [f64; 3] {
    let b = state.bounds;
    [
        (b[0] + b[2]) / 2.0,
        (b[1] + b[3]) / 2.0,
        f64::from(initial_zoom(b, style)),
    ]
}

/// `GET /{style}/tile.json`: TileJSON 3.0.0 for one style.
pub fn tilejson(
    req: &HttpRequest,
    style: &str,
    state: &PublicState,
) -> Result<HttpResponse, HttpError> {
    let name = StyleName::parse(style)
        .map_err(|e| HttpError::BadRequest(format!("bad style name: {e}")))?;
    let style = state
        .service
        .styles()
        .get(&name)
        .filter(|s| s.scale == 1.0)
        .ok_or_else(|| HttpError::NotFound(format!("unknown style {name}")))?;
    let conn = req.connection_info();
    let base = format!("{}://{}", conn.scheme(), conn.host());
    let body = json!({
        "tilejson": "3.0.0",
        "name": style.name.as_str(),
        "scheme": "xyz",
        "tiles": [format!("{base}/{}/{{z}}/{{x}}/{{y}}.png", style.name)],
        "minzoom": style.minzoom,
        "maxzoom": style.maxzoom,
        "bounds": state.bounds,
        "center": center(state, style),
        "attribution": style.attribution,
    });
    let mut res = HttpResponse::Ok();
    if let Some(origin) = &state.cors_origin {
        res.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()));
    }
    Ok(res
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(body))
}

/// `GET /`: a slippy map of every style.
pub async fn viewer(state: web::Data<PublicState>) -> HttpResponse {
    let styles: Vec<_> = state
        .service
        .styles()
        .iter()
        .filter(|s| s.scale == 1.0)
        .map(|s| {
            let retina = StyleName::parse(&format!("{}@2x", s.name))
                .ok()
                .is_some_and(|n| state.service.styles().get(&n).is_some());
            json!({
                "name": s.name.as_str(),
                "minzoom": s.minzoom,
                "maxzoom": s.maxzoom,
                "attribution": s.attribution,
                "center": center(&state, s),
                "retina": retina,
            })
        })
        .collect();
    let config = json!({ "styles": styles }).to_string();
    // JSON inside a <script>: escape '<' so no string can close the tag.
    let html = VIEWER_HTML.replace("/*CONFIG*/null", &config.replace('<', "\\u003c"));
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .content_type("text/html; charset=utf-8")
        .body(html)
}

/// `GET /assets/leaflet/...`: the viewer's embedded Leaflet.
pub fn asset(path: &str) -> Result<HttpResponse, HttpError> {
    let (bytes, mime) = match path {
        "leaflet.js" => (LEAFLET_JS, "text/javascript; charset=utf-8"),
        "leaflet.css" => (LEAFLET_CSS, "text/css; charset=utf-8"),
        "images/layers.png" => (LEAFLET_LAYERS_PNG, "image/png"),
        "images/layers-2x.png" => (LEAFLET_LAYERS_2X_PNG, "image/png"),
        _ => return Err(HttpError::NotFound("no such asset".into())),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .content_type(mime)
        .body(bytes))
}

/// `GET /health`: 200 while the process runs.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("text/plain")
        .body("ok\n")
}

/// `GET /ready`: 200 only when the database answers.
pub async fn ready(state: web::Data<PublicState>) -> HttpResponse {
    let ok = match state.db.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    };
    let mut res = if ok {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    res.insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("text/plain")
        .body(if ok {
            "ready\n"
        } else {
            "database unavailable\n"
        })
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(state: web::Data<PublicState>) -> HttpResponse {
    state.service.update_gauges();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("text/plain; version=0.0.4")
        .body(state.service.metrics().render_text())
}
