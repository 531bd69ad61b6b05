//! Tile and metatile coordinates and Web Mercator math.
//!
//! Pure functions and value types, no I/O: everything above (cache paths, SQL bounding
//! boxes, expiry ranges, HTTP parsing) builds on these. A [`TileCoord`] or
//! [`MetatileCoord`] can only be constructed valid (zoom within [`MAX_ZOOM`], x and y
//! inside the `2^z` grid), so code that holds one never re-checks it.

mod mercator;
mod style_name;
mod zoom;

pub use mercator::tile_span;
pub use mercator::{Bbox, LonLat, TileRange, EARTH_HALF_CIRCUMFERENCE};
pub use style_name::{StyleName, StyleNameError};
pub use zoom::{ZoomRange, ZoomRangeError};

use thiserror::Error;

/// Tiles per metatile side, fixed by mod_tile's format (8 x 8 = 64 tiles per file).
pub const METATILE: u32 = 8;
/// Tiles per metatile, the `count` field of a `.meta` file.
pub const TILES_PER_METATILE: usize = (METATILE * METATILE) as usize;
/// Highest zoom the mod_tile path scheme can address (20 bits per axis in five hash levels).
pub const MAX_ZOOM: u8 = 20;

/// Why a coordinate was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TileError {
    #[error("zoom {0} is above the maximum of {MAX_ZOOM}")]
    ZoomTooHigh(u32),
    #[error("tile {x}/{y} is outside the {size}x{size} grid of zoom {z}")]
    OutOfRange { z: u8, x: u64, y: u64, size: u64 },
    #[error("metatile origin {x}/{y} at zoom {z} is not a multiple of {METATILE}")]
    NotMetatileOrigin { z: u8, x: u32, y: u32 },
}

/// Number of tiles along one axis at zoom `z`.
pub fn tiles_per_axis(z: u8) -> u32 {
    1u32 << z
}

/// One 256 px (or 512 px at 2x) tile of the XYZ grid, y down from the north.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileCoord {
    pub z: u8,
    pub x: u32,
    pub y: u32,
}

impl TileCoord {
    /// Validates zoom and grid bounds; accepts wide integers so callers need not
    /// pre-check numbers that came from a URL or an expiry list.
    pub fn try_new(z: u32, x: u64, y: u64) -> Result<Self, TileError> {
        if z > u32::from(MAX_ZOOM) {
            return Err(TileError::ZoomTooHigh(z));
        }
        let z = z as u8;
        let size = u64::from(tiles_per_axis(z));
        if x >= size || y >= size {
            return Err(TileError::OutOfRange { z, x, y, size });
        }
        Ok(Self {
            z,
            x: x as u32,
            y: y as u32,
        })
    }

    /// The metatile that contains this tile.
    pub fn metatile(self) -> MetatileCoord {
        MetatileCoord {
            z: self.z,
            x: self.x & !(METATILE - 1),
            y: self.y & !(METATILE - 1),
        }
    }

    /// Position of this tile in its metatile's index: x-major, `(x & 7) * 8 + (y & 7)`.
    pub fn index_in_metatile(self) -> usize {
        ((self.x & (METATILE - 1)) * METATILE + (self.y & (METATILE - 1))) as usize
    }

    /// The tile's extent in EPSG:3857 metres.
    pub fn bbox(self) -> Bbox {
        Bbox::of_tiles(self.z, self.x, self.y, 1)
    }

    /// The tile at zoom `z` (<= self.z) that contains this one.
    pub fn ancestor(self, z: u8) -> TileCoord {
        debug_assert!(z <= self.z);
        let shift = self.z - z;
        TileCoord {
            z,
            x: self.x >> shift,
            y: self.y >> shift,
        }
    }
}

impl std::fmt::Display for TileCoord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.z, self.x, self.y)
    }
}

/// An 8x8 block of tiles stored in one `.meta` file, named by its top-left tile.
///
/// At zooms below 3 the world is smaller than 8x8 tiles; the metatile is then the whole
/// world and only [`MetatileCoord::width_in_tiles`] tiles per axis exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetatileCoord {
    pub z: u8,
    pub x: u32,
    pub y: u32,
}

