//! The `.meta` file format of mod_tile/renderd, byte for byte (see METATILE.md).
//!
//! ```text
//! 0..4     magic "META" ("METZ": every blob gzip'd; read, never written)
//! 4..8     count = 64                     (all integers: i32 little-endian)
//! 8..20    x, y, z of the metatile origin
//! 20..532  64 x {offset, size}, x-major: entry = (x & 7) * 8 + (y & 7)
//! 532..    the blobs, back to back in index order
//! ```
//!
//! This module owns encoding a whole metatile and validating a header; it does no I/O.
//! The disk layer reads the 532-byte header, validates it here, then reads one blob.

use crate::tile::{MetatileCoord, METATILE, TILES_PER_METATILE};
use std::io::Read;
use thiserror::Error;

/// The magic of an uncompressed metatile, the only kind we write.
pub const MAGIC: [u8; 4] = *b"META";
/// The magic of a metatile whose blobs are each gzip-compressed.
pub const MAGIC_COMPRESSED: [u8; 4] = *b"METZ";
/// Bytes before the index: magic, count, x, y, z.
const PREAMBLE_LEN: usize = 20;
/// Bytes of one index entry: offset and size.
const ENTRY_LEN: usize = 8;
/// Length of the fixed header (preamble + 64 index entries); the first blob starts here.
pub const HEADER_LEN: usize = PREAMBLE_LEN + TILES_PER_METATILE * ENTRY_LEN;
/// Largest tile mod_tile accepts (its `MAX_SIZE`); a bigger blob means a corrupt file.
pub const MAX_TILE_BYTES: usize = 1024 * 1024;
/// Largest tile accepted after gunzipping a `METZ` blob: a bound against gzip bombs.
pub const MAX_DECOMPRESSED_TILE_BYTES: usize = 4 * MAX_TILE_BYTES;

/// Why bytes are not a valid metatile, or a metatile cannot be encoded. Each way a file
/// can be broken has its own variant, so logs say what was wrong.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FormatError {
    #[error("file is {len} bytes, shorter than the {HEADER_LEN}-byte header")]
    ShortHeader { len: u64 },
    #[error("bad magic {found:?}, expected \"META\" or \"METZ\"")]
    BadMagic { found: [u8; 4] },
    #[error("tile count is {0}, expected 64")]
    BadCount(i32),
    #[error("header names metatile {z}/{x}/{y}, expected {expected}")]
    WrongCoordinates {
        expected: MetatileCoord,
        z: i32,
        x: i32,
        y: i32,
    },
    #[error("index entry {entry} has a negative offset or size ({offset}, {size})")]
    NegativeEntry {
        entry: usize,
        offset: i32,
        size: i32,
    },
    #[error("tile {entry} is {size} bytes, above the {MAX_TILE_BYTES}-byte limit")]
    TileTooLarge { entry: usize, size: u64 },
    #[error("index entry {entry} points into the header (offset {offset})")]
    EntryInHeader { entry: usize, offset: u32 },
    #[error(
        "tile {entry} ends at byte {end}, past the end of the {file_len}-byte file (truncated)"
    )]
    Truncated {
        entry: usize,
        end: u64,
        file_len: u64,
    },
    #[error("tile {entry} is not valid gzip: {message}")]
    BadGzip { entry: usize, message: String },
    #[error("a metatile holds {TILES_PER_METATILE} tiles, got {0}")]
    WrongTileCount(usize),
    #[error("tile {entry} lies outside the world at zoom {z} but is not empty")]
    TileOutsideWorld { entry: usize, z: u8 },
    #[error("tile {entry} is not a PNG (no PNG signature and IHDR chunk)")]
    NotPng { entry: usize },
    #[error("tile {entry} is a {width}x{height} PNG, expected {expected}x{expected}")]
    WrongTileSize {
        entry: usize,
        width: u32,
        height: u32,
        expected: u32,
    },
    #[error("tile {entry} is a PNG cut short (it does not end with IEND)")]
    PngCutShort { entry: usize },
    #[error("not a regular file")]
    NotRegularFile,
}

