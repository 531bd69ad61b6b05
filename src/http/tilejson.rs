//! `GET /{style}/tile.json` (and `/{style}@2x/tile.json`): TileJSON 3.0.0 for one style,
//! with its tile size, the data's bounds and centre, and tile URLs on
//! `server.public_url` (or the request's own origin, never a forwarded value from an
//! untrusted peer).

use super::edge::BaseUrl;
use super::error::HttpError;
use super::PublicState;
use crate::area::LonLatBbox;
use crate::style::Style;
use crate::tile::StyleName;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

/// The zoom the viewer opens at: the deepest at which the data's bounds fit ~1000 px.
fn initial_zoom(bounds: LonLatBbox, style: &Style) -> u8 {
    let bounds = bounds.to_array();
    let span = (bounds[2] - bounds[0])
        .max((bounds[3] - bounds[1]) * 2.0)
        .max(1e-6);
    let fit = (360.0 * 1000.0 / (256.0 * span)).log2().floor();
    (fit.max(0.0) as u8).clamp(style.minzoom, style.maxzoom.min(18))
}

/// `[lon, lat, zoom]`: the style's own centre, else the middle of the data at a zoom
/// that shows all of it.
pub(super) fn center(state: &PublicState, style: &Style) -> [f64; 3] {
    if let Some(c) = style.center {
        return c;
    }
    let (lon, lat) = state.bounds.center();
    [lon, lat, f64::from(initial_zoom(state.bounds, style))]
}

/// The tile URL template of a style (`osm` or `osm@2x`) under `base`.
// Hook for versioned URLs (style hot reload): the style's version goes into this
// template, e.g. `{base}/{name}/{z}/{x}/{y}.png?v={version}`.
pub(super) fn tile_template(base: &str, style: &Style) -> String {
    let suffix = if style.scale == 1.0 { "" } else { "@2x" };
    format!("{base}/{}/{{z}}/{{x}}/{{y}}{suffix}.png", style.base_name)
}

/// `GET /{style}/tile.json`: TileJSON 3.0.0 for one style; `/{style}@2x/tile.json` for
/// its 512 px variant.
pub(super) fn tilejson(
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
        .ok_or_else(|| HttpError::NotFound(format!("unknown style {name}")))?;
    let BaseUrl { url: base, vary } = state.edge.base_url(req);
    let mut body = json!({
        "tilejson": "3.0.0",
        "name": style.name.as_str(),
        "description": style.description,
        "scheme": "xyz",
        "tiles": [tile_template(&base, style)],
        "tileSize": style.tile_size,
        "minzoom": style.minzoom,
        "maxzoom": style.maxzoom,
        "bounds": state.bounds,
        "center": center(state, style),
        "attribution": style.attribution,
    });
    if style.interactivity.is_some() {
        body["grids"] = json!([format!("{base}/{}/{{z}}/{{x}}/{{y}}.grid.json", style.name)]);
    }
    let mut res = HttpResponse::Ok();
    if let Some(vary) = vary {
        res.insert_header((header::VARY, vary));
    }
    Ok(res
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(body))
}
