//! Micro-benchmark of the text engine: place and draw 50 point labels and 200 line
//! labels on a 2304x2304 canvas (a 2048 px metatile plus a 128 px buffer), more than a
//! dense z17 metatile of central Helsinki has. Prints medians; no harness.
//!
//! With `DATABASE_URL` (an osm2pgsql import, as `scripts/setup` makes), it also labels
//! the real metatiles of the imported area at z15 and z17 with the OSM style's label
//! rules (OSM-STYLE.md sections 8-9), renders the same metatiles without labels with
//! the `osm` style (paint + palette PNG encoding, the query excluded), and prints both
//! per metatile and the share labels would add.
//!
//! ```text
//! cargo bench --bench text
//! DATABASE_URL=postgres://... cargo bench --bench text
//! ```
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

use std::time::{Duration, Instant};

use metatiled::config::DatabaseSettings;
use metatiled::render::{render_metatile, PngMode};
use metatiled::source::{build_pool, PostgisSource};
use metatiled::style::StyleSet;
use metatiled::text::{FontSet, LabelPlacer, TextStyle};
use metatiled::tile::{Bbox, LonLat, MetatileCoord, StyleName};
use tiny_skia::{Color, Pixmap, Rect, Transform};

const CANVAS: u32 = 2304;
const RUNS: usize = 21;
/// Renders of each real metatile without labels (each takes 0.1-0.3 s).
const MAP_RUNS: usize = 5;

const NAMES: &[&str] = &[
    "Mannerheimintie",
    "Aleksanterinkatu",
    "Pohjoisesplanadi",
    "Eteläesplanadi",
    "Bulevardi",
    "Hämeentie",
    "Runeberginkatu",
    "Fredrikinkatu",
    "Albertinkatu",
    "Lönnrotinkatu",
    "Töölönkatu",
    "Sörnäisten rantatie",
    "Unioninkatu",
    "Kaisaniemenkatu",
    "Siltasaarenkatu",
    "Länsiväylä",
    "Mechelininkatu",
    "Arkadiankatu",
    "Liisankatu",
    "Kalevankatu",
];

const PLACES: &[&str] = &[
    "Kamppi",
    "Kluuvi",
    "Punavuori",
    "Ullanlinna",
    "Kruununhaka",
    "Etu-Töölö",
    "Taka-Töölö",
    "Kallio",
    "Sörnäinen",
    "Katajanokka",
    "Eira",
    "Kaartinkaupunki",
    "Hakaniemi",
    "Lapinlahti",
    "Ruoholahti",
];

/// A small deterministic generator, so every run places the same labels.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / ((1u64 << 24) as f32)
    }
}

struct Scene {
    points: Vec<(String, (f32, f32))>,
    lines: Vec<(String, Vec<(f32, f32)>)>,
}

fn scene() -> Scene {
    let mut rng = Lcg(8);
    let size = CANVAS as f32;
    let points = (0..50)
        .map(|i| {
            let name = PLACES[i % PLACES.len()].to_owned();
            (
                name,
                (
                    100.0 + rng.next() * (size - 200.0),
                    100.0 + rng.next() * (size - 200.0),
                ),
            )
        })
        .collect();
    let lines = (0..200)
        .map(|i| {
            let name = NAMES[i % NAMES.len()].to_owned();
            // A gently curving street of 150..750 px.
            let (mut x, mut y) = (rng.next() * size, rng.next() * size);
            let mut heading = rng.next() * std::f32::consts::TAU;
            let length = 150.0 + rng.next() * 600.0;
            let steps = (length / 25.0) as usize;
            let mut line = vec![(x, y)];
            for _ in 0..steps {
                heading += (rng.next() - 0.5) * 0.3;
                x += 25.0 * heading.cos();
                y += 25.0 * heading.sin();
                line.push((x, y));
            }
            (name, line)
        })
        .collect();
    Scene { points, lines }
}

fn styles() -> (TextStyle, TextStyle) {
    let point = TextStyle {
        family: "DejaVu Sans Book".into(),
        size_px: 12.0,
        fill: Color::from_rgba8(0x55, 0x55, 0x55, 255),
        halo_px: 1.5,
        wrap_px: Some(60.0),
        ..TextStyle::default()
    };
    let road = TextStyle {
        size_px: 11.0,
        fill: Color::from_rgba8(0x22, 0x22, 0x22, 255),
        halo_px: 1.5,
        ..TextStyle::default()
    };
    (point, road)
}

