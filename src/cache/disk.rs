//! The on-disk metatile tree: one-blob reads, atomic writes, dirty marks, deletes,
//! start-up cleaning and walking.
//!
//! - **Reads** open the file, `fstat` it, `pread` the 532-byte header and then the one
//!   blob asked for. Nothing is written on a read (mtime is the render time; atime is
//!   the kernel's business).
//! - **Writes** go to `<h0>.meta.tmp.<pid>.<random>` in the target directory, are
//!   fsync'd (when `cache.fsync`) and renamed over `<h0>.meta`: a reader sees the old
//!   file or the new one, never a part. Two writers of one metatile each rename a
//!   complete file; the last rename wins. The directory itself is not fsync'd: after a
//!   power loss a rename may be lost, leaving the previous (valid) file or none.
//! - **Cleaning** ([`DiskCache::clean_temp_files`]) walks the whole tree and removes our
//!   temp files whose writer is gone: written by a pid that no longer runs (or by our
//!   own pid, from a previous life in a container), or older than
//!   [`STALE_TEMP_AGE`]. Its cost is one `readdir` per directory: walking 87,000
//!   metatiles (and `stat`ing each, which cleaning does not) took 0.8 s with a warm
//!   page cache and 5 s cold, on the development VM. Another live metatiled sharing the
//!   directory keeps its temp files (checked through `/proc`, so Linux only). In a
//!   directory shared with other hosts or containers (`cache.shared`) a pid says nothing
//!   about another machine's writers, so only temp files older than [`STALE_TEMP_AGE`]
//!   are removed.

use super::format::{self, MetatileHeader, HEADER_LEN};
use super::freshness::{self, PLANET_FILE};
use super::path::{self, canonical_number, META_EXT};
use super::{CacheError, ExpireOutcome};
use crate::tile::{MetatileCoord, StyleName, TileCoord, MAX_ZOOM};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A temp file older than this is removed at start-up whoever wrote it: no metatile
/// write takes an hour.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);
/// What sits between `<h0>.meta` and `<pid>.<random>` in a temp file's name.
const TEMP_INFIX: &str = ".meta.tmp.";
/// What a corrupt metatile is renamed to, beside where it was: `<h0>.meta.corrupt`.
pub const CORRUPT_SUFFIX: &str = ".corrupt";

/// What identifies one version of a metatile file: a rewrite (new inode), a dirty mark
/// (new mtime) or a truncation (new length) all change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub mtime: SystemTime,
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
}

impl FileStamp {
    fn of(md: &fs::Metadata, path: &Path) -> Result<Self, CacheError> {
        Ok(Self {
            mtime: md.modified().map_err(|e| io_err("stat", path, e))?,
            dev: md.dev(),
            ino: md.ino(),
            len: md.len(),
        })
    }
}

/// A failed read, with the stamp of the file when it was opened.
#[derive(Debug)]
pub(crate) struct ReadError {
    pub(crate) error: CacheError,
    pub(crate) stamp: Option<FileStamp>,
}

/// A whole metatile's tiles (index order, empty = no tile) and its file's stamp.
pub type MetatileTiles = (Vec<Vec<u8>>, FileStamp);

/// One tile read from disk, with the stamp of the file it came from.
#[derive(Debug, Clone)]
pub struct DiskTile {
    pub bytes: Vec<u8>,
    pub stamp: FileStamp,
}

