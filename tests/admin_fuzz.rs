//! A fuzz of the admin API: a couple of thousand random bodies (garbage, broken and valid
//! JSON, tile lists, bboxes and polygons of every size up to zoom 20, text lists, seeds,
//! job queries and cancels) leave the server answering and its memory within a stated
//! bound. The server runs in a child process (this test binary re-run with
//! `--exact fuzz_child_server` and [`CHILD_ENV`] naming the file where it writes its
//! addresses; without it that test does nothing), so its resident set size is the
//! server's alone, not the client's.
//!
//! `ADMIN_FUZZ_BODIES` (default 2000) and `ADMIN_FUZZ_SEED` (default fixed, so CI runs
//! the same bodies every time; `random` draws one and prints it) rerun it bigger, with
//! other bodies, or exactly.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

mod common;
mod support;

use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the child that runs the server: where it writes the addresses it listens on.
const CHILD_ENV: &str = "ADMIN_FUZZ_CHILD";

/// The admin API's own share of memory with the test's settings (the defaults): two
/// bodies at once of at most `admin.max_json_bytes` (16 MiB) with their parse (~3x:
/// 96 MiB) and `admin.max_area_squares` (2,000,000) squares in hash sets (~40 B each
/// with their growth: 80 MiB).
const ADMIN_MIB: u64 = 96 + 80;
/// The render pool's working set, which admin re-renders and seeds set going: per render
/// thread (2 in tests; one render paints per thread at once) a canvas of 4608 px at @2x
/// (81 MiB) plus its labels, tiles and PNGs being encoded and the rows fetched (~80 MiB
/// more).
const RENDERS_MIB: u64 = 2 * 160;
/// Room for what the allocator holds beside live data (fragmentation, 2 arenas).
const ALLOCATOR_MIB: u64 = 128;
/// How far above its size at start the server may peak during the warm-up and the fuzz.
const PEAK_BOUND_MIB: u64 = ADMIN_MIB + RENDERS_MIB + ALLOCATOR_MIB;
/// How much more the server may hold once the fuzz is over, its jobs are cancelled and
/// every render thread last painted a 1x metatile, as before: job reports (capped) and
/// what the allocator keeps of freed admin memory, at most the admin API's share.
const RETAINED_BOUND_MIB: u64 = ADMIN_MIB;
/// The allocator setting the server is shipped with (the Dockerfile's, and the
/// README's advice): glibc's default of 8 arenas per core lets every thread that once
/// built a big input keep its freed memory.
const MALLOC_ARENA_MAX: &str = "2";
/// The bodies CI sends (any seed may be given to explore others).
const DEFAULT_SEED: u64 = 20_261_201;
/// Requests in flight at once.
const CONCURRENCY: usize = 6;

