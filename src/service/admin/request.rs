//! What an admin request may say, and its validation: `POST /expire` as JSON or as a
//! text tile list with query parameters, `POST /seed` as JSON. Everything here is cheap
//! and synchronous; building the [`ExpireSet`](crate::expire::ExpireSet) of an input is
//! left to the caller (on a blocking thread).

use super::AdminError;
use crate::archive::ArchiveFormat;
use crate::area::{
    parse_tile_line, Area, BadLine, InputTile, LineError, LonLatBbox, MAX_LINE_BYTES,
};
use crate::expire::{ExpireMode, ExpirePlan};
use crate::style::StyleSet;
use crate::tile::{StyleName, ZoomRange, MAX_ZOOM};
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::path::Path;

/// Bad lines (or bad entries of a JSON list) reported one by one; the rest are counted.
pub const MAX_SHOWN_BAD_LINES: usize = 20;

/// The expiry options, as JSON fields or as query parameters of a text body.
#[derive(Debug, Clone, Default)]
pub struct ExpireOptions {
    /// One style; absent = every style (their `@2x` variants included).
    pub style: Option<String>,
    pub minzoom: Option<u8>,
    pub maxzoom: Option<u8>,
    /// `dirty` (default), `delete` or `render`.
    pub mode: Option<ExpireMode>,
    /// render_expired bands; either one overrides `mode`.
    pub delete_from: Option<u8>,
    pub touch_from: Option<u8>,
    pub dry_run: Option<bool>,
}

/// `POST /expire` with a JSON body: the options and exactly one input. A geometry is
/// kept as text until it is read into numbers (never a JSON tree).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpireRequest<'a> {
    pub style: Option<String>,
    /// `["z/x/y", ...]`.
    pub tiles: Option<TileList>,
    /// `[minlon, minlat, maxlon, maxlat]` in degrees.
    pub bbox: Option<LonLatBbox>,
    /// GeoJSON Polygon or MultiPolygon (or a Feature / FeatureCollection of them).
    #[serde(borrow)]
    pub geometry: Option<&'a RawValue>,
    pub minzoom: Option<u8>,
    pub maxzoom: Option<u8>,
    pub mode: Option<ExpireMode>,
    pub delete_from: Option<u8>,
    pub touch_from: Option<u8>,
    pub dry_run: Option<bool>,
}

/// `POST /seed`: an area, a zoom range, and whether to re-render fresh metatiles.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRequest<'a> {
    /// One style; absent = every style.
    pub style: Option<String>,
    pub bbox: Option<LonLatBbox>,
    #[serde(borrow)]
    pub geometry: Option<&'a RawValue>,
    pub minzoom: Option<u8>,
    pub maxzoom: Option<u8>,
    pub force: Option<bool>,
}

/// `POST /export`: one style, an area, a zoom range, a format and a file name (written
/// into the export directory). The geometry is kept as text, as for expiries.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest<'a> {
    pub style: String,
    pub bbox: Option<LonLatBbox>,
    #[serde(borrow)]
    pub geometry: Option<&'a RawValue>,
    pub minzoom: Option<u8>,
    pub maxzoom: Option<u8>,
    /// `mbtiles` or `pmtiles`; default: from the file's extension.
    pub format: Option<ArchiveFormat>,
    /// A plain file name (no directories) in `export.dir`.
    pub file: String,
}

/// A checked export request.
#[derive(Debug, Clone)]
pub struct ExportSpec {
    pub style: StyleName,
    pub area: Area,
    pub zooms: ZoomRange,
    pub format: ArchiveFormat,
    /// The file name, inside the export directory.
    pub file: String,
}

