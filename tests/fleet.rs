//! A fleet on one machine: real `metatiled serve` processes, each on its own ports,
//! behind real HAProxy (Debian's `haproxy`, listed in `scripts/test-packages`),
//! against the real PostGIS. HAProxy's configuration is the one `metatiled fleet
//! haproxy-config` prints, with fast health checks.
//!
//! What is proven here, each with the shortest run that still proves it:
//! - 64 parallel requests for one uncached metatile through HAProxy: 1 render fleet-wide;
//!   1,000 distinct metatiles spread over 3 nodes within +-20%.
//! - An expiry sent to one node's admin makes the others serve the tile stale within
//!   1 s, with each node's own cache and with one shared cache.
//! - A shared cache without a balancer: one metatile asked of two nodes at once is
//!   rendered once.
//! - A row change reaches every watching node, and a node that was down when it
//!   happened applies it when it starts (writable copy of the database).
//! - Failover: SIGKILL a node under load: no request fails once HAProxy has marked it
//!   down, and the restarted node takes its metatiles back. Rolling restart of all
//!   three under load: no request fails. Both run a few seconds here; `scripts/bench-fleet`
//!   runs them 30 s at a few hundred requests/s (`METATILED_FLEET_LOAD_SECS`, `..._CLIENTS`).
//! - A node joins through HAProxy's runtime API; `deploy/haproxy.cfg` is what the
//!   documented command prints and HAProxy accepts it.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// The load tests measure failures under load: one at a time, so they do not starve
/// each other of the machine's two cores.
static LOAD: Mutex<()> = Mutex::const_new(());

/// Health checks of the test balancer: a node leaves the ring within
/// `CHECK_INTER_MS * FALL` of failing (plus one interval of phase).
const CHECK_INTER_MS: u64 = 200;
const FALL: u32 = 2;
const RISE: u32 = 2;
/// How long anything may take to come up before a test gives up.
const UP_WITHIN: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn haproxy_installed() -> bool {
    let ok = Command::new("haproxy")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if common::is_ci() {
            panic!("no haproxy under CI=true: scripts/test installs it (scripts/test-packages)");
        }
        eprintln!("skipping: haproxy is not installed (apt-get install haproxy)");
    }
    ok
}

fn metatiled() -> Command {
    Command::new(env!("CARGO_BIN_EXE_metatiled"))
}

