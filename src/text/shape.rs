//! Text -> positioned glyphs: the text is cut into runs of one face (the requested face
//! where it has the character, else a fallback), each run is shaped by rustybuzz, and
//! the runs are laid end to end. Also greedy word wrapping for point labels.

use std::collections::HashMap;

use super::fonts::{FaceId, FontSet};

/// One glyph of a shaped line, in pixels at the shaped size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Glyph {
    pub face: FaceId,
    pub id: u16,
    /// Pen position from the start of the line.
    pub x: f32,
    /// The shaper's offset from the pen position (y up).
    pub dx: f32,
    pub dy: f32,
    pub advance: f32,
    /// Font units of this glyph's face -> pixels.
    pub scale: f32,
}

/// A line of text as glyphs, left to right.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ShapedLine {
    pub glyphs: Vec<Glyph>,
    pub width: f32,
}

/// Why a text cannot be shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShapeError {
    /// No face of the set has a glyph for this character.
    Missing(char),
}

/// Shapes text with the faces of one [`FontSet`], keeping the parsed rustybuzz faces for
/// its own lifetime (one metatile render).
pub(crate) struct Shaper<'f> {
    fonts: &'f FontSet,
    faces: HashMap<FaceId, Option<rustybuzz::Face<'f>>>,
}

impl<'f> Shaper<'f> {
    pub(super) fn new(fonts: &'f FontSet) -> Shaper<'f> {
        Shaper {
            fonts,
            faces: HashMap::new(),
        }
    }

    pub(super) fn fonts(&self) -> &'f FontSet {
        self.fonts
    }

    /// Shapes `text` (one line) in `primary` at `size_px`.
    pub(super) fn shape_line(
        &mut self,
        text: &str,
        primary: FaceId,
        size_px: f32,
    ) -> Result<ShapedLine, ShapeError> {
        let runs = self.runs(text, primary)?;
        let mut glyphs = Vec::with_capacity(text.len());
        let mut pen = 0.0f32;
        for (face_id, range) in runs {
            let run = &text[range];
            let fonts = self.fonts;
            let face = self
                .faces
                .entry(face_id)
                .or_insert_with(|| {
                    let (data, index) = fonts.face_data(face_id);
                    rustybuzz::Face::from_slice(data, index)
                })
                .as_ref();
            let Some(face) = face else {
                return Err(ShapeError::Missing(run.chars().next().unwrap_or(' ')));
            };
            let scale = size_px / fonts.metrics(face_id).units_per_em;
            let mut buffer = rustybuzz::UnicodeBuffer::new();
            buffer.push_str(run);
            buffer.guess_segment_properties();
            let shaped = rustybuzz::shape(face, &[], buffer);
            for (info, pos) in shaped.glyph_infos().iter().zip(shaped.glyph_positions()) {
                let Ok(id) = u16::try_from(info.glyph_id) else {
                    return Err(ShapeError::Missing(' '));
                };
                if id == 0 {
                    // .notdef: would be drawn as a box. The cmap said the face has the
                    // character, so this is a sequence the face cannot shape.
                    let c = run
                        .get(info.cluster as usize..)
                        .and_then(|s| s.chars().next())
                        .unwrap_or(' ');
                    return Err(ShapeError::Missing(c));
                }
                glyphs.push(Glyph {
                    face: face_id,
                    id,
                    x: pen,
                    dx: pos.x_offset as f32 * scale,
                    dy: pos.y_offset as f32 * scale,
                    advance: pos.x_advance as f32 * scale,
                    scale,
                });
                pen += pos.x_advance as f32 * scale;
            }
        }
        Ok(ShapedLine { glyphs, width: pen })
    }

    /// Cuts `text` into runs of one face: the requested face wherever it has the
    /// character; spaces and invisible characters stay in the run they are in (so a
    /// fallback script's words stay one run); anything else comes from the fallback
    /// chain.
    fn runs(
        &self,
        text: &str,
        primary: FaceId,
    ) -> Result<Vec<(FaceId, std::ops::Range<usize>)>, ShapeError> {
        let mut runs: Vec<(FaceId, std::ops::Range<usize>)> = Vec::new();
        for (i, c) in text.char_indices() {
            let current = runs.last().map(|(face, _)| *face);
            let stays = is_default_ignorable(c)
                || (c.is_whitespace() && current.is_some_and(|f| self.fonts.has_char(f, c)));
            let face = if stays {
                current.unwrap_or(primary)
            } else if self.fonts.has_char(primary, c) {
                primary
            } else if let Some(f) = current.filter(|&f| self.fonts.has_char(f, c)) {
                f
            } else {
                self.fonts
                    .face_for_char(primary, c)
                    .ok_or(ShapeError::Missing(c))?
            };
            let end = i + c.len_utf8();
            match runs.last_mut() {
                Some((f, range)) if *f == face => range.end = end,
                _ => runs.push((face, i..end)),
            }
        }
        Ok(runs)
    }

