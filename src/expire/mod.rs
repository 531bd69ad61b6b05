//! Expiry lists to metatile work, with render_expired's semantics and the fixes of
//! METATILE.md. Independent of stdin and of the CLI: `metatiled expire` ([`cli`]) and
//! the admin API use the same pieces.
//!
//! 1. [`TileLines`] reads `z/x/y` lines from any reader (bounded line length, line
//!    numbers for bad lines); [`parse_tile_line`] parses one.
//! 2. [`ExpireSet`] collects the input as quadtree squares. A tile above `max_zoom` is
//!    carried up to it; a tile below stands for all of its descendants (mod_tile only
//!    reaches the top-left one). Squares finer than a metatile of `max_zoom` are reduced
//!    to it, so memory grows with the distinct metatiles named, never with the area.
//! 3. [`ExpireSet::blocks`] yields, zoom by zoom from `min_zoom` to `max_zoom`, square
//!    blocks of metatiles that cover every metatile touching the input, each metatile
//!    exactly once (z0-2 included, unlike mod_tile). A z0 line with max zoom 20 is one
//!    block of 2^17 x 2^17 metatiles at z20, not 2^34 items in memory.
//! 4. [`apply`] acts on every metatile that exists: [`ExpirePlan::action_at`] gives
//!    delete (z >= delete-from), mark dirty (z >= touch-from) or render (below). A big
//!    block is walked on disk (only directories that exist are read) rather than
//!    enumerated, so its cost is what the cache holds; a zoom without a directory is
//!    skipped whole.
//!
//! How a metatile relates to the quadtree: the metatile at zoom z covers exactly the
//! tile of zoom `z - 3` (the whole world below zoom 3). So "the metatiles of zoom z that
//! touch the input" are the quadtree nodes of level `max(z - 3, 0)` that touch one of
//! the input squares: an ancestor of a finer square, or a descendant of a coarser one.
//! After dropping squares nested in others, those two kinds never overlap.

pub mod area;
pub mod cli;

use crate::cache::path::hash_components;
use crate::cache::{CacheError, DiskCache, ExpireOutcome, TileCache};
use crate::tile::{MetatileCoord, StyleName, TileCoord, TileRange, MAX_ZOOM, METATILE};
use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead};
use std::path::PathBuf;
use std::time::SystemTime;
use thiserror::Error;

/// Highest zoom accepted on an input line; such tiles are carried up to `max_zoom`.
pub const MAX_INPUT_ZOOM: u8 = 30;
/// Longest accepted input line; longer lines are bad lines (and memory stays bounded).
pub const MAX_LINE_BYTES: usize = 256;
/// Blocks with more metatiles than this are walked on disk instead of enumerated.
pub const WALK_ABOVE: u64 = 1024;
/// Metatiles between two progress reports of [`apply`].
const PROGRESS_STEP: u64 = 4096;
/// Zoom levels between a metatile and the tile of the same extent (8 = 2^3).
const META_SHIFT: u8 = 3;

/// A tile from an input line: like [`TileCoord`] but up to [`MAX_INPUT_ZOOM`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InputTile {
    pub z: u8,
    pub x: u32,
    pub y: u32,
}

impl From<TileCoord> for InputTile {
    fn from(t: TileCoord) -> Self {
        Self {
            z: t.z,
            x: t.x,
            y: t.y,
        }
    }
}

/// Why a line is not a tile.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LineError {
    #[error("expected z/x/y")]
    Shape,
    #[error("{0} is not a whole number")]
    NotANumber(&'static str),
    #[error("zoom {0} is above {MAX_INPUT_ZOOM}")]
    ZoomTooHigh(u64),
    #[error("tile {x}/{y} is outside the grid of zoom {z}")]
    OutOfRange { z: u8, x: u64, y: u64 },
    #[error("line is longer than {MAX_LINE_BYTES} bytes")]
    TooLong,
}