/// One index entry: where a blob starts (from the start of the file) and its length.
/// Only entries with `size > 0` hold a tile; validated entries fit in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexEntry {
    pub offset: u32,
    pub size: u32,
}

/// A parsed 532-byte header. [`MetatileHeader::parse`] checks magic and count only;
/// [`MetatileHeader::validate`] adds the coordinates and the bounds of every entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetatileHeader {
    /// `METZ`: blobs are gzip'd.
    pub compressed: bool,
    pub x: i32,
    pub y: i32,
    pub z: i32,
    pub entries: [IndexEntry; TILES_PER_METATILE],
}

fn le_i32(bytes: &[u8], at: usize) -> i32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    i32::from_le_bytes(word)
}

impl MetatileHeader {
    /// Parses magic, count, coordinates and the index from the first bytes of a file.
    /// Entries must be non-negative and at most [`MAX_TILE_BYTES`] long.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        if bytes.len() < HEADER_LEN {
            return Err(FormatError::ShortHeader {
                len: bytes.len() as u64,
            });
        }
        let mut magic = [0u8; 4];
        magic.copy_from_slice(&bytes[0..4]);
        let compressed = match magic {
            MAGIC => false,
            MAGIC_COMPRESSED => true,
            found => return Err(FormatError::BadMagic { found }),
        };
        let count = le_i32(bytes, 4);
        if count != TILES_PER_METATILE as i32 {
            return Err(FormatError::BadCount(count));
        }
        let mut entries = [IndexEntry::default(); TILES_PER_METATILE];
        for (entry, slot) in entries.iter_mut().enumerate() {
            let at = PREAMBLE_LEN + entry * ENTRY_LEN;
            let (offset, size) = (le_i32(bytes, at), le_i32(bytes, at + 4));
            if offset < 0 || size < 0 {
                return Err(FormatError::NegativeEntry {
                    entry,
                    offset,
                    size,
                });
            }
            if size as usize > MAX_TILE_BYTES {
                return Err(FormatError::TileTooLarge {
                    entry,
                    size: size as u64,
                });
            }
            *slot = IndexEntry {
                offset: offset as u32,
                size: size as u32,
            };
        }
        Ok(Self {
            compressed,
            x: le_i32(bytes, 8),
            y: le_i32(bytes, 12),
            z: le_i32(bytes, 16),
            entries,
        })
    }

    /// The header must name the metatile its path names.
    pub fn check_coordinates(&self, expected: MetatileCoord) -> Result<(), FormatError> {
        let same = i64::from(self.x) == i64::from(expected.x)
            && i64::from(self.y) == i64::from(expected.y)
            && i64::from(self.z) == i64::from(expected.z);
        if same {
            Ok(())
        } else {
            Err(FormatError::WrongCoordinates {
                expected,
                z: self.z,
                x: self.x,
                y: self.y,
            })
        }
    }

    /// Every non-empty entry must lie after the header and inside a file of `file_len`
    /// bytes. Empty entries mean "no tile" whatever their offset.
    pub fn check_entries(&self, file_len: u64) -> Result<(), FormatError> {
        for (entry, e) in self.entries.iter().enumerate() {
            if e.size == 0 {
                continue;
            }
            if (e.offset as usize) < HEADER_LEN {
                return Err(FormatError::EntryInHeader {
                    entry,
                    offset: e.offset,
                });
            }
            let end = u64::from(e.offset) + u64::from(e.size);
            if end > file_len {
                return Err(FormatError::Truncated {
                    entry,
                    end,
                    file_len,
                });
            }
        }
        Ok(())
    }

    /// Parses and fully validates a header read from a file of `file_len` bytes, that
    /// is expected to hold `expected` (when the caller knows it from the path).
    pub fn validate(
        bytes: &[u8],
        file_len: u64,
        expected: Option<MetatileCoord>,
    ) -> Result<Self, FormatError> {
        if file_len < HEADER_LEN as u64 {
            return Err(FormatError::ShortHeader { len: file_len });
        }
        let header = Self::parse(bytes)?;
        if let Some(expected) = expected {
            header.check_coordinates(expected)?;
        }
        header.check_entries(file_len)?;
        Ok(header)
    }

    /// The metatile the header names, if it names a valid one.
    pub fn metatile(&self) -> Option<MetatileCoord> {
        let z = u32::try_from(self.z).ok()?;
        let x = u64::try_from(self.x).ok()?;
        let y = u64::try_from(self.y).ok()?;
        MetatileCoord::try_new(z, x, y).ok()
    }

    /// True when blobs follow each other from byte 532 in index order with no gap,
    /// as renderd and our writer lay them out (other layouts are still readable).
    pub fn is_contiguous(&self, file_len: u64) -> bool {
        let mut next = HEADER_LEN as u64;
        for e in &self.entries {
            if e.size > 0 && u64::from(e.offset) != next {
                return false;
            }
            next += u64::from(e.size);
        }
        next == file_len
    }
}