pub(crate) fn io_err(action: &'static str, path: &Path, source: io::Error) -> CacheError {
    CacheError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The metatile tree under one root directory. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DiskCache {
    root: PathBuf,
    fsync: bool,
}

impl DiskCache {
    /// A cache rooted at `root` (not created here; see [`DiskCache::create_root`]).
    pub fn new(root: impl Into<PathBuf>, fsync: bool) -> Self {
        Self {
            root: root.into(),
            fsync,
        }
    }

    pub fn create_root(&self) -> Result<(), CacheError> {
        fs::create_dir_all(&self.root).map_err(|e| io_err("create directory", &self.root, e))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn style_dir(&self, style: &StyleName) -> PathBuf {
        self.root.join(style.as_str())
    }

    pub fn path_of(&self, style: &StyleName, meta: MetatileCoord) -> PathBuf {
        path::metatile_path(&self.root, style, meta)
    }

    /// Reads one tile: the header and one blob. `Ok(None)` when the metatile file does
    /// not exist or holds no such tile; [`CacheError::Corrupt`] when it is invalid.
    pub fn read_tile(
        &self,
        style: &StyleName,
        tile: TileCoord,
    ) -> Result<Option<DiskTile>, CacheError> {
        self.read_tile_stamped(style, tile).map_err(|e| e.error)
    }

    /// [`DiskCache::read_tile`], with the stamp of the file that failed, when it got
    /// that far (so a corrupt file can be moved aside only if it is still the same).
    pub(crate) fn read_tile_stamped(
        &self,
        style: &StyleName,
        tile: TileCoord,
    ) -> Result<Option<DiskTile>, ReadError> {
        let meta = tile.metatile();
        let path = self.path_of(style, meta);
        let failed = |error: CacheError, stamp: Option<FileStamp>| ReadError { error, stamp };
        let corrupt = |source, stamp: Option<FileStamp>| {
            failed(
                CacheError::Corrupt {
                    path: path.clone(),
                    source,
                },
                stamp,
            )
        };
        // Non-blocking: a FIFO where a metatile belongs must not hang the reader (it
        // changes nothing for regular files).
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                // A socket or device cannot even be opened: corrupt, not an I/O fault.
                return match fs::metadata(&path) {
                    Ok(md) if !md.is_file() => Err(corrupt(
                        format::FormatError::NotRegularFile,
                        FileStamp::of(&md, &path).ok(),
                    )),
                    _ => Err(failed(io_err("open", &path, e), None)),
                };
            }
        };
        let md = file
            .metadata()
            .map_err(|e| failed(io_err("stat", &path, e), None))?;
        let stamp = FileStamp::of(&md, &path).map_err(|e| failed(e, None))?;
        if !md.is_file() {
            return Err(corrupt(format::FormatError::NotRegularFile, Some(stamp)));
        }
        if stamp.len < HEADER_LEN as u64 {
            return Err(corrupt(
                format::FormatError::ShortHeader { len: stamp.len },
                Some(stamp),
            ));
        }
        let mut head = [0u8; HEADER_LEN];
        read_exact_at(&file, &mut head, 0, &path, stamp.len).map_err(|e| failed(e, Some(stamp)))?;
        let header = MetatileHeader::validate(&head, stamp.len, Some(meta))
            .map_err(|e| corrupt(e, Some(stamp)))?;
        let entry_index = tile.index_in_metatile();
        let entry = header.entries[entry_index];
        if entry.size == 0 {
            return Ok(None);
        }
        let mut blob = vec![0u8; entry.size as usize];
        read_exact_at(&file, &mut blob, u64::from(entry.offset), &path, stamp.len)
            .map_err(|e| failed(e, Some(stamp)))?;
        let bytes = format::decode_blob(header.compressed, entry_index, blob)
            .map_err(|e| corrupt(e, Some(stamp)))?;
        Ok(Some(DiskTile { bytes, stamp }))
    }

    /// Reads a whole metatile: its 64 tiles in index order (empty = no tile) and the
    /// file's stamp. `Ok(None)` when the file does not exist.
    pub fn read_metatile(
        &self,
        style: &StyleName,
        meta: MetatileCoord,
    ) -> Result<Option<MetatileTiles>, CacheError> {
        let path = self.path_of(style, meta);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("open", &path, e)),
        };
        let md = file.metadata().map_err(|e| io_err("stat", &path, e))?;
        let stamp = FileStamp::of(&md, &path)?;
        let mut bytes = Vec::with_capacity(stamp.len as usize);
        io::Read::read_to_end(&mut &file, &mut bytes).map_err(|e| io_err("read", &path, e))?;
        let decoded =
            format::decode_metatile(&bytes, Some(meta)).map_err(|source| CacheError::Corrupt {
                path: path.clone(),
                source,
            })?;
        Ok(Some((decoded.tiles, stamp)))
    }

    /// The stamp of a metatile's file, `None` when it does not exist.
    pub fn stamp(
        &self,
        style: &StyleName,
        meta: MetatileCoord,
    ) -> Result<Option<FileStamp>, CacheError> {
        let path = self.path_of(style, meta);
        match fs::metadata(&path) {
            Ok(md) => FileStamp::of(&md, &path).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("stat", &path, e)),
        }
    }

    /// Writes a whole metatile atomically (see the module docs) and returns its path.
    pub fn write_metatile<T: AsRef<[u8]>>(
        &self,
        style: &StyleName,
        meta: MetatileCoord,
        tiles: &[T],
    ) -> Result<PathBuf, CacheError> {
        let bytes = format::encode_metatile(meta, tiles)
            .map_err(|source| CacheError::Encode { meta, source })?;
        let target = self.path_of(style, meta);
        let dir = target
            .parent()
            .ok_or_else(|| io_err("write", &target, io::ErrorKind::InvalidInput.into()))?;
        fs::create_dir_all(dir).map_err(|e| io_err("create directory", dir, e))?;
        let h0 = path::hash_components(meta)[0];
        let temp = dir.join(format!(
            "{h0}{TEMP_INFIX}{}.{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let result = self.write_temp(&temp, &bytes).and_then(|()| {
            fs::rename(&temp, &target).map_err(|e| io_err("rename temp file to", &target, e))
        });
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result.map(|()| target)
    }

    fn write_temp(&self, temp: &Path, bytes: &[u8]) -> Result<(), CacheError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(temp)
            .map_err(|e| io_err("create", temp, e))?;
        file.write_all(bytes)
            .map_err(|e| io_err("write", temp, e))?;
        if self.fsync {
            file.sync_all().map_err(|e| io_err("fsync", temp, e))?;
        }
        Ok(())
    }

    /// Marks a metatile dirty: its mtime goes back [`freshness::DIRTY_REWIND`], its atime
    /// is kept. A file that is already dirty is left alone.
    pub fn mark_dirty(
        &self,
        style: &StyleName,
        meta: MetatileCoord,
        now: SystemTime,
    ) -> Result<ExpireOutcome, CacheError> {
        let path = self.path_of(style, meta);
        let mtime = match fs::metadata(&path) {
            Ok(md) => md.modified().map_err(|e| io_err("stat", &path, e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ExpireOutcome::Absent),
            Err(e) => return Err(io_err("stat", &path, e)),
        };
        if freshness::is_dirty(mtime, now) {
            return Ok(ExpireOutcome::AlreadyDirty);
        }
        let rewound = filetime::FileTime::from_system_time(freshness::dirty_mtime(mtime));
        match filetime::set_file_mtime(&path, rewound) {
            Ok(()) => Ok(ExpireOutcome::Changed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ExpireOutcome::Absent),
            Err(e) => Err(io_err("set the mtime of", &path, e)),
        }
    }

    /// Moves a corrupt metatile (or whatever is in its place) aside, to
    /// `<h0>.meta.corrupt` (replacing an older one), so it is neither read again nor in
    /// the way of the re-rendered one. Only if it is still the file of `found` (when
    /// given): a file that was replaced meanwhile (a new render, another reader that
    /// moved it first) is left alone, and `None` is returned.
    pub fn move_aside(
        &self,
        style: &StyleName,
        meta: MetatileCoord,
        found: Option<FileStamp>,
    ) -> Result<Option<PathBuf>, CacheError> {
        let path = self.path_of(style, meta);
        if let Some(found) = found {
            match fs::symlink_metadata(&path) {
                Ok(md) if md.dev() == found.dev && md.ino() == found.ino => {}
                Ok(_) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_err("stat", &path, e)),
            }
        }
        let mut aside = path.clone().into_os_string();
        aside.push(CORRUPT_SUFFIX);
        let aside = PathBuf::from(aside);
        let moved = fs::rename(&path, &aside).or_else(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                return Err(e);
            }
            // An older corrupt one of another kind (a directory) is in the way.
            match fs::symlink_metadata(&aside) {
                Ok(md) if md.is_dir() => fs::remove_dir_all(&aside),
                Ok(_) => fs::remove_file(&aside),
                Err(_) => Err(e),
            }
            .and_then(|()| fs::rename(&path, &aside))
        });
        match moved {
            Ok(()) => Ok(Some(aside)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("move aside", &path, e)),
        }
    }

    /// Deletes a metatile's file.
    pub fn delete(
        &self,
        style: &StyleName,
        meta: MetatileCoord,
    ) -> Result<ExpireOutcome, CacheError> {
        let path = self.path_of(style, meta);
        match fs::remove_file(&path) {
            Ok(()) => Ok(ExpireOutcome::Changed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ExpireOutcome::Absent),
            Err(e) => Err(io_err("delete", &path, e)),
        }
    }

    /// Walks the tree (one style, or all), yielding metatiles, our temp files and
    /// anything that does not belong to the layout.
    pub fn walk(&self, style: Option<&StyleName>) -> Walk {
        let start = match style {
            Some(style) => (self.style_dir(style), Depth::Zoom, Some(style.clone())),
            None => (self.root.clone(), Depth::Style, None),
        };
        Walk {
            root: self.root.clone(),
            pending: vec![start],
            current: None,
        }
    }

    /// Removes temp files left by writers that are gone (see the module docs); with
    /// `shared`, only old ones. Returns how many were removed; errors on single files are
    /// logged and skipped.
    pub fn clean_temp_files(&self, shared: bool) -> Result<usize, CacheError> {
        if !self.root.exists() {
            return Ok(0);
        }
        let now = SystemTime::now();
        let proc_usable = Path::new("/proc/self").exists();
        let mut removed = 0;
        for item in self.walk(None) {
            let path = match item {
                Ok(WalkItem::TempFile(path)) => path,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %crate::errors::error_chain(&e), "while cleaning temp files");
                    continue;
                }
            };
            if temp_file_is_abandoned(&path, now, proc_usable, shared) {
                match fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot remove temp file")
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Calls `f` for every metatile file that exists at zoom `z` in the square block of
    /// `side` x `side` metatiles whose top-left metatile is number (`mx`, `my`) (origin
    /// tile `mx * 8`, `my * 8`). Only directories that can hold such metatiles are read,
    /// so a huge block over a sparse cache costs what is on disk, not its area.
    pub fn for_each_existing_in(
        &self,
        style: &StyleName,
        z: u8,
        block: (u32, u32, u32),
        f: &mut dyn FnMut(MetatileCoord) -> Result<(), CacheError>,
    ) -> Result<(), CacheError> {
        let (mx, my, side) = block;
        if side == 0 {
            return Ok(());
        }
        let tiles = |m: u32| u64::from(m) * 8;
        let x_range = (tiles(mx), tiles(mx + side) - 1);
        let y_range = (tiles(my), tiles(my + side) - 1);
        let zoom_dir = self.style_dir(style).join(z.to_string());
        walk_block(&zoom_dir, z, 4, 0, 0, x_range, y_range, f)
    }
}

