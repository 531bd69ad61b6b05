//! `GET /`: a slippy map of every style for a person to look at, and the embedded
//! Leaflet it runs on (`/assets/leaflet/...`).

use super::edge::BaseUrl;
use super::error::HttpError;
use super::tilejson::{center, tile_template};
use super::PublicState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

const VIEWER_HTML: &str = include_str!("../../assets/viewer.html");
const LEAFLET_JS: &[u8] = include_bytes!("../../assets/vendor/leaflet/leaflet.js");
const LEAFLET_CSS: &[u8] = include_bytes!("../../assets/vendor/leaflet/leaflet.css");
const LEAFLET_LAYERS_PNG: &[u8] = include_bytes!("../../assets/vendor/leaflet/images/layers.png");
const LEAFLET_LAYERS_2X_PNG: &[u8] =
    include_bytes!("../../assets/vendor/leaflet/images/layers-2x.png");

/// `GET /`: a slippy map of every style, its tile URLs on `server.public_url` (or the
/// request's origin).
pub(super) async fn viewer(req: HttpRequest, state: web::Data<PublicState>) -> HttpResponse {
    let BaseUrl { url: base, vary } = state.edge.base_url(&req);
    let styles: Vec<_> = state
        .service
        .styles()
        .iter()
        .filter(|s| s.scale == 1.0)
        .map(|s| {
            let retina = state.service.styles().has_hidpi(&s.name);
            let retina_tiles = crate::tile::StyleName::parse(&format!("{}@2x", s.name))
                .ok()
                .and_then(|name| state.service.styles().get(&name))
                .map(|hidpi| tile_template(&base, hidpi));
            json!({
                "name": s.name.as_str(),
                "tiles": tile_template(&base, s),
                "retina_tiles": retina_tiles,
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
    let mut res = HttpResponse::Ok();
    if let Some(vary) = vary {
        res.insert_header((header::VARY, vary));
    }
    res.insert_header((header::CACHE_CONTROL, "no-cache"))
        .content_type("text/html; charset=utf-8")
        .body(html)
}

/// `GET /assets/leaflet/...`: the viewer's embedded Leaflet.
pub(super) fn asset(path: &str) -> Result<HttpResponse, HttpError> {
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
