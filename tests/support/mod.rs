//! Runs the real application on port 0 against the real PostGIS, with a temporary
//! cache directory, for the HTTP tests.
#![allow(dead_code, unreachable_pub)]

pub mod proxy;

use metatiled::app::Application;
use metatiled::config::Settings;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::oneshot;

pub struct TestApp {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub client: reqwest::Client,
    pub cache_dir: tempfile::TempDir,
    pub service: Arc<metatiled::service::TileService>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin_addr, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request failed")
    }

    /// The value of one series line of `/metrics`, e.g.
    /// `metatiled_renders_total{outcome="ok",priority="interactive",style="osm"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self
            .get("/metrics")
            .await
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .map(|v| v.trim().parse::<f64>().unwrap_or(f64::NAN))
            })
            .unwrap_or(0.0)
    }

    /// Sends `GET <raw path>` byte for byte (no client-side normalisation of `..` or
    /// percent-escapes) and returns the status code.
    pub async fn raw_status(&self, raw_path: &str) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        let req = format!("GET {raw_path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await.expect("read");
        let head = String::from_utf8_lossy(&buf);
        head.split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            done.await
                .expect("server task")
                .expect("server shut down cleanly");
        }
    }
}

/// A node id of its own for each test app of this test binary (apps that share a node
/// id share cursors in the fleet's logs). The same ids come back in the next run, so
/// the test database's node list does not grow.
pub fn next_node_id() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "test-{}-{}",
        env!("CARGO_CRATE_NAME").replace('_', "-"),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// Settings for a test app: ephemeral ports, a temporary cache, the repo's styles.
pub fn test_settings(database_url: &str, cache_dir: &std::path::Path) -> Settings {
    let mut s = Settings::default();
    s.node.id = next_node_id();
    // A fleet of its own: apps running side by side in a test binary must not apply
    // each other's admin expiries (tests/fleet.rs makes real fleets).
    s.fleet.name = s.node.id.clone();
    s.server.listen = "127.0.0.1:0".parse().expect("addr");
    s.admin.listen = "127.0.0.1:0".parse().expect("addr");
    s.server.workers = 2;
    s.database.url = Some(database_url.to_string());
    s.cache.dir = cache_dir.to_path_buf();
    s.cache.fsync = false;
    s.export.dir = cache_dir.join("exports");
    s.styles.dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("styles");
    s.render.threads = 2;
    // Tests run in parallel on a small machine: give misses room. The miss timeout
    // (503, the render carries on) is proved in paused time by
    // `service::tiles::tests::a_miss_that_outlasts_the_timeout_is_a_503_and_its_render_lands_in_the_cache`.
    s.server.miss_timeout_secs = 60;
    s
}

/// Starts the app with `tweak` applied to the test settings; `None` (after printing
/// why) when there is no database outside CI.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> Option<TestApp> {
    let url = crate::common::database_url().or_else(|| {
        eprintln!("skipping: no DATABASE_URL");
        None
    })?;
    let cache_dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings(&url, cache_dir.path());
    tweak(&mut settings);
    let app = Application::build(&settings).await.expect("app builds");
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let addr = app.public_addr();
    let admin_addr = app.admin_addr();
    let service = app.service().clone();
    let done = tokio::spawn(app.run_until(async move {
        let _ = stop_rx.await;
    }));
    Some(TestApp {
        addr,
        admin_addr,
        client: reqwest::Client::new(),
        cache_dir,
        service,
        stop: Some(stop_tx),
        done: Some(done),
    })
}

pub async fn spawn_app() -> Option<TestApp> {
    spawn_app_with(|_| {}).await
}

/// Decodes a PNG and returns (width, height).
pub fn png_size(bytes: &[u8]) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let reader = decoder.read_info().expect("a valid PNG");
    let info = reader.info();
    (info.width, info.height)
}

/// Sends `POST <path>` to `addr` with a chunked body made of `chunks` (generated as it
/// is sent, never held whole) and returns the status and the response body. Write
/// errors end the upload early (the server may answer, e.g. 413, before the end).
pub async fn post_chunked(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    chunks: impl Iterator<Item = Vec<u8>>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut ok = stream.write_all(head.as_bytes()).await.is_ok();
    for chunk in chunks {
        if !ok {
            break;
        }
        if chunk.is_empty() {
            continue;
        }
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(&chunk);
        framed.extend_from_slice(b"\r\n");
        ok = stream.write_all(&framed).await.is_ok();
    }
    if ok {
        let _ = stream.write_all(b"0\r\n\r\n").await;
    }
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The resident set size of this process (the tests' app runs in it), in KiB.
pub fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}
