//! Labels of a metatile: the `text` rules' candidates from every layer, placed on the
//! whole canvas (metatile plus buffer) in priority order, drawn once after the map.
//!
//! Placing on the whole canvas before slicing is what keeps a label that straddles a
//! tile edge identical on both tiles: the tiles are cut from one picture.

use super::paint::{to_color, PixelTransform};
use crate::source::MetatileData;
use crate::style::{Layer, Rule, Style, TextPlacement, TextSymbolizer};
use crate::text::{FontSet, LabelPlacer, TextStyle};
use crate::tile::MetatileCoord;
use geo::{Geometry, InteriorPoint};
use tiny_skia::{Pixmap, Rect, Transform};

/// One label to offer: which feature, which rule, and its rank.
struct Candidate<'d> {
    priority: i32,
    text: &'d str,
    geometry: &'d Geometry<f64>,
    /// Index into the resolved styles.
    style: usize,
    placement: &'d TextPlacement,
}

/// Places every label of the metatile on `pixmap` (the whole canvas) and draws them on
/// top of what is painted. Returns how many labels were placed.
pub(crate) fn label(
    style: &Style,
    meta: MetatileCoord,
    data: &MetatileData,
    fonts: &FontSet,
    pixmap: &mut Pixmap,
) -> usize {
    let z = meta.z;
    let zf = f32::from(z);
    // Resolved styles, one per active text rule; candidates in layer, row, rule order.
    let mut styles: Vec<TextStyle> = Vec::new();
    let mut candidates: Vec<Candidate<'_>> = Vec::new();
    for (layer, layer_data) in style.layers.iter().zip(&data.layers) {
        if !layer.active_at(z) || layer_data.features.is_empty() {
            continue;
        }
        let rules: Vec<(usize, &Rule, &TextSymbolizer)> = text_rules(layer, z)
            .map(|(rule, sym)| {
                styles.push(text_style(sym, zf));
                (styles.len() - 1, rule, sym)
            })
            .collect();
        if rules.is_empty() {
            continue;
        }
        for feature in &layer_data.features {
            let Some(text) = feature.label.as_deref() else {
                continue;
            };
            if text.trim().is_empty() {
                continue;
            }
            for &(index, rule, sym) in &rules {
                if rule.matches(feature.kind.as_deref()) {
                    candidates.push(Candidate {
                        priority: sym.priority,
                        text,
                        geometry: &feature.geometry,
                        style: index,
                        placement: &sym.placement,
                    });
                }
            }
        }
    }
    if candidates.is_empty() {
        return 0;
    }
    // Stable: equal priorities keep layer, row and rule order.
    candidates.sort_by_key(|c| std::cmp::Reverse(c.priority));

    let side = pixmap.width() as f32;
    let Some(area) = Rect::from_xywh(0.0, 0.0, side, pixmap.height() as f32) else {
        return 0;
    };
    let transform = PixelTransform::new(style, meta);
    let mut placer = LabelPlacer::new(fonts, area, style.scale);
    let mut line = Vec::new();
    for c in &candidates {
        super::give_way();
        let text_style = &styles[c.style];
        match c.placement {
            TextPlacement::Point { .. } => {
                if let Some(p) = anchor(c.geometry) {
                    placer.place_point(c.text, transform.apply(p.x(), p.y()), text_style);
                }
            }
            TextPlacement::Line { .. } => {
                for_each_line(c.geometry, &mut |coords| {
                    line.clear();
                    line.extend(coords.iter().map(|p| transform.apply(p.x, p.y)));
                    placer.place_line(c.text, &line, text_style);
                });
            }
        }
    }
    placer.draw(&mut pixmap.as_mut(), Transform::identity());
    placer.len()
}

/// The active text rules of a layer at zoom `z`.
fn text_rules(layer: &Layer, z: u8) -> impl Iterator<Item = (&Rule, &TextSymbolizer)> {
    layer
        .rules
        .iter()
        .filter(move |r| r.active_at(z))
        .filter_map(|r| Some((r, r.text.as_ref()?)))
}

fn text_style(sym: &TextSymbolizer, zf: f32) -> TextStyle {
    let mut style = TextStyle {
        family: sym.font.clone(),
        size_px: sym.size.at(zf),
        fill: to_color(sym.fill),
        halo: to_color(sym.halo),
        halo_px: sym.halo_width,
        padding_px: sym.padding,
        repeat_distance_px: sym.repeat_distance,
        ..TextStyle::default()
    };
    match sym.placement {
        TextPlacement::Point { offset, wrap } => {
            style.offset_px = offset;
            style.wrap_px = wrap;
        }
        TextPlacement::Line {
            spacing,
            max_bend_deg,
        } => {
            style.spacing_px = spacing;
            style.max_bend_deg = max_bend_deg;
        }
    }
    style
}

/// Where a point label of this geometry goes: the point itself (the first of a
/// multipoint), else an interior point of the line or polygon.
fn anchor(geometry: &Geometry<f64>) -> Option<geo::Point<f64>> {
    match geometry {
        Geometry::Point(p) => Some(*p),
        Geometry::MultiPoint(mp) => mp.0.first().copied(),
        other => other.interior_point(),
    }
}

/// Calls `f` with every line of the geometry: line strings, and polygon outlines.
fn for_each_line(geometry: &Geometry<f64>, f: &mut dyn FnMut(&[geo::Coord<f64>])) {
    match geometry {
        Geometry::Line(l) => f(&[l.start, l.end]),
        Geometry::LineString(ls) => f(&ls.0),
        Geometry::MultiLineString(mls) => mls.iter().for_each(|ls| f(&ls.0)),
        Geometry::Polygon(p) => f(&p.exterior().0),
        Geometry::MultiPolygon(mp) => mp.iter().for_each(|p| f(&p.exterior().0)),
        Geometry::GeometryCollection(gc) => gc.iter().for_each(|g| for_each_line(g, f)),
        Geometry::Point(_)
        | Geometry::MultiPoint(_)
        | Geometry::Rect(_)
        | Geometry::Triangle(_) => {}
    }
}
