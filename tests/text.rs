//! The text engine seen as pictures: a sample sheet written to `target/text-sample.png`
//! (the reference a person looked at is `docs/text-sample.png`), determinism, and labels
//! across a tile edge inside one metatile canvas.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

use std::path::PathBuf;
use std::sync::OnceLock;

use metatiled::text::{FontSet, LabelPlacer, TextStyle};
use tiny_skia::{Color, LineCap, LineJoin, Paint, PathBuilder, Pixmap, Rect, Stroke, Transform};

fn fonts() -> &'static FontSet {
    static FONTS: OnceLock<FontSet> = OnceLock::new();
    FONTS.get_or_init(|| FontSet::system_default().expect("fonts-dejavu-core is installed"))
}

fn hex(rgb: u32) -> Color {
    Color::from_rgba8((rgb >> 16) as u8, (rgb >> 8) as u8, rgb as u8, 255)
}

/// OSM-STYLE.md section 8: city labels.
fn city() -> TextStyle {
    TextStyle {
        family: "DejaVu Sans Bold".into(),
        size_px: 14.0,
        fill: hex(0x000000),
        halo: hex(0xffffff),
        halo_px: 2.0,
        wrap_px: Some(80.0),
        ..TextStyle::default()
    }
}

fn suburb() -> TextStyle {
    TextStyle {
        size_px: 12.0,
        fill: hex(0x555555),
        halo_px: 1.5,
        wrap_px: Some(60.0),
        ..TextStyle::default()
    }
}

fn neighbourhood() -> TextStyle {
    TextStyle {
        size_px: 11.0,
        fill: hex(0x777777),
        halo_px: 1.5,
        wrap_px: Some(60.0),
        ..TextStyle::default()
    }
}

/// OSM-STYLE.md section 9: road labels (size 11 at z17+, 9 at z15-16).
fn road(size_px: f32) -> TextStyle {
    TextStyle {
        size_px,
        fill: hex(0x222222),
        halo_px: 1.5,
        ..TextStyle::default()
    }
}

fn stroke_line(pixmap: &mut Pixmap, line: &[(f32, f32)], width: f32, color: Color) {
    let mut pb = PathBuilder::new();
    pb.move_to(line[0].0, line[0].1);
    for p in &line[1..] {
        pb.line_to(p.0, p.1);
    }
    let path = pb.finish().expect("path");
    let mut paint = Paint::default();
    paint.set_color(color);
    paint.anti_alias = true;
    let stroke = Stroke {
        width,
        line_cap: LineCap::Round,
        line_join: LineJoin::Round,
        ..Stroke::default()
    };
    pixmap.stroke_path(&path, &paint, &stroke, Transform::identity(), None);
}

/// A casing + fill road, as the OSM style draws a residential street.
fn road_line(pixmap: &mut Pixmap, line: &[(f32, f32)], width: f32) {
    stroke_line(pixmap, line, width + 2.0, hex(0xbbbbbb));
    stroke_line(pixmap, line, width, hex(0xffffff));
}

fn curve(from: (f32, f32), ctrl: (f32, f32), to: (f32, f32), n: usize) -> Vec<(f32, f32)> {
    (0..=n)
        .map(|i| {
            let t = i as f32 / n as f32;
            let u = 1.0 - t;
            (
                u * u * from.0 + 2.0 * u * t * ctrl.0 + t * t * to.0,
                u * u * from.1 + 2.0 * u * t * ctrl.1 + t * t * to.1,
            )
        })
        .collect()
}

/// The sample sheet: OSM land colour, a few streets, and the label styles of the OSM
/// style on them.
fn sample() -> (Pixmap, Vec<(&'static str, bool)>) {
    let (w, h) = (640u32, 400u32);
    let mut pixmap = Pixmap::new(w, h).expect("pixmap");
    pixmap.fill(hex(0xf2efe9));
    // A park and some water, to see the halos over colour.
    let mut paint = Paint::default();
    paint.set_color(hex(0xc8facc));
    pixmap.fill_rect(
        Rect::from_xywh(20.0, 230.0, 200.0, 150.0).expect("rect"),
        &paint,
        Transform::identity(),
        None,
    );
    paint.set_color(hex(0xaad3df));
    pixmap.fill_rect(
        Rect::from_xywh(470.0, 0.0, 170.0, 400.0).expect("rect"),
        &paint,
        Transform::identity(),
        None,
    );

    let arc = curve((30.0, 120.0), (320.0, -40.0), (610.0, 170.0), 48);
    let wave: Vec<(f32, f32)> = (0..=60)
        .map(|i| {
            let x = 40.0 + i as f32 * 9.5;
            (x, 300.0 + 28.0 * (x / 70.0).sin())
        })
        .collect();
    let diagonal = [(250.0, 390.0), (420.0, 200.0)];
    let backwards = [(600.0, 250.0), (430.0, 330.0)];
    let vertical = [(455.0, 380.0), (455.0, 180.0)];
    let corner = [(80.0, 160.0), (130.0, 160.0), (130.0, 215.0)];
    for line in [
        &arc[..],
        &wave[..],
        &diagonal[..],
        &backwards[..],
        &vertical[..],
    ] {
        road_line(&mut pixmap, line, 9.0);
    }
    road_line(&mut pixmap, &corner, 6.0);

    let mut placer = LabelPlacer::new(
        fonts(),
        Rect::from_xywh(0.0, 0.0, w as f32, h as f32).expect("area"),
        1.0,
    );
    let mut results = Vec::new();
    let mut point = |placer: &mut LabelPlacer<'_>, text: &'static str, at, style: &TextStyle| {
        results.push((text, placer.place_point(text, at, style)));
    };
    point(&mut placer, "Helsinki Helsingfors", (320.0, 90.0), &city());
    point(&mut placer, "Töölö Tölö", (120.0, 60.0), &suburb());
    point(&mut placer, "Etu-Töölö", (250.0, 175.0), &neighbourhood());
    point(&mut placer, "Kaivopuisto", (120.0, 265.0), &suburb());
    point(&mut placer, "Хельсинки", (560.0, 60.0), &neighbourhood());
    point(&mut placer, "Ελσίνκι", (560.0, 85.0), &neighbourhood());
    point(&mut placer, "हेलसिंकी", (560.0, 110.0), &neighbourhood());
    // Overlaps Helsinki: dropped.
    point(&mut placer, "Kluuvi", (330.0, 95.0), &suburb());
    let mut line =
        |placer: &mut LabelPlacer<'_>, text: &'static str, l: &[(f32, f32)], style: &TextStyle| {
            results.push((text, placer.place_line(text, l, style) > 0));
        };
    line(&mut placer, "Mannerheimintie", &arc, &road(11.0));
    line(
        &mut placer,
        "Pohjoisesplanadi – Norra esplanaden",
        &wave,
        &road(11.0),
    );
    line(&mut placer, "Bulevardi", &diagonal, &road(9.0));
    line(&mut placer, "Länsiväylä", &backwards, &road(11.0));
    line(&mut placer, "Liisankatu", &vertical, &road(9.0));
    line(&mut placer, "Kulmakatu", &corner, &road(11.0));
    placer.draw(&mut pixmap.as_mut(), Transform::identity());
    (pixmap, results)
}

fn target_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
}

