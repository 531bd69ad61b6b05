//! Renders tiles of a style from PostGIS to PNG files, for looking at a style while
//! editing it:
//!
//! ```text
//! DATABASE_URL=postgres://... cargo run --release --example render_tile -- \
//!     [--styles DIR] [--rgba] [--metatile] STYLE Z X Y [OUT.png]
//! ```
//! Writes the tile (or with `--metatile` the whole painted metatile, buffer included)
//! and prints the timings.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

use anyhow::{bail, Context};
use metatiled::config::DatabaseSettings;
use metatiled::render::{paint_metatile, render_metatile, PngMode};
use metatiled::source::{build_pool, PostgisSource};
use metatiled::style::StyleSet;
use metatiled::text::FontSet;
use metatiled::tile::{StyleName, TileCoord};
use std::path::PathBuf;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut styles_dir = PathBuf::from("styles");
    let mut png = PngMode::Palette;
    let mut whole = false;
    while let Some(flag) = args.first().filter(|a| a.starts_with("--")).cloned() {
        args.remove(0);
        match flag.as_str() {
            "--styles" => styles_dir = PathBuf::from(args.remove(0)),
            "--rgba" => png = PngMode::Rgba,
            "--metatile" => whole = true,
            other => bail!("unknown flag {other}"),
        }
    }
    if args.len() < 4 {
        bail!("usage: render_tile [--styles DIR] [--rgba] [--metatile] STYLE Z X Y [OUT.png]");
    }
    let styles = StyleSet::load_dir(&styles_dir)?;
    let name = StyleName::parse(&args[0])?;
    let style = styles.get(&name).context("no such style")?;
    let fonts = FontSet::system_default()?;
    styles.check_fonts(&fonts)?;
    let tile = TileCoord::try_new(args[1].parse()?, args[2].parse()?, args[3].parse()?)?;
    let out = args
        .get(4)
        .cloned()
        .unwrap_or_else(|| format!("{}-{}-{}-{}.png", name, tile.z, tile.x, tile.y));
    let url = std::env::var("DATABASE_URL").context("set DATABASE_URL")?;
    let pool = build_pool(&DatabaseSettings {
        url: Some(url),
        ..DatabaseSettings::default()
    })
    .await?;
    let source = PostgisSource::new(pool);
    source.check_style(style).await?;
    let meta = tile.metatile();
    let data = source.fetch_metatile(style, meta).await?;
    if whole {
        paint_metatile(style, meta, &data, &fonts)?.save_png(&out)?;
    } else {
        let rendered = render_metatile(style, meta, &data, &fonts, png)?;
        std::fs::write(&out, &rendered.tiles[tile.index_in_metatile()])?;
        println!(
            "metatile {meta}: query {:?} decode {:?} paint {:?} labels {:?} encode {:?}, {} rows, {} bytes in 64 tiles",
            data.timings.query,
            data.timings.decode,
            rendered.timings.paint,
            rendered.timings.labels,
            rendered.timings.encode,
            data.timings.rows,
            rendered.bytes()
        );
    }
    println!("wrote {out}");
    Ok(())
}
