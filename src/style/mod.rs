//! Style files: loading `styles/*.toml`, validating them into [`Style`]s, and the
//! zoom-dependent values the renderer evaluates.
//!
//! A style is checked completely at load: unknown keys, bad colours, reversed zoom
//! ranges, bad dashes, unknown SQL placeholders are errors that name the file, the layer
//! (and rule) and the field, so the server refuses to start rather than render garbage.
//! Whether the SQL itself runs is checked by the source
//! (`PostgisSource::check_style`), which needs the database. The file format is
//! documented field by field in `styles/README.md`.

mod file;
mod model;
mod validate;

use validate::Validator;

pub use model::{
    BlendMode, CompositeInput, Interactivity, Layer, LineCap, LineJoin, LineStyle, Marker,
    MarkerShape, Rgba, Rule, Style, StyleAccess, StyleKind, TextPlacement, TextSymbolizer,
    ZoomValue,
};

use crate::tile::StyleName;
use file::RawStyle;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// Default HTTP `max-age` of a tile: one day.
pub const DEFAULT_MAX_AGE_SECS: u64 = 86_400;
/// Default HTTP `stale-while-revalidate`: one week.
pub const DEFAULT_STALE_WHILE_REVALIDATE_SECS: u64 = 604_800;
/// Default buffer around a metatile, in pixels at scale 1: wide enough for the widest
/// casing and for labels that cross the metatile edge (renderd uses 128 too).
pub const DEFAULT_BUFFER_PX: u32 = 128;
/// Largest accepted buffer at scale 1.
pub const MAX_BUFFER_PX: u32 = 512;
/// Default tile edge at scale 1.
pub const DEFAULT_TILE_SIZE: u32 = 256;
/// The face of a `text` symbolizer that names none.
pub const DEFAULT_FONT: &str = "DejaVu Sans Book";

/// The placeholders a layer's SQL may use, and the bind parameter each becomes.
/// Parameters: `$1..$4` = bbox min x, min y, max x, max y (EPSG:3857 metres, metatile
/// plus buffer), `$5` = zoom (int4), `$6` = pixel size in metres at this zoom and scale
/// (float8), `$7` = scale factor (float8), `$8..$11` = the metatile alone (no buffer),
/// as `$1..$4`.
pub const QUERY_PARAMS: &[(&str, &str)] = &[
    (
        "!bbox!",
        "ST_MakeEnvelope($1::float8, $2::float8, $3::float8, $4::float8, 3857)",
    ),
    ("!zoom!", "$5::int4"),
    ("!pixel_size!", "$6::float8"),
    ("!scale!", "$7::float8"),
    (
        "!metatile_bbox!",
        "ST_MakeEnvelope($8::float8, $9::float8, $10::float8, $11::float8, 3857)",
    ),
];

/// Why a style (or a folder of styles) was refused. Every variant names the file;
/// `place` names the layer, rule and field when there is one.
#[derive(Debug, Error)]
pub enum StyleError {
    #[error("cannot read styles from {}: {source}", dir.display())]
    ReadDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("no style files (*.toml) in {}", dir.display())]
    NoStyles { dir: PathBuf },
    #[error("cannot read style file {}: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("style file {}: {message}", file.display())]
    Syntax { file: PathBuf, message: String },
    #[error("style file {}: {place}: {message}", file.display())]
    Invalid {
        file: PathBuf,
        place: String,
        message: String,
    },
    #[error("style {name:?} is defined twice: in {} and in {}", first.display(), second.display())]
    Duplicate {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
}

/// A cache tree made from another style's metatiles (see [`StyleSet::dependents`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dependent {
    /// The style's UTFGrids, written by the same render as its tiles.
    Grid(StyleName),
    /// A composite style that blends it.
    Composite(StyleName),
}

impl Dependent {
    pub fn name(&self) -> &StyleName {
        match self {
            Dependent::Grid(n) | Dependent::Composite(n) => n,
        }
    }
}

/// Every style of a folder, by name; a `hidpi` file contributes `name` and `name@2x`.
#[derive(Debug, Clone, Default)]
pub struct StyleSet {
    styles: BTreeMap<StyleName, Arc<Style>>,
}

impl StyleSet {
    /// Loads and validates every `*.toml` file in `dir` (sorted by name). The first
    /// error stops loading.
    pub fn load_dir(dir: &Path) -> Result<StyleSet, StyleError> {
        let files = style_files(dir)?;
        if files.is_empty() {
            return Err(StyleError::NoStyles {
                dir: dir.to_path_buf(),
            });
        }
        let mut set = StyleSet::default();
        for file in files {
            for style in load_file(&file)? {
                set.insert(style)?;
            }
        }
        set.check_references()?;
        Ok(set)
    }

    /// Checks that every composite's inputs are rendered styles of the set with the
    /// composite's tile size (so no composite feeds another, and there are no cycles).
    pub fn check_references(&self) -> Result<(), StyleError> {
        for style in self.styles.values() {
            for (i, input) in style.inputs().iter().enumerate() {
                let err = |message: String| StyleError::Invalid {
                    file: style.file.clone(),
                    place: format!("composite input #{}, field `style`", i + 1),
                    message,
                };
                let Some(found) = self.styles.get(&input.style) else {
                    return Err(err(match style.scale == 1.0 {
                        true => format!("no style is called {:?}", input.style.as_str()),
                        false => format!(
                            "{} needs {:?}, which does not exist (set `hidpi = true` in that style, or remove it here)",
                            style.name, input.style.as_str()
                        ),
                    }));
                };
                if found.kind != StyleKind::Rendered {
                    return Err(err(format!(
                        "{:?} is not a rendered style: composites blend styles drawn from [[layer]]s",
                        input.style.as_str()
                    )));
                }
                if found.tile_size != style.tile_size {
                    return Err(err(format!(
                        "{:?} has {} px tiles, the composite {} px",
                        input.style.as_str(),
                        found.tile_size,
                        style.tile_size
                    )));
                }
            }
        }
        Ok(())
    }

