//! Tile archives: MBTiles 1.3 (SQLite) and PMTiles v3 files, read tile by tile and
//! written tile by tile. File formats only: this module knows nothing of styles,
//! rendering or the metatile cache, and it is the only one that knows SQLite (`rusqlite`)
//! and the `pmtiles` crate.
//!
//! - [`ArchiveReader`]: opens an archive read-only and returns the bytes of one tile
//!   (XYZ coordinates, y down, whatever the format stores); what archive-backed styles
//!   serve.
//! - [`ArchiveWriter`]: writes a new archive into a temp file next to its destination
//!   and renames it into place at [`ArchiveWriter::finish`], so a crash never leaves a
//!   file that claims to be complete. Identical tiles (sea, empty land) are stored once
//!   in both formats.
//! - `mbtiles`: the MBTiles schema (deduplicated `map` + `images` behind a `tiles` view,
//!   TMS rows), metadata, reads.
//! - `pmtiles`: the PMTiles writer and reader of the `pmtiles` crate (clustered when the
//!   tiles come in [`tile_id`] order).

mod mbtiles;
mod pmtiles;

use crate::tile::TileCoord;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use thiserror::Error;

pub use pmtiles::tile_id;

/// The two archive formats, named as `--format` and the style files name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveFormat {
    Mbtiles,
    Pmtiles,
}

impl ArchiveFormat {
    pub const ALL: [ArchiveFormat; 2] = [ArchiveFormat::Mbtiles, ArchiveFormat::Pmtiles];

    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveFormat::Mbtiles => "mbtiles",
            ArchiveFormat::Pmtiles => "pmtiles",
        }
    }

    /// The format a file name's extension names (`.mbtiles`, `.pmtiles`).
    pub fn from_path(path: &Path) -> Option<ArchiveFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        ArchiveFormat::ALL.into_iter().find(|f| f.as_str() == ext)
    }
}

impl std::fmt::Display for ArchiveFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A format that is neither `mbtiles` nor `pmtiles`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("unknown archive format {0:?}: use \"mbtiles\" or \"pmtiles\"")]
pub struct UnknownFormat(pub String);

impl std::str::FromStr for ArchiveFormat {
    type Err = UnknownFormat;
    fn from_str(text: &str) -> Result<Self, UnknownFormat> {
        ArchiveFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == text)
            .ok_or_else(|| UnknownFormat(text.to_string()))
    }
}

/// What an archive says about itself: MBTiles' `metadata` table, PMTiles' header and
/// JSON metadata.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ArchiveMetadata {
    pub name: String,
    pub description: String,
    pub attribution: String,
    /// `[minlon, minlat, maxlon, maxlat]`.
    pub bounds: Option<[f64; 4]>,
    /// `[lon, lat, zoom]`.
    pub center: Option<[f64; 3]>,
    pub minzoom: u8,
    pub maxzoom: u8,
}

/// Why an archive could not be read or written. Every variant names the file.
#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error("{}: {action}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: SQLite: {action}", path.display())]
    Sqlite {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{}: PMTiles: {action}", path.display())]
    Pmtiles {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: ::pmtiles::PmtError,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("the archive reader thread stopped")]
    Worker,
}

pub(crate) fn io_err(path: &Path, action: &'static str, source: std::io::Error) -> ArchiveError {
    ArchiveError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// Identifies one version of an archive file: replacing it (a new inode), touching or
/// truncating it changes the stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveStamp {
    pub mtime: SystemTime,
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
}

impl ArchiveStamp {
    /// The stamp of the file at `path` now.
    pub fn of(path: &Path) -> Result<ArchiveStamp, ArchiveError> {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(path).map_err(|e| io_err(path, "stat", e))?;
        Ok(ArchiveStamp {
            mtime: md.modified().map_err(|e| io_err(path, "stat", e))?,
            dev: md.dev(),
            ino: md.ino(),
            len: md.len(),
        })
    }
}

/// An archive opened read-only. Share it behind an `Arc`; reads may run concurrently.
pub struct ArchiveReader {
    path: PathBuf,
    format: ArchiveFormat,
    stamp: ArchiveStamp,
    metadata: ArchiveMetadata,
    inner: Reader,
}

enum Reader {
    Mbtiles(mbtiles::MbtilesReader),
    Pmtiles(Box<pmtiles::PmtilesReader>),
}