/// Whether index entry `entry` names a tile that exists at zoom `z` (below zoom 3 the
/// world is smaller than the 8x8 block).
pub fn entry_in_world(z: u8, entry: usize) -> bool {
    let side = METATILE as usize;
    let width = crate::tile::tiles_per_axis(z).min(METATILE) as usize;
    entry < TILES_PER_METATILE && entry / side < width && entry % side < width
}

/// Encodes a whole metatile: `tiles` holds the 64 blobs in index order (x-major), an
/// empty blob meaning "no tile". Tiles outside the world (zoom < 3) must be empty.
pub fn encode_metatile<T: AsRef<[u8]>>(
    meta: MetatileCoord,
    tiles: &[T],
) -> Result<Vec<u8>, FormatError> {
    if tiles.len() != TILES_PER_METATILE {
        return Err(FormatError::WrongTileCount(tiles.len()));
    }
    let mut total = HEADER_LEN;
    for (entry, tile) in tiles.iter().enumerate() {
        let size = tile.as_ref().len();
        if size > MAX_TILE_BYTES {
            return Err(FormatError::TileTooLarge {
                entry,
                size: size as u64,
            });
        }
        if size > 0 && !entry_in_world(meta.z, entry) {
            return Err(FormatError::TileOutsideWorld { entry, z: meta.z });
        }
        total += size;
    }
    // 64 tiles of at most 1 MiB each plus the header: always below i32::MAX.
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(TILES_PER_METATILE as i32).to_le_bytes());
    for v in [meta.x as i32, meta.y as i32, i32::from(meta.z)] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let mut offset = HEADER_LEN as i32;
    for tile in tiles {
        let size = tile.as_ref().len() as i32;
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        offset += size;
    }
    for tile in tiles {
        out.extend_from_slice(tile.as_ref());
    }
    Ok(out)
}

/// Turns a stored blob into tile bytes: as is for `META`, gunzipped for `METZ`.
pub fn decode_blob(compressed: bool, entry: usize, raw: Vec<u8>) -> Result<Vec<u8>, FormatError> {
    if !compressed || raw.is_empty() {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 2);
    let limit = MAX_DECOMPRESSED_TILE_BYTES as u64 + 1;
    flate2::read::GzDecoder::new(raw.as_slice())
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| FormatError::BadGzip {
            entry,
            message: e.to_string(),
        })?;
    if out.len() > MAX_DECOMPRESSED_TILE_BYTES {
        return Err(FormatError::TileTooLarge {
            entry,
            size: out.len() as u64,
        });
    }
    Ok(out)
}

/// The 8 bytes every PNG starts with.
pub const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
/// The IHDR chunk that must follow: length 13, type.
const PNG_IHDR: [u8; 8] = [0, 0, 0, 13, b'I', b'H', b'D', b'R'];
/// The IEND chunk every PNG ends with: length 0, type, CRC.
const PNG_IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xae, 0x42, 0x60, 0x82];

