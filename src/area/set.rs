//! [`MetatileSet`]: an area or a tile list as quadtree squares, and the blocks of
//! metatiles it names zoom by zoom.
//!
//! A tile above `max_zoom` is carried up to it; a tile below stands for all of its
//! descendants (mod_tile only reaches the top-left one). Squares finer than a metatile
//! of `max_zoom` are reduced to it, so memory grows with the distinct metatiles named,
//! never with the area. [`MetatileSet::blocks`] yields, zoom by zoom, square blocks of
//! metatiles that cover every metatile touching the set, each exactly once (z0-2
//! included, unlike mod_tile). A z0 line with max zoom 20 is one block of 2^17 x 2^17
//! metatiles at z20, not 2^34 items in memory.
//!
//! How a metatile relates to the quadtree: the metatile at zoom z covers exactly the
//! tile of zoom `z - 3` (the whole world below zoom 3). So "the metatiles of zoom z that
//! touch the set" are the quadtree nodes of level `max(z - 3, 0)` that touch one of its
//! squares: an ancestor of a finer square, or a descendant of a coarser one. After
//! dropping squares nested in others, those two kinds never overlap.

use super::lines::InputTile;
use crate::tile::{MetatileCoord, TileRange, MAX_ZOOM, METATILE};
use std::collections::HashSet;

/// Zoom levels between a metatile and the tile of the same extent (8 = 2^3).
const META_SHIFT: u8 = 3;

/// A quadtree node: the tile (`level`, `x`, `y`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Square {
    level: u8,
    x: u32,
    y: u32,
}

/// A square block of `side` x `side` metatiles of zoom `z`; (`mx`, `my`) numbers its
/// top-left metatile (whose origin tile is `mx * 8`, `my * 8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetatileBlock {
    pub z: u8,
    pub mx: u32,
    pub my: u32,
    pub side: u32,
}

impl MetatileBlock {
    pub fn len(&self) -> u64 {
        u64::from(self.side) * u64::from(self.side)
    }

    pub fn is_empty(&self) -> bool {
        self.side == 0
    }

    /// The metatiles, x-major, lazily.
    pub fn metatiles(self) -> impl Iterator<Item = MetatileCoord> {
        (self.mx..self.mx + self.side).flat_map(move |mx| {
            (self.my..self.my + self.side).map(move |my| MetatileCoord {
                z: self.z,
                x: mx * METATILE,
                y: my * METATILE,
            })
        })
    }

    pub fn contains(&self, meta: MetatileCoord) -> bool {
        let (mx, my) = (meta.x / METATILE, meta.y / METATILE);
        meta.z == self.z
            && (self.mx..self.mx + self.side).contains(&mx)
            && (self.my..self.my + self.side).contains(&my)
    }
}

/// The area an expiry list covers, as a set of quadtree squares (see the module docs).
#[derive(Debug, Clone)]
pub struct MetatileSet {
    max_zoom: u8,
    squares: HashSet<Square>,
    /// Most squares this set may hold; a square beyond it is not added and the set is
    /// marked [`MetatileSet::overflowed`].
    limit: usize,
    overflowed: bool,
}

impl MetatileSet {
    /// An empty set for metatiles up to `max_zoom` (at most [`MAX_ZOOM`]).
    pub fn new(max_zoom: u8) -> Self {
        Self::with_limit(max_zoom, usize::MAX)
    }

    /// An empty set that holds at most `limit` squares (what its memory grows with):
    /// inputs that would need more stop being added and mark it
    /// [`MetatileSet::overflowed`], so a caller can refuse them in bounded memory and
    /// time.
    pub fn with_limit(max_zoom: u8, limit: usize) -> Self {
        Self {
            max_zoom: max_zoom.min(MAX_ZOOM),
            squares: HashSet::new(),
            limit,
            overflowed: false,
        }
    }

