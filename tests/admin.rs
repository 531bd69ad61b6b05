//! The admin API against the real app on port 0, the real PostGIS and metatiles rendered
//! through the public port: every input kind in every mode, dry runs, jobs (a world
//! bbox to zoom 20, seeds, cancellation), the token, the body cap, bad requests, and an
//! end-to-end refresh after a change in the database.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

mod common;
mod support;

use metatiled::cache::FileStamp;
use metatiled::tile::{MetatileCoord, StyleName, TileCoord};
use reqwest::header;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime};
use support::TestApp;

/// Central Helsinki at z15 and z14, inside the imported extract.
const TILE_Z15: TileCoord = TileCoord {
    z: 15,
    x: 18654,
    y: 9484,
};
const TILE_Z14: TileCoord = TileCoord {
    z: 14,
    x: 9327,
    y: 4742,
};

fn osm() -> StyleName {
    StyleName::parse("osm").unwrap()
}

fn tile_path(t: TileCoord) -> String {
    format!("/osm/{}/{}/{}.png", t.z, t.x, t.y)
}

fn tile_line(t: TileCoord) -> String {
    format!("{}/{}/{}", t.z, t.x, t.y)
}

/// A lon/lat box well inside a tile: [minlon, minlat, maxlon, maxlat].
fn inside(t: TileCoord) -> [f64; 4] {
    let b = t.bbox();
    let (sw, ne) = b.buffered(-b.width() * 0.25).to_lonlat();
    [sw.lon, sw.lat, ne.lon, ne.lat]
}

/// A triangle well inside a tile, as GeoJSON.
fn triangle_inside(t: TileCoord) -> Value {
    let [w, s, e, n] = inside(t);
    json!({"type": "Polygon", "coordinates": [[[w, s], [e, s], [w, n], [w, s]]]})
}

/// Renders a tile through the public port.
async fn render(app: &TestApp, t: TileCoord) {
    let res = app.get(&tile_path(t)).await;
    assert_eq!(res.status(), StatusCode::OK, "rendering {t}");
}

async fn admin_json(app: &TestApp, path: &str, body: &Value) -> (StatusCode, String) {
    let res = app
        .client
        .post(app.admin_url(path))
        .json(body)
        .send()
        .await
        .expect("admin request");
    let status = res.status();
    (status, res.text().await.expect("body"))
}

