//! PMTiles v3 through the `pmtiles` crate: its streaming writer (tiles deduplicated by
//! content hash, consecutive repeats stored as one run, leaf directories when the root
//! outgrows 16 KiB) and its reader over a memory-mapped file with cached leaf
//! directories.
//!
//! The archive is clustered (tile data in tile-id order, so a client reading a region
//! makes few requests) when tiles are added in ascending [`tile_id`] order: zoom by
//! zoom, along the Hilbert curve. Note that an aligned 8x8 metatile is one contiguous run
//! of that curve, so metatiles sorted by the id of any of their tiles, each walked in id
//! order, give the archive's order.

use super::{io_err, ArchiveError, ArchiveMetadata};
use crate::tile::TileCoord;
use bytes::Bytes;
use pmtiles::{AsyncPmTilesReader, HashMapCache, MmapBackend, PmTilesWriter, TileType};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The PMTiles tile id of a tile: all tiles of lower zooms first, then the position of
/// (x, y) along the zoom's Hilbert curve.
pub fn tile_id(tile: TileCoord) -> u64 {
    pmtiles::TileId::from(pmtiles_coord(tile)).value()
}

/// Bytes of a PMTiles v3 header.
const HEADER_LEN: usize = 127;

fn pmtiles_coord(tile: TileCoord) -> pmtiles::TileCoord {
    // A `TileCoord` is valid by construction (z <= 20, x and y inside the grid), which
    // is all `pmtiles` checks.
    pmtiles::TileCoord::new(tile.z, tile.x, tile.y)
        .unwrap_or_else(|_| unreachable!("tile coordinates are validated at construction"))
}

fn pmt_err(path: &Path, action: &'static str) -> impl FnOnce(pmtiles::PmtError) -> ArchiveError {
    let path = path.to_path_buf();
    move |source| ArchiveError::Pmtiles {
        path,
        action,
        source,
    }
}

/// The JSON metadata of a raster archive (TileJSON-like keys, as `pmtiles show` prints).
fn metadata_json(m: &ArchiveMetadata) -> String {
    serde_json::json!({
        "name": m.name,
        "description": m.description,
        "attribution": m.attribution,
        "format": "png",
        "type": "baselayer",
        "minzoom": m.minzoom,
        "maxzoom": m.maxzoom,
        "bounds": m.bounds,
        "center": m.center,
    })
    .to_string()
}

pub(super) struct PmtilesWriter {
    path: PathBuf,
    writer: pmtiles::PmTilesStreamWriter<File>,
    last_id: Option<u64>,
}

impl PmtilesWriter {
    pub(super) fn create(path: &Path, metadata: &ArchiveMetadata) -> Result<Self, ArchiveError> {
        let file = File::create(path).map_err(|e| io_err(path, "create", e))?;
        let writer = PmTilesWriter::new(TileType::Png)
            .metadata(metadata_json(metadata))
            .create(file)
            .map_err(pmt_err(path, "start the archive"))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer,
            last_id: None,
        })
    }

    /// Adds a tile (deduplicated by the crate, which counts distinct contents itself:
    /// see [`PmtilesWriter::finish`]).
    pub(super) fn add(&mut self, tile: TileCoord, bytes: &[u8]) -> Result<(), ArchiveError> {
        let id = tile_id(tile);
        if self.last_id.is_some_and(|last| id <= last) {
            tracing::debug!(path = %self.path.display(), tile = %tile, "tile out of order: the archive will not be clustered");
        }
        self.last_id = Some(id);
        self.writer
            .add_tile(pmtiles_coord(tile), bytes)
            .map_err(pmt_err(&self.path, "write a tile"))
    }

    /// Writes the directories and the header; returns the distinct tile contents stored
    /// (read back from the header the crate wrote).
    pub(super) fn finish(mut self, m: &ArchiveMetadata) -> Result<u64, ArchiveError> {
        self.writer.set_metadata(metadata_json(m));
        self.writer.set_zoom_range(m.minzoom, m.maxzoom);
        if let Some([a, b, c, d]) = m.bounds {
            self.writer.set_bounds(a, b, c, d);
        }
        if let Some([lon, lat, z]) = m.center {
            self.writer
                .set_center(lon, lat, z.round().clamp(0.0, 30.0) as u8);
        }
        self.writer
            .finalize()
            .map_err(pmt_err(&self.path, "finish the archive"))?;
        let mut head = vec![0u8; HEADER_LEN];
        File::open(&self.path)
            .and_then(|mut f| f.read_exact(&mut head))
            .map_err(|e| io_err(&self.path, "read back the header of", e))?;
        let header = pmtiles::Header::try_from_bytes(Bytes::from(head))
            .map_err(pmt_err(&self.path, "read back the header"))?;
        Ok(header.n_tile_contents().map_or(0, |n| n.get()))
    }
}

pub(super) struct PmtilesReader {
    path: PathBuf,
    reader: AsyncPmTilesReader<MmapBackend, HashMapCache>,
}

impl PmtilesReader {
    /// Maps the file (it must not be truncated while mapped: replace archives by
    /// renaming a new file over the old one) and reads its header and root directory.
    pub(super) async fn open(path: &Path) -> Result<(Self, ArchiveMetadata), ArchiveError> {
        if !path.is_file() {
            return Err(io_err(
                path,
                "open",
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        let reader = AsyncPmTilesReader::new_with_cached_path(HashMapCache::default(), path)
            .await
            .map_err(pmt_err(path, "open"))?;
        let header = reader.get_header();
        if header.tile_type != TileType::Png {
            return Err(ArchiveError::Invalid {
                path: path.to_path_buf(),
                message: format!(
                    "holds {:?} tiles; only PNG archives are served",
                    header.tile_type
                ),
            });
        }
        let mut metadata = ArchiveMetadata {
            minzoom: header.min_zoom,
            maxzoom: header.max_zoom,
            bounds: Some([
                header.min_longitude,
                header.min_latitude,
                header.max_longitude,
                header.max_latitude,
            ]),
            center: Some([
                header.center_longitude,
                header.center_latitude,
                f64::from(header.center_zoom),
            ]),
            ..ArchiveMetadata::default()
        };
        let json = reader
            .get_metadata()
            .await
            .map_err(pmt_err(path, "read the metadata"))?;
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&json) {
            let text = |k: &str| {
                map.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            metadata.name = text("name");
            metadata.description = text("description");
            metadata.attribution = text("attribution");
        }
        Ok((
            Self {
                path: path.to_path_buf(),
                reader,
            },
            metadata,
        ))
    }

    pub(super) async fn get(&self, tile: TileCoord) -> Result<Option<Bytes>, ArchiveError> {
        self.reader
            .get_tile(pmtiles_coord(tile))
            .await
            .map_err(pmt_err(&self.path, "read a tile"))
    }

    pub(super) fn addressed_tiles(&self) -> u64 {
        self.reader
            .get_header()
            .n_addressed_tiles()
            .map_or(0, |n| n.get())
    }
}
