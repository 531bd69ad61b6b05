//! The validated style: what the source queries and the renderer paints.

use crate::archive::ArchiveFormat;
use crate::tile::StyleName;
use std::path::PathBuf;

/// An sRGB colour with straight (not premultiplied) alpha.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rgba {
    pub r: u8,
    pub g: u8,
    pub b: u8,
    pub a: u8,
}

impl Rgba {
    /// Parses `#rgb`, `#rrggbb` or `#rrggbbaa`.
    pub fn parse(text: &str) -> Option<Rgba> {
        let hex = text.strip_prefix('#')?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let byte = |i: usize| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok();
        let nibble = |i: usize| {
            u8::from_str_radix(hex.get(i..i + 1)?, 16)
                .ok()
                .map(|v| v * 17)
        };
        match hex.len() {
            3 => Some(Rgba {
                r: nibble(0)?,
                g: nibble(1)?,
                b: nibble(2)?,
                a: 255,
            }),
            6 => Some(Rgba {
                r: byte(0)?,
                g: byte(2)?,
                b: byte(4)?,
                a: 255,
            }),
            8 => Some(Rgba {
                r: byte(0)?,
                g: byte(2)?,
                b: byte(4)?,
                a: byte(6)?,
            }),
            _ => None,
        }
    }

    /// This colour with its alpha multiplied by `opacity` (0..=1).
    pub fn with_opacity(self, opacity: f32) -> Rgba {
        let a = (f32::from(self.a) * opacity.clamp(0.0, 1.0)).round() as u8;
        Rgba { a, ..self }
    }
}

/// A value that may change with zoom: a constant, or stops interpolated linearly
/// between them and held constant outside them.
#[derive(Debug, Clone, PartialEq)]
pub enum ZoomValue {
    Const(f32),
    /// (zoom, value) pairs, zooms strictly increasing, at least one.
    Stops(Vec<(f32, f32)>),
}

impl ZoomValue {
    /// The value at zoom `z`.
    pub fn at(&self, z: f32) -> f32 {
        match self {
            ZoomValue::Const(v) => *v,
            ZoomValue::Stops(stops) => {
                let Some(&(z0, v0)) = stops.first() else {
                    return 0.0;
                };
                if z <= z0 {
                    return v0;
                }
                for pair in stops.windows(2) {
                    let ((za, va), (zb, vb)) = (pair[0], pair[1]);
                    if z <= zb {
                        let t = (z - za) / (zb - za);
                        return va + (vb - va) * t;
                    }
                }
                stops.last().map_or(v0, |s| s.1)
            }
        }
    }
}

/// Line end shape (as SVG `stroke-linecap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineCap {
    Butt,
    Round,
    Square,
}

/// Line corner shape (as SVG `stroke-linejoin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineJoin {
    Miter,
    Round,
    Bevel,
}

/// How a line (or a polygon outline) is stroked. Widths and dashes are in pixels at
/// scale 1; the renderer multiplies them by the style's scale.
#[derive(Debug, Clone, PartialEq)]
pub struct LineStyle {
    /// Colour with the `opacity` already folded into its alpha.
    pub color: Rgba,
    pub width: ZoomValue,
    pub cap: LineCap,
    pub join: LineJoin,
    /// Alternating drawn / gap lengths, an even count, all > 0; empty = solid.
    pub dash: Vec<f32>,
}

/// Marker shape for points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerShape {
    Circle,
    Square,
}

/// A marker drawn at each point (and each vertex of a multipoint).
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub shape: MarkerShape,
    /// Diameter (or side) in pixels at scale 1.
    pub size: ZoomValue,
    pub fill: Option<Rgba>,
    pub stroke: Option<Rgba>,
    pub stroke_width: f32,
}

/// What to draw for the features of a layer that match: at most one of each
/// symbolizer. The layer paints, per draw group, every fill, then every casing, then
/// every stroke, then every marker.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Matches features whose `kind` column is one of these; `None` matches all.
    pub kinds: Option<Vec<String>>,
    pub minzoom: u8,
    pub maxzoom: u8,
    /// Polygon fill (colour with opacity folded in).
    pub fill: Option<Rgba>,
    /// A wider line drawn under `stroke` (roads' borders).
    pub casing: Option<LineStyle>,
    /// The line itself, or a polygon's outline.
    pub stroke: Option<LineStyle>,
    pub marker: Option<Marker>,
    /// A label from the query's `label` column, placed after all layers are painted.
    pub text: Option<TextSymbolizer>,
}

impl Rule {
    pub fn active_at(&self, z: u8) -> bool {
        (self.minzoom..=self.maxzoom).contains(&z)
    }

    /// Whether the rule paints on the map itself (a fill, line or marker), as opposed
    /// to only labelling.
    pub fn paints_map(&self) -> bool {
        self.fill.is_some()
            || self.casing.is_some()
            || self.stroke.is_some()
            || self.marker.is_some()
    }

