//! Who the client is and which origin it asked for, believing `Forwarded` /
//! `X-Forwarded-*` only from trusted proxies (`server.trusted_proxies`). The client is
//! the right-most address of the chain that is not a trusted proxy: every hop to its
//! right was added by a proxy we trust, everything to its left may be made up.

use actix_web::http::header::{HeaderMap, HeaderName};
use ipnet::IpNet;
use std::net::IpAddr;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// The request headers a response depends on when it is built from forwarded values:
/// named in `Vary` so that a shared cache keeps one copy per value.
pub(crate) const FORWARDED_VARY: &str = "Forwarded, X-Forwarded-Host, X-Forwarded-Proto";

/// The proxies whose forwarded headers count.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies {
    nets: Vec<IpNet>,
}

/// The scheme and host a client used, as a trusted proxy reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ForwardedOrigin {
    pub scheme: Option<String>,
    pub host: Option<String>,
}

impl TrustedProxies {
    pub(crate) fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer itself unless it is a trusted proxy, else the
    /// right-most untrusted hop its forwarded headers name (`Forwarded` when present,
    /// else `X-Forwarded-For`). A hop that is not an address (`unknown`, an obfuscated
    /// name) ends the walk: the proxy that reported it is taken as the client.
    pub(crate) fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if self.nets.is_empty() || !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<Option<IpAddr>> = if headers.contains_key(FORWARDED) {
            forwarded_elements(headers)
                .filter_map(|element| param(element, "for").map(parse_node))
                .collect()
        } else {
            headers
                .get_all(X_FORWARDED_FOR)
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(parse_node)
                .collect()
        };
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            match hop {
                Some(ip) if self.trusts(ip) => client = ip,
                Some(ip) => return ip,
                None => return client,
            }
        }
        client
    }

    /// Scheme and host from a trusted peer's forwarded headers (the first value of each:
    /// what the first proxy saw); `None` from an untrusted peer. Values that are not a
    /// scheme or a host name are ignored.
    pub(crate) fn origin(&self, peer: IpAddr, headers: &HeaderMap) -> Option<ForwardedOrigin> {
        if self.nets.is_empty() || !self.trusts(peer) {
            return None;
        }
        let (scheme, host) = if headers.contains_key(FORWARDED) {
            let first = |name: &str| forwarded_elements(headers).find_map(|e| param(e, name));
            (first("proto"), first("host"))
        } else {
            let first = |name: HeaderName| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split(',').next())
                    .map(str::trim)
            };
            (first(X_FORWARDED_PROTO), first(X_FORWARDED_HOST))
        };
        let scheme = scheme
            .map(str::to_ascii_lowercase)
            .filter(|s| s == "http" || s == "https");
        let host = host.filter(|h| is_host(h)).map(str::to_ascii_lowercase);
        Some(ForwardedOrigin { scheme, host })
    }
}

/// An IPv4 address mapped into IPv6 (a dual-stack socket) as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Elements of every `Forwarded` header line, in order (RFC 7239).
fn forwarded_elements(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(FORWARDED)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
}

/// The value of `name=` in one `Forwarded` element, unquoted.
fn param<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"'))
    })
}

/// A node of a forwarded chain: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711`,
/// `2001:db8::1`; anything else (`unknown`, `_hidden`) is `None`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok().map(canonical);
    }
    let (host, _port) = node.rsplit_once(':')?;
    host.parse().ok().map(canonical)
}

/// A host name or address with an optional port: nothing that could turn a URL into
/// another (no `/`, `@`, spaces, quotes).
pub(crate) fn is_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    #[test]
    fn nobody_is_trusted_by_default_not_even_loopback() {
        let p = TrustedProxies::default();
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-host", "evil.example"),
        ]);
        assert_eq!(p.client(ip("127.0.0.1"), &h), ip("127.0.0.1"));
        assert_eq!(p.origin(ip("127.0.0.1"), &h), None);
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let p = proxies(&["10.0.0.0/8", "127.0.0.1/32"]);
        // A spoofed first hop does not matter: the proxy appended the real one.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.1.1.1")]);
        assert_eq!(p.client(ip("127.0.0.1"), &h), ip("198.51.100.7"));
        // Several header lines are one list.
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(p.client(ip("10.0.0.1"), &h), ip("198.51.100.7"));
        // Every hop trusted: the left-most.
        let h = headers(&[("x-forwarded-for", "10.0.0.2, 10.0.0.3")]);
        assert_eq!(p.client(ip("10.0.0.1"), &h), ip("10.0.0.2"));
        // An untrusted peer's headers are ignored.
        let h = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(p.client(ip("192.0.2.1"), &h), ip("192.0.2.1"));
        // A hop that is no address stops the walk at the proxy that reported it.
        let h = headers(&[("x-forwarded-for", "198.51.100.7, unknown, 10.0.0.5")]);
        assert_eq!(p.client(ip("10.0.0.1"), &h), ip("10.0.0.5"));
    }

    #[test]
    fn forwarded_is_read_like_rfc_7239_says() {
        let p = proxies(&["10.0.0.0/8"]);
        let h = headers(&[(
            "forwarded",
            "for=1.2.3.4;host=evil.example, for=\"[2001:db8::7]:4711\";proto=https",
        )]);
        assert_eq!(p.client(ip("10.0.0.1"), &h), ip("2001:db8::7"));
        let o = p.origin(ip("10.0.0.1"), &h).unwrap();
        assert_eq!(o.host.as_deref(), Some("evil.example"));
        assert_eq!(o.scheme.as_deref(), Some("https"));
        // Forwarded wins over X-Forwarded-For when both are sent.
        let h = headers(&[
            ("forwarded", "for=198.51.100.1:55"),
            ("x-forwarded-for", "198.51.100.2"),
        ]);
        assert_eq!(p.client(ip("10.0.0.1"), &h), ip("198.51.100.1"));
    }

    #[test]
    fn forwarded_hosts_and_schemes_must_look_like_one() {
        let p = proxies(&["127.0.0.0/8"]);
        let h = headers(&[
            ("x-forwarded-host", "tiles.example.com:8443, other"),
            ("x-forwarded-proto", "HTTPS"),
        ]);
        let o = p.origin(ip("127.0.0.1"), &h).unwrap();
        assert_eq!(o.host.as_deref(), Some("tiles.example.com:8443"));
        assert_eq!(o.scheme.as_deref(), Some("https"));
        let h = headers(&[
            ("x-forwarded-host", "evil.example/x?"),
            ("x-forwarded-proto", "javascript"),
        ]);
        assert_eq!(
            p.origin(ip("127.0.0.1"), &h).unwrap(),
            ForwardedOrigin {
                scheme: None,
                host: None
            }
        );
    }

    #[test]
    fn mapped_ipv4_peers_match_ipv4_networks() {
        let p = proxies(&["127.0.0.1/32"]);
        let h = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(p.client(ip("::ffff:127.0.0.1"), &h), ip("198.51.100.7"));
    }
}
