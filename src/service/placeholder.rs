//! Placeholders: when a miss cannot be rendered now (queue full, miss timeout, render
//! ceiling, database down), a style with `placeholder = true` answers with its nearest
//! cached ancestor, the right quarter (or sixteenth...) cropped and scaled up, instead of
//! a 503. A placeholder is never a real tile: short max-age, no validators, a header
//! saying so (the HTTP layer's part). Made on a blocking thread (PNG decode, scale,
//! encode: a few milliseconds) and kept for its max-age, so a crowd asking for the same
//! missing tiles costs one scaling each.

use crate::cache::{CachedTile, TileCache};
use crate::render::{encode_png, PngMode};
use crate::style::Style;
use crate::tile::{StyleName, TileCoord};
use bytes::Bytes;
use moka::sync::Cache;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use thiserror::Error;
use tiny_skia::{FilterQuality, Pixmap, PixmapPaint, Transform};

/// Ancestors looked at, nearest first: beyond 4 levels up (16x) there is little left
/// of a map to show.
pub const MAX_ANCESTOR_LEVELS: u8 = 4;
/// Placeholders kept ready (each ~50-100 KB): enough for the misses of many screens.
const CACHED_PLACEHOLDERS: u64 = 2048;

/// A placeholder tile and the ancestor it was cut from.
#[derive(Debug, Clone)]
pub struct Placeholder {
    pub tile: Arc<CachedTile>,
    pub ancestor: TileCoord,
}

