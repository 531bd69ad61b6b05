//! PNG encoding of one tile: 8-bit (or smaller) palette PNGs like Mapnik's `png256`,
//! or full-colour PNGs.
//!
//! Map tiles hold few colours: flat fills plus anti-aliased edges. The palette is
//! chosen by popularity with a minimum distance between entries, so the flat fills keep
//! their exact colour and near-identical edge blends share an entry (which is what makes
//! the tiles small); every other colour maps to its nearest entry. Palettes of <= 16
//! colours are written with 1, 2 or 4 bits per pixel, without PNG row filters (they do
//! not help indexed images).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Entries of a full palette.
const MAX_PALETTE: usize = 256;
/// Squared RGBA distance under which a less popular colour does not get its own
/// palette entry (about 6 levels per channel). Measured on central Helsinki at z18:
/// tiles 33% smaller than with an exact palette, flat fills still exact (they are the
/// most popular colours) and PSNR above 50 dB.
pub(super) const MIN_ENTRY_DISTANCE_SQ: u32 = 3 * 6 * 6;

/// A multiplicative hasher for `u32` colour keys: std's SipHash costs more than the
/// rest of the quantiser.
#[derive(Default)]
struct ColorHasher(u64);

impl Hasher for ColorHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = u64::from(v).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16;
    }
}

type ColorMap<V> = HashMap<u32, V, BuildHasherDefault<ColorHasher>>;

/// Output flavour of the tiles (`render.png`: "palette" or "rgba").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PngMode {
    /// 8-bit (or fewer bits) palette, like Mapnik's `png256`: small tiles.
    #[default]
    Palette,
    /// Full colour: RGB when every pixel is opaque, else RGBA.
    Rgba,
}

impl std::str::FromStr for PngMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "palette" | "png256" | "png8" => Ok(PngMode::Palette),
            "rgba" | "png32" => Ok(PngMode::Rgba),
            other => Err(format!(
                "unknown PNG mode {other:?}: expected \"palette\" or \"rgba\""
            )),
        }
    }
}

/// Encodes `width x height` straight-alpha RGBA pixels (packed as little-endian `u32`
/// `0xAABBGGRR`, i.e. bytes r, g, b, a in memory).
pub fn encode_png(
    pixels: &[u32],
    width: u32,
    height: u32,
    mode: PngMode,
) -> Result<Vec<u8>, png::EncodingError> {
    match mode {
        PngMode::Palette => encode_palette(pixels, width, height),
        PngMode::Rgba => encode_rgba(pixels, width, height),
    }
}

fn encoder(out: &mut Vec<u8>, width: u32, height: u32) -> png::Encoder<'_, &mut Vec<u8>> {
    let mut enc = png::Encoder::new(out, width, height);
    enc.set_compression(png::Compression::Balanced);
    enc
}

fn encode_rgba(pixels: &[u32], width: u32, height: u32) -> Result<Vec<u8>, png::EncodingError> {
    let opaque = pixels.iter().all(|p| p >> 24 == 0xff);
    let data: Vec<u8> = if opaque {
        pixels
            .iter()
            .flat_map(|p| {
                let b = p.to_le_bytes();
                [b[0], b[1], b[2]]
            })
            .collect()
    } else {
        pixels.iter().flat_map(|p| p.to_le_bytes()).collect()
    };
    let mut out = Vec::with_capacity(data.len() / 8);
    {
        let mut enc = encoder(&mut out, width, height);
        enc.set_color(if opaque {
            png::ColorType::Rgb
        } else {
            png::ColorType::Rgba
        });
        enc.set_depth(png::BitDepth::Eight);
        enc.set_filter(png::Filter::Adaptive);
        let mut writer = enc.write_header()?;
        writer.write_image_data(&data)?;
        writer.finish()?;
    }
    Ok(out)
}

/// A palette and the index of every pixel.
pub struct Quantized {
    /// Colours as `0xAABBGGRR`.
    pub palette: Vec<u32>,
    pub indices: Vec<u8>,
}

/// Reduces the pixels to at most 256 colours with the default merge distance.
pub fn quantize(pixels: &[u32]) -> Quantized {
    quantize_with(pixels, MAX_PALETTE, MIN_ENTRY_DISTANCE_SQ)
}

