//! Areas in longitude/latitude (EPSG:4326): a bbox, or GeoJSON polygons, turned into an
//! [`MetatileSet`] that holds the tiles they touch as quadtree squares. `metatiled expire`,
//! `metatiled seed` and the admin API all go through here, so the three agree on which
//! metatiles an area names.
//!
//! A bbox becomes a tile range ([`MetatileSet::insert_range`]). Polygons are decomposed
//! down the quadtree: a square with no polygon edge inside it is wholly inside (one
//! coarse square, standing for all its descendants) or wholly outside (dropped); a
//! square that an edge crosses is split, down to the tile level of a metatile of the
//! set's max zoom, where it is kept. So only metatiles that intersect the polygon are
//! named, and the work grows with the outline, not the area. Edges are straight lines
//! in lon/lat, as GeoJSON draws them; rings use the even-odd rule (holes are holes).

use super::{InputTile, LonLatBbox, MetatileSet};
use crate::tile::{Bbox, LonLat, MetatileCoord, TileCoord};
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Widening of a square, in degrees, when deciding which edges touch it: an edge that
/// runs along a tile border (within ~0.1 mm) counts for both sides, as a bbox on a tile
/// edge does.
const EDGE_EPSILON_DEG: f64 = 1e-9;
/// Horizontal bands of the point-in-polygon index.
const MAX_BANDS: usize = 4096;
/// An edge spanning more bands than this is checked for every point instead.
const MAX_BANDS_PER_EDGE: usize = 64;
/// Most positions an area's outline may have, all rings together: bounds the memory of
/// its edges and index (tens of MB at most); an expiry or seed needs no finer outline.
pub(crate) const MAX_POSITIONS: usize = 100_000;

/// Why an area was refused. The messages are meant for the person who sent it.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum AreaError {
    #[error("bbox: {0}")]
    Bbox(String),
    #[error("GeoJSON: {0}")]
    GeoJson(String),
}

/// Why a GeoJSON file could not be used.
#[derive(Debug, Error)]
pub enum AreaFileError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: {source}", path.display())]
    Area {
        path: PathBuf,
        #[source]
        source: AreaError,
    },
}

/// An area of the map in lon/lat degrees.
#[derive(Debug, Clone, PartialEq)]
pub enum Area {
    Bbox(LonLatBbox),
    Polygons(Polygons),
}

/// The rings of one or more polygons (outer rings and holes alike), closed.
#[derive(Debug, Clone, PartialEq)]
pub struct Polygons {
    rings: Vec<Vec<(f64, f64)>>,
}

impl Area {
    /// A bbox checked from its four numbers.
    pub fn bbox(v: [f64; 4]) -> Result<Area, AreaError> {
        Ok(Area::Bbox(
            LonLatBbox::new(v).map_err(|e| AreaError::Bbox(e.to_string()))?,
        ))
    }

    /// A GeoJSON Polygon or MultiPolygon, or a Feature or FeatureCollection of them.
    /// (Text is cheaper: [`Area::from_geojson_raw`].)
    pub fn from_geojson(value: &Value) -> Result<Area, AreaError> {
        let text = value.to_string();
        let raw: &RawValue = serde_json::from_str(&text)
            .map_err(|e| AreaError::GeoJson(format!("not JSON: {e}")))?;
        Area::from_geojson_raw(raw)
    }

    /// [`Area::from_geojson`] from JSON text: positions become numbers as they are
    /// parsed, never a JSON tree (which takes several times the text's size), so an
    /// area costs about its own text in memory.
    pub fn from_geojson_raw(raw: &RawValue) -> Result<Area, AreaError> {
        let mut rings = Vec::new();
        collect_raw_geojson(raw, &mut rings, false)?;
        if rings.is_empty() {
            return Err(AreaError::GeoJson("no polygon in the geometry".into()));
        }
        let positions: usize = rings.iter().map(Vec::len).sum();
        if positions > MAX_POSITIONS {
            return Err(AreaError::GeoJson(format!(
                "the outline has {positions} positions, more than {MAX_POSITIONS}: simplify it"
            )));
        }
        Ok(Area::Polygons(Polygons { rings }))
    }

