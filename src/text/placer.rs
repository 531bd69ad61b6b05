//! [`LabelPlacer`]: places labels on one canvas (a metatile plus its buffer) in the
//! order they are offered, each whole or not at all, never overlapping one placed
//! before it (R-tree of label boxes), never reaching outside the canvas area; then draws
//! them all, halos first.

use std::collections::HashMap;

use rstar::primitives::Rectangle;
use rstar::{RTree, AABB};
use tiny_skia::{Color, PathBuilder, PixmapMut, Rect, Transform};

use super::fonts::{push_transformed, FaceId, FontSet};
use super::geometry::{angle_between, Box2, MeasuredLine};
use super::raster::{paint, Paintable};
use super::shape::{ShapeError, ShapedLine, Shaper};
use super::TextStyle;

/// Line labels: how many shifted positions are tried on each side of a preferred spot
/// along the line before giving it up. Enough to slide past a junction or a bend.
const MAX_SHIFTS_PER_SIDE: u32 = 6;

/// Line labels: the steepest a glyph may stand. Past 90 degrees from horizontal it
/// starts to read right to left; a hairpin bend would put part of a label upside down
/// even when each step between characters is gentle. The 20 degrees of slack let
/// vertical streets that wobble keep their names.
const MAX_TILT_DEG: f32 = 110.0;

/// Line labels: at most this many repeats along one line are considered (a line 3000
/// km long at z17 with the default spacing): keeps absurd input from looping for ever.
const MAX_REPEATS_PER_LINE: usize = 10_000;

/// A label that was placed: its outlines in canvas pixels and how to paint them.
#[derive(Debug, Clone)]
struct PlacedLabel {
    /// None when the text has no ink (all spaces).
    path: Option<tiny_skia::Path>,
    fill: Color,
    halo: Color,
    /// Halo radius in canvas pixels.
    halo_px: f32,
}

/// A style with its lengths multiplied by the placer's scale and its face resolved.
struct Resolved {
    face: FaceId,
    size: f32,
    fill: Color,
    halo_color: Color,
    /// Halo radius in pixels.
    halo: f32,
    padding: f32,
    wrap: Option<f32>,
    offset: (f32, f32),
    spacing: f32,
    max_bend: f32,
    repeat_distance: f32,
    ascender: f32,
    descender: f32,
    line_gap: f32,
    cap_height: f32,
}

/// A glyph ready to be drawn: which outline and where.
struct PlacedGlyph {
    face: FaceId,
    id: u16,
    /// Font units (y up) -> canvas pixels.
    transform: Transform,
}

/// A candidate position for a label: its glyphs and the boxes it covers.
struct Candidate {
    glyphs: Vec<PlacedGlyph>,
    boxes: Vec<Box2>,
    center: (f32, f32),
}

/// Places labels on one canvas and draws them. Build one per metatile render, over the
/// metatile plus its buffer; offer candidates highest priority first.
pub struct LabelPlacer<'f> {
    shaper: Shaper<'f>,
    area: Box2,
    scale: f32,
    index: RTree<Rectangle<[f32; 2]>>,
    labels: Vec<PlacedLabel>,
    /// Centres of the labels placed per text, for `repeat_distance_px`.
    by_text: HashMap<String, Vec<(f32, f32)>>,
}

