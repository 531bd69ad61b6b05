use super::validate::compile_sql;
use super::*;
use crate::archive::ArchiveFormat;

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
    let e = error_of(&MINIMAL.replace("name = \"t\"", "name = \"t\"\nminzoom = 5\nmaxzoom = 4"));
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
    assert_eq!(
        compile_sql("SELECT ST_ClipByBox2D(way, !metatile_bbox!) WHERE way && !bbox!").unwrap(),
        "SELECT ST_ClipByBox2D(way, ST_MakeEnvelope($8::float8, $9::float8, $10::float8, $11::float8, 3857)) \
         WHERE way && ST_MakeEnvelope($1::float8, $2::float8, $3::float8, $4::float8, 3857)"
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
    let e = error_of(&MINIMAL.replace("width = [[12, 1], [16, 5]]", "width = [[16, 1], [12, 5]]"));
    assert!(
        e.contains("field `stroke.width`") && e.contains("increase"),
        "{e}"
    );
    let e = error_of(&MINIMAL.replace("width = [[12, 1], [16, 5]]", "width = 1, cap = \"flat\""));
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
