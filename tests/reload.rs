//! Style hot reload under load: a changed colour is served by new renders at once, with
//! no failed request, and the TileJSON URL changes; a broken style file (bad syntax, SQL
//! that does not run) is refused, logged and counted, and the old style keeps serving.
#![allow(clippy::unwrap_used)] // tests fail loudly on what they set up

mod common;
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A tile far from the test data: the style's background and nothing else.
const EMPTY: &str = "/osm/12/100/1200.png";
const EMPTY_2: &str = "/osm/12/200/1200.png";
/// A cached tile, under load during the reloads.
const BUSY: &str = "/osm/15/18654/9484.png";

fn centre_pixel(png: &[u8]) -> [u8; 3] {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    let at = (h / 2 * w + w / 2) * info.color_type.samples();
    match info.color_type {
        png::ColorType::Indexed => {
            let palette = reader.info().palette.as_ref().unwrap();
            let i = buf[(h / 2) * info.line_size + w / 2] as usize * 3;
            [palette[i], palette[i + 1], palette[i + 2]]
        }
        _ => [buf[at], buf[at + 1], buf[at + 2]],
    }
}

async fn tiles_url(app: &support::TestApp) -> String {
    let tj: serde_json::Value = app.get("/osm/tile.json").await.json().await.unwrap();
    tj["tiles"][0].as_str().unwrap().to_string()
}

async fn reload(app: &support::TestApp) -> serde_json::Value {
    let res = app
        .client
        .post(app.admin_url("/styles/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_style_reload_under_load_serves_the_new_colour_and_refuses_a_broken_file() {
    let styles = tempfile::tempdir().unwrap();
    let original =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/styles/osm.toml")).unwrap();
    let file = styles.path().join("osm.toml");
    std::fs::write(&file, &original).unwrap();
    let dir = styles.path().to_path_buf();
    let Some(app) = support::spawn_app_with(move |s| {
        s.styles.dir = dir;
        s.limits.enabled = false;
    })
    .await
    else {
        return;
    };
    let before = app.get(EMPTY).await.bytes().await.unwrap();
    assert_eq!(centre_pixel(&before), [0xf2, 0xef, 0xe9]);
    assert_eq!(app.get(BUSY).await.status(), 200);
    let url_before = tiles_url(&app).await;
    assert!(url_before.contains("?v="), "{url_before}");

    // Load on a cached tile all along.
    let failures = Arc::new(AtomicU64::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url(BUSY));
            let (failures, stop) = (failures.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.is_cancelled() {
                    let ok = client
                        .get(&url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200);
                    if !ok {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();

    // A new background colour: new renders use it, the tile URL changes.
    std::fs::write(
        &file,
        original.replace("background = \"#f2efe9\"", "background = \"#ff00ff\""),
    )
    .unwrap();
    let report = reload(&app).await;
    assert_eq!(
        report["changed"],
        serde_json::json!(["osm", "osm@2x"]),
        "{report}"
    );
    let url_changed = tiles_url(&app).await;
    assert_ne!(url_changed, url_before);
    let after = app.get(EMPTY_2).await.bytes().await.unwrap();
    assert_eq!(centre_pixel(&after), [0xff, 0x00, 0xff]);
    // The cached tile of the old style is now stale: served, and re-rendered.
    let stale = app.get(EMPTY).await;
    assert_eq!(stale.status(), 200);
    assert!(stale.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age=60,"));
    // Old-version URLs keep working.
    let old = url_before.replace("{z}/{x}/{y}", "15/18654/9484");
    let old = old.split_once("/osm/").unwrap().1;
    assert_eq!(app.get(&format!("/osm/{old}")).await.status(), 200);

    // Broken files are refused; the style that was serving keeps serving.
    for broken in [
        original.replace("background = \"#f2efe9\"", "background = "),
        original.replace("FROM planet_osm_polygon", "FROM planet_osm_nowhere"),
    ] {
        std::fs::write(&file, broken).unwrap();
        let report = reload(&app).await;
        assert_eq!(report["refused"].as_array().unwrap().len(), 1, "{report}");
        assert_eq!(tiles_url(&app).await, url_changed);
        let still = app.get(EMPTY_2).await.bytes().await.unwrap();
        assert_eq!(centre_pixel(&still), [0xff, 0x00, 0xff]);
    }
    assert_eq!(
        app.metric("metatiled_style_reloads_total{outcome=\"refused\",style=\"osm\"}")
            .await,
        2.0
    );
    stop.cancel();
    let mut served = 0;
    for task in load {
        served += task.await.unwrap();
    }
    assert!(served > 0);
    assert_eq!(failures.load(Ordering::Relaxed), 0, "no request failed");
    app.stop().await;
}