    /// Reads a GeoJSON file (see [`Area::from_geojson`]).
    pub fn from_geojson_file(path: &Path) -> Result<Area, AreaFileError> {
        let text = std::fs::read(path).map_err(|source| AreaFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let raw: &RawValue =
            serde_json::from_slice(&text).map_err(|source| AreaFileError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        Area::from_geojson_raw(raw).map_err(|source| AreaFileError::Area {
            path: path.to_path_buf(),
            source,
        })
    }

    /// `bbox` or `polygon`, for logs and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Area::Bbox(_) => "bbox",
            Area::Polygons(_) => "polygon",
        }
    }

    /// The squares of the tiles this area touches, for metatiles up to `max_zoom`.
    pub fn to_set(&self, max_zoom: u8) -> MetatileSet {
        self.to_set_within(max_zoom, usize::MAX)
    }

    /// [`Area::to_set`] holding at most `limit` squares: an outline that needs more
    /// stops early, in bounded time and memory, with the set marked
    /// [`MetatileSet::overflowed`].
    pub fn to_set_within(&self, max_zoom: u8, limit: usize) -> MetatileSet {
        let mut set = MetatileSet::with_limit(max_zoom, limit);
        self.insert_into(&mut set);
        set
    }

    /// Adds the tiles this area touches to `set`.
    pub fn insert_into(&self, set: &mut MetatileSet) {
        match self {
            Area::Bbox(b) => {
                let [minlon, minlat, maxlon, maxlat] = b.to_array();
                let bbox = Bbox::from_lonlat(
                    LonLat {
                        lon: minlon,
                        lat: minlat,
                    },
                    LonLat {
                        lon: maxlon,
                        lat: maxlat,
                    },
                );
                set.insert_range(&bbox.tile_range(set.max_zoom()));
            }
            Area::Polygons(p) => p.insert_into(set),
        }
    }
}

/// The tiles of an area, decided tile by tile (where [`MetatileSet`] works in
/// metatiles): what an export writes. A bbox holds the tiles its [`TileRange`] names at
/// each zoom; polygons hold the tiles whose extent meets them (an edge crosses the tile,
/// or the tile lies inside).
pub struct AreaTiles {
    kind: AreaTilesKind,
}

enum AreaTilesKind {
    Bbox(Bbox),
    Polygons {
        edges: Vec<Edge>,
        index: InsideIndex,
    },
}

impl Area {
    /// The tile filter of this area (an index of its edges for polygons).
    pub fn tiles(&self) -> AreaTiles {
        let kind = match self {
            Area::Bbox(b) => {
                let [minlon, minlat, maxlon, maxlat] = b.to_array();
                AreaTilesKind::Bbox(Bbox::from_lonlat(
                    LonLat {
                        lon: minlon,
                        lat: minlat,
                    },
                    LonLat {
                        lon: maxlon,
                        lat: maxlat,
                    },
                ))
            }
            Area::Polygons(p) => {
                let edges = p.edges();
                let index = InsideIndex::new(&edges);
                AreaTilesKind::Polygons { edges, index }
            }
        };
        AreaTiles { kind }
    }

    /// The lon/lat box around the area.
    pub fn bounds(&self) -> LonLatBbox {
        match self {
            Area::Bbox(b) => *b,
            Area::Polygons(p) => {
                let mut b = [
                    f64::INFINITY,
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                    f64::NEG_INFINITY,
                ];
                for &(lon, lat) in p.rings.iter().flatten() {
                    b = [b[0].min(lon), b[1].min(lat), b[2].max(lon), b[3].max(lat)];
                }
                LonLatBbox::new(b).unwrap_or(LonLatBbox::WORLD)
            }
        }
    }
}