/// Checks that tile bytes are a whole PNG of `size` x `size` pixels: the signature, an
/// IHDR chunk with that width and height, and IEND at the very end (a blob cut short or
/// overwritten fails here). Looks at 36 bytes; decodes nothing.
pub fn check_png_tile(entry: usize, bytes: &[u8], size: u32) -> Result<(), FormatError> {
    let header_ok = bytes.len() >= 24 + PNG_IEND.len()
        && bytes[..8] == PNG_SIGNATURE
        && bytes[8..16] == PNG_IHDR;
    if !header_ok {
        return Err(FormatError::NotPng { entry });
    }
    let be_u32 =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let (width, height) = (be_u32(16), be_u32(20));
    if (width, height) != (size, size) {
        return Err(FormatError::WrongTileSize {
            entry,
            width,
            height,
            expected: size,
        });
    }
    if !bytes.ends_with(&PNG_IEND) {
        return Err(FormatError::PngCutShort { entry });
    }
    Ok(())
}

/// A whole metatile read from memory: for inspection, tests and tools, not for serving
/// (serving reads one blob).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedMetatile {
    pub header: MetatileHeader,
    /// 64 tile blobs in index order (decompressed for `METZ`); empty = no tile.
    pub tiles: Vec<Vec<u8>>,
}