fn place<'f>(fonts: &'f FontSet, scene: &Scene, halos: bool) -> (LabelPlacer<'f>, usize, usize) {
    let (mut point_style, mut road_style) = styles();
    if !halos {
        point_style.halo_px = 0.0;
        road_style.halo_px = 0.0;
    }
    let area = Rect::from_xywh(0.0, 0.0, CANVAS as f32, CANVAS as f32).expect("area");
    let mut placer = LabelPlacer::new(fonts, area, 1.0);
    let mut points = 0;
    for (name, at) in &scene.points {
        points += usize::from(placer.place_point(name, *at, &point_style));
    }
    let mut lines = 0;
    for (name, line) in &scene.lines {
        lines += placer.place_line(name, line, &road_style);
    }
    (placer, points, lines)
}

/// Median and minimum: the machine is shared, and the minimum is the run least
/// disturbed by other processes.
fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn min(v: &[Duration]) -> Duration {
    v.iter().copied().min().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let started = Instant::now();
    let fonts = FontSet::system_default().expect("fonts-dejavu-core is installed");
    let load = started.elapsed();
    println!("text bench: {} faces loaded in {}", fonts.len(), ms(load));
    let scene = scene();
    let mut pixmap = Pixmap::new(CANVAS, CANVAS).expect("pixmap");

    // The first placement fills the FontSet's outline cache, as the first render of a
    // process does.
    let cold = Instant::now();
    let (placer, points, lines) = place(&fonts, &scene, true);
    let cold = cold.elapsed();
    println!(
        "placed {points}/50 point labels, {lines} line labels (from 200 lines) on {CANVAS}x{CANVAS}"
    );
    println!("first placement (cold outline cache): {}", ms(cold));
    drop(placer);

    let mut place_times = Vec::new();
    let mut draw_times = Vec::new();
    let mut fill_times = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        pixmap.fill(Color::from_rgba8(0xf2, 0xef, 0xe9, 255));
        fill_times.push(t.elapsed());
        let t = Instant::now();
        let (placer, _, _) = place(&fonts, &scene, true);
        place_times.push(t.elapsed());
        let t = Instant::now();
        placer.draw(&mut pixmap.as_mut(), Transform::identity());
        draw_times.push(t.elapsed());
    }
    let (pm, dm) = (min(&place_times), min(&draw_times));
    println!(
        "fastest of {RUNS}: place {}, draw {}, total {}",
        ms(pm),
        ms(dm),
        ms(pm + dm)
    );
    let (p, d) = (median(place_times), median(draw_times));
    println!(
        "median of {RUNS}: place {}, draw {}, total {}",
        ms(p),
        ms(d),
        ms(p + d)
    );
    let mut bare = Vec::new();
    for _ in 0..RUNS {
        let (placer, _, _) = place(&fonts, &scene, false);
        let t = Instant::now();
        placer.draw(&mut pixmap.as_mut(), Transform::identity());
        bare.push(t.elapsed());
    }
    println!(
        "draw without halos (letters only): median {}, fastest {}",
        ms(median(bare.clone())),
        ms(min(&bare))
    );
    println!(
        "(for scale: filling the {CANVAS}x{CANVAS} pixmap with one colour takes {}, fastest)",
        ms(min(&fill_times))
    );
    helsinki(&fonts);
}

/// A name to place and where, in canvas pixels.
enum Candidate {
    Point(String, (f32, f32), TextStyle),
    Line(String, Vec<(f32, f32)>, TextStyle),
}

fn hex(rgb: u32) -> Color {
    Color::from_rgba8((rgb >> 16) as u8, (rgb >> 8) as u8, rgb as u8, 255)
}

/// OSM-STYLE.md section 8, by place class; None below its zoom.
fn place_style(place: &str, z: u8) -> Option<TextStyle> {
    let (family, size, fill, halo, wrap, min_z) = match place {
        "city" | "town" => ("DejaVu Sans Bold", 14.0, 0x000000, 2.0, 80.0, 10),
        "suburb" | "quarter" | "village" => ("DejaVu Sans Book", 12.0, 0x555555, 1.5, 60.0, 13),
        _ => ("DejaVu Sans Book", 11.0, 0x777777, 1.5, 60.0, 15),
    };
    (z >= min_z).then(|| TextStyle {
        family: family.into(),
        size_px: size,
        fill: hex(fill),
        halo: hex(0xffffff),
        halo_px: halo,
        wrap_px: Some(wrap),
        ..TextStyle::default()
    })
}

