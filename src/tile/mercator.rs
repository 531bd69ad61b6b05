//! Web Mercator (EPSG:3857): lon/lat <-> metres, tile extents, bbox -> tile ranges.

use super::{tiles_per_axis, MetatileCoord, TileCoord, METATILE};

/// Half the equator's length in EPSG:3857 metres: the world spans
/// `[-EARTH_HALF_CIRCUMFERENCE, EARTH_HALF_CIRCUMFERENCE]` on both axes.
pub const EARTH_HALF_CIRCUMFERENCE: f64 = 20_037_508.342_789_244;

/// The latitude at which Web Mercator's square world ends.
const MAX_LATITUDE: f64 = 85.051_128_779_806_59;

/// A longitude/latitude pair in degrees (EPSG:4326).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LonLat {
    pub lon: f64,
    pub lat: f64,
}

impl LonLat {
    /// Projects to EPSG:3857 metres, clamping the latitude to Web Mercator's range.
    pub fn to_mercator(self) -> (f64, f64) {
        let lat = self.lat.clamp(-MAX_LATITUDE, MAX_LATITUDE);
        let x = self.lon.clamp(-180.0, 180.0) * EARTH_HALF_CIRCUMFERENCE / 180.0;
        let y = (std::f64::consts::FRAC_PI_4 + lat.to_radians() / 2.0)
            .tan()
            .ln()
            * EARTH_HALF_CIRCUMFERENCE
            / std::f64::consts::PI;
        (x, y)
    }

    /// Unprojects EPSG:3857 metres to degrees.
    pub fn from_mercator(x: f64, y: f64) -> Self {
        let lon = x / EARTH_HALF_CIRCUMFERENCE * 180.0;
        let lat = (2.0
            * (y / EARTH_HALF_CIRCUMFERENCE * std::f64::consts::PI)
                .exp()
                .atan()
            - std::f64::consts::FRAC_PI_2)
            .to_degrees();
        Self { lon, lat }
    }
}

/// An axis-aligned box in EPSG:3857 metres.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bbox {
    pub min_x: f64,
    pub min_y: f64,
    pub max_x: f64,
    pub max_y: f64,
}

impl Bbox {
    /// The whole Web Mercator world.
    pub const WORLD: Bbox = Bbox {
        min_x: -EARTH_HALF_CIRCUMFERENCE,
        min_y: -EARTH_HALF_CIRCUMFERENCE,
        max_x: EARTH_HALF_CIRCUMFERENCE,
        max_y: EARTH_HALF_CIRCUMFERENCE,
    };

    /// The extent of the `n x n` tiles whose top-left tile is (x, y) at zoom z.
    pub(crate) fn of_tiles(z: u8, x: u32, y: u32, n: u32) -> Bbox {
        let span = tile_span(z);
        let min_x = -EARTH_HALF_CIRCUMFERENCE + f64::from(x) * span;
        let max_y = EARTH_HALF_CIRCUMFERENCE - f64::from(y) * span;
        Bbox {
            min_x,
            min_y: max_y - f64::from(n) * span,
            max_x: min_x + f64::from(n) * span,
            max_y,
        }
    }

    /// Projects a lon/lat box (degrees) to metres.
    pub fn from_lonlat(min: LonLat, max: LonLat) -> Bbox {
        let (min_x, min_y) = min.to_mercator();
        let (max_x, max_y) = max.to_mercator();
        Bbox {
            min_x,
            min_y,
            max_x,
            max_y,
        }
    }

    /// This box grown by `d` metres on every side.
    pub fn buffered(&self, d: f64) -> Bbox {
        Bbox {
            min_x: self.min_x - d,
            min_y: self.min_y - d,
            max_x: self.max_x + d,
            max_y: self.max_y + d,
        }
    }

    pub fn width(&self) -> f64 {
        self.max_x - self.min_x
    }

    pub fn height(&self) -> f64 {
        self.max_y - self.min_y
    }

    pub fn contains_bbox(&self, other: &Bbox) -> bool {
        let eps = 1e-6;
        other.min_x >= self.min_x - eps
            && other.max_x <= self.max_x + eps
            && other.min_y >= self.min_y - eps
            && other.max_y <= self.max_y + eps
    }

    pub fn intersects(&self, other: &Bbox) -> bool {
        self.min_x < other.max_x
            && other.min_x < self.max_x
            && self.min_y < other.max_y
            && other.min_y < self.max_y
    }

    /// The smallest box holding both.
    pub fn union(&self, other: &Bbox) -> Bbox {
        Bbox {
            min_x: self.min_x.min(other.min_x),
            min_y: self.min_y.min(other.min_y),
            max_x: self.max_x.max(other.max_x),
            max_y: self.max_y.max(other.max_y),
        }
    }

    /// The (lon, lat) corners, south-west and north-east.
    pub fn to_lonlat(&self) -> (LonLat, LonLat) {
        (
            LonLat::from_mercator(self.min_x, self.min_y),
            LonLat::from_mercator(self.max_x, self.max_y),
        )
    }

