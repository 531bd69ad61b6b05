//! Rendering tests: golden images of the default style on the real Helsinki import,
//! seams between metatiles, bad styles against the database, low zooms and 2x.
//!
//! Tests that need PostGIS read `METATILED_TEST_DATABASE_URL` or `DATABASE_URL`; without
//! one they print "skipping" and pass, except under `CI=true`, where they fail.
//! A missing golden image is written (look at it!) and the test passes, except under CI.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

use metatiled::config::DatabaseSettings;
use metatiled::render::{paint_metatile, render_metatile, PngMode};
use metatiled::source::{build_pool, Feature, LayerData, MetatileData, PostgisSource, SourceError};
use metatiled::style::{parse_style, Style, StyleSet};
use metatiled::text::FontSet;
use metatiled::tile::{MetatileCoord, StyleName, TileCoord};
use std::path::{Path, PathBuf};
use tiny_skia::Pixmap;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

async fn source() -> Option<PostgisSource> {
    source_with_pool(2).await
}

/// The test database through a pool of `pool_size` connections.
async fn source_with_pool(pool_size: usize) -> Option<PostgisSource> {
    let url = std::env::var("METATILED_TEST_DATABASE_URL")
        .ok()
        .or_else(|| std::env::var("DATABASE_URL").ok());
    let Some(url) = url else {
        if in_ci() {
            panic!("CI=true but neither METATILED_TEST_DATABASE_URL nor DATABASE_URL is set");
        }
        eprintln!("skipping: no DATABASE_URL (run scripts/test)");
        return None;
    };
    let pool = build_pool(&DatabaseSettings {
        url: Some(url),
        pool_size,
        ..DatabaseSettings::default()
    })
    .await
    .expect("the test database answers");
    Some(PostgisSource::new(pool))
}

/// The fonts, loaded once for all tests of this file (as the server does per process).
fn fonts() -> &'static FontSet {
    static FONTS: std::sync::OnceLock<FontSet> = std::sync::OnceLock::new();
    FONTS.get_or_init(|| FontSet::system_default().expect("DejaVu fonts are installed"))
}

fn styles() -> StyleSet {
    StyleSet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("styles")).unwrap()
}

fn style(name: &str) -> std::sync::Arc<Style> {
    styles()
        .get(&StyleName::parse(name).unwrap())
        .unwrap()
        .clone()
}

fn decode_rgba(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// Share of pixels whose largest channel difference exceeds `tolerance`.
fn differing_share(a: &[u8], b: &[u8], tolerance: u8) -> f64 {
    assert_eq!(a.len(), b.len());
    let differing = a
        .chunks(4)
        .zip(b.chunks(4))
        .filter(|(p, q)| {
            p.iter()
                .zip(q.iter())
                .any(|(x, y)| x.abs_diff(*y) > tolerance)
        })
        .count();
    differing as f64 / (a.len() / 4) as f64
}

/// Compares a rendered tile with `tests/golden/<name>.png`: at most 0.5% of the pixels
/// may differ by more than 24 levels in a channel (quantisation and anti-aliasing may
/// move between versions of the libraries; a changed style or transform does not pass).
fn assert_matches_golden(name: &str, png_bytes: &[u8]) {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.png"));
    let Ok(reference) = std::fs::read(&path) else {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, png_bytes).unwrap();
        assert!(
            !in_ci(),
            "golden image {} is missing (written now; commit it after looking at it)",
            path.display()
        );
        eprintln!("wrote missing golden image {}", path.display());
        return;
    };
    let (w, h, got) = decode_rgba(png_bytes);
    let (rw, rh, want) = decode_rgba(&reference);
    assert_eq!(
        (w, h),
        (rw, rh),
        "{name}: size differs from the golden image"
    );
    let share = differing_share(&got, &want, 24);
    if share > 0.005 {
        let actual = path.with_extension("actual.png");
        std::fs::write(&actual, png_bytes).unwrap();
        panic!(
            "{name}: {:.2}% of pixels differ from {} (the render is in {})",
            share * 100.0,
            path.display(),
            actual.display()
        );
    }
}

async fn render_tile(source: &PostgisSource, style: &Style, tile: TileCoord) -> Vec<u8> {
    let meta = tile.metatile();
    let data = source.fetch_metatile(style, meta).await.unwrap();
    let rendered = render_metatile(style, meta, &data, fonts(), PngMode::Palette).unwrap();
    rendered.tiles[tile.index_in_metatile()].clone()
}