/// OSM-STYLE.md section 9.
fn road_style(z: u8) -> TextStyle {
    TextStyle {
        size_px: if z >= 17 { 11.0 } else { 9.0 },
        fill: hex(0x222222),
        halo: hex(0xffffff),
        halo_px: 1.5,
        ..TextStyle::default()
    }
}

/// "LINESTRING(x y,x y,...)" -> points.
fn parse_linestring(wkt: &str) -> Vec<(f64, f64)> {
    let inner = wkt
        .trim_start_matches("LINESTRING")
        .trim_start_matches('(')
        .trim_end_matches(')');
    inner
        .split(',')
        .filter_map(|pair| {
            let mut it = pair.split_whitespace().map(str::parse::<f64>);
            Some((it.next()?.ok()?, it.next()?.ok()?))
        })
        .collect()
}

const BUFFER_PX: f64 = 128.0;
const META_PX: f64 = 2048.0;

async fn candidates(
    client: &tokio_postgres::Client,
    meta: MetatileCoord,
) -> Result<Vec<Candidate>, tokio_postgres::Error> {
    let bbox = meta.bbox();
    let res = (bbox.max_x - bbox.min_x) / META_PX;
    let q = bbox.buffered(BUFFER_PX * res);
    let to_px = |x: f64, y: f64| {
        (
            ((x - bbox.min_x) / res + BUFFER_PX) as f32,
            ((bbox.max_y - y) / res + BUFFER_PX) as f32,
        )
    };
    let z = meta.z;
    let mut out = Vec::new();
    let points = client
        .query(
            "SELECT name, place, ST_X(way), ST_Y(way) FROM planet_osm_point \
             WHERE place IN ('city','town','suburb','quarter','village','neighbourhood',\
                             'hamlet','locality','square') \
               AND name IS NOT NULL AND way && ST_MakeEnvelope($1, $2, $3, $4, 3857) \
             ORDER BY CASE place WHEN 'city' THEN 0 WHEN 'town' THEN 1 \
                      WHEN 'suburb' THEN 2 WHEN 'quarter' THEN 3 ELSE 4 END, osm_id",
            &[&q.min_x, &q.min_y, &q.max_x, &q.max_y],
        )
        .await?;
    for row in points {
        let (name, place): (String, String) = (row.get(0), row.get(1));
        if let Some(style) = place_style(&place, z) {
            out.push(Candidate::Point(name, to_px(row.get(2), row.get(3)), style));
        }
    }
    if z >= 15 {
        let service = if z >= 17 { ",'service'" } else { "" };
        let sql = format!(
            "SELECT name, ST_AsText(way) FROM planet_osm_line \
             WHERE name IS NOT NULL AND way && ST_MakeEnvelope($1, $2, $3, $4, 3857) \
               AND highway IN ('motorway','motorway_link','trunk','trunk_link','primary',\
                 'primary_link','secondary','secondary_link','tertiary','tertiary_link',\
                 'residential','unclassified','living_street','road','pedestrian'{service}) \
             ORDER BY z_order DESC, osm_id"
        );
        let style = road_style(z);
        for row in client
            .query(&sql, &[&q.min_x, &q.min_y, &q.max_x, &q.max_y])
            .await?
        {
            let wkt: String = row.get(1);
            let line = parse_linestring(&wkt)
                .into_iter()
                .map(|(x, y)| to_px(x, y))
                .collect();
            out.push(Candidate::Line(row.get(0), line, style.clone()));
        }
    }
    Ok(out)
}

fn label_metatile(fonts: &FontSet, candidates: &[Candidate], pixmap: &mut Pixmap) -> usize {
    let size = (META_PX + 2.0 * BUFFER_PX) as f32;
    let area = Rect::from_xywh(0.0, 0.0, size, size).expect("area");
    let mut placer = LabelPlacer::new(fonts, area, 1.0);
    for c in candidates {
        match c {
            Candidate::Point(name, at, style) => {
                placer.place_point(name, *at, style);
            }
            Candidate::Line(name, line, style) => {
                placer.place_line(name, line, style);
            }
        }
    }
    placer.draw(&mut pixmap.as_mut(), Transform::identity());
    placer.len()
}

