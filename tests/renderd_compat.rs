//! Metatiles written by renderd 0.6.1 (Debian bookworm, a Mapnik style with only a
//! background colour, `render_list -a -z 0 -Z 4`) are in `tests/fixtures/renderd/`.
//! We must read every tile of them through the one-blob path, and our writer must
//! produce the same bytes from the same tiles.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

use metatiled::cache::{format, DiskCache, WalkItem};
use std::path::Path;

#[test]
fn metatiles_written_by_renderd_are_read_and_rewritten_byte_for_byte() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/renderd");
    let disk = DiskCache::new(&dir, false);
    let (mut metatiles, mut tiles) = (0, 0);
    for item in disk.walk(None) {
        let (style, meta, path) = match item.unwrap() {
            WalkItem::Metatile { style, meta, path } => (style, meta, path),
            other => panic!("unexpected {other:?}"),
        };
        metatiles += 1;
        let bytes = std::fs::read(&path).unwrap();
        let whole = format::decode_metatile(&bytes, Some(meta)).unwrap();
        assert!(
            format::encode_metatile(meta, &whole.tiles).unwrap() == bytes,
            "{meta}: our writer lays the file out differently"
        );
        for t in meta.tiles() {
            let one = disk.read_tile(&style, t).unwrap().unwrap();
            assert!(one.bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{t}");
            assert_eq!(one.bytes, whole.tiles[t.index_in_metatile()]);
            tiles += 1;
        }
    }
    assert_eq!((metatiles, tiles), (5, 1 + 4 + 16 + 64 + 64));
}

/// With mod_tile's `render_expired` installed (Debian package `renderd`), it must find
/// the metatiles our writer put down and mark them exactly as our `expire` does.
#[test]
fn render_expired_finds_and_marks_the_metatiles_we_write() {
    use metatiled::cache::freshness;
    use metatiled::tile::{MetatileCoord, StyleName};
    use std::io::Write;
    use std::process::{Command, Stdio};

    let Ok(mut child) = Command::new("render_expired")
        .args([
            "-m",
            "default",
            "--touch-from",
            "0",
            "-z",
            "0",
            "-Z",
            "14",
            "-t",
        ])
        .arg(tempfile::tempdir().unwrap().path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        eprintln!("skipping: render_expired is not installed (apt-get install renderd)");
        return;
    };
    child.wait().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let disk = DiskCache::new(dir.path(), false);
    let style = StyleName::parse("default").unwrap();
    let m = |z: u32, x: u64, y: u64| MetatileCoord::try_new(z, x, y).unwrap();
    let all = [
        m(0, 0, 0),
        m(3, 0, 0),
        m(12, 2344, 1232),
        m(13, 4688, 2464),
        m(14, 9376, 4928),
        m(14, 9384, 4928),
    ];
    let rendered =
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_780_000_000);
    for meta in all {
        let tiles: Vec<Vec<u8>> = (0..64)
            .map(|i| {
                if format::entry_in_world(meta.z, i) {
                    vec![1; 10]
                } else {
                    vec![]
                }
            })
            .collect();
        let path = disk.write_metatile(&style, meta, &tiles).unwrap();
        filetime::set_file_mtime(&path, filetime::FileTime::from_system_time(rendered)).unwrap();
    }
    let mut child = Command::new("render_expired")
        .args([
            "-m",
            "default",
            "--touch-from",
            "0",
            "-z",
            "0",
            "-Z",
            "14",
            "-t",
        ])
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"14/9380/4930\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    // mod_tile walks z14 down to z3 (never z0-2): the metatiles holding 14/9380/4930.
    let touched = [
        m(3, 0, 0),
        m(12, 2344, 1232),
        m(13, 4688, 2464),
        m(14, 9376, 4928),
    ];
    let now = std::time::SystemTime::now();
    for meta in all {
        let mtime = disk.stamp(&style, meta).unwrap().unwrap().mtime;
        if touched.contains(&meta) {
            assert_eq!(mtime, rendered - freshness::DIRTY_REWIND, "{meta}");
            assert!(freshness::is_dirty(mtime, now), "{meta}");
        } else {
            assert_eq!(mtime, rendered, "{meta}");
        }
    }
}
