//! From changed boxes to expiry work, without I/O: which styles (and which of their
//! zooms) read a table, merging boxes, and per zoom the [`MetatileSet`] of the metatiles
//! a box touches once buffered by the style's buffer at that zoom.
//!
//! A metatile is rendered from the features inside its extent grown by the style's
//! buffer (`buffer_px` device pixels, so `buffer_px * pixel_size(z)` metres: twice as
//! many metres one zoom lower). A change therefore affects a metatile of zoom z exactly
//! when the change's box, grown by that many metres, touches the metatile. Each zoom has
//! its own buffer, so the set is built zoom by zoom.

use crate::area::MetatileSet;
use crate::expire::{apply, ExpireMode, ExpirePlan, ExpireSummary, ExpireTarget, PlanError};
use crate::style::{Style, StyleSet};
use crate::tile::{Bbox, StyleName, MAX_ZOOM};
use std::collections::HashMap;
use std::sync::Arc;

/// A set of zoom levels 0..=[`MAX_ZOOM`], as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct ZoomSet(u32);

impl ZoomSet {
    pub(crate) const EMPTY: ZoomSet = ZoomSet(0);

    /// Zooms `min..=max` (clamped to [`MAX_ZOOM`]).
    pub(crate) fn range(min: u8, max: u8) -> ZoomSet {
        let mut s = ZoomSet::EMPTY;
        for z in min..=max.min(MAX_ZOOM) {
            s.insert(z);
        }
        s
    }

    pub(crate) fn insert(&mut self, z: u8) {
        if z <= MAX_ZOOM {
            self.0 |= 1 << z;
        }
    }

    pub(crate) fn contains(self, z: u8) -> bool {
        z <= MAX_ZOOM && self.0 & (1 << z) != 0
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) fn union(self, other: ZoomSet) -> ZoomSet {
        ZoomSet(self.0 | other.0)
    }

    /// The zooms, ascending.
    pub(crate) fn iter(self) -> impl Iterator<Item = u8> {
        (0..=MAX_ZOOM).filter(move |z| self.contains(*z))
    }
}

/// Whether `sql` names the table `schema.name`: the name as a whole identifier
/// (case-insensitive, quoted or not), unqualified or qualified by this schema. Reading
/// more than a parser would (a name in a comment) only expires a little more.
pub(crate) fn sql_reads_table(sql: &str, schema: &str, name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let text = sql.to_ascii_lowercase();
    let name = name.to_ascii_lowercase();
    let schema = schema.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
    for (start, _) in text.match_indices(&name) {
        let end = start + name.len();
        let before = start.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(end).copied();
        if before.is_some_and(ident) || after.is_some_and(ident) {
            continue;
        }
        // Step over an opening quote to see whether a qualifier precedes the name.
        let mut i = start;
        if before == Some(b'"') {
            i -= 1;
        }
        if i == 0 || bytes[i - 1] != b'.' {
            return true;
        }
        let mut q_end = i - 1;
        if q_end > 0 && bytes[q_end - 1] == b'"' {
            q_end -= 1;
        }
        let mut q_start = q_end;
        while q_start > 0 && ident(bytes[q_start - 1]) {
            q_start -= 1;
        }
        if &text[q_start..q_end] == schema.as_str() {
            return true;
        }
    }
    false
}

/// The zooms at which `style` queries a layer whose SQL reads the table.
pub(crate) fn zooms_reading(style: &Style, schema: &str, name: &str) -> ZoomSet {
    let mut zooms = ZoomSet::EMPTY;
    for layer in &style.layers {
        if !sql_reads_table(&layer.sql, schema, name) {
            continue;
        }
        for z in style.minzoom.max(layer.minzoom)..=style.maxzoom.min(layer.maxzoom) {
            if layer.active_at(z) {
                zooms.insert(z);
            }
        }
    }
    zooms
}

/// A style and the zooms of it that a table's changes affect.
#[derive(Debug, Clone)]
pub(crate) struct StyleZooms {
    pub style: Arc<Style>,
    pub zooms: ZoomSet,
}