/// Reduces the pixels to at most `max_colors` (<= 256) colours. Colours are taken by
/// popularity; a colour closer than `min_distance_sq` (squared RGBA distance) to one
/// already taken maps to its nearest entry instead of getting its own. With
/// `min_distance_sq == 0` a tile of at most `max_colors` colours is kept exactly.
pub fn quantize_with(pixels: &[u32], max_colors: usize, min_distance_sq: u32) -> Quantized {
    let max_colors = max_colors.clamp(1, MAX_PALETTE);
    // Histogram; consecutive equal pixels are common, so remember the last one.
    let mut counts: ColorMap<u32> = ColorMap::default();
    let mut last = None;
    let mut run = 0u32;
    for &p in pixels {
        if Some(p) == last {
            run += 1;
            continue;
        }
        if let Some(l) = last {
            *counts.entry(l).or_insert(0) += run;
        }
        last = Some(p);
        run = 1;
    }
    if let Some(l) = last {
        *counts.entry(l).or_insert(0) += run;
    }

    let mut by_count: Vec<(u32, u32)> = counts.into_iter().collect();
    // Most frequent first; ties by colour so the result is deterministic.
    by_count.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));

    let (palette, index_of) = choose_palette(&by_count, max_colors, min_distance_sq);
    let mut indices = Vec::with_capacity(pixels.len());
    let mut last = (u32::MAX, 0u8);
    for &p in pixels {
        if p != last.0 {
            last = (p, index_of.get(&p).copied().unwrap_or(0));
        }
        indices.push(last.1);
    }
    Quantized { palette, indices }
}

fn channels(c: u32) -> [i32; 4] {
    let b = c.to_le_bytes();
    [
        i32::from(b[0]),
        i32::from(b[1]),
        i32::from(b[2]),
        i32::from(b[3]),
    ]
}

fn distance_sq(a: u32, b: u32) -> u32 {
    let (a, b) = (channels(a), channels(b));
    let d: i32 = (0..4).map(|i| (a[i] - b[i]) * (a[i] - b[i])).sum();
    d as u32
}

/// Side of a cell of the RGB lookup grid, in levels: at least the merge distance, so
/// every palette entry within that distance of a colour is in the colour's cell or one
/// of its 26 neighbours.
const CELL_LEVELS: i32 = 16;
const CELLS_PER_AXIS: i32 = 256 / CELL_LEVELS;

fn cell_of(c: u32) -> [i32; 3] {
    let ch = channels(c);
    [
        ch[0] / CELL_LEVELS,
        ch[1] / CELL_LEVELS,
        ch[2] / CELL_LEVELS,
    ]
}

/// Popular colours first; a colour within `min_distance_sq` of an entry already taken
/// maps to the nearest such entry instead of getting its own (those are the
/// anti-aliased blends that cost PNG bytes and no visible quality). Once the palette is
/// full, the rest map to their nearest entry. Returns the palette and the index of
/// every colour.
fn choose_palette(
    by_count: &[(u32, u32)],
    max_colors: usize,
    min_distance_sq: u32,
) -> (Vec<u32>, ColorMap<u8>) {
    debug_assert!(min_distance_sq <= (CELL_LEVELS * CELL_LEVELS) as u32);
    let mut palette: Vec<u32> = Vec::with_capacity(max_colors);
    let mut index_of: ColorMap<u8> = ColorMap::default();
    index_of.reserve(by_count.len());
    let axis = CELLS_PER_AXIS as usize;
    let mut grid: Vec<Vec<u8>> = vec![Vec::new(); axis * axis * axis];
    for &(c, _) in by_count {
        if min_distance_sq > 0 {
            let [r, g, b] = cell_of(c);
            let mut best: Option<(u32, u8)> = None;
            for dr in -1..=1 {
                for dg in -1..=1 {
                    for db in -1..=1 {
                        let (cr, cg, cb) = (r + dr, g + dg, b + db);
                        if [cr, cg, cb]
                            .iter()
                            .any(|v| !(0..CELLS_PER_AXIS).contains(v))
                        {
                            continue;
                        }
                        let cell = ((cr * CELLS_PER_AXIS + cg) * CELLS_PER_AXIS + cb) as usize;
                        for &i in &grid[cell] {
                            let d = distance_sq(palette[usize::from(i)], c);
                            if d < min_distance_sq && best.map_or(true, |(bd, _)| d < bd) {
                                best = Some((d, i));
                            }
                        }
                    }
                }
            }
            if let Some((_, i)) = best {
                index_of.insert(c, i);
                continue;
            }
        }
        if palette.len() < max_colors {
            let i = palette.len() as u8;
            let [r, g, b] = cell_of(c);
            grid[((r * CELLS_PER_AXIS + g) * CELLS_PER_AXIS + b) as usize].push(i);
            palette.push(c);
            index_of.insert(c, i);
        } else {
            index_of.insert(c, nearest(&palette, c));
        }
    }
    (palette, index_of)
}

fn nearest(palette: &[u32], c: u32) -> u8 {
    let mut best = (u32::MAX, 0usize);
    for (i, &p) in palette.iter().enumerate() {
        let d = distance_sq(p, c);
        if d < best.0 {
            best = (d, i);
            if d == 0 {
                break;
            }
        }
    }
    best.1 as u8
}

