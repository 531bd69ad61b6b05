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

pub use model::{
    BlendMode, CompositeInput, Interactivity, Layer, LineCap, LineJoin, LineStyle, Marker,
    MarkerShape, Rgba, Rule, Style, StyleAccess, StyleKind, TextPlacement, TextSymbolizer,
    ZoomValue,
};

use crate::archive::ArchiveFormat;
use crate::tile::{StyleName, MAX_ZOOM};
use file::{
    OneOrMany, RawCompositeInput, RawInteractivity, RawLayer, RawLine, RawMarker, RawRule,
    RawStyle, RawText, RawZoomValue,
};
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
/// (float8), `$7` = scale factor (float8).
pub const QUERY_PARAMS: &[(&str, &str)] = &[
    (
        "!bbox!",
        "ST_MakeEnvelope($1::float8, $2::float8, $3::float8, $4::float8, 3857)",
    ),
    ("!zoom!", "$5::int4"),
    ("!pixel_size!", "$6::float8"),
    ("!scale!", "$7::float8"),
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
    Validator { file }.style(raw, default_name)
}

fn one_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Converts raw file structs into the model, naming the place of every error.
struct Validator<'a> {
    file: &'a Path,
}

impl Validator<'_> {
    fn err(&self, place: impl Into<String>, message: impl Into<String>) -> StyleError {
        StyleError::Invalid {
            file: self.file.to_path_buf(),
            place: place.into(),
            message: message.into(),
        }
    }

    fn style(&self, raw: RawStyle, default_name: &str) -> Result<Vec<Style>, StyleError> {
        let name_text = raw.name.as_deref().unwrap_or(default_name);
        let name = StyleName::parse(name_text)
            .map_err(|e| self.err("field `name`", format!("{name_text:?}: {e}")))?;
        if name.as_str().contains('@') {
            return Err(self.err(
                "field `name`",
                "may not contain '@' (the @2x variant is made by `hidpi = true`)",
            ));
        }
        let (minzoom, maxzoom) = self.zoom_range("style", raw.minzoom, raw.maxzoom, (0, 19))?;
        let background = match &raw.background {
            Some(c) => self.color("field `background`", c)?,
            None => Rgba {
                r: 0,
                g: 0,
                b: 0,
                a: 0,
            },
        };
        let buffer = match raw.buffer {
            None => DEFAULT_BUFFER_PX,
            Some(b) if (0..=i64::from(MAX_BUFFER_PX)).contains(&b) => b as u32,
            Some(b) => {
                return Err(self.err(
                    "field `buffer`",
                    format!("{b} is outside 0..={MAX_BUFFER_PX} pixels"),
                ))
            }
        };
        let tile_size = match raw.tile_size {
            None => DEFAULT_TILE_SIZE,
            Some(256) => 256,
            Some(512) => 512,
            Some(t) => {
                return Err(self.err("field `tile_size`", format!("{t}: must be 256 or 512")))
            }
        };
        let center = match raw.center {
            None => None,
            Some((lon, lat, z)) => {
                if !(-180.0..=180.0).contains(&lon)
                    || !(-85.06..=85.06).contains(&lat)
                    || !(0.0..=20.0).contains(&z)
                {
                    return Err(self.err(
                        "field `center`",
                        "must be [lon, lat, zoom] with lon in -180..180, lat in -85..85, zoom in 0..20",
                    ));
                }
                Some([lon, lat, z])
            }
        };
        let access = match raw.access {
            None => StyleAccess::default(),
            Some(a) => {
                let key_required = match a.key.as_deref() {
                    None | Some("none") => false,
                    Some("required") => true,
                    Some(other) => {
                        return Err(self.err(
                            "field `access.key`",
                            format!("{other:?}: expected \"none\" or \"required\""),
                        ))
                    }
                };
                for r in &a.referers {
                    let ok = (r.starts_with("http://") || r.starts_with("https://"))
                        && !r.ends_with('/')
                        && !r.contains(['?', '#', ' ']);
                    if !ok {
                        return Err(self.err(
                            "field `access.referers`",
                            format!("{r:?}: expected an origin such as \"https://example.com\" or \"https://*.example.com\""),
                        ));
                    }
                }
                StyleAccess {
                    key_required,
                    referers: a.referers,
                    allow_missing_referer: a.allow_missing_referer,
                }
            }
        };
        let given = [
            !raw.layers.is_empty(),
            !raw.composite.is_empty(),
            raw.archive.is_some(),
        ];
        match given.iter().filter(|g| **g).count() {
            0 => return Err(self.err(
                "field `layer`",
                "a style needs at least one [[layer]] (or [[composite]] inputs, or an `archive`)",
            )),
            1 => {}
            _ => {
                return Err(self.err(
                    "style",
                    "give only one of [[layer]], [[composite]] and `archive`",
                ))
            }
        }
        let mut layers = Vec::with_capacity(raw.layers.len());
        for (i, value) in raw.layers.into_iter().enumerate() {
            let layer = self.layer(i, value)?;
            if layers.iter().any(|l: &Layer| l.name == layer.name) {
                return Err(self.err(
                    format!("layer {:?}", layer.name),
                    "field `name`: two layers have this name",
                ));
            }
            layers.push(layer);
        }
        let kind = if let Some(archive) = &raw.archive {
            self.archive(archive, raw.archive_format.as_deref(), raw.hidpi)?
        } else if !raw.composite.is_empty() {
            let mut inputs = Vec::with_capacity(raw.composite.len());
            for (i, value) in raw.composite.into_iter().enumerate() {
                inputs.push(self.composite_input(i, value)?);
            }
            StyleKind::Composite(inputs)
        } else {
            if raw.archive_format.is_some() {
                return Err(self.err("field `archive_format`", "only applies with `archive`"));
            }
            StyleKind::Rendered
        };
        let interactivity = match raw.interactivity {
            None => None,
            Some(i) => Some(self.interactivity(&name, &layers, &kind, i)?),
        };
        let base = Style {
            base_name: name.clone(),
            name: name.clone(),
            file: self.file.to_path_buf(),
            scale: 1.0,
            tile_size,
            attribution: raw.attribution,
            description: raw.description,
            minzoom,
            maxzoom,
            max_age_secs: raw.max_age_secs.unwrap_or(DEFAULT_MAX_AGE_SECS),
            stale_while_revalidate_secs: raw
                .stale_while_revalidate_secs
                .unwrap_or(DEFAULT_STALE_WHILE_REVALIDATE_SECS),
            buffer_px: buffer,
            background,
            center,
            placeholder: raw.placeholder,
            access,
            layers,
            kind,
            interactivity,
        };
        let mut out = vec![base.clone()];
        if raw.hidpi {
            let name2x = StyleName::parse(&format!("{name}@2x"))
                .map_err(|e| self.err("field `name`", format!("{name}@2x: {e}")))?;
            let kind = match &base.kind {
                StyleKind::Composite(inputs) => {
                    let mut inputs2x = Vec::with_capacity(inputs.len());
                    for input in inputs {
                        let style =
                            StyleName::parse(&format!("{}@2x", input.style)).map_err(|e| {
                                self.err("field `hidpi`", format!("{}@2x: {e}", input.style))
                            })?;
                        inputs2x.push(CompositeInput {
                            style,
                            ..input.clone()
                        });
                    }
                    StyleKind::Composite(inputs2x)
                }
                other => other.clone(),
            };
            out.push(Style {
                name: name2x,
                kind,
                // UTFGrids are served for the 1x tiles only.
                interactivity: None,
                scale: 2.0,
                tile_size: tile_size * 2,
                buffer_px: buffer * 2,
                ..base
            });
        }
        Ok(out)
    }

    fn archive(
        &self,
        archive: &str,
        format: Option<&str>,
        hidpi: bool,
    ) -> Result<StyleKind, StyleError> {
        if archive.trim().is_empty() {
            return Err(self.err("field `archive`", "is empty"));
        }
        if hidpi {
            return Err(self.err(
                "field `hidpi`",
                "an archive serves its tiles as they are: no @2x variant",
            ));
        }
        let given = Path::new(archive);
        let path = match self.file.parent() {
            Some(dir) if given.is_relative() => dir.join(given),
            _ => given.to_path_buf(),
        };
        let format = match format {
            Some(f) => f
                .parse::<ArchiveFormat>()
                .map_err(|e| self.err("field `archive_format`", e.to_string()))?,
            None => ArchiveFormat::from_path(&path).ok_or_else(|| {
                self.err(
                    "field `archive`",
                    format!(
                        "{archive:?} does not end in .mbtiles or .pmtiles: set `archive_format`"
                    ),
                )
            })?,
        };
        Ok(StyleKind::Archive { path, format })
    }

    fn composite_input(
        &self,
        index: usize,
        value: toml::Value,
    ) -> Result<CompositeInput, StyleError> {
        let place = format!("composite input #{}", index + 1);
        let raw: RawCompositeInput = value
            .try_into()
            .map_err(|e: toml::de::Error| self.err(&place, one_line(e.message())))?;
        let style = StyleName::parse(&raw.style)
            .ok()
            .filter(|n| !n.as_str().contains('@'))
            .ok_or_else(|| {
                self.err(
                    format!("{place}, field `style`"),
                    format!("{:?} is not a style name (the @2x inputs of an @2x composite are implied by `hidpi`)", raw.style),
                )
            })?;
        let opacity = self.opacity(&format!("{place}, field `opacity`"), raw.opacity)?;
        let blend = match raw.blend.as_deref() {
            None => BlendMode::Normal,
            Some(b) => BlendMode::parse(b).ok_or_else(|| {
                let known: Vec<&str> = BlendMode::ALL.iter().map(|m| m.as_str()).collect();
                self.err(
                    format!("{place}, field `blend`"),
                    format!("unknown blend mode {b:?} (known: {})", known.join(", ")),
                )
            })?,
        };
        Ok(CompositeInput {
            style,
            opacity,
            blend,
        })
    }

    fn interactivity(
        &self,
        name: &StyleName,
        layers: &[Layer],
        kind: &StyleKind,
        raw: RawInteractivity,
    ) -> Result<Interactivity, StyleError> {
        if *kind != StyleKind::Rendered {
            return Err(self.err(
                "field `interactivity`",
                "only rendered styles (with [[layer]]s) have UTFGrids",
            ));
        }
        StyleName::parse(&format!("{name}@grid")).map_err(|e| {
            self.err(
                "field `name`",
                format!("its UTFGrid cache {name}@grid: {e}"),
            )
        })?;
        let layer = layers
            .iter()
            .position(|l| l.name == raw.layer)
            .ok_or_else(|| {
                self.err(
                    "field `interactivity.layer`",
                    format!("no layer is called {:?}", raw.layer),
                )
            })?;
        if raw.fields.is_empty() {
            return Err(self.err(
                "field `interactivity.fields`",
                "name at least one column of the layer's query",
            ));
        }
        for (i, field) in raw.fields.iter().enumerate() {
            let plain =
                !field.is_empty() && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !plain || field == "geom" || raw.fields[..i].contains(field) {
                return Err(self.err(
                    "field `interactivity.fields`",
                    format!("{field:?}: each field is a distinct column name of the query, other than `geom`"),
                ));
            }
        }
        Ok(Interactivity {
            layer,
            fields: raw.fields,
        })
    }

    fn zoom_range(
        &self,
        place: &str,
        min: Option<i64>,
        max: Option<i64>,
        default: (u8, u8),
    ) -> Result<(u8, u8), StyleError> {
        let check = |field: &str, v: Option<i64>, d: u8| -> Result<u8, StyleError> {
            match v {
                None => Ok(d),
                Some(v) if (0..=i64::from(MAX_ZOOM)).contains(&v) => Ok(v as u8),
                Some(v) => Err(self.err(
                    format!("{place}, field `{field}`"),
                    format!("{v} is outside 0..={MAX_ZOOM}"),
                )),
            }
        };
        let lo = check("minzoom", min, default.0)?;
        let hi = check("maxzoom", max, default.1)?;
        if lo > hi {
            return Err(self.err(
                format!("{place}, field `minzoom`"),
                format!("zoom range reversed: minzoom {lo} is above maxzoom {hi}"),
            ));
        }
        Ok((lo, hi))
    }

    fn color(&self, place: &str, text: &str) -> Result<Rgba, StyleError> {
        Rgba::parse(text).ok_or_else(|| {
            self.err(
                place,
                format!("bad colour {text:?}: expected #rgb, #rrggbb or #rrggbbaa"),
            )
        })
    }

    fn opacity(&self, place: &str, v: Option<f32>) -> Result<f32, StyleError> {
        match v {
            None => Ok(1.0),
            Some(o) if (0.0..=1.0).contains(&o) => Ok(o),
            Some(o) => Err(self.err(place, format!("{o} is outside 0..=1"))),
        }
    }

    fn layer(&self, index: usize, value: toml::Value) -> Result<Layer, StyleError> {
        let label = value.get("name").and_then(|v| v.as_str()).map_or_else(
            || format!("layer #{}", index + 1),
            |n| format!("layer {n:?}"),
        );
        let raw: RawLayer = value
            .try_into()
            .map_err(|e: toml::de::Error| self.err(&label, one_line(e.message())))?;
        if raw.name.trim().is_empty() {
            return Err(self.err(&label, "field `name` is empty"));
        }
        let (minzoom, maxzoom) =
            self.zoom_range(&label, raw.minzoom, raw.maxzoom, (0, MAX_ZOOM))?;
        let query =
            compile_sql(&raw.sql).map_err(|m| self.err(format!("{label}, field `sql`"), m))?;
        if raw.rules.is_empty() {
            return Err(self.err(
                &label,
                "field `rule`: a layer needs at least one [[layer.rule]]",
            ));
        }
        let mut rules = Vec::with_capacity(raw.rules.len());
        for (i, value) in raw.rules.into_iter().enumerate() {
            rules.push(self.rule(&label, i, value, (minzoom, maxzoom))?);
        }
        Ok(Layer {
            name: raw.name,
            sql: raw.sql,
            query,
            minzoom,
            maxzoom,
            rules,
        })
    }

    fn rule(
        &self,
        layer: &str,
        index: usize,
        value: toml::Value,
        layer_zooms: (u8, u8),
    ) -> Result<Rule, StyleError> {
        let kind_hint = match value.get("kind") {
            Some(toml::Value::String(s)) => format!(" (kind {s:?})"),
            _ => String::new(),
        };
        let place = format!("{layer}, rule #{}{kind_hint}", index + 1);
        let raw: RawRule = value
            .try_into()
            .map_err(|e: toml::de::Error| self.err(&place, one_line(e.message())))?;
        let (minzoom, maxzoom) = self.zoom_range(&place, raw.minzoom, raw.maxzoom, layer_zooms)?;
        let kinds = match raw.kind {
            None => None,
            Some(OneOrMany::One(k)) => Some(vec![k]),
            Some(OneOrMany::Many(ks)) if ks.is_empty() => {
                return Err(self.err(
                    format!("{place}, field `kind`"),
                    "empty list matches nothing",
                ))
            }
            Some(OneOrMany::Many(ks)) => Some(ks),
        };
        let fill_opacity =
            self.opacity(&format!("{place}, field `fill_opacity`"), raw.fill_opacity)?;
        let fill = match &raw.fill {
            Some(c) => Some(
                self.color(&format!("{place}, field `fill`"), c)?
                    .with_opacity(fill_opacity),
            ),
            None => None,
        };
        let stroke = match raw.stroke {
            Some(l) => Some(self.line(&format!("{place}, field `stroke"), l)?),
            None => None,
        };
        let casing = match raw.casing {
            Some(l) => Some(self.line(&format!("{place}, field `casing"), l)?),
            None => None,
        };
        let marker = match raw.marker {
            Some(m) => Some(self.marker(&format!("{place}, field `marker"), m)?),
            None => None,
        };
        let text = match raw.text {
            Some(t) => Some(self.text(&format!("{place}, field `text"), t)?),
            None => None,
        };
        if fill.is_none()
            && stroke.is_none()
            && casing.is_none()
            && marker.is_none()
            && text.is_none()
        {
            return Err(self.err(
                &place,
                "draws nothing: give at least one of `fill`, `stroke`, `casing`, `marker`, `text`",
            ));
        }
        Ok(Rule {
            kinds,
            minzoom,
            maxzoom,
            fill,
            casing,
            stroke,
            marker,
            text,
        })
    }

    /// `prefix` is "<place>, field `text" (the closing backtick is added per field).
    fn text(&self, prefix: &str, raw: RawText) -> Result<TextSymbolizer, StyleError> {
        let font = raw.font.unwrap_or_else(|| DEFAULT_FONT.to_owned());
        if font.trim().is_empty() {
            return Err(self.err(format!("{prefix}.font`"), "is empty"));
        }
        let size = self.zoom_value(&format!("{prefix}.size`"), raw.size, 1.0, 200.0)?;
        let fill = match &raw.fill {
            Some(c) => self.color(&format!("{prefix}.fill`"), c)?,
            None => Rgba {
                r: 0,
                g: 0,
                b: 0,
                a: 255,
            },
        };
        let halo = match &raw.halo {
            Some(c) => self.color(&format!("{prefix}.halo`"), c)?,
            None => Rgba {
                r: 255,
                g: 255,
                b: 255,
                a: 255,
            },
        };
        let length = |field: &str, v: Option<f32>, default: f32, max: f32| {
            let v = v.unwrap_or(default);
            if v.is_finite() && (0.0..=max).contains(&v) {
                Ok(v)
            } else {
                Err(self.err(
                    format!("{prefix}.{field}`"),
                    format!("{v} is outside 0..={max} pixels"),
                ))
            }
        };
        let halo_width = length("halo_width", raw.halo_width, 0.0, 20.0)?;
        let padding = length(
            "padding",
            raw.padding,
            crate::text::DEFAULT_PADDING_PX,
            500.0,
        )?;
        let repeat_distance = length("repeat_distance", raw.repeat_distance, 0.0, 5000.0)?;
        let priority = match raw.priority {
            None => 0,
            Some(p) if (-1_000_000..=1_000_000).contains(&p) => p as i32,
            Some(p) => {
                return Err(self.err(
                    format!("{prefix}.priority`"),
                    format!("{p} is outside -1000000..=1000000"),
                ))
            }
        };
        let only_for = |field: &str, given: bool, placement: &str| {
            if given {
                Err(self.err(
                    format!("{prefix}.{field}`"),
                    format!("applies only to placement = \"{placement}\""),
                ))
            } else {
                Ok(())
            }
        };
        let placement = match raw.placement.as_deref() {
            None | Some("point") => {
                only_for("spacing", raw.spacing.is_some(), "line")?;
                only_for("max_bend", raw.max_bend.is_some(), "line")?;
                let offset = raw.offset.unwrap_or((0.0, 0.0));
                if !(offset.0.is_finite() && offset.1.is_finite())
                    || offset.0.abs() > 500.0
                    || offset.1.abs() > 500.0
                {
                    return Err(self.err(
                        format!("{prefix}.offset`"),
                        "needs [x, y] within -500..=500 pixels",
                    ));
                }
                let wrap = match raw.wrap {
                    None => None,
                    Some(w) => Some(length("wrap", Some(w), 0.0, 5000.0)?),
                };
                TextPlacement::Point { offset, wrap }
            }
            Some("line") => {
                only_for("offset", raw.offset.is_some(), "point")?;
                only_for("wrap", raw.wrap.is_some(), "point")?;
                let spacing = length(
                    "spacing",
                    raw.spacing,
                    crate::text::DEFAULT_SPACING_PX,
                    10_000.0,
                )?;
                if spacing < 1.0 {
                    return Err(self.err(format!("{prefix}.spacing`"), "must be at least 1 pixel"));
                }
                let max_bend = raw.max_bend.unwrap_or(crate::text::DEFAULT_MAX_BEND_DEG);
                if !(max_bend.is_finite() && (0.0..=180.0).contains(&max_bend)) {
                    return Err(self.err(
                        format!("{prefix}.max_bend`"),
                        format!("{max_bend} is outside 0..=180 degrees"),
                    ));
                }
                TextPlacement::Line {
                    spacing,
                    max_bend_deg: max_bend,
                }
            }
            Some(o) => {
                return Err(self.err(
                    format!("{prefix}.placement`"),
                    format!("{o:?}: expected \"point\" or \"line\""),
                ))
            }
        };
        Ok(TextSymbolizer {
            font,
            size,
            fill,
            halo,
            halo_width,
            placement,
            padding,
            repeat_distance,
            priority,
        })
    }

    /// `prefix` is "<place>, field `stroke" (the closing backtick is added per field).
    fn line(&self, prefix: &str, raw: RawLine) -> Result<LineStyle, StyleError> {
        let opacity = self.opacity(&format!("{prefix}.opacity`"), raw.opacity)?;
        let color = self
            .color(&format!("{prefix}.color`"), &raw.color)?
            .with_opacity(opacity);
        let width = self.zoom_value(&format!("{prefix}.width`"), raw.width, 0.0, 100.0)?;
        let cap = match raw.cap.as_deref() {
            None | Some("butt") => LineCap::Butt,
            Some("round") => LineCap::Round,
            Some("square") => LineCap::Square,
            Some(o) => {
                return Err(self.err(
                    format!("{prefix}.cap`"),
                    format!("{o:?}: expected \"butt\", \"round\" or \"square\""),
                ))
            }
        };
        let join = match raw.join.as_deref() {
            None | Some("miter") => LineJoin::Miter,
            Some("round") => LineJoin::Round,
            Some("bevel") => LineJoin::Bevel,
            Some(o) => {
                return Err(self.err(
                    format!("{prefix}.join`"),
                    format!("{o:?}: expected \"miter\", \"round\" or \"bevel\""),
                ))
            }
        };
        let dash = raw.dash.unwrap_or_default();
        if !dash.is_empty()
            && (dash.len() % 2 != 0 || dash.iter().any(|d| !(d.is_finite() && *d > 0.0)))
        {
            return Err(self.err(
                format!("{prefix}.dash`"),
                "needs an even number of lengths (drawn, gap, ...), each > 0",
            ));
        }
        Ok(LineStyle {
            color,
            width,
            cap,
            join,
            dash,
        })
    }

    fn marker(&self, prefix: &str, raw: RawMarker) -> Result<Marker, StyleError> {
        let opacity = self.opacity(&format!("{prefix}.opacity`"), raw.opacity)?;
        let shape = match raw.shape.as_deref() {
            None | Some("circle") => MarkerShape::Circle,
            Some("square") => MarkerShape::Square,
            Some(o) => {
                return Err(self.err(
                    format!("{prefix}.shape`"),
                    format!("{o:?}: expected \"circle\" or \"square\""),
                ))
            }
        };
        let size = self.zoom_value(&format!("{prefix}.size`"), raw.size, 0.0, 200.0)?;
        let fill = match &raw.fill {
            Some(c) => Some(
                self.color(&format!("{prefix}.fill`"), c)?
                    .with_opacity(opacity),
            ),
            None => None,
        };
        let stroke = match &raw.stroke {
            Some(c) => Some(
                self.color(&format!("{prefix}.stroke`"), c)?
                    .with_opacity(opacity),
            ),
            None => None,
        };
        let stroke_width = raw.stroke_width.unwrap_or(1.0);
        if !(0.0..=50.0).contains(&stroke_width) {
            return Err(self.err(format!("{prefix}.stroke_width`"), "must be within 0..=50"));
        }
        if fill.is_none() && stroke.is_none() {
            return Err(self.err(format!("{prefix}`"), "needs `fill` or `stroke`"));
        }
        Ok(Marker {
            shape,
            size,
            fill,
            stroke,
            stroke_width,
        })
    }

    fn zoom_value(
        &self,
        place: &str,
        raw: RawZoomValue,
        min: f32,
        max: f32,
    ) -> Result<ZoomValue, StyleError> {
        let in_range = |v: f32| v.is_finite() && (min..=max).contains(&v);
        match raw {
            RawZoomValue::Const(v) if in_range(v) => Ok(ZoomValue::Const(v)),
            RawZoomValue::Const(v) => Err(self.err(place, format!("{v} is outside {min}..={max}"))),
            RawZoomValue::Stops(stops) => {
                if stops.is_empty() {
                    return Err(self.err(place, "needs at least one [zoom, value] stop"));
                }
                for (i, &(z, v)) in stops.iter().enumerate() {
                    if !(0.0..=f32::from(MAX_ZOOM)).contains(&z) || !in_range(v) {
                        return Err(self.err(
                            place,
                            format!("stop [{z}, {v}]: zoom must be in 0..={MAX_ZOOM}, value in {min}..={max}"),
                        ));
                    }
                    if i > 0 && stops[i - 1].0 >= z {
                        return Err(self.err(place, "stop zooms must increase"));
                    }
                }
                Ok(ZoomValue::Stops(stops))
            }
        }
    }
}