#[tokio::test]
async fn the_osm_style_renders_central_helsinki_like_the_golden_images() {
    let Some(source) = source().await else { return };
    let style = style("osm");
    source.check_style(&style).await.unwrap();
    for (z, x, y) in [
        (10, 582, 296),
        (13, 4663, 2371),
        (15, 18654, 9484),
        // Kaisaniemenlahti: the sea (water_polygons from the coastlines) and the yard.
        (15, 18654, 9483),
        (17, 74618, 37938),
        (19, 298472, 151753),
    ] {
        let tile = TileCoord::try_new(z, x, y).unwrap();
        let png_bytes = render_tile(&source, &style, tile).await;
        assert_matches_golden(&format!("osm-{z}-{x}-{y}"), &png_bytes);
    }
}

#[tokio::test]
async fn the_2x_style_renders_512_pixel_tiles_of_the_same_map() {
    let Some(source) = source().await else { return };
    let style = style("osm@2x");
    source.check_style(&style).await.unwrap();
    let tile = TileCoord::try_new(16, 37309, 18969).unwrap();
    let png_bytes = render_tile(&source, &style, tile).await;
    let (w, h, _) = decode_rgba(&png_bytes);
    assert_eq!((w, h), (512, 512));
    assert_matches_golden("osm@2x-16-37309-18969", &png_bytes);
}

#[tokio::test]
async fn every_zoom_from_0_to_19_renders_without_error() {
    let Some(source) = source().await else { return };
    let style = style("osm");
    let center = TileCoord::try_new(19, 298472, 151753).unwrap();
    for z in 0..=19u8 {
        let meta = center.ancestor(z).metatile();
        let data = source.fetch_metatile(&style, meta).await.unwrap();
        let rendered = render_metatile(&style, meta, &data, fonts(), PngMode::Palette).unwrap();
        assert_eq!(rendered.tiles.len(), 64);
        let present = rendered.tiles.iter().filter(|t| !t.is_empty()).count();
        assert_eq!(present, meta.tiles().count(), "zoom {z}");
        for t in meta.tiles() {
            let (w, _, _) = decode_rgba(&rendered.tiles[t.index_in_metatile()]);
            assert_eq!(w, 256);
        }
    }
}

#[tokio::test]
async fn a_fetch_deals_its_layers_to_a_spare_connection_but_leaves_the_pool_one() {
    let Some(single) = source_with_pool(2).await else {
        return;
    };
    let Some(roomy) = source_with_pool(3).await else {
        return;
    };
    let style = style("osm");
    let meta = TileCoord::try_new(15, 18652, 9481).unwrap().metatile();
    let alone = single.fetch_metatile(&style, meta).await.unwrap();
    let shared = roomy.fetch_metatile(&style, meta).await.unwrap();
    // A pool of 2 keeps its second connection free; one of 3 lends its second.
    assert_eq!(
        single.pool().status().size,
        1,
        "a pool of 2 lent its last free connection"
    );
    assert_eq!(
        roomy.pool().status().size,
        2,
        "a pool of 3 ran every layer on one connection"
    );
    assert!(
        alone.timings.rows > 1000,
        "only {} rows",
        alone.timings.rows
    );
    assert_eq!(
        alone.layers, shared.layers,
        "the layers differ when fetched on two connections"
    );
}

/// Columns `cols` of rows `rows` of a pixmap, as straight RGBA bytes.
fn strip(p: &Pixmap, cols: std::ops::Range<u32>, rows: std::ops::Range<u32>) -> Vec<u8> {
    let mut out = Vec::new();
    for y in rows {
        for x in cols.clone() {
            let c = p.pixel(x, y).unwrap().demultiply();
            out.extend([c.red(), c.green(), c.blue(), c.alpha()]);
        }
    }
    out
}

/// The left metatile's pixmap continues into its right neighbour's area: the `reach`
/// columns on each side of the shared edge must be the same pixels in both.
fn assert_no_seam(
    style: &Style,
    left: MetatileCoord,
    right: MetatileCoord,
    ld: &MetatileData,
    rd: &MetatileData,
    reach: u32,
) {
    let lp = paint_metatile(style, left, ld, fonts()).unwrap();
    let rp = paint_metatile(style, right, rd, fonts()).unwrap();
    let b = style.buffer_px;
    let w = 8 * style.tile_size;
    let rows = b..b + w;
    let from_left = strip(&lp, w + b - reach..w + b + reach, rows.clone());
    let from_right = strip(&rp, b - reach..b + reach, rows);
    let share = differing_share(&from_left, &from_right, 8);
    assert!(
        share < 0.001,
        "{:.3}% of the pixels around the edge differ",
        share * 100.0
    );
}

