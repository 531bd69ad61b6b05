//! Painting placed labels: each label's outlines are rasterised once by tiny-skia into
//! a small anti-aliased coverage mask; its halo is that mask dilated by the halo radius
//! (a disc, with soft edges for fractional radii); halos of all labels are composited
//! first, then the letters.
//!
//! Dilating the coverage gives the same outline as stroking the glyph contours with a
//! round-joined pen of twice the radius, but rasterising a stroked outline (four times
//! the segments, inner and outer offsets) cost four times as much as the letters
//! themselves; a dilated mask costs a fraction of that, and the halo is solid under the
//! letters so their anti-aliased edges blend with the halo colour, never with what is
//! under the label.

use tiny_skia::{Color, FillRule, Mask, PixmapMut, Transform};

/// One label to paint: outlines in canvas pixels, colours, halo radius.
pub(crate) struct Paintable<'a> {
    pub path: &'a tiny_skia::Path,
    pub fill: Color,
    pub halo: Color,
    /// Radius in canvas pixels; 0 = no halo.
    pub halo_px: f32,
}

/// A label's coverage, rasterised in pixmap pixels.
struct Coverage {
    /// Pixmap position of the mask's top-left pixel (may be negative).
    x0: i32,
    y0: i32,
    width: usize,
    height: usize,
    letters: Vec<u8>,
    halo: Option<Vec<u8>>,
}