/// Which styles (and zooms) a change to `schema.name` affects. A watched table that no
/// style names (read through a view or a function, or watched with `--tables`) affects
/// every zoom of every style: expiring too much is safe, too little is not.
pub(crate) fn targets_for_table(styles: &StyleSet, schema: &str, name: &str) -> Vec<StyleZooms> {
    let reading: Vec<StyleZooms> = styles
        .iter()
        .map(|style| StyleZooms {
            style: style.clone(),
            zooms: zooms_reading(style, schema, name),
        })
        .filter(|t| !t.zooms.is_empty())
        .collect();
    let named = styles.iter().any(|s| {
        s.layers
            .iter()
            .any(|l| sql_reads_table(&l.sql, schema, name))
    });
    if named {
        return reading;
    }
    styles
        .iter()
        .map(|style| StyleZooms {
            style: style.clone(),
            zooms: ZoomSet::range(style.minzoom, style.maxzoom),
        })
        .collect()
}

/// A box from the log made safe to use: clamped to the world, corners in order; a box
/// with a non-finite coordinate becomes the whole world (it must expire something).
pub(crate) fn sanitize(b: Bbox) -> Bbox {
    let values = [b.min_x, b.min_y, b.max_x, b.max_y];
    if values.iter().any(|v| !v.is_finite()) {
        return Bbox::WORLD;
    }
    let w = Bbox::WORLD;
    let clamp_x = |v: f64| v.clamp(w.min_x, w.max_x);
    let clamp_y = |v: f64| v.clamp(w.min_y, w.max_y);
    Bbox {
        min_x: clamp_x(b.min_x.min(b.max_x)),
        min_y: clamp_y(b.min_y.min(b.max_y)),
        max_x: clamp_x(b.min_x.max(b.max_x)),
        max_y: clamp_y(b.min_y.max(b.max_y)),
    }
}

fn area(b: &Bbox) -> f64 {
    b.width().max(0.0) * b.height().max(0.0)
}

/// Whether two boxes overlap or touch (closed intervals, unlike [`Bbox::intersects`]).
fn touches(a: &Bbox, b: &Bbox) -> bool {
    a.min_x <= b.max_x && b.min_x <= a.max_x && a.min_y <= b.max_y && b.min_y <= a.max_y
}

/// Passes of [`merge_boxes`]: enough for chains of merges; each pass is O(n * kept).
const MERGE_PASSES: usize = 4;

/// Merges boxes that overlap when their union covers no more than the two did
/// together (duplicates, boxes inside others, heavily overlapping boxes); boxes that
/// only graze each other stay apart, so merging never expires more than the input.
pub(crate) fn merge_boxes(boxes: Vec<Bbox>) -> Vec<Bbox> {
    let mut current = boxes;
    for _ in 0..MERGE_PASSES {
        current.sort_by(|a, b| area(b).total_cmp(&area(a)));
        let before = current.len();
        let mut kept: Vec<Bbox> = Vec::with_capacity(before);
        'next: for b in current {
            for k in kept.iter_mut() {
                if touches(k, &b) {
                    let u = k.union(&b);
                    if area(&u) <= (area(k) + area(&b)) * (1.0 + 1e-9) {
                        *k = u;
                        continue 'next;
                    }
                }
            }
            kept.push(b);
        }
        current = kept;
        if current.len() == before {
            break;
        }
    }
    current
}

/// The metatiles of zoom `z` touched by `boxes` grown by the style's buffer at `z`.
pub(crate) fn expire_set_at(style: &Style, z: u8, boxes: &[Bbox]) -> MetatileSet {
    let buffer = f64::from(style.buffer_px) * style.pixel_size(z);
    let mut set = MetatileSet::new(z);
    for b in boxes {
        set.insert_range(&b.buffered(buffer).tile_range(z));
    }
    set
}

/// What the watcher does to the metatiles of a change: `mode` everywhere, except
/// zooms up to `render_up_to` which are re-rendered at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchPolicy {
    pub mode: ExpireMode,
    pub render_up_to: Option<u8>,
}

