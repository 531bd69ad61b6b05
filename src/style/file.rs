//! The style file as written (TOML), before validation: plain serde structs that deny
//! unknown keys. Colours stay strings here so validation can name the field that holds
//! a bad one.

use serde::Deserialize;

/// A number, or zoom stops `[[zoom, value], ...]` interpolated linearly between stops.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawZoomValue {
    Const(f32),
    Stops(Vec<(f32, f32)>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStyle {
    pub name: Option<String>,
    #[serde(default)]
    pub attribution: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub minzoom: Option<i64>,
    #[serde(default)]
    pub maxzoom: Option<i64>,
    pub background: Option<String>,
    pub buffer: Option<i64>,
    pub tile_size: Option<i64>,
    #[serde(default)]
    pub hidpi: bool,
    pub max_age_secs: Option<u64>,
    pub stale_while_revalidate_secs: Option<u64>,
    /// Optional map centre `[lon, lat, zoom]` for TileJSON and the viewer.
    pub center: Option<(f64, f64, f64)>,
    /// Serve a placeholder (an ancestor scaled up) when a miss cannot be rendered now.
    #[serde(default)]
    pub placeholder: bool,
    /// Who may fetch the style's tiles.
    pub access: Option<RawAccess>,
    /// Layers stay untyped here: each is deserialized on its own so an error can name it.
    #[serde(default, rename = "layer")]
    pub layers: Vec<toml::Value>,
    /// A composite style's inputs, bottom first (instead of layers).
    #[serde(default)]
    pub composite: Vec<toml::Value>,
    /// An MBTiles or PMTiles file to serve (instead of layers), relative to the style file.
    pub archive: Option<String>,
    /// `mbtiles` or `pmtiles`; default: from the archive's extension.
    pub archive_format: Option<String>,
    pub interactivity: Option<RawInteractivity>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCompositeInput {
    pub style: String,
    pub opacity: Option<f32>,
    pub blend: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInteractivity {
    pub layer: String,
    pub fields: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccess {
    /// `"none"` (default) or `"required"`.
    pub key: Option<String>,
    #[serde(default)]
    pub referers: Vec<String>,
    #[serde(default)]
    pub allow_missing_referer: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLayer {
    pub name: String,
    pub sql: String,
    pub minzoom: Option<i64>,
    pub maxzoom: Option<i64>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<toml::Value>,
}

/// One string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub kind: Option<OneOrMany>,
    pub minzoom: Option<i64>,
    pub maxzoom: Option<i64>,
    pub fill: Option<String>,
    pub fill_opacity: Option<f32>,
    pub stroke: Option<RawLine>,
    pub casing: Option<RawLine>,
    pub marker: Option<RawMarker>,
    pub text: Option<RawText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLine {
    pub color: String,
    pub width: RawZoomValue,
    pub opacity: Option<f32>,
    pub cap: Option<String>,
    pub join: Option<String>,
    pub dash: Option<Vec<f32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMarker {
    pub shape: Option<String>,
    pub size: RawZoomValue,
    pub fill: Option<String>,
    pub stroke: Option<String>,
    pub stroke_width: Option<f32>,
    pub opacity: Option<f32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawText {
    pub placement: Option<String>,
    pub font: Option<String>,
    pub size: RawZoomValue,
    pub fill: Option<String>,
    pub halo: Option<String>,
    pub halo_width: Option<f32>,
    pub offset: Option<(f32, f32)>,
    pub wrap: Option<f32>,
    pub spacing: Option<f32>,
    pub max_bend: Option<f32>,
    pub padding: Option<f32>,
    pub repeat_distance: Option<f32>,
    pub priority: Option<i64>,
}
