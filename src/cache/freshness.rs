//! Freshness from timestamps alone, as mod_tile keeps it: a metatile's mtime is when
//! it was rendered, and there is no other metadata.
//!
//! - **Planet time**: the mtime of `<cache_dir>/<style>/planet-import-complete`, else of
//!   `<cache_dir>/planet-import-complete`. [`PlanetClock`] caches it per style and
//!   re-reads it at most every `cache.planet_check_secs`.
//! - **Dirty**: marking a metatile dirty (`render_expired --touch-from`, our `expire`)
//!   moves its mtime back [`DIRTY_REWIND`] (20 years), keeping its atime.
//!   A file is recognised as already dirty when its mtime is more than
//!   [`DIRTY_AGE`] (10 years) before now: a marked file is always at least 20 years old,
//!   and no tile is realistically served unchanged for 10 years (if one is, treating it
//!   as dirty only re-renders it). So marking is idempotent: a second mark changes
//!   nothing, where mod_tile's `> 2005` test rewinds a 2026 tile to 2006 and then 1986.
//! - **Stale** = dirty, or mtime earlier than the planet time. Without a planet file only
//!   dirty tiles are stale (mod_tile's "older than 3 days" fallback is not copied).

use super::slots::{StyleId, MAX_STYLES};
use crate::tile::StyleName;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Name of the file whose mtime is the planet time (per style directory or global).
pub const PLANET_FILE: &str = "planet-import-complete";
/// How far marking dirty moves the mtime back: 20 years of 365.25 days (7305 days), what
/// render_expired 0.6.1 was seen to do (2026-11-21 became 2006-11-21).
pub const DIRTY_REWIND: Duration = Duration::from_secs(7305 * 24 * 3600);
/// A file whose mtime is more than this before now counts as dirty-marked. Half the
/// rewind: 10 years of margin on either side (see the module docs).
pub const DIRTY_AGE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Whether a file with this mtime has been marked dirty (see the module docs).
pub fn is_dirty(mtime: SystemTime, now: SystemTime) -> bool {
    now.duration_since(mtime).is_ok_and(|age| age > DIRTY_AGE)
}

/// Whether a metatile with this mtime must be re-rendered (it is still served).
pub fn is_stale(mtime: SystemTime, planet: Option<SystemTime>, now: SystemTime) -> bool {
    is_dirty(mtime, now) || planet.is_some_and(|p| mtime < p)
}