async fn admin_text(app: &TestApp, query: &str, body: String) -> (StatusCode, String) {
    let res = app
        .client
        .post(app.admin_url(&format!("/expire?{query}")))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(body)
        .send()
        .await
        .expect("admin request");
    let status = res.status();
    (status, res.text().await.expect("body"))
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Expects a 200 and returns the report.
async fn expire_ok(app: &TestApp, body: &Value) -> Value {
    let (status, text) = admin_json(app, "/expire", body).await;
    assert_eq!(status, StatusCode::OK, "{body}: {text}");
    parse(&text)
}

/// Polls `GET /jobs/{id}` until the job ends (at most `limit`).
async fn wait_job(app: &TestApp, id: u64, limit: Duration) -> Value {
    let started = Instant::now();
    loop {
        let res = app
            .client
            .get(app.admin_url(&format!("/jobs/{id}")))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET /jobs/{id}: {e:?}"));
        assert_eq!(res.status(), StatusCode::OK);
        let job: Value = res.json().await.expect("job JSON");
        if !matches!(job["state"].as_str(), Some("queued" | "running")) {
            return job;
        }
        assert!(started.elapsed() < limit, "job {id} still running: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Expects a 202 and returns the job id.
async fn start_job(app: &TestApp, path: &str, body: &Value) -> u64 {
    let (status, text) = admin_json(app, path, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}: {text}");
    parse(&text)["id"].as_u64().expect("a job id")
}

fn stamp(app: &TestApp, meta: MetatileCoord) -> Option<FileStamp> {
    app.service
        .cache()
        .disk()
        .stamp(&osm(), meta)
        .expect("stat")
}

/// Puts a saved metatile file back (fresh mtime), through a rename like the cache does.
fn restore(app: &TestApp, meta: MetatileCoord, bytes: &[u8]) -> FileStamp {
    let path = app.service.cache().disk().path_of(&osm(), meta);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let tmp = path.with_extension("restore");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    app.service.cache().forget(&osm(), meta);
    stamp(app, meta).expect("restored")
}

fn is_dirty(s: &FileStamp) -> bool {
    // Marked dirty = mtime rewound 20 years; anything before 2015 will do.
    s.mtime < SystemTime::UNIX_EPOCH + Duration::from_secs(45 * 365 * 86_400)
}

/// Waits until the metatile file is replaced (a re-render), at most a minute.
async fn wait_rewritten(app: &TestApp, meta: MetatileCoord, before: &FileStamp) -> FileStamp {
    let started = Instant::now();
    loop {
        if let Some(s) = stamp(app, meta) {
            if s.ino != before.ino && !is_dirty(&s) {
                return s;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{meta} was not re-rendered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_input_kind_expires_a_rendered_metatile_in_every_mode() {
    let Some(app) = support::spawn_app().await else {
        return;
    };
    render(&app, TILE_Z15).await;
    let meta = TILE_Z15.metatile();
    let path = app.service.cache().disk().path_of(&osm(), meta);
    let saved = std::fs::read(&path).expect("the rendered metatile");
    let t = TILE_Z15;
    let zooms = "minzoom=15&maxzoom=15";

    for mode in ["dirty", "delete", "render"] {
        for kind in ["tiles", "text", "bbox", "polygon"] {
            let before = restore(&app, meta, &saved);
            let options = json!({"style": "osm", "minzoom": 15, "maxzoom": 15, "mode": mode});
            let mut body = options.clone();
            let report = match kind {
                "tiles" => {
                    body["tiles"] = json!([tile_line(t)]);
                    expire_ok(&app, &body).await
                }
                "text" => {
                    let (status, text) = admin_text(
                        &app,
                        &format!("style=osm&{zooms}&mode={mode}"),
                        format!("{}\n", tile_line(t)),
                    )
                    .await;
                    assert_eq!(status, StatusCode::OK, "{text}");
                    parse(&text)
                }
                "bbox" => {
                    body["bbox"] = json!(inside(t));
                    expire_ok(&app, &body).await
                }
                _ => {
                    body["geometry"] = triangle_inside(t);
                    expire_ok(&app, &body).await
                }
            };
            let what = format!("{kind} x {mode}: {report}");
            assert_eq!(
                report["kind"],
                if kind == "tiles" { "tiles" } else { kind },
                "{what}"
            );
            assert_eq!(report["mode"], mode, "{what}");
            assert_eq!(report["matched"], 1, "{what}");
            assert_eq!(report["changed"], 1, "{what}");
            assert_eq!(report["absent"], 0, "{what}");
            assert_eq!(report["errors"], 0, "{what}");
            match mode {
                "dirty" => {
                    let after = stamp(&app, meta).expect("still there");
                    assert!(is_dirty(&after), "{what}: not marked dirty");
                    assert_eq!(after.ino, before.ino, "{what}: the file was replaced");
                }
                "delete" => assert!(stamp(&app, meta).is_none(), "{what}: not deleted"),
                _ => {
                    wait_rewritten(&app, meta, &before).await;
                }
            }
        }
    }
    // A render is counted once its metatile is stored: the last file may be seen a
    // moment before its count.
    let started = Instant::now();
    loop {
        let rendered_bulk = app
            .metric("metatiled_renders_total{outcome=\"ok\",priority=\"bulk\",style=\"osm\"}")
            .await;
        if rendered_bulk >= 4.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "bulk renders {rendered_bulk}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every metatile changed is counted, the style's UTFGrid metatile too: fresh at the
    // first "dirty" (dirty after it) and there at the first "delete" (absent after it);
    // a re-render rewrites it instead of expiring it.
    for (mode, count) in [("dirty", 5.0), ("delete", 5.0), ("render", 4.0)] {
        let n = app
            .metric(&format!(
                "metatiled_expired_metatiles_total{{mode=\"{mode}\"}}"
            ))
            .await;
        assert_eq!(n, count, "expired metatiles counted for {mode}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dry_run_counts_what_would_change_and_touches_nothing() {
    let Some(app) = support::spawn_app().await else {
        return;
    };
    render(&app, TILE_Z15).await;
    let meta = TILE_Z15.metatile();
    let before = stamp(&app, meta).expect("rendered");
    for mode in ["dirty", "delete", "render"] {
        let report = expire_ok(
            &app,
            &json!({"style": "osm", "tiles": [tile_line(TILE_Z15)], "minzoom": 14,
                    "maxzoom": 15, "mode": mode, "dry_run": true}),
        )
        .await;
        assert_eq!(report["dry_run"], true);
        // z14 is absent, z15 exists.
        assert_eq!(
            (report["matched"].as_u64(), report["changed"].as_u64()),
            (Some(2), Some(1)),
            "{report}"
        );
        assert_eq!(
            stamp(&app, meta),
            Some(before),
            "{mode}: the dry run changed the file"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stamp(&app, meta), Some(before));
    assert_eq!(
        app.service.pool().stats().queued[2],
        0,
        "nothing was queued"
    );
    let served = app.get(&tile_path(TILE_Z15)).await;
    assert!(served.headers()[header::CACHE_CONTROL]
        .to_str()
        .unwrap()
        .contains("max-age=86400"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lists_report_bad_lines_by_number_and_no_style_means_every_style() {
    let Some(app) = support::spawn_app().await else {
        return;
    };
    render(&app, TILE_Z15).await;
    let (status, text) = admin_text(
        &app,
        "style=osm&minzoom=15&maxzoom=15&dry_run=true",
        format!("{}\nbad line\n\n99/1/1\n15/1/99999\n", tile_line(TILE_Z15)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let report = parse(&text);
    assert_eq!(report["lines"], 5);
    assert_eq!(report["tiles"], 1);
    assert_eq!(report["bad_lines"], 3);
    let numbers: Vec<u64> = report["bad_line_examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["line"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, vec![2, 4, 5]);
    assert_eq!(report["bad_line_examples"][0]["text"], "bad line");

    let report = expire_ok(
        &app,
        &json!({"tiles": [tile_line(TILE_Z15), "x/y/z"], "minzoom": 15, "maxzoom": 15}),
    )
    .await;
    let every = [
        "osm",
        "osm-transit",
        "osm-transit@2x",
        "osm@2x",
        "transit",
        "transit@2x",
    ];
    assert_eq!(report["styles"], json!(every));
    assert_eq!(report["bad_lines"], 1);
    assert_eq!(report["bad_line_examples"][0]["line"], 2);
    // One metatile per style; only the osm one was rendered.
    assert_eq!(
        (report["matched"].as_u64(), report["changed"].as_u64()),
        (Some(every.len() as u64), Some(1))
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_world_bbox_to_zoom_20_is_a_job_that_walks_only_what_is_cached() {
    let Some(app) = support::spawn_app().await else {
        return;
    };
    render(&app, TILE_Z15).await;
    render(&app, TILE_Z14).await;
    let metas = [TILE_Z15.metatile(), TILE_Z14.metatile()];
    let world = json!([-180.0, -85.0, 180.0, 85.0]);

    let started = Instant::now();
    let id = start_job(
        &app,
        "/expire",
        &json!({"style": "osm", "bbox": world, "minzoom": 0, "maxzoom": 20, "mode": "dirty"}),
    )
    .await;
    let job = wait_job(&app, id, Duration::from_secs(60)).await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["kind"], "expire");
    assert!(job["total"].as_u64().unwrap() > 1u64 << 34, "{job}");
    assert_eq!(job["done"], job["total"]);
    assert_eq!(job["result"]["changed"], 2, "{job}");
    assert_eq!(job["result"]["errors"], 0, "{job}");
    assert!(secs < 30.0, "a world expiry took {secs:.1}s");
    for meta in metas {
        assert!(is_dirty(&stamp(&app, meta).unwrap()), "{meta} not dirty");
    }

    // The same world as a polygon, deleting.
    let id = start_job(
        &app,
        "/expire",
        &json!({"style": "osm", "mode": "delete", "maxzoom": 20, "geometry": {
            "type": "Feature", "properties": {},
            "geometry": {"type": "Polygon", "coordinates":
                [[[-180, -85], [180, -85], [180, 85], [-180, 85], [-180, -85]]]}}}),
    )
    .await;
    let job = wait_job(&app, id, Duration::from_secs(60)).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["result"]["changed"], 2, "{job}");
    for meta in metas {
        assert!(stamp(&app, meta).is_none(), "{meta} not deleted");
    }

    let list: Value = app
        .client
        .get(app.admin_url("/jobs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<u64> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![id, id - 1], "newest first");
    let status: Value = app
        .client
        .get(app.admin_url("/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        status["jobs"],
        json!({"queued": 0, "running": 0, "area_squares_held": 0}),
        "the finished job let its input go"
    );
    let missing = app
        .client
        .get(app.admin_url("/jobs/999"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seeding_is_a_job_that_renders_skips_fresh_metatiles_and_can_be_cancelled() {
    let Some(app) = support::spawn_app().await else {
        return;
    };
    let area = json!([24.94, 60.165, 24.95, 60.175]);
    let id = start_job(
        &app,
        "/seed",
        &json!({"style": "osm", "bbox": area, "minzoom": 12, "maxzoom": 13}),
    )
    .await;
    let job = wait_job(&app, id, Duration::from_secs(120)).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["kind"], "seed");
    assert_eq!(job["total"], 2, "{job}");
    assert_eq!(job["result"]["rendered"], 2, "{job}");
    for t in [TILE_Z14.ancestor(12), TILE_Z14.ancestor(13)] {
        assert!(stamp(&app, t.metatile()).is_some(), "{t} not seeded");
    }

    // Again: everything is fresh. And a polygon works the same way.
    let id = start_job(
        &app,
        "/seed",
        &json!({"style": "osm", "geometry": triangle_inside(TILE_Z14), "minzoom": 12,
                "maxzoom": 13}),
    )
    .await;
    let job = wait_job(&app, id, Duration::from_secs(60)).await;
    assert_eq!(job["result"]["skipped_fresh"], 2, "{job}");
    assert_eq!(job["result"]["rendered"], 0, "{job}");

    // A seed of hundreds of metatiles, cancelled at once.
    let id = start_job(
        &app,
        "/seed",
        &json!({"style": "osm", "bbox": area, "minzoom": 16, "maxzoom": 19}),
    )
    .await;
    let cancel = app
        .client
        .delete(app.admin_url(&format!("/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), StatusCode::OK);
    let job = wait_job(&app, id, Duration::from_secs(120)).await;
    assert_eq!(job["state"], "cancelled", "{job}");
    assert!(
        job["result"]["not_reached"].as_u64().unwrap_or(0) > 0
            || job["done"].as_u64() < job["total"].as_u64(),
        "{job}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_admin_route_needs_the_token_when_one_is_set() {
    let Some(app) = support::spawn_app_with(|s| s.admin.token = Some("s3cret".into())).await else {
        return;
    };
    let body = json!({"style": "osm", "tiles": ["3/4/2"], "maxzoom": 3, "dry_run": true});
    for (auth, expected) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("Bearer wrong"), StatusCode::UNAUTHORIZED),
        (Some("Bearer s3cre"), StatusCode::UNAUTHORIZED),
        (Some("Basic s3cret"), StatusCode::UNAUTHORIZED),
        (Some("Bearer s3cret"), StatusCode::OK),
        (Some("bearer s3cret"), StatusCode::OK),
    ] {
        for (method, path) in [("GET", "/status"), ("POST", "/expire"), ("GET", "/jobs")] {
            let mut req = match method {
                "GET" => app.client.get(app.admin_url(path)),
                _ => app.client.post(app.admin_url(path)).json(&body),
            };
            if let Some(auth) = auth {
                req = req.header(header::AUTHORIZATION, auth);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), expected, "{method} {path} with {auth:?}");
            if expected == StatusCode::UNAUTHORIZED {
                assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "Bearer");
            }
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_public_port_has_no_admin_routes() {
    let Some(app) = support::spawn_app().await else {
        return;
    };
    let body = json!({"style": "osm", "tiles": ["3/4/2"]});
    for path in ["/expire", "/seed"] {
        let res = app
            .client
            .post(app.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "POST {path}");
    }
    for path in ["/jobs", "/jobs/1", "/status"] {
        assert_eq!(
            app.get(path).await.status(),
            StatusCode::NOT_FOUND,
            "GET {path}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_get_400_with_a_reason_and_unknown_styles_404() {
    let Some(app) = support::spawn_app().await else {
        return;
    };
    let cases: Vec<(String, &str)> =
        vec![
        ("{\"tiles\": [".to_string(), "bad JSON"),
        (
            json!({"geometry": {"type": "Point", "coordinates": [24.9, 60.1]}}).to_string(),
            "not a Point",
        ),
        (
            json!({"geometry": {"type": "LineString", "coordinates": [[24.9, 60.1], [25, 60.2]]}})
                .to_string(),
            "not a LineString",
        ),
        (json!({"tiles": ["1/0/0"], "maxzoom": 25}).to_string(), "maxzoom 25 is above 20"),
        (json!({"bbox": [25.0, 60.0, 24.0, 61.0]}).to_string(), "minimum must not exceed"),
        (json!({"tiles": ["1/0/0"], "mode": "nuke"}).to_string(), "unknown mode"),
        (json!({"tiles": ["1/0/0"], "bbox": [1, 2, 3, 4]}).to_string(), "one input"),
    ];
    for (body, reason) in cases {
        let res = app
            .client
            .post(app.admin_url("/expire"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
        assert!(text.contains(reason), "{body}: {text}");
    }
    let (status, text) = admin_text(&app, "style=osm&maxzoom=25", "1/0/0\n".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("maxzoom 25"), "{text}");
    // What `curl --data-binary @missing-file` sends: nothing.
    let (status, text) = admin_text(&app, "style=osm", String::new()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("the body is empty"), "{text}");
    let (status, text) = admin_json(
        &app,
        "/expire",
        &json!({"style": "nope", "tiles": ["1/0/0"]}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    assert!(text.contains("unknown style nope"), "{text}");
    let (status, text) =
        admin_json(&app, "/seed", &json!({"bbox": [24.9, 60.1, 25.0, 60.2]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("maxzoom"), "{text}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_over_the_cap_get_413_declared_or_streamed() {
    let Some(app) = support::spawn_app_with(|s| s.admin.max_body_bytes = 1024).await else {
        return;
    };
    let tiles: Vec<String> = (0..200).map(|i| format!("10/{i}/{i}")).collect();
    let (status, _) = admin_json(&app, "/expire", &json!({"style": "osm", "tiles": tiles})).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Chunked, so no length is declared: the streamed bytes are counted.
    let chunks = (0..300).map(|i| format!("10/{i}/{i}\n").into_bytes());
    let (status, body) = support::post_chunked(
        app.admin_addr,
        "/expire?style=osm&maxzoom=10",
        &[("Content-Type", "text/plain")],
        chunks,
    )
    .await;
    assert_eq!(status, 413, "{body}");
    // Under the cap, streamed, it works.
    let chunks = (0..10).map(|i| format!("10/{i}/{i}\n").into_bytes());
    let (status, body) = support::post_chunked(
        app.admin_addr,
        "/expire?style=osm&maxzoom=10&dry_run=true",
        &[("Content-Type", "text/plain")],
        chunks,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inputs_that_name_more_squares_than_allowed_get_413_quickly() {
    let Some(app) = support::spawn_app_with(|s| s.admin.max_area_squares = 1000).await else {
        return;
    };
    let started = Instant::now();
    // A zigzag across the world at zoom 20 would name millions of squares.
    let zigzag: Vec<[f64; 2]> = (0..200)
        .map(|i| {
            [
                -170.0 + i as f64 * 1.7,
                if i % 2 == 0 { -60.0 } else { 60.0 },
            ]
        })
        .chain([[170.0, -70.0], [-170.0, -70.0], [-170.0, -60.0]])
        .collect();
    let bodies = [
        (
            "/expire",
            json!({"geometry": {"type": "Polygon", "coordinates": [zigzag]}, "maxzoom": 20}),
        ),
        (
            "/expire",
            json!({"bbox": [10.0, 50.0, 20.0, 60.0], "maxzoom": 20, "dry_run": true}),
        ),
        (
            "/seed",
            json!({"style": "osm", "bbox": [10.0, 50.0, 20.0, 60.0], "maxzoom": 20}),
        ),
        (
            "/expire",
            json!({"tiles": (0..2000).map(|i| format!("18/{}/{}", i * 64, i * 64)).collect::<Vec<_>>()}),
        ),
    ];
    for (path, body) in bodies {
        let (status, text) = admin_json(&app, path, &body).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {text}");
        assert!(text.contains("admin.max_area_squares"), "{text}");
    }
    let lines: String = (0..2000)
        .map(|i| format!("18/{}/{}\n", i * 64, i * 64))
        .collect();
    let (status, text) = admin_text(&app, "style=osm&maxzoom=18", lines).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "refusing took {:?}",
        started.elapsed()
    );
    // What fits still works, and nothing is held afterwards.
    let (status, text) = admin_json(
        &app,
        "/expire",
        &json!({"bbox": [24.93, 60.16, 24.96, 60.18], "maxzoom": 18, "dry_run": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let status: Value = app
        .client
        .get(app.admin_url("/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["jobs"]["area_squares_held"], 0, "{status}");
    assert_eq!(status["database"]["up"], true, "{status}");
    app.stop().await;
}

/// End to end on the writable copy of the database. Area: the southern half of the
/// extract, z16 metatile 37304/18968 (tile 16/37308/18969); the freshness tests use the
/// northern metatile 37304/18960, so the two never touch the same metatiles.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dirty_tile_is_served_stale_at_once_then_refreshed_with_the_new_data() {
    let Some(rw_url) = common::rw_database_url() else {
        eprintln!("skipping: no METATILED_RW_DATABASE_URL");
        return;
    };
    const PARK_ID: i64 = -6_000_000_001;
    let tile = TileCoord {
        z: 16,
        x: 37308,
        y: 18969,
    };
    let db = common::connect(&rw_url).await;
    let delete_park = format!("DELETE FROM planet_osm_polygon WHERE osm_id = {PARK_ID}");
    db.batch_execute(&delete_park).await.expect("clean up");
    let url = rw_url.clone();
    let Some(app) = support::spawn_app_with(move |s| s.database.url = Some(url)).await else {
        return;
    };
    let path = tile_path(tile);
    let first = app.get(&path).await;
    assert_eq!(first.status(), StatusCode::OK);
    let etag = first.headers()[header::ETAG].to_str().unwrap().to_string();

    // A park over the whole tile.
    let b = tile.bbox();
    db.batch_execute(&format!(
        "INSERT INTO planet_osm_polygon (osm_id, leisure, way_area, way) VALUES \
         ({PARK_ID}, 'park', {area}, ST_MakeEnvelope({}, {}, {}, {}, 3857))",
        b.min_x,
        b.min_y,
        b.max_x,
        b.max_y,
        area = b.width() * b.height(),
    ))
    .await
    .expect("insert a park");

    let report = expire_ok(
        &app,
        &json!({"style": "osm", "tiles": [tile_line(tile)], "mode": "dirty",
                "minzoom": 16, "maxzoom": 16}),
    )
    .await;
    assert_eq!(report["changed"], 1, "{report}");

    // At once: the old tile, with the short max-age.
    let stale = app.get(&path).await;
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(stale.headers()[header::ETAG].to_str().unwrap(), etag);
    let cc = stale.headers()[header::CACHE_CONTROL]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cc.contains("max-age=60,"), "{cc}");

    // A few seconds later: the re-rendered tile, with the park.
    let started = Instant::now();
    let new_etag = loop {
        let res = app.get(&path).await;
        let e = res.headers()[header::ETAG].to_str().unwrap().to_string();
        let cc = res.headers()[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .to_string();
        if e != etag && cc.contains("max-age=86400") {
            break e;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no refreshed tile after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_ne!(new_etag, etag);
    db.batch_execute(&delete_park).await.expect("clean up");
    app.stop().await;
}
