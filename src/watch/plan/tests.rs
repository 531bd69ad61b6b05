//! Tests of the pure watch planning: table detection, zooms, merging, metatile sets.

use super::*;
use crate::cache::freshness::is_dirty;
use crate::cache::DiskCache;
use crate::style::parse_style;
use crate::tile::{tile_span, MetatileCoord, TileCoord, EARTH_HALF_CIRCUMFERENCE, METATILE};
use proptest::prelude::*;
use rstest::rstest;
use std::path::Path;
use std::time::SystemTime;

/// Two layers: lines at z12-19, points at z17-19; buffer 64 px; also serves @2x.
const STYLE: &str = r##"
name = "t"
minzoom = 0
maxzoom = 19
buffer = 64
hidpi = true
[[layer]]
name = "roads"
minzoom = 12
sql = "SELECT ST_AsBinary(way) AS geom FROM planet_osm_line WHERE way && !bbox!"
[[layer.rule]]
stroke = { color = "#fff", width = 1 }
[[layer]]
name = "pois"
minzoom = 17
sql = "SELECT ST_AsBinary(p.way) AS geom FROM public.\"planet_osm_point\" AS p WHERE p.way && !bbox!"
[[layer.rule]]
marker = { size = 4, fill = "#000" }
"##;

fn styles() -> StyleSet {
    let mut set = StyleSet::default();
    for s in parse_style(STYLE, Path::new("styles/t.toml"), "t").unwrap() {
        set.insert(s).unwrap();
    }
    set
}

fn style() -> Arc<Style> {
    styles()
        .get(&StyleName::parse("t").unwrap())
        .unwrap()
        .clone()
}

#[rstest]
#[case("SELECT * FROM planet_osm_line", "public", "planet_osm_line", true)]
#[case("select * from PLANET_OSM_LINE l", "public", "planet_osm_line", true)]
#[case("SELECT * FROM \"planet_osm_line\"", "public", "planet_osm_line", true)]
#[case(
    "SELECT * FROM public.planet_osm_line",
    "public",
    "planet_osm_line",
    true
)]
#[case(
    "SELECT * FROM public.\"planet_osm_line\"",
    "public",
    "planet_osm_line",
    true
)]
#[case(
    "SELECT * FROM \"public\".\"planet_osm_line\"",
    "public",
    "planet_osm_line",
    true
)]
#[case(
    "SELECT * FROM other.planet_osm_line",
    "public",
    "planet_osm_line",
    false
)]
#[case(
    "SELECT * FROM planet_osm_line_z12",
    "public",
    "planet_osm_line",
    false
)]
#[case("SELECT * FROM my_planet_osm_line", "public", "planet_osm_line", false)]
#[case("SELECT * FROM planet_osm_roads", "public", "planet_osm_line", false)]
#[case(
    "SELECT a FROM x JOIN planet_osm_line ON true",
    "public",
    "planet_osm_line",
    true
)]
#[case("SELECT 1", "public", "", false)]
fn style_sql_names_its_tables(
    #[case] sql: &str,
    #[case] schema: &str,
    #[case] name: &str,
    #[case] expected: bool,
) {
    assert_eq!(sql_reads_table(sql, schema, name), expected, "{sql}");
}

#[test]
fn a_table_affects_only_the_zooms_of_the_layers_that_read_it() {
    let s = style();
    let lines = zooms_reading(&s, "public", "planet_osm_line");
    assert_eq!(
        lines.iter().collect::<Vec<_>>(),
        (12..=19).collect::<Vec<_>>()
    );
    let points = zooms_reading(&s, "public", "planet_osm_point");
    assert_eq!(points.iter().collect::<Vec<_>>(), vec![17, 18, 19]);
    assert!(zooms_reading(&s, "public", "planet_osm_roads").is_empty());
}

#[test]
fn every_style_that_reads_a_table_is_a_target_and_unknown_tables_hit_all() {
    let set = styles();
    let t = targets_for_table(&set, "public", "planet_osm_point");
    let names: Vec<&str> = t.iter().map(|t| t.style.name.as_str()).collect();
    assert_eq!(names, vec!["t", "t@2x"]);
    assert!(t.iter().all(|t| t.zooms == ZoomSet::range(17, 19)));
    // Watched but named by no style (a view reads it, say): every zoom of every style.
    let t = targets_for_table(&set, "public", "some_table");
    assert_eq!(t.len(), 2);
    assert!(t.iter().all(|t| t.zooms == ZoomSet::range(0, 19)));
}

