//! A fuzz of the admin API: a few thousand random bodies (garbage, broken and valid
//! JSON, tile lists, bboxes and polygons of every size up to zoom 20, text lists, seeds,
//! job queries and cancels) leave the server answering and its memory within a stated
//! bound. Alone in its own test binary, so the resident set size of the process (the
//! app runs in it) measures the admin API and nothing else.
//!
//! `ADMIN_FUZZ_BODIES` (default 3000) and `ADMIN_FUZZ_SEED` (default random, printed)
//! rerun it bigger or exactly.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

mod common;
mod support;

use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How much the process may grow (high-water mark over the resident set before the
/// fuzz): the admin API's own bound (two bodies at once, each at most
/// `admin.max_json_bytes` and its parse, plus `admin.max_area_squares` squares being
/// built and held) is ~150 MiB with the test's settings, and the allocator keeps some.
const BOUND_MIB: u64 = 192;
/// Requests in flight at once.
const CONCURRENCY: usize = 6;

fn bodies() -> usize {
    std::env::var("ADMIN_FUZZ_BODIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
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

async fn send(app: &support::TestApp, r: Request) -> (u16, Value) {
    let mut req = app.client.request(r.method, app.admin_url(&r.path));
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

/// Cancels every queued or running job and waits until none is left.
async fn cancel_all(app: &support::TestApp) {
    let started = Instant::now();
    loop {
        let (_, list) = send(
            app,
            Request {
                method: reqwest::Method::GET,
                path: "/jobs".into(),
                text: false,
                body: Vec::new(),
            },
        )
        .await;
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
            let r = Request {
                method: reqwest::Method::DELETE,
                path: format!("/jobs/{id}"),
                text: false,
                body: Vec::new(),
            };
            send(app, r).await;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "jobs do not stop"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_admin_bodies_leave_memory_within_its_bound() {
    let Some(app) = support::spawn_app_with(|s| {
        // A small memory cache, so renders caused by the fuzz cannot fill it.
        s.cache.memory_bytes = 1 << 20;
    })
    .await
    else {
        return;
    };
    let seed = std::env::var("ADMIN_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("ADMIN_FUZZ_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    // Warm up: the first of each kind allocates what later ones reuse.
    for _ in 0..50 {
        let r = random_request(&mut rng, 0);
        send(&app, r).await;
    }
    cancel_all(&app).await;
    let (rss_before, hwm_before) = (support::vm_rss_kib(), support::vm_hwm_kib());

    let count = bodies();
    let started = Instant::now();
    let requests: Vec<Request> = (0..count)
        .map(|i| random_request(&mut rng, i as u64))
        .collect();
    let statuses: Vec<u16> = futures_util::stream::iter(requests)
        .map(|r| {
            let app = &app;
            async move { send(app, r).await.0 }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    cancel_all(&app).await;
    let secs = started.elapsed().as_secs_f64();
    let (rss_after, hwm_after) = (support::vm_rss_kib(), support::vm_hwm_kib());

    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for s in &statuses {
        *by_status.entry(*s).or_default() += 1;
    }
    eprintln!(
        "{count} admin requests in {secs:.1}s: {by_status:?}; RSS {} -> {} MiB, high-water {} -> {} MiB",
        rss_before / 1024,
        rss_after / 1024,
        hwm_before / 1024,
        hwm_after / 1024
    );
    assert!(
        !by_status.contains_key(&500),
        "internal errors: {by_status:?}"
    );
    let grown_mib = hwm_after.saturating_sub(rss_before) / 1024;
    assert!(
        grown_mib < BOUND_MIB,
        "the process grew by {grown_mib} MiB (bound {BOUND_MIB} MiB)"
    );
    // The server still serves and renders.
    assert_eq!(app.get("/osm/16/37304/18968.png").await.status(), 200);
    app.stop().await;
}