fn read_exact_at(
    file: &File,
    buf: &mut [u8],
    offset: u64,
    path: &Path,
    file_len: u64,
) -> Result<(), CacheError> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            CacheError::Corrupt {
                path: path.to_path_buf(),
                source: format::FormatError::ShortHeader { len: file_len },
            }
        } else {
            io_err("read", path, e)
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn walk_block(
    dir: &Path,
    z: u8,
    level: usize,
    px: u64,
    py: u64,
    x_range: (u64, u64),
    y_range: (u64, u64),
    f: &mut dyn FnMut(MetatileCoord) -> Result<(), CacheError>,
) -> Result<(), CacheError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("read directory", dir, e)),
    };
    let shift = 4 * level as u32;
    for entry in entries {
        let entry = entry.map_err(|e| io_err("read directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let number = if level == 0 {
            match name.strip_suffix(".meta") {
                Some(stem) => stem,
                None => continue,
            }
        } else {
            name
        };
        let Some(h) = canonical_number(number, 255) else {
            continue;
        };
        let x = px | (u64::from(h >> 4) << shift);
        let y = py | (u64::from(h & 0xF) << shift);
        let span = (1u64 << shift) - 1;
        let overlaps = |v: u64, (lo, hi): (u64, u64)| v <= hi && v + span >= lo;
        if !overlaps(x, x_range) || !overlaps(y, y_range) {
            continue;
        }
        if level == 0 {
            if let Ok(meta) = MetatileCoord::try_new(u32::from(z), x, y) {
                f(meta)?;
            }
        } else {
            walk_block(&entry.path(), z, level - 1, x, y, x_range, y_range, f)?;
        }
    }
    Ok(())
}