/// A line that was reported and skipped.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("line {line_no}: {text:?}: {error}")]
pub struct BadLine {
    pub line_no: u64,
    /// The line (lossy UTF-8, cut to [`MAX_LINE_BYTES`]).
    pub text: String,
    pub error: LineError,
}

/// Parses one `z/x/y` line; surrounding whitespace is ignored, a blank line is `None`.
pub fn parse_tile_line(line: &[u8]) -> Result<Option<InputTile>, LineError> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Ok(None);
    }
    let mut parts = line.split(|b| *b == b'/');
    let (Some(z), Some(x), Some(y), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(LineError::Shape);
    };
    let number = |field: &'static str, s: &[u8]| -> Result<u64, LineError> {
        if s.is_empty() || s.len() > 12 || !s.iter().all(u8::is_ascii_digit) {
            return Err(LineError::NotANumber(field));
        }
        Ok(s.iter().fold(0u64, |v, d| v * 10 + u64::from(d - b'0')))
    };
    let (z, x, y) = (number("zoom", z)?, number("x", x)?, number("y", y)?);
    if z > u64::from(MAX_INPUT_ZOOM) {
        return Err(LineError::ZoomTooHigh(z));
    }
    let z = z as u8;
    let size = 1u64 << z;
    if x >= size || y >= size {
        return Err(LineError::OutOfRange { z, x, y });
    }
    Ok(Some(InputTile {
        z,
        x: x as u32,
        y: y as u32,
    }))
}

/// `z/x/y` lines from a reader: each item is a tile or a bad line (with its number);
/// blank lines are skipped. Lines longer than [`MAX_LINE_BYTES`] are bad and are not
/// held in memory.
#[derive(Debug)]
pub struct TileLines<R> {
    reader: R,
    line_no: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> TileLines<R> {
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            line_no: 0,
            buf: Vec::with_capacity(64),
        }
    }

    /// Lines read so far (blank and bad ones included).
    pub fn lines_read(&self) -> u64 {
        self.line_no
    }

    /// Reads one line into `buf`, keeping at most `MAX_LINE_BYTES + 1` bytes of it.
    /// Returns false at the end of the input.
    fn read_line(&mut self) -> io::Result<bool> {
        self.buf.clear();
        let mut any = false;
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                return Ok(any);
            }
            any = true;
            let (line_part, used, done) = match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => (&chunk[..i], i + 1, true),
                None => (chunk, chunk.len(), false),
            };
            let room = (MAX_LINE_BYTES + 1).saturating_sub(self.buf.len());
            self.buf
                .extend_from_slice(&line_part[..line_part.len().min(room)]);
            self.reader.consume(used);
            if done {
                return Ok(true);
            }
        }
    }
}

impl<R: BufRead> Iterator for TileLines<R> {
    type Item = io::Result<Result<InputTile, BadLine>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.read_line() {
                Err(e) => return Some(Err(e)),
                Ok(false) => return None,
                Ok(true) => {}
            }
            self.line_no += 1;
            let parsed = if self.buf.len() > MAX_LINE_BYTES {
                Err(LineError::TooLong)
            } else {
                parse_tile_line(&self.buf)
            };
            match parsed {
                Ok(None) => continue,
                Ok(Some(tile)) => return Some(Ok(Ok(tile))),
                Err(error) => {
                    let shown = &self.buf[..self.buf.len().min(MAX_LINE_BYTES)];
                    return Some(Ok(Err(BadLine {
                        line_no: self.line_no,
                        text: String::from_utf8_lossy(shown).trim_end().to_string(),
                        error,
                    })));
                }
            }
        }
    }
}

/// What to do with the existing metatiles of one zoom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpireAction {
    /// Remove the file (the next request renders it).
    Delete,
    /// Rewind its mtime: served stale, re-rendered in the background.
    MarkDirty,
    /// Re-render it (offline, without a render queue, it is marked dirty instead).
    Render,
}