fn line_style() -> Style {
    let text = r##"
name = "seam"
background = "#f2efe9"
[[layer]]
name = "lines"
sql = "SELECT 1 WHERE !bbox!"
[[layer.rule]]
casing = { color = "#dc2a67", width = 7, cap = "round", join = "round" }
stroke = { color = "#e892a2", width = 5, cap = "round", join = "round", dash = [9, 3] }
"##;
    parse_style(text, Path::new("seam.toml"), "seam")
        .unwrap()
        .remove(0)
}

#[test]
fn a_line_crossing_a_metatile_edge_meets_itself_without_a_seam() {
    let style = line_style();
    let left = MetatileCoord::try_new(16, 37304, 18968).unwrap();
    let right = MetatileCoord::try_new(16, 37312, 18968).unwrap();
    // A shallow diagonal from the middle of the left metatile to the middle of the right
    // one, at a non-integer pixel position.
    let (lb, rb) = (left.bbox(), right.bbox());
    let a = (
        (lb.min_x + lb.max_x) / 2.0 + 0.37,
        lb.min_y + lb.height() * 0.3137,
    );
    let c = ((rb.min_x + rb.max_x) / 2.0, rb.min_y + rb.height() * 0.5911);
    let line = geo::Geometry::LineString(geo::LineString::from(vec![a, c]));
    let data = MetatileData {
        layers: vec![LayerData {
            features: vec![Feature {
                geometry: line,
                kind: None,
                group: 0,
                label: None,
            }],
            ..LayerData::default()
        }],
        ..MetatileData::default()
    };
    assert_no_seam(&style, left, right, &data, &data, style.buffer_px / 2);

    // And tile by tile: the last column of the left metatile's tile and the first
    // column of the right one's show the line at (almost) the same rows.
    let lr = render_metatile(&style, left, &data, fonts(), PngMode::Rgba).unwrap();
    let rr = render_metatile(&style, right, &data, fonts(), PngMode::Rgba).unwrap();
    let line_rows = |png_bytes: &[u8], col: u32| -> Vec<u32> {
        let (w, h, px) = decode_rgba(png_bytes);
        (0..h)
            .filter(|y| {
                let i = ((y * w + col) * 4) as usize;
                px[i] > 0xd0 && px[i + 1] < 0xa0 // the casing or the line, not the land
            })
            .collect()
    };
    let mut met = 0;
    for dy in 0..8u32 {
        let left_edge = line_rows(&lr.tiles[(7 * 8 + dy) as usize], 255);
        let right_edge = line_rows(&rr.tiles[dy as usize], 0);
        assert_eq!(left_edge.is_empty(), right_edge.is_empty(), "tile row {dy}");
        if let (Some(l), Some(r)) = (left_edge.first(), right_edge.first()) {
            assert!(
                l.abs_diff(*r) <= 1,
                "tile row {dy}: line at rows {left_edge:?} vs {right_edge:?}"
            );
            assert!(left_edge.len().abs_diff(right_edge.len()) <= 1);
            met += 1;
        }
    }
    assert_eq!(met, 1, "the line crosses the edge in exactly one tile row");
}

#[tokio::test]
async fn adjacent_metatiles_of_helsinki_agree_along_their_shared_edge() {
    let Some(source) = source().await else { return };
    let style = style("osm");
    // Two z17 metatiles side by side over central Helsinki.
    let left = TileCoord::try_new(17, 74615, 37938).unwrap().metatile();
    let right = MetatileCoord::try_new(17, u64::from(left.x + 8), u64::from(left.y)).unwrap();
    let ld = source.fetch_metatile(&style, left).await.unwrap();
    let rd = source.fetch_metatile(&style, right).await.unwrap();
    assert!(
        ld.timings.rows > 100 && rd.timings.rows > 100,
        "both metatiles hold data"
    );
    // The osm style clips its areas 4 px beyond the metatile (the buffer is painted for
    // lines and labels only: it is never served), so the canvases are compared up to
    // 3 px beyond the edge.
    assert_no_seam(&style, left, right, &ld, &rd, 3);
}

fn bad_sql_style(sql: &str) -> Style {
    let text = format!(
        r##"
name = "bad"
[[layer]]
name = "broken"
sql = """{sql}"""
[[layer.rule]]
kind = "x"
stroke = {{ color = "#000", width = 1 }}
"##
    );
    parse_style(&text, Path::new("styles/bad.toml"), "bad")
        .unwrap()
        .remove(0)
}

