//! Outside tools the archive and UTFGrid tests drive for real: Debian's `sqlite3`,
//! GDAL and chromium, PyPI's `pmtiles` reader (in a venv under `.data/`) and npm's
//! Leaflet UTFGrid plugin (packed under `.data/`). Each returns `None` outside CI when
//! the tool cannot be had (the test then says it skips); under `CI=true` that panics.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The version of PyPI's `pmtiles` the tests read archives with.
pub const PMTILES_PY: &str = "pmtiles==3.8.1";
/// The npm UTFGrid plugin for Leaflet 1.x and the XHR helper it needs.
pub const NPM_PACKAGES: [&str; 2] = ["leaflet-utfgrid@0.3.0", "corslite@0.0.7"];

fn data_dir() -> PathBuf {
    crate::common::repo_root().join(".data")
}

fn missing(what: &str) -> Option<PathBuf> {
    assert!(
        !crate::common::is_ci(),
        "{what} is missing; scripts/test installs it"
    );
    eprintln!("skipping: {what} is missing");
    None
}

/// A program on the PATH (or at an absolute path).
pub fn program(name: &str) -> Option<PathBuf> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    found.or_else(|| missing(name))
}

/// A Python with PyPI's `pmtiles`, made once in `.data/pyenv-pmtiles`.
pub fn pmtiles_python() -> Option<PathBuf> {
    let venv = data_dir().join("pyenv-pmtiles");
    let python = venv.join("bin/python");
    let works = |p: &Path| {
        Command::new(p)
            .args(["-c", "import pmtiles.reader"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !works(&python) {
        let made = Command::new("/usr/bin/python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q", PMTILES_PY])
                .status()
                .is_ok_and(|s| s.success());
        if !made || !works(&python) {
            return missing("a Python venv with PyPI's pmtiles");
        }
    }
    Some(python)
}

/// The unpacked npm packages (`<dir>/<name>/...`), packed once into `.data/npm`.
pub fn npm_packages() -> Option<PathBuf> {
    let dir = data_dir().join("npm");
    let plugin = dir.join("leaflet-utfgrid/L.UTFGrid.js");
    let corslite = dir.join("corslite/corslite.js");
    if !(plugin.exists() && corslite.exists()) {
        std::fs::create_dir_all(&dir).ok()?;
        for spec in NPM_PACKAGES {
            let name = spec.split('@').next().unwrap_or(spec);
            let packed = Command::new("npm")
                .args(["pack", "--silent", spec])
                .current_dir(&dir)
                .output();
            let Some(out) = packed.ok().filter(|o| o.status.success()) else {
                return missing(&format!("npm package {spec}"));
            };
            let tgz = dir.join(String::from_utf8_lossy(&out.stdout).trim());
            let target = dir.join(name);
            let _ = std::fs::remove_dir_all(&target);
            std::fs::create_dir_all(&target).ok()?;
            let unpacked = Command::new("tar")
                .args(["xzf"])
                .arg(&tgz)
                .args(["--strip-components=1", "-C"])
                .arg(&target)
                .status()
                .is_ok_and(|s| s.success());
            if !unpacked {
                return missing(&format!("npm package {spec} (unpacking)"));
            }
        }
    }
    (plugin.exists() && corslite.exists())
        .then_some(dir)
        .or_else(|| missing("the npm UTFGrid plugin files"))
}

/// Runs a program, panicking with its stderr when it fails; its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The XYZ tile ranges of a lon/lat box at a zoom (standard slippy-map formulas).
pub fn tile_range(bbox: [f64; 4], z: u8) -> (u32, u32, u32, u32) {
    let n = f64::from(1u32 << z);
    let x = |lon: f64| (((lon + 180.0) / 360.0 * n).floor() as u32).min((1 << z) - 1);
    let y = |lat: f64| {
        let r = lat.to_radians();
        let v = (1.0 - (r.tan() + 1.0 / r.cos()).ln() / std::f64::consts::PI) / 2.0 * n;
        (v.floor() as u32).min((1 << z) - 1)
    };
    (x(bbox[0]), y(bbox[3]), x(bbox[2]), y(bbox[1]))
}

/// Tiles of a lon/lat box over a zoom range.
pub fn tile_count(bbox: [f64; 4], zooms: std::ops::RangeInclusive<u8>) -> u64 {
    zooms
        .map(|z| {
            let (x0, y0, x1, y1) = tile_range(bbox, z);
            u64::from(x1 - x0 + 1) * u64::from(y1 - y0 + 1)
        })
        .sum()
}
