//! `GET|HEAD /{style}/{z}/{x}/{y}.png` (and `@2x.png`, and `.grid.json` for UTFGrids):
//! parse, ask the [`TileService`], shape the response with its cache headers, answer
//! conditional requests with 304.

use super::error::HttpError;
use super::PublicState;
use crate::cache::CachedTile;
use crate::service::limits::ClientId;
use crate::service::{ServedTile, ServiceError};
use crate::tile::{StyleName, TileCoord, TileError, MAX_ZOOM};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest accepted decimal coordinate; longer numbers cannot be a tile at zoom <= 20.
const MAX_DIGITS: usize = 10;

/// A tile URL, parsed but not yet checked against the styles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TilePath<'a> {
    /// The style as served: `osm`, or `osm@2x` for a high-DPI tile. Borrowed from the
    /// URL for the common 1x case, so a hit allocates nothing here.
    pub style: Cow<'a, str>,
    pub tile: TileCoord,
    /// A PNG tile, or the tile's UTFGrid.
    pub kind: TileKind,
}

/// What a tile URL asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TileKind {
    Png,
    Grid,
}

/// Parses the four path segments. Malformed text is a 400; well-formed numbers that name
/// no tile (x or y >= 2^z, absurdly long) are a 404. A zoom above the grid's is
/// [`ZoomBeyondGrid`], told as a 404 that names the style's own zooms.
pub(crate) fn parse_tile_path<'a>(
    style: &'a str,
    z: &str,
    x: &str,
    file: &str,
) -> Result<TilePath<'a>, ParseError<'a>> {
    let (y, hidpi, kind) = if let Some(y) = file.strip_suffix("@2x.png") {
        (y, true, TileKind::Png)
    } else if let Some(y) = file.strip_suffix(".png") {
        (y, false, TileKind::Png)
    } else if let Some(y) = file.strip_suffix(".grid.json") {
        (y, false, TileKind::Grid)
    } else {
        return Err(HttpError::BadRequest(
            "tile paths end in {y}.png, {y}@2x.png or {y}.grid.json".into(),
        )
        .into());
    };
    StyleName::check(style).map_err(|e| HttpError::BadRequest(format!("bad style name: {e}")))?;
    if style.contains('@') {
        return Err(HttpError::BadRequest(
            "bad style name: ask for {y}@2x.png, not a style with '@'".into(),
        )
        .into());
    }
    let style = if hidpi {
        let name = format!("{style}@2x");
        StyleName::check(&name)
            .map_err(|e| HttpError::BadRequest(format!("bad style name: {e}")))?;
        Cow::Owned(name)
    } else {
        Cow::Borrowed(style)
    };
    let (z, x, y) = (number(z, "z")?, number(x, "x")?, number(y, "y")?);
    if z > u64::from(MAX_ZOOM) {
        return Err(ParseError::ZoomBeyondGrid { style, z });
    }
    let tile = TileCoord::try_new(z as u32, x, y).map_err(|e| match e {
        TileError::ZoomTooHigh(_) | TileError::OutOfRange { .. } => {
            HttpError::NotFound(format!("no such tile: {e}"))
        }
        TileError::NotMetatileOrigin { .. } => not_found_tile(),
    })?;
    Ok(TilePath { style, tile, kind })
}

/// Why a tile path names no tile.
#[derive(Debug)]
pub(crate) enum ParseError<'a> {
    Http(HttpError),
    /// A zoom no style serves; the answer names the zooms of `style`.
    ZoomBeyondGrid {
        style: Cow<'a, str>,
        z: u64,
    },
}

impl From<HttpError> for ParseError<'_> {
    fn from(e: HttpError) -> Self {
        ParseError::Http(e)
    }
}

fn not_found_tile() -> HttpError {
    HttpError::NotFound("no such tile".into())
}

fn number(text: &str, what: &str) -> Result<u64, HttpError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpError::BadRequest(format!(
            "{what} must be a non-negative whole number"
        )));
    }
    if text.len() > MAX_DIGITS {
        return Err(not_found_tile());
    }
    text.parse::<u64>().map_err(|_| not_found_tile())
}

