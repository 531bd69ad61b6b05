//! The fonts of a process: font files read once, faces looked up by family name, a
//! fallback chain per character, and a cache of glyph outlines shared by all renders.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rustybuzz::ttf_parser;
use tiny_skia::{PathBuilder, Transform};

use super::TextError;

/// Where the fonts come from when the configuration names none: DejaVu Sans Book and
/// Bold (fonts-dejavu-core, the OSM style's typeface), then Noto Sans, then every other
/// Noto font for scripts DejaVu lacks (fonts-noto-core). Missing entries are skipped.
pub const DEFAULT_FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Bold.ttf",
    "/usr/share/fonts/truetype/noto",
];

/// One face in a [`FontSet`], by its position in load order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FaceId(pub(crate) u16);

/// The vertical metrics of a face, in font units (y up).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FaceMetrics {
    pub units_per_em: f32,
    pub ascender: f32,
    /// Negative: below the baseline.
    pub descender: f32,
    pub line_gap: f32,
    /// Height of capital letters; the middle of it is where line labels sit on the line.
    pub cap_height: f32,
}

/// A glyph's outline in font units (y up); None for glyphs without ink.
type Outline = Option<Arc<tiny_skia::Path>>;

struct LoadedFace {
    data: Arc<[u8]>,
    index: u32,
    path: PathBuf,
    /// "Family Style", e.g. "DejaVu Sans Bold", "DejaVu Sans Book".
    name: String,
    bold: bool,
    metrics: FaceMetrics,
}

/// The fonts used for labels, loaded once per process and shared (it is `Send + Sync`)
/// by every render thread.
///
/// Faces are found by name (`"DejaVu Sans Book"`, `"DejaVu Sans Bold"`, case-insensitive;
/// also the full and PostScript names). A character the requested face lacks is taken
/// from the first face of its fallback chain that has it: the faces of the same weight
/// in load order, then all other faces in load order.
pub struct FontSet {
    faces: Vec<LoadedFace>,
    by_name: HashMap<String, FaceId>,
    /// (requested face, char) -> face that draws it, or None when no face has it.
    fallback: RwLock<HashMap<(FaceId, char), Option<FaceId>>>,
    /// (face, glyph) -> outline in font units (y up); None for empty glyphs (spaces).
    outlines: RwLock<HashMap<(FaceId, u16), Outline>>,
    /// The (requested face, char) gaps already reported, so each is logged once.
    warned: Mutex<HashSet<(FaceId, char)>>,
    warned_families: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for FontSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FontSet")
            .field("faces", &self.face_names())
            .finish()
    }
}

impl FontSet {
    /// Loads the fonts in `paths`, in order: a file is one font (or a collection), a
    /// directory is every `.ttf`/`.otf`/`.ttc` directly in it (Sans faces first, then by
    /// file name). A path that does not exist or a font file given by name that cannot
    /// be parsed is an error; an unparsable file inside a directory is skipped with a
    /// warning. A file reached twice is loaded once.
    pub fn load(paths: &[PathBuf]) -> Result<FontSet, TextError> {
        let mut loader = Loader::default();
        for path in paths {
            loader.add_path(path, true)?;
        }
        loader.finish(paths)
    }

    /// The fonts of [`DEFAULT_FONT_PATHS`] that exist on this machine. Fails when none
    /// of them does.
    pub fn system_default() -> Result<FontSet, TextError> {
        let paths: Vec<PathBuf> = DEFAULT_FONT_PATHS.iter().map(PathBuf::from).collect();
        let mut loader = Loader::default();
        for path in &paths {
            if path.exists() {
                loader.add_path(path, false)?;
            }
        }
        loader.finish(&paths)
    }

    /// How many faces are loaded.
    pub fn len(&self) -> usize {
        self.faces.len()
    }

    /// True when no face is loaded (never, for a set built by `load`).
    pub fn is_empty(&self) -> bool {
        self.faces.is_empty()
    }

    /// The "Family Style" names of the faces, in load order.
    pub fn face_names(&self) -> Vec<&str> {
        self.faces.iter().map(|f| f.name.as_str()).collect()
    }

    /// The face called `name` ("DejaVu Sans Bold"; case and repeated spaces ignored).
    pub fn face(&self, name: &str) -> Option<FaceId> {
        self.by_name.get(&normalise_name(name)).copied()
    }

    /// True when a face called `name` is loaded: for validating styles at load time.
    pub fn has_family(&self, name: &str) -> bool {
        self.face(name).is_some()
    }

    /// The file a face was loaded from.
    pub fn face_path(&self, id: FaceId) -> &Path {
        &self.faces[usize::from(id.0)].path
    }

