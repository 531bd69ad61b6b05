//! Painting a metatile's features onto one tiny-skia pixmap.
//!
//! Coordinates go from EPSG:3857 metres to global pixels of the zoom (in f64), then the
//! pixmap's integer origin is subtracted, so a point lands on the same sub-pixel
//! position in every metatile that draws it: neighbours agree to the pixel.

use crate::source::{Feature, MetatileData};
use crate::style::{Layer, LineCap, LineJoin, LineStyle, Marker, MarkerShape, Rgba, Rule, Style};
use crate::tile::{MetatileCoord, EARTH_HALF_CIRCUMFERENCE};
use geo::Geometry;
use tiny_skia::{
    Color, FillRule, Paint, Path, PathBuilder, Pixmap, Rect, Stroke, StrokeDash, Transform,
};

/// Maps EPSG:3857 metres to pixmap pixels for one metatile.
#[derive(Debug, Clone, Copy)]
pub struct PixelTransform {
    /// Pixels across the whole world at this zoom and tile size.
    world_px: f64,
    /// Global pixel position of the pixmap's top-left corner (integers).
    origin_x: f64,
    origin_y: f64,
}

impl PixelTransform {
    pub fn new(style: &Style, meta: MetatileCoord) -> Self {
        Self::with_sizes(meta, f64::from(style.tile_size), f64::from(style.buffer_px))
    }

    /// For a canvas of `tile` units per tile with `buffer` units around the metatile
    /// (the UTFGrid canvas counts cells, not pixels).
    pub(super) fn with_sizes(meta: MetatileCoord, tile: f64, buffer: f64) -> Self {
        Self {
            world_px: f64::from(crate::tile::tiles_per_axis(meta.z)) * tile,
            origin_x: f64::from(meta.x) * tile - buffer,
            origin_y: f64::from(meta.y) * tile - buffer,
        }
    }

    /// Pixel position (x right, y down) of a point in metres.
    #[inline]
    pub fn apply(&self, mx: f64, my: f64) -> (f32, f32) {
        let world = 2.0 * EARTH_HALF_CIRCUMFERENCE;
        let gx = (mx + EARTH_HALF_CIRCUMFERENCE) / world * self.world_px;
        let gy = (EARTH_HALF_CIRCUMFERENCE - my) / world * self.world_px;
        ((gx - self.origin_x) as f32, (gy - self.origin_y) as f32)
    }
}

/// Side of the pixmap for a metatile: its tiles plus the buffer on both sides.
pub fn pixmap_side(style: &Style, meta: MetatileCoord) -> u32 {
    meta.width_in_tiles() * style.tile_size + 2 * style.buffer_px
}

pub(super) fn to_color(c: Rgba) -> Color {
    Color::from_rgba8(c.r, c.g, c.b, c.a)
}

/// Paints the background and every active layer of `style` onto `pixmap`, which must
/// be [`pixmap_side`] square.
pub(super) fn paint(style: &Style, meta: MetatileCoord, data: &MetatileData, pixmap: &mut Pixmap) {
    pixmap.fill(to_color(style.background));
    let transform = PixelTransform::new(style, meta);
    let ctx = Ctx {
        z: meta.z,
        zf: f32::from(meta.z),
        scale: style.scale,
        transform,
    };
    for (layer, layer_data) in style.layers.iter().zip(&data.layers) {
        if !layer.active_at(meta.z) || layer_data.features.is_empty() {
            continue;
        }
        paint_layer(&ctx, layer, &layer_data.features, pixmap);
    }
}

struct Ctx {
    z: u8,
    zf: f32,
    scale: f32,
    transform: PixelTransform,
}

/// A feature in pixel space: its path (lines, polygon rings) and its points.
pub(super) struct Shape {
    pub(super) path: Option<Path>,
    pub(super) polygonal: bool,
    pub(super) points: Vec<(f32, f32)>,
}