/// Parses `<h0>.meta.tmp.<pid>.<random hex>`: the writer's pid.
fn temp_file_pid(name: &str) -> Option<u32> {
    let (_, rest) = name.split_once(TEMP_INFIX)?;
    let (pid, random) = rest.split_once('.')?;
    if random.is_empty() || !random.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    pid.parse().ok()
}

fn temp_file_is_abandoned(path: &Path, now: SystemTime, proc_usable: bool, shared: bool) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let Some(pid) = temp_file_pid(name) else {
        return false;
    };
    let old = fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .map(|t| now.duration_since(t).unwrap_or_default() > STALE_TEMP_AGE)
        .unwrap_or(false);
    let writer_gone = !shared
        && (pid == std::process::id()
            || !proc_usable
            || !Path::new(&format!("/proc/{pid}")).exists());
    old || writer_gone
}

/// What a walk finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkItem {
    /// A `.meta` file at a canonical path.
    Metatile {
        style: StyleName,
        meta: MetatileCoord,
        path: PathBuf,
    },
    /// One of our temp files (a write in progress, or abandoned).
    TempFile(PathBuf),
    /// A file or directory that does not fit the layout; never touched.
    Foreign(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// Entries are style directories.
    Style,
    /// Entries are zoom directories (and `planet-import-complete`).
    Zoom,
    /// Entries are hash directories; the number is how many levels remain above files.
    Hash(u8),
    /// Entries are `.meta` files and temp files.
    Leaf,
}

