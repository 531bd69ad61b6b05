//! Rendering one metatile: features -> one tiny-skia pixmap (the metatile plus a buffer
//! on every side, anti-aliased) -> labels placed and drawn over that whole canvas ->
//! 64 sliced tiles -> PNG bytes.
//!
//! CPU only and synchronous: it runs on the render pool's threads, never on the async
//! runtime. Each thread keeps its pixmap between renders. The 64 tiles are sliced and
//! encoded in parallel (rayon), which shortens a single miss's latency.

mod blend;
mod courtesy;
mod encode;
mod grid;
mod labels;
mod paint;

pub use blend::{blend_tiles, BlendError, BlendInput};
pub use courtesy::give_way;
pub use encode::{encode_png, quantize, quantize_with, PngMode, Quantized};
pub use grid::{key_char, render_grids, GRID_CELL_PX};
pub use paint::{pixmap_side, PixelTransform};

use crate::source::MetatileData;
use crate::style::Style;
use crate::text::FontSet;
use crate::tile::{MetatileCoord, StyleName, METATILE, TILES_PER_METATILE};
use rayon::prelude::*;
use std::cell::RefCell;
use std::time::{Duration, Instant};
use thiserror::Error;
use tiny_skia::Pixmap;

/// Why a metatile could not be rendered.
#[derive(Debug, Error)]
pub enum RenderError {
    #[error("style {style}, metatile {meta}: cannot allocate a {side}x{side} pixmap")]
    Pixmap {
        style: StyleName,
        meta: MetatileCoord,
        side: u32,
    },
    #[error("style {style}, metatile {meta}: the data has {got} layers, the style {expected}")]
    LayerCount {
        style: StyleName,
        meta: MetatileCoord,
        expected: usize,
        got: usize,
    },
    #[error("style {style}, metatile {meta}: PNG encoding of tile {index} failed: {message}")]
    Encode {
        style: StyleName,
        meta: MetatileCoord,
        index: usize,
        message: String,
    },
}

/// Where the time of a render went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RenderTimings {
    /// Background and every layer onto the pixmap.
    pub paint: Duration,
    /// Placing and drawing the labels of every layer on the whole canvas.
    pub labels: Duration,
    /// Slicing and PNG encoding of all tiles (wall time, in parallel).
    pub encode: Duration,
}

/// The 64 tiles of a metatile, encoded.
#[derive(Debug, Clone)]
pub struct RenderedMetatile {
    /// PNG bytes in metatile index order (x-major: `(x & 7) * 8 + (y & 7)`); empty for
    /// the tiles outside the world at zooms below 3.
    pub tiles: Vec<Vec<u8>>,
    /// The UTFGrid JSON of each tile (same order), for styles with interactivity.
    pub grids: Option<Vec<Vec<u8>>>,
    pub timings: RenderTimings,
}

impl RenderedMetatile {
    /// Total PNG bytes of the tiles.
    pub fn bytes(&self) -> usize {
        self.tiles.iter().map(Vec::len).sum()
    }
}

thread_local! {
    /// The pixmap of the last render on this thread, reused when the size matches.
    static SCRATCH: RefCell<Option<Pixmap>> = const { RefCell::new(None) };
}

/// Paints the whole metatile plus buffer, labels included, and returns the pixmap
/// (premultiplied RGBA). Exposed for tests (seams) and tools; [`render_metatile`] is
/// what the server calls.
pub fn paint_metatile(
    style: &Style,
    meta: MetatileCoord,
    data: &MetatileData,
    fonts: &FontSet,
) -> Result<Pixmap, RenderError> {
    check_layers(style, meta, data)?;
    let side = pixmap_side(style, meta);
    let mut pixmap = Pixmap::new(side, side).ok_or_else(|| RenderError::Pixmap {
        style: style.name.clone(),
        meta,
        side,
    })?;
    paint::paint(style, meta, data, &mut pixmap);
    labels::label(style, meta, data, fonts, &mut pixmap);
    Ok(pixmap)
}