/// Parses and checks a `POST /export` body.
pub fn parse_export_json(styles: &StyleSet, body: &[u8]) -> Result<ExportSpec, AdminError> {
    let req: ExportRequest = parse_json(body)?;
    let selected = select_styles(styles, Some(&req.style))?;
    let Some(area) = area(req.bbox, req.geometry)? else {
        return Err(AdminError::BadRequest(
            "nothing to export: give bbox or geometry".into(),
        ));
    };
    if req.maxzoom.is_none() {
        return Err(AdminError::BadRequest("maxzoom is needed to export".into()));
    }
    let (min, max) = zoom_range(styles, &selected, req.minzoom, req.maxzoom)?;
    let zooms = ZoomRange::new(min, max).map_err(|e| AdminError::BadRequest(e.to_string()))?;
    let plain = !req.file.is_empty()
        && !req.file.starts_with('.')
        && req
            .file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !plain {
        return Err(AdminError::BadRequest(format!(
            "file {:?}: a plain file name (letters, digits, '_', '-', '.'; not starting with '.'), written into export.dir",
            req.file
        )));
    }
    let format = match (req.format, ArchiveFormat::from_path(Path::new(&req.file))) {
        (Some(f), _) | (None, Some(f)) => f,
        (None, None) => {
            return Err(AdminError::BadRequest(
                "format is needed (\"mbtiles\" or \"pmtiles\"): the file name does not end in .mbtiles or .pmtiles".into(),
            ))
        }
    };
    let style = selected
        .into_iter()
        .next()
        .ok_or_else(|| AdminError::UnknownStyle(req.style.clone()))?;
    Ok(ExportSpec {
        style,
        area,
        zooms,
        format,
        file: req.file,
    })
}

/// The entries of a JSON tile list, parsed as they are read (12 bytes a tile, never the
/// strings).
#[derive(Debug, Default)]
pub struct TileList {
    pub tiles: Vec<InputTile>,
    pub bad: BadLines,
}

/// Bad lines: how many, and the first [`MAX_SHOWN_BAD_LINES`] with their numbers.
#[derive(Debug, Default, Clone)]
pub struct BadLines {
    pub count: u64,
    pub examples: Vec<BadLine>,
}

impl BadLines {
    pub fn record(&mut self, bad: BadLine) {
        self.count += 1;
        if self.examples.len() < MAX_SHOWN_BAD_LINES {
            self.examples.push(bad);
        }
    }
}

impl<'de> Deserialize<'de> for TileList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = TileList;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of \"z/x/y\" strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TileList, A::Error> {
                let mut list = TileList::default();
                let mut line_no = 0u64;
                while let Some(text) = seq.next_element::<String>()? {
                    line_no += 1;
                    match parse_tile_line(text.as_bytes()) {
                        Ok(Some(tile)) => list.tiles.push(tile),
                        Ok(None) => list.bad.record(bad_line(line_no, &text, LineError::Shape)),
                        Err(error) => list.bad.record(bad_line(line_no, &text, error)),
                    }
                }
                Ok(list)
            }
        }
        deserializer.deserialize_seq(ListVisitor)
    }
}

fn bad_line(line_no: u64, text: &str, error: LineError) -> BadLine {
    let mut shown: String = text.chars().take(MAX_LINE_BYTES).collect();
    shown.truncate(shown.trim_end().len());
    BadLine {
        line_no,
        text: shown,
        error,
    }
}

/// A validated expiry, without its input.
#[derive(Debug, Clone)]
pub struct ExpireSpec {
    pub styles: Vec<StyleName>,
    pub plan: ExpirePlan,
    /// The mode at every zoom, or `None` for render_expired's bands (delete_from /
    /// touch_from).
    pub mode: Option<ExpireMode>,
    pub dry_run: bool,
    /// `tiles`, `text`, `bbox` or `polygon`.
    pub kind: &'static str,
}

/// The input of a JSON expiry.
#[derive(Debug)]
pub enum JsonInput {
    Tiles(TileList),
    Area(Area),
}

impl JsonInput {
    pub fn kind(&self) -> &'static str {
        match self {
            JsonInput::Tiles(_) => "tiles",
            JsonInput::Area(a) => a.kind(),
        }
    }
}