impl Depth {
    fn next(self) -> Option<Depth> {
        match self {
            Depth::Style => Some(Depth::Zoom),
            Depth::Zoom => Some(Depth::Hash(4)),
            Depth::Hash(1) => Some(Depth::Leaf),
            Depth::Hash(n) => Some(Depth::Hash(n - 1)),
            Depth::Leaf => None,
        }
    }
}

/// Iterator over the tree, depth first; see [`DiskCache::walk`].
#[derive(Debug)]
pub struct Walk {
    root: PathBuf,
    pending: Vec<(PathBuf, Depth, Option<StyleName>)>,
    current: Option<(fs::ReadDir, PathBuf, Depth, Option<StyleName>)>,
}

impl Walk {
    fn classify(
        &mut self,
        entry: &fs::DirEntry,
        depth: Depth,
        style: &Option<StyleName>,
    ) -> Option<WalkItem> {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_str().unwrap_or("");
        let is_dir = match entry.file_type() {
            Ok(t) if t.is_symlink() => fs::metadata(&path).map(|m| m.is_dir()).unwrap_or(false),
            Ok(t) => t.is_dir(),
            Err(_) => false,
        };
        let descend = |walk: &mut Walk, style: Option<StyleName>| {
            if let Some(next) = depth.next() {
                walk.pending.push((path.clone(), next, style));
            }
            None
        };
        match depth {
            Depth::Style if is_dir => match StyleName::parse(name) {
                Ok(s) => descend(self, Some(s)),
                Err(_) => Some(WalkItem::Foreign(path)),
            },
            Depth::Style | Depth::Zoom if name == PLANET_FILE && !is_dir => None,
            Depth::Zoom if is_dir && canonical_number(name, u32::from(MAX_ZOOM)).is_some() => {
                descend(self, style.clone())
            }
            Depth::Hash(_) if is_dir && canonical_number(name, 255).is_some() => {
                descend(self, style.clone())
            }
            Depth::Leaf if !is_dir && name.contains(TEMP_INFIX) => Some(WalkItem::TempFile(path)),
            Depth::Leaf if !is_dir && name.ends_with(&format!(".{META_EXT}")) => {
                match path::parse_path(&self.root, &path) {
                    Ok((style, meta)) => Some(WalkItem::Metatile { style, meta, path }),
                    Err(_) => Some(WalkItem::Foreign(path)),
                }
            }
            _ => Some(WalkItem::Foreign(path)),
        }
    }
}

