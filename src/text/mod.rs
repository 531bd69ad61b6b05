//! Map labels: fonts, shaping, glyph outlines painted on tiny-skia with halos, and
//! placement of point and line labels without overlaps on a metatile canvas.
//!
//! This module owns everything between "this text, here, in this style" and pixels; it
//! knows nothing of style files or PostGIS. The renderer builds one [`LabelPlacer`] per
//! metatile over the canvas including its buffer, offers it label candidates in priority
//! order, and finally calls [`LabelPlacer::draw`] once, after the map layers.
//!
//! - [`fonts`]: [`FontSet`], loaded once per process: faces by name, fallback chain per
//!   character, cached glyph outlines.
//! - `shape`: text -> positioned glyphs with rustybuzz, runs split by face, word wrap.
//! - `geometry`: polylines measured by length, boxes.
//! - [`placer`]: [`LabelPlacer`]: point and line placement, the R-tree collision index,
//!   drawing (all halos, then all fills).
//! - `raster`: a label's coverage mask, its halo by dilation, compositing.
//!
//! Text with a character that no configured font has is skipped whole, with one warning
//! per (font, character); nothing is ever drawn as a box glyph.
//!
//! ```no_run
//! use metatiled::text::{FontSet, LabelPlacer, TextStyle};
//! use tiny_skia::{Pixmap, Rect, Transform};
//!
//! // Once per process; share it (e.g. in an Arc) between render threads.
//! let fonts = FontSet::system_default()?;
//! // Per metatile: the canvas is the 2048 px metatile plus a 128 px buffer each side.
//! let mut canvas = Pixmap::new(2304, 2304).expect("size");
//! let area = Rect::from_xywh(0.0, 0.0, 2304.0, 2304.0).expect("rect");
//! let mut labels = LabelPlacer::new(&fonts, area, 1.0);
//! // Highest priority first (places before roads, major roads before minor ones).
//! let city = TextStyle { family: "DejaVu Sans Bold".into(), size_px: 14.0, halo_px: 2.0,
//!     wrap_px: Some(80.0), ..TextStyle::default() };
//! labels.place_point("Helsinki", (1150.0, 1100.0), &city);
//! labels.place_line("Mannerheimintie", &[(900.0, 1300.0), (1400.0, 1250.0)],
//!     &TextStyle { size_px: 11.0, ..TextStyle::default() });
//! // After all map layers: halos, then letters.
//! labels.draw(&mut canvas.as_mut(), Transform::identity());
//! # Ok::<(), metatiled::text::TextError>(())
//! ```

pub mod fonts;
mod geometry;
pub mod placer;
mod raster;
mod shape;

use std::path::PathBuf;

use thiserror::Error;
use tiny_skia::Color;

pub use fonts::{FaceId, FontSet, DEFAULT_FONT_PATHS};
pub use placer::LabelPlacer;

/// What can fail when loading fonts. Placing a label never fails: a label that cannot be
/// placed is simply not drawn.
#[derive(Debug, Error)]
pub enum TextError {
    #[error("cannot read font path {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("font file {path} cannot be parsed: {reason}")]
    BadFont { path: PathBuf, reason: String },
    #[error("no usable font found in: {paths}")]
    NoFonts { paths: String },
    #[error("more than 65535 font faces configured")]
    TooManyFaces,
}

/// How a label looks and how it is placed. Lengths are in pixels at scale 1 (the
/// placer multiplies them by its scale).
#[derive(Debug, Clone, PartialEq)]
pub struct TextStyle {
    /// A face name known to the [`FontSet`], e.g. "DejaVu Sans Book", "DejaVu Sans Bold".
    pub family: String,
    /// The em size.
    pub size_px: f32,
    pub fill: Color,
    pub halo: Color,
    /// Halo radius: the letters are surrounded by this much halo colour (what a stroke
    /// `2 * halo_px` wide with round joins would cover). 0 = none.
    pub halo_px: f32,
    /// Point labels: wrap at spaces to lines no wider than this (a longer word stays
    /// whole on its own line). None = one line.
    pub wrap_px: Option<f32>,
    /// Point labels: shift of the label's centre from the anchor (x right, y down).
    pub offset_px: (f32, f32),
    /// Line labels: one label per this much line length.
    pub spacing_px: f32,
    /// Line labels: the largest turn between two adjacent characters.
    pub max_bend_deg: f32,
    /// Minimum distance from this label to labels placed before it.
    pub padding_px: f32,
    /// Minimum distance between two labels with the same text (e.g. a street split into
    /// many OSM ways). 0 = no limit.
    pub repeat_distance_px: f32,
}

/// The [`TextStyle`] defaults.
impl Default for TextStyle {
    fn default() -> Self {
        TextStyle {
            family: "DejaVu Sans Book".to_owned(),
            size_px: 12.0,
            fill: Color::BLACK,
            halo: Color::WHITE,
            halo_px: 1.5,
            wrap_px: None,
            offset_px: (0.0, 0.0),
            spacing_px: DEFAULT_SPACING_PX,
            max_bend_deg: DEFAULT_MAX_BEND_DEG,
            padding_px: DEFAULT_PADDING_PX,
            repeat_distance_px: 0.0,
        }
    }
}

/// The OSM style's road label repeat distance.
pub const DEFAULT_SPACING_PX: f32 = 300.0;
/// The OSM style's limit: sharper turns make curved text unreadable.
pub const DEFAULT_MAX_BEND_DEG: f32 = 30.0;
/// A little air between labels so halos do not touch.
pub const DEFAULT_PADDING_PX: f32 = 2.0;

/// One FontSet for all unit tests of this module: loading Noto takes a moment.
#[cfg(test)]
pub(crate) fn test_fonts() -> &'static FontSet {
    static FONTS: std::sync::OnceLock<FontSet> = std::sync::OnceLock::new();
    FONTS.get_or_init(|| FontSet::system_default().expect("DejaVu fonts are installed"))
}