#[tokio::test]
async fn sql_that_fails_to_prepare_is_refused_naming_style_layer_and_the_database_message() {
    let Some(source) = source().await else { return };
    let style = bad_sql_style(
        "SELECT ST_AsBinary(way) AS geom, highwya AS kind FROM planet_osm_line WHERE way && !bbox!",
    );
    let e = source.check_style(&style).await.unwrap_err();
    assert!(matches!(e, SourceError::Prepare { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("style bad, layer \"broken\""), "{text}");
    assert!(text.contains("highwya"), "{text}");
    assert!(
        !text.contains("planet_osm_line WHERE"),
        "the SQL leaks: {text}"
    );

    let style = bad_sql_style(
        "SELECT way AS geom, highway AS kind FROM planet_osm_line WHERE way && !bbox!",
    );
    let text = source.check_style(&style).await.unwrap_err().to_string();
    assert!(text.contains("`geom`") && text.contains("bytea"), "{text}");

    let style =
        bad_sql_style("SELECT ST_AsBinary(way) AS geom FROM planet_osm_line WHERE way && !bbox!");
    let text = source.check_style(&style).await.unwrap_err().to_string();
    assert!(text.contains("no `kind` column"), "{text}");
}

#[tokio::test]
async fn a_query_failing_at_run_time_names_style_layer_and_metatile_but_not_the_sql() {
    let Some(source) = source().await else { return };
    let style = bad_sql_style(
        "SELECT ST_AsBinary(way) AS geom, highway AS kind FROM planet_osm_line \
         WHERE way && !bbox! AND 1 / (!zoom! - 15) = 1",
    );
    source.check_style(&style).await.unwrap();
    let meta = TileCoord::try_new(15, 18654, 9484).unwrap().metatile();
    let e = source.fetch_metatile(&style, meta).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, SourceError::Query { .. }), "{e:?}");
    assert!(
        text.contains("layer \"broken\"") && text.contains("15/18648/9480"),
        "{text}"
    );
    assert!(text.contains("division by zero"), "{text}");
    assert!(!text.contains("SELECT"), "the SQL leaks: {text}");
}

/// Straight RGBA of canvas column `x`, rows `rows`.
fn canvas_column(p: &Pixmap, x: u32, rows: std::ops::Range<u32>) -> Vec<u8> {
    strip(p, x..x + 1, rows)
}

/// Straight RGBA of column `x` of a decoded RGBA tile.
fn tile_column(png_bytes: &[u8], x: u32) -> Vec<u8> {
    let (w, h, px) = decode_rgba(png_bytes);
    (0..h)
        .flat_map(|y| {
            let i = ((y * w + x) * 4) as usize;
            px[i..i + 4].to_vec()
        })
        .collect()
}

/// Columns of the canvas where the labelled render differs from the map alone: label ink.
fn label_ink(with: &Pixmap, without: &Pixmap, x: u32, rows: std::ops::Range<u32>) -> usize {
    rows.filter(|&y| with.pixel(x, y) != without.pixel(x, y))
        .count()
}

/// For every vertical edge between two tiles of the metatile that label ink touches on
/// both sides, the left tile's last column and the right tile's first column are the
/// canvas's columns there, pixel for pixel. Returns how many such edges were checked.
fn assert_labels_continue_across_tile_edges(
    style: &Style,
    meta: MetatileCoord,
    data: &MetatileData,
) -> usize {
    let fonts = fonts();
    let canvas = paint_metatile(style, meta, data, fonts).unwrap();
    let plain = paint_metatile(&style.without_labels(), meta, data, fonts).unwrap();
    let rendered = render_metatile(style, meta, data, fonts, PngMode::Rgba).unwrap();
    let (b, ts) = (style.buffer_px, style.tile_size);
    let mut checked = 0;
    for dx in 1..meta.width_in_tiles() {
        let edge = b + dx * ts; // first column of tile dx
        for dy in 0..meta.width_in_tiles() {
            let rows = b + dy * ts..b + (dy + 1) * ts;
            if label_ink(&canvas, &plain, edge - 1, rows.clone()) == 0
                || label_ink(&canvas, &plain, edge, rows.clone()) == 0
            {
                continue;
            }
            let left = &rendered.tiles[((dx - 1) * 8 + dy) as usize];
            let right = &rendered.tiles[(dx * 8 + dy) as usize];
            assert_eq!(
                tile_column(left, ts - 1),
                canvas_column(&canvas, edge - 1, rows.clone()),
                "tile ({}, {dy}): its last column is not the canvas's",
                dx - 1
            );
            assert_eq!(
                tile_column(right, 0),
                canvas_column(&canvas, edge, rows),
                "tile ({dx}, {dy}): its first column is not the canvas's"
            );
            checked += 1;
        }
    }
    checked
}