impl Iterator for Walk {
    type Item = Result<WalkItem, CacheError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((mut entries, dir, depth, style)) = self.current.take() {
                match entries.next() {
                    None => continue,
                    Some(Err(e)) => {
                        self.current = Some((entries, dir.clone(), depth, style));
                        return Some(Err(io_err("read directory", &dir, e)));
                    }
                    Some(Ok(entry)) => {
                        let item = self.classify(&entry, depth, &style);
                        self.current = Some((entries, dir, depth, style));
                        if let Some(item) = item {
                            return Some(Ok(item));
                        }
                        continue;
                    }
                }
            }
            let (dir, depth, style) = self.pending.pop()?;
            match fs::read_dir(&dir) {
                Ok(entries) => self.current = Some((entries, dir, depth, style)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Some(Err(io_err("read directory", &dir, e))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn style() -> StyleName {
        StyleName::parse("osm").unwrap()
    }

    fn tiles_for(meta: MetatileCoord, tag: u8) -> Vec<Vec<u8>> {
        (0..64)
            .map(|i| {
                if format::entry_in_world(meta.z, i) {
                    vec![tag, i as u8, meta.z]
                } else {
                    Vec::new()
                }
            })
            .collect()
    }

    #[test]
    fn a_written_metatile_is_read_back_one_tile_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskCache::new(dir.path(), false);
        let tile = TileCoord::try_new(12, 2345, 1234).unwrap();
        let meta = tile.metatile();
        let path = disk
            .write_metatile(&style(), meta, &tiles_for(meta, 1))
            .unwrap();
        assert!(path.ends_with("osm/12/0/0/148/45/128.meta"));
        let read = disk.read_tile(&style(), tile).unwrap().unwrap();
        assert_eq!(read.bytes, vec![1, 10, 12]);
        assert_eq!(read.stamp.len, fs::metadata(&path).unwrap().len());
        let other = TileCoord::try_new(12, 2345, 1240).unwrap();
        assert!(disk.read_tile(&style(), other).unwrap().is_none());
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file is left behind");
    }

    #[test]
    fn an_empty_tile_inside_a_metatile_reads_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskCache::new(dir.path(), false);
        let meta = MetatileCoord::try_new(5, 8, 16).unwrap();
        let mut tiles = tiles_for(meta, 2);
        tiles[3].clear();
        disk.write_metatile(&style(), meta, &tiles).unwrap();
        let t = TileCoord::try_new(5, 8, 19).unwrap();
        assert!(disk.read_tile(&style(), t).unwrap().is_none());
    }

    #[test]
    fn a_corrupt_file_is_reported_as_corrupt_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskCache::new(dir.path(), false);
        let meta = MetatileCoord::try_new(4, 8, 8).unwrap();
        let path = disk
            .write_metatile(&style(), meta, &tiles_for(meta, 3))
            .unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 2);
        fs::write(&path, &bytes).unwrap();
        let err = disk
            .read_tile(&style(), TileCoord::try_new(4, 8, 8).unwrap())
            .unwrap_err();
        assert!(
            matches!(
                err,
                CacheError::Corrupt {
                    source: format::FormatError::Truncated { .. },
                    ..
                }
            ),
            "{err}"
        );
        // A file of another metatile moved to this path is refused too.
        let other = MetatileCoord::try_new(4, 0, 0).unwrap();
        let other_bytes = format::encode_metatile(other, &tiles_for(other, 3)).unwrap();
        fs::write(&path, other_bytes).unwrap();
        let err = disk
            .read_tile(&style(), TileCoord::try_new(4, 8, 8).unwrap())
            .unwrap_err();
        assert!(
            matches!(
                err,
                CacheError::Corrupt {
                    source: format::FormatError::WrongCoordinates { .. },
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn marking_dirty_rewinds_mtime_once_and_keeps_atime() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskCache::new(dir.path(), false);
        let meta = MetatileCoord::try_new(10, 8, 8).unwrap();
        let path = disk
            .write_metatile(&style(), meta, &tiles_for(meta, 4))
            .unwrap();
        let atime = filetime::FileTime::from_unix_time(1_500_000_000, 0);
        let mtime = filetime::FileTime::from_unix_time(1_780_000_000, 0);
        filetime::set_file_times(&path, atime, mtime).unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_100);
        assert_eq!(
            disk.mark_dirty(&style(), meta, now).unwrap(),
            ExpireOutcome::Changed
        );
        let md = fs::metadata(&path).unwrap();
        assert_eq!(
            filetime::FileTime::from_last_modification_time(&md).unix_seconds(),
            1_780_000_000 - 7305 * 24 * 3600
        );
        assert_eq!(filetime::FileTime::from_last_access_time(&md), atime);
        assert_eq!(
            disk.mark_dirty(&style(), meta, now).unwrap(),
            ExpireOutcome::AlreadyDirty
        );
        let md2 = fs::metadata(&path).unwrap();
        assert_eq!(md2.modified().unwrap(), md.modified().unwrap());
        let absent = MetatileCoord::try_new(10, 16, 8).unwrap();
        assert_eq!(
            disk.mark_dirty(&style(), absent, now).unwrap(),
            ExpireOutcome::Absent
        );
        assert_eq!(disk.delete(&style(), meta).unwrap(), ExpireOutcome::Changed);
        assert_eq!(disk.delete(&style(), meta).unwrap(), ExpireOutcome::Absent);
    }

    #[test]
    fn the_walk_finds_metatiles_temp_files_and_strangers() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskCache::new(dir.path(), false);
        let metas = [
            MetatileCoord::try_new(0, 0, 0).unwrap(),
            MetatileCoord::try_new(12, 2344, 1232).unwrap(),
            MetatileCoord::try_new(18, 131064, 87376).unwrap(),
        ];
        for m in metas {
            disk.write_metatile(&style(), m, &tiles_for(m, 5)).unwrap();
        }
        let other = StyleName::parse("other@2x").unwrap();
        disk.write_metatile(&other, metas[1], &tiles_for(metas[1], 6))
            .unwrap();
        let leaf = disk.path_of(&style(), metas[1]);
        let leaf_dir = leaf.parent().unwrap();
        fs::write(leaf_dir.join("128.meta.tmp.999999999.00ff"), b"x").unwrap();
        fs::write(leaf_dir.join("notes.txt"), b"x").unwrap();
        fs::write(dir.path().join(PLANET_FILE), b"").unwrap();
        let mut found: Vec<WalkItem> = disk.walk(None).map(|i| i.unwrap()).collect();
        found.sort_by_key(|i| format!("{i:?}"));
        let metatiles: Vec<_> = found
            .iter()
            .filter_map(|i| match i {
                WalkItem::Metatile { style, meta, .. } => Some((style.as_str().to_owned(), *meta)),
                _ => None,
            })
            .collect();
        assert_eq!(metatiles.len(), 4);
        assert!(metatiles.contains(&("other@2x".to_owned(), metas[1])));
        assert_eq!(
            found
                .iter()
                .filter(|i| matches!(i, WalkItem::TempFile(_)))
                .count(),
            1
        );
        assert_eq!(
            found
                .iter()
                .filter(|i| matches!(i, WalkItem::Foreign(_)))
                .count(),
            1
        );
        let only_other: Vec<_> = disk.walk(Some(&other)).collect();
        assert_eq!(only_other.len(), 1);

        assert_eq!(disk.clean_temp_files(false).unwrap(), 1);
        assert!(!leaf_dir.join("128.meta.tmp.999999999.00ff").exists());
        assert!(leaf_dir.join("notes.txt").exists());
    }