/// The styles a request names (one, or all when absent).
pub fn select_styles(styles: &StyleSet, style: Option<&str>) -> Result<Vec<StyleName>, AdminError> {
    match style {
        Some(text) => {
            let name = StyleName::parse(text)
                .map_err(|e| AdminError::BadRequest(format!("style {text:?}: {e}")))?;
            if styles.get(&name).is_none() {
                return Err(AdminError::UnknownStyle(name.to_string()));
            }
            Ok(vec![name])
        }
        None => Ok(styles.iter().map(|s| s.name.clone()).collect()),
    }
}

fn check_zoom(field: &str, z: Option<u8>) -> Result<(), AdminError> {
    match z {
        Some(z) if z > MAX_ZOOM => Err(AdminError::BadRequest(format!(
            "{field} {z} is above {MAX_ZOOM}, the highest zoom of the cache"
        ))),
        _ => Ok(()),
    }
}

/// The zoom range of a request: `minzoom` defaults to 0, `maxzoom` to the highest
/// `maxzoom` of the selected styles.
fn zoom_range(
    styles: &StyleSet,
    selected: &[StyleName],
    minzoom: Option<u8>,
    maxzoom: Option<u8>,
) -> Result<(u8, u8), AdminError> {
    check_zoom("minzoom", minzoom)?;
    check_zoom("maxzoom", maxzoom)?;
    let max = maxzoom.unwrap_or_else(|| {
        selected
            .iter()
            .filter_map(|s| styles.get(s))
            .map(|s| s.maxzoom)
            .max()
            .unwrap_or(MAX_ZOOM)
            .min(MAX_ZOOM)
    });
    let min = minzoom.unwrap_or(0);
    if min > max {
        return Err(AdminError::BadRequest(format!(
            "minzoom {min} is above maxzoom {max}"
        )));
    }
    Ok((min, max))
}

/// Checks the options of an expiry whose input is of `kind`.
pub fn expire_spec(
    styles: &StyleSet,
    options: &ExpireOptions,
    kind: &'static str,
) -> Result<ExpireSpec, AdminError> {
    let selected = select_styles(styles, options.style.as_deref())?;
    let (min, max) = zoom_range(styles, &selected, options.minzoom, options.maxzoom)?;
    check_zoom("delete_from", options.delete_from)?;
    check_zoom("touch_from", options.touch_from)?;
    let bands = options.delete_from.is_some() || options.touch_from.is_some();
    let mode = (!bands).then(|| options.mode.unwrap_or(ExpireMode::Dirty));
    let plan = match mode {
        Some(mode) => ExpirePlan::for_mode(min, max, mode),
        None => ExpirePlan::new(min, max, options.delete_from, options.touch_from),
    }
    .map_err(|e| AdminError::BadRequest(e.to_string()))?;
    Ok(ExpireSpec {
        styles: selected,
        plan,
        mode,
        dry_run: options.dry_run.unwrap_or(false),
        kind,
    })
}

/// The one area of a request: `bbox` or `geometry`.
fn area(bbox: Option<LonLatBbox>, geometry: Option<&RawValue>) -> Result<Option<Area>, AdminError> {
    match (bbox, geometry) {
        (Some(_), Some(_)) => Err(AdminError::BadRequest(
            "give either bbox or geometry, not both".into(),
        )),
        (Some(b), None) => Ok(Some(Area::Bbox(b))),
        (None, Some(g)) => Ok(Some(
            Area::from_geojson_raw(g).map_err(|e| AdminError::BadRequest(e.to_string()))?,
        )),
        (None, None) => Ok(None),
    }
}

fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, AdminError> {
    serde_json::from_slice(body).map_err(|e| AdminError::BadRequest(format!("bad JSON: {e}")))
}

