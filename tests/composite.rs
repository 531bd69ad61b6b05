//! The composite style `osm-transit`: its tiles are the blend of `osm` and the `transit`
//! overlay (computed here from the served input tiles), cached as metatiles of its own,
//! and expired whenever an input's metatile is.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

mod common;
mod support;

use metatiled::cache::MetatileState;
use metatiled::tile::{StyleName, TileCoord};
use serde_json::json;

/// Straight-alpha RGBA pixels of a PNG.
fn rgba(bytes: &[u8]) -> Vec<[u8; 4]> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).unwrap();
    let channels = frame.color_type.samples();
    buf[..frame.buffer_size()]
        .chunks(channels)
        .map(|p| match channels {
            4 => [p[0], p[1], p[2], p[3]],
            3 => [p[0], p[1], p[2], 255],
            2 => [p[0], p[0], p[0], p[1]],
            _ => [p[0], p[0], p[0], 255],
        })
        .collect()
}

/// `over` drawn over the opaque `base` with `opacity` (source-over, straight alpha).
fn blend(base: [u8; 4], over: [u8; 4], opacity: f64) -> [u8; 3] {
    let a = f64::from(over[3]) / 255.0 * opacity;
    let mix = |b: u8, o: u8| (f64::from(b) * (1.0 - a) + f64::from(o) * a).round() as u8;
    [
        mix(base[0], over[0]),
        mix(base[1], over[1]),
        mix(base[2], over[2]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composite_tile_is_the_blend_of_its_inputs_and_expires_with_them() {
    let Some(app) = support::spawn_app().await else {
        return;
    };
    // Helsinki central station: tracks (transit) over the osm map.
    let t = TileCoord {
        z: 16,
        x: 37308,
        y: 18966,
    };
    let path = |style: &str| format!("/{style}/{}/{}/{}.png", t.z, t.x, t.y);
    let composite = app.get(&path("osm-transit")).await;
    assert_eq!(composite.status(), 200);
    let composite = rgba(&composite.bytes().await.unwrap());
    let base = rgba(&app.get(&path("osm")).await.bytes().await.unwrap());
    let over = rgba(&app.get(&path("transit")).await.bytes().await.unwrap());
    assert_eq!(
        (composite.len(), base.len(), over.len()),
        (65536, 65536, 65536)
    );
    let drawn = over.iter().filter(|p| p[3] > 0).count();
    assert!(
        drawn > 65536 / 50,
        "the overlay draws only {drawn} pixels here"
    );
    assert!(
        over.iter().any(|p| p[3] == 0),
        "the overlay is transparent elsewhere"
    );

    // The style says: transit at opacity 0.9, normal blend. Palette quantization of
    // the composite moves a few edge pixels by a few levels, never flat colours far.
    let (mut sum, mut far, mut worst) = (0u64, 0usize, 0u8);
    for ((c, b), o) in composite.iter().zip(&base).zip(&over) {
        let want = blend(*b, *o, 0.9);
        let diff = (0..3).map(|i| c[i].abs_diff(want[i])).max().unwrap();
        assert_eq!(c[3], 255);
        sum += u64::from(diff);
        worst = worst.max(diff);
        if diff > 8 {
            far += 1;
        }
    }
    let mean = sum as f64 / 65536.0;
    eprintln!("composite vs blend: mean {mean:.3}, worst {worst}, {far} pixels off by > 8");
    assert!(mean < 1.0, "mean difference {mean}");
    assert!(far < 65536 / 200, "{far} pixels off by more than 8 levels");

    // Cached as its own metatile; expiring an input's metatile expires it too.
    let cache = app.service.cache();
    let meta = t.metatile();
    let name = |s: &str| StyleName::parse(s).unwrap();
    let state = |s: &str| cache.metatile_state(&name(s), meta).unwrap();
    for s in ["osm", "transit", "osm-transit", "osm@grid"] {
        assert_eq!(state(s), MetatileState::Fresh, "{s}");
    }
    let expire =
        |body: serde_json::Value| app.client.post(app.admin_url("/expire")).json(&body).send();
    let tile = format!("{}/{}/{}", t.z, t.x, t.y);
    let res = expire(json!({"style": "osm", "tiles": [tile], "mode": "dirty"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for s in ["osm", "osm-transit", "osm@grid"] {
        assert_eq!(state(s), MetatileState::Stale, "{s} after expiring osm");
    }
    assert_eq!(state("transit"), MetatileState::Fresh);

    // Served stale, re-rendered in the background (inputs first): fresh again.
    let res = app.get(&path("osm-transit")).await;
    assert_eq!(res.status(), 200);
    let mut fresh = false;
    for _ in 0..600 {
        if state("osm-transit") == MetatileState::Fresh && state("osm") == MetatileState::Fresh {
            fresh = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(fresh, "the stale composite was re-rendered");

    let res = expire(json!({"style": "transit", "tiles": [tile], "mode": "delete"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(state("transit"), MetatileState::Absent);
    assert_eq!(state("osm-transit"), MetatileState::Absent);
    assert_eq!(state("osm"), MetatileState::Fresh);
    app.stop().await;
}