    #[test]
    fn cleaning_spares_the_temp_files_of_a_live_writer() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskCache::new(dir.path(), false);
        let m = MetatileCoord::try_new(3, 0, 0).unwrap();
        let path = disk.write_metatile(&style(), m, &tiles_for(m, 1)).unwrap();
        let leaf_dir = path.parent().unwrap();
        // pid 1 is always alive; our own pid is a previous life of this process.
        let live = leaf_dir.join("0.meta.tmp.1.abcdef");
        let mine = leaf_dir.join(format!("0.meta.tmp.{}.abcdef", std::process::id()));
        fs::write(&live, b"x").unwrap();
        fs::write(&mine, b"x").unwrap();
        assert_eq!(disk.clean_temp_files(false).unwrap(), 1);
        assert!(live.exists());
        assert!(!mine.exists());
        let old = filetime::FileTime::from_unix_time(1_000_000_000, 0);
        filetime::set_file_mtime(&live, old).unwrap();
        assert_eq!(disk.clean_temp_files(false).unwrap(), 1);
        assert!(!live.exists());
    }

    #[test]
    fn a_shared_directory_loses_only_old_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskCache::new(dir.path(), false);
        let m = MetatileCoord::try_new(3, 0, 0).unwrap();
        let path = disk.write_metatile(&style(), m, &tiles_for(m, 1)).unwrap();
        let leaf_dir = path.parent().unwrap();
        // Another host's writer: its pid means nothing here, whether it runs or not.
        let foreign = leaf_dir.join("0.meta.tmp.999999999.abcdef");
        let mine = leaf_dir.join(format!("0.meta.tmp.{}.abcdef", std::process::id()));
        fs::write(&foreign, b"x").unwrap();
        fs::write(&mine, b"x").unwrap();
        assert_eq!(disk.clean_temp_files(true).unwrap(), 0);
        let old = filetime::FileTime::from_unix_time(1_000_000_000, 0);
        filetime::set_file_mtime(&foreign, old).unwrap();
        assert_eq!(disk.clean_temp_files(true).unwrap(), 1);
        assert!(!foreign.exists() && mine.exists());
    }

    #[test]
    fn a_block_walk_finds_exactly_the_metatiles_inside_the_block() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskCache::new(dir.path(), false);
        let z: u8 = 9;
        let mut all = Vec::new();
        for mx in (0..64).step_by(3) {
            for my in (0..64).step_by(5) {
                let m = MetatileCoord::try_new(u32::from(z), mx * 8, my * 8).unwrap();
                disk.write_metatile(&style(), m, &tiles_for(m, 0)).unwrap();
                all.push(m);
            }
        }
        for block in [(0, 0, 64), (3, 5, 1), (4, 4, 1), (2, 30, 16), (60, 60, 4)] {
            let mut found = Vec::new();
            disk.for_each_existing_in(&style(), z, block, &mut |m| {
                found.push(m);
                Ok(())
            })
            .unwrap();
            found.sort();
            let (bx, by, side) = block;
            let mut expected: Vec<_> = all
                .iter()
                .copied()
                .filter(|m| {
                    (bx..bx + side).contains(&(m.x / 8)) && (by..by + side).contains(&(m.y / 8))
                })
                .collect();
            expected.sort();
            assert_eq!(found, expected, "block {block:?}");
        }
    }
}