fn check_layers(
    style: &Style,
    meta: MetatileCoord,
    data: &MetatileData,
) -> Result<(), RenderError> {
    if data.layers.len() != style.layers.len() {
        return Err(RenderError::LayerCount {
            style: style.name.clone(),
            meta,
            expected: style.layers.len(),
            got: data.layers.len(),
        });
    }
    Ok(())
}

/// Paints the metatile, places and draws its labels over the whole canvas, slices it
/// into its tiles and encodes each as PNG. `fonts` is the process's [`FontSet`] (loaded
/// once, shared by every render thread).
pub fn render_metatile(
    style: &Style,
    meta: MetatileCoord,
    data: &MetatileData,
    fonts: &FontSet,
    png: PngMode,
) -> Result<RenderedMetatile, RenderError> {
    check_layers(style, meta, data)?;
    let side = pixmap_side(style, meta);
    let mut pixmap = SCRATCH
        .with(|s| s.borrow_mut().take())
        .filter(|p| p.width() == side && p.height() == side);
    if pixmap.is_none() {
        pixmap = Pixmap::new(side, side);
    }
    let mut pixmap = pixmap.ok_or_else(|| RenderError::Pixmap {
        style: style.name.clone(),
        meta,
        side,
    })?;

    let started = Instant::now();
    paint::paint(style, meta, data, &mut pixmap);
    let paint_time = started.elapsed();

    let started = Instant::now();
    labels::label(style, meta, data, fonts, &mut pixmap);
    let labels_time = started.elapsed();

    let started = Instant::now();
    let result = slice_and_encode(style, meta, &pixmap, png);
    SCRATCH.with(|s| *s.borrow_mut() = Some(pixmap));
    let grids = render_grids(style, meta, data);
    let encode_time = started.elapsed();
    Ok(RenderedMetatile {
        tiles: result?,
        grids,
        timings: RenderTimings {
            paint: paint_time,
            labels: labels_time,
            encode: encode_time,
        },
    })
}

/// The straight-alpha pixels of tile (dx, dy) of the metatile, as `0xAABBGGRR`.
pub fn tile_pixels(style: &Style, pixmap: &Pixmap, dx: u32, dy: u32) -> Vec<u32> {
    let ts = style.tile_size as usize;
    let stride = pixmap.width() as usize;
    let x0 = style.buffer_px as usize + dx as usize * ts;
    let y0 = style.buffer_px as usize + dy as usize * ts;
    let src = pixmap.pixels();
    let mut out = Vec::with_capacity(ts * ts);
    for row in 0..ts {
        let start = (y0 + row) * stride + x0;
        out.extend(src[start..start + ts].iter().map(|p| {
            let c = if p.alpha() == 255 {
                tiny_skia::ColorU8::from_rgba(p.red(), p.green(), p.blue(), 255)
            } else {
                p.demultiply()
            };
            u32::from_le_bytes([c.red(), c.green(), c.blue(), c.alpha()])
        }));
    }
    out
}

fn slice_and_encode(
    style: &Style,
    meta: MetatileCoord,
    pixmap: &Pixmap,
    png: PngMode,
) -> Result<Vec<Vec<u8>>, RenderError> {
    let width = meta.width_in_tiles();
    (0..TILES_PER_METATILE)
        .into_par_iter()
        .map(|index| {
            let (dx, dy) = (index as u32 / METATILE, index as u32 % METATILE);
            if dx >= width || dy >= width {
                return Ok(Vec::new());
            }
            let pixels = tile_pixels(style, pixmap, dx, dy);
            give_way();
            let encoded = encode_png(&pixels, style.tile_size, style.tile_size, png).map_err(|e| {
                RenderError::Encode {
                    style: style.name.clone(),
                    meta,
                    index,
                    message: e.to_string(),
                }
            });
            give_way();
            encoded
        })
        .collect()
}