/// One `metatiled serve` process with its own ports, id and (unless shared) cache.
struct Node {
    id: String,
    port: u16,
    admin_port: u16,
    db_url: String,
    cache: PathBuf,
    log: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Node {
    fn new(id: &str, db_url: &str, cache: &Path, logs: &Path, env: &[(&str, &str)]) -> Node {
        Node {
            id: id.to_string(),
            port: free_port(),
            admin_port: free_port(),
            db_url: db_url.to_string(),
            cache: cache.to_path_buf(),
            log: logs.join(format!("{id}.log")),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        }
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = metatiled();
        cmd.args(["serve", "--database-url", &self.db_url, "--styles-dir"])
            .arg(common::repo_root().join("styles"))
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--admin-listen", &format!("127.0.0.1:{}", self.admin_port)])
            .env("METATILED_NODE_ID", &self.id)
            .env("METATILED_RENDER_THREADS", "1")
            .env("METATILED_SERVER_WORKERS", "2")
            .env("METATILED_CACHE_FSYNC", "false")
            .env("METATILED_SERVER_MISS_TIMEOUT_SECS", "60")
            .env("METATILED_FLEET_HEARTBEAT_SECS", "1")
            // The load runs are one client at hundreds of requests/s: not what the
            // per-client budgets are for (tests/edge.rs tests them).
            .env("METATILED_LIMITS_ENABLED", "false")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("metatiled serve starts"));
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    async fn wait_ready(&mut self, client: &reqwest::Client) {
        let started = Instant::now();
        loop {
            if let Ok(r) = client.get(self.url("/ready")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "{} exited ({status}) while starting:\n{}",
                    self.id,
                    self.log_text()
                );
            }
            assert!(
                started.elapsed() < UP_WITHIN,
                "{} not ready within {UP_WITHIN:?}:\n{}",
                self.id,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// SIGKILL: no drain, no goodbye.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit while watching the balancer: returns when
    /// (since `t0`) HAProxy marked it down and when it exited.
    async fn stop_behind(&mut self, lb: &Haproxy, name: &str, t0: Instant) -> (Duration, Duration) {
        self.signal("-TERM");
        let (mut down, mut exited) = (None, None);
        let started = Instant::now();
        while down.is_none() || exited.is_none() {
            if exited.is_none() {
                if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                    assert!(
                        status.success(),
                        "{} exited with {status}:\n{}",
                        self.id,
                        self.log_text()
                    );
                    exited = Some(t0.elapsed());
                }
            }
            if down.is_none()
                && lb
                    .statuses()
                    .await
                    .get(name)
                    .is_some_and(|s| s.starts_with("DOWN"))
            {
                down = Some(t0.elapsed());
            }
            assert!(started.elapsed() < UP_WITHIN, "{} did not stop", self.id);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.child = None;
        (down.unwrap(), exited.unwrap())
    }

    /// SIGTERM, then waits for a clean exit.
    async fn stop(&mut self) {
        self.signal("-TERM");
        let mut child = self.child.take().unwrap();
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(
            status.success(),
            "{} exited with {status}:\n{}",
            self.id,
            self.log_text()
        );
    }

    async fn metric(&self, client: &reqwest::Client, series: &str) -> f64 {
        let text = client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .map(|v| v.trim().parse::<f64>().unwrap())
            })
            .unwrap_or(0.0)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Renders done by a node (any priority).
async fn renders(client: &reqwest::Client, node: &Node) -> f64 {
    let mut n = 0.0;
    for p in ["interactive", "stale", "bulk"] {
        n += node
            .metric(
                client,
                &format!(
                    "metatiled_renders_total{{outcome=\"ok\",priority=\"{p}\",style=\"osm\"}}"
                ),
            )
            .await;
    }
    n
}

/// Real HAProxy in the foreground, configured by `metatiled fleet haproxy-config`.
struct Haproxy {
    port: u16,
    socket: PathBuf,
    child: Child,
    log: PathBuf,
}

impl Haproxy {
    fn start(dir: &Path, nodes: &[&Node], extra: &[&str]) -> Haproxy {
        let port = free_port();
        let socket = dir.join("haproxy.sock");
        let mut cmd = metatiled();
        cmd.args(["fleet", "haproxy-config", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--stats-socket")
            .arg(&socket)
            .args(["--check-inter-ms", &CHECK_INTER_MS.to_string()])
            .args(["--fall", &FALL.to_string(), "--rise", &RISE.to_string()])
            .args(extra);
        for n in nodes {
            cmd.args(["--node", &format!("127.0.0.1:{}", n.port)]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "haproxy-config: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, &out.stdout).unwrap();
        let log = dir.join("haproxy.log");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("haproxy.err")).unwrap())
            .spawn()
            .expect("haproxy starts");
        Haproxy {
            port,
            socket,
            child,
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Sends one runtime API command and returns the answer.
    async fn command(&self, line: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let started = Instant::now();
        let mut stream = loop {
            match tokio::net::UnixStream::connect(&self.socket).await {
                Ok(s) => break s,
                Err(e) => {
                    let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                    assert!(started.elapsed() < UP_WITHIN, "haproxy socket: {e}\n{log}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        stream
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    /// Server name -> status (`UP`, `DOWN`, `UP 1/2`, `MAINT`...) in backend `nodes`.
    async fn statuses(&self) -> BTreeMap<String, String> {
        self.column("status").await
    }

    /// Requests HAProxy had to retry (`wretr`) or send to another server (`wredis`).
    async fn retries(&self) -> (u64, u64) {
        let sum = |m: BTreeMap<String, String>| {
            m.values()
                .filter_map(|v| v.parse::<u64>().ok())
                .sum::<u64>()
        };
        (
            sum(self.column("wretr").await),
            sum(self.column("wredis").await),
        )
    }

    /// Server name -> one column of `show stat`, in backend `nodes`.
    async fn column(&self, name: &str) -> BTreeMap<String, String> {
        let csv = self.command("show stat").await;
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        let (px, sv, st) = (col("pxname"), col("svname"), col(name));
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > st && f[px] == "nodes" && f[sv] != "BACKEND")
            .map(|f| (f[sv].to_string(), f[st].to_string()))
            .collect()
    }

    /// Waits until server `name` has a status starting with `prefix`; when it did.
    async fn wait_status(&self, name: &str, prefix: &str) -> Instant {
        let started = Instant::now();
        loop {
            let s = self.statuses().await;
            if s.get(name).is_some_and(|v| v.starts_with(prefix)) {
                return Instant::now();
            }
            assert!(
                started.elapsed() < UP_WITHIN,
                "{name} never {prefix}: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_all_up(&self, n: usize) {
        for i in 1..=n {
            self.wait_status(&format!("node{i}"), "UP").await;
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "haproxy log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// Three (or `n`) nodes with their own caches, all started and ready.
async fn start_nodes(
    client: &reqwest::Client,
    dir: &Path,
    db_url: &str,
    n: usize,
    shared: bool,
    env: &[(&str, &str)],
) -> Vec<Node> {
    let tag = format!("{:06x}", rand_u32() & 0xff_ffff);
    let fleet = format!("fleet-{tag}");
    let mut env: Vec<(&str, &str)> = env.to_vec();
    env.push(("METATILED_FLEET_NAME", &fleet));
    if shared {
        env.push(("METATILED_CACHE_SHARED", "true"));
    }
    let mut nodes: Vec<Node> = (1..=n)
        .map(|i| {
            let cache = if shared {
                dir.join("shared-cache")
            } else {
                dir.join(format!("cache-{i}"))
            };
            Node::new(&format!("fleet-{tag}-{i}"), db_url, &cache, dir, &env)
        })
        .collect();
    for node in &mut nodes {
        node.start();
    }
    for node in &mut nodes {
        node.wait_ready(client).await;
    }
    nodes
}

fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    t.subsec_nanos() ^ std::process::id().rotate_left(16)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()
        .unwrap()
}

/// A z18 metatile in central Helsinki and its 64 tiles.
fn metatile_tiles(mx: u32, my: u32) -> Vec<String> {
    let mut out = Vec::new();
    for dx in 0..8 {
        for dy in 0..8 {
            out.push(format!("/osm/18/{}/{}.png", mx * 8 + dx, my * 8 + dy));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_behind_haproxy_render_a_metatile_once_and_share_metatiles_evenly() {
    let Some(url) = common::database_url() else {
        eprintln!("skipping: no DATABASE_URL");
        return;
    };
    if !haproxy_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let nodes = start_nodes(&client, dir.path(), &url, 3, false, &[]).await;
    let lb = Haproxy::start(dir.path(), &nodes.iter().collect::<Vec<_>>(), &[]);
    lb.wait_all_up(3).await;

    // 64 clients at once, one per tile of an uncached metatile.
    let tiles = metatile_tiles(18654, 9484);
    let requests = tiles.iter().map(|p| {
        let (client, url) = (client.clone(), lb.url(p));
        tokio::spawn(async move { client.get(url).send().await.unwrap() })
    });
    for r in futures_util::future::join_all(requests).await {
        let r = r.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "image/png");
    }
    let mut total = 0.0;
    for n in &nodes {
        total += renders(&client, n).await;
    }
    assert_eq!(
        total, 1.0,
        "renders fleet-wide for 64 tiles of one metatile"
    );

    // 1,000 distinct metatiles (z14-z18 around Helsinki). The balancer's choice does
    // not depend on the method, and a node answers DELETE with 405 at once (OPTIONS is
    // a CORS preflight now): the spread is measured without rendering 1,000 metatiles.
    let mut keys = Vec::new();
    'outer: for z in 14..=18u32 {
        let (cx, cy) = (18654u32 >> (18 - z), 9484u32 >> (18 - z));
        for dx in 0..20 {
            for dy in 0..10 {
                keys.push(format!(
                    "/osm/{z}/{}/{}.png",
                    (cx + dx) * 8 + 3,
                    (cy + dy) * 8 + 5
                ));
                if keys.len() == 1000 {
                    break 'outer;
                }
            }
        }
    }
    let before: Vec<f64> = futures_util::future::join_all(
        nodes
            .iter()
            .map(|n| n.metric(&client, "metatiled_http_requests_total{status=\"405\"}")),
    )
    .await;
    for chunk in keys.chunks(50) {
        let batch = chunk
            .iter()
            .map(|p| client.request(reqwest::Method::DELETE, lb.url(p)).send());
        for r in futures_util::future::join_all(batch).await {
            assert_eq!(r.unwrap().status(), 405);
        }
    }
    let mut shares = Vec::new();
    for (n, b) in nodes.iter().zip(before) {
        shares.push(
            n.metric(&client, "metatiled_http_requests_total{status=\"405\"}")
                .await
                - b,
        );
    }
    eprintln!("1,000 metatiles over 3 nodes: {shares:?}");
    assert_eq!(shares.iter().sum::<f64>(), 1000.0);
    for s in &shares {
        assert!(
            (1000.0 / 3.0 * 0.8..=1000.0 / 3.0 * 1.2).contains(s),
            "a node got {s} of 1,000 metatiles: {shares:?}"
        );
    }

    // A metatile's UTFGrids and @2x tiles go where its tiles go (the same render).
    let series = "metatiled_http_requests_total{status=\"405\"}";
    for path in keys.iter().take(12) {
        let stem = path.strip_suffix(".png").unwrap();
        for twin in [format!("{stem}.grid.json"), format!("{stem}@2x.png")] {
            let mut counts = Vec::new();
            for p in [path, &twin] {
                let before =
                    futures_util::future::join_all(nodes.iter().map(|n| n.metric(&client, series)))
                        .await;
                let r = client.delete(lb.url(p)).send().await.unwrap();
                assert_eq!(r.status(), 405, "{p}");
                let after =
                    futures_util::future::join_all(nodes.iter().map(|n| n.metric(&client, series)))
                        .await;
                counts.push(after.iter().zip(&before).position(|(a, b)| a > b));
            }
            assert_eq!(
                counts[0], counts[1],
                "{path} and {twin} went to different nodes"
            );
        }
    }
}

/// Whether a tile response is the stale one (short max-age).
fn is_stale(r: &reqwest::Response) -> bool {
    r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .starts_with("public, max-age=60,")
}

async fn expiry_reaches_the_other_nodes_within_a_second(shared: bool) {
    let Some(url) = common::database_url() else {
        eprintln!("skipping: no DATABASE_URL");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    // An hour between memory revalidations: only the fleet can make it within 1 s.
    let nodes = start_nodes(
        &client,
        dir.path(),
        &url,
        3,
        shared,
        &[("METATILED_CACHE_REVALIDATE_SECS", "3600")],
    )
    .await;
    let tile = "/osm/17/74617/37935.png";
    for n in &nodes {
        for _ in 0..2 {
            let r = client.get(n.url(tile)).send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert!(!is_stale(&r));
        }
    }
    let memory_hits = nodes[1]
        .metric(
            &client,
            "metatiled_tile_lookups_total{result=\"memory\",style=\"osm\"}",
        )
        .await;
    assert!(memory_hits >= 1.0, "B serves the tile from memory");

    let r = client
        .post(nodes[0].admin_url("/expire"))
        .body(r#"{"style":"osm","tiles":["17/74617/37935"],"mode":"dirty","maxzoom":17}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: serde_json::Value = r.json().await.unwrap();
    let sent = Instant::now();
    assert_eq!(report["changed"], 1, "{report}");
    assert_eq!(report["fleet"]["published"], true, "{report}");
    for n in &nodes[1..] {
        loop {
            let r = client.get(n.url(tile)).send().await.unwrap();
            assert_eq!(r.status(), 200);
            if is_stale(&r) {
                break;
            }
            assert!(
                sent.elapsed() < Duration::from_secs(5),
                "{} still serves the tile fresh",
                n.id
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let took = sent.elapsed();
        eprintln!(
            "shared={shared}: {} serves the tile stale {} ms after the expiry at A",
            n.id,
            took.as_millis()
        );
        assert!(took <= Duration::from_secs(1), "{}: {took:?}", n.id);
    }
    // The fleet as A's admin sees it: three nodes, all up, none behind.
    let status: serde_json::Value = client
        .get(nodes[0].admin_url("/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for n in &nodes {
        let entry = status["fleet"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["node"] == n.id.as_str())
            .unwrap_or_else(|| panic!("{} not in {status}", n.id));
        assert_eq!(entry["state"], "up", "{entry}");
        assert_eq!(entry["cache_shared"], shared, "{entry}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expiry_sent_to_one_node_is_served_stale_by_the_others_within_a_second() {
    expiry_reaches_the_other_nodes_within_a_second(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_shared_cache_an_expiry_sent_to_one_node_is_served_stale_by_the_others_within_a_second(
) {
    expiry_reaches_the_other_nodes_within_a_second(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_sharing_a_cache_render_a_metatile_asked_of_both_at_once_once() {
    let Some(url) = common::database_url() else {
        eprintln!("skipping: no DATABASE_URL");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let nodes = start_nodes(&client, dir.path(), &url, 2, true, &[]).await;
    let tiles = metatile_tiles(18655, 9485);
    let requests = tiles.iter().enumerate().map(|(i, p)| {
        let (client, url) = (client.clone(), nodes[i % 2].url(p));
        tokio::spawn(async move { client.get(url).send().await.unwrap() })
    });
    for r in futures_util::future::join_all(requests).await {
        assert_eq!(r.unwrap().status(), 200);
    }
    let mut total = 0.0;
    let mut skipped = 0.0;
    for n in &nodes {
        total += renders(&client, n).await;
        skipped += n
            .metric(
                &client,
                "metatiled_fleet_renders_skipped_total{style=\"osm\"}",
            )
            .await;
    }
    eprintln!("shared cache, two nodes at once: {total} render(s), {skipped} skipped");
    assert_eq!(total, 1.0, "renders over both nodes");
}

/// One request of a load run: when it started and ended (since the run's start) and
/// its status, or why it got none.
#[derive(Debug, Clone)]
struct Outcome {
    started: Duration,
    result: Result<u16, String>,
}

impl Outcome {
    fn failed(&self) -> bool {
        self.result != Ok(200)
    }
}

/// Load settings: the suite's short run, or the acceptance run of `scripts/bench-fleet`.
struct Load {
    secs: f64,
    clients: usize,
    /// Requests per second over all clients (each client paces itself).
    rate: f64,
    /// One request in this many is a miss (a metatile no one has rendered yet).
    miss_every: usize,
}

impl Load {
    fn from_env(default_secs: f64) -> Load {
        let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok());
        Load {
            secs: var("METATILED_FLEET_LOAD_SECS").unwrap_or(default_secs),
            clients: var("METATILED_FLEET_LOAD_CLIENTS").map_or(8, |v| v as usize),
            rate: var("METATILED_FLEET_LOAD_RATE").unwrap_or(120.0),
            miss_every: var("METATILED_FLEET_MISS_EVERY").map_or(10, |v| v as usize),
        }
    }
}

/// Hot tiles (64 of each of four metatiles, rendered before the run) and a supply of
/// z19 metatiles no one has rendered (each miss takes the next one).
fn load_paths() -> (Vec<String>, Vec<String>) {
    let hot: Vec<String> = [(18656, 9484), (18657, 9484), (18656, 9485), (18657, 9485)]
        .iter()
        .flat_map(|(mx, my)| metatile_tiles(*mx, *my))
        .collect();
    let mut cold = Vec::new();
    for mx in 37290..37330u32 {
        for my in 18955..18995u32 {
            cold.push(format!("/osm/19/{}/{}.png", mx * 8 + 3, my * 8 + 4));
        }
    }
    // Neighbours render in a different order from run to run, but never twice.
    let seed = rand_u32() as usize;
    let n = cold.len();
    let cold = (0..n)
        .map(|i| cold[(i * 7919 + seed) % n].clone())
        .collect();
    (hot, cold)
}

/// Runs the load against `base` until `load.secs` have passed or `stop` is cancelled;
/// returns every outcome.
fn start_load(
    client: &reqwest::Client,
    base: String,
    load: &Load,
    stop: CancellationToken,
) -> (Instant, tokio::task::JoinHandle<Vec<Outcome>>) {
    let (hot, cold) = load_paths();
    let hot = Arc::new(hot);
    let cold = Arc::new(cold);
    let next_cold = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs_f64(load.secs);
    let period = Duration::from_secs_f64(load.clients as f64 / load.rate);
    let workers: Vec<_> = (0..load.clients)
        .map(|w| {
            let (client, base, hot, cold, next_cold, stop) = (
                client.clone(),
                base.clone(),
                hot.clone(),
                cold.clone(),
                next_cold.clone(),
                stop.clone(),
            );
            let miss_every = load.miss_every.max(1);
            tokio::spawn(async move {
                let mut out = Vec::new();
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut i = w;
                while Instant::now() < until && !stop.is_cancelled() {
                    tick.tick().await;
                    i += 1;
                    let path = if i % miss_every == 0 {
                        let c = next_cold.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        cold[c % cold.len()].clone()
                    } else {
                        hot[(i * 31 + w * 17) % hot.len()].clone()
                    };
                    let started = t0.elapsed();
                    let result = match client.get(format!("{base}{path}")).send().await {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            match r.bytes().await {
                                Ok(_) => Ok(status),
                                Err(e) => Err(format!("{path}: body: {e}")),
                            }
                        }
                        Err(e) => Err(format!("{path}: {e}")),
                    };
                    out.push(Outcome { started, result });
                }
                out
            })
        })
        .collect();
    let all = tokio::spawn(async move {
        let mut out = Vec::new();
        for w in workers {
            out.extend(w.await.unwrap());
        }
        out
    });
    (t0, all)
}

/// Renders the hot tiles through the balancer, so each lands on its owner.
async fn warm_up(client: &reqwest::Client, lb: &Haproxy) {
    let (hot, _) = load_paths();
    for chunk in hot.chunks(64) {
        let batch = chunk.iter().map(|p| client.get(lb.url(p)).send());
        for r in futures_util::future::join_all(batch).await {
            assert_eq!(r.unwrap().status(), 200);
        }
    }
}

/// A tile path whose metatile the balancer sends to `node`.
async fn path_owned_by(client: &reqwest::Client, lb: &Haproxy, node: &Node) -> String {
    let series = "metatiled_http_requests_total{status=\"405\"}";
    for i in 0..200u32 {
        let path = format!("/osm/17/{}/{}.png", 74600 + i * 8, 37930);
        let before = node.metric(client, series).await;
        let r = client
            .request(reqwest::Method::DELETE, lb.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
        if node.metric(client, series).await > before {
            return path;
        }
    }
    panic!("no metatile of 200 went to {}", node.id);
}

fn summarize(what: &str, outcomes: &[Outcome], secs: f64) -> usize {
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.failed()).collect();
    eprintln!(
        "{what}: {} requests in {secs:.0} s ({:.0}/s), {} failed",
        outcomes.len(),
        outcomes.len() as f64 / secs,
        failed.len()
    );
    for f in failed.iter().take(10) {
        eprintln!(
            "  failed at {:.3} s: {:?}",
            f.started.as_secs_f64(),
            f.result
        );
    }
    failed.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_fails_no_request_once_marked_down_and_takes_its_share_back() {
    let Some(url) = common::database_url() else {
        eprintln!("skipping: no DATABASE_URL");
        return;
    };
    if !haproxy_installed() {
        return;
    }
    let _one_at_a_time = LOAD.lock().await;
    let load = Load::from_env(6.0);
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let mut nodes = start_nodes(&client, dir.path(), &url, 3, false, &[]).await;
    let lb = Haproxy::start(dir.path(), &nodes.iter().collect::<Vec<_>>(), &[]);
    lb.wait_all_up(3).await;
    warm_up(&client, &lb).await;
    let owned = path_owned_by(&client, &lb, &nodes[2]).await;

    let (t0, run) = start_load(&client, lb.url(""), &load, CancellationToken::new());
    tokio::time::sleep(Duration::from_secs_f64(load.secs * 0.25)).await;
    nodes[2].kill();
    let killed = t0.elapsed();
    let down = lb.wait_status("node3", "DOWN").await - t0;
    eprintln!(
        "node3 SIGKILLed at {:.3} s, marked down at {:.3} s (bound {} ms x {FALL} + one interval)",
        killed.as_secs_f64(),
        down.as_secs_f64(),
        CHECK_INTER_MS
    );
    assert!(
        down - killed <= Duration::from_millis(CHECK_INTER_MS * (u64::from(FALL) + 2)),
        "marked down {:?} after the kill",
        down - killed
    );
    tokio::time::sleep(Duration::from_secs_f64(load.secs * 0.5).saturating_sub(t0.elapsed())).await;
    nodes[2].start();
    nodes[2].wait_ready(&client).await;
    let up = lb.wait_status("node3", "UP").await - t0;
    eprintln!(
        "node3 restarted, back in the ring at {:.3} s",
        up.as_secs_f64()
    );
    let outcomes = run.await.unwrap();

    let failures = summarize("failover", &outcomes, load.secs);
    let (retried, redispatched) = lb.retries().await;
    eprintln!("HAProxy retried {retried} request(s), redispatched {redispatched}");
    let after_down: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.failed() && o.started >= down)
        .collect();
    eprintln!(
        "failed between the kill and the mark-down: {}; after: {}",
        failures - after_down.len(),
        after_down.len()
    );
    assert!(
        after_down.is_empty(),
        "failed after the mark-down: {after_down:?}"
    );
    assert!(
        up < Duration::from_secs_f64(load.secs),
        "node3 came back after the run"
    );
    // Its metatiles are its again: the owned one goes back to it, and it served load.
    let series = "metatiled_http_requests_total{status=\"405\"}";
    let before = nodes[2].metric(&client, series).await;
    let r = client
        .request(reqwest::Method::DELETE, lb.url(&owned))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(nodes[2].metric(&client, series).await, before + 1.0);
    let served = nodes[2]
        .metric(&client, "metatiled_http_requests_total{status=\"200\"}")
        .await;
    assert!(served > 0.0, "the restarted node served none of the load");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_of_every_node_under_load_fails_no_request() {
    let Some(url) = common::database_url() else {
        eprintln!("skipping: no DATABASE_URL");
        return;
    };
    if !haproxy_installed() {
        return;
    }
    let _one_at_a_time = LOAD.lock().await;
    let mut load = Load::from_env(0.0);
    // Each node: drain (2 s: the balancer needs up to (FALL + 1) x 200 ms to see it),
    // stop, start, rise; then the next one.
    let drain = "2";
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let mut nodes = start_nodes(
        &client,
        dir.path(),
        &url,
        3,
        false,
        &[("METATILED_NODE_DRAIN_SECS", drain)],
    )
    .await;
    let lb = Haproxy::start(dir.path(), &nodes.iter().collect::<Vec<_>>(), &[]);
    lb.wait_all_up(3).await;
    warm_up(&client, &lb).await;

    // The run lasts as long as the restarts take, at least METATILED_FLEET_LOAD_SECS.
    let min_secs = load.secs;
    load.secs = 3600.0;
    let stop = CancellationToken::new();
    let (t0, run) = start_load(&client, lb.url(""), &load, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (i, node) in nodes.iter_mut().enumerate() {
        let name = format!("node{}", i + 1);
        let began = t0.elapsed();
        let (down, exited) = node.stop_behind(&lb, &name, t0).await;
        node.start();
        node.wait_ready(&client).await;
        let back = lb.wait_status(&name, "UP").await - t0;
        eprintln!(
            "{name}: SIGTERM at {:.2} s, out of the ring at {:.2} s, exited at {:.2} s, back at {:.2} s",
            began.as_secs_f64(),
            down.as_secs_f64(),
            exited.as_secs_f64(),
            back.as_secs_f64()
        );
        // The drain: the balancer stops sending before the node stops taking.
        assert!(
            down < exited,
            "{name} exited before the balancer took it out"
        );
    }
    let remaining = Duration::from_secs_f64(min_secs).saturating_sub(t0.elapsed());
    tokio::time::sleep(remaining.max(Duration::from_millis(500))).await;
    stop.cancel();
    let outcomes = run.await.unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let failures = summarize("rolling restart", &outcomes, secs);
    let (retried, redispatched) = lb.retries().await;
    eprintln!("HAProxy retried {retried} request(s), redispatched {redispatched}");
    assert_eq!(failures, 0, "requests failed during the rolling restart");
    // No request even needed the balancer's retries: no node went away under one.
    assert_eq!((retried, redispatched), (0, 0));
    for (i, node) in nodes.iter().enumerate() {
        let served = node
            .metric(&client, "metatiled_http_requests_total{status=\"200\"}")
            .await;
        assert!(
            served > 0.0,
            "node{} served nothing after its restart",
            i + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_joins_through_the_runtime_api_and_takes_a_share_of_the_metatiles() {
    let Some(url) = common::database_url() else {
        eprintln!("skipping: no DATABASE_URL");
        return;
    };
    if !haproxy_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let nodes = start_nodes(&client, dir.path(), &url, 2, false, &[]).await;
    // The balancer knows node 1 and has a spare slot; node 2 joins at run time.
    let lb = Haproxy::start(dir.path(), &[&nodes[0]], &["--spare", "1"]);
    lb.wait_all_up(1).await;
    assert!(lb.statuses().await["spare1"].starts_with("MAINT"));
    let series = "metatiled_http_requests_total{status=\"405\"}";
    let paths: Vec<String> = (0..300u32)
        .map(|i| {
            format!(
                "/osm/16/{}/{}.png",
                37300 + (i % 30) * 8,
                18960 + (i / 30) * 8
            )
        })
        .collect();
    let send_all = || async {
        for chunk in paths.chunks(50) {
            let batch = chunk
                .iter()
                .map(|p| client.request(reqwest::Method::DELETE, lb.url(p)).send());
            for r in futures_util::future::join_all(batch).await {
                assert_eq!(r.unwrap().status(), 405);
            }
        }
    };
    send_all().await;
    assert_eq!(nodes[1].metric(&client, series).await, 0.0);
    let answer = lb
        .command(&format!(
            "set server nodes/spare1 addr 127.0.0.1 port {}",
            nodes[1].port
        ))
        .await;
    assert!(!answer.contains("rror"), "{answer}");
    let answer = lb.command("set server nodes/spare1 state ready").await;
    assert!(answer.trim().is_empty(), "{answer}");
    lb.wait_status("spare1", "UP").await;
    send_all().await;
    let joined = nodes[1].metric(&client, series).await;
    eprintln!("after joining through the runtime API, node 2 got {joined} of 300 metatiles");
    assert!((90.0..=210.0).contains(&joined), "{joined}");
}

#[test]
fn the_shipped_haproxy_config_is_what_the_documented_command_prints_and_haproxy_accepts_it() {
    let shipped = common::repo_root().join("deploy/haproxy.cfg");
    let text = std::fs::read_to_string(&shipped).unwrap();
    let command = text
        .lines()
        .nth(1)
        .and_then(|l| l.strip_prefix("#   metatiled "))
        .expect("line 2 names the command that prints it");
    let out = metatiled()
        .args(command.split_whitespace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        text,
        "deploy/haproxy.cfg differs from `metatiled {command}`: regenerate it"
    );
    if !haproxy_installed() {
        return;
    }
    let check = Command::new("haproxy")
        .args(["-c", "-f"])
        .arg(&shipped)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "haproxy -c: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

/// `operator` of the rows the watch test inserts.
const TEST_OPERATOR: &str = "metatiled-fleet-test";
/// An empty z16 tile north of the data, where the test park goes.
const PARK_TILE: (u8, u32, u32) = (16, 37307, 18965);

fn park_rect() -> [f64; 4] {
    let (z, x, y) = PARK_TILE;
    let b = metatiled::tile::TileCoord::try_new(u32::from(z), u64::from(x), u64::from(y))
        .unwrap()
        .bbox();
    let m = b.width() / 256.0;
    [
        b.min_x + 40.0 * m,
        b.max_y - 216.0 * m,
        b.min_x + 216.0 * m,
        b.max_y - 40.0 * m,
    ]
}

/// Whether the tile's centre is park green (#c8facc).
fn centre_is_park(png_bytes: &[u8]) -> bool {
    let mut dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let i = ((128 * info.width + 128) * 4) as usize;
    [0xc8u8, 0xfa, 0xcc]
        .iter()
        .zip(&buf[i..i + 3])
        .all(|(a, b)| a.abs_diff(*b) <= 12)
}

async fn remove_test_rows(db: &tokio_postgres::Client) {
    db.execute(
        "DELETE FROM planet_osm_polygon WHERE operator = $1",
        &[&TEST_OPERATOR],
    )
    .await
    .unwrap();
}

async fn wait_for_park(
    client: &reqwest::Client,
    node: &Node,
    since: Instant,
    park: bool,
) -> Duration {
    let (z, x, y) = PARK_TILE;
    loop {
        let r = client
            .get(node.url(&format!("/osm/{z}/{x}/{y}.png")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        if centre_is_park(&r.bytes().await.unwrap()) == park {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "{} never showed park={park}:\n{}",
            node.id,
            node.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_row_change_reaches_every_watching_node_and_one_that_was_down_when_it_starts() {
    let Some(url) = common::rw_database_url() else {
        eprintln!("skipping: no METATILED_RW_DATABASE_URL");
        return;
    };
    let db = common::connect(&url).await;
    remove_test_rows(&db).await;
    let out = metatiled()
        .args([
            "watch",
            "--style",
            "osm",
            "--database-url",
            &url,
            "--styles-dir",
        ])
        .arg(common::repo_root().join("styles"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let mut nodes = start_nodes(
        &client,
        dir.path(),
        &url,
        3,
        false,
        &[("METATILED_WATCH_ENABLED", "true")],
    )
    .await;
    let body = async {
        for n in &nodes {
            wait_for_park(&client, n, Instant::now(), false).await;
        }
        // Node 3 is down when the row changes.
        nodes[2].stop().await;
        let r = park_rect();
        db.execute(
            "INSERT INTO planet_osm_polygon (osm_id, leisure, operator, way, way_area)
             SELECT -900000000013, 'park', $1, g, ST_Area(g)
             FROM (SELECT ST_MakeEnvelope($2, $3, $4, $5, 3857) AS g) AS park",
            &[&TEST_OPERATOR, &r[0], &r[1], &r[2], &r[3]],
        )
        .await
        .unwrap();
        let committed = Instant::now();
        for n in &nodes[..2] {
            let lag = wait_for_park(&client, n, committed, true).await;
            eprintln!("{}: the new park {} ms after COMMIT", n.id, lag.as_millis());
            assert!(lag <= Duration::from_secs(5), "{}: {lag:?}", n.id);
        }
        let started = Instant::now();
        nodes[2].start();
        nodes[2].wait_ready(&client).await;
        let lag = wait_for_park(&client, &nodes[2], started, true).await;
        eprintln!(
            "{} (down during the change): the new park {} ms after it started",
            nodes[2].id,
            lag.as_millis()
        );
        // The fleet as the database sees it: nobody behind in the change log.
        let status: serde_json::Value = client
            .get(nodes[0].admin_url("/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for n in &nodes {
            let e = status["fleet"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["node"] == n.id.as_str())
                .unwrap();
            assert_eq!(e["changes"]["pending"], 0, "{e}");
        }
    };
    let result = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(body)).await;
    remove_test_rows(&db).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
