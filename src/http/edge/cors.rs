//! CORS on every public response, errors included, and answers to preflights: a page
//! on another origin reads a 404 as a 404 (not "failed to fetch") and reads a tile's
//! ETag and a 429's Retry-After.

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::HttpResponse;

/// Response headers a cross-origin script may read besides the CORS-safelisted ones.
const EXPOSE: &str =
    "ETag, Last-Modified, Retry-After, RateLimit, RateLimit-Policy, Metatiled-Placeholder";
/// Request headers a cross-origin request may send (validators, the API key).
const ALLOW_HEADERS: &str = "If-None-Match, If-Modified-Since, X-Api-Key";
/// How long a browser may keep a preflight answer (a day).
const PREFLIGHT_MAX_AGE: &str = "86400";

/// The CORS answer of the public listener: one `Access-Control-Allow-Origin` value
/// (`server.cors_origin`, `*` by default) for every response; none when it is empty.
#[derive(Debug, Clone)]
pub(crate) struct Cors {
    origin: Option<HeaderValue>,
}

impl Cors {
    pub(crate) fn new(origin: Option<HeaderValue>) -> Self {
        Self { origin }
    }

    /// Adds the CORS headers to a response (two shared values: no allocation).
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        if let Some(origin) = &self.origin {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSE),
            );
        }
    }

    /// The answer to any `OPTIONS` request: 204 with what may be asked, whatever path.
    pub(crate) fn preflight(&self) -> HttpResponse {
        let mut res = HttpResponse::NoContent();
        res.insert_header((header::ALLOW, "GET, HEAD, OPTIONS"));
        if self.origin.is_some() {
            res.insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, OPTIONS"))
                .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE));
        }
        res.insert_header((header::CACHE_CONTROL, "public, max-age=86400"));
        let mut res = res.finish();
        self.apply(res.headers_mut());
        res
    }
}