impl MetatileCoord {
    /// Validates that (x, y) is a metatile origin inside the grid of zoom `z`.
    pub fn try_new(z: u32, x: u64, y: u64) -> Result<Self, TileError> {
        let tile = TileCoord::try_new(z, x, y)?;
        if tile.x % METATILE != 0 || tile.y % METATILE != 0 {
            return Err(TileError::NotMetatileOrigin {
                z: tile.z,
                x: tile.x,
                y: tile.y,
            });
        }
        Ok(tile.metatile())
    }

    /// Tiles per axis that exist in this metatile: 8, or `2^z` below zoom 3.
    pub fn width_in_tiles(self) -> u32 {
        tiles_per_axis(self.z).min(METATILE)
    }

    /// The tiles of this metatile that exist, in index order (x-major).
    pub fn tiles(self) -> impl Iterator<Item = TileCoord> {
        let w = self.width_in_tiles();
        (0..w).flat_map(move |dx| {
            (0..w).map(move |dy| TileCoord {
                z: self.z,
                x: self.x + dx,
                y: self.y + dy,
            })
        })
    }

    /// The metatile's extent in EPSG:3857 metres (without any render buffer).
    pub fn bbox(self) -> Bbox {
        Bbox::of_tiles(self.z, self.x, self.y, self.width_in_tiles())
    }

    /// The metatile at zoom `z` (<= self.z) that contains this one.
    pub fn ancestor(self, z: u8) -> MetatileCoord {
        TileCoord {
            z: self.z,
            x: self.x,
            y: self.y,
        }
        .ancestor(z)
        .metatile()
    }
}

impl std::fmt::Display for MetatileCoord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{} (meta)", self.z, self.x, self.y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tile_index_is_x_major_as_in_mod_tile() {
        let t = TileCoord::try_new(12, 2345, 1234).unwrap();
        assert_eq!(
            t.metatile(),
            MetatileCoord {
                z: 12,
                x: 2344,
                y: 1232
            }
        );
        assert_eq!(t.index_in_metatile(), 10);
        let t = TileCoord::try_new(18, 131071, 87381).unwrap();
        assert_eq!(t.index_in_metatile(), 61);
        let t = TileCoord::try_new(1, 1, 1).unwrap();
        assert_eq!(t.index_in_metatile(), 9);
    }

    #[test]
    fn coordinates_outside_the_grid_are_refused() {
        assert_eq!(
            TileCoord::try_new(21, 0, 0),
            Err(TileError::ZoomTooHigh(21))
        );
        assert!(TileCoord::try_new(0, 1, 0).is_err());
        assert!(TileCoord::try_new(3, 0, 8).is_err());
        assert!(TileCoord::try_new(20, u64::MAX, 0).is_err());
        assert!(MetatileCoord::try_new(5, 9, 0).is_err());
    }

    #[test]
    fn low_zoom_metatiles_hold_only_the_tiles_of_the_world() {
        let z0 = TileCoord::try_new(0, 0, 0).unwrap().metatile();
        assert_eq!(z0.tiles().count(), 1);
        let z2 = TileCoord::try_new(2, 3, 1).unwrap().metatile();
        assert_eq!(z2.tiles().count(), 16);
        let z3 = TileCoord::try_new(3, 7, 7).unwrap().metatile();
        assert_eq!(z3.tiles().count(), 64);
    }

    proptest! {
        #[test]
        fn every_tile_of_a_metatile_maps_back_to_it(z in 0u8..=20, x in any::<u32>(), y in any::<u32>()) {
            let size = tiles_per_axis(z);
            let tile = TileCoord::try_new(u32::from(z), u64::from(x % size), u64::from(y % size)).unwrap();
            let meta = tile.metatile();
            prop_assert!(meta.tiles().any(|t| t == tile));
            for (i, t) in meta.tiles().enumerate() {
                prop_assert_eq!(t.metatile(), meta);
                if meta.width_in_tiles() == METATILE {
                    prop_assert_eq!(t.index_in_metatile(), i);
                }
            }
            prop_assert!(meta.bbox().contains_bbox(&tile.bbox()));
        }
    }
}
