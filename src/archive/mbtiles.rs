//! MBTiles 1.3: a SQLite file with a `metadata` table and a `tiles` table (or view) of
//! `zoom_level`, `tile_column`, `tile_row` (TMS: y up) and `tile_data`.
//!
//! Written deduplicated, the way mbutil and tippecanoe do: `images(tile_id, tile_data)`
//! holds each distinct tile once (keyed by a hash of its bytes), `map` names a tile id
//! per coordinate, and `tiles` is a view joining them, so readers (GDAL, QGIS, any
//! MBTiles server) see the usual table. The temp file is written without a journal
//! (a crash leaves only the temp file, which is never renamed), indexes are built at
//! the end.

use super::{io_err, tms_row, ArchiveError, ArchiveMetadata};
use crate::tile::TileCoord;
use bytes::Bytes;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Tiles per write transaction: big enough that commits cost nothing, small enough that
/// SQLite's page cache stays bounded.
const TILES_PER_TRANSACTION: u64 = 20_000;
/// Read connections kept open between reads (more may be opened under load).
const MAX_IDLE_CONNECTIONS: usize = 8;

fn sqlite_err(path: &Path, action: &'static str) -> impl FnOnce(rusqlite::Error) -> ArchiveError {
    let path = path.to_path_buf();
    move |source| ArchiveError::Sqlite {
        path,
        action,
        source,
    }
}

/// SQLite's rollback journal beside a database file.
pub(super) fn journal_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-journal");
    PathBuf::from(name)
}

pub(super) struct MbtilesWriter {
    path: PathBuf,
    conn: Connection,
    in_transaction: u64,
}

impl MbtilesWriter {
    pub(super) fn create(path: &Path, metadata: &ArchiveMetadata) -> Result<Self, ArchiveError> {
        let _ = std::fs::remove_file(path);
        let conn = Connection::open(path).map_err(sqlite_err(path, "create"))?;
        conn.execute_batch(
            "PRAGMA journal_mode = OFF;
             PRAGMA synchronous = OFF;
             PRAGMA locking_mode = EXCLUSIVE;
             PRAGMA application_id = 0x4d504258;
             CREATE TABLE metadata (name TEXT NOT NULL, value TEXT);
             CREATE TABLE map (zoom_level INTEGER NOT NULL, tile_column INTEGER NOT NULL,
                               tile_row INTEGER NOT NULL, tile_id TEXT NOT NULL);
             CREATE TABLE images (tile_id TEXT PRIMARY KEY, tile_data BLOB NOT NULL);
             CREATE VIEW tiles AS
               SELECT map.zoom_level AS zoom_level, map.tile_column AS tile_column,
                      map.tile_row AS tile_row, images.tile_data AS tile_data
               FROM map JOIN images ON images.tile_id = map.tile_id;
             BEGIN;",
        )
        .map_err(sqlite_err(path, "create the schema"))?;
        let mut writer = Self {
            path: path.to_path_buf(),
            conn,
            in_transaction: 0,
        };
        writer.write_metadata(metadata)?;
        Ok(writer)
    }

    /// Adds a tile; true when its content was not stored before.
    pub(super) fn add(&mut self, tile: TileCoord, bytes: &[u8]) -> Result<bool, ArchiveError> {
        let digest = Sha256::digest(bytes);
        let id = hex::encode(&digest[..16]);
        let unique = self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO images (tile_id, tile_data) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![id, bytes]))
            .map_err(sqlite_err(&self.path, "insert a tile image"))?
            > 0;
        self.conn
            .prepare_cached(
                "INSERT INTO map (zoom_level, tile_column, tile_row, tile_id) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![tile.z, tile.x, tms_row(tile), id]))
            .map_err(sqlite_err(&self.path, "insert a tile"))?;
        self.in_transaction += 1;
        if self.in_transaction >= TILES_PER_TRANSACTION {
            self.conn
                .execute_batch("COMMIT; BEGIN;")
                .map_err(sqlite_err(&self.path, "commit"))?;
            self.in_transaction = 0;
        }
        Ok(unique)
    }

    fn write_metadata(&mut self, m: &ArchiveMetadata) -> Result<(), ArchiveError> {
        let mut rows: Vec<(&str, String)> = vec![
            ("name", m.name.clone()),
            ("format", "png".into()),
            ("type", "baselayer".into()),
            ("version", "1.3".into()),
            ("description", m.description.clone()),
            ("attribution", m.attribution.clone()),
            ("minzoom", m.minzoom.to_string()),
            ("maxzoom", m.maxzoom.to_string()),
        ];
        if let Some([a, b, c, d]) = m.bounds {
            rows.push(("bounds", format!("{a},{b},{c},{d}")));
        }
        if let Some([lon, lat, z]) = m.center {
            rows.push(("center", format!("{lon},{lat},{}", z.round())));
        }
        self.conn
            .execute("DELETE FROM metadata", [])
            .map_err(sqlite_err(&self.path, "write the metadata"))?;
        for (name, value) in rows {
            self.conn
                .execute(
                    "INSERT INTO metadata (name, value) VALUES (?1, ?2)",
                    params![name, value],
                )
                .map_err(sqlite_err(&self.path, "write the metadata"))?;
        }
        Ok(())
    }

    pub(super) fn finish(mut self, metadata: &ArchiveMetadata) -> Result<(), ArchiveError> {
        self.write_metadata(metadata)?;
        self.conn
            .execute_batch(
                "COMMIT;
                 CREATE UNIQUE INDEX map_index ON map (zoom_level, tile_column, tile_row);
                 CREATE UNIQUE INDEX name ON metadata (name);
                 PRAGMA locking_mode = NORMAL;",
            )
            .map_err(sqlite_err(&self.path, "index the tiles"))?;
        self.conn
            .close()
            .map_err(|(_, e)| sqlite_err(&self.path, "close")(e))
    }
}

