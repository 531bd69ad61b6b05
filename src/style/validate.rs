//! Turns the raw structs of a style file into the model, checking every field and
//! naming the place (layer, rule, field) of each error.

use super::file::{
    OneOrMany, RawCompositeInput, RawInteractivity, RawLayer, RawLine, RawMarker, RawRule,
    RawStyle, RawText, RawZoomValue,
};
use super::{
    one_line, BlendMode, CompositeInput, Interactivity, Layer, LineCap, LineJoin, LineStyle,
    Marker, MarkerShape, Rgba, Rule, Style, StyleAccess, StyleError, StyleKind, TextPlacement,
    TextSymbolizer, ZoomValue, DEFAULT_BUFFER_PX, DEFAULT_FONT, DEFAULT_MAX_AGE_SECS,
    DEFAULT_STALE_WHILE_REVALIDATE_SECS, DEFAULT_TILE_SIZE, MAX_BUFFER_PX, QUERY_PARAMS,
};
use crate::archive::ArchiveFormat;
use crate::tile::{StyleName, MAX_ZOOM};
use std::path::Path;

/// Converts raw file structs into the model, naming the place of every error.
pub(super) struct Validator<'a> {
    pub(super) file: &'a Path,
}

impl Validator<'_> {
    fn err(&self, place: impl Into<String>, message: impl Into<String>) -> StyleError {
        StyleError::Invalid {
            file: self.file.to_path_buf(),
            place: place.into(),
            message: message.into(),
        }
    }

    pub(super) fn style(
        &self,
        raw: RawStyle,
        default_name: &str,
    ) -> Result<Vec<Style>, StyleError> {
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
            version: String::new(),
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
pub(super) fn compile_sql(sql: &str) -> Result<String, String> {
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
