//! Sending one batch to one target: requests, retries with exponential backoff, counts.

use super::metrics::{PurgeMetrics, TargetMetrics};
use super::settings::{TargetKind, TargetSettings};
use super::{tile_path, Change, PurgeError, Timing};
use futures_util::stream::{self, StreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Longest header of keys in one `keys` request: Varnish refuses headers over 8 KiB
/// (`http_req_hdr_len`), and CDNs have similar limits.
const MAX_KEYS_HEADER_BYTES: usize = 4096;
/// Longest wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The HTTP client of every target (rustls with ring and the web PKI's roots).
pub(super) fn client(timeout: Duration) -> Result<Client, reqwest::Error> {
    Client::builder()
        .timeout(timeout)
        .user_agent(concat!("metatiled/", env!("CARGO_PKG_VERSION"), " (purge)"))
        .build()
}

/// One configured target, ready to send.
pub(super) struct Target {
    name: String,
    kind: TargetKind,
    url: String,
    method: Method,
    header: HeaderName,
    headers: HeaderMap,
    with_urls: bool,
    concurrency: usize,
    public_url: String,
    client: Client,
    pub(super) metrics: TargetMetrics,
}

/// What one request amounted to.
enum Attempt {
    Done,
    /// Worth trying again (network error, 408, 429, 5xx).
    Retry(String),
    /// Will not work however often it is tried (another 4xx).
    Refused(String),
}

impl Target {
    pub(super) fn new(
        t: &TargetSettings,
        index: usize,
        client: Client,
        public_url: Option<&str>,
        metrics: &PurgeMetrics,
    ) -> Result<Self, PurgeError> {
        let kind_name = match t.kind {
            TargetKind::Keys => "keys",
            TargetKind::Urls => "urls",
            TargetKind::Webhook => "webhook",
        };
        let name = t
            .name
            .clone()
            .unwrap_or_else(|| format!("{kind_name}{index}"));
        let bad = |message: String| PurgeError::BadTarget {
            name: name.clone(),
            message,
        };
        let url = reqwest::Url::parse(&t.url).map_err(|e| bad(format!("url {:?}: {e}", t.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!("url {:?}: not http or https", t.url)));
        }
        let method = match &t.method {
            Some(m) => Method::from_bytes(m.as_bytes()).map_err(|e| bad(format!("method: {e}")))?,
            None if t.kind == TargetKind::Webhook => Method::POST,
            None => Method::from_bytes(b"PURGE").map_err(|e| bad(e.to_string()))?,
        };
        let header = HeaderName::from_bytes(t.header.as_deref().unwrap_or("xkey").as_bytes())
            .map_err(|e| bad(format!("header: {e}")))?;
        let mut headers = HeaderMap::new();
        for (k, v) in &t.headers {
            let k = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| bad(format!("header {k}: {e}")))?;
            let v = HeaderValue::from_str(v).map_err(|e| bad(format!("header {k}: {e}")))?;
            headers.insert(k, v);
        }
        Ok(Self {
            metrics: metrics.target(&name),
            name,
            kind: t.kind,
            url: t.url.trim_end_matches('/').to_string(),
            method,
            header,
            headers,
            with_urls: t.with_urls,
            concurrency: t.concurrency.max(1),
            public_url: public_url.unwrap_or("").trim_end_matches('/').to_string(),
            client,
        })
    }

    /// Sends a batch of changes, each request retried as `timing` allows.
    pub(super) async fn send(&self, batch: &[Change], timing: &Timing, stop: &CancellationToken) {
        match self.kind {
            TargetKind::Keys => {
                for chunk in key_chunks(batch) {
                    let n = chunk.len();
                    let value = chunk.join(" ");
                    let outcome = self
                        .with_retries(timing, stop, || self.keys_request(&value))
                        .await;
                    self.count(outcome, n);
                }
            }
            TargetKind::Urls => {
                let mut skipped = 0;
                let paths: Vec<String> = batch
                    .iter()
                    .flat_map(|change| match change {
                        Change::Metatile(style, meta) => {
                            meta.tiles().map(|t| tile_path(style, t)).collect()
                        }
                        Change::Style(_) => {
                            skipped += 1;
                            Vec::new()
                        }
                    })
                    .collect();
                if skipped > 0 {
                    tracing::debug!(target.name = %self.name, styles = skipped, "a style change cannot be purged by URL; use a keys target");
                }
                let outcomes: Vec<bool> = stream::iter(paths)
                    .map(|path| async move {
                        let url = format!("{}{path}", self.url);
                        self.with_retries(timing, stop, || self.request(self.method.clone(), &url))
                            .await
                    })
                    .buffer_unordered(self.concurrency)
                    .collect()
                    .await;
                let ok = outcomes.iter().filter(|ok| **ok).count();
                self.count(true, ok);
                self.count(false, outcomes.len() - ok);
            }
            TargetKind::Webhook => {
                let body = self.webhook_body(batch);
                let outcome = self
                    .with_retries(timing, stop, || {
                        self.client
                            .request(self.method.clone(), &self.url)
                            .headers(self.headers.clone())
                            .json(&body)
                            .send()
                    })
                    .await;
                self.count(outcome, batch.len());
            }
        }
    }

    fn count(&self, ok: bool, items: usize) {
        if items == 0 {
            return;
        }
        if ok {
            self.metrics.sent.inc_by(items as u64);
        } else {
            self.metrics.failed.inc_by(items as u64);
        }
    }

    fn keys_request(
        &self,
        keys: &str,
    ) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> {
        self.client
            .request(self.method.clone(), &self.url)
            .headers(self.headers.clone())
            .header(self.header.clone(), keys)
            .send()
    }

    fn request(
        &self,
        method: Method,
        url: &str,
    ) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> {
        self.client
            .request(method, url)
            .headers(self.headers.clone())
            .send()
    }

    fn webhook_body(&self, batch: &[Change]) -> serde_json::Value {
        let keys: Vec<String> = batch.iter().map(Change::key).collect();
        let metatiles: Vec<_> = batch
            .iter()
            .filter_map(|c| match c {
                Change::Metatile(style, m) => {
                    Some(json!({"style": style.as_str(), "z": m.z, "x": m.x, "y": m.y}))
                }
                Change::Style(_) => None,
            })
            .collect();
        let styles: Vec<&str> = batch
            .iter()
            .filter_map(|c| match c {
                Change::Style(style) => Some(style.as_str()),
                Change::Metatile(..) => None,
            })
            .collect();
        let mut body = json!({"keys": keys, "metatiles": metatiles, "styles": styles});
        if self.with_urls {
            let urls: Vec<String> = batch
                .iter()
                .flat_map(|c| match c {
                    Change::Metatile(style, meta) => meta
                        .tiles()
                        .map(|t| format!("{}{}", self.public_url, tile_path(style, t)))
                        .collect(),
                    Change::Style(_) => Vec::new(),
                })
                .collect();
            body["urls"] = json!(urls);
        }
        body
    }

    /// Sends until done, refused, out of retries or stopped; `true` when done.
    async fn with_retries<F, Fut>(
        &self,
        timing: &Timing,
        stop: &CancellationToken,
        request: F,
    ) -> bool
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
    {
        let mut delay = timing.backoff;
        let mut attempt = 0;
        loop {
            let why = match judge(request().await) {
                Attempt::Done => {
                    self.metrics.requests_ok.inc();
                    return true;
                }
                Attempt::Refused(why) => {
                    self.metrics.requests_failed.inc();
                    tracing::warn!(target.name = %self.name, error = %why, "purge refused; not retried");
                    return false;
                }
                Attempt::Retry(why) => why,
            };
            if attempt >= timing.retries || stop.is_cancelled() {
                self.metrics.requests_failed.inc();
                tracing::warn!(target.name = %self.name, error = %why, attempts = attempt + 1, "purge failed; giving up");
                return false;
            }
            self.metrics.requests_retried.inc();
            tracing::debug!(target.name = %self.name, error = %why, retry.in_ms = delay.as_millis() as u64, "purge failed; retrying");
            // Jitter of up to a quarter, so that targets that failed together do not
            // come back together.
            let jitter = delay.mul_f64(rand::random::<f64>() * 0.25);
            tokio::select! {
                _ = tokio::time::sleep(delay + jitter) => {}
                _ = stop.cancelled() => {}
            }
            delay = (delay * 2).min(MAX_BACKOFF);
            attempt += 1;
        }
    }
}

fn judge(result: reqwest::Result<reqwest::Response>) -> Attempt {
    match result {
        Ok(res) if res.status().is_success() => Attempt::Done,
        Ok(res) => {
            let status = res.status();
            let why = format!("HTTP {status}");
            if status.is_server_error()
                || status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT
            {
                Attempt::Retry(why)
            } else {
                Attempt::Refused(why)
            }
        }
        Err(e) => Attempt::Retry(crate::errors::error_chain(&e)),
    }
}

/// The keys of a batch in groups whose space-separated header fits
/// [`MAX_KEYS_HEADER_BYTES`].
pub(super) fn key_chunks(batch: &[Change]) -> Vec<Vec<String>> {
    let mut chunks = Vec::new();
    let mut chunk: Vec<String> = Vec::new();
    let mut len = 0;
    for key in batch.iter().map(Change::key) {
        if !chunk.is_empty() && len + 1 + key.len() > MAX_KEYS_HEADER_BYTES {
            chunks.push(std::mem::take(&mut chunk));
            len = 0;
        }
        len += key.len() + usize::from(!chunk.is_empty());
        chunk.push(key);
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
}
