//! Areas and tile lists, and the metatiles they name: what expiry, seeding and export
//! act on. Pure (no cache, no database), so the command line, the admin API and the
//! database watcher agree on which metatiles an input names.
//!
//! - [`lines`]: `z/x/y` tile lists (osm2pgsql's expire output), read from any reader.
//! - [`LonLatBbox`] and [`Area`] (a bbox or GeoJSON polygons) in EPSG:4326.
//! - [`set`]: [`MetatileSet`], an input as quadtree squares, and its [`MetatileBlock`]s
//!   zoom by zoom: bounded memory and work whatever the area.

pub mod lines;
pub mod set;
mod shape;

pub use lines::{
    parse_tile_line, BadLine, InputTile, LineError, TileLines, MAX_INPUT_ZOOM, MAX_LINE_BYTES,
};
pub use set::{Blocks, MetatileBlock, MetatileSet};
pub use shape::{Area, AreaError, AreaFileError, AreaTiles, Polygons};

use serde::{Deserialize, Serialize};
use std::str::FromStr;
use thiserror::Error;

/// A lon/lat box in degrees, `[minlon, minlat, maxlon, maxlat]`, finite, ordered and
/// inside the world: checked once where it enters (a flag, a request body, the
/// database), trusted after.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<f64>", into = "[f64; 4]")]
pub struct LonLatBbox([f64; 4]);

/// Why four numbers are not a [`LonLatBbox`]; the message is for the person who sent them.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct BboxError(String);

impl LonLatBbox {
    /// The whole Web Mercator world.
    pub const WORLD: LonLatBbox = LonLatBbox([-180.0, -85.051_129, 180.0, 85.051_129]);

    pub fn new(v: [f64; 4]) -> Result<Self, BboxError> {
        let [minlon, minlat, maxlon, maxlat] = v;
        let bad = |m: &str| Err(BboxError(m.to_string()));
        if v.iter().any(|f| !f.is_finite()) {
            return bad("bbox values must be numbers");
        }
        if !(-180.0..=180.0).contains(&minlon) || !(-180.0..=180.0).contains(&maxlon) {
            return bad("bbox longitudes must be within -180..180");
        }
        if !(-90.0..=90.0).contains(&minlat) || !(-90.0..=90.0).contains(&maxlat) {
            return bad("bbox latitudes must be within -90..90");
        }
        if minlon > maxlon || minlat > maxlat {
            return bad("bbox minimum must not exceed maximum (MINLON,MINLAT,MAXLON,MAXLAT)");
        }
        Ok(Self(v))
    }

    pub fn to_array(self) -> [f64; 4] {
        self.0
    }

    /// (lon, lat) of the middle.
    pub fn center(self) -> (f64, f64) {
        let [a, b, c, d] = self.0;
        ((a + c) / 2.0, (b + d) / 2.0)
    }
}

impl TryFrom<Vec<f64>> for LonLatBbox {
    type Error = BboxError;
    fn try_from(v: Vec<f64>) -> Result<Self, BboxError> {
        let v: [f64; 4] = v
            .try_into()
            .map_err(|_| BboxError("bbox must be [minlon, minlat, maxlon, maxlat]".into()))?;
        Self::new(v)
    }
}

impl From<LonLatBbox> for [f64; 4] {
    fn from(b: LonLatBbox) -> Self {
        b.0
    }
}

/// `MINLON,MINLAT,MAXLON,MAXLAT`, as `--bbox` takes it.
impl FromStr for LonLatBbox {
    type Err = BboxError;
    fn from_str(text: &str) -> Result<Self, BboxError> {
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        if parts.len() != 4 {
            return Err(BboxError(format!(
                "bbox {text:?} must be MINLON,MINLAT,MAXLON,MAXLAT"
            )));
        }
        let mut v = [0.0; 4];
        for (slot, part) in v.iter_mut().zip(&parts) {
            *slot = part
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| BboxError(format!("bbox value {part:?} is not a number")))?;
        }
        Self::new(v)
    }
}

/// Tiles for the tests of this module's parts.
#[cfg(test)]
pub(crate) mod test_tiles {
    use super::InputTile;
    use proptest::prelude::*;

    pub(crate) fn t(z: u8, x: u32, y: u32) -> InputTile {
        InputTile { z, x, y }
    }

    /// Any tile of zooms 0-11.
    pub(crate) fn any_input() -> impl Strategy<Value = InputTile> {
        (0u8..=11, any::<u32>(), any::<u32>()).prop_map(|(z, x, y)| {
            let n = 1u32 << z;
            t(z, x % n, y % n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bboxes_parse_or_say_why_not() {
        let b: LonLatBbox = "24.93,60.16,24.96,60.18".parse().unwrap();
        assert_eq!(b.to_array(), [24.93, 60.16, 24.96, 60.18]);
        let reason = |t: &str| t.parse::<LonLatBbox>().unwrap_err().to_string();
        assert!(reason("24.96,60.16,24.93,60.18").contains("minimum"));
        assert!(reason("1,2,3").contains("MINLON"));
        assert!(reason("a,2,3,4").contains("not a number"));
        assert!(reason("-200,0,0,1").contains("longitudes"));
        assert!(reason("NaN,0,1,1").contains("not a number"));
        let json: Result<LonLatBbox, _> = serde_json::from_str("[1, 2, 3]");
        assert!(json.unwrap_err().to_string().contains("minlon"));
        let json: LonLatBbox = serde_json::from_str("[1, 2, 3, 4]").unwrap();
        assert_eq!(serde_json::to_string(&json).unwrap(), "[1.0,2.0,3.0,4.0]");
    }
}
