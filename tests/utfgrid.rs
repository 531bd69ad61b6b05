//! UTFGrids of the `osm` style's points of interest: `/{style}/{z}/{x}/{y}.grid.json`
//! follows UTFGrid 1.3 (64x64 cells for 256 px tiles, keys and data that agree), the key
//! under a POI's pixel names that POI, and a Leaflet page with npm's UTFGrid plugin
//! loads the grids in headless chromium without errors and finds the same POI.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

mod common;
mod support;
mod tools;

use metatiled::render::key_char;
use serde_json::Value;
use std::collections::HashMap;
use std::process::Command;

const HALF: f64 = 20_037_508.342_789_244;
const Z: u8 = 17;

/// A named restaurant or café with no other point of interest within 25 m, so its
/// cell can only be its own: (name, x, y) in EPSG:3857.
async fn lonely_poi(url: &str) -> (String, f64, f64) {
    let client = common::connect(url).await;
    let row = client
        .query_one(
            "SELECT p.name, ST_X(p.way), ST_Y(p.way) FROM planet_osm_point p
             WHERE p.name IS NOT NULL AND p.amenity IN ('restaurant', 'cafe')
               AND NOT EXISTS (SELECT 1 FROM planet_osm_point q
                 WHERE q.osm_id <> p.osm_id AND ST_DWithin(q.way, p.way, 25)
                   AND (q.amenity IS NOT NULL OR q.shop IS NOT NULL OR q.tourism IS NOT NULL
                        OR q.historic IS NOT NULL OR q.highway = 'bus_stop'
                        OR q.railway = 'tram_stop' OR q.public_transport = 'platform'))
             ORDER BY p.osm_id LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// Global pixel of a point at zoom `Z`.
fn pixel(x: f64, y: f64) -> (f64, f64) {
    let world = 256.0 * f64::from(1u32 << Z);
    (
        (x + HALF) / (2.0 * HALF) * world,
        (HALF - y) / (2.0 * HALF) * world,
    )
}

/// Checks a UTFGrid document against the spec; returns its rows as key indexes.
fn validate(grid: &Value) -> Vec<Vec<usize>> {
    let keys: Vec<&str> = grid["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(keys.first(), Some(&""), "the first key is the empty one");
    let chars: HashMap<char, usize> = (0..keys.len()).map(|k| (key_char(k), k)).collect();
    let rows = grid["grid"].as_array().unwrap();
    assert_eq!(rows.len(), 64, "64 rows of 4 px cells for a 256 px tile");
    let mut used = vec![false; keys.len()];
    let decoded: Vec<Vec<usize>> = rows
        .iter()
        .map(|row| {
            let row = row.as_str().unwrap();
            assert_eq!(row.chars().count(), 64);
            row.chars()
                .map(|c| {
                    let k = *chars.get(&c).unwrap_or_else(|| panic!("{c:?} is no key's"));
                    used[k] = true;
                    k
                })
                .collect()
        })
        .collect();
    let data = grid["data"].as_object().unwrap();
    for (k, key) in keys.iter().enumerate().skip(1) {
        assert!(used[k], "key {key:?} is listed but not in the grid");
        assert!(data.contains_key(*key), "key {key:?} has no data");
    }
    assert_eq!(data.len(), keys.len() - 1, "data only for listed keys");
    decoded
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn utfgrids_follow_the_spec_name_the_poi_under_a_pixel_and_work_in_leaflet() {
    let Some(url) = common::database_url() else {
        eprintln!("skipping: no DATABASE_URL");
        return;
    };
    let (name, x, y) = lonely_poi(&url).await;
    let (px, py) = pixel(x, y);
    let (tx, ty) = ((px / 256.0).floor() as u32, (py / 256.0).floor() as u32);
    let (cx, cy) = (((px % 256.0) / 4.0) as usize, ((py % 256.0) / 4.0) as usize);
    let Some(app) = support::spawn_app().await else {
        return;
    };

    let path = format!("/osm/{Z}/{tx}/{ty}.grid.json");
    let res = app.get(&path).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert!(res.headers()["cache-control"]
        .to_str()
        .unwrap()
        .starts_with("public, max-age=86400"));
    let etag = res.headers()["etag"].clone();
    let grid: Value = res.json().await.unwrap();
    let rows = validate(&grid);
    let key = grid["keys"][rows[cy][cx]].as_str().unwrap();
    assert!(
        !key.is_empty(),
        "no feature under {name}'s pixel ({cx}, {cy})"
    );
    assert_eq!(grid["data"][key]["name"], name.as_str());
    assert_eq!(grid["data"][key]["kind"], "food");

    let res = app
        .client
        .get(app.url(&path))
        .header("If-None-Match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    // Styles without interactivity have no grids; TileJSON names the grids of osm.
    assert_eq!(
        app.get(&format!("/transit/{Z}/{tx}/{ty}.grid.json"))
            .await
            .status(),
        404
    );
    let tilejson: Value = app.get("/osm/tile.json").await.json().await.unwrap();
    assert!(tilejson["grids"][0]
        .as_str()
        .unwrap()
        .ends_with("/osm/{z}/{x}/{y}.grid.json"));
    // The other tiles of the metatile were written by the same render: their grids
    // are valid too.
    let res = app
        .get(&format!("/osm/{Z}/{}/{}.grid.json", tx ^ 1, ty))
        .await;
    validate(&res.json().await.unwrap());

    leaflet_finds_the_poi(&app, &name, x, y).await;
    app.stop().await;
}

async fn leaflet_finds_the_poi(app: &support::TestApp, name: &str, x: f64, y: f64) {
    let (Some(browser), Some(npm)) = (tools::program("chromium"), tools::npm_packages()) else {
        return;
    };
    let lon = x / HALF * 180.0;
    let lat = (2.0 * (y / HALF * std::f64::consts::PI).exp().atan() - std::f64::consts::FRAC_PI_2)
        .to_degrees();
    let leaflet = common::repo_root().join("assets/vendor/leaflet");
    let base = app.url("");
    let page = format!(
        r#"<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="file://{leaflet}/leaflet.css">
<script>
var errors = [];
window.addEventListener('error', function (e) {{
  errors.push('error: ' + (e.message || (e.target && (e.target.src || e.target.href))));
}}, true);
window.addEventListener('unhandledrejection', function (e) {{ errors.push('rejection: ' + e.reason); }});
var consoleError = console.error;
console.error = function () {{
  errors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
  consoleError.apply(console, arguments);
}};
</script>
<script src="file://{leaflet}/leaflet.js"></script>
<script src="file://{npm}/corslite/corslite.js"></script>
<script src="file://{npm}/leaflet-utfgrid/L.UTFGrid.js"></script>
</head><body>
<div id="map" style="width: 512px; height: 512px"></div>
<pre id="out">not run</pre>
<script>
var poi = L.latLng({lat}, {lon});
var map = L.map('map').setView(poi, {Z});
var grids = 0, images = 0;
var osm = L.tileLayer('{base}/osm/{{z}}/{{x}}/{{y}}.png').addTo(map);
osm.on('tileload', function () {{ images++; report(); }});
osm.on('tileerror', function (e) {{ errors.push('tile error ' + e.coords); }});
var grid = L.utfGrid('{base}/osm/{{z}}/{{x}}/{{y}}.grid.json', {{ resolution: 4 }});
grid.on('error', function (e) {{ errors.push('grid error: ' + e.error); }});
grid._handleTileLoad = function () {{ grids++; report(); }};
grid.addTo(map);
function report() {{
  var on = grid._objectForEvent({{ latlng: poi }});
  document.getElementById('out').textContent = 'RESULT ' + JSON.stringify({{
    name: on.data ? on.data.name : null, grids: grids, images: images, errors: errors
  }});
}}
setInterval(report, 1000);
</script></body></html>"#,
        leaflet = leaflet.display(),
        npm = npm.display(),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("utfgrid.html");
    std::fs::write(&file, page).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let args = [
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--allow-file-access-from-files".into(),
        format!("--user-data-dir={}", profile.path().display()),
        "--window-size=600,600".into(),
        "--virtual-time-budget=30000".into(),
        "--dump-dom".into(),
        format!("file://{}", file.display()),
    ];
    let out = tokio::task::spawn_blocking(move || Command::new(browser).args(args).output())
        .await
        .unwrap()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout);
    let result = dom
        .split("RESULT ")
        .nth(1)
        .and_then(|r| r.split("</pre>").next())
        .unwrap_or_else(|| {
            panic!(
                "the page did not report: {dom}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let result: Value = serde_json::from_str(&result.replace("&amp;", "&")).unwrap();
    assert_eq!(result["errors"], serde_json::json!([]), "{result}");
    assert!(result["grids"].as_u64().unwrap() >= 4, "{result}");
    assert!(result["images"].as_u64().unwrap() >= 4, "{result}");
    assert_eq!(result["name"], name, "{result}");
}