impl ExpireAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ExpireAction::Delete => "delete",
            ExpireAction::MarkDirty => "dirty",
            ExpireAction::Render => "render",
        }
    }
}

/// Why an expiry plan is refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PlanError {
    #[error("max-zoom {0} is above {MAX_ZOOM}, the highest zoom of the cache layout")]
    ZoomTooHigh(u8),
    #[error("min-zoom {min} is above max-zoom {max}")]
    MinAboveMax { min: u8, max: u8 },
}

/// Zoom range and per-zoom action, as render_expired's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpirePlan {
    pub min_zoom: u8,
    pub max_zoom: u8,
    /// Delete metatiles at this zoom and above.
    pub delete_from: Option<u8>,
    /// Mark metatiles dirty at this zoom and above (below `delete_from`).
    pub touch_from: Option<u8>,
}

impl ExpirePlan {
    pub fn new(
        min_zoom: u8,
        max_zoom: u8,
        delete_from: Option<u8>,
        touch_from: Option<u8>,
    ) -> Result<Self, PlanError> {
        if max_zoom > MAX_ZOOM {
            return Err(PlanError::ZoomTooHigh(max_zoom));
        }
        if min_zoom > max_zoom {
            return Err(PlanError::MinAboveMax {
                min: min_zoom,
                max: max_zoom,
            });
        }
        Ok(Self {
            min_zoom,
            max_zoom,
            delete_from,
            touch_from,
        })
    }

    /// The action for metatiles of zoom `z`.
    pub fn action_at(&self, z: u8) -> ExpireAction {
        if self.delete_from.is_some_and(|d| z >= d) {
            ExpireAction::Delete
        } else if self.touch_from.is_some_and(|t| z >= t) {
            ExpireAction::MarkDirty
        } else {
            ExpireAction::Render
        }
    }
}

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
pub struct ExpireSet {
    max_zoom: u8,
    squares: HashSet<Square>,
}