    pub(crate) fn metrics(&self, id: FaceId) -> FaceMetrics {
        self.faces[usize::from(id.0)].metrics
    }

    pub(crate) fn face_data(&self, id: FaceId) -> (&[u8], u32) {
        let face = &self.faces[usize::from(id.0)];
        (&face.data, face.index)
    }

    fn parse(&self, id: FaceId) -> Option<ttf_parser::Face<'_>> {
        let (data, index) = self.face_data(id);
        ttf_parser::Face::parse(data, index).ok()
    }

    /// The face that draws `c` for text set in `primary`: `primary` itself if it has a
    /// glyph for `c`, else the first face of the fallback chain that has one.
    pub fn face_for_char(&self, primary: FaceId, c: char) -> Option<FaceId> {
        let key = (primary, c);
        if let Some(found) = read(&self.fallback).get(&key) {
            return *found;
        }
        let found = self
            .fallback_chain(primary)
            .find(|&id| self.parse(id).is_some_and(|f| f.glyph_index(c).is_some()));
        write(&self.fallback).insert(key, found);
        found
    }

    /// True when `face` has a glyph for `c` (through the same cache as fallbacks).
    pub(crate) fn has_char(&self, face: FaceId, c: char) -> bool {
        // A face's own chain starts with itself, so "face_for_char == face" means it
        // has the glyph; only misses scan the chain, and those are cached.
        self.face_for_char(face, c) == Some(face)
    }

    /// `primary`, then the faces of its weight in load order, then the others.
    fn fallback_chain(&self, primary: FaceId) -> impl Iterator<Item = FaceId> + '_ {
        let bold = self.faces[usize::from(primary.0)].bold;
        let ids = (0..self.faces.len()).map(|i| FaceId(i as u16));
        std::iter::once(primary)
            .chain(
                ids.clone()
                    .filter(move |&id| id != primary && self.faces[usize::from(id.0)].bold == bold),
            )
            .chain(
                ids.filter(move |&id| id != primary && self.faces[usize::from(id.0)].bold != bold),
            )
    }

    /// The outline of glyph `glyph` of `face` in font units (y up), cached for the life
    /// of the set. None for glyphs without ink (spaces).
    pub(crate) fn outline(&self, face: FaceId, glyph: u16) -> Option<Arc<tiny_skia::Path>> {
        let key = (face, glyph);
        if let Some(found) = read(&self.outlines).get(&key) {
            return found.clone();
        }
        let path = self.parse(face).and_then(|f| {
            let mut builder = OutlineToPath(PathBuilder::new());
            f.outline_glyph(ttf_parser::GlyphId(glyph), &mut builder)?;
            builder.0.finish().map(Arc::new)
        });
        write(&self.outlines).insert(key, path.clone());
        path
    }

    /// Logs once per (face, char) that `c` is in no font, so `text` is not drawn.
    pub(crate) fn warn_missing(&self, primary: FaceId, c: char, text: &str) {
        let first = lock(&self.warned).insert((primary, c));
        if first {
            tracing::warn!(
                font = %self.faces[usize::from(primary.0)].name,
                char = %c.escape_unicode(),
                label = text,
                "no configured font has this character: labels containing it are skipped"
            );
        }
    }

    /// Logs once per name that a style asked for a font that is not loaded.
    pub(crate) fn warn_unknown_family(&self, family: &str) {
        if lock(&self.warned_families).insert(family.to_owned()) {
            tracing::warn!(
                font = family,
                loaded = ?self.face_names(),
                "unknown font family: its labels are skipped"
            );
        }
    }
}

/// Appends transformed copies of font-unit outlines to a path builder.
pub(crate) fn push_transformed(builder: &mut PathBuilder, path: &tiny_skia::Path, ts: Transform) {
    use tiny_skia::PathSegment;
    let map = |p: tiny_skia::Point| {
        let mut pts = [p];
        ts.map_points(&mut pts);
        pts[0]
    };
    for segment in path.segments() {
        match segment {
            PathSegment::MoveTo(p) => {
                let p = map(p);
                builder.move_to(p.x, p.y);
            }
            PathSegment::LineTo(p) => {
                let p = map(p);
                builder.line_to(p.x, p.y);
            }
            PathSegment::QuadTo(p1, p) => {
                let (p1, p) = (map(p1), map(p));
                builder.quad_to(p1.x, p1.y, p.x, p.y);
            }
            PathSegment::CubicTo(p1, p2, p) => {
                let (p1, p2, p) = (map(p1), map(p2), map(p));
                builder.cubic_to(p1.x, p1.y, p2.x, p2.y, p.x, p.y);
            }
            PathSegment::Close => builder.close(),
        }
    }
}

struct OutlineToPath(PathBuilder);