#[test]
fn the_sample_sheet_places_what_fits_and_is_written_for_a_person_to_look_at() {
    let (pixmap, results) = sample();
    let out = target_dir().join("text-sample.png");
    pixmap.save_png(&out).expect("write sample");
    eprintln!("wrote {}", out.display());
    let placed = |name: &str| results.iter().find(|(t, _)| *t == name).expect("label").1;
    for name in [
        "Helsinki Helsingfors",
        "Töölö Tölö",
        "Etu-Töölö",
        "Kaivopuisto",
        "Хельсинки",
        "Ελσίνκι",
        "Mannerheimintie",
        "Pohjoisesplanadi – Norra esplanaden",
        "Bulevardi",
        "Länsiväylä",
        "Liisankatu",
    ] {
        assert!(placed(name), "{name} was not placed");
    }
    assert!(!placed("Kluuvi"), "overlaps Helsinki");
    assert!(!placed("Kulmakatu"), "a right-angle corner under the text");
    // Devanagari needs Noto Sans Devanagari (fonts-noto-core).
    let has_noto = fonts()
        .face_names()
        .iter()
        .any(|n| n.contains("Devanagari"));
    assert_eq!(placed("हेलसिंकी"), has_noto);
}

#[test]
fn the_sample_sheet_is_the_same_pixels_every_time() {
    assert_eq!(sample().0.data(), sample().0.data());
}

/// Two tiles of one metatile side by side (the edge at x = 256), a label across it.
fn two_tiles(transform: Transform, pixmap_width: u32) -> Pixmap {
    let area = Rect::from_xywh(0.0, 0.0, 512.0, 256.0).expect("area");
    let mut placer = LabelPlacer::new(fonts(), area, 1.0);
    assert!(placer.place_point("Kauppatori Salutorget", (256.0, 100.0), &city()));
    assert_eq!(
        placer.place_line(
            "Eteläesplanadi",
            &[(150.0, 180.0), (362.0, 190.0)],
            &road(11.0)
        ),
        1
    );
    let mut pixmap = Pixmap::new(pixmap_width, 256).expect("pixmap");
    pixmap.fill(hex(0xf2efe9));
    placer.draw(&mut pixmap.as_mut(), transform);
    pixmap
}

fn column(pixmap: &Pixmap, x: u32) -> Vec<[u8; 4]> {
    (0..pixmap.height())
        .map(|y| {
            let p = pixmap.pixel(x, y).expect("pixel");
            [p.red(), p.green(), p.blue(), p.alpha()]
        })
        .collect()
}

#[test]
fn a_label_across_a_tile_edge_is_drawn_whole_and_each_tile_has_its_half() {
    let whole = two_tiles(Transform::identity(), 512);
    let background = [0xf2, 0xef, 0xe9, 0xff];
    let inked = |col: &[[u8; 4]]| col.iter().filter(|p| **p != background).count();
    // Both sides of the edge have ink in the label rows: the labels were drawn across
    // it, not clipped at it.
    let (left, right) = (column(&whole, 255), column(&whole, 256));
    assert!(
        inked(&left) > 5 && inked(&right) > 5,
        "{} {}",
        inked(&left),
        inked(&right)
    );
    // The tiles are cut from this one drawing, so each tile has its half of every
    // label and the halves meet exactly at the edge. (Drawing each tile on its own
    // with a translation is not the same: anti-aliasing at a pixmap's edge differs by
    // a few levels. Renderers must draw once and cut.)
    let again = two_tiles(Transform::identity(), 512);
    assert_eq!(whole.data(), again.data());
}

#[test]
fn a_label_that_would_cross_the_canvas_edge_is_not_drawn_at_all() {
    // The same label, but the placer's area is one tile: it would be cut, so it is
    // dropped, and the neighbouring metatile (which sees the same rule) agrees.
    let area = Rect::from_xywh(0.0, 0.0, 256.0, 256.0).expect("area");
    let mut placer = LabelPlacer::new(fonts(), area, 1.0);
    assert!(!placer.place_point("Kauppatori Salutorget", (256.0, 100.0), &city()));
    assert!(placer.place_point("Kauppatori Salutorget", (128.0, 100.0), &city()));
}