impl ExpireSet {
    /// An empty set for metatiles up to `max_zoom` (at most [`MAX_ZOOM`]).
    pub fn new(max_zoom: u8) -> Self {
        Self {
            max_zoom: max_zoom.min(MAX_ZOOM),
            squares: HashSet::new(),
        }
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
        self.squares.insert(Square {
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
        if x1 < rx0 || x0 > rx1 || y1 < ry0 || y0 > ry1 {
            return;
        }
        if (rx0 <= x0 && x1 <= rx1 && ry0 <= y0 && y1 <= ry1) || d == 0 {
            self.squares.insert(node);
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

    /// How many metatiles [`ExpireSet::blocks`] covers, without enumerating them.
    pub fn metatile_count(&self, min_zoom: u8) -> u64 {
        self.blocks(min_zoom).map(|b| b.len()).sum()
    }
}

/// Iterator of [`ExpireSet::blocks`]: per zoom, first the single metatiles holding finer
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

/// Where expiry acts: the disk cache offline, the [`TileCache`] (with its memory layer)
/// in the server, or the server's own wrapper that queues renders.
pub trait ExpireTarget {
    fn disk(&self) -> &DiskCache;
    fn delete(&self, style: &StyleName, meta: MetatileCoord) -> Result<ExpireOutcome, CacheError>;
    fn mark_dirty(
        &self,
        style: &StyleName,
        meta: MetatileCoord,
    ) -> Result<ExpireOutcome, CacheError>;
    /// Re-render an existing metatile (`Absent` when it does not exist).
    fn render(&self, style: &StyleName, meta: MetatileCoord) -> Result<ExpireOutcome, CacheError>;
    /// True once the work should end early (a cancelled job); [`apply`] then stops at
    /// the next block.
    fn stopped(&self) -> bool {
        false
    }
}

/// Offline: no render queue, so `render` marks dirty (the server re-renders a dirty
/// metatile when it is next asked for).
impl ExpireTarget for DiskCache {
    fn disk(&self) -> &DiskCache {
        self
    }
    fn delete(&self, style: &StyleName, meta: MetatileCoord) -> Result<ExpireOutcome, CacheError> {
        DiskCache::delete(self, style, meta)
    }
    fn mark_dirty(
        &self,
        style: &StyleName,
        meta: MetatileCoord,
    ) -> Result<ExpireOutcome, CacheError> {
        DiskCache::mark_dirty(self, style, meta, SystemTime::now())
    }
    fn render(&self, style: &StyleName, meta: MetatileCoord) -> Result<ExpireOutcome, CacheError> {
        DiskCache::mark_dirty(self, style, meta, SystemTime::now())
    }
}

/// Like the offline target, and the memory layer forgets what changed.
impl ExpireTarget for TileCache {
    fn disk(&self) -> &DiskCache {
        TileCache::disk(self)
    }
    fn delete(&self, style: &StyleName, meta: MetatileCoord) -> Result<ExpireOutcome, CacheError> {
        TileCache::delete(self, style, meta)
    }
    fn mark_dirty(
        &self,
        style: &StyleName,
        meta: MetatileCoord,
    ) -> Result<ExpireOutcome, CacheError> {
        TileCache::mark_dirty(self, style, meta)
    }
    fn render(&self, style: &StyleName, meta: MetatileCoord) -> Result<ExpireOutcome, CacheError> {
        TileCache::mark_dirty(self, style, meta)
    }
}

/// What one action did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActionCounts {
    /// Metatiles of the input at the zooms of this action (existing or not).
    pub matched: u64,
    /// Deleted, marked dirty, or rendered.
    pub changed: u64,
    /// Already dirty: left as they were.
    pub already_dirty: u64,
    /// Not in the cache.
    pub absent: u64,
    /// Failed (logged); the run goes on.
    pub errors: u64,
}

impl ActionCounts {
    fn record(&mut self, outcome: &Result<ExpireOutcome, CacheError>) {
        match outcome {
            Ok(ExpireOutcome::Changed) => self.changed += 1,
            Ok(ExpireOutcome::AlreadyDirty) => self.already_dirty += 1,
            Ok(ExpireOutcome::Absent) => self.absent += 1,
            Err(_) => self.errors += 1,
        }
    }

    pub fn add(&mut self, o: &ActionCounts) {
        self.matched += o.matched;
        self.changed += o.changed;
        self.already_dirty += o.already_dirty;
        self.absent += o.absent;
        self.errors += o.errors;
    }
}

/// The result of [`apply`], per action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpireSummary {
    pub delete: ActionCounts,
    pub mark_dirty: ActionCounts,
    pub render: ActionCounts,
}

impl ExpireSummary {
    pub fn for_action(&mut self, action: ExpireAction) -> &mut ActionCounts {
        match action {
            ExpireAction::Delete => &mut self.delete,
            ExpireAction::MarkDirty => &mut self.mark_dirty,
            ExpireAction::Render => &mut self.render,
        }
    }

    /// Adds another summary's counts to these.
    pub fn add(&mut self, o: &ExpireSummary) {
        self.delete.add(&o.delete);
        self.mark_dirty.add(&o.mark_dirty);
        self.render.add(&o.render);
    }

    pub fn total(&self) -> ActionCounts {
        let mut t = ActionCounts::default();
        for c in [&self.delete, &self.mark_dirty, &self.render] {
            t.add(c);
        }
        t
    }
}

/// Progress of [`apply`]: metatiles handled out of the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpireProgress {
    pub done: u64,
    pub total: u64,
}

/// Which of a zoom's top two hash directories exist, learnt as metatiles are looked
/// up: a metatile under a missing directory is absent without a system call. Edges of
/// huge areas enumerate many single metatiles that a sparse cache does not hold; this
/// makes them cost a hash lookup each. At most 256 + 65,536 entries per zoom.
#[derive(Debug, Default)]
struct DirPresence {
    zoom: Option<u8>,
    zoom_dir: PathBuf,
    zoom_present: bool,
    top: HashMap<u8, bool>,
    second: HashMap<(u8, u8), bool>,
}

impl DirPresence {
    fn new(style_dir: PathBuf, z: u8) -> Self {
        let zoom_dir = style_dir.join(z.to_string());
        Self {
            zoom: Some(z),
            zoom_present: zoom_dir.is_dir(),
            zoom_dir,
            top: HashMap::new(),
            second: HashMap::new(),
        }
    }