impl<'f> LabelPlacer<'f> {
    /// A placer over `area` (canvas pixels: everything drawn stays inside it), with
    /// style lengths multiplied by `scale` (1 for ordinary tiles, 2 for @2x).
    pub fn new(fonts: &'f FontSet, area: Rect, scale: f32) -> LabelPlacer<'f> {
        LabelPlacer {
            shaper: Shaper::new(fonts),
            area: Box2::new(area.left(), area.top(), area.right(), area.bottom()),
            scale: if scale.is_finite() && scale > 0.0 {
                scale
            } else {
                1.0
            },
            index: RTree::new(),
            labels: Vec::new(),
            by_text: HashMap::new(),
        }
    }

    /// How many labels (counting each repeat along a line) are placed.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when nothing is placed.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Places `text` centred on `at` (plus the style's offset), wrapped at the style's
    /// `wrap_px` into centred lines. False (and nothing placed) when it would overlap an
    /// earlier label, reach outside the area, or has a character no font has.
    pub fn place_point(&mut self, text: &str, at: (f32, f32), style: &TextStyle) -> bool {
        let Some(style) = self.resolve(style) else {
            return false;
        };
        if text.trim().is_empty() || !at.0.is_finite() || !at.1.is_finite() {
            return false;
        }
        let lines = match self.shaper.wrap(text, style.face, style.size, style.wrap) {
            Ok(lines) => lines,
            Err(err) => return self.reject_unshapable(&style, err, text),
        };
        let candidate = point_candidate(&lines, at, &style);
        self.try_commit(text, candidate, &style)
    }

    /// Places `text` along `line` (canvas pixels), following its curves, upright, one
    /// label per `spacing_px` of line (each slid along the line a little if its spot is
    /// taken). A label is dropped where the line turns more than `max_bend_deg` between
    /// two adjacent characters; nothing is placed on a line shorter than the text.
    /// Returns how many labels were placed.
    pub fn place_line(&mut self, text: &str, line: &[(f32, f32)], style: &TextStyle) -> usize {
        let Some(style) = self.resolve(style) else {
            return 0;
        };
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            return 0;
        }
        let Some(forward) = MeasuredLine::new(line) else {
            return 0;
        };
        let length = forward.length();
        // Cheap early out before shaping: a line shorter than half an em per char.
        if length < style.size * 0.3 * text.chars().count() as f32 {
            return 0;
        }
        let shaped = match self.shaper.shape_line(&text, style.face, style.size) {
            Ok(shaped) => shaped,
            Err(err) => return usize::from(self.reject_unshapable(&style, err, &text)),
        };
        let width = shaped.width;
        if width <= 0.0 || width > length {
            return 0;
        }
        let backward = forward.reversed();
        let repeats = ((length / style.spacing).floor() as usize).clamp(1, MAX_REPEATS_PER_LINE);
        let stretch = length / repeats as f32;
        let tolerance = ((stretch - width) / 2.0).max(0.0);
        let step = style.size.max(4.0);
        let mut placed = 0;
        for k in 0..repeats {
            let centre = (k as f32 + 0.5) * stretch;
            // Lines are not clipped to the canvas (label positions along a line must not
            // depend on which metatile is drawn), so most repeats of a long line can be
            // far outside it: skip those before any work.
            let (cx, cy) = forward.point_at(centre);
            let reach = width / 2.0 + tolerance + style.size;
            if !Box2::new(cx, cy, cx, cy).inside(&self.area.grow(reach)) {
                continue;
            }
            let shifts = std::iter::once(0.0).chain((1..=MAX_SHIFTS_PER_SIDE).flat_map(|i| {
                let d = i as f32 * step;
                [d, -d]
            }));
            for shift in shifts.take_while(|s| s.abs() <= tolerance) {
                let start = centre + shift - width / 2.0;
                if start < 0.0 || start + width > length {
                    continue;
                }
                let Some(candidate) = line_candidate(&shaped, &forward, &backward, start, &style)
                else {
                    continue;
                };
                if self.try_commit(&text, Some(candidate), &style) {
                    placed += 1;
                    break;
                }
            }
        }
        placed
    }

    /// Draws every placed label: all halos, then all fills, so no halo covers the
    /// letters of a neighbour. `transform` maps canvas pixels to `pixmap` pixels (e.g. a
    /// translation by minus the buffer when the pixmap is the metatile alone).
    pub fn draw(&self, pixmap: &mut PixmapMut<'_>, transform: Transform) {
        let labels: Vec<Paintable<'_>> = self
            .labels
            .iter()
            .filter_map(|label| {
                Some(Paintable {
                    path: label.path.as_ref()?,
                    fill: label.fill,
                    halo: label.halo,
                    halo_px: label.halo_px,
                })
            })
            .collect();
        paint(&labels, pixmap, transform);
    }

    fn resolve(&self, style: &TextStyle) -> Option<Resolved> {
        let fonts = self.shaper.fonts();
        let Some(face) = fonts.face(&style.family) else {
            fonts.warn_unknown_family(&style.family);
            return None;
        };
        let s = self.scale;
        let size = style.size_px * s;
        if !(size.is_finite() && size > 0.0) {
            return None;
        }
        let m = fonts.metrics(face);
        let k = size / m.units_per_em;
        let positive = |v: f32| if v.is_finite() { v.max(0.0) } else { 0.0 };
        Some(Resolved {
            face,
            size,
            fill: style.fill,
            halo_color: style.halo,
            halo: positive(style.halo_px) * s,
            padding: positive(style.padding_px) * s,
            wrap: style
                .wrap_px
                .filter(|w| w.is_finite() && *w > 0.0)
                .map(|w| w * s),
            offset: (
                finite_or_zero(style.offset_px.0) * s,
                finite_or_zero(style.offset_px.1) * s,
            ),
            spacing: {
                let spacing = positive(style.spacing_px) * s;
                if spacing > 0.0 {
                    spacing
                } else {
                    f32::INFINITY
                }
            },
            max_bend: positive(style.max_bend_deg).to_radians(),
            repeat_distance: positive(style.repeat_distance_px) * s,
            ascender: m.ascender * k,
            descender: m.descender * k,
            line_gap: m.line_gap.max(0.0) * k,
            cap_height: m.cap_height * k,
        })
    }