impl AreaTiles {
    /// The tiles of `meta` that belong to the area, in index order.
    pub fn tiles_of(&self, meta: MetatileCoord) -> Vec<TileCoord> {
        match &self.kind {
            AreaTilesKind::Bbox(b) => {
                let r = b.tile_range(meta.z);
                meta.tiles()
                    .filter(|t| {
                        (r.min_x..=r.max_x).contains(&t.x) && (r.min_y..=r.max_y).contains(&t.y)
                    })
                    .collect()
            }
            AreaTilesKind::Polygons { edges, index } => {
                let w = meta.width_in_tiles();
                let level_box = |x: u32, y: u32, n: u32| grown(tile_box_n(meta.z, x, y, n));
                // Only the edges near the metatile are tried on its tiles.
                let near: Vec<&Edge> = edges
                    .iter()
                    .filter(|e| e.touches(level_box(meta.x, meta.y, w)))
                    .collect();
                meta.tiles()
                    .filter(|t| {
                        let b = tile_box(t.z, t.x, t.y);
                        near.iter().any(|e| e.touches(grown(b)))
                            || index.inside(edges, ((b.0 + b.2) / 2.0, (b.1 + b.3) / 2.0))
                    })
                    .collect()
            }
        }
    }
}

/// The lon/lat box of `n` x `n` tiles of zoom `z` from (`x`, `y`).
fn tile_box_n(z: u8, x: u32, y: u32, n: u32) -> DegBox {
    let (sw, ne) = Bbox::of_tiles(z, x, y, n).to_lonlat();
    (sw.lon, sw.lat, ne.lon, ne.lat)
}

fn grown(b: DegBox) -> DegBox {
    (
        b.0 - EDGE_EPSILON_DEG,
        b.1 - EDGE_EPSILON_DEG,
        b.2 + EDGE_EPSILON_DEG,
        b.3 + EDGE_EPSILON_DEG,
    )
}

fn geojson_err(message: impl Into<String>) -> AreaError {
    AreaError::GeoJson(message.into())
}

/// A ring's positions checked (longitude/latitude ranges, at least 3 distinct) and the
/// closing position dropped.
fn checked_ring(
    mut points: Vec<(f64, f64)>,
    what: &str,
    r: usize,
) -> Result<Vec<(f64, f64)>, AreaError> {
    for (i, &(lon, lat)) in points.iter().enumerate() {
        if !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
            return Err(geojson_err(format!(
                "{what} ring {r} position {i} ({lon}, {lat}) is not a longitude/latitude \
                 in EPSG:4326"
            )));
        }
    }
    if points.len() > 1 && points.first() == points.last() {
        points.pop();
    }
    if points.len() < 3 {
        return Err(geojson_err(format!(
            "{what} ring {r} needs at least 3 distinct positions"
        )));
    }
    Ok(points)
}

/// A GeoJSON object as far as areas care, its parts left as text until its `type` says
/// what they hold (members may come in any order).
#[derive(Deserialize)]
struct RawGeoObject<'a> {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(borrow, default)]
    coordinates: Option<&'a RawValue>,
    #[serde(borrow, default)]
    geometry: Option<&'a RawValue>,
    #[serde(borrow, default)]
    features: Option<Vec<&'a RawValue>>,
}

/// A GeoJSON position: longitude and latitude (an altitude or more is skipped).
struct Position(f64, f64);

impl<'de> Deserialize<'de> for Position {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PositionVisitor;
        impl<'de> Visitor<'de> for PositionVisitor {
            type Value = Position;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a position [longitude, latitude]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Position, A::Error> {
                let lon: f64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let lat: f64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Position(lon, lat))
            }
        }
        deserializer.deserialize_seq(PositionVisitor)
    }
}

fn parse_raw<'a, T: Deserialize<'a>>(raw: &'a RawValue, what: &str) -> Result<T, AreaError> {
    serde_json::from_str(raw.get()).map_err(|e| geojson_err(format!("{what}: {e}")))
}

fn raw_polygon(
    raw: &RawValue,
    rings: &mut Vec<Vec<(f64, f64)>>,
    what: &str,
) -> Result<(), AreaError> {
    let list: Vec<Vec<Position>> = parse_raw(
        raw,
        &format!("{what} coordinates must be rings of [longitude, latitude] positions"),
    )?;
    if list.is_empty() {
        return Err(geojson_err(format!("{what} has no rings")));
    }
    for (r, ring) in list.into_iter().enumerate() {
        let points = ring
            .into_iter()
            .map(|Position(lon, lat)| (lon, lat))
            .collect();
        rings.push(checked_ring(points, what, r)?);
    }
    Ok(())
}