fn bodies() -> usize {
    std::env::var("ADMIN_FUZZ_BODIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn lon(rng: &mut StdRng) -> f64 {
    rng.random_range(-180.0..=180.0)
}

fn lat(rng: &mut StdRng) -> f64 {
    rng.random_range(-85.0..=85.0)
}

/// Somewhere on Earth: around Helsinki (where data is), or anywhere, of any size.
fn bbox(rng: &mut StdRng) -> [f64; 4] {
    if rng.random_bool(0.3) {
        let (x, y) = (
            24.94 + rng.random_range(-0.05..0.05),
            60.17 + rng.random_range(-0.02..0.02),
        );
        let (w, h) = (rng.random_range(0.0..0.05), rng.random_range(0.0..0.03));
        return [x, y, x + w, y + h];
    }
    let (a, b) = (lon(rng), lon(rng));
    let (c, d) = (lat(rng), lat(rng));
    [a.min(b), c.min(d), a.max(b), c.max(d)]
}

/// A random (self-intersecting as it likes) polygon: up to 2000 vertices, over a
/// random span of the world.
fn polygon(rng: &mut StdRng) -> Value {
    let [x0, y0, x1, y1] = bbox(rng);
    let n = if rng.random_bool(0.1) {
        rng.random_range(3..2000)
    } else {
        rng.random_range(3..40)
    };
    let mut ring: Vec<[f64; 2]> = (0..n)
        .map(|_| {
            [
                rng.random_range(x0..=x1.max(x0 + 1e-6)),
                rng.random_range(y0..=y1.max(y0 + 1e-6)),
            ]
        })
        .collect();
    ring.push(ring[0]);
    json!({"type": "Polygon", "coordinates": [ring]})
}

fn zooms(rng: &mut StdRng, body: &mut serde_json::Map<String, Value>) {
    let max = rng.random_range(0..=22u8);
    body.insert("maxzoom".into(), json!(max));
    if rng.random_bool(0.5) {
        body.insert("minzoom".into(), json!(rng.random_range(0..=max)));
    }
}

fn tile_line(rng: &mut StdRng) -> String {
    let z = rng.random_range(0..=21u32);
    let n = 1u64 << z.min(20);
    format!(
        "{z}/{}/{}",
        rng.random_range(0..n + 2),
        rng.random_range(0..n + 2)
    )
}

fn random_bytes(rng: &mut StdRng) -> Vec<u8> {
    let len = if rng.random_bool(0.02) {
        rng.random_range(0..4 << 20)
    } else {
        rng.random_range(0..4096)
    };
    (0..len).map(|_| rng.random()).collect()
}

/// One request: method, path, content type, body.
struct Request {
    method: reqwest::Method,
    path: String,
    text: bool,
    body: Vec<u8>,
}

fn post_json(path: &str, body: Value) -> Request {
    Request {
        method: reqwest::Method::POST,
        path: path.into(),
        text: false,
        body: serde_json::to_vec(&body).unwrap(),
    }
}

fn random_request(rng: &mut StdRng, max_job: u64) -> Request {
    let styles = ["osm", "osm@2x", "nope"];
    let modes = ["dirty", "delete", "render", "nuke"];
    let mut options = serde_json::Map::new();
    if rng.random_bool(0.7) {
        options.insert("style".into(), json!(styles[rng.random_range(0..3)]));
    }
    options.insert("mode".into(), json!(modes[rng.random_range(0..4)]));
    options.insert("dry_run".into(), json!(rng.random_bool(0.3)));
    match rng.random_range(0..100) {
        0..=14 => Request {
            method: reqwest::Method::POST,
            path: if rng.random_bool(0.5) {
                "/expire"
            } else {
                "/seed"
            }
            .into(),
            text: rng.random_bool(0.3),
            body: random_bytes(rng),
        },
        15..=29 => {
            let n = if rng.random_bool(0.05) {
                rng.random_range(0..200_000)
            } else {
                rng.random_range(0..500)
            };
            let tiles: Vec<Value> = (0..n)
                .map(|_| {
                    if rng.random_bool(0.02) {
                        json!("x/y/z")
                    } else {
                        json!(tile_line(rng))
                    }
                })
                .collect();
            options.insert("tiles".into(), Value::Array(tiles));
            zooms(rng, &mut options);
            post_json("/expire", Value::Object(options))
        }
        30..=44 => {
            options.insert("bbox".into(), json!(bbox(rng)));
            zooms(rng, &mut options);
            post_json("/expire", Value::Object(options))
        }
        45..=59 => {
            options.insert("geometry".into(), polygon(rng));
            zooms(rng, &mut options);
            post_json("/expire", Value::Object(options))
        }
        60..=69 => {
            let lines = if rng.random_bool(0.05) {
                rng.random_range(0..300_000)
            } else {
                rng.random_range(0..300)
            };
            let mut body = String::new();
            for _ in 0..lines {
                body.push_str(&tile_line(rng));
                body.push('\n');
            }
            Request {
                method: reqwest::Method::POST,
                path: format!(
                    "/expire?style=osm&mode={}&maxzoom={}",
                    modes[rng.random_range(0..3)],
                    rng.random_range(0..=20)
                ),
                text: true,
                body: body.into_bytes(),
            }
        }
        70..=79 => {
            let mut seed = serde_json::Map::new();
            seed.insert("style".into(), json!(styles[rng.random_range(0..3)]));
            if rng.random_bool(0.5) {
                seed.insert("bbox".into(), json!(bbox(rng)));
            } else {
                seed.insert("geometry".into(), polygon(rng));
            }
            zooms(rng, &mut seed);
            post_json("/seed", Value::Object(seed))
        }
        80..=87 => {
            // Valid-looking JSON, broken: truncated, wrong types, deep nesting.
            let broken = match rng.random_range(0..3) {
                0 => {
                    let whole =
                        serde_json::to_vec(&json!({"tiles": vec!["1/0/0"; 50], "bbox": bbox(rng)}))
                            .unwrap();
                    whole[..rng.random_range(0..whole.len())].to_vec()
                }
                1 => serde_json::to_vec(&json!({"tiles": 5, "minzoom": "x", "geometry": [1, 2]}))
                    .unwrap(),
                _ => {
                    let depth = rng.random_range(1..100_000);
                    let mut s = "[".repeat(depth);
                    s.push_str(&"]".repeat(depth));
                    format!("{{\"geometry\": {{\"type\": \"Polygon\", \"coordinates\": {s}}}}}")
                        .into_bytes()
                }
            };
            Request {
                method: reqwest::Method::POST,
                path: "/expire".into(),
                text: false,
                body: broken,
            }
        }
        88..=93 => Request {
            method: reqwest::Method::GET,
            path: format!("/jobs/{}", rng.random_range(0..max_job + 3)),
            text: false,
            body: Vec::new(),
        },
        _ => Request {
            method: reqwest::Method::DELETE,
            path: format!("/jobs/{}", rng.random_range(0..max_job + 3)),
            text: false,
            body: Vec::new(),
        },
    }
}

/// The server under test, in its own process.
struct Server {
    child: Child,
    public: SocketAddr,
    admin: SocketAddr,
    client: reqwest::Client,
}

impl Server {
    fn start(dir: &std::path::Path) -> Server {
        let addrs_file = dir.join("listening");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "fuzz_child_server",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, &addrs_file)
            .env("MALLOC_ARENA_MAX", MALLOC_ARENA_MAX)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // The child writes the file whole (temp file, rename) once it listens.
        let started = Instant::now();
        let addrs = loop {
            if let Ok(addrs) = std::fs::read_to_string(&addrs_file) {
                break addrs;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the server process ended ({status}) before it listened");
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the server process does not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let (public, admin) = addrs.trim().split_once(' ').unwrap();
        let (public, admin) = (public.parse().unwrap(), admin.parse().unwrap());
        Server {
            child,
            public,
            admin,
            client: reqwest::Client::new(),
        }
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// (VmRSS, VmHWM) of the server process, in MiB.
    fn memory_mib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap()
                / 1024
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Closes the child's stdin (it stops its app and exits) and waits for it.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the server process ended with {status}");
    }
}

/// The server process: starts the app, says where it listens, serves until its stdin
/// closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fuzz_child_server() {
    let Some(addrs_file) = std::env::var_os(CHILD_ENV).map(std::path::PathBuf::from) else {
        return;
    };
    let app = support::spawn_app_with(|s| {
        // A small memory cache, so renders caused by the fuzz cannot fill it.
        s.cache.memory_bytes = 1 << 20;
    })
    .await
    .expect("a database for the fuzz");
    let temp = addrs_file.with_extension("tmp");
    std::fs::write(&temp, format!("{} {}", app.addr, app.admin_addr)).unwrap();
    std::fs::rename(&temp, &addrs_file).unwrap();
    tokio::task::spawn_blocking(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
    })
    .await
    .unwrap();
    app.stop().await;
}

