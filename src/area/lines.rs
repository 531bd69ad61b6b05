//! Tile lists: `z/x/y` lines as osm2pgsql's expire output and render_expired read them,
//! parsed from any reader with bounded line length and line numbers for bad lines.

use crate::tile::TileCoord;
use std::io::{self, BufRead};
use thiserror::Error;

/// Highest zoom accepted on an input line; such tiles are carried up to `max_zoom`.
pub const MAX_INPUT_ZOOM: u8 = 30;
/// Longest accepted input line; longer lines are bad lines (and memory stays bounded).
pub const MAX_LINE_BYTES: usize = 256;

/// A tile from an input line: like [`TileCoord`] but up to [`MAX_INPUT_ZOOM`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InputTile {
    pub z: u8,
    pub x: u32,
    pub y: u32,
}

impl From<TileCoord> for InputTile {
    fn from(t: TileCoord) -> Self {
        Self {
            z: t.z,
            x: t.x,
            y: t.y,
        }
    }
}

/// Why a line is not a tile.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LineError {
    #[error("expected z/x/y")]
    Shape,
    #[error("{0} is not a whole number")]
    NotANumber(&'static str),
    #[error("zoom {0} is above {MAX_INPUT_ZOOM}")]
    ZoomTooHigh(u64),
    #[error("tile {x}/{y} is outside the grid of zoom {z}")]
    OutOfRange { z: u8, x: u64, y: u64 },
    #[error("line is longer than {MAX_LINE_BYTES} bytes")]
    TooLong,
}

/// A line that was reported and skipped.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("line {line_no}: {text:?}: {error}")]
pub struct BadLine {
    pub line_no: u64,
    /// The line (lossy UTF-8, cut to [`MAX_LINE_BYTES`]).
    pub text: String,
    pub error: LineError,
}

/// Parses one `z/x/y` line; surrounding whitespace is ignored, a blank line is `None`.
pub fn parse_tile_line(line: &[u8]) -> Result<Option<InputTile>, LineError> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Ok(None);
    }
    let mut parts = line.split(|b| *b == b'/');
    let (Some(z), Some(x), Some(y), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(LineError::Shape);
    };
    let number = |field: &'static str, s: &[u8]| -> Result<u64, LineError> {
        if s.is_empty() || s.len() > 12 || !s.iter().all(u8::is_ascii_digit) {
            return Err(LineError::NotANumber(field));
        }
        Ok(s.iter().fold(0u64, |v, d| v * 10 + u64::from(d - b'0')))
    };
    let (z, x, y) = (number("zoom", z)?, number("x", x)?, number("y", y)?);
    if z > u64::from(MAX_INPUT_ZOOM) {
        return Err(LineError::ZoomTooHigh(z));
    }
    let z = z as u8;
    let size = 1u64 << z;
    if x >= size || y >= size {
        return Err(LineError::OutOfRange { z, x, y });
    }
    Ok(Some(InputTile {
        z,
        x: x as u32,
        y: y as u32,
    }))
}

/// `z/x/y` lines from a reader: each item is a tile or a bad line (with its number);
/// blank lines are skipped. Lines longer than [`MAX_LINE_BYTES`] are bad and are not
/// held in memory.
#[derive(Debug)]
pub struct TileLines<R> {
    reader: R,
    line_no: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> TileLines<R> {
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            line_no: 0,
            buf: Vec::with_capacity(64),
        }
    }

    /// Lines read so far (blank and bad ones included).
    pub fn lines_read(&self) -> u64 {
        self.line_no
    }

    /// Reads one line into `buf`, keeping at most `MAX_LINE_BYTES + 1` bytes of it.
    /// Returns false at the end of the input.
    fn read_line(&mut self) -> io::Result<bool> {
        self.buf.clear();
        let mut any = false;
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                return Ok(any);
            }
            any = true;
            let (line_part, used, done) = match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => (&chunk[..i], i + 1, true),
                None => (chunk, chunk.len(), false),
            };
            let room = (MAX_LINE_BYTES + 1).saturating_sub(self.buf.len());
            self.buf
                .extend_from_slice(&line_part[..line_part.len().min(room)]);
            self.reader.consume(used);
            if done {
                return Ok(true);
            }
        }
    }
}

impl<R: BufRead> Iterator for TileLines<R> {
    type Item = io::Result<Result<InputTile, BadLine>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.read_line() {
                Err(e) => return Some(Err(e)),
                Ok(false) => return None,
                Ok(true) => {}
            }
            self.line_no += 1;
            let parsed = if self.buf.len() > MAX_LINE_BYTES {
                Err(LineError::TooLong)
            } else {
                parse_tile_line(&self.buf)
            };
            match parsed {
                Ok(None) => continue,
                Ok(Some(tile)) => return Some(Ok(Ok(tile))),
                Err(error) => {
                    let shown = &self.buf[..self.buf.len().min(MAX_LINE_BYTES)];
                    return Some(Ok(Err(BadLine {
                        line_no: self.line_no,
                        text: String::from_utf8_lossy(shown).trim_end().to_string(),
                        error,
                    })));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