impl WatchPolicy {
    /// The plan for zoom `z` alone (`z` is a style's zoom, at most `MAX_ZOOM`).
    pub fn plan_at(&self, z: u8) -> Result<ExpirePlan, PlanError> {
        let from = self.render_up_to.map_or(0, |n| n.saturating_add(1));
        ExpirePlan::for_mode_from(z, z, self.mode, from)
    }
}

/// The boxes that affect one style, grouped by the zooms they affect (tables read at
/// different zooms are kept apart).
#[derive(Debug, Clone)]
pub(crate) struct StyleWork {
    pub style: Arc<Style>,
    pub groups: Vec<(ZoomSet, Vec<Bbox>)>,
}

/// Collects a batch's boxes per style: `changes` are (targets of the row's table, box).
pub(crate) fn group_by_style<'a>(
    changes: impl IntoIterator<Item = (&'a [StyleZooms], Bbox)>,
) -> Vec<StyleWork> {
    let mut by_style: HashMap<StyleName, StyleWork> = HashMap::new();
    for (targets, bbox) in changes {
        let bbox = sanitize(bbox);
        for t in targets {
            let work = by_style
                .entry(t.style.name.clone())
                .or_insert_with(|| StyleWork {
                    style: t.style.clone(),
                    groups: Vec::new(),
                });
            match work.groups.iter_mut().find(|(z, _)| *z == t.zooms) {
                Some((_, boxes)) => boxes.push(bbox),
                None => work.groups.push((t.zooms, vec![bbox])),
            }
        }
    }
    let mut out: Vec<StyleWork> = by_style.into_values().collect();
    out.sort_by(|a, b| a.style.name.cmp(&b.style.name));
    out
}

/// What expiring a batch did, per style and in total.
#[derive(Debug, Clone, Default)]
pub(crate) struct BatchSummary {
    pub per_style: Vec<(StyleName, ExpireSummary)>,
}

impl BatchSummary {
    /// Metatiles changed (deleted, marked dirty, or queued) over all styles.
    pub(crate) fn changed(&self) -> u64 {
        self.per_style.iter().map(|(_, s)| s.total().changed).sum()
    }

    /// Metatiles the boxes touch over all styles (existing or not).
    pub(crate) fn matched(&self) -> u64 {
        self.per_style.iter().map(|(_, s)| s.total().matched).sum()
    }

    pub(crate) fn errors(&self) -> u64 {
        self.per_style.iter().map(|(_, s)| s.total().errors).sum()
    }
}

/// Expires every style's work zoom by zoom through `target` (blocking: disk I/O, and a
/// full render queue makes `render` wait). Boxes are merged once per group; at each
/// zoom the groups that affect it go into one [`MetatileSet`], so a metatile touched by
/// many boxes is handled once, and big areas are walked on disk, not enumerated.
pub(crate) fn expire_work(
    target: &dyn ExpireTarget,
    policy: WatchPolicy,
    work: Vec<StyleWork>,
) -> BatchSummary {
    let mut out = BatchSummary::default();
    for StyleWork { style, groups } in work {
        let groups: Vec<(ZoomSet, Vec<Bbox>)> = groups
            .into_iter()
            .map(|(zooms, boxes)| (zooms, merge_boxes(boxes)))
            .collect();
        let all = groups
            .iter()
            .fold(ZoomSet::EMPTY, |acc, (z, _)| acc.union(*z));
        let mut summary = ExpireSummary::default();
        for z in all.iter() {
            let boxes: Vec<Bbox> = groups
                .iter()
                .filter(|(zooms, _)| zooms.contains(z))
                .flat_map(|(_, b)| b.iter().copied())
                .collect();
            let set = expire_set_at(&style, z, &boxes);
            match policy.plan_at(z) {
                Ok(plan) => summary.add(&apply(target, &style.name, &plan, &set, &mut |_| {})),
                Err(e) => {
                    tracing::warn!(style = %style.name, z, error = %e, "watch: no plan for this zoom")
                }
            }
        }
        out.per_style.push((style.name.clone(), summary));
    }
    out
}

#[cfg(test)]
mod tests;