/// Parses and checks a JSON `POST /expire` body.
pub fn parse_expire_json(
    styles: &StyleSet,
    body: &[u8],
) -> Result<(ExpireSpec, JsonInput), AdminError> {
    let looks_like_a_list = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(u8::is_ascii_digit);
    let req: ExpireRequest = parse_json(body).map_err(|e| match e {
        AdminError::BadRequest(m) if looks_like_a_list => AdminError::BadRequest(format!(
            "{m} (send a z/x/y list with Content-Type: text/plain)"
        )),
        other => other,
    })?;
    let area = area(req.bbox, req.geometry)?;
    let input = match (req.tiles, area) {
        (Some(tiles), None) => JsonInput::Tiles(tiles),
        (None, Some(area)) => JsonInput::Area(area),
        (Some(_), Some(_)) => {
            return Err(AdminError::BadRequest(
                "give one input: tiles, bbox or geometry".into(),
            ))
        }
        (None, None) => {
            return Err(AdminError::BadRequest(
                "nothing to expire: give tiles, bbox or geometry".into(),
            ))
        }
    };
    let options = ExpireOptions {
        style: req.style,
        minzoom: req.minzoom,
        maxzoom: req.maxzoom,
        mode: req.mode,
        delete_from: req.delete_from,
        touch_from: req.touch_from,
        dry_run: req.dry_run,
    };
    let spec = expire_spec(styles, &options, input.kind())?;
    Ok((spec, input))
}

/// Parses the query string of a text `POST /expire`.
pub fn parse_expire_query(query: &str) -> Result<ExpireOptions, AdminError> {
    serde_urlencoded_like(query)
}

/// A validated seed.
#[derive(Debug, Clone)]
pub struct SeedSpec {
    pub styles: Vec<StyleName>,
    pub area: Area,
    pub zooms: ZoomRange,
    pub force: bool,
}

/// Parses and checks a `POST /seed` body.
pub fn parse_seed_json(styles: &StyleSet, body: &[u8]) -> Result<SeedSpec, AdminError> {
    let req: SeedRequest = parse_json(body)?;
    let mut selected = select_styles(styles, req.style.as_deref())?;
    if req.style.is_none() {
        // "Every style": those this server renders (archives are only read).
        selected.retain(|s| styles.get(s).is_some_and(|st| st.is_rendered()));
    }
    let Some(area) = area(req.bbox, req.geometry)? else {
        return Err(AdminError::BadRequest(
            "nothing to seed: give bbox or geometry".into(),
        ));
    };
    if req.maxzoom.is_none() {
        return Err(AdminError::BadRequest(
            "maxzoom is needed to seed (every metatile of the area down to it renders)".into(),
        ));
    }
    let (min, max) = zoom_range(styles, &selected, req.minzoom, req.maxzoom)?;
    let zooms = ZoomRange::new(min, max).map_err(|e| AdminError::BadRequest(e.to_string()))?;
    Ok(SeedSpec {
        styles: selected,
        area,
        zooms,
        force: req.force.unwrap_or(false),
    })
}

/// `key=value&...` into [`ExpireOptions`], with the same names as the JSON fields and
/// a reason for anything unknown or malformed.
fn serde_urlencoded_like(query: &str) -> Result<ExpireOptions, AdminError> {
    let bad = |m: String| AdminError::BadRequest(m);
    let mut o = ExpireOptions::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(raw).ok_or_else(|| bad(format!("query {key}: bad escape")))?;
        let zoom = |v: &str| {
            v.parse::<u8>()
                .map_err(|_| bad(format!("query {key}={v:?}: expected a zoom level")))
        };
        match key {
            "style" => o.style = Some(value),
            "mode" => o.mode = Some(value.parse().map_err(|e| bad(format!("query mode: {e}")))?),
            "minzoom" => o.minzoom = Some(zoom(&value)?),
            "maxzoom" => o.maxzoom = Some(zoom(&value)?),
            "delete_from" => o.delete_from = Some(zoom(&value)?),
            "touch_from" => o.touch_from = Some(zoom(&value)?),
            "dry_run" => {
                o.dry_run = Some(match value.as_str() {
                    "" | "true" | "1" => true,
                    "false" | "0" => false,
                    v => return Err(bad(format!("query dry_run={v:?}: expected true or false"))),
                })
            }
            other => {
                return Err(bad(format!(
                    "unknown query parameter {other:?} (style, minzoom, maxzoom, mode, \
                     delete_from, touch_from, dry_run)"
                )))
            }
        }
    }
    Ok(o)
}

