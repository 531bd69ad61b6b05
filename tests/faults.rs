//! Faults outside the server, end to end against the real app and PostGIS: a TCP proxy
//! between the server and PostgreSQL is killed (connections refused) or black-holed
//! (connections accepted, nothing answered); corrupt metatiles sit in the cache.
//! Cached tiles keep being served, misses get 503 + Retry-After at once once the fault
//! is known, `/ready` answers from the known state, the server heals by itself, and
//! no request ever gets a 500 or bytes that are not a tile.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

mod common;
mod support;

use reqwest::{header, StatusCode};
use std::time::{Duration, Instant};
use support::proxy::{PgProxy, ProxyMode};
use support::TestApp;

/// The connect timeout of these tests: a silent database must be found within it.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(2000);
/// How fast a known fault is answered.
const FAST: Duration = Duration::from_millis(100);
/// How soon after the database is back misses must render again.
const RECOVERY: Duration = Duration::from_secs(2);

/// A z18 tile in central Helsinki, `n` metatiles east of the first one: each `n` is
/// a metatile of its own, never cached before it is asked for.
fn tile(n: u64) -> String {
    format!("/osm/18/{}/{}.png", 149_224 + 8 * n, 75_872)
}

async fn app_behind_proxy() -> Option<(TestApp, PgProxy)> {
    let url = common::database_url().or_else(|| {
        eprintln!("skipping: no DATABASE_URL");
        None
    })?;
    let (proxy, proxied) = PgProxy::for_url(&url).await;
    let app = support::spawn_app_with(|s| {
        s.database.url = Some(proxied);
        s.database.connect_timeout_ms = CONNECT_TIMEOUT.as_millis() as u64;
    })
    .await?;
    Some((app, proxy))
}

/// Status, Retry-After and how long the answer took.
async fn timed_get(app: &TestApp, path: &str) -> (StatusCode, Option<String>, Duration) {
    let started = Instant::now();
    let res = app.get(path).await;
    let elapsed = started.elapsed();
    let retry = res
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_string());
    let status = res.status();
    if status == StatusCode::OK {
        assert_eq!(support::png_size(&res.bytes().await.unwrap()), (256, 256));
    }
    (status, retry, elapsed)
}