/// `GET|HEAD /{style}/{z}/{x}/{file}`, with the segments split off the raw path.
pub(crate) async fn get_tile(
    req: &HttpRequest,
    state: &PublicState,
    [style, z, x, file]: [&str; 4],
) -> Result<HttpResponse, HttpError> {
    let parsed = match parse_tile_path(style, z, x, file) {
        Ok(parsed) => parsed,
        Err(ParseError::Http(e)) => return Err(e),
        Err(ParseError::ZoomBeyondGrid { style, z }) => {
            return Err(zoom_beyond_grid(state, &style, z));
        }
    };
    let service = &state.service;
    let mut client = None;
    // Only styles with access rules need their style looked up here (the hit path).
    let style = if state.edge.has_access_rules() {
        service.style_named(&parsed.style)
    } else {
        None
    };
    if let Some(style) = style {
        client = state.edge.check_access(style, req).map_err(|denied| {
            service
                .metrics()
                .access_denied
                .with_label_values(&[denied.metric_reason()])
                .inc();
            HttpError::Forbidden(denied)
        })?;
    }
    if client.is_none() && service.limits().is_some() {
        client = Some(ClientId::ip(state.edge.client_addr(req)));
    }
    let served = match parsed.kind {
        TileKind::Png => {
            service
                .get_tile_for(&parsed.style, parsed.tile, client.as_ref())
                .await
        }
        TileKind::Grid => {
            service
                .get_grid_for(&parsed.style, parsed.tile, client.as_ref())
                .await
        }
    }
    .map_err(|e| HttpError::from_service(e, state.retry_after_secs))?;
    Ok(tile_response(req, &served, parsed.kind))
}

/// The 404 of a zoom above the grid, in the words of the style asked for.
fn zoom_beyond_grid(state: &PublicState, style: &str, z: u64) -> HttpError {
    let found = StyleName::parse(style)
        .ok()
        .and_then(|name| state.service.style(&name).ok().cloned());
    let e = match found {
        Some(s) => ServiceError::ZoomOutOfRange {
            z: u8::try_from(z).unwrap_or(u8::MAX),
            min: s.minzoom,
            max: s.maxzoom,
        },
        None => ServiceError::UnknownStyle(style.to_string()),
    };
    HttpError::from_service(e, state.retry_after_secs)
}

/// A placeholder says so, and what it was cut from.
const PLACEHOLDER_HEADER: HeaderName = HeaderName::from_static("metatiled-placeholder");

/// 200 with the tile, or 304 when the client's validators match. A placeholder has no
/// validators (it is not the tile) and says what it is.
fn tile_response(req: &HttpRequest, served: &ServedTile, kind: TileKind) -> HttpResponse {
    let tile: &CachedTile = &served.tile;
    if let Some(ancestor) = served.placeholder {
        let mut res = HttpResponse::Ok();
        if let Ok(value) = HeaderValue::from_str(served.cache_control) {
            res.insert_header((header::CACHE_CONTROL, value));
        }
        return res
            .insert_header((PLACEHOLDER_HEADER, format!("ancestor={ancestor}")))
            .insert_header((header::CONTENT_TYPE, HeaderValue::from_static("image/png")))
            .body(tile.bytes.clone());
    }
    // A stale tile's mtime may have been rewound to mark it dirty: it is no render time.
    let modified = (!served.stale).then_some(tile.rendered_at);
    let not_modified = is_not_modified(req.headers(), tile.etag.as_bytes(), modified);
    let mut res = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    // Every value below was formatted once (per style or per tile); the tile's own are
    // shared, not copied. All are valid: digits, hex and dates we formatted ourselves.
    if let Ok(value) = HeaderValue::from_str(served.cache_control) {
        res.insert_header((header::CACHE_CONTROL, value));
    }
    let mut shared = |name: HeaderName, text: &Bytes| {
        if let Ok(value) = HeaderValue::from_maybe_shared(text.clone()) {
            res.insert_header((name, value));
        }
    };
    shared(header::ETAG, tile.etag.as_bytes());
    if modified.is_some() {
        shared(header::LAST_MODIFIED, tile.rendered_at_http.as_bytes());
    }
    if not_modified {
        return res.finish();
    }
    let content_type = match kind {
        TileKind::Png => "image/png",
        TileKind::Grid => "application/json",
    };
    res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(content_type)))
        .body(tile.bytes.clone())
}

/// RFC 9110 section 13.1: If-None-Match wins over If-Modified-Since when both are sent.
pub(crate) fn is_not_modified(
    headers: &HeaderMap,
    etag: impl AsRef<[u8]>,
    modified: Option<SystemTime>,
) -> bool {
    if let Some(inm) = headers.get(header::IF_NONE_MATCH) {
        let Ok(inm) = inm.to_str() else {
            return false;
        };
        let etag = etag.as_ref();
        return inm.split(',').map(str::trim).any(|candidate| {
            candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate).as_bytes() == etag
        });
    }
    let (Some(ims), Some(modified)) = (headers.get(header::IF_MODIFIED_SINCE), modified) else {
        return false;
    };
    let Some(since) = ims
        .to_str()
        .ok()
        .and_then(|s| httpdate::parse_http_date(s).ok())
    else {
        return false;
    };
    // HTTP dates have whole seconds: compare at that precision.
    whole_seconds(modified) <= whole_seconds(since)
}