#[test]
fn zoom_sets_hold_what_was_put_in() {
    let mut z = ZoomSet::EMPTY;
    assert!(z.is_empty());
    z.insert(0);
    z.insert(20);
    z.insert(21);
    assert_eq!(z.iter().collect::<Vec<_>>(), vec![0, 20]);
    assert!(!z.contains(21));
    assert_eq!(ZoomSet::range(3, 5).union(z).iter().count(), 5);
}

fn b(min_x: f64, min_y: f64, max_x: f64, max_y: f64) -> Bbox {
    Bbox {
        min_x,
        min_y,
        max_x,
        max_y,
    }
}

#[test]
fn bad_boxes_from_the_log_become_safe_ones() {
    assert_eq!(sanitize(b(f64::NAN, 0.0, 1.0, 1.0)), Bbox::WORLD);
    assert_eq!(sanitize(b(0.0, 0.0, f64::INFINITY, 1.0)), Bbox::WORLD);
    assert_eq!(sanitize(b(5.0, 6.0, 1.0, 2.0)), b(1.0, 2.0, 5.0, 6.0));
    let huge = sanitize(b(0.0, 0.0, 1.0, 2.4e8));
    assert_eq!(huge.max_y, EARTH_HALF_CIRCUMFERENCE);
}

#[test]
fn duplicates_and_nested_boxes_merge_and_distant_ones_do_not() {
    let big = b(0.0, 0.0, 100.0, 100.0);
    let inside = b(10.0, 10.0, 20.0, 20.0);
    let far = b(1000.0, 1000.0, 1010.0, 1010.0);
    let grazing = b(100.0, 0.0, 110.0, 200.0);
    let merged = merge_boxes(vec![inside, far, big, big, inside, grazing]);
    assert_eq!(merged.len(), 3, "{merged:?}");
    assert!(merged.contains(&big));
    assert!(merged.contains(&far));
    assert!(merged.contains(&grazing));
    // Points at one place merge; points apart stay apart.
    let p = b(5.0, 5.0, 5.0, 5.0);
    let q = b(5.0, 9.0, 5.0, 9.0);
    assert_eq!(merge_boxes(vec![p, p, p]), vec![p]);
    assert_eq!(merge_boxes(vec![p, q]).len(), 2);
}

fn arb_box() -> impl Strategy<Value = Bbox> {
    (0.0..1000.0f64, 0.0..1000.0f64, 0.0..300.0f64, 0.0..300.0f64)
        .prop_map(|(x, y, w, h)| b(x, y, x + w, y + h))
}

proptest! {
    #[test]
    fn merging_covers_every_input_and_never_grows_the_area(boxes in prop::collection::vec(arb_box(), 0..40)) {
        let merged = merge_boxes(boxes.clone());
        prop_assert!(merged.len() <= boxes.len());
        for input in &boxes {
            prop_assert!(merged.iter().any(|m| m.contains_bbox(input)), "{input:?} lost");
        }
        let before: f64 = boxes.iter().map(area).sum();
        let after: f64 = merged.iter().map(area).sum();
        prop_assert!(after <= before * (1.0 + 1e-6) + 1e-6, "{after} > {before}");
    }

    /// A metatile is in the set exactly when its extent touches the box grown by the
    /// style's buffer at that zoom.
    #[test]
    fn the_set_holds_the_metatiles_the_buffered_box_touches(
        z in 3u8..=19,
        fx in 0.1..0.9f64,
        fy in 0.1..0.9f64,
        w in 0.0..3.0f64,
        h in 0.0..3.0f64,
    ) {
        let s = style();
        let meta_span = tile_span(z) * f64::from(METATILE);
        let (x0, y0) = (
            -EARTH_HALF_CIRCUMFERENCE + fx * 2.0 * EARTH_HALF_CIRCUMFERENCE,
            -EARTH_HALF_CIRCUMFERENCE + fy * 2.0 * EARTH_HALF_CIRCUMFERENCE,
        );
        let change = b(x0, y0, x0 + w * meta_span, y0 + h * meta_span);
        let set = expire_set_at(&s, z, &[change]);
        let got: std::collections::BTreeSet<MetatileCoord> =
            set.blocks(z).flat_map(|blk| blk.metatiles()).collect();
        let grown = change.buffered(f64::from(s.buffer_px) * s.pixel_size(z));
        let around = grown.buffered(meta_span).tile_range(z).metatiles();
        for meta in around.iter() {
            let m = meta.bbox();
            let touches = m.min_x <= grown.max_x && grown.min_x <= m.max_x
                && m.min_y <= grown.max_y && grown.min_y <= m.max_y;
            prop_assert_eq!(got.contains(&meta), touches, "{} vs {:?}", meta, grown);
        }
        prop_assert!(got.iter().all(|m| around.contains(*m)));
    }
}