fn paint_layer(ctx: &Ctx, layer: &Layer, features: &[Feature], pixmap: &mut Pixmap) {
    // Text-only rules are labelled later (`labels`), not painted here.
    let rules: Vec<&Rule> = layer
        .rules
        .iter()
        .filter(|r| r.active_at(ctx.z) && r.paints_map())
        .collect();
    if rules.is_empty() {
        return;
    }
    // For each feature, the active rules that match it; features no rule draws are
    // never turned into paths.
    let matched: Vec<Vec<&Rule>> = features
        .iter()
        .map(|f| {
            rules
                .iter()
                .copied()
                .filter(|r| r.matches(f.kind.as_deref()))
                .collect()
        })
        .collect();
    let shapes: Vec<Option<Shape>> = features
        .iter()
        .zip(&matched)
        .map(|(f, m)| (!m.is_empty()).then(|| shape_of(&ctx.transform, &f.geometry)))
        .collect();

    let mut start = 0;
    while start < features.len() {
        let group = features[start].group;
        let end = features[start..]
            .iter()
            .position(|f| f.group != group)
            .map_or(features.len(), |n| start + n);
        let run = start..end;
        // Fills, then casings, then strokes, then markers: casings never cover another
        // feature's line of the same group.
        for i in run.clone() {
            let Some(shape) = &shapes[i] else { continue };
            for rule in &matched[i] {
                if let (Some(fill), Some(path), true) = (rule.fill, &shape.path, shape.polygonal) {
                    fill_path(pixmap, path, fill);
                }
            }
        }
        for i in run.clone() {
            let Some(shape) = &shapes[i] else { continue };
            for rule in &matched[i] {
                if let (Some(casing), Some(path)) = (&rule.casing, &shape.path) {
                    stroke_path(ctx, pixmap, path, casing);
                }
            }
        }
        for i in run.clone() {
            let Some(shape) = &shapes[i] else { continue };
            for rule in &matched[i] {
                if let (Some(stroke), Some(path)) = (&rule.stroke, &shape.path) {
                    stroke_path(ctx, pixmap, path, stroke);
                }
            }
        }
        for i in run {
            let Some(shape) = &shapes[i] else { continue };
            for rule in &matched[i] {
                if let Some(marker) = &rule.marker {
                    for &(x, y) in &shape.points {
                        draw_marker(ctx, pixmap, x, y, marker);
                    }
                }
            }
        }
        start = end;
    }
}

pub(super) fn shape_of(t: &PixelTransform, geometry: &Geometry<f64>) -> Shape {
    let mut pb = PathBuilder::new();
    let mut polygonal = false;
    let mut points = Vec::new();
    add_geometry(t, geometry, &mut pb, &mut polygonal, &mut points);
    Shape {
        path: pb.finish(),
        polygonal,
        points,
    }
}

fn add_line(t: &PixelTransform, coords: &[geo::Coord<f64>], pb: &mut PathBuilder, close: bool) {
    let mut iter = coords.iter();
    let Some(first) = iter.next() else { return };
    let (x, y) = t.apply(first.x, first.y);
    pb.move_to(x, y);
    for c in iter {
        let (x, y) = t.apply(c.x, c.y);
        pb.line_to(x, y);
    }
    if close {
        pb.close();
    }
}

fn add_geometry(
    t: &PixelTransform,
    geometry: &Geometry<f64>,
    pb: &mut PathBuilder,
    polygonal: &mut bool,
    points: &mut Vec<(f32, f32)>,
) {
    match geometry {
        Geometry::Point(p) => points.push(t.apply(p.x(), p.y())),
        Geometry::MultiPoint(mp) => points.extend(mp.iter().map(|p| t.apply(p.x(), p.y()))),
        Geometry::Line(l) => add_line(t, &[l.start, l.end], pb, false),
        Geometry::LineString(ls) => add_line(t, &ls.0, pb, false),
        Geometry::MultiLineString(mls) => {
            for ls in mls {
                add_line(t, &ls.0, pb, false);
            }
        }
        Geometry::Polygon(p) => {
            *polygonal = true;
            add_line(t, &p.exterior().0, pb, true);
            for ring in p.interiors() {
                add_line(t, &ring.0, pb, true);
            }
        }
        Geometry::MultiPolygon(mp) => {
            *polygonal = true;
            for p in mp {
                add_line(t, &p.exterior().0, pb, true);
                for ring in p.interiors() {
                    add_line(t, &ring.0, pb, true);
                }
            }
        }
        Geometry::Rect(r) => {
            *polygonal = true;
            add_line(t, &r.to_polygon().exterior().0, pb, true);
        }
        Geometry::Triangle(tr) => {
            *polygonal = true;
            add_line(t, &tr.to_array(), pb, true);
        }
        Geometry::GeometryCollection(gc) => {
            for g in gc {
                add_geometry(t, g, pb, polygonal, points);
            }
        }
    }
}

fn solid_paint(color: Rgba) -> Paint<'static> {
    let mut paint = Paint::default();
    paint.set_color(to_color(color));
    paint.anti_alias = true;
    paint
}

fn fill_path(pixmap: &mut Pixmap, path: &Path, color: Rgba) {
    pixmap.fill_path(
        path,
        &solid_paint(color),
        FillRule::EvenOdd,
        Transform::identity(),
        None,
    );
}

