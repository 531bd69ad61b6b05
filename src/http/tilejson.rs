//! `GET /{style}/tile.json`: TileJSON 3.0.0 for one style, with bounds and centre from
//! the imported data.

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

/// `[lon, lat, zoom]`: the middle of the data, at a zoom that shows all of it.
pub(super) fn center(state: &PublicState, style: &Style) -> [f64; 3] {
    let (lon, lat) = state.bounds.center();
    [lon, lat, f64::from(initial_zoom(state.bounds, style))]
}

/// `GET /{style}/tile.json`: TileJSON 3.0.0 for one style.
pub(super) fn tilejson(
    req: &HttpRequest,
    style: &str,
    state: &PublicState,
) -> Result<HttpResponse, HttpError> {
    let name = StyleName::parse(style)
        .map_err(|e| HttpError::BadRequest(format!("bad style name: {e}")))?;
    if let Some(base) = name.as_str().strip_suffix("@2x") {
        return Err(HttpError::NotFound(format!(
            "no style {name}: high-DPI tiles of {base} are in /{base}/tile.json, as {{y}}@2x.png"
        )));
    }
    let style = state
        .service
        .styles()
        .get(&name)
        .filter(|s| s.scale == 1.0)
        .ok_or_else(|| HttpError::NotFound(format!("unknown style {name}")))?;
    let conn = req.connection_info();
    let base = format!("{}://{}", conn.scheme(), conn.host());
    let mut body = json!({
        "tilejson": "3.0.0",
        "name": style.name.as_str(),
        "description": style.description,
        "scheme": "xyz",
        "tiles": [format!("{base}/{}/{{z}}/{{x}}/{{y}}.png", style.name)],
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
    if let Some(origin) = &state.cors_origin {
        res.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()));
    }
    Ok(res
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(body))
}