/// `member_of_collection`: only a Feature is allowed.
fn collect_raw_geojson(
    text: &RawValue,
    rings: &mut Vec<Vec<(f64, f64)>>,
    member_of_collection: bool,
) -> Result<(), AreaError> {
    let object: RawGeoObject = serde_json::from_str(text.get())
        .map_err(|_| geojson_err("expected an object with a \"type\""))?;
    let kind = object
        .kind
        .as_deref()
        .ok_or_else(|| geojson_err("expected an object with a \"type\""))?;
    if member_of_collection && kind != "Feature" {
        return Err(geojson_err("FeatureCollection members must be Features"));
    }
    let coordinates = || {
        object
            .coordinates
            .ok_or_else(|| geojson_err(format!("{kind} without \"coordinates\"")))
    };
    match kind {
        "Polygon" => raw_polygon(coordinates()?, rings, "Polygon"),
        "MultiPolygon" => {
            let parts: Vec<&RawValue> = parse_raw(coordinates()?, "MultiPolygon coordinates")?;
            if parts.is_empty() {
                return Err(geojson_err("MultiPolygon without polygons"));
            }
            for (i, part) in parts.into_iter().enumerate() {
                raw_polygon(part, rings, &format!("MultiPolygon polygon {i}"))?;
            }
            Ok(())
        }
        "Feature" => match object.geometry {
            Some(g) if g.get() != "null" => collect_raw_geojson(g, rings, false),
            _ => Err(geojson_err("Feature without a geometry")),
        },
        "FeatureCollection" => {
            let features = object
                .features
                .ok_or_else(|| geojson_err("FeatureCollection without \"features\""))?;
            for f in features {
                collect_raw_geojson(f, rings, true)?;
            }
            Ok(())
        }
        other => Err(geojson_err(format!(
            "the geometry must be a Polygon or MultiPolygon, not a {other}"
        ))),
    }
}

/// One polygon edge, in degrees: (lon, lat) to (lon, lat).
#[derive(Debug, Clone, Copy)]
struct Edge {
    a: (f64, f64),
    b: (f64, f64),
}

/// A box in lon/lat: (min lon, min lat, max lon, max lat).
type DegBox = (f64, f64, f64, f64);

impl Edge {
    /// Whether the edge meets the closed box: the boxes of both overlap and the box's
    /// corners are not all strictly on one side of the edge's line (separating axes).
    fn touches(&self, b: DegBox) -> bool {
        let (x0, y0, x1, y1) = b;
        let (a, e) = (self.a, self.b);
        if a.0.max(e.0) < x0 || a.0.min(e.0) > x1 || a.1.max(e.1) < y0 || a.1.min(e.1) > y1 {
            return false;
        }
        let (dx, dy) = (e.0 - a.0, e.1 - a.1);
        let side = |x: f64, y: f64| dx * (y - a.1) - dy * (x - a.0);
        let s = [side(x0, y0), side(x1, y0), side(x0, y1), side(x1, y1)];
        !(s.iter().all(|v| *v > 0.0) || s.iter().all(|v| *v < 0.0))
    }

    /// Whether a ray from `p` towards +lon crosses the edge (half-open in latitude, so
    /// a ray through a vertex counts it once).
    fn crosses_ray(&self, p: (f64, f64)) -> bool {
        let (a, b) = (self.a, self.b);
        if (a.1 > p.1) == (b.1 > p.1) {
            return false;
        }
        let x = a.0 + (p.1 - a.1) * (b.0 - a.0) / (b.1 - a.1);
        x > p.0
    }
}

/// Even-odd point-in-polygon in O(edges near the point's latitude): edges bucketed in
/// latitude bands, tall edges in a list of their own.
struct InsideIndex {
    min_lat: f64,
    max_lat: f64,
    band_height: f64,
    bands: Vec<Vec<u32>>,
    tall: Vec<u32>,
}