fn draw_lines(pixmap: &mut Pixmap, candidates: &[Candidate]) {
    let mut paint = tiny_skia::Paint::default();
    paint.set_color(hex(0xffffff));
    paint.anti_alias = true;
    let stroke = tiny_skia::Stroke {
        width: 6.0,
        line_cap: tiny_skia::LineCap::Round,
        line_join: tiny_skia::LineJoin::Round,
        ..tiny_skia::Stroke::default()
    };
    for c in candidates {
        if let Candidate::Line(_, line, _) = c {
            let mut pb = tiny_skia::PathBuilder::new();
            for (i, p) in line.iter().enumerate() {
                if i == 0 {
                    pb.move_to(p.0, p.1);
                } else {
                    pb.line_to(p.0, p.1);
                }
            }
            if let Some(path) = pb.finish() {
                pixmap.stroke_path(&path, &paint, &stroke, Transform::identity(), None);
            }
        }
    }
}

/// The imported area's metatiles at z15 and z17, labelled with the OSM style's rules.
fn helsinki(fonts: &FontSet) {
    let Some(url) = std::env::var("METATILED_TEST_DATABASE_URL")
        .ok()
        .or_else(|| std::env::var("DATABASE_URL").ok())
    else {
        println!("helsinki: skipping, set DATABASE_URL to an osm2pgsql import");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result: Result<(), Box<dyn std::error::Error>> = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        let styles =
            StyleSet::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("styles"))?;
        let style = styles
            .get(&StyleName::parse("osm")?)
            .ok_or("no osm style")?
            .clone();
        // The map alone: this bench offers its own label candidates.
        let plain = style.without_labels();
        let source = PostgisSource::new(
            build_pool(&DatabaseSettings {
                url: Some(url.clone()),
                ..DatabaseSettings::default()
            })
            .await?,
        );
        // Central Helsinki, as scripts/setup imports it.
        let area = Bbox::from_lonlat(
            LonLat {
                lon: 24.935,
                lat: 60.164,
            },
            LonLat {
                lon: 24.953,
                lat: 60.179,
            },
        );
        let size = (META_PX + 2.0 * BUFFER_PX) as u32;
        let mut pixmap = Pixmap::new(size, size).expect("pixmap");
        for z in [15u8, 17] {
            let metas: Vec<MetatileCoord> = area.tile_range(z).metatiles().iter().collect();
            let (mut times, mut offered, mut placed) = (Vec::new(), 0, 0);
            let mut map_times = Vec::new();
            for &meta in &metas {
                let data = source.fetch_metatile(&plain, meta).await?;
                let mut runs = Vec::new();
                for _ in 0..MAP_RUNS {
                    let t = Instant::now();
                    render_metatile(&plain, meta, &data, fonts, PngMode::Palette)?;
                    runs.push(t.elapsed());
                }
                map_times.push(median(runs));
                let cands = candidates(&client, meta).await?;
                offered += cands.len();
                let mut runs = Vec::new();
                for run in 0..RUNS {
                    let t = Instant::now();
                    let n = label_metatile(fonts, &cands, &mut pixmap);
                    runs.push(t.elapsed());
                    if run == 0 {
                        placed += n;
                    }
                }
                times.push(median(runs));
                if meta == metas[metas.len() / 2] {
                    // A picture to look at: the candidate lines in grey under the labels.
                    pixmap.fill(hex(0xf2efe9));
                    draw_lines(&mut pixmap, &cands);
                    label_metatile(fonts, &cands, &mut pixmap);
                    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join(format!("target/text-helsinki-z{z}.png"));
                    if pixmap.save_png(&out).is_ok() {
                        println!("wrote {}", out.display());
                    }
                }
            }
            let share: Vec<f64> = times
                .iter()
                .zip(&map_times)
                .map(|(l, m)| l.as_secs_f64() / m.as_secs_f64() * 100.0)
                .collect();
            times.sort();
            map_times.sort();
            println!(
                "helsinki z{z}: {} metatiles, {offered} candidates, {placed} labels placed; \
                 per metatile (median of metatiles): labels place+draw {} (max {}), \
                 map render without labels {} (paint + palette PNGs); labels add {:.0}% \
                 (max {:.0}%)",
                metas.len(),
                ms(median(times.clone())),
                ms(times.last().copied().unwrap_or_default()),
                ms(median(map_times.clone())),
                {
                    let mut s = share.clone();
                    s.sort_by(f64::total_cmp);
                    s[s.len() / 2]
                },
                share.iter().copied().fold(0.0, f64::max),
            );
        }
        Ok(())
    });
    if let Err(err) = result {
        println!("helsinki: database error: {err}");
    }
}