async fn send(server: &Server, r: Request) -> (u16, Value) {
    let mut req = server.client.request(r.method, server.admin_url(&r.path));
    if !r.body.is_empty() || r.text {
        let kind = if r.text {
            "text/plain"
        } else {
            "application/json"
        };
        req = req.header("Content-Type", kind).body(r.body);
    }
    // The server may answer (400, 413) before a body is all sent and close the
    // connection: the client then sees a reset, counted as status 0.
    let Ok(res) = req.send().await else {
        return (0, Value::Null);
    };
    let status = res.status().as_u16();
    let body = res.bytes().await.unwrap_or_default();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn get(path: String) -> Request {
    Request {
        method: reqwest::Method::GET,
        path,
        text: false,
        body: Vec::new(),
    }
}

/// Cancels every queued or running job and waits until none is left.
async fn cancel_all(server: &Server) {
    let started = Instant::now();
    loop {
        let (_, list) = send(server, get("/jobs".into())).await;
        let active: Vec<u64> = list["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|j| matches!(j["state"].as_str(), Some("queued" | "running")))
            .filter_map(|j| j["id"].as_u64())
            .collect();
        if active.is_empty() {
            return;
        }
        for id in active {
            let mut r = get(format!("/jobs/{id}"));
            r.method = reqwest::Method::DELETE;
            send(server, r).await;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "jobs do not stop"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Renders 4 uncached metatiles (row `row` of a block east of the data, `scale` "" or
/// "@2x") at once, so every render thread paints one.
async fn render_all(server: &Server, row: u64, scale: &str) {
    let urls = (0..4u64).map(|n| {
        let (x, y) = (37_280 + 8 * n, 18_960 + 8 * row);
        format!("http://{}/osm/16/{x}/{y}{scale}.png", server.public)
    });
    let rendered = futures_util::future::join_all(urls.map(|url| {
        let client = &server.client;
        async move { client.get(url).send().await.unwrap().status() }
    }))
    .await;
    assert!(rendered.iter().all(|s| s.is_success()), "{rendered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_admin_bodies_leave_memory_within_its_bound() {
    if std::env::var_os(CHILD_ENV).is_some() || common::database_url().is_none() {
        eprintln!("skipping: no DATABASE_URL");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let seed = match std::env::var("ADMIN_FUZZ_SEED").ok().as_deref() {
        None => DEFAULT_SEED,
        Some("random") => rand::random::<u64>(),
        Some(v) => v.parse().expect("ADMIN_FUZZ_SEED: a number or `random`"),
    };
    eprintln!("ADMIN_FUZZ_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let (rss_started, _) = server.memory_mib();
    // Warm up: renders at both scales on every render thread at once (their working
    // set is the render pool's, not the admin API's), then the first admin request of
    // each kind allocates what later ones reuse.
    render_all(&server, 0, "@2x").await;
    render_all(&server, 1, "").await;
    let (_, hwm_renders) = server.memory_mib();
    for _ in 0..50 {
        let r = random_request(&mut rng, 0);
        send(&server, r).await;
    }
    cancel_all(&server).await;
    // Each render thread keeps the canvas of its last render: 1x, before and after.
    render_all(&server, 2, "").await;
    let (rss_before, hwm_before) = server.memory_mib();

    let count = bodies();
    let started = Instant::now();
    // Generated as they are sent: the client holds only the requests in flight.
    let requests = (0..count).map(|i| random_request(&mut rng, i as u64));
    let statuses: Vec<u16> = futures_util::stream::iter(requests)
        .map(|r| {
            let server = &server;
            async move { send(server, r).await.0 }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    cancel_all(&server).await;
    let secs = started.elapsed().as_secs_f64();
    render_all(&server, 3, "").await;
    let (rss_after, hwm_after) = server.memory_mib();

    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for s in &statuses {
        *by_status.entry(*s).or_default() += 1;
    }
    eprintln!(
        "{count} admin requests in {secs:.1}s: {by_status:?}; server RSS {rss_started} MiB at \
         start, {rss_before} after warm-up, {rss_after} after the fuzz; high-water \
         {hwm_renders} after the warm-up renders, {hwm_before} after the warm-up, \
         {hwm_after} after the fuzz"
    );
    assert!(
        !by_status.contains_key(&500),
        "internal errors: {by_status:?}"
    );
    let peak = hwm_after.saturating_sub(rss_started);
    assert!(
        peak < PEAK_BOUND_MIB,
        "the server peaked {peak} MiB above its size at start (bound {PEAK_BOUND_MIB} MiB)"
    );
    let retained = rss_after.saturating_sub(rss_before);
    assert!(
        retained < RETAINED_BOUND_MIB,
        "the server kept {retained} MiB after the fuzz (bound {RETAINED_BOUND_MIB} MiB)"
    );
    // The server still serves and renders.
    let tile = reqwest::get(format!("http://{}/osm/16/37304/18968.png", server.public))
        .await
        .unwrap();
    assert_eq!(tile.status(), 200);
    server.stop();
}
