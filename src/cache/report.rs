//! Reports an operator asks of a cache (`metatiled cache inspect FILE` and
//! `metatiled cache stats [--style S]`): a metatile's header and index, and counts per
//! style and zoom. Written as text to the given writer; progress of long walks and
//! problems met on the way go to the caller's `note`.

use super::disk::{io_err, DiskCache, WalkItem};
use super::format::{MetatileHeader, HEADER_LEN};
use super::freshness;
use super::path::parse_path_tail;
use super::CacheError;
use crate::tile::{StyleName, TileCoord, MAX_ZOOM};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};
use thiserror::Error;

/// Seconds between two progress lines of a long walk.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Error)]
pub enum ReportError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("cannot write the output")]
    Output(#[from] std::io::Error),
}

/// A closed output (`| head`) ends the command quietly, as for any Unix tool.
fn quiet_broken_pipe(result: Result<(), ReportError>) -> Result<(), ReportError> {
    match result {
        Err(ReportError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Prints a `.meta` file's header and index; fails (after printing what it could) when
/// the file is not a valid metatile.
pub fn inspect(file: &Path, out: &mut dyn Write) -> Result<(), ReportError> {
    quiet_broken_pipe(inspect_to(file, out))
}

fn inspect_to(file: &Path, out: &mut dyn Write) -> Result<(), ReportError> {
    let mut f = std::fs::File::open(file).map_err(|e| io_err("open", file, e))?;
    let md = f.metadata().map_err(|e| io_err("stat", file, e))?;
    let mut head = Vec::with_capacity(HEADER_LEN);
    (&mut f)
        .take(HEADER_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|e| io_err("read", file, e))?;
    let now = SystemTime::now();
    writeln!(out, "file:      {}", file.display())?;
    writeln!(out, "size:      {} bytes", md.len())?;
    if let Ok(mtime) = md.modified() {
        let dirty = if freshness::is_dirty(mtime, now) {
            " (marked dirty)"
        } else {
            ""
        };
        writeln!(out, "modified:  {}{dirty}", fmt_time(mtime))?;
    }
    if let Ok(atime) = md.accessed() {
        writeln!(out, "accessed:  {}", fmt_time(atime))?;
    }
    let corrupt = |source| CacheError::Corrupt {
        path: file.to_path_buf(),
        source,
    };
    if md.len() < HEADER_LEN as u64 {
        return Err(corrupt(super::FormatError::ShortHeader { len: md.len() }).into());
    }
    let header = MetatileHeader::parse(&head).map_err(corrupt)?;
    writeln!(
        out,
        "magic:     {}",
        if header.compressed {
            "METZ (gzip'd tiles)"
        } else {
            "META"
        }
    )?;
    writeln!(out, "count:     64")?;
    writeln!(
        out,
        "metatile:  z={} x={} y={}",
        header.z, header.x, header.y
    )?;
    let from_path = parse_path_tail(file).ok();
    match (&from_path, header.metatile()) {
        (Some((style, meta)), _) => {
            let verdict = if header.check_coordinates(*meta).is_ok() {
                "matches the header"
            } else {
                "DOES NOT match the header"
            };
            writeln!(
                out,
                "path:      style {style}, metatile {}/{}/{}: {verdict}",
                meta.z, meta.x, meta.y
            )?;
        }
        (None, _) => writeln!(out, "path:      not in the cache layout; not compared")?,
    }
    let tiles = header.entries.iter().filter(|e| e.size > 0).count();
    let bytes: u64 = header.entries.iter().map(|e| u64::from(e.size)).sum();
    writeln!(
        out,
        "tiles:     {tiles} non-empty, {bytes} bytes of tile data"
    )?;
    writeln!(
        out,
        "layout:    {}",
        if header.is_contiguous(md.len()) {
            "contiguous (as renderd writes)"
        } else {
            "not contiguous"
        }
    )?;
    writeln!(
        out,
        "index:\n  entry  tile                      offset      size"
    )?;
    let meta = header.metatile();
    for (i, e) in header.entries.iter().enumerate() {
        let tile = meta
            .and_then(|m| {
                let (dx, dy) = ((i / 8) as u64, (i % 8) as u64);
                TileCoord::try_new(u32::from(m.z), u64::from(m.x) + dx, u64::from(m.y) + dy).ok()
            })
            .map_or_else(|| "-".to_string(), |t| t.to_string());
        writeln!(out, "  {i:>5}  {tile:<22} {:>9} {:>9}", e.offset, e.size)?;
    }
    if let Some((_, expected)) = from_path {
        header.check_coordinates(expected).map_err(corrupt)?;
    }
    header.check_entries(md.len()).map_err(corrupt)?;
    writeln!(out, "valid:     yes")?;
    Ok(())
}

#[derive(Debug, Default, Clone, Copy)]
struct ZoomStats {
    metatiles: u64,
    bytes: u64,
    stale: u64,
    dirty: u64,
}

impl ZoomStats {
    fn add(&mut self, other: &ZoomStats) {
        self.metatiles += other.metatiles;
        self.bytes += other.bytes;
        self.stale += other.stale;
        self.dirty += other.dirty;
    }
}

/// Counts metatiles, bytes, stale and dirty metatiles per style and zoom by walking the
/// cache (one `stat` per file; no file is opened).
/// With `quota` (the `[cache]` settings), also how full the disk quotas are.
pub fn stats(
    cache_dir: &Path,
    style: Option<&StyleName>,
    quota: Option<&super::CacheSettings>,
    out: &mut dyn Write,
    note: &mut dyn FnMut(&str),
) -> Result<(), ReportError> {
    quiet_broken_pipe(stats_to(cache_dir, style, quota, out, note))
}

fn stats_to(
    cache_dir: &Path,
    style: Option<&StyleName>,
    quota: Option<&super::CacheSettings>,
    out: &mut dyn Write,
    note: &mut dyn FnMut(&str),
) -> Result<(), ReportError> {
    let disk = DiskCache::new(cache_dir, false);
    if !cache_dir.is_dir() {
        writeln!(out, "cache {}: no such directory", cache_dir.display())?;
        return Ok(());
    }
    let now = SystemTime::now();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut per_style: BTreeMap<StyleName, [ZoomStats; MAX_ZOOM as usize + 1]> = BTreeMap::new();
    let mut planets: BTreeMap<StyleName, Option<SystemTime>> = BTreeMap::new();
    let (mut temp, mut foreign, mut errors, mut seen) = (0u64, 0u64, 0u64, 0u64);
    for item in disk.walk(style) {
        seen += 1;
        if last_progress.elapsed() >= PROGRESS_EVERY {
            note(&format!("{seen} files so far..."));
            last_progress = Instant::now();
        }
        let (style, meta, path) = match item {
            Ok(WalkItem::Metatile { style, meta, path }) => (style, meta, path),
            Ok(WalkItem::TempFile(_)) => {
                temp += 1;
                continue;
            }
            Ok(WalkItem::Foreign(_)) => {
                foreign += 1;
                continue;
            }
            Err(e) => {
                errors += 1;
                note(&crate::errors::error_chain(&e));
                continue;
            }
        };
        let md = match std::fs::symlink_metadata(&path).and_then(|m| Ok((m.len(), m.modified()?))) {
            Ok(md) => md,
            Err(e) => {
                errors += 1;
                note(&format!("cannot stat {}: {e}", path.display()));
                continue;
            }
        };
        let planet = *planets
            .entry(style.clone())
            .or_insert_with(|| freshness::read_planet_time(cache_dir, &style));
        let z = &mut per_style.entry(style).or_insert([ZoomStats::default(); 21])[meta.z as usize];
        z.metatiles += 1;
        z.bytes += md.0;
        z.dirty += u64::from(freshness::is_dirty(md.1, now));
        z.stale += u64::from(freshness::is_stale(md.1, planet, now));
    }
    writeln!(out, "cache {}", cache_dir.display())?;
    if per_style.is_empty() {
        writeln!(out, "no metatiles")?;
    }
    let mut all = ZoomStats::default();
    for (style, zooms) in &per_style {
        let planet = planets.get(style).copied().flatten();
        writeln!(
            out,
            "\nstyle {style} (planet-import-complete: {})",
            planet.map_or_else(|| "none".to_string(), fmt_time)
        )?;
        writeln!(
            out,
            "  zoom  metatiles          bytes       size    stale    dirty"
        )?;
        let mut total = ZoomStats::default();
        for (z, s) in zooms.iter().enumerate().filter(|(_, s)| s.metatiles > 0) {
            writeln!(out, "  {z:>4}  {}", row(s))?;
            total.add(s);
        }
        writeln!(out, "  {:>4}  {}", "all", row(&total))?;
        all.add(&total);
    }
    if per_style.len() > 1 {
        writeln!(out, "\nall styles  {}", row(&all))?;
    }
    if let Some(q) = quota.filter(|q| q.has_quota()) {
        let line = |name: &str, used: u64, max: u64| {
            format!(
                "disk quota {name}: {} of {} ({:.0}%; evicts above {:.0}% down to {:.0}%)",
                human_bytes(used),
                human_bytes(max),
                used as f64 * 100.0 / max as f64,
                q.high_watermark * 100.0,
                q.low_watermark * 100.0
            )
        };
        writeln!(out)?;
        if q.max_bytes > 0 && style.is_none() {
            writeln!(out, "{}", line("(cache.max_bytes)", all.bytes, q.max_bytes))?;
        }
        for (name, &max) in q.style_max_bytes.iter().filter(|(_, &b)| b > 0) {
            let used = per_style
                .iter()
                .find(|(s, _)| s.as_str() == name)
                .map_or(0, |(_, zooms)| zooms.iter().map(|z| z.bytes).sum());
            writeln!(out, "{}", line(&format!("of style {name}"), used, max))?;
        }
    }
    writeln!(
        out,
        "\n{temp} temp files, {foreign} other entries, {errors} errors ({:.1} s)",
        started.elapsed().as_secs_f64()
    )?;
    Ok(())
}

fn row(s: &ZoomStats) -> String {
    format!(
        "{:>9}  {:>13}  {:>9}  {:>7}  {:>7}",
        s.metatiles,
        s.bytes,
        human_bytes(s.bytes),
        s.stale,
        s.dirty
    )
}

/// `1536` -> `1.5 KiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A time as `YYYY-MM-DD hh:mm:ss UTC` (any time, before 1970 included).
pub fn fmt_time(t: SystemTime) -> String {
    let secs: i64 = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::format;
    use crate::tile::MetatileCoord;

    #[test]
    fn times_print_as_utc_dates_before_and_after_1970() {
        let at = |s: i64| {
            if s >= 0 {
                SystemTime::UNIX_EPOCH + Duration::from_secs(s as u64)
            } else {
                SystemTime::UNIX_EPOCH - Duration::from_secs((-s) as u64)
            }
        };
        assert_eq!(fmt_time(at(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(fmt_time(at(1_700_000_000)), "2023-11-14 22:13:20 UTC");
        assert_eq!(fmt_time(at(951_782_400)), "2000-02-29 00:00:00 UTC");
        assert_eq!(fmt_time(at(-1)), "1969-12-31 23:59:59 UTC");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10), "10 B");
    }

    #[test]
    fn inspect_prints_the_index_and_refuses_a_broken_file() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskCache::new(dir.path(), false);
        let style = StyleName::parse("osm").unwrap();
        let m = MetatileCoord::try_new(12, 2344, 1232).unwrap();
        let tiles: Vec<Vec<u8>> = (0..64).map(|_| vec![0u8; 103]).collect();
        let path = disk.write_metatile(&style, m, &tiles).unwrap();
        let mut out = Vec::new();
        inspect(&path, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("metatile:  z=12 x=2344 y=1232"), "{text}");
        assert!(text.contains("matches the header"), "{text}");
        assert!(text.contains("12/2345/1234"), "{text}");
        assert!(text.contains("1562"), "{text}");
        assert!(text.contains("valid:     yes"), "{text}");

        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let mut out = Vec::new();
        let err = inspect(&path, &mut out).unwrap_err();
        assert!(matches!(
            err,
            ReportError::Cache(CacheError::Corrupt {
                source: format::FormatError::Truncated { .. },
                ..
            })
        ));
        assert!(String::from_utf8(out).unwrap().contains("index:"));
    }

    #[test]
    fn stats_count_metatiles_per_zoom() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskCache::new(dir.path(), false);
        let style = StyleName::parse("osm").unwrap();
        for (z, x, y) in [(0, 0, 0), (5, 0, 0), (5, 8, 0), (5, 8, 8)] {
            let m = MetatileCoord::try_new(z, x, y).unwrap();
            let tiles: Vec<Vec<u8>> = (0..64)
                .map(|i| {
                    if format::entry_in_world(m.z, i) {
                        vec![1]
                    } else {
                        vec![]
                    }
                })
                .collect();
            disk.write_metatile(&style, m, &tiles).unwrap();
        }
        disk.mark_dirty(
            &style,
            MetatileCoord::try_new(5, 8, 8).unwrap(),
            SystemTime::now(),
        )
        .unwrap();
        let mut out = Vec::new();
        stats(dir.path(), None, None, &mut out, &mut |_| {}).unwrap();
        let text = String::from_utf8(out).unwrap();
        let line = |z: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(&format!("{z} ")))
                .unwrap_or_else(|| panic!("no line for {z}: {text}"))
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let z5 = line("5");
        assert_eq!(z5[1], "3", "{text}");
        assert_eq!(z5[2], (3 * (532 + 64)).to_string(), "{text}");
        assert_eq!(z5[5], "1", "stale: {text}");
        assert_eq!(z5[6], "1", "dirty: {text}");
        assert_eq!(line("0")[1], "1");
        assert_eq!(line("all")[1], "4");
    }
}
