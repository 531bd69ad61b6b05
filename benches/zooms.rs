//! Render time per zoom, z0 to z19, on one or more databases side by side: how the cost
//! of a metatile grows with the data under it.
//!
//! ```text
//! cargo bench --bench zooms -- [--db NAME=URL]... [--per-zoom N] [--zooms A-B] [--seed S]
//!     [--style osm] [--styles DIR]
//! ```
//! Without `--db`, `DATABASE_URL` is the one database. For every zoom it renders
//! `--per-zoom` (default 60) random metatiles that intersect the data, each once, as
//! the server does on a miss (every layer's query, then paint, labels and palette PNG
//! encoding of the 64 tiles; no disk write), and prints the median and p99 of the
//! whole render and the median query time. Half of the metatiles are drawn where the
//! features are (a random row of planet_osm_point, _line or _polygon, so dense areas
//! weigh more), half uniformly over the imported bounds (`metatiled.import_info`).
//! Below zoom 4 a database has fewer distinct metatiles than that: they are rendered
//! again in turn (`distinct` says how many there were). Each database is first warmed
//! up with one render per zoom (not counted). The sizes of the databases (bytes and
//! feature rows) come first. Everything is seeded (`--seed`, default 1): two runs on
//! the same databases render the same metatiles.

use anyhow::Context;
use metatiled::config::DatabaseSettings;
use metatiled::render::{render_metatile, PngMode};
use metatiled::source::{build_pool, ImportInfo, PostgisSource};
use metatiled::style::StyleSet;
use metatiled::text::FontSet;
use metatiled::tile::{Bbox, LonLat, MetatileCoord, StyleName, TileCoord};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Feature locations sampled per database (half of the metatiles are drawn from them).
const LOCATIONS: usize = 4000;

struct Db {
    name: String,
    source: PostgisSource,
    bounds: Bbox,
    /// Feature locations, EPSG:3857.
    locations: Vec<(f64, f64)>,
    size_bytes: i64,
    rows: i64,
}

/// One zoom on one database.
#[derive(Default)]
struct ZoomResult {
    distinct: usize,
    totals: Vec<Duration>,
    queries: Vec<Duration>,
    /// Per render: WKB decoding, paint, labels, slicing + PNG encoding.
    decodes: Vec<Duration>,
    paints: Vec<Duration>,
    labels: Vec<Duration>,
    encodes: Vec<Duration>,
    rows: usize,
    /// The slowest render: where a p99 comes from.
    slowest: Option<Slowest>,
}

/// The slowest metatile of a zoom and where its time went.
struct Slowest {
    meta: MetatileCoord,
    total: Duration,
    /// query, decode, paint, labels, encode.
    phases: [Duration; 5],
    rows: usize,
}

fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank: the smallest value with at least p of the values at or below it.
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn human_bytes(b: i64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else {
        format!("{:.0} MB", b / 1e6)
    }
}

/// The metatile of zoom `z` holding the point (x, y) in EPSG:3857.
fn metatile_at(z: u8, x: f64, y: f64) -> Option<MetatileCoord> {
    let span = 2.0 * metatiled::tile::EARTH_HALF_CIRCUMFERENCE;
    let n = f64::from(1u32 << z);
    let tx = ((x + span / 2.0) / span * n).floor();
    let ty = ((span / 2.0 - y) / span * n).floor();
    if !(0.0..n).contains(&tx) || !(0.0..n).contains(&ty) {
        return None;
    }
    TileCoord::try_new(u32::from(z), tx as u64, ty as u64)
        .ok()
        .map(TileCoord::metatile)
}

