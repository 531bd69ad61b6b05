//! mod_tile's hashed path scheme, both ways:
//! `<cache_dir>/<style>/<z>/<h4>/<h3>/<h2>/<h1>/<h0>.meta`.
//!
//! With x and y the metatile origin, `h[i] = ((x & 0xF) << 4) | (y & 0xF)` and then both
//! shift right by 4, for i = 0..4. Numbers are plain decimal. Only a validated
//! [`StyleName`] and numbers ever reach a path, so no path can leave the cache directory.
//! The reverse mapping accepts only the canonical spelling (no leading zeros, h <= 255,
//! an origin that is a multiple of 8), so one file is one metatile.

use crate::tile::{MetatileCoord, StyleName, MAX_ZOOM};
use std::path::{Component, Path, PathBuf};
use thiserror::Error;

/// Extension of a metatile file.
pub const META_EXT: &str = "meta";
/// Hash levels in a path (directories h4..h1 plus the file name h0).
pub const HASH_LEVELS: usize = 5;

/// Why a path is not a metatile path of the cache.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PathError {
    #[error("{0}: expected <style>/<z>/<h4>/<h3>/<h2>/<h1>/<h0>.meta")]
    Shape(PathBuf),
    #[error("{path}: bad style directory: {reason}")]
    Style { path: PathBuf, reason: String },
    #[error("{path}: {component:?} is not a canonical number in 0..={max}")]
    Number {
        path: PathBuf,
        component: String,
        max: u32,
    },
    #[error("{path}: names no metatile: {reason}")]
    NotAMetatile { path: PathBuf, reason: String },
}

/// The five hash numbers `[h0, h1, h2, h3, h4]` of a metatile.
pub fn hash_components(meta: MetatileCoord) -> [u8; HASH_LEVELS] {
    let (mut x, mut y) = (meta.x, meta.y);
    let mut h = [0u8; HASH_LEVELS];
    for slot in &mut h {
        *slot = (((x & 0xF) << 4) | (y & 0xF)) as u8;
        x >>= 4;
        y >>= 4;
    }
    h
}

/// `<style>/<z>/<h4>/<h3>/<h2>/<h1>/<h0>.meta`, relative to the cache directory.
pub fn relative_path(style: &StyleName, meta: MetatileCoord) -> PathBuf {
    let h = hash_components(meta);
    let mut p = PathBuf::with_capacity(style.as_str().len() + 32);
    p.push(style.as_str());
    p.push(meta.z.to_string());
    for level in (1..HASH_LEVELS).rev() {
        p.push(h[level].to_string());
    }
    p.push(format!("{}.{META_EXT}", h[0]));
    p
}

/// The path of a metatile under `root`.
pub fn metatile_path(root: &Path, style: &StyleName, meta: MetatileCoord) -> PathBuf {
    root.join(relative_path(style, meta))
}

/// A decimal number as mod_tile prints it: digits only, no leading zero, at most `max`.
pub(crate) fn canonical_number(s: &str, max: u32) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse::<u32>().ok().filter(|v| *v <= max)
}

/// Rebuilds the metatile origin from its zoom and hash numbers `[h0, .., h4]`.
pub fn metatile_from_hashes(z: u8, h: [u8; HASH_LEVELS]) -> Result<MetatileCoord, String> {
    let (mut x, mut y) = (0u64, 0u64);
    for (level, v) in h.iter().enumerate() {
        x |= u64::from(v >> 4) << (4 * level);
        y |= u64::from(v & 0xF) << (4 * level);
    }
    MetatileCoord::try_new(u32::from(z), x, y).map_err(|e| e.to_string())
}

/// Parses `<style>/<z>/<h4>/<h3>/<h2>/<h1>/<h0>.meta` (relative to the cache directory).
pub fn parse_relative_path(rel: &Path) -> Result<(StyleName, MetatileCoord), PathError> {
    let shape = || PathError::Shape(rel.to_path_buf());
    let mut parts = Vec::with_capacity(7);
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().ok_or_else(shape)?),
            _ => return Err(shape()),
        }
    }
    let [style, z, h4, h3, h2, h1, file] = parts[..] else {
        return Err(shape());
    };
    let style = StyleName::parse(style).map_err(|e| PathError::Style {
        path: rel.to_path_buf(),
        reason: e.to_string(),
    })?;
    let h0 = file
        .strip_suffix(".meta")
        .filter(|stem| !stem.is_empty())
        .ok_or_else(shape)?;
    let number = |s: &str, max: u32| {
        canonical_number(s, max).ok_or_else(|| PathError::Number {
            path: rel.to_path_buf(),
            component: s.to_string(),
            max,
        })
    };
    let z = number(z, u32::from(MAX_ZOOM))? as u8;
    let mut h = [0u8; HASH_LEVELS];
    for (level, s) in [h0, h1, h2, h3, h4].into_iter().enumerate() {
        h[level] = number(s, 255)? as u8;
    }
    let meta = metatile_from_hashes(z, h).map_err(|reason| PathError::NotAMetatile {
        path: rel.to_path_buf(),
        reason,
    })?;
    Ok((style, meta))
}