fn stroke_path(ctx: &Ctx, pixmap: &mut Pixmap, path: &Path, line: &LineStyle) {
    let width = line.width.at(ctx.zf) * ctx.scale;
    if width <= 0.0 || line.color.a == 0 {
        return;
    }
    let dash = if line.dash.is_empty() {
        None
    } else {
        StrokeDash::new(line.dash.iter().map(|d| d * ctx.scale).collect(), 0.0)
    };
    let stroke = Stroke {
        width,
        miter_limit: 4.0,
        line_cap: match line.cap {
            LineCap::Butt => tiny_skia::LineCap::Butt,
            LineCap::Round => tiny_skia::LineCap::Round,
            LineCap::Square => tiny_skia::LineCap::Square,
        },
        line_join: match line.join {
            LineJoin::Miter => tiny_skia::LineJoin::Miter,
            LineJoin::Round => tiny_skia::LineJoin::Round,
            LineJoin::Bevel => tiny_skia::LineJoin::Bevel,
        },
        dash,
    };
    pixmap.stroke_path(
        path,
        &solid_paint(line.color),
        &stroke,
        Transform::identity(),
        None,
    );
}

fn draw_marker(ctx: &Ctx, pixmap: &mut Pixmap, x: f32, y: f32, marker: &Marker) {
    let size = marker.size.at(ctx.zf) * ctx.scale;
    if size <= 0.0 {
        return;
    }
    let r = size / 2.0;
    let path = match marker.shape {
        MarkerShape::Circle => PathBuilder::from_circle(x, y, r),
        MarkerShape::Square => {
            Rect::from_xywh(x - r, y - r, size, size).map(PathBuilder::from_rect)
        }
    };
    let Some(path) = path else { return };
    if let Some(fill) = marker.fill {
        pixmap.fill_path(
            &path,
            &solid_paint(fill),
            FillRule::Winding,
            Transform::identity(),
            None,
        );
    }
    if let Some(stroke) = marker.stroke {
        let width = marker.stroke_width * ctx.scale;
        if width > 0.0 {
            let s = Stroke {
                width,
                ..Stroke::default()
            };
            pixmap.stroke_path(&path, &solid_paint(stroke), &s, Transform::identity(), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tile::TileCoord;
    use proptest::prelude::*;

    fn style() -> Style {
        let text = r##"
name = "t"
background = "#ffffff"
[[layer]]
name = "l"
sql = "SELECT 1 WHERE !bbox!"
[[layer.rule]]
fill = "#000"
"##;
        crate::style::parse_style(text, std::path::Path::new("t.toml"), "t")
            .unwrap()
            .remove(0)
    }

    #[test]
    fn the_metatile_corner_lands_on_the_buffer_offset() {
        let s = style();
        let meta = TileCoord::try_new(15, 18654, 9486).unwrap().metatile();
        let t = PixelTransform::new(&s, meta);
        let b = meta.bbox();
        assert_eq!(t.apply(b.min_x, b.max_y), (128.0, 128.0));
        assert_eq!(t.apply(b.max_x, b.min_y), (128.0 + 2048.0, 128.0 + 2048.0));
    }

    proptest! {
        #[test]
        fn neighbouring_metatiles_place_a_point_exactly_one_metatile_apart(
            z in 4u8..=20, fx in 0.0f64..1.0, fy in 0.0f64..1.0, ox in 0.0f64..1.0, oy in 0.0f64..1.0
        ) {
            let s = style();
            let n = crate::tile::tiles_per_axis(z);
            let x = ((fx * f64::from(n - 8)) as u32) & !7;
            let y = ((fy * f64::from(n)) as u32) & !7;
            let left = MetatileCoord::try_new(u32::from(z), u64::from(x), u64::from(y)).unwrap();
            let right = MetatileCoord::try_new(u32::from(z), u64::from(x + 8), u64::from(y)).unwrap();
            // A point near the shared edge.
            let b = right.bbox();
            let span = crate::tile::tile_span(z);
            let (mx, my) = (b.min_x + (ox - 0.5) * span, b.max_y - oy * span * 8.0);
            let (lx, ly) = PixelTransform::new(&s, left).apply(mx, my);
            let (rx, ry) = PixelTransform::new(&s, right).apply(mx, my);
            prop_assert!((lx - rx - 2048.0).abs() < 1e-3, "{lx} vs {rx}");
            prop_assert!((ly - ry).abs() < 1e-3);
        }
    }
}