    /// The tiles of zoom `z` that this box touches (a box on a tile edge touches both).
    pub fn tile_range(&self, z: u8) -> TileRange {
        let n = tiles_per_axis(z);
        let span = tile_span(z);
        let col = |m: f64| ((m + EARTH_HALF_CIRCUMFERENCE) / span).floor();
        let row = |m: f64| ((EARTH_HALF_CIRCUMFERENCE - m) / span).floor();
        let clamp = |v: f64| v.clamp(0.0, f64::from(n - 1)) as u32;
        TileRange {
            z,
            min_x: clamp(col(self.min_x)),
            max_x: clamp(col(self.max_x)),
            min_y: clamp(row(self.max_y)),
            max_y: clamp(row(self.min_y)),
        }
    }
}

/// Width of one tile at zoom `z`, in metres.
pub fn tile_span(z: u8) -> f64 {
    2.0 * EARTH_HALF_CIRCUMFERENCE / f64::from(tiles_per_axis(z))
}

/// An inclusive rectangle of tiles at one zoom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileRange {
    pub z: u8,
    pub min_x: u32,
    pub max_x: u32,
    pub min_y: u32,
    pub max_y: u32,
}

impl TileRange {
    /// Number of tiles in the range.
    pub fn len(&self) -> u64 {
        u64::from(self.max_x - self.min_x + 1) * u64::from(self.max_y - self.min_y + 1)
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The same area in metatile origins (still an inclusive range of tile coordinates,
    /// stepping by [`METATILE`]).
    pub fn metatiles(&self) -> MetatileRange {
        let mask = !(METATILE - 1);
        MetatileRange {
            z: self.z,
            min_x: self.min_x & mask,
            max_x: self.max_x & mask,
            min_y: self.min_y & mask,
            max_y: self.max_y & mask,
        }
    }

    pub fn tiles(self) -> impl Iterator<Item = TileCoord> {
        let z = self.z;
        (self.min_x..=self.max_x)
            .flat_map(move |x| (self.min_y..=self.max_y).map(move |y| TileCoord { z, x, y }))
    }
}

/// An inclusive rectangle of metatile origins at one zoom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetatileRange {
    pub z: u8,
    pub min_x: u32,
    pub max_x: u32,
    pub min_y: u32,
    pub max_y: u32,
}

impl MetatileRange {
    /// Number of metatiles in the range.
    pub fn len(&self) -> u64 {
        (u64::from(self.max_x - self.min_x) / u64::from(METATILE) + 1)
            * (u64::from(self.max_y - self.min_y) / u64::from(METATILE) + 1)
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn contains(&self, meta: MetatileCoord) -> bool {
        meta.z == self.z
            && (self.min_x..=self.max_x).contains(&meta.x)
            && (self.min_y..=self.max_y).contains(&meta.y)
    }

    /// Metatiles in x-major order, lazily (a range can hold billions).
    pub fn iter(self) -> impl Iterator<Item = MetatileCoord> {
        let z = self.z;
        let step = METATILE as usize;
        (self.min_x..=self.max_x).step_by(step).flat_map(move |x| {
            (self.min_y..=self.max_y)
                .step_by(step)
                .map(move |y| MetatileCoord { z, x, y })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn helsinki_lands_in_the_expected_z12_tile() {
        // Helsinki cathedral, 24.9522 E 60.1704 N, is in tile 12/2331/1185.
        let (x, y) = LonLat {
            lon: 24.9522,
            lat: 60.1704,
        }
        .to_mercator();
        let r = Bbox {
            min_x: x,
            min_y: y,
            max_x: x,
            max_y: y,
        }
        .tile_range(12);
        assert_eq!((r.min_x, r.min_y), (2331, 1185));
    }

    #[test]
    fn world_bbox_covers_every_tile() {
        let r = Bbox::WORLD.tile_range(4);
        assert_eq!((r.min_x, r.max_x, r.min_y, r.max_y), (0, 15, 0, 15));
        assert_eq!(r.len(), 256);
        assert_eq!(r.metatiles().len(), 4);
        let r20 = Bbox::WORLD.tile_range(20);
        assert_eq!(r20.metatiles().len(), (1u64 << 17) * (1u64 << 17));
    }

    proptest! {
        #[test]
        fn lonlat_round_trips_through_mercator(lon in -180.0f64..180.0, lat in -85.0f64..85.0) {
            let (x, y) = LonLat { lon, lat }.to_mercator();
            let back = LonLat::from_mercator(x, y);
            prop_assert!((back.lon - lon).abs() < 1e-9);
            prop_assert!((back.lat - lat).abs() < 1e-9);
        }

        #[test]
        fn a_tiles_own_bbox_maps_back_to_that_tile(z in 0u8..=20, fx in 0.0f64..1.0, fy in 0.0f64..1.0) {
            let n = tiles_per_axis(z);
            let x = ((fx * f64::from(n)) as u32).min(n - 1);
            let y = ((fy * f64::from(n)) as u32).min(n - 1);
            let tile = TileCoord { z, x, y };
            let inner = tile.bbox().buffered(-tile_span(z) * 0.01);
            let r = inner.tile_range(z);
            prop_assert_eq!((r.min_x, r.max_x, r.min_y, r.max_y), (x, x, y, y));
        }
    }
}