/// Decodes `%XX` escapes and `+` (as a space); `None` on a broken escape or bad UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let text = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(text, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expire::ExpireMode;
    use rstest::rstest;

    fn styles() -> StyleSet {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("styles");
        StyleSet::load_dir(&dir).expect("the repo's styles load")
    }

    fn reason(body: &str) -> String {
        match parse_expire_json(&styles(), body.as_bytes()) {
            Err(AdminError::BadRequest(r)) => r,
            other => panic!("{body}: expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn a_json_tile_list_keeps_good_tiles_and_numbers_the_bad_ones() {
        let (spec, input) = parse_expire_json(
            &styles(),
            br#"{"style":"osm","tiles":["16/37304/18968","nope","", "3/8/0","0/0/0"]}"#,
        )
        .unwrap();
        assert_eq!(
            (spec.kind, spec.mode, spec.dry_run),
            ("tiles", Some(ExpireMode::Dirty), false)
        );
        assert_eq!(spec.styles, vec![StyleName::parse("osm").unwrap()]);
        let JsonInput::Tiles(list) = input else {
            panic!("tiles")
        };
        assert_eq!(list.tiles.len(), 2);
        assert_eq!(list.bad.count, 3);
        let numbers: Vec<u64> = list.bad.examples.iter().map(|b| b.line_no).collect();
        assert_eq!(numbers, vec![2, 3, 4]);
    }

    #[test]
    fn absent_options_mean_every_style_zooms_from_0_to_the_styles_max_and_dirty() {
        let (spec, _) = parse_expire_json(&styles(), br#"{"tiles":["1/0/0"]}"#).unwrap();
        let names: Vec<&str> = spec.styles.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "osm",
                "osm-transit",
                "osm-transit@2x",
                "osm@2x",
                "transit",
                "transit@2x"
            ]
        );
        assert_eq!((spec.plan.min_zoom, spec.plan.max_zoom), (0, 19));
        assert_eq!(spec.plan.action_at(0), ExpireMode::Dirty);
    }

    #[rstest]
    #[case(r#"{"tiles":["1/0/0"],"mode":"delete"}"#, "delete", ExpireMode::Delete)]
    #[case(r#"{"tiles":["1/0/0"],"mode":"render"}"#, "render", ExpireMode::Render)]
    #[case(
        r#"{"tiles":["1/0/0"],"mode":"render","delete_from":0}"#,
        "bands",
        ExpireMode::Delete
    )]
    #[case(r#"{"tiles":["1/0/0"],"touch_from":0}"#, "bands", ExpireMode::Dirty)]
    fn modes_and_bands_become_the_plan(
        #[case] body: &str,
        #[case] mode: &str,
        #[case] at_zero: ExpireMode,
    ) {
        let (spec, _) = parse_expire_json(&styles(), body.as_bytes()).unwrap();
        assert_eq!(spec.mode.map_or("bands", ExpireMode::as_str), mode);
        assert_eq!(spec.plan.action_at(0), at_zero);
    }

    #[rstest]
    #[case("{\"tiles\": [", "bad JSON")]
    #[case("15/18654/9484\n", "Content-Type: text/plain")]
    #[case(r#"{"tiles":["1/0/0"],"maxzoom":25}"#, "maxzoom 25 is above 20")]
    #[case(r#"{"tiles":["1/0/0"],"minzoom":25}"#, "minzoom 25 is above 20")]
    #[case(
        r#"{"tiles":["1/0/0"],"minzoom":12,"maxzoom":10}"#,
        "minzoom 12 is above maxzoom 10"
    )]
    #[case(r#"{"tiles":["1/0/0"],"maxzoom":300}"#, "bad JSON")]
    #[case(r#"{"bbox":[25,60,24,61]}"#, "minimum must not exceed maximum")]
    #[case(r#"{"bbox":[25,60,24]}"#, "bbox must be")]
    #[case(
        r#"{"geometry":{"type":"Point","coordinates":[24.9,60.1]}}"#,
        "not a Point"
    )]
    #[case(r#"{"tiles":["1/0/0"],"mode":"nuke"}"#, "unknown mode \"nuke\"")]
    #[case(r#"{"tiles":["1/0/0"],"bbox":[1,2,3,4]}"#, "one input")]
    #[case(r#"{"mode":"dirty"}"#, "nothing to expire")]
    #[case(r#"{"tiles":["1/0/0"],"colour":"red"}"#, "unknown field `colour`")]
    #[case(r#"{"tiles":[1]}"#, "bad JSON")]
    fn bad_requests_say_why(#[case] body: &str, #[case] why: &str) {
        let r = reason(body);
        assert!(r.contains(why), "{body}: {r}");
    }

    #[test]
    fn an_unknown_style_is_not_found() {
        let r = parse_expire_json(&styles(), br#"{"style":"nope","tiles":["1/0/0"]}"#);
        assert!(matches!(r, Err(AdminError::UnknownStyle(s)) if s == "nope"));
    }

    #[test]
    fn query_parameters_carry_the_same_options() {
        let o =
            parse_expire_query("style=osm&mode=delete&minzoom=10&maxzoom=18&dry_run=true").unwrap();
        assert_eq!(o.style.as_deref(), Some("osm"));
        assert_eq!(
            (o.minzoom, o.maxzoom, o.dry_run),
            (Some(10), Some(18), Some(true))
        );
        let o = parse_expire_query("style=osm%402x&touch_from=12&dry_run").unwrap();
        assert_eq!(o.style.as_deref(), Some("osm@2x"));
        assert_eq!((o.touch_from, o.dry_run), (Some(12), Some(true)));
        assert!(parse_expire_query("maxzoom=x").is_err());
        assert!(parse_expire_query("colour=red").is_err());
        assert!(parse_expire_query("style=%zz").is_err());
        assert!(parse_expire_query("").is_ok());
    }

    #[test]
    fn a_seed_needs_an_area_and_a_max_zoom() {
        let s = parse_seed_json(
            &styles(),
            br#"{"style":"osm","bbox":[24.93,60.16,24.96,60.18],"minzoom":10,"maxzoom":14}"#,
        )
        .unwrap();
        assert_eq!((s.zooms.min(), s.zooms.max(), s.force), (10, 14, false));
        assert_eq!(s.area.kind(), "bbox");
        for (body, why) in [
            (r#"{"maxzoom":14}"#, "nothing to seed"),
            (r#"{"bbox":[24.93,60.16,24.96,60.18]}"#, "maxzoom is needed"),
            (
                r#"{"bbox":[24.93,60.16,24.96,60.18],"maxzoom":21}"#,
                "above 20",
            ),
        ] {
            match parse_seed_json(&styles(), body.as_bytes()) {
                Err(AdminError::BadRequest(r)) => assert!(r.contains(why), "{body}: {r}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_seed_of_every_style_leaves_archive_styles_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("drawn.toml"),
            "name = \"drawn\"\n[[layer]]\nname = \"l\"\nsql = \"SELECT geom FROM t WHERE geom && !bbox!\"\n[[layer.rule]]\nfill = \"#000000\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("read.toml"),
            "name = \"read\"\narchive = \"read.pmtiles\"\n",
        )
        .unwrap();
        let set = StyleSet::load_dir(dir.path()).unwrap();
        let bbox = r#""bbox":[24.93,60.16,24.96,60.18],"maxzoom":12"#;
        let every = parse_seed_json(&set, format!("{{{bbox}}}").as_bytes()).unwrap();
        assert_eq!(every.styles, vec![StyleName::parse("drawn").unwrap()]);
        // Named, it is kept: seeding it is then refused with its reason.
        let named =
            parse_seed_json(&set, format!(r#"{{"style":"read",{bbox}}}"#).as_bytes()).unwrap();
        assert_eq!(named.styles, vec![StyleName::parse("read").unwrap()]);
    }
}