/// Reads tiles through a few read-only connections, on blocking threads.
pub(super) struct MbtilesReader {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl MbtilesReader {
    pub(super) fn open(path: &Path) -> Result<(Self, ArchiveMetadata), ArchiveError> {
        let conn = open_read_only(path)?;
        let metadata = read_metadata(path, &conn)?;
        // A file that holds no `tiles` table or view is refused now, not at the first read.
        conn.prepare("SELECT tile_data FROM tiles LIMIT 0")
            .map_err(sqlite_err(path, "find the tiles table"))?;
        Ok((
            Self {
                path: path.to_path_buf(),
                idle: Arc::new(Mutex::new(vec![conn])),
            },
            metadata,
        ))
    }

    /// Runs `f` with a connection on a blocking thread.
    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, ArchiveError> + Send + 'static,
    ) -> Result<T, ArchiveError> {
        let idle = self.idle.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let taken = idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match taken {
                Some(c) => c,
                None => open_read_only(&path)?,
            };
            let result = f(&conn);
            let mut idle = idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE_CONNECTIONS {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|_| ArchiveError::Worker)?
    }

    pub(super) async fn get(&self, tile: TileCoord) -> Result<Option<Bytes>, ArchiveError> {
        let path = self.path.clone();
        self.with_conn(move |conn| {
            conn.prepare_cached(
                "SELECT tile_data FROM tiles WHERE zoom_level = ?1 AND tile_column = ?2 AND tile_row = ?3",
            )
            .and_then(|mut s| {
                s.query_row(params![tile.z, tile.x, tms_row(tile)], |r| r.get::<_, Vec<u8>>(0))
                    .optional()
            })
            .map(|found| found.map(Bytes::from))
            .map_err(sqlite_err(&path, "read a tile"))
        })
        .await
    }

    pub(super) async fn count(&self) -> Result<u64, ArchiveError> {
        let path = self.path.clone();
        self.with_conn(move |conn| {
            conn.query_row("SELECT count(*) FROM tiles", [], |r| r.get::<_, i64>(0))
                .map(|n| n.max(0) as u64)
                .map_err(sqlite_err(&path, "count the tiles"))
        })
        .await
    }
}

fn open_read_only(path: &Path) -> Result<Connection, ArchiveError> {
    if !path.is_file() {
        return Err(io_err(
            path,
            "open",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_err(path, "open"))
}

fn read_metadata(path: &Path, conn: &Connection) -> Result<ArchiveMetadata, ArchiveError> {
    let mut stmt = conn
        .prepare("SELECT name, value FROM metadata")
        .map_err(sqlite_err(path, "read the metadata"))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
        })
        .map_err(sqlite_err(path, "read the metadata"))?;
    let mut m = ArchiveMetadata {
        maxzoom: 19,
        ..ArchiveMetadata::default()
    };
    let numbers = |text: &str| -> Vec<f64> {
        text.split(',')
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .collect()
    };
    for row in rows {
        let (name, value) = row.map_err(sqlite_err(path, "read the metadata"))?;
        let value = value.unwrap_or_default();
        match name.as_str() {
            "name" => m.name = value,
            "description" => m.description = value,
            "attribution" => m.attribution = value,
            "minzoom" => m.minzoom = value.trim().parse().unwrap_or(0),
            "maxzoom" => m.maxzoom = value.trim().parse().unwrap_or(19),
            "bounds" => {
                if let [a, b, c, d] = numbers(&value)[..] {
                    m.bounds = Some([a, b, c, d]);
                }
            }
            "center" => {
                if let [lon, lat, z] = numbers(&value)[..] {
                    m.center = Some([lon, lat, z]);
                }
            }
            _ => {}
        }
    }
    Ok(m)
}
