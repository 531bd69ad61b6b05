//! Painting a metatile's features onto one tiny-skia pixmap.
//!
//! Coordinates go from EPSG:3857 metres to global pixels of the zoom (in f64), then the
//! pixmap's integer origin is subtracted, so a point lands on the same sub-pixel
//! position in every metatile that draws it: neighbours agree to the pixel.

use crate::source::{Feature, MetatileData};
use crate::style::{Layer, LineCap, LineJoin, LineStyle, Marker, MarkerShape, Rgba, Rule, Style};
use crate::tile::{MetatileCoord, EARTH_HALF_CIRCUMFERENCE};
use geo::Geometry;
use rayon::prelude::*;
use std::borrow::Cow;
use tiny_skia::{
    Color, FillRule, Paint, Path, PathBuilder, Pixmap, PixmapMut, Rect, Stroke, StrokeDash,
    Transform,
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
///
/// Two steps: the features become a list of drawing steps in painting order (paths in
/// pixels, built once), then the canvas is cut into horizontal bands that replay the
/// steps that reach them, in parallel on the render threads that are free. A band
/// touches only its own rows, so the result is the canvas painted in one piece (but
/// for a few levels on anti-aliased pixels of edges that a band clips); a render alone
/// on the server paints in a fraction of the time, and a busy server pays only for the
/// paths that cross a band's edge.
pub(super) fn paint(style: &Style, meta: MetatileCoord, data: &MetatileData, pixmap: &mut Pixmap) {
    pixmap.fill(to_color(style.background));
    let transform = PixelTransform::new(style, meta);
    let ctx = Ctx {
        z: meta.z,
        zf: f32::from(meta.z),
        scale: style.scale,
        transform,
    };
    let layers: Vec<ShapedLayer> = style
        .layers
        .iter()
        .zip(&data.layers)
        .filter(|(layer, data)| layer.active_at(meta.z) && !data.features.is_empty())
        .filter_map(|(layer, data)| shape_layer(&ctx, layer, &data.features))
        .collect();
    let mut steps = Vec::new();
    for layer in &layers {
        layer.push_steps(&ctx, &mut steps);
    }
    replay_in_bands(&steps, pixmap, bands());
}

/// How many bands a canvas is painted in: one per render thread, at most
/// [`MAX_BANDS`] (each band repeats the work of the paths that cross its edges).
fn bands() -> u32 {
    rayon::current_num_threads().clamp(1, MAX_BANDS) as u32
}

const MAX_BANDS: usize = 4;

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

/// One drawing step: a path filled or stroked in one colour.
struct Step<'a> {
    path: Cow<'a, Path>,
    color: Rgba,
    how: How,
    /// The rows of the canvas the step may touch, `[top, bottom]`.
    rows: (f32, f32),
}

enum How {
    Fill(FillRule),
    Stroke(Stroke),
}

impl<'a> Step<'a> {
    fn fill(path: Cow<'a, Path>, color: Rgba, rule: FillRule) -> Self {
        let bounds = path.bounds();
        Step {
            rows: (bounds.top() - 1.0, bounds.bottom() + 1.0),
            path,
            color,
            how: How::Fill(rule),
        }
    }

    fn stroke(path: Cow<'a, Path>, color: Rgba, stroke: Stroke) -> Self {
        // Joins reach at most miter_limit * width / 2 beyond the path, caps less.
        let reach = stroke.width * stroke.miter_limit.max(1.5) / 2.0 + 1.0;
        let bounds = path.bounds();
        Step {
            rows: (bounds.top() - reach, bounds.bottom() + reach),
            path,
            color,
            how: How::Stroke(stroke),
        }
    }

    fn draw(&self, canvas: &mut PixmapMut, shift: Transform) {
        let paint = solid_paint(self.color);
        match &self.how {
            How::Fill(rule) => canvas.fill_path(&self.path, &paint, *rule, shift, None),
            How::Stroke(stroke) => canvas.stroke_path(&self.path, &paint, stroke, shift, None),
        }
    }
}

