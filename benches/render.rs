//! Render benchmark on the imported data (central Helsinki in the project's setup).
//!
//! ```text
//! DATABASE_URL=postgres://... cargo bench --bench render [-- --runs N --layers --style osm]
//! ```
//! For zooms 12 and 14 to 18, renders the metatiles that cover the imported area
//! (from `metatiled.import_info`, else central Helsinki) and prints the median time of
//! each stage of a metatile render (query, decode, paint, labels, encode) and the mean
//! PNG bytes per tile of the tiles inside the area, for palette and RGBA output. Then,
//! per zoom, the median render (paint + labels + palette encode) of the same data with
//! and without labels (`Style::without_labels`), and what labels add. `--no-labels`
//! renders everything without labels; `--layers` adds the median paint time of each
//! layer.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

use metatiled::config::DatabaseSettings;
use metatiled::render::{paint_metatile, render_metatile, PngMode};
use metatiled::source::{build_pool, ImportInfo, LayerData, MetatileData, PostgisSource};
use metatiled::style::{Style, StyleSet};
use metatiled::text::FontSet;
use metatiled::tile::{Bbox, LonLat, MetatileCoord, StyleName};
use std::path::Path;
use std::time::{Duration, Instant};

const ZOOMS: [u8; 6] = [12, 14, 15, 16, 17, 18];
/// Most metatiles per zoom.
const MAX_METATILES: usize = 8;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|a| a == name);
    let runs: usize = flag("--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let style_name = flag("--style")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "osm".into());
    let per_layer = flag("--layers").is_some();
    let no_labels = flag("--no-labels").is_some();

    let Some(url) = std::env::var("METATILED_TEST_DATABASE_URL")
        .ok()
        .or_else(|| std::env::var("DATABASE_URL").ok())
    else {
        eprintln!(
            "render bench: skipping, set DATABASE_URL to a database with an osm2pgsql import"
        );
        return Ok(());
    };
    let styles = StyleSet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("styles"))?;
    let style = styles
        .get(&StyleName::parse(&style_name)?)
        .ok_or_else(|| anyhow::anyhow!("no style {style_name}"))?
        .clone();
    let plain = style.without_labels();
    let style = if no_labels {
        std::sync::Arc::new(plain.clone())
    } else {
        style
    };
    // Once per process, as the server does.
    let fonts = FontSet::system_default()?;
    styles.check_fonts(&fonts)?;
    let pool = build_pool(&DatabaseSettings {
        url: Some(url),
        ..DatabaseSettings::default()
    })
    .await?;
    let bounds = match ImportInfo::load(&pool).await? {
        Some(info) => info.bounds,
        None => [24.9352, 60.1642, 24.9534, 60.1791],
    };
    let area = Bbox::from_lonlat(
        LonLat {
            lon: bounds[0],
            lat: bounds[1],
        },
        LonLat {
            lon: bounds[2],
            lat: bounds[3],
        },
    );
    let source = PostgisSource::new(pool);
    source.check_style(&style).await?;
    println!(
        "style {}, area {:?}, {} runs per zoom (median), {} render thread(s) available",
        style.name,
        bounds,
        runs,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:>4} {:>5} {:>5} | {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} | {:>9} | {:>10} {:>10}",
        "zoom",
        "metas",
        "rows",
        "query",
        "decode",
        "paint",
        "labels",
        "encode",
        "total",
        "enc rgba",
        "B/tile pal",
        "B/tile rgba"
    );
    let mut comparison = Vec::new();
    for z in ZOOMS {
        let metas: Vec<MetatileCoord> = area
            .tile_range(z)
            .metatiles()
            .iter()
            .take(MAX_METATILES)
            .collect();
        // Warm up: prepared statements, PostgreSQL's caches, the pixmap.
        for &m in &metas {
            let data = source.fetch_metatile(&style, m).await?;
            render_metatile(&style, m, &data, &fonts, PngMode::Palette)?;
            render_metatile(&plain, m, &data, &fonts, PngMode::Palette)?;
        }
        let (mut q, mut d, mut p, mut l, mut e, mut t, mut er) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        // Per metatile: render times with and without labels, interleaved runs.
        let mut with: Vec<Vec<Duration>> = vec![Vec::new(); metas.len()];
        let mut without: Vec<Vec<Duration>> = vec![Vec::new(); metas.len()];
        let mut layer_times: Vec<Vec<Duration>> = vec![Vec::new(); style.layers.len()];
        let (mut rows, mut bytes_pal, mut bytes_rgba, mut tiles) = (0usize, 0usize, 0usize, 0usize);
        let mut i = 0;
        while i < runs.max(metas.len()) {
            let m = metas[i % metas.len()];
            let started = Instant::now();
            let data = source.fetch_metatile(&style, m).await?;
            let pal = render_metatile(&style, m, &data, &fonts, PngMode::Palette)?;
            t.push(started.elapsed());
            let rgba = render_metatile(&style, m, &data, &fonts, PngMode::Rgba)?;
            let bare = render_metatile(&plain, m, &data, &fonts, PngMode::Palette)?;
            let render_time = |r: &metatiled::render::RenderedMetatile| {
                r.timings.paint + r.timings.labels + r.timings.encode
            };
            with[i % metas.len()].push(render_time(&pal));
            without[i % metas.len()].push(render_time(&bare));
            q.push(data.timings.query);
            d.push(data.timings.decode);
            p.push(pal.timings.paint);
            l.push(pal.timings.labels);
            e.push(pal.timings.encode);
            er.push(rgba.timings.encode);
            if i < metas.len() {
                rows += data.timings.rows;
                for tile in m.tiles() {
                    if tile.bbox().intersects(&area) {
                        let k = tile.index_in_metatile();
                        bytes_pal += pal.tiles[k].len();
                        bytes_rgba += rgba.tiles[k].len();
                        tiles += 1;
                    }
                }
            }
            if per_layer {
                for (li, times) in layer_times.iter_mut().enumerate() {
                    let mut only = MetatileData {
                        layers: vec![LayerData::default(); style.layers.len()],
                        timings: data.timings,
                    };
                    only.layers[li] = data.layers[li].clone();
                    let started = Instant::now();
                    paint_metatile(&style, m, &only, &fonts)?;
                    times.push(started.elapsed());
                }
            }
            i += 1;
        }
        // Median over metatiles of each metatile's median render time.
        let per_meta = |runs: Vec<Vec<Duration>>| median(runs.into_iter().map(median).collect());
        let shares: Vec<f64> = with
            .iter()
            .zip(&without)
            .map(|(w, o)| {
                let (w, o) = (median(w.clone()), median(o.clone()));
                (w.as_secs_f64() / o.as_secs_f64().max(1e-9) - 1.0) * 100.0
            })
            .collect();
        // The labels stage's own share of a labelled render, measured inside it.
        let own_share = median(l.clone()).as_secs_f64()
            / (median(p.clone()) + median(l.clone()) + median(e.clone()))
                .as_secs_f64()
                .max(1e-9)
            * 100.0;
        comparison.push((z, per_meta(with), per_meta(without), shares, own_share));
        println!(
            "{:>4} {:>5} {:>5} | {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} | {:>9} | {:>10} {:>10}",
            z,
            metas.len(),
            rows / metas.len().max(1),
            ms(median(q)),
            ms(median(d)),
            ms(median(p)),
            ms(median(l)),
            ms(median(e)),
            ms(median(t)),
            ms(median(er)),
            bytes_pal / tiles.max(1),
            bytes_rgba / tiles.max(1),
        );
        if per_layer {
            let base = empty_paint(&style, metas[0], &fonts)?;
            for (layer, times) in style.layers.iter().zip(layer_times) {
                let med = median(times).saturating_sub(base);
                println!("       layer {:<12} paint {:>8} ms", layer.name, ms(med));
            }
        }
    }
    println!("(times in ms: query/decode per metatile, paint = the map layers on one 2048+2x128 px pixmap, labels = placing and drawing every label on it, encode = slice + 64 PNGs in parallel; total = fetch + paint + labels + palette encode)");
    println!();
    println!("render = paint + labels + palette encode of the same data (median over metatiles of each one's median):");
    println!(
        "{:>4} | {:>14} {:>17} | {:>14} {:>10} | {:>12}",
        "zoom", "with labels", "without labels", "labels add", "max", "labels stage"
    );
    for (z, with, without, mut shares, own_share) in comparison {
        shares.sort_by(f64::total_cmp);
        println!(
            "{:>4} | {:>11} ms {:>14} ms | {:>13.0}% {:>9.0}% | {:>11.1}%",
            z,
            ms(with),
            ms(without),
            shares.get(shares.len() / 2).copied().unwrap_or_default(),
            shares.last().copied().unwrap_or_default(),
            own_share,
        );
    }
    println!("(labels add = with / without - 1 per metatile, median and max over metatiles; labels stage = median labels time / (paint + labels + encode) of the labelled renders)");
    Ok(())
}

/// Time to paint just the background (subtracted from per-layer times).
fn empty_paint(style: &Style, m: MetatileCoord, fonts: &FontSet) -> anyhow::Result<Duration> {
    let empty = MetatileData {
        layers: vec![LayerData::default(); style.layers.len()],
        ..MetatileData::default()
    };
    let mut v = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        paint_metatile(style, m, &empty, fonts)?;
        v.push(started.elapsed());
    }
    Ok(median(v))
}