/// Parses a path under `root` (as found when walking the cache).
pub fn parse_path(root: &Path, path: &Path) -> Result<(StyleName, MetatileCoord), PathError> {
    let rel = path
        .strip_prefix(root)
        .map_err(|_| PathError::Shape(path.to_path_buf()))?;
    parse_relative_path(rel)
}

/// Finds where a `.meta` path sits in a cache laid out by mod_tile: the last seven
/// components are `<style>/<z>/<h4>/<h3>/<h2>/<h1>/<h0>.meta`. For `cache inspect`,
/// which is given a file and no cache directory.
pub fn parse_path_tail(path: &Path) -> Result<(StyleName, MetatileCoord), PathError> {
    let comps: Vec<&std::ffi::OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s),
            _ => None,
        })
        .collect();
    if comps.len() < 7 {
        return Err(PathError::Shape(path.to_path_buf()));
    }
    let rel: PathBuf = comps[comps.len() - 7..].iter().collect();
    parse_relative_path(&rel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tile::{tiles_per_axis, TileCoord};
    use proptest::prelude::*;

    fn style() -> StyleName {
        StyleName::parse("osm").unwrap()
    }

    #[test]
    fn the_worked_examples_of_metatile_md_give_the_same_paths_and_entries() {
        let cases = [
            ((0, 0, 0), "osm/0/0/0/0/0/0.meta", 0),
            ((1, 1, 1), "osm/1/0/0/0/0/0.meta", 9),
            ((12, 2345, 1234), "osm/12/0/0/148/45/128.meta", 10),
            ((18, 131071, 87381), "osm/18/17/245/245/245/128.meta", 61),
        ];
        for ((z, x, y), path, entry) in cases {
            let tile = TileCoord::try_new(z, x, y).unwrap();
            assert_eq!(
                relative_path(&style(), tile.metatile()),
                PathBuf::from(path),
                "{tile}"
            );
            assert_eq!(tile.index_in_metatile(), entry, "{tile}");
            assert_eq!(
                parse_relative_path(Path::new(path)).unwrap(),
                (style(), tile.metatile())
            );
        }
    }

    #[test]
    fn the_leaf_hash_is_one_of_four_values() {
        for x in (0..64).step_by(8) {
            for y in (0..64).step_by(8) {
                let m = MetatileCoord::try_new(6, x, y).unwrap();
                assert!([0, 8, 128, 136].contains(&hash_components(m)[0]));
            }
        }
    }

    #[test]
    fn paths_that_name_no_metatile_are_refused() {
        for bad in [
            "osm/12/0/0/148/45/128.met",
            "osm/12/0/0/148/45.meta",
            "osm/12/0/0/148/45/128/0.meta",
            "osm/12/0/0/148/045/128.meta",
            "osm/12/0/0/148/256/128.meta",
            "osm/12/0/0/148/45/+128.meta",
            "osm/21/0/0/0/0/0.meta",
            "osm/12/0/0/148/45/129.meta",
            "osm/3/0/0/0/1/0.meta",
            "../12/0/0/148/45/128.meta",
            "/osm/12/0/0/148/45/128.meta",
            "o s/12/0/0/148/45/128.meta",
            "osm/12/0/0/148/45/.meta",
        ] {
            assert!(
                parse_relative_path(Path::new(bad)).is_err(),
                "{bad} was accepted"
            );
        }
    }

    #[test]
    fn a_file_path_anywhere_is_read_from_its_last_seven_components() {
        let p = Path::new("/var/cache/renderd/tiles/osm/12/0/0/148/45/128.meta");
        let (s, m) = parse_path_tail(p).unwrap();
        assert_eq!((s.as_str(), m.z, m.x, m.y), ("osm", 12, 2344, 1232));
        let root = Path::new("/var/cache/renderd/tiles");
        assert_eq!(parse_path(root, p).unwrap(), (s, m));
        assert!(parse_path_tail(Path::new("a/0.meta")).is_err());
    }

    proptest! {
        #[test]
        fn path_and_metatile_round_trip_at_every_zoom(z in 0u8..=20, x in any::<u32>(), y in any::<u32>()) {
            let size = tiles_per_axis(z);
            let m = TileCoord::try_new(u32::from(z), u64::from(x % size), u64::from(y % size)).unwrap().metatile();
            let rel = relative_path(&style(), m);
            prop_assert_eq!(parse_relative_path(&rel).unwrap(), (style(), m));
        }

        #[test]
        fn distinct_metatiles_get_distinct_paths(z in 0u8..=20, a in any::<(u32, u32)>(), b in any::<(u32, u32)>()) {
            let size = tiles_per_axis(z);
            let ma = TileCoord::try_new(u32::from(z), u64::from(a.0 % size), u64::from(a.1 % size)).unwrap().metatile();
            let mb = TileCoord::try_new(u32::from(z), u64::from(b.0 % size), u64::from(b.1 % size)).unwrap().metatile();
            prop_assert_eq!(ma == mb, relative_path(&style(), ma) == relative_path(&style(), mb));
        }
    }
}