    /// False when the metatile's directory is known not to exist.
    fn may_hold(&mut self, meta: MetatileCoord) -> bool {
        let h = hash_components(meta);
        let (h4, h3) = (h[4], h[3]);
        let dir = &self.zoom_dir;
        let top = *self
            .top
            .entry(h4)
            .or_insert_with(|| dir.join(h4.to_string()).is_dir());
        top && *self
            .second
            .entry((h4, h3))
            .or_insert_with(|| dir.join(h4.to_string()).join(h3.to_string()).is_dir())
    }
}

/// Acts on every existing metatile of `set` at zooms `plan.min_zoom..=plan.max_zoom`,
/// each once. Failures on single metatiles are logged and counted; the run goes on.
/// `progress` is called every few thousand metatiles and after big blocks.
pub fn apply(
    target: &dyn ExpireTarget,
    style: &StyleName,
    plan: &ExpirePlan,
    set: &ExpireSet,
    progress: &mut dyn FnMut(ExpireProgress),
) -> ExpireSummary {
    let total = set.metatile_count(plan.min_zoom);
    let mut summary = ExpireSummary::default();
    let mut done = 0u64;
    let mut next_report = PROGRESS_STEP;
    let mut dirs = DirPresence::default();
    for block in set.blocks(plan.min_zoom) {
        if target.stopped() {
            break;
        }
        let action = plan.action_at(block.z);
        let act = |meta: MetatileCoord| {
            let outcome = match action {
                ExpireAction::Delete => target.delete(style, meta),
                ExpireAction::MarkDirty => target.mark_dirty(style, meta),
                ExpireAction::Render => target.render(style, meta),
            };
            if let Err(e) = &outcome {
                tracing::warn!(%style, meta.z = meta.z, meta.x = meta.x, meta.y = meta.y, error = %crate::cache::error_chain(e), "expire failed");
            }
            outcome
        };
        let counts = summary.for_action(action);
        counts.matched += block.len();
        if dirs.zoom != Some(block.z) {
            dirs = DirPresence::new(target.disk().style_dir(style), block.z);
        }
        if !dirs.zoom_present {
            // Nothing of this style at this zoom: no file to look for.
            counts.absent += block.len();
            done += block.len();
            if done >= next_report {
                progress(ExpireProgress { done, total });
                next_report = done + PROGRESS_STEP;
            }
        } else if block.len() > WALK_ABOVE {
            let mut found = 0u64;
            let walked = target.disk().for_each_existing_in(
                style,
                block.z,
                (block.mx, block.my, block.side),
                &mut |meta| {
                    found += 1;
                    counts.record(&act(meta));
                    Ok(())
                },
            );
            counts.absent += block.len().saturating_sub(found);
            if let Err(e) = walked {
                tracing::warn!(%style, z = block.z, error = %crate::cache::error_chain(&e), "cannot walk the cache");
                counts.errors += 1;
            }
            done += block.len();
            progress(ExpireProgress { done, total });
        } else {
            for meta in block.metatiles() {
                if dirs.may_hold(meta) {
                    counts.record(&act(meta));
                } else {
                    counts.absent += 1;
                }
            }
            done += block.len();
            if done >= next_report {
                progress(ExpireProgress { done, total });
                next_report = done + PROGRESS_STEP;
            }
        }
    }
    progress(ExpireProgress { done, total });
    summary
}

#[cfg(test)]
mod tests;