/// Validates and decodes a whole `.meta` file held in memory.
pub fn decode_metatile(
    bytes: &[u8],
    expected: Option<MetatileCoord>,
) -> Result<DecodedMetatile, FormatError> {
    let header = MetatileHeader::validate(bytes, bytes.len() as u64, expected)?;
    let mut tiles = Vec::with_capacity(TILES_PER_METATILE);
    for (entry, e) in header.entries.iter().enumerate() {
        if e.size == 0 {
            tiles.push(Vec::new());
            continue;
        }
        let start = e.offset as usize;
        let raw = bytes[start..start + e.size as usize].to_vec();
        tiles.push(decode_blob(header.compressed, entry, raw)?);
    }
    Ok(DecodedMetatile { header, tiles })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tile::TileCoord;
    use proptest::prelude::*;

    fn meta(z: u32, x: u64, y: u64) -> MetatileCoord {
        MetatileCoord::try_new(z, x, y).unwrap()
    }

    fn blobs(sizes: impl Fn(usize) -> usize) -> Vec<Vec<u8>> {
        (0..64).map(|i| vec![i as u8; sizes(i)]).collect()
    }

    /// A grey `size` x `size` PNG.
    pub(crate) fn test_png(size: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, size, size);
        encoder.set_color(png::ColorType::Grayscale);
        let mut writer = encoder.write_header().unwrap();
        writer
            .write_image_data(&vec![128u8; (size * size) as usize])
            .unwrap();
        writer.finish().unwrap();
        out
    }

    fn put_i32(bytes: &mut [u8], at: usize, v: i32) {
        bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn the_worked_example_of_metatile_md_is_reproduced_byte_for_byte() {
        let m = meta(12, 2344, 1232);
        let bytes = encode_metatile(m, &blobs(|_| 103)).unwrap();
        assert_eq!(
            hex::encode(&bytes[0..20]),
            ["4d455441", "40000000", "28090000", "d0040000", "0c000000"].concat()
        );
        let tile = TileCoord::try_new(12, 2345, 1234).unwrap();
        let entry = tile.index_in_metatile();
        assert_eq!(entry, 10);
        let at = 20 + entry * 8;
        assert_eq!(at, 100);
        assert_eq!(le_i32(&bytes, at), 1562);
        assert_eq!(le_i32(&bytes, at + 4), 103);
        assert_eq!(le_i32(&bytes, 20 + 63 * 8), 7021);
        assert_eq!(le_i32(&bytes, 20 + 63 * 8 + 4), 103);
        assert_eq!(bytes.len(), 7124);
        let decoded = decode_metatile(&bytes, Some(m)).unwrap();
        assert!(decoded.header.is_contiguous(bytes.len() as u64));
    }

    #[test]
    fn a_zoom_0_metatile_writes_all_64_entries_with_running_offsets() {
        let mut tiles = vec![Vec::new(); 64];
        tiles[0] = vec![7u8; 50];
        let bytes = encode_metatile(meta(0, 0, 0), &tiles).unwrap();
        assert_eq!((le_i32(&bytes, 20), le_i32(&bytes, 24)), (532, 50));
        for entry in 1..64 {
            let at = 20 + entry * 8;
            assert_eq!((le_i32(&bytes, at), le_i32(&bytes, at + 4)), (582, 0));
        }
        assert_eq!(bytes.len(), 582);
    }

    #[test]
    fn tiles_outside_the_world_cannot_be_written() {
        let mut tiles = vec![Vec::new(); 64];
        tiles[9] = vec![1];
        assert!(encode_metatile(meta(1, 0, 0), &tiles).is_ok());
        tiles[2] = vec![1];
        assert_eq!(
            encode_metatile(meta(1, 0, 0), &tiles),
            Err(FormatError::TileOutsideWorld { entry: 2, z: 1 })
        );
        assert_eq!(
            encode_metatile(meta(1, 0, 0), &tiles[..10]),
            Err(FormatError::WrongTileCount(10))
        );
        let mut big = vec![Vec::new(); 64];
        big[0] = vec![0; MAX_TILE_BYTES + 1];
        assert!(matches!(
            encode_metatile(meta(5, 0, 0), &big),
            Err(FormatError::TileTooLarge { entry: 0, .. })
        ));
    }

    #[test]
    fn only_whole_pngs_of_the_expected_size_pass_the_tile_check() {
        let png = test_png(256);
        assert_eq!(check_png_tile(3, &png, 256), Ok(()));
        assert_eq!(
            check_png_tile(3, &png, 512),
            Err(FormatError::WrongTileSize {
                entry: 3,
                width: 256,
                height: 256,
                expected: 512
            })
        );
        assert_eq!(
            check_png_tile(3, &png[..png.len() - 5], 256),
            Err(FormatError::PngCutShort { entry: 3 })
        );
        let mut garbage = png.clone();
        garbage[1] = b'X';
        assert_eq!(
            check_png_tile(3, &garbage, 256),
            Err(FormatError::NotPng { entry: 3 })
        );
        assert_eq!(
            check_png_tile(3, b"", 256),
            Err(FormatError::NotPng { entry: 3 })
        );
        assert_eq!(
            check_png_tile(3, &png[..20], 256),
            Err(FormatError::NotPng { entry: 3 })
        );
    }

    #[test]
    fn broken_files_are_refused_with_distinct_errors() {
        let m = meta(12, 2344, 1232);
        let good = encode_metatile(m, &blobs(|_| 103)).unwrap();

        let truncated = &good[..good.len() - 1];
        assert_eq!(
            decode_metatile(truncated, Some(m)).unwrap_err(),
            FormatError::Truncated {
                entry: 63,
                end: 7124,
                file_len: 7123
            }
        );
        assert_eq!(
            decode_metatile(&good[..531], Some(m)).unwrap_err(),
            FormatError::ShortHeader { len: 531 }
        );

        let mut magic = good.clone();
        magic[0..4].copy_from_slice(b"MEAT");
        assert_eq!(
            decode_metatile(&magic, Some(m)).unwrap_err(),
            FormatError::BadMagic { found: *b"MEAT" }
        );

        let mut count = good.clone();
        put_i32(&mut count, 4, 16);
        assert_eq!(
            decode_metatile(&count, Some(m)).unwrap_err(),
            FormatError::BadCount(16)
        );

        let mut oversized = good.clone();
        put_i32(&mut oversized, 20 + 5 * 8 + 4, MAX_TILE_BYTES as i32 + 1);
        assert_eq!(
            decode_metatile(&oversized, Some(m)).unwrap_err(),
            FormatError::TileTooLarge {
                entry: 5,
                size: MAX_TILE_BYTES as u64 + 1
            }
        );

        let mut negative = good.clone();
        put_i32(&mut negative, 20 + 3 * 8, -1);
        assert!(matches!(
            decode_metatile(&negative, Some(m)).unwrap_err(),
            FormatError::NegativeEntry { entry: 3, .. }
        ));

        let mut in_header = good.clone();
        put_i32(&mut in_header, 20 + 7 * 8, 100);
        assert_eq!(
            decode_metatile(&in_header, Some(m)).unwrap_err(),
            FormatError::EntryInHeader {
                entry: 7,
                offset: 100
            }
        );

        assert!(matches!(
            decode_metatile(&good, Some(meta(12, 2344, 1240))).unwrap_err(),
            FormatError::WrongCoordinates {
                x: 2344,
                y: 1232,
                z: 12,
                ..
            }
        ));
    }

    #[test]
    fn compressed_metatiles_are_read_and_gunzipped() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let m = meta(3, 0, 0);
        let plain = blobs(|i| i * 3);
        let gz: Vec<Vec<u8>> = plain
            .iter()
            .map(|t| {
                if t.is_empty() {
                    return Vec::new();
                }
                let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(t).unwrap();
                e.finish().unwrap()
            })
            .collect();
        let mut bytes = encode_metatile(m, &gz).unwrap();
        bytes[0..4].copy_from_slice(&MAGIC_COMPRESSED);
        let decoded = decode_metatile(&bytes, Some(m)).unwrap();
        assert!(decoded.header.compressed);
        assert_eq!(decoded.tiles, plain);

        let mut bad = encode_metatile(m, &blobs(|_| 10)).unwrap();
        bad[0..4].copy_from_slice(&MAGIC_COMPRESSED);
        assert!(matches!(
            decode_metatile(&bad, Some(m)).unwrap_err(),
            FormatError::BadGzip { entry: 0, .. }
        ));
    }

    fn any_metatile() -> impl Strategy<Value = (MetatileCoord, Vec<Vec<u8>>)> {
        (0u8..=20, any::<u32>(), any::<u32>()).prop_flat_map(|(z, x, y)| {
            let size = crate::tile::tiles_per_axis(z);
            let m = TileCoord::try_new(u32::from(z), u64::from(x % size), u64::from(y % size))
                .unwrap()
                .metatile();
            let tiles = proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..300),
                TILES_PER_METATILE,
            )
            .prop_map(move |mut tiles| {
                for (entry, t) in tiles.iter_mut().enumerate() {
                    if !entry_in_world(m.z, entry) {
                        t.clear();
                    }
                }
                tiles
            });
            (Just(m), tiles)
        })
    }

    proptest! {
        #[test]
        fn any_metatile_round_trips_through_encode_and_decode((m, tiles) in any_metatile()) {
            let bytes = encode_metatile(m, &tiles).unwrap();
            let decoded = decode_metatile(&bytes, Some(m)).unwrap();
            prop_assert_eq!(decoded.header.metatile(), Some(m));
            prop_assert!(decoded.header.is_contiguous(bytes.len() as u64));
            prop_assert_eq!(decoded.tiles, tiles);
        }

        #[test]
        fn the_reader_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = decode_metatile(&bytes, None);
            let _ = decode_metatile(&bytes, Some(meta(0, 0, 0)));
        }

        #[test]
        fn the_reader_never_panics_on_a_damaged_valid_file(
            (m, tiles) in any_metatile(),
            damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
            magic_z in any::<bool>(),
        ) {
            let mut bytes = encode_metatile(m, &tiles).unwrap();
            for (at, v) in damage {
                let i = at.index(bytes.len());
                bytes[i] = v;
            }
            if magic_z {
                bytes[0..4].copy_from_slice(&MAGIC_COMPRESSED);
            }
            let len = cut.index(bytes.len() + 1);
            if let Ok(d) = decode_metatile(&bytes[..len], Some(m)) {
                prop_assert_eq!(d.tiles.len(), 64);
            }
        }
    }
}