/// Replays `steps` on `bands` horizontal bands of `pixmap` at once.
fn replay_in_bands(steps: &[Step], pixmap: &mut Pixmap, bands: u32) {
    let (width, height) = (pixmap.width(), pixmap.height());
    let band_rows = height.div_ceil(bands.max(1)).max(1);
    let row_bytes = width as usize * 4;
    pixmap
        .data_mut()
        .par_chunks_mut(row_bytes * band_rows as usize)
        .enumerate()
        .for_each(|(i, rows)| {
            let top = i as u32 * band_rows;
            let height = (rows.len() / row_bytes) as u32;
            let Some(mut band) = PixmapMut::from_bytes(rows, width, height) else {
                return;
            };
            let (first, last) = (top as f32, (top + height) as f32);
            let shift = Transform::from_translate(0.0, -first);
            for step in steps {
                if step.rows.1 >= first && step.rows.0 <= last {
                    step.draw(&mut band, shift);
                    super::give_way();
                }
            }
        });
}

/// A layer's features with the rules that draw them and their paths.
struct ShapedLayer<'a> {
    features: &'a [Feature],
    /// For each feature, the active rules that match it.
    matched: Vec<Vec<&'a Rule>>,
    /// Features no rule draws are never turned into paths.
    shapes: Vec<Option<Shape>>,
}

fn shape_layer<'a>(
    ctx: &Ctx,
    layer: &'a Layer,
    features: &'a [Feature],
) -> Option<ShapedLayer<'a>> {
    // Text-only rules are labelled later (`labels`), not painted here.
    let rules: Vec<&Rule> = layer
        .rules
        .iter()
        .filter(|r| r.active_at(ctx.z) && r.paints_map())
        .collect();
    if rules.is_empty() {
        return None;
    }
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
    let shapes = features
        .par_iter()
        .zip(&matched)
        .map(|(f, m)| {
            let shape = (!m.is_empty()).then(|| shape_of(&ctx.transform, &f.geometry));
            super::give_way();
            shape
        })
        .collect();
    Some(ShapedLayer {
        features,
        matched,
        shapes,
    })
}

impl<'a> ShapedLayer<'a> {
    fn push_steps(&'a self, ctx: &Ctx, steps: &mut Vec<Step<'a>>) {
        let features = self.features;
        let mut start = 0;
        while start < features.len() {
            let group = features[start].group;
            let end = features[start..]
                .iter()
                .position(|f| f.group != group)
                .map_or(features.len(), |n| start + n);
            // Fills, then casings, then strokes, then markers: casings never cover
            // another feature's line of the same group.
            for (shape, rule) in self.drawn(start..end) {
                if let (Some(fill), Some(path), true) = (rule.fill, &shape.path, shape.polygonal) {
                    steps.push(Step::fill(Cow::Borrowed(path), fill, FillRule::EvenOdd));
                }
            }
            for (shape, rule) in self.drawn(start..end) {
                if let (Some(casing), Some(path)) = (&rule.casing, &shape.path) {
                    steps.extend(line_step(ctx, path, casing));
                }
            }
            for (shape, rule) in self.drawn(start..end) {
                if let (Some(stroke), Some(path)) = (&rule.stroke, &shape.path) {
                    steps.extend(line_step(ctx, path, stroke));
                }
            }
            for (shape, rule) in self.drawn(start..end) {
                if let Some(marker) = &rule.marker {
                    for &(x, y) in &shape.points {
                        marker_steps(ctx, x, y, marker, steps);
                    }
                }
            }
            start = end;
        }
    }