fn encode_palette(pixels: &[u32], width: u32, height: u32) -> Result<Vec<u8>, png::EncodingError> {
    let q = quantize(pixels);
    let (depth, bits) = match q.palette.len() {
        0..=2 => (png::BitDepth::One, 1usize),
        3..=4 => (png::BitDepth::Two, 2),
        5..=16 => (png::BitDepth::Four, 4),
        _ => (png::BitDepth::Eight, 8),
    };
    let w = width as usize;
    let data: Vec<u8> = if bits == 8 {
        q.indices
    } else {
        let per_byte = 8 / bits;
        let row_bytes = w.div_ceil(per_byte);
        let mut packed = vec![0u8; row_bytes * height as usize];
        for (row, out) in q.indices.chunks(w).zip(packed.chunks_mut(row_bytes)) {
            for (x, &idx) in row.iter().enumerate() {
                let shift = 8 - bits * (x % per_byte + 1);
                out[x / per_byte] |= idx << shift;
            }
        }
        packed
    };
    let rgb: Vec<u8> = q
        .palette
        .iter()
        .flat_map(|c| {
            let b = c.to_le_bytes();
            [b[0], b[1], b[2]]
        })
        .collect();
    let alpha: Vec<u8> = q.palette.iter().map(|c| (c >> 24) as u8).collect();
    let trns_len = alpha.iter().rposition(|&a| a != 255).map_or(0, |i| i + 1);

    let mut out = Vec::with_capacity(data.len() / 4 + 1024);
    {
        let mut enc = encoder(&mut out, width, height);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(depth);
        enc.set_filter(png::Filter::NoFilter);
        enc.set_palette(rgb);
        if trns_len > 0 {
            enc.set_trns(alpha[..trns_len].to_vec());
        }
        let mut writer = enc.write_header()?;
        writer.write_image_data(&data)?;
        writer.finish()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rgba(r: u8, g: u8, b: u8, a: u8) -> u32 {
        u32::from_le_bytes([r, g, b, a])
    }

    pub(crate) fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let mut dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
        dec.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    #[test]
    fn distinct_colours_round_trip_exactly_in_every_bit_depth() {
        for n in [1usize, 2, 3, 5, 16, 17, 200, 256] {
            // Colours 16 levels apart on a 16x16x2 grid: never merged.
            let color = |k: usize| {
                let a = if k == 1 { 0 } else { 255 };
                rgba((k % 16 * 16) as u8, (k / 16 % 16 * 16) as u8, 0, a)
            };
            let pixels: Vec<u32> = (0..256 * 256).map(|i| color((i * 7 / 13) % n)).collect();
            let png_bytes = encode_png(&pixels, 256, 256, PngMode::Palette).unwrap();
            let (w, h, out) = decode(&png_bytes);
            assert_eq!((w, h), (256, 256));
            let back: Vec<u32> = out
                .chunks(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            assert_eq!(back, pixels, "{n} colours");
        }
    }

    #[test]
    fn many_colours_keep_the_popular_ones_exact_and_map_the_rest_to_the_nearest() {
        let bg = rgba(0xf2, 0xef, 0xe9, 255);
        let pixels: Vec<u32> = (0..256 * 256u32)
            .map(|i| {
                if i % 5 == 0 {
                    rgba((i % 251) as u8, (i / 256 % 253) as u8, 128, 255)
                } else {
                    bg
                }
            })
            .collect();
        let q = quantize(&pixels);
        assert!(q.palette.len() <= 256);
        assert_eq!(q.palette[0], bg);
        assert_eq!(quantize_with(&pixels, 256, 0).palette.len(), 256);
        // Every pixel gets an entry closer than the merge distance, or its nearest one.
        for (p, &i) in pixels.iter().zip(&q.indices).step_by(97) {
            let d = distance_sq(*p, q.palette[usize::from(i)]);
            let nearest = q.palette.iter().all(|&c| distance_sq(*p, c) >= d);
            assert!(d < MIN_ENTRY_DISTANCE_SQ || nearest, "{p:08x}");
        }
    }

    #[test]
    fn rgba_mode_round_trips_losslessly() {
        let pixels: Vec<u32> = (0..64 * 64u32)
            .map(|i| rgba(i as u8, (i >> 4) as u8, 7, 255))
            .collect();
        let (_, _, out) = decode(&encode_png(&pixels, 64, 64, PngMode::Rgba).unwrap());
        let back: Vec<u32> = out
            .chunks(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(back, pixels);
    }

    #[test]
    fn png_modes_parse_from_config_words() {
        assert_eq!("palette".parse::<PngMode>(), Ok(PngMode::Palette));
        assert_eq!("rgba".parse::<PngMode>(), Ok(PngMode::Rgba));
        assert!("jpeg".parse::<PngMode>().is_err());
    }
}