impl ttf_parser::OutlineBuilder for OutlineToPath {
    fn move_to(&mut self, x: f32, y: f32) {
        self.0.move_to(x, y);
    }
    fn line_to(&mut self, x: f32, y: f32) {
        self.0.line_to(x, y);
    }
    fn quad_to(&mut self, x1: f32, y1: f32, x: f32, y: f32) {
        self.0.quad_to(x1, y1, x, y);
    }
    fn curve_to(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, x: f32, y: f32) {
        self.0.cubic_to(x1, y1, x2, y2, x, y);
    }
    fn close(&mut self) {
        self.0.close();
    }
}

#[derive(Default)]
struct Loader {
    faces: Vec<LoadedFace>,
    seen: HashSet<PathBuf>,
}

impl Loader {
    /// `strict`: a file named directly must load (config paths); for the defaults a bad
    /// file is only skipped.
    fn add_path(&mut self, path: &Path, strict: bool) -> Result<(), TextError> {
        let meta = std::fs::metadata(path).map_err(|source| TextError::Io {
            path: path.to_owned(),
            source,
        })?;
        if meta.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| TextError::Io {
                path: path.to_owned(),
                source,
            })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_font_file(p))
                .collect();
            // Sans before Serif and display faces, so a fallback looks like the text
            // around it; then by name, so the order (and so the pixels) never depends
            // on the file system.
            files.sort_by_key(|p| {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                let name = name.unwrap_or_default();
                (!name.contains("Sans"), name)
            });
            for file in files {
                if let Err(err) = self.add_file(&file) {
                    tracing::warn!(error = %err, "skipping font file");
                }
            }
            Ok(())
        } else {
            match self.add_file(path) {
                Err(err) if !strict => {
                    tracing::warn!(error = %err, "skipping font file");
                    Ok(())
                }
                other => other,
            }
        }
    }

    fn add_file(&mut self, path: &Path) -> Result<(), TextError> {
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        if !self.seen.insert(key) {
            return Ok(());
        }
        let data: Arc<[u8]> = std::fs::read(path)
            .map_err(|source| TextError::Io {
                path: path.to_owned(),
                source,
            })?
            .into();
        let count = ttf_parser::fonts_in_collection(&data).unwrap_or(1);
        let mut loaded = 0;
        for index in 0..count {
            let face = match ttf_parser::Face::parse(&data, index) {
                Ok(face) => face,
                Err(err) => {
                    if count == 1 {
                        return Err(TextError::BadFont {
                            path: path.to_owned(),
                            reason: err.to_string(),
                        });
                    }
                    tracing::warn!(path = %path.display(), index, error = %err, "skipping face");
                    continue;
                }
            };
            if self.faces.len() >= usize::from(u16::MAX) {
                return Err(TextError::TooManyFaces);
            }
            let (family, style) = family_and_style(&face);
            let metrics = FaceMetrics {
                units_per_em: f32::from(face.units_per_em().max(1)),
                ascender: f32::from(face.ascender()),
                descender: f32::from(face.descender()),
                line_gap: f32::from(face.line_gap()),
                cap_height: f32::from(
                    face.capital_height()
                        .filter(|h| *h > 0)
                        .unwrap_or((face.units_per_em() as f32 * 0.7) as i16),
                ),
            };
            self.faces.push(LoadedFace {
                data: data.clone(),
                index,
                path: path.to_owned(),
                name: format!("{family} {style}"),
                bold: face.is_bold(),
                metrics,
            });
            loaded += 1;
        }
        if loaded == 0 {
            return Err(TextError::BadFont {
                path: path.to_owned(),
                reason: "no usable face in the collection".to_owned(),
            });
        }
        Ok(())
    }

    fn finish(self, paths: &[PathBuf]) -> Result<FontSet, TextError> {
        if self.faces.is_empty() {
            return Err(TextError::NoFonts {
                paths: paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let mut by_name = HashMap::new();
        for (i, face) in self.faces.iter().enumerate() {
            let id = FaceId(i as u16);
            let mut names = vec![face.name.clone()];
            if let Ok(parsed) = ttf_parser::Face::parse(&face.data, face.index) {
                names.extend(
                    [
                        ttf_parser::name_id::FULL_NAME,
                        ttf_parser::name_id::POST_SCRIPT_NAME,
                    ]
                    .into_iter()
                    .filter_map(|id| name_string(&parsed, id)),
                );
                let (family, style) = family_and_style(&parsed);
                if is_regular(&style) {
                    names.push(family);
                }
            }
            // The first face to claim a name keeps it: load order decides.
            for name in names {
                by_name.entry(normalise_name(&name)).or_insert(id);
            }
        }
        Ok(FontSet {
            faces: self.faces,
            by_name,
            fallback: RwLock::default(),
            outlines: RwLock::default(),
            warned: Mutex::default(),
            warned_families: Mutex::default(),
        })
    }
}

fn is_font_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["ttf", "otf", "ttc", "otc"].contains(&e.to_ascii_lowercase().as_str()))
}