#[derive(Debug, Error)]
enum ScaleError {
    #[error("cannot decode the ancestor tile")]
    Decode(#[source] png::DecodingError),
    #[error("cannot encode the placeholder")]
    Encode(#[source] png::EncodingError),
    #[error("bad tile size {0}")]
    Size(u32),
}

/// Makes and keeps placeholders.
pub(crate) struct Placeholders {
    made: Cache<(StyleName, TileCoord), Placeholder>,
}

impl Placeholders {
    pub(crate) fn new(max_age: Duration) -> Self {
        Self {
            made: Cache::builder()
                .max_capacity(CACHED_PLACEHOLDERS)
                .time_to_live(max_age.max(Duration::from_secs(1)))
                .build(),
        }
    }

    /// The placeholder of `tile`: its nearest cached ancestor (stale ones too) within
    /// [`MAX_ANCESTOR_LEVELS`], scaled up. `None` when no ancestor is cached.
    pub(crate) async fn make(
        &self,
        cache: &Arc<TileCache>,
        style: &Style,
        tile: TileCoord,
    ) -> Option<Placeholder> {
        let key = (style.name.clone(), tile);
        if let Some(found) = self.made.get(&key) {
            return Some(found);
        }
        let lowest = tile
            .z
            .saturating_sub(MAX_ANCESTOR_LEVELS)
            .max(style.minzoom);
        let (ancestor, bytes) = (lowest..tile.z).rev().find_map(|z| {
            let up = tile.z - z;
            let ancestor = TileCoord {
                z,
                x: tile.x >> up,
                y: tile.y >> up,
            };
            let found = cache.lookup(&style.name, ancestor).ok()?;
            found.tile().map(|t| (ancestor, t.bytes.clone()))
        })?;
        let size = style.tile_size;
        let scaled =
            tokio::task::spawn_blocking(move || scale_up(&bytes, size, ancestor, tile)).await;
        let png = match scaled {
            Ok(Ok(png)) => png,
            Ok(Err(e)) => {
                tracing::warn!(style = %style.name, tile = %tile, ancestor = %ancestor, error = %crate::errors::error_chain(&e), "cannot make a placeholder");
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, "placeholder task failed");
                return None;
            }
        };
        let placeholder = Placeholder {
            tile: Arc::new(CachedTile::new(Bytes::from(png), SystemTime::now(), false)),
            ancestor,
        };
        self.made.insert(key, placeholder.clone());
        Some(placeholder)
    }
}

/// Crops the part of `ancestor`'s image that covers `tile` and scales it to `size`.
fn scale_up(
    ancestor_png: &[u8],
    size: u32,
    ancestor: TileCoord,
    tile: TileCoord,
) -> Result<Vec<u8>, ScaleError> {
    let src = Pixmap::decode_png(ancestor_png).map_err(ScaleError::Decode)?;
    let levels = tile.z - ancestor.z;
    let factor = (1u32 << levels) as f32;
    // The ancestor's image may not be `size` wide (a 2x style): scale to fit.
    let k = factor * size as f32 / src.width() as f32;
    let part = size as f32 / factor;
    let (dx, dy) = (
        tile.x - (ancestor.x << levels),
        tile.y - (ancestor.y << levels),
    );
    let (ox, oy) = (dx as f32 * part, dy as f32 * part);
    let mut out = Pixmap::new(size, size).ok_or(ScaleError::Size(size))?;
    let paint = PixmapPaint {
        quality: FilterQuality::Bilinear,
        ..PixmapPaint::default()
    };
    let transform = Transform::from_scale(k, k).pre_translate(
        -ox * src.width() as f32 / size as f32,
        -oy * src.width() as f32 / size as f32,
    );
    out.draw_pixmap(0, 0, src.as_ref(), &paint, transform, None);
    let pixels: Vec<u32> = out
        .pixels()
        .iter()
        .map(|p| {
            let c = p.demultiply();
            u32::from_le_bytes([c.red(), c.green(), c.blue(), c.alpha()])
        })
        .collect();
    encode_png(&pixels, size, size, PngMode::Rgba).map_err(ScaleError::Encode)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 256 px tile whose four quarters are red, green, blue and white.
    fn quarters() -> Vec<u8> {
        let mut pixels = Vec::with_capacity(256 * 256);
        for y in 0..256u32 {
            for x in 0..256u32 {
                let c: [u8; 4] = match (x < 128, y < 128) {
                    (true, true) => [255, 0, 0, 255],
                    (false, true) => [0, 255, 0, 255],
                    (true, false) => [0, 0, 255, 255],
                    (false, false) => [255, 255, 255, 255],
                };
                pixels.push(u32::from_le_bytes(c));
            }
        }
        encode_png(&pixels, 256, 256, PngMode::Rgba).unwrap()
    }

    fn centre_colour(png: &[u8]) -> [u8; 4] {
        let p = Pixmap::decode_png(png).unwrap();
        assert_eq!((p.width(), p.height()), (256, 256));
        let c = p.pixel(128, 128).unwrap().demultiply();
        [c.red(), c.green(), c.blue(), c.alpha()]
    }

    #[test]
    fn a_child_is_its_quarter_of_the_parent_scaled_up() {
        let parent = TileCoord { z: 10, x: 4, y: 6 };
        let cases = [
            (TileCoord { z: 11, x: 8, y: 12 }, [255, 0, 0, 255]),
            (TileCoord { z: 11, x: 9, y: 12 }, [0, 255, 0, 255]),
            (TileCoord { z: 11, x: 8, y: 13 }, [0, 0, 255, 255]),
            (TileCoord { z: 11, x: 9, y: 13 }, [255, 255, 255, 255]),
            // Two levels down: the bottom-right sixteenth is inside the white quarter.
            (
                TileCoord {
                    z: 12,
                    x: 19,
                    y: 27,
                },
                [255, 255, 255, 255],
            ),
        ];
        let png = quarters();
        for (child, want) in cases {
            let out = scale_up(&png, 256, parent, child).unwrap();
            assert_eq!(centre_colour(&out), want, "{child}");
        }
    }

    #[test]
    fn a_512_px_ancestor_fills_a_512_px_placeholder() {
        let mut pixels = vec![u32::from_le_bytes([10, 20, 30, 255]); 512 * 512];
        pixels[0] = u32::from_le_bytes([0, 0, 0, 255]);
        let png = encode_png(&pixels, 512, 512, PngMode::Rgba).unwrap();
        let out = scale_up(
            &png,
            512,
            TileCoord { z: 3, x: 1, y: 1 },
            TileCoord { z: 4, x: 3, y: 3 },
        )
        .unwrap();
        let p = Pixmap::decode_png(&out).unwrap();
        assert_eq!(p.width(), 512);
        let c = p.pixel(256, 256).unwrap().demultiply();
        assert_eq!([c.red(), c.green(), c.blue()], [10, 20, 30]);
    }
}