    /// Whether something was left out because the set was full: it names less than
    /// its input.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    fn add(&mut self, square: Square) {
        if self.overflowed {
            return;
        }
        if self.squares.len() >= self.limit && !self.squares.contains(&square) {
            self.overflowed = true;
            return;
        }
        self.squares.insert(square);
    }

    /// The highest zoom of the metatiles this set names.
    pub fn max_zoom(&self) -> u8 {
        self.max_zoom
    }

    /// The finest level a square needs: the tile level of a metatile of `max_zoom`.
    pub fn finest_level(&self) -> u8 {
        self.max_zoom.saturating_sub(META_SHIFT)
    }

    /// Adds a tile (of any zoom up to [`MAX_INPUT_ZOOM`]).
    pub fn insert(&mut self, tile: InputTile) {
        let level = tile.z.min(self.finest_level());
        let shift = u32::from(tile.z - level);
        self.add(Square {
            level,
            x: tile.x.checked_shr(shift).unwrap_or(0),
            y: tile.y.checked_shr(shift).unwrap_or(0),
        });
    }

    /// Adds every tile of a range (e.g. a bbox at one zoom) as few squares as its shape
    /// needs: a range costs in proportion to its outline, not its area.
    pub fn insert_range(&mut self, range: &TileRange) {
        let level = range.z.min(self.finest_level());
        let shift = u32::from(range.z - level);
        let down = |v: u32| v.checked_shr(shift).unwrap_or(0);
        let r = (
            down(range.min_x),
            down(range.min_y),
            down(range.max_x),
            down(range.max_y),
        );
        self.insert_node_range(
            Square {
                level: 0,
                x: 0,
                y: 0,
            },
            level,
            r,
        );
    }

    fn insert_node_range(&mut self, node: Square, level: u8, r: (u32, u32, u32, u32)) {
        let d = level - node.level;
        let (x0, y0) = (u64::from(node.x) << d, u64::from(node.y) << d);
        let (x1, y1) = (
            ((u64::from(node.x) + 1) << d) - 1,
            ((u64::from(node.y) + 1) << d) - 1,
        );
        let (rx0, ry0, rx1, ry1) = (
            u64::from(r.0),
            u64::from(r.1),
            u64::from(r.2),
            u64::from(r.3),
        );
        if self.overflowed || x1 < rx0 || x0 > rx1 || y1 < ry0 || y0 > ry1 {
            return;
        }
        if (rx0 <= x0 && x1 <= rx1 && ry0 <= y0 && y1 <= ry1) || d == 0 {
            self.add(node);
            return;
        }
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let child = Square {
                level: node.level + 1,
                x: node.x * 2 + dx,
                y: node.y * 2 + dy,
            };
            self.insert_node_range(child, level, r);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.squares.is_empty()
    }

    /// Distinct squares held (what memory grows with).
    pub fn len(&self) -> usize {
        self.squares.len()
    }

    /// The squares without those nested in another one, coarsest first.
    fn disjoint_squares(&self) -> Vec<Square> {
        let mut all: Vec<Square> = self.squares.iter().copied().collect();
        all.sort_unstable();
        all.into_iter()
            .filter(|s| {
                !(0..s.level).any(|level| {
                    let d = s.level - level;
                    self.squares.contains(&Square {
                        level,
                        x: s.x >> d,
                        y: s.y >> d,
                    })
                })
            })
            .collect()
    }

    /// The metatile blocks of zooms `min_zoom..=max_zoom`, ascending; every metatile
    /// touching the set appears in exactly one block.
    pub fn blocks(&self, min_zoom: u8) -> Blocks {
        Blocks {
            squares: self.disjoint_squares(),
            zoom: min_zoom,
            max_zoom: self.max_zoom,
            singles: Vec::new().into_iter(),
            coarse: 0,
            started: false,
        }
    }

    /// The squares as flattened (level, x, y) triples: how a set is stored and sent to
    /// the other nodes of a fleet ([`MetatileSet::from_squares_flat`] reads it back).
    pub fn squares_flat(&self) -> Vec<i32> {
        let mut squares: Vec<Square> = self.squares.iter().copied().collect();
        squares.sort_unstable();
        let as_i32 = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        squares
            .iter()
            .flat_map(|s| [i32::from(s.level), as_i32(s.x), as_i32(s.y)])
            .collect()
    }

    /// A set from [`MetatileSet::squares_flat`]'s triples. Triples that name no square
    /// of the quadtree (a level finer than the set needs, coordinates outside the grid,
    /// a partial triple) are skipped and counted in the second value.
    pub fn from_squares_flat(max_zoom: u8, flat: &[i32]) -> (Self, usize) {
        let mut set = Self::new(max_zoom);
        let finest = set.finest_level();
        let mut bad = 0;
        for t in flat.chunks(3) {
            let square = match *t {
                [level, x, y] => u8::try_from(level)
                    .ok()
                    .zip(u32::try_from(x).ok())
                    .zip(u32::try_from(y).ok())
                    .map(|((level, x), y)| Square { level, x, y })
                    .filter(|s| {
                        s.level <= finest
                            && u64::from(s.x) < 1 << s.level
                            && u64::from(s.y) < 1 << s.level
                    }),
                _ => None,
            };
            match square {
                Some(s) => {
                    set.squares.insert(s);
                }
                None => bad += 1,
            }
        }
        (set, bad)
    }

    /// How many metatiles [`MetatileSet::blocks`] covers, without enumerating them.
    pub fn metatile_count(&self, min_zoom: u8) -> u64 {
        self.blocks(min_zoom).map(|b| b.len()).sum()
    }
}

/// Iterator of [`MetatileSet::blocks`]: per zoom, first the single metatiles holding finer
/// squares (sorted, deduplicated), then the blocks covering coarser squares.
#[derive(Debug)]
pub struct Blocks {
    /// Disjoint squares, sorted by level.
    squares: Vec<Square>,
    zoom: u8,
    max_zoom: u8,
    singles: std::vec::IntoIter<(u32, u32)>,
    coarse: usize,
    started: bool,
}

impl Blocks {
    fn start_zoom(&mut self) {
        let level = self.zoom.saturating_sub(META_SHIFT);
        let mut singles: Vec<(u32, u32)> = self
            .squares
            .iter()
            .filter(|s| s.level >= level)
            .map(|s| (s.x >> (s.level - level), s.y >> (s.level - level)))
            .collect();
        singles.sort_unstable();
        singles.dedup();
        self.singles = singles.into_iter();
        self.coarse = 0;
        self.started = true;
    }
}

impl Iterator for Blocks {
    type Item = MetatileBlock;

    fn next(&mut self) -> Option<MetatileBlock> {
        loop {
            if self.zoom > self.max_zoom {
                return None;
            }
            if !self.started {
                self.start_zoom();
            }
            let z = self.zoom;
            let level = z.saturating_sub(META_SHIFT);
            if let Some((mx, my)) = self.singles.next() {
                return Some(MetatileBlock { z, mx, my, side: 1 });
            }
            if let Some(s) = self.squares.get(self.coarse).filter(|s| s.level < level) {
                self.coarse += 1;
                let d = level - s.level;
                return Some(MetatileBlock {
                    z,
                    mx: s.x << d,
                    my: s.y << d,
                    side: 1 << d,
                });
            }
            self.zoom += 1;
            self.started = false;
        }
    }
}

#[cfg(test)]
mod tests;
