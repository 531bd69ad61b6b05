//! UTFGrid 1.3 of a metatile: for every tile, which feature of the style's
//! interactivity layer lies under each 4x4-pixel cell, as the JSON map clients read
//! (`grid` rows of characters, `keys`, `data`).
//!
//! The features are drawn from the same query rows as the tiles, on one canvas of cells
//! for the whole metatile (so a feature is the same key in all 64 tiles), without
//! anti-aliasing, each in a colour that encodes its index: later features are drawn over
//! earlier ones, as on the map. Polygons are filled, lines stroked as wide as the rule
//! draws them (at least a cell), points as a disc at least two cells across, so the cell
//! holding a point is always that point's.

use super::paint::{shape_of, PixelTransform};
use crate::source::{AttributeValue, MetatileData};
use crate::style::{Rule, Style};
use crate::tile::{MetatileCoord, METATILE, TILES_PER_METATILE};
use serde_json::{Map, Value};
use tiny_skia::{
    BlendMode, Color, FillRule, LineCap, LineJoin, Paint, PathBuilder, Pixmap, Stroke, Transform,
};

/// Pixels per grid cell edge: UTFGrid's usual resolution (64x64 cells for 256 px).
pub const GRID_CELL_PX: u32 = 4;
/// Smallest disc drawn for a point, in cells: the cell under the point is covered.
const MIN_POINT_CELLS: f32 = 2.0;
/// Most features one tile's grid names; beyond it the rest are not interactive (keys
/// past this would reach UTF-16 surrogates).
const MAX_KEYS: usize = 50_000;

/// The 64 UTFGrid JSON documents of a metatile, in metatile index order (empty for
/// tiles outside the world below zoom 3, like the tiles). `None` when the style has no
/// interactivity.
pub fn render_grids(
    style: &Style,
    meta: MetatileCoord,
    data: &MetatileData,
) -> Option<Vec<Vec<u8>>> {
    let interactivity = style.interactivity.as_ref()?;
    let layer = style.layers.get(interactivity.layer)?;
    let layer_data = data.layers.get(interactivity.layer)?;
    let cells = (style.tile_size / GRID_CELL_PX).max(1);
    let width = meta.width_in_tiles();
    let side = width * cells;
    let mut canvas = Pixmap::new(side, side)?;
    let t = PixelTransform::with_sizes(meta, f64::from(cells), 0.0);
    let cell_px = GRID_CELL_PX as f32 / style.scale;
    let zf = f32::from(meta.z);
    let active = layer.active_at(meta.z);
    for (i, feature) in layer_data.features.iter().enumerate() {
        if !active || i + 1 >= 1 << 24 {
            break;
        }
        let Some(rule) = layer
            .rules
            .iter()
            .find(|r| r.active_at(meta.z) && r.matches(feature.kind.as_deref()))
        else {
            continue;
        };
        super::give_way();
        let shape = shape_of(&t, &feature.geometry);
        let id = i as u32 + 1;
        let mut paint = Paint::default();
        paint.set_color(Color::from_rgba8(
            (id >> 16) as u8,
            (id >> 8) as u8,
            id as u8,
            255,
        ));
        paint.anti_alias = false;
        paint.blend_mode = BlendMode::Source;
        if let Some(path) = &shape.path {
            if shape.polygonal {
                canvas.fill_path(path, &paint, FillRule::EvenOdd, Transform::identity(), None);
            }
            let width = (line_width_px(rule, zf) * style.scale / cell_px).max(1.0);
            let stroke = Stroke {
                width,
                line_cap: LineCap::Round,
                line_join: LineJoin::Round,
                ..Stroke::default()
            };
            if !shape.polygonal || rule.stroke.is_some() {
                canvas.stroke_path(path, &paint, &stroke, Transform::identity(), None);
            }
        }
        let diameter = (marker_px(rule, zf) * style.scale / cell_px).max(MIN_POINT_CELLS);
        for &(x, y) in &shape.points {
            let mut pb = PathBuilder::new();
            pb.push_circle(x, y, diameter / 2.0);
            if let Some(disc) = pb.finish() {
                canvas.fill_path(
                    &disc,
                    &paint,
                    FillRule::Winding,
                    Transform::identity(),
                    None,
                );
            }
        }
    }
    let ids: Vec<u32> = canvas
        .pixels()
        .iter()
        .map(|p| match p.alpha() {
            0 => 0,
            _ => u32::from(p.red()) << 16 | u32::from(p.green()) << 8 | u32::from(p.blue()),
        })
        .collect();
    let grids = (0..TILES_PER_METATILE)
        .map(|index| {
            let (dx, dy) = (index as u32 / METATILE, index as u32 % METATILE);
            if dx >= width || dy >= width {
                return Vec::new();
            }
            tile_grid(&ids, side, (dx * cells, dy * cells), cells, |id| {
                layer_data
                    .attributes
                    .get(id as usize - 1)
                    .map(|values| data_of(&interactivity.fields, values))
            })
        })
        .collect();
    Some(grids)
}

/// The widest line a rule draws, in pixels at scale 1.
fn line_width_px(rule: &Rule, zf: f32) -> f32 {
    let w = |l: &Option<crate::style::LineStyle>| l.as_ref().map_or(0.0, |l| l.width.at(zf));
    w(&rule.stroke).max(w(&rule.casing))
}

fn marker_px(rule: &Rule, zf: f32) -> f32 {
    rule.marker.as_ref().map_or(0.0, |m| m.size.at(zf))
}

fn data_of(fields: &[String], values: &[AttributeValue]) -> Value {
    let mut object = Map::with_capacity(fields.len());
    for (name, value) in fields.iter().zip(values) {
        object.insert(
            name.clone(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
    }
    Value::Object(object)
}

/// The character of key number `k` (UTFGrid 1.3: 32 + k, skipping `"` and `\`).
pub fn key_char(k: usize) -> char {
    let mut cp = k as u32 + 32;
    if cp >= 34 {
        cp += 1;
    }
    if cp >= 92 {
        cp += 1;
    }
    char::from_u32(cp).unwrap_or(' ')
}

/// One tile's UTFGrid: its `cells` x `cells` square of the metatile's id canvas.
fn tile_grid(
    ids: &[u32],
    stride: u32,
    (x0, y0): (u32, u32),
    cells: u32,
    data: impl Fn(u32) -> Option<Value>,
) -> Vec<u8> {
    let mut keys: Vec<String> = vec![String::new()];
    let mut key_of: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    let mut objects = Map::new();
    let mut rows = Vec::with_capacity(cells as usize);
    for y in y0..y0 + cells {
        let mut row = String::with_capacity(cells as usize);
        for x in x0..x0 + cells {
            let id = ids[(y * stride + x) as usize];
            let k = if id == 0 {
                0
            } else if let Some(&k) = key_of.get(&id) {
                k
            } else if keys.len() < MAX_KEYS {
                let key = id.to_string();
                objects.insert(key.clone(), data(id).unwrap_or(Value::Null));
                keys.push(key);
                key_of.insert(id, keys.len() - 1);
                keys.len() - 1
            } else {
                0
            };
            row.push(key_char(k));
        }
        rows.push(Value::String(row));
    }
    let doc = serde_json::json!({ "grid": rows, "keys": keys, "data": objects });
    serde_json::to_vec(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_skip_the_quote_and_the_backslash() {
        assert_eq!(key_char(0), ' ');
        assert_eq!(key_char(1), '!');
        assert_eq!(key_char(2), '#');
        assert_eq!(key_char(58), '[');
        assert_eq!(key_char(59), ']');
        assert_eq!(key_char(93), '\u{7f}');
    }
}