    /// Breaks `text` at spaces into lines no wider than `wrap_px` (greedy; a word wider
    /// than that gets a line of its own), each shaped.
    pub(super) fn wrap(
        &mut self,
        text: &str,
        primary: FaceId,
        size_px: f32,
        wrap_px: Option<f32>,
    ) -> Result<Vec<ShapedLine>, ShapeError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let Some(wrap_px) = wrap_px else {
            return Ok(vec![self.shape_line(&words.join(" "), primary, size_px)?]);
        };
        let mut lines = Vec::new();
        let mut current: Option<(String, ShapedLine)> = None;
        for word in words {
            let candidate = match &current {
                Some((text, _)) => format!("{text} {word}"),
                None => word.to_owned(),
            };
            let shaped = self.shape_line(&candidate, primary, size_px)?;
            match current.take() {
                Some(line) if shaped.width > wrap_px => {
                    lines.push(line.1);
                    let single = self.shape_line(word, primary, size_px)?;
                    current = Some((word.to_owned(), single));
                }
                _ => current = Some((candidate, shaped)),
            }
        }
        lines.extend(current.map(|(_, shaped)| shaped));
        Ok(lines)
    }
}

/// Unicode's Default_Ignorable_Code_Point (joiners, variation selectors, bidi marks,
/// soft hyphen...): the shaper hides them, so no font needs a glyph for them.
fn is_default_ignorable(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::test_fonts;
    use rstest::rstest;

    fn book() -> FaceId {
        test_fonts().face("DejaVu Sans Book").expect("book")
    }

    #[rstest]
    #[case::finnish("Hämeentie")]
    #[case::finnish_o("Töölö")]
    #[case::swedish("Tölö torg")]
    #[case::swedish_a("Sörnäisten rantatie – Sörnäs strandväg")]
    #[case::ring("Åggelby")]
    #[case::cyrillic("Хельсинки")]
    #[case::greek("Ελσίνκι")]
    fn nordic_and_other_european_names_shape_to_real_glyphs_in_dejavu(#[case] name: &str) {
        let mut shaper = Shaper::new(test_fonts());
        let line = shaper.shape_line(name, book(), 12.0).expect("shapes");
        assert!(!line.glyphs.is_empty());
        assert!(line.glyphs.iter().all(|g| g.id != 0 && g.face == book()));
        assert!(line.width > 12.0);
    }

    #[rstest]
    #[case::japanese("東京")]
    #[case::devanagari("दिल्ली")]
    #[case::thai("กรุงเทพ")]
    #[case::tamil("சென்னை")]
    fn names_in_scripts_dejavu_lacks_shape_with_a_noto_fallback(#[case] name: &str) {
        let fonts = test_fonts();
        let mut shaper = Shaper::new(fonts);
        match shaper.shape_line(name, book(), 12.0) {
            Ok(line) => {
                assert!(line.glyphs.iter().all(|g| g.id != 0));
                assert!(line.glyphs.iter().any(|g| g.face != book()));
            }
            // Only acceptable when no installed font covers the script (no Noto CJK).
            Err(ShapeError::Missing(c)) => {
                let book = book();
                assert_eq!(fonts.face_for_char(book, c), None, "{c} has a font");
            }
        }
    }

    #[test]
    fn a_mixed_name_uses_dejavu_for_latin_and_a_fallback_for_the_rest() {
        let fonts = test_fonts();
        if fonts.face_for_char(book(), 'द').is_none() {
            eprintln!("skipping: no Devanagari font installed");
            return;
        }
        let mut shaper = Shaper::new(fonts);
        let line = shaper
            .shape_line("Helsinki दिल्ली", book(), 12.0)
            .expect("shapes");
        assert_eq!(line.glyphs[0].face, book());
        assert_ne!(line.glyphs.last().expect("glyphs").face, book());
    }

    #[test]
    fn a_character_in_no_font_is_reported_not_drawn_as_a_box() {
        let mut shaper = Shaper::new(test_fonts());
        let err = shaper
            .shape_line("Kauppatori \u{E000}", book(), 12.0)
            .unwrap_err();
        assert_eq!(err, ShapeError::Missing('\u{E000}'));
    }

    #[test]
    fn invisible_characters_need_no_glyph() {
        let mut shaper = Shaper::new(test_fonts());
        let line = shaper
            .shape_line("Kallio\u{200B}\u{00AD}", book(), 12.0)
            .expect("shapes");
        assert!(line.glyphs.iter().all(|g| g.id != 0));
    }

    #[test]
    fn wrapping_breaks_at_spaces_and_keeps_long_words_whole() {
        let mut shaper = Shaper::new(test_fonts());
        let text = "Etelä-Helsingin suurpiiri on iso";
        let one = shaper.wrap(text, book(), 12.0, None).expect("one line");
        assert_eq!(one.len(), 1);
        let lines = shaper
            .wrap(text, book(), 12.0, Some(60.0))
            .expect("wrapped");
        assert!(lines.len() >= 3, "{} lines", lines.len());
        // "Etelä-Helsingin" alone is wider than 60 px but stays whole on one line.
        let first_word = shaper
            .shape_line("Etelä-Helsingin", book(), 12.0)
            .expect("word");
        assert!(first_word.width > 60.0);
        assert_eq!(lines[0], first_word);
        for line in &lines[1..] {
            assert!(line.width <= 60.0, "{}", line.width);
        }
        // A wide wrap keeps the text on one line, as shaped without wrapping.
        let wide = shaper.wrap(text, book(), 12.0, Some(1000.0)).expect("wide");
        assert_eq!(wide, one);
    }

    #[test]
    fn glyph_positions_scale_with_size() {
        let mut shaper = Shaper::new(test_fonts());
        let small = shaper.shape_line("Kamppi", book(), 10.0).expect("small");
        let large = shaper.shape_line("Kamppi", book(), 20.0).expect("large");
        assert!((large.width - 2.0 * small.width).abs() < 1e-3);
    }
}
