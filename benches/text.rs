//! Micro-benchmark of the text engine: place and draw 50 point labels and 200 line
//! labels on a 2304x2304 canvas (a 2048 px metatile plus a 128 px buffer), the way a
//! dense z17 metatile of central Helsinki would. Prints medians; no harness.
//!
//! cargo bench --bench text

use std::time::{Duration, Instant};

use metatiled::text::{FontSet, LabelPlacer, TextStyle};
use tiny_skia::{Color, Pixmap, Rect, Transform};

const CANVAS: u32 = 2304;
const RUNS: usize = 21;

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
}