impl ArchiveReader {
    /// Opens the archive and reads its metadata. Must run inside a tokio runtime.
    pub async fn open(path: &Path, format: ArchiveFormat) -> Result<ArchiveReader, ArchiveError> {
        let stamp = ArchiveStamp::of(path)?;
        let (inner, metadata) = match format {
            ArchiveFormat::Mbtiles => {
                let owned = path.to_path_buf();
                let (reader, metadata) =
                    tokio::task::spawn_blocking(move || mbtiles::MbtilesReader::open(&owned))
                        .await
                        .map_err(|_| ArchiveError::Worker)??;
                (Reader::Mbtiles(reader), metadata)
            }
            ArchiveFormat::Pmtiles => {
                let (reader, metadata) = pmtiles::PmtilesReader::open(path).await?;
                (Reader::Pmtiles(Box::new(reader)), metadata)
            }
        };
        Ok(ArchiveReader {
            path: path.to_path_buf(),
            format,
            stamp,
            metadata,
            inner,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn format(&self) -> ArchiveFormat {
        self.format
    }

    /// The file as it was when opened.
    pub fn stamp(&self) -> ArchiveStamp {
        self.stamp
    }

    pub fn metadata(&self) -> &ArchiveMetadata {
        &self.metadata
    }

    /// The bytes of one tile, `None` when the archive does not hold it.
    pub async fn get(&self, tile: TileCoord) -> Result<Option<Bytes>, ArchiveError> {
        match &self.inner {
            Reader::Mbtiles(r) => r.get(tile).await,
            Reader::Pmtiles(r) => r.get(tile).await,
        }
    }

    /// Every tile's coordinates (for tests and tools; reads the whole index).
    pub async fn count_tiles(&self) -> Result<u64, ArchiveError> {
        match &self.inner {
            Reader::Mbtiles(r) => r.count().await,
            Reader::Pmtiles(r) => Ok(r.addressed_tiles()),
        }
    }
}

/// What a finished archive holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ArchiveStats {
    /// Tiles the archive addresses.
    pub tiles: u64,
    /// Distinct tile contents stored.
    pub unique_tiles: u64,
    /// Bytes of the tiles as given (before deduplication).
    pub tile_bytes: u64,
    /// Size of the finished file.
    pub file_bytes: u64,
}

/// A new archive being written. Tiles go into a temp file beside `path`; only
/// [`ArchiveWriter::finish`] renames it to `path`. Dropping an unfinished writer removes
/// the temp file; a crash leaves it under its temp name, never under `path`.
pub struct ArchiveWriter {
    path: PathBuf,
    temp: PathBuf,
    inner: Option<Writer>,
    stats: ArchiveStats,
}

enum Writer {
    Mbtiles(mbtiles::MbtilesWriter),
    Pmtiles(Box<pmtiles::PmtilesWriter>),
}

impl ArchiveWriter {
    /// Starts an archive at `path` (written at the end) with the metadata known up front.
    /// Blocking (file I/O).
    pub fn create(
        path: &Path,
        format: ArchiveFormat,
        metadata: &ArchiveMetadata,
    ) -> Result<ArchiveWriter, ArchiveError> {
        let temp = temp_path(path);
        let inner = match format {
            ArchiveFormat::Mbtiles => {
                Writer::Mbtiles(mbtiles::MbtilesWriter::create(&temp, metadata)?)
            }
            ArchiveFormat::Pmtiles => {
                Writer::Pmtiles(Box::new(pmtiles::PmtilesWriter::create(&temp, metadata)?))
            }
        };
        Ok(ArchiveWriter {
            path: path.to_path_buf(),
            temp,
            inner: Some(inner),
            stats: ArchiveStats::default(),
        })
    }

    /// The temp file being written.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Adds one tile. For a clustered PMTiles archive add tiles in ascending
    /// [`tile_id`] order (an out-of-order tile makes the archive unclustered, still valid).
    pub fn add(&mut self, tile: TileCoord, bytes: &[u8]) -> Result<(), ArchiveError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let unique = match &mut self.inner {
            Some(Writer::Mbtiles(w)) => w.add(tile, bytes)?,
            Some(Writer::Pmtiles(w)) => {
                w.add(tile, bytes)?;
                false
            }
            None => return Err(self.finished()),
        };
        self.stats.tiles += 1;
        self.stats.tile_bytes += bytes.len() as u64;
        if unique {
            self.stats.unique_tiles += 1;
        }
        Ok(())
    }

    fn finished(&self) -> ArchiveError {
        ArchiveError::Invalid {
            path: self.temp.clone(),
            message: "the archive is already finished".into(),
        }
    }

    /// Completes the file (metadata, indexes, directories), syncs it and renames it to
    /// its destination. `metadata` replaces what `create` was given (zooms and bounds
    /// known only at the end).
    pub fn finish(mut self, metadata: &ArchiveMetadata) -> Result<ArchiveStats, ArchiveError> {
        match self.inner.take() {
            Some(Writer::Mbtiles(w)) => w.finish(metadata)?,
            Some(Writer::Pmtiles(w)) => self.stats.unique_tiles = w.finish(metadata)?,
            None => return Err(self.finished()),
        }
        let file = std::fs::File::open(&self.temp).map_err(|e| io_err(&self.temp, "open", e))?;
        file.sync_all()
            .map_err(|e| io_err(&self.temp, "fsync", e))?;
        self.stats.file_bytes = file
            .metadata()
            .map_err(|e| io_err(&self.temp, "stat", e))?
            .len();
        std::fs::rename(&self.temp, &self.path)
            .map_err(|e| io_err(&self.path, "rename the finished archive to", e))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The rename itself survives a power loss only once its directory is synced.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(self.stats)
    }
}

impl Drop for ArchiveWriter {
    fn drop(&mut self) {
        if self.inner.take().is_some() {
            let _ = std::fs::remove_file(&self.temp);
            let _ = std::fs::remove_file(mbtiles::journal_of(&self.temp));
        }
    }
}

/// `<dir>/.<name>.partial-<pid>-<random>`: beside the destination (so the rename stays
/// on one file system), hidden, and never mistaken for a finished archive.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "archive".into());
    let temp = format!(
        ".{name}.partial-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    match path.parent() {
        Some(dir) => dir.join(temp),
        None => PathBuf::from(temp),
    }
}

/// The MBTiles row of an XYZ tile (TMS numbering: y up from the south).
pub(crate) fn tms_row(tile: TileCoord) -> u32 {
    (1u32 << tile.z) - 1 - tile.y
}

#[cfg(test)]
mod tests;