impl InsideIndex {
    fn new(edges: &[Edge]) -> Self {
        let min_lat = edges
            .iter()
            .map(|e| e.a.1.min(e.b.1))
            .fold(f64::INFINITY, f64::min);
        let max_lat = edges
            .iter()
            .map(|e| e.a.1.max(e.b.1))
            .fold(f64::NEG_INFINITY, f64::max);
        let n = edges.len().clamp(1, MAX_BANDS);
        let band_height = ((max_lat - min_lat) / n as f64).max(f64::MIN_POSITIVE);
        let mut index = Self {
            min_lat,
            max_lat,
            band_height,
            bands: vec![Vec::new(); n],
            tall: Vec::new(),
        };
        for (i, e) in edges.iter().enumerate() {
            let (lo, hi) = (index.band(e.a.1.min(e.b.1)), index.band(e.a.1.max(e.b.1)));
            if hi - lo >= MAX_BANDS_PER_EDGE {
                index.tall.push(i as u32);
            } else {
                for band in &mut index.bands[lo..=hi] {
                    band.push(i as u32);
                }
            }
        }
        index
    }

    fn band(&self, lat: f64) -> usize {
        let i = ((lat - self.min_lat) / self.band_height).floor();
        (i.max(0.0) as usize).min(self.bands.len() - 1)
    }

    fn inside(&self, edges: &[Edge], p: (f64, f64)) -> bool {
        if !(self.min_lat..=self.max_lat).contains(&p.1) {
            return false;
        }
        self.bands[self.band(p.1)]
            .iter()
            .chain(&self.tall)
            .filter(|&&i| edges[i as usize].crosses_ray(p))
            .count()
            % 2
            == 1
    }
}

/// The lon/lat box of the tile (`level`, `x`, `y`).
fn tile_box(level: u8, x: u32, y: u32) -> DegBox {
    let (sw, ne) = Bbox::of_tiles(level, x, y, 1).to_lonlat();
    (sw.lon, sw.lat, ne.lon, ne.lat)
}

impl Polygons {
    fn edges(&self) -> Vec<Edge> {
        let mut edges = Vec::new();
        for ring in &self.rings {
            for (i, a) in ring.iter().enumerate() {
                let b = ring[(i + 1) % ring.len()];
                edges.push(Edge { a: *a, b });
            }
        }
        edges
    }

    /// Adds the squares of the tiles that intersect the polygons (see the module docs).
    pub fn insert_into(&self, set: &mut MetatileSet) {
        let edges = self.edges();
        if edges.is_empty() {
            return;
        }
        let mut walk = Decompose {
            index: InsideIndex::new(&edges),
            edges: &edges,
            finest: set.finest_level(),
            set,
        };
        let all: Vec<u32> = (0..edges.len() as u32).collect();
        walk.visit(0, 0, 0, &all);
    }
}

struct Decompose<'a> {
    edges: &'a [Edge],
    index: InsideIndex,
    finest: u8,
    set: &'a mut MetatileSet,
}