/// What both kinds of outage must look like from outside.
async fn survives_an_outage(mode: ProxyMode) {
    let Some((app, proxy)) = app_behind_proxy().await else {
        return;
    };
    let cached: Vec<String> = (0..3).map(tile).collect();
    for path in &cached {
        assert_eq!(app.get(path).await.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(app.get("/ready").await.status(), StatusCode::OK);

    proxy.set_mode(mode);
    let (status, retry, first) = timed_get(&app, &tile(100)).await;
    eprintln!("{mode:?}: first miss {status} in {first:?}");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.as_deref(), Some("2"));
    assert!(first < CONNECT_TIMEOUT, "the first miss took {first:?}");

    let mut slowest = Duration::ZERO;
    for n in 101..121 {
        let (status, retry, elapsed) = timed_get(&app, &tile(n)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(retry.is_some(), "503 without Retry-After");
        slowest = slowest.max(elapsed);
    }
    for _ in 0..3 {
        for path in &cached {
            assert_eq!(app.get(path).await.status(), StatusCode::OK, "{path}");
        }
    }
    let started = Instant::now();
    let ready = app.get("/ready").await.status();
    let ready_took = started.elapsed();
    eprintln!(
        "{mode:?}: later misses 503 in at most {slowest:?}; /ready {ready} in {ready_took:?}"
    );
    assert!(slowest < FAST, "a known fault took {slowest:?} to answer");
    assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready_took < FAST, "/ready took {ready_took:?}");
    assert_eq!(app.metric("metatiled_database_up").await, 0.0);

    proxy.set_mode(ProxyMode::Pass);
    let healed = Instant::now();
    let mut n = 200;
    let recovered = loop {
        let (status, _, _) = timed_get(&app, &tile(n)).await;
        if status == StatusCode::OK {
            break healed.elapsed();
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(healed.elapsed() < RECOVERY * 5, "no recovery");
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("{mode:?}: a miss rendered {recovered:?} after the database came back");
    assert!(recovered < RECOVERY, "recovery took {recovered:?}");
    assert_eq!(app.get("/ready").await.status(), StatusCode::OK);

    let faults = app
        .metric("metatiled_fault_responses_total{cause=\"database\"}")
        .await;
    assert!(faults >= 21.0, "{faults} fault responses counted");
    assert_eq!(
        app.metric("metatiled_http_requests_total{status=\"500\"}")
            .await,
        0.0
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_refuses_connections_is_survived_and_healed() {
    survives_an_outage(ProxyMode::Refuse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_silent_is_survived_and_healed() {
    survives_an_outage(ProxyMode::BlackHole).await;
}

/// A valid header and index whose tiles are not the style's PNGs: the first blob is
/// text, the others are PNGs of the wrong size.
fn garbage_tiles() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, 16, 16);
    encoder.set_color(png::ColorType::Grayscale);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&[0u8; 256]).unwrap();
    writer.finish().unwrap();
    let mut tiles = vec![out; 64];
    tiles[0] = b"<html>502 Bad Gateway</html>".to_vec();
    tiles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_metatiles_are_rendered_again_and_never_served() {
    use metatiled::cache::DiskCache;
    use metatiled::tile::{MetatileCoord, StyleName, TileCoord};
    let Some(app) = support::spawn_app().await else {
        return;
    };
    let style = StyleName::parse("osm").unwrap();
    let disk = DiskCache::new(app.cache_dir.path(), false);
    let meta = |n: u64| MetatileCoord::try_new(17, 74_608 + 8 * n, 37_936).unwrap();

    // Garbage blobs behind a valid index.
    disk.write_metatile(&style, meta(0), &garbage_tiles())
        .unwrap();
    // Good PNGs, but the file cut short inside the last blob.
    let png = reqwest::get(app.url(&format!("/osm/17/{}/37936.png", 74_608 + 8 * 9)))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let path = disk
        .write_metatile(&style, meta(1), &vec![png; 64])
        .unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    // A directory where a metatile belongs.
    std::fs::create_dir_all(disk.path_of(&style, meta(2)).join("x")).unwrap();

    let requests = (0..3).flat_map(|n| {
        let m = meta(n);
        [(0, 0), (3, 5), (7, 7)].map(|(dx, dy)| {
            let t = TileCoord::try_new(17, u64::from(m.x) + dx, u64::from(m.y) + dy).unwrap();
            format!("/osm/{}/{}/{}.png", t.z, t.x, t.y)
        })
    });
    let responses = futures_util::future::join_all(requests.map(|path| {
        let app = &app;
        async move {
            let res = app.get(&path).await;
            (path, res.status(), res.bytes().await.unwrap())
        }
    }))
    .await;
    for (path, status, body) in responses {
        match status {
            StatusCode::OK => assert_eq!(support::png_size(&body), (256, 256), "{path}"),
            StatusCode::SERVICE_UNAVAILABLE => {}
            other => panic!("{path}: {other}"),
        }
    }
    for n in 0..3 {
        let aside = disk.path_of(&style, meta(n)).with_extension("meta.corrupt");
        assert!(aside.exists(), "{} was not moved aside", aside.display());
    }
    let corrupt = |reason: &str| {
        let app = &app;
        let series = format!("metatiled_corrupt_metatiles_total{{reason=\"{reason}\"}}");
        async move { app.metric(&series).await }
    };
    assert_eq!(corrupt("bad_tile").await, 1.0);
    assert_eq!(corrupt("bad_file").await, 1.0);
    assert_eq!(corrupt("not_a_file").await, 1.0);
    app.stop().await;
}
