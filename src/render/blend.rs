//! Composite tiles: other styles' tiles decoded and blended bottom first with tiny-skia
//! (each with its opacity and blend mode), then encoded like any tile. The 64 tiles of
//! a metatile are blended in parallel on the render threads.

use super::{encode_png, PngMode};
use crate::style::BlendMode;
use crate::tile::TILES_PER_METATILE;
use rayon::prelude::*;
use thiserror::Error;
use tiny_skia::{FilterQuality, Pixmap, PixmapPaint, Transform};

/// Why a composite tile could not be made.
#[derive(Debug, Error)]
pub enum BlendError {
    #[error("input {input}, tile {index}: not a PNG: {message}")]
    Decode {
        input: usize,
        index: usize,
        message: String,
    },
    #[error(
        "input {input}, tile {index}: {width}x{height} px, the composite's tiles are {size} px"
    )]
    Size {
        input: usize,
        index: usize,
        width: u32,
        height: u32,
        size: u32,
    },
    #[error("input {input} has {got} tiles, a metatile {TILES_PER_METATILE}")]
    TileCount { input: usize, got: usize },
    #[error("tile {index}: PNG encoding failed: {message}")]
    Encode { index: usize, message: String },
}

/// One input of a blend: the 64 PNG tiles of its metatile (empty = no tile), how
/// opaque it is and how it blends over what is below.
pub struct BlendInput<'a> {
    pub tiles: &'a [Vec<u8>],
    pub opacity: f32,
    pub blend: BlendMode,
}

fn skia_mode(mode: BlendMode) -> tiny_skia::BlendMode {
    use tiny_skia::BlendMode as B;
    match mode {
        BlendMode::Normal => B::SourceOver,
        BlendMode::Multiply => B::Multiply,
        BlendMode::Screen => B::Screen,
        BlendMode::Overlay => B::Overlay,
        BlendMode::Darken => B::Darken,
        BlendMode::Lighten => B::Lighten,
        BlendMode::ColorDodge => B::ColorDodge,
        BlendMode::ColorBurn => B::ColorBurn,
        BlendMode::HardLight => B::HardLight,
        BlendMode::SoftLight => B::SoftLight,
        BlendMode::Difference => B::Difference,
        BlendMode::Exclusion => B::Exclusion,
        BlendMode::Hue => B::Hue,
        BlendMode::Saturation => B::Saturation,
        BlendMode::Color => B::Color,
        BlendMode::Luminosity => B::Luminosity,
    }
}

/// Blends the inputs' tiles index by index into 64 tiles of `size` px (an index no
/// input has stays empty) and encodes them.
pub fn blend_tiles(
    inputs: &[BlendInput<'_>],
    size: u32,
    png: PngMode,
) -> Result<Vec<Vec<u8>>, BlendError> {
    for (input, i) in inputs.iter().enumerate() {
        if i.tiles.len() != TILES_PER_METATILE {
            return Err(BlendError::TileCount {
                input,
                got: i.tiles.len(),
            });
        }
    }
    (0..TILES_PER_METATILE)
        .into_par_iter()
        .map(|index| {
            super::give_way();
            blend_one(inputs, index, size, png)
        })
        .collect()
}

fn blend_one(
    inputs: &[BlendInput<'_>],
    index: usize,
    size: u32,
    png: PngMode,
) -> Result<Vec<u8>, BlendError> {
    if inputs.iter().all(|i| i.tiles[index].is_empty()) {
        return Ok(Vec::new());
    }
    let Some(mut canvas) = Pixmap::new(size, size) else {
        return Err(BlendError::Encode {
            index,
            message: format!("cannot allocate a {size} px tile"),
        });
    };
    for (n, input) in inputs.iter().enumerate() {
        let bytes = &input.tiles[index];
        if bytes.is_empty() {
            continue;
        }
        let layer = Pixmap::decode_png(bytes).map_err(|e| BlendError::Decode {
            input: n,
            index,
            message: e.to_string(),
        })?;
        if layer.width() != size || layer.height() != size {
            return Err(BlendError::Size {
                input: n,
                index,
                width: layer.width(),
                height: layer.height(),
                size,
            });
        }
        let paint = PixmapPaint {
            opacity: input.opacity,
            blend_mode: skia_mode(input.blend),
            quality: FilterQuality::Nearest,
        };
        canvas.draw_pixmap(0, 0, layer.as_ref(), &paint, Transform::identity(), None);
    }
    let pixels: Vec<u32> = canvas
        .pixels()
        .iter()
        .map(|p| {
            let c = p.demultiply();
            u32::from_le_bytes([c.red(), c.green(), c.blue(), c.alpha()])
        })
        .collect();
    encode_png(&pixels, size, size, png).map_err(|e| BlendError::Encode {
        index,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(size: u32, rgba: [u8; 4]) -> Vec<u8> {
        let px = u32::from_le_bytes(rgba);
        encode_png(&vec![px; (size * size) as usize], size, size, PngMode::Rgba).unwrap()
    }

    fn pixel(png: &[u8]) -> [u8; 4] {
        let p = Pixmap::decode_png(png).unwrap().pixels()[0].demultiply();
        [p.red(), p.green(), p.blue(), p.alpha()]
    }

    #[test]
    fn an_overlay_is_blended_with_its_opacity_and_empty_indexes_stay_empty() {
        let mut base = vec![Vec::new(); TILES_PER_METATILE];
        let mut over = vec![Vec::new(); TILES_PER_METATILE];
        base[0] = solid(8, [200, 100, 0, 255]);
        over[0] = solid(8, [0, 0, 200, 255]);
        base[1] = solid(8, [200, 100, 0, 255]);
        let inputs = [
            BlendInput {
                tiles: &base,
                opacity: 1.0,
                blend: BlendMode::Normal,
            },
            BlendInput {
                tiles: &over,
                opacity: 0.5,
                blend: BlendMode::Normal,
            },
        ];
        let out = blend_tiles(&inputs, 8, PngMode::Rgba).unwrap();
        let [r, g, b, a] = pixel(&out[0]);
        assert!(r.abs_diff(100) <= 1 && g.abs_diff(50) <= 1 && b.abs_diff(100) <= 1 && a == 255);
        assert_eq!(
            pixel(&out[1]),
            [200, 100, 0, 255],
            "no overlay tile: the base"
        );
        assert!(out[2].is_empty());

        let multiply = [
            BlendInput {
                tiles: &base,
                opacity: 1.0,
                blend: BlendMode::Normal,
            },
            BlendInput {
                tiles: &over,
                opacity: 1.0,
                blend: BlendMode::Multiply,
            },
        ];
        let out = blend_tiles(&multiply, 8, PngMode::Rgba).unwrap();
        assert_eq!(pixel(&out[0]), [0, 0, 0, 255]);
    }

    #[test]
    fn a_tile_of_another_size_is_refused() {
        let mut base = vec![Vec::new(); TILES_PER_METATILE];
        base[5] = solid(4, [1, 2, 3, 255]);
        let inputs = [BlendInput {
            tiles: &base,
            opacity: 1.0,
            blend: BlendMode::Normal,
        }];
        let e = blend_tiles(&inputs, 8, PngMode::Rgba).unwrap_err();
        assert!(matches!(e, BlendError::Size { index: 5, .. }), "{e}");
    }
}