    /// Each drawn feature of `run` with each of its rules, in order.
    fn drawn(&self, run: std::ops::Range<usize>) -> impl Iterator<Item = (&Shape, &'a Rule)> + '_ {
        run.flat_map(move |i| {
            self.shapes[i]
                .iter()
                .flat_map(move |shape| self.matched[i].iter().map(move |rule| (shape, *rule)))
        })
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

fn line_step<'a>(ctx: &Ctx, path: &'a Path, line: &LineStyle) -> Option<Step<'a>> {
    let width = line.width.at(ctx.zf) * ctx.scale;
    if width <= 0.0 || line.color.a == 0 {
        return None;
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
    Some(Step::stroke(Cow::Borrowed(path), line.color, stroke))
}

fn marker_steps(ctx: &Ctx, x: f32, y: f32, marker: &Marker, steps: &mut Vec<Step<'_>>) {
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
    let width = marker.stroke_width * ctx.scale;
    let outline = marker.stroke.filter(|_| width > 0.0).map(|color| {
        let stroke = Stroke {
            width,
            ..Stroke::default()
        };
        (color, stroke)
    });
    match (marker.fill, outline) {
        (Some(fill), Some((color, stroke))) => {
            steps.push(Step::fill(
                Cow::Owned(path.clone()),
                fill,
                FillRule::Winding,
            ));
            steps.push(Step::stroke(Cow::Owned(path), color, stroke));
        }
        (Some(fill), None) => steps.push(Step::fill(Cow::Owned(path), fill, FillRule::Winding)),
        (None, Some((color, stroke))) => steps.push(Step::stroke(Cow::Owned(path), color, stroke)),
        (None, None) => {}
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

    /// Polygons, thick and hairline strokes and dashes that cross band edges.
    fn crossing_steps() -> Vec<Step<'static>> {
        let mut steps = Vec::new();
        for i in 0..12u8 {
            let f = f32::from(i);
            let mut pb = PathBuilder::new();
            pb.move_to(3.0 + f * 17.3, 1.7 + f * 9.1);
            pb.line_to(250.0 - f * 11.9, 40.3 + f * 13.7);
            pb.line_to(120.4 + f * 3.3, 255.0 - f * 7.1);
            pb.close();
            let path = pb.finish().unwrap();
            let color = Rgba {
                r: 20 * i,
                g: 255 - 20 * i,
                b: 90,
                a: 128 + 10 * i,
            };
            steps.push(Step::fill(
                Cow::Owned(path.clone()),
                color,
                FillRule::EvenOdd,
            ));
            let stroke = Stroke {
                width: [0.4, 1.0, 3.5, 9.0][usize::from(i % 4)],
                line_join: tiny_skia::LineJoin::Miter,
                dash: (i % 3 == 0)
                    .then(|| StrokeDash::new(vec![7.0, 3.0], 0.0))
                    .flatten(),
                ..Stroke::default()
            };
            steps.push(Step::stroke(Cow::Owned(path), color, stroke));
        }
        steps
    }

    // A band clips the edges that cross it, which moves their anti-aliased pixels by a
    // few levels (measured: at most 10 of 255 with up to 4 bands); nothing else moves.
    #[test]
    fn a_canvas_painted_in_bands_is_the_canvas_painted_in_one_piece() {
        let steps = crossing_steps();
        let mut whole = Pixmap::new(256, 256).unwrap();
        for step in &steps {
            step.draw(&mut whole.as_mut(), Transform::identity());
        }
        let painted = whole.data().iter().filter(|&&b| b != 0).count();
        assert!(painted > 50_000, "the steps painted {painted} bytes");
        for bands in 1..=MAX_BANDS as u32 {
            let mut banded = Pixmap::new(256, 256).unwrap();
            replay_in_bands(&steps, &mut banded, bands);
            let diffs: Vec<u8> = whole
                .data()
                .iter()
                .zip(banded.data())
                .map(|(a, b)| a.abs_diff(*b))
                .collect();
            let moved = diffs.iter().filter(|&&d| d > 1).count();
            let most = diffs.iter().copied().max().unwrap_or(0);
            assert!(most <= 16, "{bands} bands: a byte moved by {most}");
            assert!(
                moved * 200 < painted,
                "{bands} bands: {moved} of {painted} bytes moved"
            );
        }
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