    fn reject_unshapable(&self, style: &Resolved, err: ShapeError, text: &str) -> bool {
        match err {
            ShapeError::Missing(c) => self.shaper.fonts().warn_missing(style.face, c, text),
        }
        false
    }

    /// Places `candidate` when it is inside the area, clear of every earlier label by
    /// the padding, and far enough from labels with the same text.
    fn try_commit(&mut self, text: &str, candidate: Option<Candidate>, style: &Resolved) -> bool {
        let Some(candidate) = candidate else {
            return false;
        };
        if candidate.boxes.is_empty()
            || !candidate
                .boxes
                .iter()
                .all(|b| b.is_finite() && b.inside(&self.area))
        {
            return false;
        }
        let collides = candidate.boxes.iter().any(|b| {
            let b = b.grow(style.padding);
            let envelope = AABB::from_corners([b.min.0, b.min.1], [b.max.0, b.max.1]);
            self.index
                .locate_in_envelope_intersecting(&envelope)
                .next()
                .is_some()
        });
        if collides {
            return false;
        }
        if style.repeat_distance > 0.0 {
            let (cx, cy) = candidate.center;
            let too_close = self.by_text.get(text).is_some_and(|centres| {
                centres.iter().any(|&(x, y)| {
                    (x - cx).powi(2) + (y - cy).powi(2) < style.repeat_distance.powi(2)
                })
            });
            if too_close {
                return false;
            }
        }
        let fonts = self.shaper.fonts();
        let mut builder = PathBuilder::new();
        for glyph in &candidate.glyphs {
            if let Some(outline) = fonts.outline(glyph.face, glyph.id) {
                push_transformed(&mut builder, &outline, glyph.transform);
            }
        }
        let path = builder.finish();
        // Glyph ink can overhang its advance box (a 'j', an italic): the drawn outline,
        // halo included, must be inside the area too.
        if let Some(path) = &path {
            let b = path.bounds();
            let ink = Box2::new(b.left(), b.top(), b.right(), b.bottom()).grow(style.halo);
            if !ink.inside(&self.area) {
                return false;
            }
        }
        for b in &candidate.boxes {
            self.index.insert(Rectangle::from_corners(
                [b.min.0, b.min.1],
                [b.max.0, b.max.1],
            ));
        }
        if style.repeat_distance > 0.0 {
            self.by_text
                .entry(text.to_owned())
                .or_default()
                .push(candidate.center);
        }
        self.labels.push(PlacedLabel {
            path,
            fill: style.fill,
            halo: style.halo_color,
            halo_px: style.halo,
        });
        true
    }
}

fn finite_or_zero(v: f32) -> f32 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// Lines centred on `at` + offset, one under the other; baselines on whole pixels so
/// horizontal strokes stay sharp.
fn point_candidate(lines: &[ShapedLine], at: (f32, f32), style: &Resolved) -> Option<Candidate> {
    let n = lines.len();
    if n == 0 {
        return None;
    }
    let line_ink = style.ascender - style.descender;
    let line_height = line_ink + style.line_gap;
    let block = n as f32 * line_ink + (n - 1) as f32 * style.line_gap;
    let (cx, cy) = (at.0 + style.offset.0, at.1 + style.offset.1);
    let top = cy - block / 2.0;
    let mut glyphs = Vec::new();
    let mut boxes = Vec::with_capacity(n);
    for (i, line) in lines.iter().enumerate() {
        let baseline = (top + style.ascender + i as f32 * line_height).round();
        let x0 = (cx - line.width / 2.0).round();
        boxes.push(
            Box2::new(
                x0,
                baseline - style.ascender,
                x0 + line.width,
                baseline - style.descender,
            )
            .grow(style.halo),
        );
        for g in &line.glyphs {
            glyphs.push(PlacedGlyph {
                face: g.face,
                id: g.id,
                transform: Transform::from_row(
                    g.scale,
                    0.0,
                    0.0,
                    -g.scale,
                    x0 + g.x + g.dx,
                    baseline - g.dy,
                ),
            });
        }
    }
    Some(Candidate {
        glyphs,
        boxes,
        center: (cx, cy),
    })
}