fn is_regular(style: &str) -> bool {
    ["regular", "book", "normal", "roman"].contains(&style.to_ascii_lowercase().as_str())
}

/// The typographic family and style when the font has them, else the legacy ones.
fn family_and_style(face: &ttf_parser::Face<'_>) -> (String, String) {
    use ttf_parser::name_id;
    let family = name_string(face, name_id::TYPOGRAPHIC_FAMILY)
        .or_else(|| name_string(face, name_id::FAMILY))
        .unwrap_or_else(|| "Unknown".to_owned());
    let style = name_string(face, name_id::TYPOGRAPHIC_SUBFAMILY)
        .or_else(|| name_string(face, name_id::SUBFAMILY))
        .unwrap_or_else(|| "Regular".to_owned());
    (family, style)
}

/// A name record as text, preferring US English.
fn name_string(face: &ttf_parser::Face<'_>, id: u16) -> Option<String> {
    let mut fallback = None;
    for name in face.names() {
        if name.name_id != id {
            continue;
        }
        let Some(text) = name.to_string() else {
            continue;
        };
        if name.language() == ttf_parser::Language::English_UnitedStates {
            return Some(text);
        }
        fallback.get_or_insert(text);
    }
    fallback
}

fn normalise_name(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

// The caches only ever gain complete entries, so a panic elsewhere while a lock was held
// cannot leave them inconsistent: poisoning is ignored.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(lock: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::test_fonts;

    #[test]
    fn a_font_set_can_be_shared_by_render_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<FontSet>();
    }

    #[test]
    fn dejavu_faces_are_found_by_their_family_and_style_names() {
        let fonts = test_fonts();
        let book = fonts.face("DejaVu Sans Book").expect("book");
        let bold = fonts.face("dejavu  sans bold").expect("bold");
        assert_ne!(book, bold);
        assert_eq!(fonts.face("DejaVu Sans"), Some(book));
        assert!(fonts.face_path(bold).ends_with("DejaVuSans-Bold.ttf"));
        assert!(!fonts.has_family("Comic Sans Bold"));
    }

    #[test]
    fn a_character_missing_from_the_primary_face_comes_from_the_fallback_chain() {
        let fonts = test_fonts();
        let book = fonts.face("DejaVu Sans Book").expect("book");
        assert_eq!(fonts.face_for_char(book, 'ä'), Some(book));
        // Devanagari is not in DejaVu Sans; Noto Sans Devanagari has it when installed.
        let ka = 'क';
        match fonts.face_for_char(book, ka) {
            Some(face) => assert!(fonts
                .face_path(face)
                .to_string_lossy()
                .contains("Devanagari")),
            None => assert!(!fonts.face_names().iter().any(|n| n.contains("Devanagari"))),
        }
        // A private-use character is in no font.
        assert_eq!(fonts.face_for_char(book, '\u{E000}'), None);
    }

    #[test]
    fn loading_a_path_that_does_not_exist_is_an_error() {
        let err = FontSet::load(&[PathBuf::from("/nonexistent/font.ttf")]).unwrap_err();
        assert!(matches!(err, TextError::Io { .. }), "{err}");
    }

    #[test]
    fn loading_a_file_that_is_not_a_font_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("broken.ttf");
        std::fs::write(&path, b"not a font").expect("write");
        let err = FontSet::load(std::slice::from_ref(&path)).unwrap_err();
        assert!(matches!(err, TextError::BadFont { .. }), "{err}");
        assert!(err.to_string().contains("broken.ttf"));
        // In a directory the same file is skipped, and no font at all is an error.
        let err = FontSet::load(&[dir.path().to_owned()]).unwrap_err();
        assert!(matches!(err, TextError::NoFonts { .. }), "{err}");
    }

    #[test]
    fn glyph_outlines_are_cached_and_spaces_have_none() {
        let fonts = test_fonts();
        let book = fonts.face("DejaVu Sans Book").expect("book");
        let face = fonts.parse(book).expect("parse");
        let a = face.glyph_index('a').expect("a").0;
        let space = face.glyph_index(' ').expect("space").0;
        let first = fonts.outline(book, a).expect("outline of a");
        let second = fonts.outline(book, a).expect("outline of a");
        assert!(Arc::ptr_eq(&first, &second));
        assert!(fonts.outline(book, space).is_none());
    }
}