/// The mtime a dirty mark gives a file rendered at `mtime`.
pub fn dirty_mtime(mtime: SystemTime) -> SystemTime {
    mtime
        .checked_sub(DIRTY_REWIND)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Path of the planet file of one style, or the global one.
pub fn planet_file(root: &Path, style: Option<&StyleName>) -> PathBuf {
    match style {
        Some(style) => root.join(style.as_str()).join(PLANET_FILE),
        None => root.join(PLANET_FILE),
    }
}

/// Reads the planet time of a style now: its own file, else the global one.
pub fn read_planet_time(root: &Path, style: &StyleName) -> Option<SystemTime> {
    let mtime = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    mtime(planet_file(root, Some(style))).or_else(|| mtime(planet_file(root, None)))
}

/// Per-style planet times, re-read from disk at most every `interval`. Read on every
/// tile hit, so a style with a slot id (from the cache's `StyleSlots`) costs two atomic
/// loads: no lock, no hashing.
#[derive(Debug)]
pub(crate) struct PlanetClock {
    root: PathBuf,
    interval_ms: u64,
    started: Instant,
    /// Indexed by [`StyleId`].
    known: Box<[KnownPlanet]>,
}

/// The cached planet time of one style slot.
#[derive(Debug, Default)]
struct KnownPlanet {
    /// Milliseconds since the clock started when the file was read, plus one; 0 = never.
    checked: AtomicU64,
    /// Nanoseconds since the epoch, or [`NO_PLANET`].
    time: AtomicU64,
}

const NO_PLANET: u64 = u64::MAX;

impl PlanetClock {
    pub(crate) fn new(root: PathBuf, interval: Duration) -> Self {
        Self {
            root,
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            started: Instant::now(),
            known: (0..MAX_STYLES).map(|_| KnownPlanet::default()).collect(),
        }
    }

    /// The planet time of `style`, at most `interval` old; `id` is its slot, without
    /// which the file is read every time.
    pub(crate) fn planet_time(&self, style: &StyleName, id: Option<StyleId>) -> Option<SystemTime> {
        let Some(known) = id.map(|id| &self.known[id.index()]) else {
            return read_planet_time(&self.root, style);
        };
        let now_ms = u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let checked = known.checked.load(Ordering::Acquire);
        if checked != 0 && now_ms.saturating_sub(checked) < self.interval_ms {
            return decode_time(known.time.load(Ordering::Relaxed));
        }
        let time = read_planet_time(&self.root, style);
        known.time.store(encode_time(time), Ordering::Relaxed);
        known.checked.store(now_ms, Ordering::Release);
        time
    }

    /// Forgets every cached planet time, so the next lookup reads the files.
    pub(crate) fn forget(&self) {
        for known in self.known.iter() {
            known.checked.store(0, Ordering::Release);
        }
    }
}

/// Nanoseconds since the epoch (times before it count as the epoch; u64 lasts to 2554).
fn encode_time(time: Option<SystemTime>) -> u64 {
    time.map_or(NO_PLANET, |t| {
        let nanos = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        u64::try_from(nanos).unwrap_or(NO_PLANET - 1)
    })
}

fn decode_time(encoded: u64) -> Option<SystemTime> {
    (encoded != NO_PLANET).then(|| SystemTime::UNIX_EPOCH + Duration::from_nanos(encoded))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::slots::StyleSlots;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn a_dirty_mark_is_recognised_and_a_recent_tile_is_not_dirty() {
        let now = SystemTime::now();
        let rendered = now - 3 * DAY;
        assert!(!is_dirty(rendered, now));
        assert!(is_dirty(dirty_mtime(rendered), now));
        assert!(is_dirty(dirty_mtime(dirty_mtime(rendered)), now));
        assert!(!is_dirty(now + DAY, now), "a future mtime is not dirty");
    }

    #[test]
    fn without_a_planet_file_only_dirty_tiles_are_stale() {
        let now = SystemTime::now();
        let old = now - 400 * DAY;
        assert!(!is_stale(old, None, now));
        assert!(is_stale(dirty_mtime(now), None, now));
        assert!(is_stale(old, Some(now - DAY), now));
        assert!(!is_stale(now - DAY, Some(old), now));
        assert!(is_stale(dirty_mtime(now), Some(now - 30 * 365 * DAY), now));
    }

    #[test]
    fn planet_times_keep_their_nanoseconds_in_the_clock() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(decode_time(encode_time(Some(t))), Some(t));
        assert_eq!(decode_time(encode_time(None)), None);
        let before_epoch = SystemTime::UNIX_EPOCH - DAY;
        assert_eq!(
            decode_time(encode_time(Some(before_epoch))),
            Some(SystemTime::UNIX_EPOCH)
        );
    }

    #[test]
    fn the_style_planet_file_wins_over_the_global_one_and_is_cached() {
        let dir = tempfile::tempdir().unwrap();
        let style = StyleName::parse("osm").unwrap();
        assert_eq!(read_planet_time(dir.path(), &style), None);
        let t_global = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        let t_style = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        std::fs::write(planet_file(dir.path(), None), b"").unwrap();
        filetime::set_file_mtime(
            planet_file(dir.path(), None),
            filetime::FileTime::from_system_time(t_global),
        )
        .unwrap();
        let clock = PlanetClock::new(dir.path().to_path_buf(), Duration::from_secs(3600));
        let id = StyleSlots::new().id(&style);
        assert_eq!(clock.planet_time(&style, id), Some(t_global));
        std::fs::create_dir_all(dir.path().join("osm")).unwrap();
        std::fs::write(planet_file(dir.path(), Some(&style)), b"").unwrap();
        filetime::set_file_mtime(
            planet_file(dir.path(), Some(&style)),
            filetime::FileTime::from_system_time(t_style),
        )
        .unwrap();
        assert_eq!(clock.planet_time(&style, id), Some(t_global), "cached");
        clock.forget();
        assert_eq!(clock.planet_time(&style, id), Some(t_style));
    }
}