/// The label's glyphs walked along the line from distance `start`, each at its own
/// point and angle, read left to right (the line is walked backwards when it runs right
/// to left); None where two adjacent glyphs turn more than the style allows.
fn line_candidate(
    shaped: &ShapedLine,
    forward: &MeasuredLine,
    backward: &MeasuredLine,
    start: f32,
    style: &Resolved,
) -> Option<Candidate> {
    let width = shaped.width;
    let (a, b) = (forward.point_at(start), forward.point_at(start + width));
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    // Upright: text runs left to right; a vertical line reads bottom to top.
    let flip = dx < 0.0 || (dx.abs() < 1e-3 && dy > 0.0);
    let (path, start) = if flip {
        (backward, backward.length() - start - width)
    } else {
        (forward, start)
    };
    // The baseline sits below the line by half the capital height, so the letters are
    // centred on it.
    let shift = style.cap_height / 2.0;
    let (top, bottom) = (shift - style.ascender, shift - style.descender);
    let mut glyphs = Vec::with_capacity(shaped.glyphs.len());
    let mut boxes = Vec::with_capacity(shaped.glyphs.len());
    let mut previous_angle: Option<f32> = None;
    for g in &shaped.glyphs {
        let s = start + g.x;
        let p0 = path.point_at(s);
        let angle = if g.advance > 0.0 {
            let p1 = path.point_at(s + g.advance);
            let angle = (p1.1 - p0.1).atan2(p1.0 - p0.0);
            if let Some(prev) = previous_angle {
                if angle_between(prev, angle).abs() > style.max_bend {
                    return None;
                }
            }
            if angle.abs() > MAX_TILT_DEG.to_radians() {
                return None;
            }
            previous_angle = Some(angle);
            angle
        } else {
            previous_angle.unwrap_or(0.0)
        };
        let (sin, cos) = angle.sin_cos();
        // Local glyph frame (x along the line, y down) -> canvas.
        let to_canvas = |lx: f32, ly: f32| (p0.0 + cos * lx - sin * ly, p0.1 + sin * lx + cos * ly);
        let (ox, oy) = to_canvas(g.dx, shift - g.dy);
        let k = g.scale;
        glyphs.push(PlacedGlyph {
            face: g.face,
            id: g.id,
            transform: Transform::from_row(cos * k, sin * k, sin * k, -cos * k, ox, oy),
        });
        let h = style.halo;
        let corners = [
            (-h, top - h),
            (g.advance + h, top - h),
            (g.advance + h, bottom + h),
            (-h, bottom + h),
        ];
        boxes.extend(Box2::around(corners.map(|(x, y)| to_canvas(x, y))));
    }
    Some(Candidate {
        glyphs,
        boxes,
        center: path.point_at(start + width / 2.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::test_fonts;
    use std::sync::{Arc, Mutex};
    use tiny_skia::Pixmap;

    fn area(w: f32, h: f32) -> Rect {
        Rect::from_xywh(0.0, 0.0, w, h).expect("rect")
    }

    fn style() -> TextStyle {
        TextStyle::default()
    }

    fn render(placer: &LabelPlacer<'_>, w: u32, h: u32) -> Pixmap {
        let mut pixmap = Pixmap::new(w, h).expect("pixmap");
        pixmap.fill(Color::from_rgba8(200, 220, 200, 255));
        placer.draw(&mut pixmap.as_mut(), Transform::identity());
        pixmap
    }

    fn changed_pixels(pixmap: &Pixmap) -> usize {
        pixmap
            .pixels()
            .iter()
            .filter(|p| (p.red(), p.green(), p.blue()) != (200, 220, 200))
            .count()
    }

    #[test]
    fn a_point_label_is_centred_on_its_anchor() {
        let mut placer = LabelPlacer::new(test_fonts(), area(200.0, 100.0), 1.0);
        assert!(placer.place_point("Kallio", (100.0, 50.0), &style()));
        let pixmap = render(&placer, 200, 100);
        let ink: Vec<(u32, u32)> = (0..100u32)
            .flat_map(|y| (0..200u32).map(move |x| (x, y)))
            .filter(|&(x, y)| {
                let p = pixmap.pixel(x, y).expect("pixel");
                (p.red(), p.green(), p.blue()) != (200, 220, 200)
            })
            .collect();
        let n = ink.len() as f32;
        let cx = ink.iter().map(|p| p.0 as f32).sum::<f32>() / n;
        let cy = ink.iter().map(|p| p.1 as f32).sum::<f32>() / n;
        assert!((cx - 100.0).abs() < 3.0, "centre x {cx}");
        assert!((cy - 50.0).abs() < 3.0, "centre y {cy}");
    }

    #[test]
    fn of_two_overlapping_labels_only_the_first_is_placed() {
        let mut placer = LabelPlacer::new(test_fonts(), area(400.0, 200.0), 1.0);
        assert!(placer.place_point("Kamppi", (200.0, 100.0), &style()));
        assert!(!placer.place_point("Punavuori", (210.0, 104.0), &style()));
        // Far enough away it fits.
        assert!(placer.place_point("Punavuori", (200.0, 150.0), &style()));
        assert_eq!(placer.len(), 2);
    }

    #[test]
    fn padding_keeps_labels_apart() {
        let fonts = test_fonts();
        let wide = TextStyle {
            padding_px: 30.0,
            ..style()
        };
        let mut tight = LabelPlacer::new(fonts, area(400.0, 200.0), 1.0);
        let mut padded = LabelPlacer::new(fonts, area(400.0, 200.0), 1.0);
        assert!(tight.place_point("Kamppi", (200.0, 100.0), &style()));
        assert!(padded.place_point("Kamppi", (200.0, 100.0), &style()));
        assert!(tight.place_point("Töölö", (200.0, 125.0), &style()));
        assert!(!padded.place_point("Töölö", (200.0, 125.0), &wide));
    }

    #[test]
    fn a_label_reaching_outside_the_area_is_not_placed_at_all() {
        let mut placer = LabelPlacer::new(test_fonts(), area(300.0, 300.0), 1.0);
        assert!(!placer.place_point("Suomenlinna", (5.0, 150.0), &style()));
        assert!(!placer.place_point("Suomenlinna", (150.0, 299.0), &style()));
        assert!(!placer.place_line("Mannerheimintie", &[(-50.0, 3.0), (200.0, 3.0)], &style()) > 0);
        assert!(placer.is_empty());
        assert_eq!(changed_pixels(&render(&placer, 300, 300)), 0);
        assert!(placer.place_point("Suomenlinna", (150.0, 150.0), &style()));
    }

    #[test]
    fn wrapped_lines_are_stacked_and_centred() {
        let fonts = test_fonts();
        let wrapped = TextStyle {
            wrap_px: Some(60.0),
            ..style()
        };
        let mut placer = LabelPlacer::new(fonts, area(300.0, 300.0), 1.0);
        assert!(placer.place_point("Etelä-Helsingin suurpiiri", (150.0, 150.0), &wrapped));
        let boxes: Vec<Box2> = placer
            .index
            .iter()
            .map(|r| {
                let e = rstar::RTreeObject::envelope(r);
                Box2::new(e.lower()[0], e.lower()[1], e.upper()[0], e.upper()[1])
            })
            .collect();
        assert_eq!(boxes.len(), 2, "two lines");
        for b in &boxes {
            let (l, r) = (150.0 - b.min.0, b.max.0 - 150.0);
            assert!((l - r).abs() <= 1.0, "line centred: {l} {r}");
        }
        let (upper, lower) = if boxes[0].min.1 < boxes[1].min.1 {
            (boxes[0], boxes[1])
        } else {
            (boxes[1], boxes[0])
        };
        assert!(upper.max.1 <= lower.min.1 + 2.0 * 1.5 + 0.01, "stacked");
        assert!(upper.min.1 < 150.0 && lower.max.1 > 150.0);
    }

    #[test]
    fn a_line_label_reads_left_to_right_whichever_way_the_line_was_drawn() {
        let fonts = test_fonts();
        let east = [(50.0, 100.0), (350.0, 100.0)];
        let west = [(350.0, 100.0), (50.0, 100.0)];
        let mut a = LabelPlacer::new(fonts, area(400.0, 200.0), 1.0);
        let mut b = LabelPlacer::new(fonts, area(400.0, 200.0), 1.0);
        assert_eq!(a.place_line("Aleksanterinkatu", &east, &style()), 1);
        assert_eq!(b.place_line("Aleksanterinkatu", &west, &style()), 1);
        let (pa, pb) = (render(&a, 400, 200), render(&b, 400, 200));
        assert!(changed_pixels(&pa) > 100);
        assert_eq!(pa.data(), pb.data(), "same pixels whatever the direction");
        // And upright: the same text as a point label has its ink the same way up
        // (more ink above the baseline than below).
        let ink_rows: Vec<u32> = (0..200u32)
            .filter(|&y| {
                (0..400u32).any(|x| {
                    let p = pa.pixel(x, y).expect("pixel");
                    (p.red(), p.green(), p.blue()) != (200, 220, 200)
                })
            })
            .collect();
        let (first, last) = (ink_rows[0], ink_rows[ink_rows.len() - 1]);
        assert!(
            first < 100 && last > 100,
            "{first}..{last} straddles the line"
        );
        assert!(
            100 - first > last - 100,
            "cap height above, descenders below"
        );
    }

    #[test]
    fn a_vertical_line_label_reads_bottom_to_top() {
        let fonts = test_fonts();
        let mut down = LabelPlacer::new(fonts, area(200.0, 400.0), 1.0);
        let mut up = LabelPlacer::new(fonts, area(200.0, 400.0), 1.0);
        assert_eq!(
            down.place_line("Liisankatu", &[(100.0, 50.0), (100.0, 350.0)], &style()),
            1
        );
        assert_eq!(
            up.place_line("Liisankatu", &[(100.0, 350.0), (100.0, 50.0)], &style()),
            1
        );
        assert_eq!(render(&down, 200, 400).data(), render(&up, 200, 400).data());
    }

    #[test]
    fn text_longer_than_its_line_is_not_placed() {
        let mut placer = LabelPlacer::new(test_fonts(), area(400.0, 200.0), 1.0);
        assert_eq!(
            placer.place_line(
                "Pohjoisesplanadi",
                &[(100.0, 100.0), (140.0, 100.0)],
                &style()
            ),
            0
        );
        assert_eq!(
            placer.place_line("Pohjoisesplanadi", &[(100.0, 100.0)], &style()),
            0
        );
        assert!(placer.is_empty());
    }

    #[test]
    fn a_sharp_bend_under_the_text_drops_the_label_and_a_gentle_curve_does_not() {
        let fonts = test_fonts();
        let mut placer = LabelPlacer::new(fonts, area(600.0, 600.0), 1.0);
        let probe = placer
            .shaper
            .shape_line(
                "Kaisaniemenkatu",
                fonts.face("DejaVu Sans Book").expect("face"),
                12.0,
            )
            .expect("shaped")
            .width;
        // An L just long enough for the text: any position crosses the corner.
        let half = probe * 0.55;
        let corner = [
            (100.0, 100.0),
            (100.0 + half, 100.0),
            (100.0 + half, 100.0 + half),
        ];
        assert_eq!(placer.place_line("Kaisaniemenkatu", &corner, &style()), 0);
        // A gentle arc of the same length: 60 degrees over the text, about 5 per glyph.
        let arc: Vec<(f32, f32)> = (0..=30)
            .map(|i| {
                let t = (i as f32 / 30.0) * 60f32.to_radians();
                let r = probe * 1.2 / 60f32.to_radians();
                (300.0 + r * t.sin(), 300.0 - r * (1.0 - t.cos()))
            })
            .collect();
        assert_eq!(placer.place_line("Kaisaniemenkatu", &arc, &style()), 1);
        // With a strict limit the same arc is refused.
        let strict = TextStyle {
            max_bend_deg: 1.0,
            ..style()
        };
        let mut placer = LabelPlacer::new(fonts, area(600.0, 600.0), 1.0);
        assert_eq!(placer.place_line("Kaisaniemenkatu", &arc, &strict), 0);
    }

    #[test]
    fn a_hairpin_is_refused_even_when_each_step_between_characters_is_gentle() {
        let fonts = test_fonts();
        let mut placer = LabelPlacer::new(fonts, area(600.0, 600.0), 1.0);
        let width = placer
            .shaper
            .shape_line(
                "Kaisaniemenkatu",
                fonts.face("DejaVu Sans Book").expect("face"),
                12.0,
            )
            .expect("shaped")
            .width;
        // A half circle (a "C" open to the left) just longer than the text: 180 degrees
        // over ~15 characters is 12 degrees a step, under the 30 degree limit, but the
        // top or the bottom of the C would read upside down.
        let r = width * 1.02 / std::f32::consts::PI;
        let hairpin: Vec<(f32, f32)> = (0..=60)
            .map(|i| {
                let t = -std::f32::consts::FRAC_PI_2 + i as f32 / 60.0 * std::f32::consts::PI;
                (300.0 + r * t.cos(), 300.0 + r * t.sin())
            })
            .collect();
        assert_eq!(placer.place_line("Kaisaniemenkatu", &hairpin, &style()), 0);
        // The same curve turned into a bowl reads fine: down, across and up.
        let arch: Vec<(f32, f32)> = hairpin.iter().map(|&(x, y)| (y, x)).collect();
        assert_eq!(placer.place_line("Kaisaniemenkatu", &arch, &style()), 1);
    }

    #[test]
    fn a_line_far_longer_than_the_canvas_is_labelled_where_it_crosses_it() {
        let mut placer = LabelPlacer::new(test_fonts(), area(600.0, 600.0), 1.0);
        // A road 200 km long at this scale passing through the canvas.
        let line = [(-100_000.0, 300.0), (100_000.0, 300.0)];
        let placed = placer.place_line("Itäväylä", &line, &style());
        assert!((1..=2).contains(&placed), "{placed}");
        let absurd = [(-1e30, 100.0), (1e30, 100.0)];
        assert_eq!(placer.place_line("Itäväylä", &absurd, &style()), 0);
    }

    #[test]
    fn long_lines_get_a_label_every_spacing() {
        let mut placer = LabelPlacer::new(test_fonts(), area(2000.0, 400.0), 1.0);
        let line = [(50.0, 100.0), (1550.0, 100.0)];
        assert_eq!(placer.place_line("Hämeentie", &line, &style()), 5);
        // Their centres are 300 px apart (the labels' glyph boxes, left to right).
        let mut xs: Vec<f32> = placer
            .index
            .iter()
            .map(|r| rstar::Envelope::center(&rstar::RTreeObject::envelope(r))[0])
            .collect();
        xs.sort_by(f32::total_cmp);
        let per_label = xs.len() / 5;
        let centres: Vec<f32> = xs
            .chunks(per_label)
            .map(|c| (c[0] + c[c.len() - 1]) / 2.0)
            .collect();
        for pair in centres.windows(2) {
            assert!((pair[1] - pair[0] - 300.0).abs() < 1.0, "{centres:?}");
        }
        // A line shorter than two spacings gets one label.
        assert_eq!(
            placer.place_line("Hämeentie", &[(50.0, 300.0), (640.0, 300.0)], &style()),
            1
        );
    }

    #[test]
    fn labels_with_the_same_text_keep_their_repeat_distance() {
        let fonts = test_fonts();
        let spaced = TextStyle {
            repeat_distance_px: 250.0,
            ..style()
        };
        let mut placer = LabelPlacer::new(fonts, area(1000.0, 400.0), 1.0);
        assert_eq!(
            placer.place_line("Fleminginkatu", &[(100.0, 100.0), (300.0, 100.0)], &spaced),
            1
        );
        assert_eq!(
            placer.place_line("Fleminginkatu", &[(100.0, 200.0), (300.0, 200.0)], &spaced),
            0
        );
        assert_eq!(
            placer.place_line("Porthaninkatu", &[(100.0, 200.0), (300.0, 200.0)], &spaced),
            1
        );
        assert_eq!(
            placer.place_line("Fleminginkatu", &[(600.0, 100.0), (800.0, 100.0)], &spaced),
            1
        );
    }

    #[test]
    fn a_diagonal_line_label_leaves_the_corners_of_its_bounding_box_free() {
        let mut placer = LabelPlacer::new(test_fonts(), area(600.0, 600.0), 1.0);
        assert_eq!(
            placer.place_line(
                "Runeberginkatu",
                &[(100.0, 100.0), (400.0, 400.0)],
                &style()
            ),
            1
        );
        // The label covers roughly (190,190)..(310,310) along the diagonal; the box
        // corner at the lower left is empty.
        assert!(placer.place_point("Tölö", (205.0, 295.0), &style()));
    }

    fn capture_warnings(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("lock").extend_from_slice(data);
                Ok(data.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buf.0.lock().expect("lock").clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn text_with_a_character_in_no_font_is_skipped_with_one_warning() {
        let fonts = test_fonts();
        // A private-use character (in no font) that no other test uses.
        let logs = capture_warnings(|| {
            let mut placer = LabelPlacer::new(fonts, area(800.0, 800.0), 1.0);
            assert!(!placer.place_point("Kallio \u{E123}", (400.0, 100.0), &style()));
            assert!(!placer.place_point("Vallila \u{E123}", (400.0, 300.0), &style()));
            assert_eq!(
                placer.place_line("Tie \u{E123}", &[(0.0, 500.0), (800.0, 500.0)], &style()),
                0
            );
            assert!(placer.is_empty());
            assert!(placer.place_point("Kallio", (400.0, 100.0), &style()));
        });
        assert_eq!(logs.matches("no configured font").count(), 1, "{logs}");
        assert!(logs.contains("\\u{e123}"), "{logs}");
    }

    #[test]
    fn an_unknown_font_family_places_nothing_and_warns_once() {
        let fonts = test_fonts();
        let bad = TextStyle {
            family: "Nonexistent Sans Wide".to_owned(),
            ..style()
        };
        let logs = capture_warnings(|| {
            let mut placer = LabelPlacer::new(fonts, area(400.0, 400.0), 1.0);
            assert!(!placer.place_point("Kallio", (200.0, 200.0), &bad));
            assert_eq!(
                placer.place_line("Kallio", &[(0.0, 50.0), (400.0, 50.0)], &bad),
                0
            );
        });
        assert_eq!(logs.matches("unknown font family").count(), 1, "{logs}");
    }

    #[test]
    fn placing_the_same_labels_twice_gives_the_same_pixels() {
        let fonts = test_fonts();
        let run = || {
            let mut placer = LabelPlacer::new(fonts, area(512.0, 512.0), 1.0);
            placer.place_point("Helsinki", (256.0, 100.0), &style());
            placer.place_point("Kruununhaka", (250.0, 110.0), &style());
            let curve: Vec<(f32, f32)> = (0..40)
                .map(|i| {
                    let t = i as f32 / 39.0;
                    (40.0 + 430.0 * t, 300.0 + 60.0 * (t * 3.0).sin())
                })
                .collect();
            placer.place_line("Unioninkatu", &curve, &style());
            render(&placer, 512, 512)
        };
        assert_eq!(run().data(), run().data());
    }

    #[test]
    fn the_scale_enlarges_text_and_its_halo() {
        let fonts = test_fonts();
        let mut one = LabelPlacer::new(fonts, area(400.0, 200.0), 1.0);
        let mut two = LabelPlacer::new(fonts, area(400.0, 200.0), 2.0);
        assert!(one.place_point("Ullanlinna", (200.0, 100.0), &style()));
        assert!(two.place_point("Ullanlinna", (200.0, 100.0), &style()));
        let (a, b) = (
            changed_pixels(&render(&one, 400, 200)),
            changed_pixels(&render(&two, 400, 200)),
        );
        assert!(b as f32 > 3.0 * a as f32, "{a} {b}");
    }

    #[test]
    fn blank_text_and_bad_coordinates_place_nothing() {
        let mut placer = LabelPlacer::new(test_fonts(), area(400.0, 200.0), 1.0);
        assert!(!placer.place_point("   ", (200.0, 100.0), &style()));
        assert!(!placer.place_point("Kallio", (f32::NAN, 100.0), &style()));
        assert_eq!(
            placer.place_line("Kallio", &[(0.0, f32::INFINITY), (300.0, 10.0)], &style()),
            0
        );
        let zero = TextStyle {
            size_px: 0.0,
            ..style()
        };
        assert!(!placer.place_point("Kallio", (200.0, 100.0), &zero));
        assert!(placer.is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        #[test]
        fn placed_labels_never_overlap_and_never_leave_the_area(
            points in proptest::collection::vec((0.0f32..500.0, 0.0f32..400.0, 0usize..6), 0..12),
            lines in proptest::collection::vec(
                proptest::collection::vec((-50.0f32..550.0, -50.0f32..450.0), 2..6),
                0..10,
            ),
        ) {
            const NAMES: [&str; 6] = ["Kallio", "Töölö", "Etu-Töölö", "Hämeentie", "Åggelby", "Kamppi"];
            let mut placer = LabelPlacer::new(test_fonts(), area(500.0, 400.0), 1.0);
            let mut boxes_per_label: Vec<Vec<Box2>> = Vec::new();
            let snapshot = |placer: &LabelPlacer<'_>| -> Vec<Box2> {
                placer
                    .index
                    .iter()
                    .map(|r| {
                        let e = rstar::RTreeObject::envelope(r);
                        Box2::new(e.lower()[0], e.lower()[1], e.upper()[0], e.upper()[1])
                    })
                    .collect()
            };
            let mut before = snapshot(&placer);
            let mut record = |placer: &LabelPlacer<'_>, before: &mut Vec<Box2>| {
                let after = snapshot(placer);
                let new: Vec<Box2> = after.iter().filter(|b| !before.contains(b)).copied().collect();
                if !new.is_empty() {
                    boxes_per_label.push(new);
                }
                *before = after;
            };
            for (x, y, n) in &points {
                placer.place_point(NAMES[*n], (*x, *y), &style());
                record(&placer, &mut before);
            }
            for (i, line) in lines.iter().enumerate() {
                // One label per line at most here (lines are short), so each call adds
                // the boxes of one label.
                let spaced = TextStyle { spacing_px: 10_000.0, ..style() };
                placer.place_line(NAMES[i % NAMES.len()], line, &spaced);
                record(&placer, &mut before);
            }
            let inside = Box2::new(0.0, 0.0, 500.0, 400.0);
            for (i, a) in boxes_per_label.iter().enumerate() {
                for b in a {
                    proptest::prop_assert!(b.inside(&inside), "{b:?} outside");
                }
                for other in &boxes_per_label[i + 1..] {
                    for b in a {
                        for o in other {
                            let overlap = b.min.0 < o.max.0 && o.min.0 < b.max.0
                                && b.min.1 < o.max.1 && o.min.1 < b.max.1;
                            proptest::prop_assert!(!overlap, "{b:?} overlaps {o:?}");
                        }
                    }
                }
            }
        }
    }
}