async fn open(name: &str, url: &str, seed: u64) -> anyhow::Result<Db> {
    let pool = build_pool(&DatabaseSettings {
        url: Some(url.to_string()),
        ..DatabaseSettings::default()
    })
    .await
    .with_context(|| format!("connecting to database {name}"))?;
    let info = ImportInfo::load(&pool)
        .await?
        .with_context(|| format!("{name}: no metatiled.import_info (run scripts/setup)"))?;
    let [w, s, e, n] = info.bounds;
    let bounds = Bbox::from_lonlat(LonLat { lon: w, lat: s }, LonLat { lon: e, lat: n });
    let client = pool.get().await.context("a pooled connection")?;
    let row = client
        .query_one(
            "SELECT pg_database_size(current_database()),
                    (SELECT reltuples::bigint FROM pg_class WHERE oid = 'public.planet_osm_point'::regclass)
                  + (SELECT reltuples::bigint FROM pg_class WHERE oid = 'public.planet_osm_line'::regclass)
                  + (SELECT reltuples::bigint FROM pg_class WHERE oid = 'public.planet_osm_polygon'::regclass)
                  + (SELECT reltuples::bigint FROM pg_class WHERE oid = 'public.planet_osm_roads'::regclass)",
            &[],
        )
        .await
        .with_context(|| format!("{name}: database size"))?;
    let (size_bytes, rows): (i64, i64) = (row.get(0), row.get(1));
    // A fixed sample of feature locations: SYSTEM sampling reads random pages, so it
    // costs the same on any size; REPEATABLE makes it the same on every run.
    let percent = (LOCATIONS as f64 / rows.max(1) as f64 * 100.0 * 1.5).clamp(0.0001, 100.0);
    let sql = format!(
        "SELECT ST_X(p), ST_Y(p) FROM (
           SELECT ST_Centroid(ST_Envelope(way)) AS p FROM planet_osm_point TABLESAMPLE SYSTEM ({percent}) REPEATABLE ({seed})
           UNION ALL
           SELECT ST_Centroid(ST_Envelope(way)) FROM planet_osm_line TABLESAMPLE SYSTEM ({percent}) REPEATABLE ({seed})
           UNION ALL
           SELECT ST_Centroid(ST_Envelope(way)) FROM planet_osm_polygon TABLESAMPLE SYSTEM ({percent}) REPEATABLE ({seed})
         ) AS s LIMIT {LOCATIONS}"
    );
    let locations = client
        .query(&sql, &[])
        .await
        .with_context(|| format!("{name}: sampling feature locations"))?
        .iter()
        .map(|r| (r.get::<_, f64>(0), r.get::<_, f64>(1)))
        .collect();
    drop(client);
    Ok(Db {
        name: name.to_string(),
        source: PostgisSource::new(pool),
        bounds,
        locations,
        size_bytes,
        rows,
    })
}

/// `count` metatiles of zoom `z` for `db`: half at feature locations, half uniform
/// over the bounds; distinct ones first, repeated in turn when there are fewer.
fn pick_metatiles(db: &Db, z: u8, count: usize, rng: &mut StdRng) -> (Vec<MetatileCoord>, usize) {
    let mut picked = Vec::new();
    let mut seen = BTreeSet::new();
    let mut tries = 0;
    while picked.len() < count && tries < count * 50 {
        tries += 1;
        let (x, y) = if tries % 2 == 0 && !db.locations.is_empty() {
            db.locations[rng.random_range(0..db.locations.len())]
        } else {
            (
                rng.random_range(db.bounds.min_x..=db.bounds.max_x),
                rng.random_range(db.bounds.min_y..=db.bounds.max_y),
            )
        };
        if let Some(m) = metatile_at(z, x, y) {
            if seen.insert((m.x, m.y)) {
                picked.push(m);
            }
        }
    }
    let distinct = picked.len();
    if distinct == 0 {
        return (picked, 0);
    }
    picked.shuffle(rng);
    let mut all = picked.clone();
    while all.len() < count {
        all.push(picked[all.len() % distinct]);
    }
    (all, distinct)
}