fn whole_seconds(t: SystemTime) -> Duration {
    Duration::from_secs(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

#[cfg(test)]
#[allow(clippy::too_many_arguments)] // rstest cases as arguments
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("osm", "0", "0", "0.png", "osm", 0, 0, 0)]
    #[case("osm", "15", "18654", "9486.png", "osm", 15, 18654, 9486)]
    #[case("osm", "15", "18654", "9486@2x.png", "osm@2x", 15, 18654, 9486)]
    #[case("other", "20", "1048575", "1048575.png", "other", 20, 1048575, 1048575)]
    fn good_tile_paths_parse(
        #[case] style: &str,
        #[case] z: &str,
        #[case] x: &str,
        #[case] file: &str,
        #[case] want_style: &str,
        #[case] wz: u8,
        #[case] wx: u32,
        #[case] wy: u32,
    ) {
        let p = parse_tile_path(style, z, x, file).unwrap();
        assert_eq!(p.style, want_style);
        assert_eq!(
            p.tile,
            TileCoord {
                z: wz,
                x: wx,
                y: wy
            }
        );
    }

    #[rstest]
    #[case("osm", "1", "0", "0.jpg")]
    #[case("osm", "-1", "0", "0.png")]
    #[case("osm", "1", "-0", "0.png")]
    #[case("osm", "1", "0", "a.png")]
    #[case("osm", "1", "0", ".png")]
    #[case("osm", "1", "0x1", "0.png")]
    #[case("..", "1", "0", "0.png")]
    #[case("%2e%2e", "1", "0", "0.png")]
    #[case("a/b", "1", "0", "0.png")]
    #[case("osm@2x", "1", "0", "0.png")]
    #[case("osm", "+1", "0", "0.png")]
    fn malformed_tile_paths_are_400(
        #[case] style: &str,
        #[case] z: &str,
        #[case] x: &str,
        #[case] file: &str,
    ) {
        assert!(matches!(
            parse_tile_path(style, z, x, file),
            Err(ParseError::Http(HttpError::BadRequest(_)))
        ));
    }

    #[test]
    fn zooms_above_the_grid_are_told_with_the_style() {
        assert!(matches!(
            parse_tile_path("osm", "99", "1", "1.png"),
            Err(ParseError::ZoomBeyondGrid { z: 99, .. })
        ));
    }

    #[rstest]
    #[case("osm", "1", "2", "0.png")]
    #[case("osm", "3", "0", "8.png")]
    #[case("osm", "99999999999999999999", "0", "0.png")]
    #[case("osm", "12", "18446744073709551616", "0.png")]
    fn tiles_that_cannot_exist_are_404(
        #[case] style: &str,
        #[case] z: &str,
        #[case] x: &str,
        #[case] file: &str,
    ) {
        assert!(matches!(
            parse_tile_path(style, z, x, file),
            Err(ParseError::Http(HttpError::NotFound(_)))
        ));
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn validators_decide_304() {
        let etag = "\"0123456789abcdef\"";
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let date = httpdate::fmt_http_date(t);
        let later = httpdate::fmt_http_date(t + Duration::from_secs(10));
        let earlier = httpdate::fmt_http_date(t - Duration::from_secs(10));
        assert!(is_not_modified(
            &headers(&[("if-none-match", etag)]),
            etag,
            Some(t)
        ));
        assert!(is_not_modified(
            &headers(&[("if-none-match", "\"x\", W/\"0123456789abcdef\"")]),
            etag,
            Some(t)
        ));
        assert!(is_not_modified(
            &headers(&[("if-none-match", "*")]),
            etag,
            Some(t)
        ));
        assert!(!is_not_modified(
            &headers(&[("if-none-match", "\"other\"")]),
            etag,
            Some(t)
        ));
        assert!(is_not_modified(
            &headers(&[("if-modified-since", &date)]),
            etag,
            Some(t)
        ));
        assert!(is_not_modified(
            &headers(&[("if-modified-since", &later)]),
            etag,
            Some(t)
        ));
        assert!(!is_not_modified(
            &headers(&[("if-modified-since", &earlier)]),
            etag,
            Some(t)
        ));
        assert!(!is_not_modified(
            &headers(&[("if-modified-since", &date)]),
            etag,
            None
        ));
        // A mismatching ETag wins over a matching date.
        assert!(!is_not_modified(
            &headers(&[("if-none-match", "\"other\""), ("if-modified-since", &date)]),
            etag,
            Some(t)
        ));
        assert!(!is_not_modified(
            &headers(&[("if-modified-since", "yesterday")]),
            etag,
            Some(t)
        ));
    }
}