#[test]
fn render_up_to_zoom_re_renders_low_zooms_and_applies_the_mode_above() {
    let p = WatchPolicy {
        mode: ExpireMode::Dirty,
        render_up_to: Some(12),
    };
    assert_eq!(p.plan_at(12).unwrap().action_at(12), ExpireMode::Render);
    assert_eq!(p.plan_at(13).unwrap().action_at(13), ExpireMode::Dirty);
    let p = WatchPolicy {
        mode: ExpireMode::Delete,
        render_up_to: None,
    };
    assert_eq!(p.plan_at(0).unwrap().action_at(0), ExpireMode::Delete);
    let p = WatchPolicy {
        mode: ExpireMode::Render,
        render_up_to: None,
    };
    assert_eq!(p.plan_at(18).unwrap().action_at(18), ExpireMode::Render);
    assert_eq!(
        (
            p.plan_at(18).unwrap().min_zoom,
            p.plan_at(18).unwrap().max_zoom
        ),
        (18, 18)
    );
}

fn meta_at(z: u8, x: f64, y: f64) -> MetatileCoord {
    let r = b(x, y, x, y).tile_range(z);
    TileCoord {
        z,
        x: r.min_x,
        y: r.min_y,
    }
    .metatile()
}

#[test]
fn a_batch_marks_dirty_what_its_boxes_touch_at_the_zooms_that_read_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskCache::new(dir.path(), false);
    let set = styles();
    let name = StyleName::parse("t").unwrap();
    // Central Helsinki, and a point 50 km east of it (another metatile from z12 up).
    let (x, y) = (2_776_500.0, 8_439_500.0);
    let near = |z| meta_at(z, x, y);
    let far = |z| meta_at(z, x + 50_000.0, y);
    let tiles: Vec<Vec<u8>> = vec![b"png".to_vec(); 64];
    for z in [10u8, 14, 16, 18] {
        disk.write_metatile(&name, near(z), &tiles).unwrap();
        disk.write_metatile(&name, far(z), &tiles).unwrap();
    }
    // A point changed in the point table: only z17-19 read it.
    let targets = targets_for_table(&set, "public", "planet_osm_point");
    let work = group_by_style(vec![(targets.as_slice(), b(x, y, x + 1.0, y + 1.0))]);
    let policy = WatchPolicy {
        mode: ExpireMode::Dirty,
        render_up_to: None,
    };
    let summary = expire_work(&disk, policy, work);
    let now = SystemTime::now();
    let dirty = |meta| is_dirty(disk.stamp(&name, meta).unwrap().unwrap().mtime, now);
    assert!(dirty(near(18)));
    assert!(!dirty(far(18)));
    assert!(!dirty(near(16)), "z16 does not read points");
    assert_eq!(summary.changed(), 1);

    // A line changed: z12-19, so z14 and z16 too, but not z10; far stays fresh.
    let targets = targets_for_table(&set, "public", "planet_osm_line");
    let work = group_by_style(vec![
        (targets.as_slice(), b(x, y, x + 1.0, y + 1.0)),
        (targets.as_slice(), b(x, y, x + 1.0, y + 1.0)),
    ]);
    let summary = expire_work(&disk, policy, work);
    assert!(dirty(near(14)) && dirty(near(16)));
    assert!(!dirty(near(10)));
    assert!(!dirty(far(14)) && !dirty(far(16)) && !dirty(far(18)));
    assert_eq!(summary.changed(), 2);
    assert_eq!(summary.errors(), 0);
}

#[test]
fn a_world_wide_change_walks_the_cache_instead_of_enumerating() {
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskCache::new(dir.path(), false);
    let set = styles();
    let name = StyleName::parse("t").unwrap();
    let tiles: Vec<Vec<u8>> = vec![b"png".to_vec(); 64];
    let meta = meta_at(19, 2_776_500.0, 8_439_500.0);
    disk.write_metatile(&name, meta, &tiles).unwrap();
    let targets = targets_for_table(&set, "public", "planet_osm_line");
    let work = group_by_style(vec![(targets.as_slice(), Bbox::WORLD)]);
    let started = std::time::Instant::now();
    let summary = expire_work(
        &disk,
        WatchPolicy {
            mode: ExpireMode::Delete,
            render_up_to: None,
        },
        work,
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(summary.changed(), 1);
    assert!(summary.matched() > 1 << 30);
    assert!(disk.stamp(&name, meta).unwrap().is_none());
}
