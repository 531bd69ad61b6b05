//! The public HTTP contract against the real app on port 0 and the real PostGIS:
//! status codes, every cache header, conditional requests, HEAD, and single-flight
//! rendering under concurrency.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

mod common;
mod support;

use reqwest::header;
use reqwest::StatusCode;
use std::time::{Duration, Instant};

/// Central Helsinki at z15 (Kaisaniemi/Kluuvi), inside the imported extract.
const HELSINKI_Z15: &str = "/osm/15/18654/9484.png";

fn is_etag(v: &str) -> bool {
    v.len() == 18
        && v.starts_with('"')
        && v.ends_with('"')
        && v[1..17].bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tile_comes_back_as_png_with_every_cache_header() {
    let Some(app) = support::spawn_app().await else {
        return;
    };
    let res = app.get(HELSINKI_Z15).await;
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers().clone();
    assert_eq!(h[header::CONTENT_TYPE], "image/png");
    assert_eq!(
        h[header::CACHE_CONTROL],
        "public, max-age=86400, stale-while-revalidate=604800"
    );
    let etag = h[header::ETAG].to_str().unwrap().to_string();
    assert!(is_etag(&etag), "etag {etag}");
    let last_modified = h[header::LAST_MODIFIED].to_str().unwrap().to_string();
    assert!(httpdate::parse_http_date(&last_modified).is_ok());
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let length: usize = h[header::CONTENT_LENGTH].to_str().unwrap().parse().unwrap();
    let body = res.bytes().await.unwrap();
    assert_eq!(body.len(), length);
    assert_eq!(support::png_size(&body), (256, 256));

    // The same tile again: same bytes, same validators, answered from memory.
    let again = app.get(HELSINKI_Z15).await;
    assert_eq!(again.headers()[header::ETAG].to_str().unwrap(), etag);
    assert_eq!(again.bytes().await.unwrap(), body);
    let memory_hits = app
        .metric("metatiled_tile_lookups_total{result=\"memory\",style=\"osm\"}")
        .await;
    assert!(memory_hits >= 1.0, "memory hits {memory_hits}");

    // 2x tiles are 512 px.
    let retina = app.get("/osm/15/18654/9484@2x.png").await;
    assert_eq!(retina.status(), StatusCode::OK);
    assert_eq!(
        support::png_size(&retina.bytes().await.unwrap()),
        (512, 512)
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn validators_turn_into_304_without_a_body() {
    let Some(app) = support::spawn_app().await else {
        return;
    };
    let first = app.get(HELSINKI_Z15).await;
    let etag = first.headers()[header::ETAG].clone();
    let last_modified = first.headers()[header::LAST_MODIFIED].clone();

    let by_etag = app
        .client
        .get(app.url(HELSINKI_Z15))
        .header(header::IF_NONE_MATCH, etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(by_etag.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(by_etag.headers()[header::ETAG], etag);
    assert!(by_etag.bytes().await.unwrap().is_empty());

    let by_date = app
        .client
        .get(app.url(HELSINKI_Z15))
        .header(header::IF_MODIFIED_SINCE, last_modified)
        .send()
        .await
        .unwrap();
    assert_eq!(by_date.status(), StatusCode::NOT_MODIFIED);
    assert!(by_date.bytes().await.unwrap().is_empty());

    let changed = app
        .client
        .get(app.url(HELSINKI_Z15))
        .header(header::IF_NONE_MATCH, "\"0000000000000000\"")
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn head_has_the_headers_and_no_body() {
    let Some(app) = support::spawn_app().await else {
        return;
    };
    let get = app.get(HELSINKI_Z15).await;
    let get_len = get.bytes().await.unwrap().len();
    let head = app.client.head(app.url(HELSINKI_Z15)).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()[header::CONTENT_TYPE], "image/png");
    assert!(head.headers().contains_key(header::ETAG));
    let len: usize = head.headers()[header::CONTENT_LENGTH]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(len, get_len);
    assert!(head.bytes().await.unwrap().is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn methods_other_than_get_and_head_are_refused_with_405() {
    let Some(app) = support::spawn_app().await else {
        return;
    };
    for path in [HELSINKI_Z15, "/osm/tile.json", "/assets/leaflet/leaflet.js"] {
        let res = app.client.post(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(res.headers()[header::ALLOW], "GET, HEAD, OPTIONS", "{path}");
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store", "{path}");
    }
    // Refusing the method created nothing in the cache.
    assert!(
        !app.cache_dir.path().join("osm").exists(),
        "a refused POST reached the cache"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_and_impossible_paths_get_400_or_404_at_once() {
    let Some(app) = support::spawn_app().await else {
        return;
    };
    let cases: &[(&str, u16)] = &[
        ("/nosuchstyle/1/0/0.png", 404),
        ("/osm/21/0/0.png", 404),
        ("/osm/20/1048576/0.png", 404),
        ("/osm/1/2/0.png", 404),
        ("/osm/99999999999999999999999/0/0.png", 404),
        ("/osm/12/0/99999999999999999999.png", 404),
        ("/osm/-1/0/0.png", 400),
        ("/osm/1/-1/0.png", 400),
        ("/osm/1/0/x.png", 400),
        ("/osm/1/0/0.jpg", 400),
        ("/osm/1/0.png", 400),
        ("/../1/0/0.png", 400),
        ("/%2e%2e/1/0/0.png", 400),
        ("/osm%2f..%2f..%2fetc/1/0/0.png", 400),
        ("/.%2e/1/0/0.png", 400),
        ("/osm@2x/1/0/0.png", 400),
        ("/nosuchstyle/tile.json", 404),
        ("/nothing-here", 404),
    ];
    for (path, want) in cases {
        let started = Instant::now();
        let got = app.raw_status(path).await;
        assert_eq!(got, *want, "{path}");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{path} was slow"
        );
    }
    // The reasons are in the words of the style asked for.
    for (path, reason) in [
        ("/osm/99/1/1.png", "zoom 99 is outside this style's 0-19"),
        ("/osm/20/0/0.png", "zoom 20 is outside this style's 0-19"),
        ("/nosuchstyle/25/0/0.png", "unknown style nosuchstyle"),
        // (`/osm@2x/tile.json` is a TileJSON of 512 px tiles now: tests/edge.rs.)
    ] {
        let text = app.get(path).await.text().await.unwrap();
        assert!(text.contains(reason), "{path}: {text}");
    }
    // Nothing was created outside the style directories.
    let entries: Vec<String> = std::fs::read_dir(app.cache_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "planet-import-complete")
        .collect();
    assert!(entries.is_empty(), "unexpected cache entries {entries:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_requests_into_one_metatile_render_it_once() {
    let Some(app) = support::spawn_app().await else {
        return;
    };
    // z16 metatile 37304/18968: all 64 tiles, requested at once, none cached yet.
    let paths: Vec<String> = (0..8)
        .flat_map(|dx| (0..8).map(move |dy| format!("/osm/16/{}/{}.png", 37304 + dx, 18968 + dy)))
        .collect();
    let requests = paths.iter().map(|p| {
        let client = app.client.clone();
        let url = app.url(p);
        async move {
            let res = client.get(url).send().await.unwrap();
            (
                res.status(),
                res.headers()[header::ETAG].clone(),
                res.bytes().await.unwrap(),
            )
        }
    });
    let results = futures_util::future::join_all(requests).await;
    let renders = app
        .metric("metatiled_renders_total{outcome=\"ok\",priority=\"interactive\",style=\"osm\"}")
        .await;
    assert_eq!(renders, 1.0, "one render for one metatile");
    let coalesced = app.metric("metatiled_coalesced_requests_total").await;
    assert_eq!(coalesced, 63.0);
    for ((status, etag, body), path) in results.iter().zip(&paths) {
        assert_eq!(*status, StatusCode::OK, "{path}");
        assert_eq!(support::png_size(body), (256, 256), "{path}");
        // Each answer is the tile the cache now holds for that path.
        let again = app.get(path).await;
        assert_eq!(&again.headers()[header::ETAG], etag, "{path}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_answers_503_at_once_while_hits_keep_coming() {
    // The writable copy, whose polygon table this test locks so that renders wait for
    // it: the queue stays exactly as full as the burst made it.
    let Some(rw_url) = common::rw_database_url() else {
        return;
    };
    let Some(app) = support::spawn_app_with(|s| {
        s.database.url = Some(rw_url.clone());
        s.render.threads = 1;
        s.render.queue_interactive = 1;
    })
    .await
    else {
        return;
    };
    // A cached tile to hit while the queue is full.
    assert_eq!(app.get(HELSINKI_Z15).await.status(), StatusCode::OK);
    let mut db = common::connect(&rw_url).await;
    let lock = db.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE planet_osm_polygon IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    // Sixteen distinct uncached z17 metatiles: one render thread has two fetch slots
    // (both waiting for the lock), the queue holds one, the other 13 are refused.
    let paths: Vec<String> = (0..16)
        .map(|i| {
            format!(
                "/osm/17/{}/{}.png",
                74616 + 8 * (i % 4),
                37936 + 8 * (i / 4)
            )
        })
        .collect();
    let get = |p: &String| {
        let client = app.client.clone();
        let url = app.url(p);
        async move {
            let started = Instant::now();
            let res = client.get(url).send().await.unwrap();
            let retry_after = res.headers().get(header::RETRY_AFTER).cloned();
            (res.status(), retry_after, started.elapsed())
        }
    };
    // The pool is filled first, one step at a time (a burst alone races the dispatcher
    // taking jobs into their fetch slots): two fetching, then one queued.
    let until = |series: &'static str, value: f64| {
        let app = &app;
        async move {
            let started = Instant::now();
            while app.metric(series).await < value {
                assert!(started.elapsed() < Duration::from_secs(10), "{series}");
                tokio::task::yield_now().await;
            }
        }
    };
    let fetching: Vec<_> = paths[..2].iter().map(|p| tokio::spawn(get(p))).collect();
    until("metatiled_render_jobs_running", 2.0).await;
    let queued = tokio::spawn(get(&paths[2]));
    until("metatiled_queue_depth{priority=\"interactive\"}", 1.0).await;
    let burst = tokio::spawn(futures_util::future::join_all(
        paths[3..].iter().map(get).collect::<Vec<_>>(),
    ));
    // Once the 13 refusals are in, hits still come at once; then the lock goes.
    let refusals = "metatiled_render_rejected_total{priority=\"interactive\"}";
    while app.metric(refusals).await < 13.0 {
        tokio::task::yield_now().await;
    }
    let started = Instant::now();
    let hit = app.get(HELSINKI_Z15).await;
    let hit_time = started.elapsed();
    assert_eq!(hit.status(), StatusCode::OK);
    assert!(
        hit_time < Duration::from_millis(100),
        "hit took {hit_time:?}"
    );
    lock.rollback().await.unwrap();
    let mut results = burst.await.unwrap();
    for task in fetching.into_iter().chain([queued]) {
        results.push(task.await.unwrap());
    }
    let refused: Vec<_> = results
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    let served = results
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::OK)
        .count();
    assert_eq!((refused.len(), served), (13, 3), "{results:?}");
    for (_, retry_after, took) in &refused {
        assert!(retry_after.is_some(), "503 without Retry-After");
        assert!(*took < Duration::from_millis(100), "503 took {took:?}");
    }
    assert_eq!(app.metric(refusals).await, 13.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tilejson_viewer_health_ready_and_metrics_answer() {
    let Some(app) = support::spawn_app().await else {
        return;
    };
    let tj: serde_json::Value = app.get("/osm/tile.json").await.json().await.unwrap();
    assert_eq!(tj["tilejson"], "3.0.0");
    let tiles = tj["tiles"][0].as_str().unwrap();
    assert!(tiles.ends_with("/osm/{z}/{x}/{y}.png"), "{tiles}");
    let bounds: Vec<f64> = serde_json::from_value(tj["bounds"].clone()).unwrap();
    assert!(
        bounds[0] > 24.8 && bounds[2] < 25.1 && bounds[1] > 60.1 && bounds[3] < 60.3,
        "{bounds:?}"
    );
    assert!(tj["attribution"]
        .as_str()
        .unwrap()
        .contains("OpenStreetMap"));

    let page = app.get("/").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("leaflet.js") && html.contains("\"osm\""));
    assert_eq!(
        app.get("/assets/leaflet/leaflet.js").await.status(),
        StatusCode::OK
    );
    // Four segments like a tile path, but not a tile.
    assert_eq!(
        app.get("/assets/leaflet/images/layers.png").await.status(),
        StatusCode::OK
    );
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
    assert_eq!(app.get("/ready").await.status(), StatusCode::OK);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for series in [
        "metatiled_http_requests_total",
        "metatiled_queue_depth",
        "metatiled_expired_metatiles_total",
    ] {
        assert!(metrics.contains(series), "{series}");
    }
    // The admin API is not on the public port.
    assert_eq!(app.raw_status("/status").await, 404);
    app.stop().await;
}
