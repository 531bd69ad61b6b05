//! `[purge]`: the surrogate-key header of tile responses and the caches downstream that
//! are told when metatiles change.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Distinct changes waiting per target; beyond it new ones are dropped (and counted):
/// a 10,000-metatile expiry fits ten times over.
pub const DEFAULT_PURGE_QUEUE: usize = 100_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PurgeSettings {
    /// Response header naming each tile's surrogate keys (`{style}/{z}/{x}/{y}` of its
    /// metatile, and `{style}`): `Surrogate-Key` (Fastly; Varnish via VCL), `xkey`
    /// (Varnish's xkey vmod), `Cache-Tag` (Cloudflare; comma-separated). Empty = none.
    pub key_header: String,
    /// Where changes are sent. None by default. In a fleet, configure them on the one
    /// node that sends purges.
    pub targets: Vec<TargetSettings>,
    /// Distinct changes waiting per target; beyond, new ones are dropped (counted).
    pub queue: usize,
    /// Changes (metatiles or styles) per batch at most.
    pub batch_max: usize,
    /// How long a batch gathers changes after the first one, in milliseconds.
    pub batch_delay_ms: u64,
    /// Retries of a failed request (network error, 408, 429, 5xx) before its changes are
    /// given up (counted as failed).
    pub retries: u32,
    /// Delay before the first retry, in milliseconds; doubled each time, up to 30 s.
    pub backoff_ms: u64,
    /// Timeout of one request, in seconds.
    pub timeout_secs: u64,
}

impl Default for PurgeSettings {
    fn default() -> Self {
        Self {
            key_header: "Surrogate-Key".into(),
            targets: Vec::new(),
            queue: DEFAULT_PURGE_QUEUE,
            batch_max: 1000,
            batch_delay_ms: 100,
            retries: 5,
            backoff_ms: 500,
            timeout_secs: 10,
        }
    }
}

/// How a target is told.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// One request per batch (split to keep headers short) with the keys, space
    /// separated, in `header`: Varnish's `xkey.purge(req.http.xkey)`, Fastly-style.
    Keys,
    /// One request per tile URL (64 per metatile) to `url` + the tile's path: Varnish's
    /// `return (purge)`. A style change cannot be listed as URLs: use keys for that.
    Urls,
    /// A `POST` of JSON `{"keys": [...], "metatiles": [...], "styles": [...]}` per
    /// batch (plus `"urls"` with `with_urls`), for CDNs with their own APIs.
    Webhook,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetSettings {
    /// Name in logs and metrics (`target` label); default `{kind}{index}`.
    #[serde(default)]
    pub name: Option<String>,
    pub kind: TargetKind,
    /// `keys`, `webhook`: the URL requested; `urls`: the base the tile paths go under.
    pub url: String,
    /// Method of `keys` and `urls` requests (default `PURGE`; `BAN` works alike).
    #[serde(default)]
    pub method: Option<String>,
    /// Request header carrying the keys of a `keys` target (default `xkey`).
    #[serde(default)]
    pub header: Option<String>,
    /// Extra request headers (an API token, a `Host` for a `urls` target).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Webhook: also list the 64 tile URLs of each metatile (on `server.public_url`).
    #[serde(default)]
    pub with_urls: bool,
    /// Requests in flight at once for a `urls` target.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_concurrency() -> usize {
    16
}