/// Paints `labels` onto `pixmap` through `transform` (canvas -> pixmap): all halos, then
/// all letters. Parts outside the pixmap are not painted (the labels themselves are
/// whole: the placer only places labels inside its area).
pub(crate) fn paint(labels: &[Paintable<'_>], pixmap: &mut PixmapMut<'_>, transform: Transform) {
    // How much the transform enlarges lengths (for the halo radius).
    let scale = (transform.sx * transform.sy - transform.kx * transform.ky)
        .abs()
        .sqrt();
    let (pw, ph) = (pixmap.width() as i32, pixmap.height() as i32);
    let covers: Vec<(Coverage, &Paintable<'_>)> = labels
        .iter()
        .filter_map(|label| {
            let radius = label.halo_px * scale;
            let halo = (radius > 0.0 && label.halo.alpha() > 0.0).then_some(radius);
            rasterise(label.path, transform, halo, pw, ph).map(|c| (c, label))
        })
        .collect();
    let data = pixmap.data_mut();
    for (cover, label) in &covers {
        if let Some(halo) = &cover.halo {
            composite(data, pw, ph, cover, halo, label.halo);
        }
    }
    for (cover, label) in &covers {
        composite(data, pw, ph, cover, &cover.letters, label.fill);
    }
}

/// The label's coverage over its bounding box plus the halo, clipped to the pixmap
/// (plus a margin, so the halo near the pixmap's edge sees the letters beyond it).
fn rasterise(
    path: &tiny_skia::Path,
    transform: Transform,
    halo: Option<f32>,
    pw: i32,
    ph: i32,
) -> Option<Coverage> {
    let bounds = path.bounds().transform(transform)?;
    let pad = halo.map_or(1, |r| r.ceil() as i32 + 1);
    let clamp = |v: f32| v.clamp(-1e6, 1e6) as i32;
    let x0 = (clamp(bounds.left().floor()) - pad).max(-pad);
    let y0 = (clamp(bounds.top().floor()) - pad).max(-pad);
    let x1 = (clamp(bounds.right().ceil()) + pad).min(pw + pad);
    let y1 = (clamp(bounds.bottom().ceil()) + pad).min(ph + pad);
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    let (width, height) = ((x1 - x0) as u32, (y1 - y0) as u32);
    let mut mask = Mask::new(width, height)?;
    let to_mask = transform.post_translate(-x0 as f32, -y0 as f32);
    mask.fill_path(path, FillRule::Winding, true, to_mask);
    let letters = mask.take();
    let (width, height) = (width as usize, height as usize);
    let halo = halo.map(|r| dilate(&letters, width, height, r));
    Some(Coverage {
        x0,
        y0,
        width,
        height,
        letters,
        halo,
    })
}

/// Grey-level dilation by a disc of radius `r`: each pixel takes the largest coverage
/// of the pixels within `r` of it (edge to centre), weighted down over the last pixel so
/// fractional radii (1.5 px) get a soft, anti-aliased edge.
fn dilate(coverage: &[u8], width: usize, height: usize, r: f32) -> Vec<u8> {
    let reach = (r + 1.0).ceil() as i32;
    let mut kernel: Vec<(i32, i32, u32)> = Vec::new();
    for dy in -reach..=reach {
        for dx in -reach..=reach {
            let d = ((dx * dx + dy * dy) as f32).sqrt();
            // A covered pixel reaches half a pixel towards its neighbour: the halo
            // covers the neighbour's centre when d - 0.5 <= r - 0.5.
            let w = (r + 1.0 - d).clamp(0.0, 1.0);
            if w > 0.0 {
                kernel.push((dx, dy, (w * 255.0).round() as u32));
            }
        }
    }
    let mut out = vec![0u8; coverage.len()];
    let (w, h) = (width as i32, height as i32);
    for y in 0..h {
        let row = &coverage[(y * w) as usize..((y + 1) * w) as usize];
        let ink = row
            .chunks(8)
            .enumerate()
            .filter(|(_, block)| block.iter().any(|&c| c != 0))
            .flat_map(|(b, block)| block.iter().enumerate().map(move |(i, &c)| (b * 8 + i, c)))
            .filter(|&(_, c)| c != 0);
        for (x, c) in ink {
            let (x, c) = (x as i32, u32::from(c));
            let inside = x >= reach && y >= reach && x < w - reach && y < h - reach;
            for &(dx, dy, k) in &kernel {
                let (nx, ny) = (x + dx, y + dy);
                if !inside && (nx < 0 || ny < 0 || nx >= w || ny >= h) {
                    continue;
                }
                let v = ((c * k + 127) / 255) as u8;
                let o = &mut out[(ny * w + nx) as usize];
                *o = (*o).max(v);
            }
        }
    }
    out
}

/// Source-over of `color` through `coverage` onto premultiplied RGBA8 `data`.
fn composite(data: &mut [u8], pw: i32, ph: i32, cover: &Coverage, coverage: &[u8], color: Color) {
    let c = color.premultiply().to_color_u8();
    let (sr, sg, sb, sa) = (
        u32::from(c.red()),
        u32::from(c.green()),
        u32::from(c.blue()),
        u32::from(c.alpha()),
    );
    // The rows and columns of the mask that fall on the pixmap.
    let x_from = (-cover.x0).max(0) as usize;
    let x_to = ((pw - cover.x0).max(0) as usize).min(cover.width);
    let y_from = (-cover.y0).max(0) as usize;
    let y_to = ((ph - cover.y0).max(0) as usize).min(cover.height);
    if x_from >= x_to {
        return;
    }
    for my in y_from..y_to {
        let mask_row = &coverage[my * cover.width + x_from..my * cover.width + x_to];
        let y = (cover.y0 + my as i32) as usize;
        let start = (y * pw as usize + (cover.x0 + x_from as i32) as usize) * 4;
        let Some(pixels) = data.get_mut(start..start + mask_row.len() * 4) else {
            continue;
        };
        // Rotated labels have mostly empty boxes: skip empty stretches 8 at a time.
        for (block, px8) in mask_row.chunks(8).zip(pixels.chunks_mut(32)) {
            if block.iter().all(|&m| m == 0) {
                continue;
            }
            for (&m, px) in block.iter().zip(px8.chunks_exact_mut(4)) {
                if m == 0 {
                    continue;
                }
                let m = u32::from(m);
                let src_a = div255(sa * m);
                let inv = 255 - src_a;
                let a = (src_a + div255(u32::from(px[3]) * inv)).min(255);
                px[0] = (div255(sr * m) + div255(u32::from(px[0]) * inv)).min(a) as u8;
                px[1] = (div255(sg * m) + div255(u32::from(px[1]) * inv)).min(a) as u8;
                px[2] = (div255(sb * m) + div255(u32::from(px[2]) * inv)).min(a) as u8;
                px[3] = a as u8;
            }
        }
    }
}

/// `v / 255`, rounded, for `v <= 255 * 255`.
#[inline]
fn div255(v: u32) -> u32 {
    (v + 128 + ((v + 128) >> 8)) >> 8
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiny_skia::{PathBuilder, Pixmap, Rect};

    fn square() -> tiny_skia::Path {
        PathBuilder::from_rect(Rect::from_xywh(10.0, 10.0, 10.0, 10.0).expect("rect"))
    }

    fn pixel(p: &Pixmap, x: u32, y: u32) -> (u8, u8, u8, u8) {
        let c = p.pixel(x, y).expect("pixel");
        (c.red(), c.green(), c.blue(), c.alpha())
    }

    #[test]
    fn div255_rounds_like_floating_point_division() {
        for v in 0..=255 * 255 {
            assert_eq!(div255(v), (v as f64 / 255.0).round() as u32, "{v}");
        }
    }

    #[test]
    fn a_halo_surrounds_the_letters_by_its_radius() {
        let mut pixmap = Pixmap::new(40, 40).expect("pixmap");
        pixmap.fill(Color::from_rgba8(0, 0, 255, 255));
        let path = square();
        let label = Paintable {
            path: &path,
            fill: Color::BLACK,
            halo: Color::WHITE,
            halo_px: 2.0,
        };
        paint(&[label], &mut pixmap.as_mut(), Transform::identity());
        assert_eq!(pixel(&pixmap, 15, 15), (0, 0, 0, 255), "inside: fill");
        assert_eq!(
            pixel(&pixmap, 8, 15),
            (255, 255, 255, 255),
            "1.5 px out: halo"
        );
        assert_eq!(
            pixel(&pixmap, 5, 15),
            (0, 0, 255, 255),
            "4.5 px out: background"
        );
        assert_eq!(pixel(&pixmap, 15, 21), (255, 255, 255, 255), "below: halo");
    }

    #[test]
    fn without_a_halo_only_the_letters_are_painted_like_tiny_skia_would() {
        let mut ours = Pixmap::new(40, 40).expect("pixmap");
        let mut theirs = Pixmap::new(40, 40).expect("pixmap");
        let path = PathBuilder::from_circle(20.3, 19.6, 7.2).expect("circle");
        let label = Paintable {
            path: &path,
            fill: Color::from_rgba8(0x22, 0x22, 0x22, 255),
            halo: Color::WHITE,
            halo_px: 0.0,
        };
        paint(&[label], &mut ours.as_mut(), Transform::identity());
        let mut paint = tiny_skia::Paint::default();
        paint.set_color(Color::from_rgba8(0x22, 0x22, 0x22, 255));
        paint.anti_alias = true;
        theirs.fill_path(
            &path,
            &paint,
            FillRule::Winding,
            Transform::identity(),
            None,
        );
        let differ = ours
            .data()
            .iter()
            .zip(theirs.data())
            .filter(|(a, b)| a.abs_diff(**b) > 2)
            .count();
        assert_eq!(differ, 0);
    }

    #[test]
    fn labels_partly_outside_the_pixmap_are_painted_in_part() {
        let mut pixmap = Pixmap::new(16, 16).expect("pixmap");
        let path = square();
        let label = Paintable {
            path: &path,
            fill: Color::BLACK,
            halo: Color::WHITE,
            halo_px: 1.5,
        };
        paint(&[label], &mut pixmap.as_mut(), Transform::identity());
        assert_eq!(pixel(&pixmap, 15, 15), (0, 0, 0, 255));
        assert_eq!(pixel(&pixmap, 9, 15), (255, 255, 255, 255));
    }

    #[test]
    fn the_transform_moves_and_scales_the_label_and_its_halo() {
        let mut pixmap = Pixmap::new(80, 80).expect("pixmap");
        let path = square();
        let label = Paintable {
            path: &path,
            fill: Color::BLACK,
            halo: Color::WHITE,
            halo_px: 2.0,
        };
        paint(
            &[label],
            &mut pixmap.as_mut(),
            Transform::from_scale(2.0, 2.0).post_translate(5.0, 0.0),
        );
        assert_eq!(pixel(&pixmap, 35, 30), (0, 0, 0, 255));
        // Halo radius 4 after scaling: 3.5 px left of the square (x = 25).
        assert_eq!(pixel(&pixmap, 22, 30), (255, 255, 255, 255));
        assert_eq!(pixel(&pixmap, 19, 30), (0, 0, 0, 0));
    }
}