/// Replaces `!placeholder!`s with bind parameters; an unknown placeholder is an error.
/// A `!` not followed by `name!` (as in `!=`) is left alone.
fn compile_sql(sql: &str) -> Result<String, String> {
    if sql.trim().is_empty() {
        return Err("is empty".into());
    }
    if !sql.contains("!bbox!") {
        return Err(
            "must use !bbox! (the metatile plus buffer) so it fetches only what it draws".into(),
        );
    }
    let mut out = String::with_capacity(sql.len() + 64);
    let mut rest = sql;
    while let Some(start) = rest.find('!') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let ident_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if ident_len > 0 && after[ident_len..].starts_with('!') {
            let token = &rest[start..start + ident_len + 2];
            let Some((_, param)) = QUERY_PARAMS.iter().find(|(p, _)| *p == token) else {
                let known: Vec<&str> = QUERY_PARAMS.iter().map(|(p, _)| *p).collect();
                return Err(format!(
                    "unknown placeholder {token} (known: {})",
                    known.join(", ")
                ));
            };
            out.push_str(param);
            rest = &rest[start + ident_len + 2..];
        } else {
            out.push('!');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r##"
name = "t"
background = "#f2efe9"
[[layer]]
name = "roads"
sql = "SELECT ST_AsBinary(way) AS geom FROM planet_osm_line WHERE way && !bbox! AND highway != 'x'"
[[layer.rule]]
stroke = { color = "#fff", width = [[12, 1], [16, 5]] }
"##;

    fn parse(text: &str) -> Result<Vec<Style>, StyleError> {
        parse_style(text, Path::new("styles/t.toml"), "t")
    }

    fn error_of(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("style was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_minimal_style_loads_with_defaults() {
        let styles = parse(MINIMAL).unwrap();
        assert_eq!(styles.len(), 1);
        let s = &styles[0];
        assert_eq!(s.name.as_str(), "t");
        assert_eq!(
            (s.minzoom, s.maxzoom, s.tile_size, s.buffer_px),
            (0, 19, 256, 128)
        );
        assert_eq!(s.max_age_secs, DEFAULT_MAX_AGE_SECS);
        assert_eq!(s.layers[0].rules[0].stroke.as_ref().unwrap().color.a, 255);
        assert!(s.layers[0].query.contains("ST_MakeEnvelope($1::float8"));
        assert!(s.layers[0].query.contains("highway != 'x'"));
    }

    #[test]
    fn hidpi_adds_a_2x_style_with_its_own_name() {
        let text = MINIMAL.replace("name = \"t\"", "name = \"t\"\nhidpi = true");
        let styles = parse(&text).unwrap();
        assert_eq!(styles.len(), 2);
        assert_eq!(styles[1].name.as_str(), "t@2x");
        assert_eq!(styles[1].base_name.as_str(), "t");
        assert_eq!(
            (styles[1].scale, styles[1].tile_size, styles[1].buffer_px),
            (2.0, 512, 256)
        );
        assert_eq!(styles[0].pixel_size(3), styles[1].pixel_size(3) * 2.0);
    }

    #[test]
    fn zoom_stops_interpolate_linearly_and_clamp_outside() {
        let w = ZoomValue::Stops(vec![(12.0, 1.0), (16.0, 5.0), (17.0, 13.0)]);
        assert_eq!(w.at(10.0), 1.0);
        assert_eq!(w.at(12.0), 1.0);
        assert_eq!(w.at(14.0), 3.0);
        assert_eq!(w.at(16.0), 5.0);
        assert_eq!(w.at(16.5), 9.0);
        assert_eq!(w.at(19.0), 13.0);
        assert_eq!(ZoomValue::Const(2.5).at(3.0), 2.5);
    }

    #[test]
    fn colours_parse_in_three_forms() {
        assert_eq!(
            Rgba::parse("#abc"),
            Some(Rgba {
                r: 0xaa,
                g: 0xbb,
                b: 0xcc,
                a: 255
            })
        );
        assert_eq!(
            Rgba::parse("#f2efe9"),
            Some(Rgba {
                r: 0xf2,
                g: 0xef,
                b: 0xe9,
                a: 255
            })
        );
        assert_eq!(Rgba::parse("#00000080").map(|c| c.a), Some(0x80));
        for bad in ["f2efe9", "#f2efe", "#ggg", "#", "", "#f2efe9x", "#+1+2+3"] {
            assert_eq!(Rgba::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_unknown_field_is_named_with_its_layer_and_rule() {
        let text = MINIMAL.replace("stroke = {", "colour = \"#fff\"\nstroke = {");
        let e = error_of(&text);
        assert!(e.contains("styles/t.toml"), "{e}");
        assert!(e.contains("layer \"roads\", rule #1"), "{e}");
        assert!(e.contains("unknown field `colour`"), "{e}");
        let e = error_of(&MINIMAL.replace("name = \"roads\"", "name = \"roads\"\nopacity = 1"));
        assert!(
            e.contains("layer \"roads\"") && e.contains("unknown field `opacity`"),
            "{e}"
        );
        let e = error_of(&format!("colour = 1\n{MINIMAL}"));
        assert!(e.contains("unknown field `colour`"), "{e}");
    }

    #[test]
    fn a_bad_colour_names_layer_rule_and_field() {
        let e = error_of(&MINIMAL.replace("color = \"#fff\"", "color = \"#ffgg00\""));
        assert!(
            e.contains("layer \"roads\", rule #1, field `stroke.color`"),
            "{e}"
        );
        assert!(e.contains("bad colour \"#ffgg00\""), "{e}");
        let e = error_of(&MINIMAL.replace("#f2efe9", "beige"));
        assert!(e.contains("field `background`"), "{e}");
    }

    #[test]
    fn a_reversed_zoom_range_is_refused_where_it_is() {
        let e = error_of(&MINIMAL.replace(
            "name = \"roads\"",
            "name = \"roads\"\nminzoom = 14\nmaxzoom = 12",
        ));
        assert!(e.contains("layer \"roads\", field `minzoom`"), "{e}");
        assert!(e.contains("zoom range reversed"), "{e}");
        let e =
            error_of(&MINIMAL.replace("name = \"t\"", "name = \"t\"\nminzoom = 5\nmaxzoom = 4"));
        assert!(e.contains("style, field `minzoom`"), "{e}");
        let e = error_of(&MINIMAL.replace("stroke = {", "minzoom = 18\nmaxzoom = 17\nstroke = {"));
        assert!(
            e.contains("rule #1, field `minzoom`") && e.contains("reversed"),
            "{e}"
        );
        let e = error_of(&MINIMAL.replace("name = \"t\"", "name = \"t\"\nmaxzoom = 21"));
        assert!(e.contains("field `maxzoom`") && e.contains("21"), "{e}");
    }

    #[test]
    fn sql_placeholders_become_bind_parameters() {
        let q = compile_sql(
            "SELECT 1 WHERE way && !bbox! AND !zoom! > 3 AND a != b AND x < !pixel_size! * !scale!",
        )
        .unwrap();
        assert_eq!(
            q,
            "SELECT 1 WHERE way && ST_MakeEnvelope($1::float8, $2::float8, $3::float8, $4::float8, 3857) \
             AND $5::int4 > 3 AND a != b AND x < $6::float8 * $7::float8"
        );
        assert!(compile_sql("SELECT 1 WHERE !bbox! AND !zom!")
            .unwrap_err()
            .contains("!zom!"));
        assert!(compile_sql("SELECT 1").unwrap_err().contains("!bbox!"));
        let e = error_of(&MINIMAL.replace("!bbox!", "!box!"));
        assert!(e.contains("layer \"roads\", field `sql`"), "{e}");
    }

    #[test]
    fn bad_dashes_widths_and_caps_are_refused() {
        let e = error_of(&MINIMAL.replace("width = [[12, 1], [16, 5]]", "width = 1, dash = [3]"));
        assert!(e.contains("field `stroke.dash`"), "{e}");
        let e =
            error_of(&MINIMAL.replace("width = [[12, 1], [16, 5]]", "width = [[16, 1], [12, 5]]"));
        assert!(
            e.contains("field `stroke.width`") && e.contains("increase"),
            "{e}"
        );
        let e =
            error_of(&MINIMAL.replace("width = [[12, 1], [16, 5]]", "width = 1, cap = \"flat\""));
        assert!(
            e.contains("field `stroke.cap`") && e.contains("flat"),
            "{e}"
        );
        let e = error_of(&MINIMAL.replace(
            "stroke = { color = \"#fff\", width = [[12, 1], [16, 5]] }",
            "minzoom = 3",
        ));
        assert!(e.contains("draws nothing"), "{e}");
    }

    const STREETS: &str = r##"
name = "t"
[[layer]]
name = "street-names"
sql = "SELECT ST_AsBinary(way) AS geom, name AS label FROM planet_osm_line WHERE way && !bbox!"
[[layer.rule]]
text = { placement = "line", size = [[16, 9], [17, 11]], fill = "#222", halo_width = 1.5, spacing = 300, max_bend = 30, repeat_distance = 200, priority = 10 }
[[layer.rule]]
minzoom = 17
text = { font = "DejaVu Sans Bold", size = 14, offset = [0, -8], wrap = 80 }
"##;

    #[test]
    fn text_rules_load_with_placement_and_defaults() {
        let style = parse(STREETS).unwrap().remove(0);
        assert!(style.uses_text() && style.layers[0].uses_label());
        let line = style.layers[0].rules[0].text.as_ref().unwrap();
        assert_eq!(line.font, DEFAULT_FONT);
        assert_eq!((line.size.at(15.0), line.size.at(17.0)), (9.0, 11.0));
        assert_eq!(line.fill, Rgba::parse("#222").unwrap());
        assert_eq!(line.halo, Rgba::parse("#fff").unwrap());
        assert_eq!(
            (line.halo_width, line.repeat_distance, line.priority),
            (1.5, 200.0, 10)
        );
        assert_eq!(
            line.placement,
            TextPlacement::Line {
                spacing: 300.0,
                max_bend_deg: 30.0
            }
        );
        let point = style.layers[0].rules[1].text.as_ref().unwrap();
        assert_eq!(
            point.placement,
            TextPlacement::Point {
                offset: (0.0, -8.0),
                wrap: Some(80.0)
            }
        );
        assert_eq!((point.halo_width, point.priority), (0.0, 0));
        // A rule that only labels paints nothing on the map.
        assert!(!style.layers[0].rules[0].paints_map());
        let plain = style.without_labels();
        assert!(!plain.uses_text() && !plain.layers[0].active_at(17));
    }

    #[test]
    fn bad_text_fields_are_named_with_their_layer_and_rule() {
        let e = error_of(&STREETS.replace("placement = \"line\"", "placement = \"area\""));
        assert!(
            e.contains("layer \"street-names\", rule #1, field `text.placement`")
                && e.contains("\"area\""),
            "{e}"
        );
        let e = error_of(&STREETS.replace("offset = [0, -8], ", "spacing = 10, "));
        assert!(
            e.contains("rule #2, field `text.spacing`") && e.contains("placement = \"line\""),
            "{e}"
        );
        let e = error_of(&STREETS.replace("fill = \"#222\"", "fill = \"dark\""));
        assert!(
            e.contains("field `text.fill`") && e.contains("bad colour"),
            "{e}"
        );
        let e = error_of(&STREETS.replace("max_bend = 30", "max_bend = 300"));
        assert!(e.contains("field `text.max_bend`"), "{e}");
        let e = error_of(&STREETS.replace("repeat_distance", "repeat"));
        assert!(
            e.contains("rule #1") && e.contains("unknown field `repeat`"),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_font_is_refused_naming_layer_rule_and_field() {
        let fonts = crate::text::test_fonts();
        let style = parse(STREETS).unwrap().remove(0);
        style.check_fonts(fonts).unwrap();
        let style = parse(&STREETS.replace("DejaVu Sans Bold", "Comic Sans Bold"))
            .unwrap()
            .remove(0);
        let e = style.check_fonts(fonts).unwrap_err().to_string();
        assert!(e.contains("styles/t.toml"), "{e}");
        assert!(
            e.contains("layer \"street-names\", rule #2, field `text.font`"),
            "{e}"
        );
        assert!(
            e.contains("\"Comic Sans Bold\"") && e.contains("DejaVu Sans Book"),
            "{e}"
        );
    }

    #[test]
    fn the_shipped_styles_use_only_fonts_that_are_installed() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("styles");
        let set = StyleSet::load_dir(&dir).unwrap();
        set.check_fonts(crate::text::test_fonts()).unwrap();
        let osm = set.get(&StyleName::parse("osm").unwrap()).unwrap();
        assert!(osm.uses_text());
    }

    #[test]
    fn rules_match_kinds_and_zooms() {
        let rule = Rule {
            kinds: Some(vec!["a".into(), "b".into()]),
            minzoom: 12,
            maxzoom: 14,
            fill: Some(Rgba {
                r: 1,
                g: 2,
                b: 3,
                a: 255,
            }),
            casing: None,
            stroke: None,
            marker: None,
            text: None,
        };
        assert!(rule.matches(Some("b")));
        assert!(!rule.matches(Some("c")));
        assert!(!rule.matches(None));
        assert!(rule.active_at(12) && rule.active_at(14) && !rule.active_at(15));
    }

    #[test]
    fn the_shipped_styles_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("styles");
        let set = StyleSet::load_dir(&dir).unwrap();
        let osm = set.get(&StyleName::parse("osm").unwrap()).unwrap();
        assert_eq!((osm.minzoom, osm.maxzoom), (0, 19));
        assert!(set.get(&StyleName::parse("osm@2x").unwrap()).is_some());
    }

    #[test]
    fn composites_archives_and_interactivity_load() {
        let c = parse("name = \"c\"\nhidpi = true\n[[composite]]\nstyle = \"base\"\n[[composite]]\nstyle = \"over\"\nopacity = 0.5\nblend = \"multiply\"\n").unwrap();
        assert_eq!(c.len(), 2);
        let inputs = c[0].inputs();
        assert_eq!(inputs.len(), 2);
        assert_eq!(
            (inputs[1].opacity, inputs[1].blend),
            (0.5, BlendMode::Multiply)
        );
        assert_eq!(inputs[0].blend, BlendMode::Normal);
        assert_eq!(c[1].inputs()[1].style.as_str(), "over@2x");
        assert!(c[0].layers.is_empty() && c[0].is_rendered());

        let a = parse("archive = \"../x/tiles.PMTiles\"\n")
            .unwrap()
            .remove(0);
        assert_eq!(
            a.kind,
            StyleKind::Archive {
                path: PathBuf::from("styles/../x/tiles.PMTiles"),
                format: ArchiveFormat::Pmtiles
            }
        );
        assert!(!a.is_rendered());
        let a = parse("archive = \"/abs/t.db\"\narchive_format = \"mbtiles\"\n").unwrap();
        assert_eq!(
            a[0].kind,
            StyleKind::Archive {
                path: PathBuf::from("/abs/t.db"),
                format: ArchiveFormat::Mbtiles
            }
        );

        let i = parse(&MINIMAL.replace(
            "[[layer]]",
            "[interactivity]\nlayer = \"roads\"\nfields = [\"name\", \"osm_id\"]\n[[layer]]",
        ))
        .unwrap()
        .remove(0);
        let it = i.interactivity.as_ref().unwrap();
        assert_eq!((it.layer, it.fields.len()), (0, 2));
        assert_eq!(i.grid_name().unwrap().as_str(), "t@grid");
    }

    #[test]
    fn bad_composites_archives_and_interactivity_are_named() {
        let e = error_of("[[composite]]\nstyle = \"a\"\nblend = \"mix\"\n");
        assert!(
            e.contains("composite input #1, field `blend`") && e.contains("\"mix\""),
            "{e}"
        );
        let e = error_of("[[composite]]\nstyle = \"a@2x\"\n");
        assert!(e.contains("composite input #1, field `style`"), "{e}");
        let e = error_of("[[composite]]\nstyle = \"a\"\nopacity = 2\n");
        assert!(e.contains("field `opacity`"), "{e}");
        let e = error_of(&format!("archive = \"t.zip\"\n{MINIMAL}"));
        assert!(e.contains("only one of"), "{e}");
        let e = error_of("archive = \"t.zip\"\n");
        assert!(
            e.contains("field `archive`") && e.contains("archive_format"),
            "{e}"
        );
        let e = error_of("archive = \"t.mbtiles\"\nhidpi = true\n");
        assert!(e.contains("field `hidpi`"), "{e}");
        let e = error_of("name = \"t\"\n");
        assert!(e.contains("at least one [[layer]]"), "{e}");
        let with = |section: &str| MINIMAL.replace("[[layer]]", &format!("{section}\n[[layer]]"));
        let e = error_of(&with("[interactivity]\nlayer = \"nope\"\nfields = [\"a\"]"));
        assert!(
            e.contains("`interactivity.layer`") && e.contains("nope"),
            "{e}"
        );
        let e = error_of(&with("[interactivity]\nlayer = \"roads\"\nfields = []"));
        assert!(e.contains("`interactivity.fields`"), "{e}");
        let e = error_of(&with(
            "[interactivity]\nlayer = \"roads\"\nfields = [\"a b\"]",
        ));
        assert!(e.contains("`interactivity.fields`"), "{e}");
        let e = error_of(
            "[interactivity]\nlayer = \"x\"\nfields = [\"a\"]\n[[composite]]\nstyle = \"a\"\n",
        );
        assert!(e.contains("only rendered styles"), "{e}");
    }

    #[test]
    fn composite_inputs_must_be_rendered_styles_of_the_set() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("base.toml"),
            MINIMAL.replace("\"t\"", "\"base\""),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("c.toml"),
            "[[composite]]\nstyle = \"base\"\n[[composite]]\nstyle = \"gone\"\n",
        )
        .unwrap();
        let e = StyleSet::load_dir(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("composite input #2") && e.contains("\"gone\""),
            "{e}"
        );
        std::fs::write(
            dir.path().join("c.toml"),
            "hidpi = true\n[[composite]]\nstyle = \"base\"\n",
        )
        .unwrap();
        let e = StyleSet::load_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("base@2x"), "{e}");
        std::fs::write(
            dir.path().join("c.toml"),
            "[[composite]]\nstyle = \"base\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("d.toml"), "[[composite]]\nstyle = \"c\"\n").unwrap();
        let e = StyleSet::load_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a rendered style"), "{e}");
        std::fs::remove_file(dir.path().join("d.toml")).unwrap();
        let set = StyleSet::load_dir(dir.path()).unwrap();
        let base = StyleName::parse("base").unwrap();
        assert_eq!(
            set.dependents(&base),
            [Dependent::Composite(StyleName::parse("c").unwrap())]
        );
    }

    #[test]
    fn the_shipped_composite_blends_osm_and_transit_and_osm_has_grids() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("styles");
        let set = StyleSet::load_dir(&dir).unwrap();
        let osm = StyleName::parse("osm").unwrap();
        let deps = set.dependents(&osm);
        assert!(deps.contains(&Dependent::Grid(StyleName::parse("osm@grid").unwrap())));
        assert!(deps.contains(&Dependent::Composite(
            StyleName::parse("osm-transit").unwrap()
        )));
        let hidpi = set
            .get(&StyleName::parse("osm-transit@2x").unwrap())
            .unwrap();
        assert_eq!(hidpi.inputs()[0].style.as_str(), "osm@2x");
        assert!(set
            .get(&StyleName::parse("osm@2x").unwrap())
            .unwrap()
            .interactivity
            .is_none());
    }

    #[test]
    fn a_folder_without_styles_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            StyleSet::load_dir(dir.path()),
            Err(StyleError::NoStyles { .. })
        ));
        std::fs::write(dir.path().join("a.toml"), MINIMAL).unwrap();
        std::fs::write(dir.path().join("b.toml"), MINIMAL).unwrap();
        let e = StyleSet::load_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("defined twice"), "{e}");
    }
}
