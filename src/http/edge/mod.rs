//! The public edge: what the public listener believes about a request before any tile
//! is looked up, and what every public response carries.
//!
//! - [`proxies`]: the client's address and the origin it used, from forwarded headers
//!   of trusted proxies only.
//! - [`cors`]: CORS headers on every response, preflights.
//! - here: [`Edge`], which puts them together with `server.public_url` (the base of
//!   every URL the server writes) and the styles' access rules (API keys, origins).
//!
//! Budgets (429) are the service's ([`crate::service::limits`]); their headers are
//! written by `error.rs`, with every other status.

pub(crate) mod cors;
pub(crate) mod proxies;

use crate::service::access::{origin_allowed, referer_origin, ApiKeys, Denied};
use crate::service::limits::ClientId;
use crate::style::Style;
use actix_web::http::header::{self, HeaderName};
use actix_web::HttpRequest;
use cors::Cors;
use proxies::{TrustedProxies, FORWARDED_VARY};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// The request header that may carry an API key (else `?key=`).
const API_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");

/// What the public handlers believe about requests, and add to responses.
pub(crate) struct Edge {
    pub(crate) proxies: TrustedProxies,
    pub(crate) cors: Cors,
    /// `server.public_url` without a trailing `/`.
    public_url: Option<String>,
    /// The listener speaks TLS (the scheme of URLs built from the request).
    tls: bool,
    keys: Arc<ApiKeys>,
    /// The listener's own address: the host of URLs for a request with no `Host`.
    listen_host: String,
}

/// The base of the URLs a response writes, and whether it came from request headers a
/// shared cache must vary on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseUrl {
    pub url: String,
    /// `Vary` value to send with a response that embeds this URL, if any.
    pub vary: Option<&'static str>,
}

impl Edge {
    pub(crate) fn new(
        proxies: TrustedProxies,
        cors: Cors,
        public_url: Option<&str>,
        tls: bool,
        keys: Arc<ApiKeys>,
        listen_addr: std::net::SocketAddr,
    ) -> Self {
        Self {
            proxies,
            cors,
            public_url: public_url.map(|u| u.trim_end_matches('/').to_string()),
            tls,
            keys,
            listen_host: listen_addr.to_string(),
        }
    }

    fn peer(req: &HttpRequest) -> IpAddr {
        req.peer_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip())
    }

    /// The client's address after trusted proxies.
    pub(crate) fn client_addr(&self, req: &HttpRequest) -> IpAddr {
        let peer = Self::peer(req);
        if self.proxies.is_empty() {
            return peer;
        }
        self.proxies.client(peer, req.headers())
    }

    /// `server.public_url`, else `scheme://host` of this request: the `Host` (or
    /// HTTP/2 `:authority`) it was sent to, overridden by a trusted proxy's forwarded
    /// host and scheme. Never a forwarded value of an untrusted peer.
    pub(crate) fn base_url(&self, req: &HttpRequest) -> BaseUrl {
        if let Some(url) = &self.public_url {
            return BaseUrl {
                url: url.clone(),
                vary: None,
            };
        }
        let forwarded = self.proxies.origin(Self::peer(req), req.headers());
        let (fwd_scheme, fwd_host) = forwarded.map_or((None, None), |o| (o.scheme, o.host));
        let scheme = fwd_scheme.unwrap_or_else(|| if self.tls { "https" } else { "http" }.into());
        let host = fwd_host
            .or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .or_else(|| req.uri().authority().map(|a| a.as_str()))
                    .filter(|h| proxies::is_host(h))
                    .map(str::to_string)
            })
            .unwrap_or_else(|| self.listen_host.clone());
        BaseUrl {
            url: format!("{scheme}://{host}"),
            // Built from forwarded headers only when a proxy is trusted; the Host is
            // part of every cache's key already.
            vary: (!self.proxies.is_empty()).then_some(FORWARDED_VARY),
        }
    }

    /// The style's access rules for this request: `Ok(Some(key))` when the style uses
    /// keys (the key is then the client whose budgets are spent), `Ok(None)` when it
    /// has no rule against it.
    pub(crate) fn check_access(
        &self,
        style: &Style,
        req: &HttpRequest,
    ) -> Result<Option<ClientId>, Denied> {
        let access = &style.access;
        if !access.referers.is_empty() {
            let headers = req.headers();
            let origin = headers
                .get(header::ORIGIN)
                .and_then(|v| v.to_str().ok())
                .filter(|o| *o != "null")
                .or_else(|| {
                    headers
                        .get(header::REFERER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(referer_origin)
                });
            if !origin_allowed(access, origin) {
                return Err(Denied::Origin);
            }
        }
        if !access.key_required {
            return Ok(None);
        }
        let key = api_key(req).ok_or(Denied::MissingKey)?;
        self.keys.check(key, style.base_name.as_str())?;
        Ok(Some(ClientId::Key(key.into())))
    }
}

/// The API key of a request: the `X-Api-Key` header, else `?key=`.
fn api_key(req: &HttpRequest) -> Option<&str> {
    if let Some(key) = req.headers().get(API_KEY_HEADER) {
        return key.to_str().ok().filter(|k| !k.is_empty());
    }
    req.query_string()
        .split('&')
        .find_map(|pair| pair.strip_prefix("key="))
        .filter(|k| !k.is_empty())
}