/// One line per zoom (from `zmin`), and per database the `columns` that `cells` gives.
fn print_table(
    names: &[&str],
    results: &[Vec<ZoomResult>],
    zmin: u8,
    columns: &[&str],
    cells: impl Fn(&ZoomResult) -> Vec<String>,
) {
    // One database's part of a line: its name (or blank) and the values.
    let part = |label: &str, values: &[String]| {
        let colon = if label.is_empty() { ' ' } else { ':' };
        let mut part = format!(" | {label:>10}{colon}");
        for v in values {
            part.push_str(&format!(" {v:>8}"));
        }
        part
    };
    let headings: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    let header: String = names.iter().map(|name| part(name, &headings)).collect();
    println!("zoom{header}");
    for (i, z) in (zmin..)
        .take(results.first().map_or(0, Vec::len))
        .enumerate()
    {
        let line: String = results
            .iter()
            .map(|per_db| part("", &cells(&per_db[i])))
            .collect();
        println!("{z:>4}{line}");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let per_zoom: usize = value("--per-zoom").map_or(Ok(60), |v| v.parse())?;
    let seed: u64 = value("--seed").map_or(Ok(1), |v| v.parse())?;
    let style_name = value("--style").unwrap_or_else(|| "osm".into());
    let (zmin, zmax): (u8, u8) = match value("--zooms") {
        Some(v) => {
            let (a, b) = v.split_once('-').context("--zooms A-B")?;
            (a.parse()?, b.parse()?)
        }
        None => (0, 19),
    };
    let mut dbs_args: Vec<(String, String)> = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if a == "--db" {
            let spec = args.get(i + 1).context("--db NAME=URL")?;
            let (name, url) = spec.split_once('=').context("--db NAME=URL")?;
            dbs_args.push((name.to_string(), url.to_string()));
        }
    }
    if dbs_args.is_empty() {
        let Ok(url) = std::env::var("DATABASE_URL") else {
            eprintln!("zooms bench: skipping, set DATABASE_URL or pass --db NAME=URL");
            return Ok(());
        };
        dbs_args.push(("db".into(), url));
    }

    let styles_dir = value("--styles")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("styles"));
    let styles = StyleSet::load_dir(&styles_dir)?;
    let style = styles
        .get(&StyleName::parse(&style_name)?)
        .with_context(|| format!("no style {style_name}"))?
        .clone();
    let fonts = FontSet::system_default()?;
    styles.check_fonts(&fonts)?;

    let mut dbs = Vec::new();
    for (name, url) in &dbs_args {
        let db = open(name, url, seed).await?;
        db.source.check_style(&style).await?;
        dbs.push(db);
    }
    println!(
        "style {}, {} metatiles per zoom (each rendered once: every layer's query, paint, labels, 64 palette PNGs), seed {seed}",
        style.name, per_zoom
    );
    for db in &dbs {
        println!(
            "  {:<10} {:>9} feature rows (point+line+polygon+roads), database {}",
            db.name,
            db.rows,
            human_bytes(db.size_bytes)
        );
    }

    let mut results: Vec<Vec<ZoomResult>> = Vec::new();
    for db in &dbs {
        // Warm-up: prepared statements and a first touch at every zoom.
        let mut rng = StdRng::seed_from_u64(seed);
        for z in zmin..=zmax {
            let (metas, _) = pick_metatiles(db, z, 1, &mut rng);
            for m in metas {
                let data = db.source.fetch_metatile(&style, m).await?;
                render_metatile(&style, m, &data, &fonts, PngMode::Palette)?;
            }
        }
        let mut per_db = Vec::new();
        for z in zmin..=zmax {
            let mut rng = StdRng::seed_from_u64(seed ^ (u64::from(z) << 32));
            let (metas, distinct) = pick_metatiles(db, z, per_zoom, &mut rng);
            let mut r = ZoomResult {
                distinct,
                ..ZoomResult::default()
            };
            for m in metas {
                let started = Instant::now();
                let data = db.source.fetch_metatile(&style, m).await?;
                let rendered = render_metatile(&style, m, &data, &fonts, PngMode::Palette)?;
                let total = started.elapsed();
                if r.slowest.as_ref().map_or(true, |s| total > s.total) {
                    r.slowest = Some(Slowest {
                        meta: m,
                        total,
                        phases: [
                            data.timings.query,
                            data.timings.decode,
                            rendered.timings.paint,
                            rendered.timings.labels,
                            rendered.timings.encode,
                        ],
                        rows: data.timings.rows,
                    });
                }
                r.totals.push(total);
                r.queries.push(data.timings.query);
                r.decodes.push(data.timings.decode);
                r.paints.push(rendered.timings.paint);
                r.labels.push(rendered.timings.labels);
                r.encodes.push(rendered.timings.encode);
                r.rows += data.timings.rows;
            }
            eprintln!(
                "{}: z{z}: {} renders of {} metatiles, median {} ms, p99 {} ms",
                db.name,
                r.totals.len(),
                r.distinct,
                ms(percentile(&r.totals, 0.5)),
                ms(percentile(&r.totals, 0.99)),
            );
            per_db.push(r);
        }
        results.push(per_db);
    }

    // The table: per zoom, per database: distinct metatiles, rows, query median,
    // render median and p99 (ms).
    let names: Vec<&str> = dbs.iter().map(|db| db.name.as_str()).collect();
    print_table(
        &names,
        &results,
        zmin,
        &["distinct", "rows", "query", "median", "p99"],
        |r| {
            vec![
                r.distinct.to_string(),
                (r.rows / r.totals.len().max(1)).to_string(),
                ms(percentile(&r.queries, 0.5)),
                ms(percentile(&r.totals, 0.5)),
                ms(percentile(&r.totals, 0.99)),
            ]
        },
    );
    println!("(ms; rows = mean rows fetched per metatile; query = median time of all layer queries; median/p99 = the whole render)");

    // Where the time goes: the median of each phase per zoom, on every database.
    println!();
    print_table(
        &names,
        &results,
        zmin,
        &["query", "decode", "paint", "labels", "encode"],
        |r| {
            [&r.queries, &r.decodes, &r.paints, &r.labels, &r.encodes]
                .into_iter()
                .map(|phase| ms(percentile(phase, 0.5)))
                .collect()
        },
    );
    println!("(ms, medians per phase; encode = slicing + PNG encoding of the 64 tiles, in parallel, plus UTFGrids)");

    // Where a p99 comes from: each zoom's slowest metatile, to rerun or EXPLAIN.
    println!();
    for (db, per_db) in dbs.iter().zip(&results) {
        for r in per_db {
            let Some(s) = &r.slowest else { continue };
            let [query, decode, paint, labels, encode] = s.phases.map(ms);
            println!(
                "{}: slowest z{} metatile {}: {} ms (query {query}, decode {decode}, paint {paint}, labels {labels}, encode {encode}; {} rows)",
                db.name,
                s.meta.z,
                s.meta,
                ms(s.total),
                s.rows,
            );
        }
    }
    if dbs.len() >= 2 {
        let (a, b) = (&results[0], &results[dbs.len() - 1]);
        let ratio = |i: usize| {
            percentile(&b[i].totals, 0.5).as_secs_f64()
                / percentile(&a[i].totals, 0.5).as_secs_f64().max(1e-6)
        };
        let ratios: Vec<(u8, f64)> = (zmin..=zmax)
            .enumerate()
            .map(|(i, z)| (z, ratio(i)))
            .collect();
        let worst = ratios
            .iter()
            .copied()
            .fold((zmin, 0.0f64), |acc, r| if r.1 > acc.1 { r } else { acc });
        let worst_p99 = b
            .iter()
            .map(|r| percentile(&r.totals, 0.99))
            .max()
            .unwrap_or_default();
        println!(
            "{} has {:.0}x the feature rows of {}; median render per zoom: {} ({} / {}); slowest ratio z{} x{:.1}; worst p99 on {}: {} ms",
            dbs[dbs.len() - 1].name,
            dbs[dbs.len() - 1].rows as f64 / dbs[0].rows.max(1) as f64,
            dbs[0].name,
            ratios
                .iter()
                .map(|(z, r)| format!("z{z} x{r:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
            dbs[dbs.len() - 1].name,
            dbs[0].name,
            worst.0,
            worst.1,
            dbs[dbs.len() - 1].name,
            ms(worst_p99),
        );
    }
    Ok(())
}