    /// Whether a feature with this `kind` value is drawn by this rule.
    pub fn matches(&self, kind: Option<&str>) -> bool {
        match (&self.kinds, kind) {
            (None, _) => true,
            (Some(kinds), Some(k)) => kinds.iter().any(|x| x == k),
            (Some(_), None) => false,
        }
    }
}

/// Where a label goes.
#[derive(Debug, Clone, PartialEq)]
pub enum TextPlacement {
    /// Centred on the point (for lines and polygons: on an interior point), shifted by
    /// `offset` pixels (x right, y down), wrapped at spaces to lines of at most `wrap`
    /// pixels.
    Point {
        offset: (f32, f32),
        wrap: Option<f32>,
    },
    /// Along the line, following its curves, upright; one label per `spacing` pixels of
    /// line, none where it turns more than `max_bend_deg` between two characters.
    Line { spacing: f32, max_bend_deg: f32 },
}

/// A label: the text of the query's `label` column, drawn after every layer, placed in
/// priority order without overlaps. Lengths are pixels at scale 1.
#[derive(Debug, Clone, PartialEq)]
pub struct TextSymbolizer {
    /// A face name, e.g. "DejaVu Sans Book" (checked against the loaded fonts at start).
    pub font: String,
    pub size: ZoomValue,
    pub fill: Rgba,
    pub halo: Rgba,
    /// Halo radius; 0 = none.
    pub halo_width: f32,
    pub placement: TextPlacement,
    /// Minimum distance to labels placed before this one.
    pub padding: f32,
    /// Minimum distance between two labels with the same text; 0 = no limit.
    pub repeat_distance: f32,
    /// Higher is placed first; equal priorities go by layer order, then row order.
    pub priority: i32,
}

/// One query and its paint rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub name: String,
    /// The SQL as written in the style file, with `!placeholders!`.
    pub sql: String,
    /// The SQL with placeholders replaced by bind parameters `$1..$11` (see
    /// [`super::QUERY_PARAMS`]); prepared once per connection and executed per metatile.
    pub query: String,
    pub minzoom: u8,
    pub maxzoom: u8,
    pub rules: Vec<Rule>,
}

impl Layer {
    /// A layer is queried at `z` only if it and at least one of its rules are active.
    pub fn active_at(&self, z: u8) -> bool {
        (self.minzoom..=self.maxzoom).contains(&z) && self.rules.iter().any(|r| r.active_at(z))
    }

    /// Whether any rule filters on the `kind` column (which the query must then return).
    pub fn uses_kind(&self) -> bool {
        self.rules.iter().any(|r| r.kinds.is_some())
    }

    /// Whether any rule draws labels (the query must then return a `label` column).
    pub fn uses_label(&self) -> bool {
        self.rules.iter().any(|r| r.text.is_some())
    }
}

/// Where a style's tiles come from.
#[derive(Debug, Clone, PartialEq)]
pub enum StyleKind {
    /// Rendered from its layers' SQL, cached as metatiles.
    Rendered,
    /// Other styles' tiles blended, bottom first, cached as its own metatiles.
    Composite(Vec<CompositeInput>),
    /// Served as they are from an MBTiles or PMTiles file (read-only).
    Archive {
        path: PathBuf,
        format: ArchiveFormat,
    },
}

/// One input of a composite style.
#[derive(Debug, Clone, PartialEq)]
pub struct CompositeInput {
    /// A rendered style of the same tile size (the `@2x` one for a composite's `@2x`).
    pub style: StyleName,
    /// 0..=1, applied to the whole input tile.
    pub opacity: f32,
    pub blend: BlendMode,
}

/// How an input is blended over what is below it (the separable and non-separable
/// modes of CSS `mix-blend-mode`, as tiny-skia implements them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlendMode {
    Normal,
    Multiply,
    Screen,
    Overlay,
    Darken,
    Lighten,
    ColorDodge,
    ColorBurn,
    HardLight,
    SoftLight,
    Difference,
    Exclusion,
    Hue,
    Saturation,
    Color,
    Luminosity,
}

impl BlendMode {
    pub const ALL: [BlendMode; 16] = [
        BlendMode::Normal,
        BlendMode::Multiply,
        BlendMode::Screen,
        BlendMode::Overlay,
        BlendMode::Darken,
        BlendMode::Lighten,
        BlendMode::ColorDodge,
        BlendMode::ColorBurn,
        BlendMode::HardLight,
        BlendMode::SoftLight,
        BlendMode::Difference,
        BlendMode::Exclusion,
        BlendMode::Hue,
        BlendMode::Saturation,
        BlendMode::Color,
        BlendMode::Luminosity,
    ];