impl Decompose<'_> {
    fn visit(&mut self, level: u8, x: u32, y: u32, parent_edges: &[u32]) {
        if self.set.overflowed() {
            return;
        }
        let b = tile_box(level, x, y);
        let grown = (
            b.0 - EDGE_EPSILON_DEG,
            b.1 - EDGE_EPSILON_DEG,
            b.2 + EDGE_EPSILON_DEG,
            b.3 + EDGE_EPSILON_DEG,
        );
        let edges: Vec<u32> = parent_edges
            .iter()
            .copied()
            .filter(|&i| self.edges[i as usize].touches(grown))
            .collect();
        let tile = InputTile { z: level, x, y };
        if edges.is_empty() {
            let center = ((b.0 + b.2) / 2.0, (b.1 + b.3) / 2.0);
            if self.index.inside(self.edges, center) {
                self.set.insert(tile);
            }
            return;
        }
        if level >= self.finest {
            self.set.insert(tile);
            return;
        }
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            self.visit(level + 1, x * 2 + dx, y * 2 + dy, &edges);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tile::{tiles_per_axis, METATILE};
    use geo::{Intersects, LineString, Polygon, Rect};
    use proptest::prelude::*;
    use serde_json::json;
    use std::collections::BTreeSet;

    /// (mx, my) of the metatiles of `set` at its max zoom.
    fn metatiles_at_max(set: &MetatileSet) -> BTreeSet<(u32, u32)> {
        let z = set.max_zoom();
        set.blocks(z)
            .flat_map(|b| b.metatiles())
            .map(|m| (m.x / METATILE, m.y / METATILE))
            .collect()
    }

    /// The metatiles of zoom `z` whose extent intersects the polygon, by testing each.
    fn brute_force(rings: &[Vec<(f64, f64)>], z: u8) -> BTreeSet<(u32, u32)> {
        let level = z.saturating_sub(3);
        let exterior = LineString::from(rings[0].clone());
        let holes = rings[1..]
            .iter()
            .map(|r| LineString::from(r.clone()))
            .collect();
        let poly = Polygon::new(exterior, holes);
        let n = tiles_per_axis(level);
        let mut out = BTreeSet::new();
        for x in 0..n {
            for y in 0..n {
                let b = tile_box(level, x, y);
                let rect = Rect::new((b.0, b.1), (b.2, b.3));
                if poly.intersects(&rect) {
                    out.insert((x, y));
                }
            }
        }
        out
    }

    fn polygons(rings: Vec<Vec<(f64, f64)>>) -> Area {
        Area::Polygons(Polygons { rings })
    }

    #[test]
    fn polygon_geojson_of_every_accepted_shape_parses() {
        let square = json!([[
            [24.9, 60.1],
            [25.0, 60.1],
            [25.0, 60.2],
            [24.9, 60.2],
            [24.9, 60.1]
        ]]);
        let p = json!({"type": "Polygon", "coordinates": square});
        assert!(matches!(Area::from_geojson(&p), Ok(Area::Polygons(_))));
        let mp = json!({"type": "MultiPolygon", "coordinates": [square, square]});
        assert!(Area::from_geojson(&mp).is_ok());
        let feature = json!({"type": "Feature", "properties": {}, "geometry": p});
        assert!(Area::from_geojson(&feature).is_ok());
        let fc = json!({"type": "FeatureCollection", "features": [feature]});
        assert!(Area::from_geojson(&fc).is_ok());
    }

    #[test]
    fn non_polygon_geojson_is_refused_with_a_reason() {
        let cases = [
            (
                json!({"type": "Point", "coordinates": [24.9, 60.1]}),
                "not a Point",
            ),
            (
                json!({"type": "LineString", "coordinates": [[24.9, 60.1], [25.0, 60.2]]}),
                "not a LineString",
            ),
            (
                json!({"type": "Feature", "geometry": null}),
                "without a geometry",
            ),
            (json!([1, 2]), "expected an object"),
            (json!({"type": "Polygon"}), "without \"coordinates\""),
            (json!({"type": "Polygon", "coordinates": []}), "no rings"),
            (
                json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]}),
                "at least 3",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 100], [2, 0]]]}),
                "EPSG:4326",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[[0, 0], ["a", 1], [2, 0]]]}),
                "[longitude, latitude]",
            ),
        ];
        for (value, reason) in cases {
            let err = Area::from_geojson(&value).unwrap_err().to_string();
            assert!(err.contains(reason), "{value}: {err}");
        }
    }

    #[test]
    fn bad_bboxes_are_refused_as_areas() {
        assert!(Area::bbox([1.0, 2.0, 0.0, 3.0]).is_err());
        assert!(Area::bbox([f64::NAN, 2.0, 0.0, 3.0]).is_err());
    }

    #[test]
    fn a_bbox_and_the_same_rectangle_as_a_polygon_name_the_same_metatiles() {
        let b = [24.90, 60.15, 24.99, 60.20];
        let rect = polygons(vec![vec![
            (b[0], b[1]),
            (b[2], b[1]),
            (b[2], b[3]),
            (b[0], b[3]),
        ]]);
        for z in [10, 14, 17] {
            assert_eq!(
                metatiles_at_max(&Area::bbox(b).unwrap().to_set(z)),
                metatiles_at_max(&rect.to_set(z)),
                "zoom {z}"
            );
        }
    }

    #[test]
    fn a_triangle_names_only_the_metatiles_it_crosses() {
        // A thin diagonal triangle over Helsinki: its bbox holds many more metatiles.
        let tri = vec![(24.90, 60.15), (25.00, 60.16), (24.91, 60.16)];
        let set = polygons(vec![tri.clone()]).to_set(16);
        let got = metatiles_at_max(&set);
        assert_eq!(got, brute_force(&[tri], 16));
        let bbox = metatiles_at_max(&Area::bbox([24.90, 60.15, 25.00, 60.16]).unwrap().to_set(16));
        assert!(got.len() < bbox.len(), "{} vs {}", got.len(), bbox.len());
    }

    #[test]
    fn a_hole_is_left_out() {
        let outer = vec![(20.0, 50.0), (30.0, 50.0), (30.0, 60.0), (20.0, 60.0)];
        let hole = vec![(22.0, 52.0), (28.0, 52.0), (28.0, 58.0), (22.0, 58.0)];
        let rings = vec![outer, hole];
        let got = metatiles_at_max(&polygons(rings.clone()).to_set(11));
        assert_eq!(got, brute_force(&rings, 11));
        // The middle of the hole (25, 55) is not expired at z11 (tile level 8).
        let p = LonLat {
            lon: 25.0,
            lat: 55.0,
        };
        let t = Bbox::from_lonlat(p, p).tile_range(8);
        assert!(!got.contains(&(t.min_x, t.min_y)));
    }

    #[test]
    fn an_outline_too_detailed_for_a_limited_set_stops_early_and_says_so() {
        let zigzag: Vec<(f64, f64)> = (0..200)
            .map(|i| {
                (
                    -170.0 + f64::from(i) * 1.7,
                    if i % 2 == 0 { -60.0 } else { 60.0 },
                )
            })
            .chain([(170.0, -70.0), (-170.0, -70.0)])
            .collect();
        let started = std::time::Instant::now();
        let set = polygons(vec![zigzag]).to_set_within(20, 10_000);
        assert!(set.overflowed());
        assert!(set.len() <= 10_000);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));

        let too_many: Vec<[f64; 2]> = (0..=MAX_POSITIONS)
            .map(|i| [i as f64 / 1e6, (i % 2) as f64 / 1e6])
            .collect();
        let err = Area::from_geojson(&json!({"type": "Polygon", "coordinates": [too_many]}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("simplify"), "{err}");
    }

    #[test]
    fn a_big_polygon_at_zoom_20_costs_its_outline() {
        // Most of Europe at z20: ~4 * 10^8 metatiles inside, ~10^5 squares held.
        let ring = vec![(-10.0, 36.0), (30.0, 36.0), (30.0, 70.0), (-10.0, 70.0)];
        let started = std::time::Instant::now();
        let set = polygons(vec![ring]).to_set(20);
        assert!(set.len() < 2_000_000, "{} squares", set.len());
        assert!(set.metatile_count(20) > 100_000_000);
        assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
    }

    fn star(cx: f64, cy: f64, radii: Vec<f64>) -> Vec<(f64, f64)> {
        let n = radii.len();
        radii
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let a = i as f64 / n as f64 * std::f64::consts::TAU;
                (cx + r * a.cos(), cy + r * a.sin() * 0.6)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn a_polygon_names_exactly_the_metatiles_that_intersect_it(
            cx in -150.0f64..150.0,
            cy in -60.0f64..60.0,
            radii in proptest::collection::vec(0.5f64..20.0, 3..12),
            z in 3u8..=9,
        ) {
            let ring = star(cx, cy, radii);
            let got = metatiles_at_max(&polygons(vec![ring.clone()]).to_set(z));
            prop_assert_eq!(got, brute_force(&[ring], z));
        }
    }
}