fn label_style(text_rule: &str) -> Style {
    let text = format!(
        r##"
name = "labels"
background = "#f2efe9"
[[layer]]
name = "names"
sql = "SELECT 1 WHERE !bbox!"
[[layer.rule]]
{text_rule}
"##
    );
    let style = parse_style(&text, Path::new("labels.toml"), "labels")
        .unwrap()
        .remove(0);
    style.check_fonts(fonts()).unwrap();
    style
}

fn point_data(points: &[((f64, f64), &str)]) -> MetatileData {
    MetatileData {
        layers: vec![LayerData {
            features: points
                .iter()
                .map(|&((x, y), name)| Feature {
                    geometry: geo::Geometry::Point(geo::Point::new(x, y)),
                    kind: None,
                    group: 0,
                    label: Some(name.to_owned()),
                })
                .collect(),
            ..LayerData::default()
        }],
        ..MetatileData::default()
    }
}

#[test]
fn a_label_straddling_a_tile_edge_is_drawn_whole_on_both_tiles() {
    let style = label_style(
        r##"text = { font = "DejaVu Sans Bold", size = 14, fill = "#000", halo = "#fff", halo_width = 2 }"##,
    );
    let meta = MetatileCoord::try_new(16, 37304, 18968).unwrap();
    let b = meta.bbox();
    let tile = metatiled::tile::tile_span(16);
    // Centred on the edge between tiles 2 and 3 of row 4, off the pixel grid.
    let at = (b.min_x + 3.0 * tile + 0.37, b.max_y - 4.5 * tile);
    let data = point_data(&[(at, "Helsinki – Helsingfors")]);
    assert_eq!(
        assert_labels_continue_across_tile_edges(&style, meta, &data),
        1
    );
}

#[test]
fn a_label_with_characters_no_font_has_is_skipped_and_the_others_drawn() {
    let style = label_style(r##"text = { size = 12, halo_width = 1.5 }"##);
    let meta = MetatileCoord::try_new(16, 37304, 18968).unwrap();
    let b = meta.bbox();
    let tile = metatiled::tile::tile_span(16);
    let missing = (b.min_x + 2.5 * tile, b.max_y - 2.5 * tile);
    let fine = (b.min_x + 5.5 * tile, b.max_y - 5.5 * tile);
    // U+10FFFD is a private-use character no font has.
    let data = point_data(&[(missing, "Kallio \u{10FFFD}"), (fine, "Kallio")]);
    let canvas = paint_metatile(&style, meta, &data, fonts()).unwrap();
    let plain = paint_metatile(&style.without_labels(), meta, &data, fonts()).unwrap();
    let ink_near = |x: f64, y: f64| {
        let px = style.buffer_px + ((x - b.min_x) / tile * 256.0) as u32;
        let py = style.buffer_px + ((b.max_y - y) / tile * 256.0) as u32;
        (px - 40..px + 40)
            .map(|cx| label_ink(&canvas, &plain, cx, py - 10..py + 10))
            .sum::<usize>()
    };
    assert_eq!(
        ink_near(missing.0, missing.1),
        0,
        "the unshapable label is skipped"
    );
    assert!(ink_near(fine.0, fine.1) > 50, "the other label is drawn");
}

#[tokio::test]
async fn street_names_crossing_tile_edges_continue_exactly_on_the_next_tile() {
    let Some(source) = source().await else { return };
    let style = style("osm");
    let mut checked = 0;
    for (z, x, y) in [(17, 74618, 37938), (15, 18654, 9484)] {
        let meta = TileCoord::try_new(z, x, y).unwrap().metatile();
        let data = source.fetch_metatile(&style, meta).await.unwrap();
        checked += assert_labels_continue_across_tile_edges(&style, meta, &data);
    }
    assert!(
        checked >= 2,
        "labels touch at least two tile edges of central Helsinki ({checked})"
    );
}

#[tokio::test]
async fn a_text_rule_needs_a_label_column() {
    let Some(source) = source().await else { return };
    let style = label_style(r##"text = { size = 12 }"##);
    let mut style = style;
    style.layers[0].query = "SELECT ST_AsBinary(way) AS geom FROM planet_osm_point \
        WHERE way && ST_MakeEnvelope($1::float8, $2::float8, $3::float8, $4::float8, 3857) \
        AND $5::int4 > 0 AND $6::float8 > 0 AND $7::float8 > 0"
        .into();
    let text = source.check_style(&style).await.unwrap_err().to_string();
    assert!(text.contains("no `label` column"), "{text}");
}