    /// The name in style files (CSS's spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            BlendMode::Normal => "normal",
            BlendMode::Multiply => "multiply",
            BlendMode::Screen => "screen",
            BlendMode::Overlay => "overlay",
            BlendMode::Darken => "darken",
            BlendMode::Lighten => "lighten",
            BlendMode::ColorDodge => "color-dodge",
            BlendMode::ColorBurn => "color-burn",
            BlendMode::HardLight => "hard-light",
            BlendMode::SoftLight => "soft-light",
            BlendMode::Difference => "difference",
            BlendMode::Exclusion => "exclusion",
            BlendMode::Hue => "hue",
            BlendMode::Saturation => "saturation",
            BlendMode::Color => "color",
            BlendMode::Luminosity => "luminosity",
        }
    }

    pub fn parse(text: &str) -> Option<BlendMode> {
        BlendMode::ALL.into_iter().find(|m| m.as_str() == text)
    }
}

/// What a style's UTFGrid exposes: the features of one layer, with some of the
/// columns its query returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Interactivity {
    /// Index of the layer in [`Style::layers`].
    pub layer: usize,
    /// Columns of that layer's query, in this order, as the grid's data of a feature.
    pub fields: Vec<String>,
}

/// A validated style at one scale. A file with `hidpi = true` yields two: `name`
/// (scale 1, 256 px tiles) and `name@2x` (scale 2, 512 px tiles).
#[derive(Debug, Clone, PartialEq)]
pub struct Style {
    pub name: StyleName,
    pub base_name: StyleName,
    /// The file this style came from (for messages).
    pub file: PathBuf,
    /// The first 12 hex digits of the SHA-256 of the file's text: changes with any
    /// edit, goes into the TileJSON tile URL (`?v=`).
    pub version: String,
    pub scale: f32,
    /// Tile edge in device pixels: the file's `tile_size` times `scale`.
    pub tile_size: u32,
    pub attribution: String,
    pub description: String,
    pub minzoom: u8,
    pub maxzoom: u8,
    /// HTTP `Cache-Control: max-age`.
    pub max_age_secs: u64,
    /// HTTP `stale-while-revalidate`.
    pub stale_while_revalidate_secs: u64,
    /// Extra device pixels painted (and queried) around the metatile on every side.
    pub buffer_px: u32,
    pub background: Rgba,
    /// Map centre `[lon, lat, zoom]` if the file gives one.
    pub center: Option<[f64; 3]>,
    /// Whether a miss that cannot be rendered now is answered with a placeholder (the
    /// nearest cached ancestor, scaled up) instead of a 503.
    pub placeholder: bool,
    /// Who may fetch the style's tiles.
    pub access: StyleAccess,
    /// Layers in draw order, bottom first (none for composite and archive styles).
    pub layers: Vec<Layer>,
    /// Rendered, composite or archive-backed.
    pub kind: StyleKind,
    /// The UTFGrid section, for rendered styles that have one.
    pub interactivity: Option<Interactivity>,
}

/// Access rules of a style (`[access]` in its file): an API key, allowed web origins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StyleAccess {
    /// Requests must carry a key that the keys file grants this style.
    pub key_required: bool,
    /// Origins allowed by `Origin` / `Referer`: `https://example.com`, or
    /// `https://*.example.com` for its subdomains. Empty = any.
    pub referers: Vec<String>,
    /// With `referers`, whether a request sending neither header is let through
    /// (non-browser clients send none).
    pub allow_missing_referer: bool,
}

impl Style {
    /// Whether its tiles are rendered (and cached) by this server: rendered and
    /// composite styles; archive styles are only read.
    pub fn is_rendered(&self) -> bool {
        !matches!(self.kind, StyleKind::Archive { .. })
    }

    /// The name of the cache tree of its UTFGrids (`<name>@grid`), for styles with
    /// interactivity.
    pub fn grid_name(&self) -> Option<StyleName> {
        self.interactivity.as_ref()?;
        StyleName::parse(&format!("{}@grid", self.name)).ok()
    }

    /// The composite's inputs (empty for other kinds).
    pub fn inputs(&self) -> &[CompositeInput] {
        match &self.kind {
            StyleKind::Composite(inputs) => inputs,
            _ => &[],
        }
    }

    /// This style without labels: every `text` symbolizer removed, and the rules that
    /// drew only text with them (layers left without rules are neither queried nor
    /// drawn). For measuring what labels cost.
    pub fn without_labels(&self) -> Style {
        let mut style = self.clone();
        for layer in &mut style.layers {
            layer.rules.retain(Rule::paints_map);
            for rule in &mut layer.rules {
                rule.text = None;
            }
        }
        style
    }

    /// Whether any layer draws labels.
    #[cfg(test)]
    pub(crate) fn uses_text(&self) -> bool {
        self.layers.iter().any(Layer::uses_label)
    }

    /// Width of a device pixel in EPSG:3857 metres at zoom `z`.
    pub fn pixel_size(&self, z: u8) -> f64 {
        crate::tile::tile_span(z) / f64::from(self.tile_size)
    }
}