    /// The cache trees that hold tiles made from `name`'s metatiles, which expire with
    /// them: its UTFGrids (`name@grid`) and the composites it is an input of.
    pub fn dependents(&self, name: &StyleName) -> Vec<Dependent> {
        let mut out = Vec::new();
        if let Some(grid) = self.styles.get(name).and_then(|s| s.grid_name()) {
            out.push(Dependent::Grid(grid));
        }
        for style in self.styles.values() {
            if style.inputs().iter().any(|i| i.style == *name) {
                out.push(Dependent::Composite(style.name.clone()));
            }
        }
        out
    }

    /// Adds a style; refuses a second style of the same name.
    pub fn insert(&mut self, style: Style) -> Result<(), StyleError> {
        if let Some(first) = self.styles.get(&style.name) {
            return Err(StyleError::Duplicate {
                name: style.name.to_string(),
                first: first.file.clone(),
                second: style.file,
            });
        }
        self.styles.insert(style.name.clone(), Arc::new(style));
        Ok(())
    }

    pub fn get(&self, name: &StyleName) -> Option<&Arc<Style>> {
        self.styles.get(name)
    }

    /// Checks that every face a `text` symbolizer names is among the loaded fonts (run
    /// once at start, after loading the fonts of `render.fonts`).
    pub fn check_fonts(&self, fonts: &crate::text::FontSet) -> Result<(), StyleError> {
        self.styles.values().try_for_each(|s| s.check_fonts(fonts))
    }

    /// Styles in name order (`osm` before `osm@2x`).
    /// Whether the style named `base` has a `@2x` variant.
    pub fn has_hidpi(&self, base: &StyleName) -> bool {
        self.iter().any(|s| s.base_name == *base && s.scale != 1.0)
    }

    /// The styles as users name them: scale-1 styles, each with whether it also
    /// serves `{y}@2x.png`.
    pub fn public_names(&self) -> Vec<String> {
        self.iter()
            .filter(|s| s.scale == 1.0)
            .map(|s| match self.has_hidpi(&s.name) {
                true => format!("{} (+@2x)", s.name),
                false => s.name.to_string(),
            })
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Style>> {
        self.styles.values()
    }

    pub fn len(&self) -> usize {
        self.styles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.styles.is_empty()
    }
}

impl Style {
    /// Checks that every face a `text` symbolizer names is among the loaded fonts; the
    /// error names the file, layer, rule and field and lists the faces there are.
    pub fn check_fonts(&self, fonts: &crate::text::FontSet) -> Result<(), StyleError> {
        for layer in &self.layers {
            for (i, rule) in layer.rules.iter().enumerate() {
                let Some(text) = &rule.text else { continue };
                if fonts.has_family(&text.font) {
                    continue;
                }
                let kind_hint = match rule.kinds.as_deref() {
                    Some([k]) => format!(" (kind {k:?})"),
                    _ => String::new(),
                };
                return Err(StyleError::Invalid {
                    file: self.file.clone(),
                    place: format!(
                        "layer {:?}, rule #{}{kind_hint}, field `text.font`",
                        layer.name,
                        i + 1
                    ),
                    message: format!(
                        "no loaded font is called {:?} (render.fonts has: {})",
                        text.font,
                        fonts.face_names().join(", ")
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Loads one style file: the scale-1 style, then its `@2x` variant if enabled.
pub fn load_file(file: &Path) -> Result<Vec<Style>, StyleError> {
    let text = std::fs::read_to_string(file).map_err(|source| StyleError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    parse_style(&text, file, stem)
}

/// Parses and validates style text; `default_name` is used when the file sets no name.
pub fn parse_style(text: &str, file: &Path, default_name: &str) -> Result<Vec<Style>, StyleError> {
    let raw: RawStyle = toml::from_str(text).map_err(|e| StyleError::Syntax {
        file: file.to_path_buf(),
        message: one_line(&e.to_string()),
    })?;
    let mut styles = Validator { file }.style(raw, default_name)?;
    let version = version_of(text);
    for style in &mut styles {
        style.version.clone_from(&version);
    }
    Ok(styles)
}

/// The version of a style file's text: 12 hex digits of its SHA-256.
pub fn version_of(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(text.as_bytes())[..6])
}

/// The style files of a folder (`*.toml`), sorted by name.
pub fn style_files(dir: &Path) -> Result<Vec<PathBuf>, StyleError> {
    let read_dir = |source| StyleError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir)? {
        let path = entry.map_err(read_dir)?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The style set shared by the request flow, the renderer and the admin API, replaced
/// whole by a reload. A reader takes a snapshot ([`LiveStyles::current`]) and keeps
/// it as long as it needs: a render in flight finishes with the style it started with.
#[derive(Debug)]
pub struct LiveStyles(std::sync::RwLock<Arc<StyleSet>>);

impl LiveStyles {
    pub fn new(styles: Arc<StyleSet>) -> Self {
        Self(std::sync::RwLock::new(styles))
    }

    pub fn current(&self) -> Arc<StyleSet> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn replace(&self, styles: Arc<StyleSet>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = styles;
    }
}

fn one_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests;
