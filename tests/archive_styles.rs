//! Styles served from an MBTiles or PMTiles file: the archive's bytes on the usual tile
//! routes, with the usual headers, ETags and 304s, through the memory cache, and the
//! new file once one is renamed over the old.
#![allow(clippy::unwrap_used)] // tests and benchmarks fail loudly on what they set up

mod common;
mod support;

use metatiled::archive::{tile_id, ArchiveFormat, ArchiveMetadata, ArchiveWriter};
use metatiled::render::{encode_png, PngMode};
use metatiled::tile::TileCoord;
use std::collections::BTreeMap;
use std::path::Path;

/// A PNG of one colour per tile, so every tile's bytes differ.
fn tile_png(t: TileCoord, shade: u8) -> Vec<u8> {
    let px = u32::from_le_bytes([t.z * 60, (t.x * 50) as u8, (t.y * 40) as u8 ^ shade, 255]);
    encode_png(&vec![px; 256 * 256], 256, 256, PngMode::Rgba).unwrap()
}

/// Writes every tile of zooms 0-2 into an archive; returns the tiles' bytes.
fn write_archive(path: &Path, format: ArchiveFormat, shade: u8) -> BTreeMap<TileCoord, Vec<u8>> {
    let mut tiles = BTreeMap::new();
    for z in 0..=2u8 {
        for x in 0..1u32 << z {
            for y in 0..1u32 << z {
                let t = TileCoord { z, x, y };
                tiles.insert(t, tile_png(t, shade));
            }
        }
    }
    let metadata = ArchiveMetadata {
        name: "test".into(),
        maxzoom: 2,
        ..ArchiveMetadata::default()
    };
    let mut writer = ArchiveWriter::create(path, format, &metadata).unwrap();
    let mut ordered: Vec<_> = tiles.iter().collect();
    ordered.sort_by_key(|(t, _)| tile_id(**t));
    for (t, bytes) in ordered {
        writer.add(*t, bytes).unwrap();
    }
    writer.finish(&metadata).unwrap();
    tiles
}

fn etag_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("\"{}\"", hex::encode(&sha2::Sha256::digest(bytes)[..8]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_styles_serve_the_archives_bytes_with_the_usual_headers() {
    let styles = tempfile::tempdir().unwrap();
    let archives = tempfile::tempdir().unwrap();
    let mut expected = BTreeMap::new();
    for (name, format) in [
        ("mb", ArchiveFormat::Mbtiles),
        ("pm", ArchiveFormat::Pmtiles),
    ] {
        let file = archives.path().join(format!("tiles.{format}"));
        expected.insert(name, write_archive(&file, format, 0));
        std::fs::write(
            styles.path().join(format!("{name}.toml")),
            format!(
                "name = \"{name}\"\nattribution = \"test\"\nmaxzoom = 5\nmax_age_secs = 600\narchive = \"{}\"\n",
                file.display()
            ),
        )
        .unwrap();
    }
    let dir = styles.path().to_path_buf();
    let Some(app) = support::spawn_app_with(|s| {
        s.styles.dir = dir.clone();
        s.cache.revalidate_secs = 0;
    })
    .await
    else {
        return;
    };

    for (name, tiles) in &expected {
        let format = if *name == "mb" { "mbtiles" } else { "pmtiles" };
        let mtime = std::fs::metadata(archives.path().join(format!("tiles.{format}")))
            .unwrap()
            .modified()
            .unwrap();
        for (t, bytes) in tiles {
            let res = app
                .get(&format!("/{name}/{}/{}/{}.png", t.z, t.x, t.y))
                .await;
            assert_eq!(res.status(), 200, "{name} {t}");
            let h = res.headers().clone();
            assert_eq!(h["content-type"], "image/png");
            assert_eq!(
                h["cache-control"],
                "public, max-age=600, stale-while-revalidate=604800"
            );
            assert_eq!(h["etag"].to_str().unwrap(), etag_of(bytes));
            assert_eq!(
                h["last-modified"].to_str().unwrap(),
                httpdate::fmt_http_date(mtime)
            );
            assert_eq!(h["access-control-allow-origin"], "*");
            assert_eq!(&res.bytes().await.unwrap()[..], &bytes[..], "{name} {t}");
        }
        // Again: from memory, and conditional requests get 304.
        let t = TileCoord { z: 2, x: 3, y: 1 };
        let path = format!("/{name}/2/3/1.png");
        let before = app
            .metric(&format!(
                "metatiled_tile_lookups_total{{result=\"memory\",style=\"{name}\"}}"
            ))
            .await;
        let res = app
            .client
            .get(app.url(&path))
            .header("If-None-Match", etag_of(&tiles[&t]))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 304);
        assert!(res.bytes().await.unwrap().is_empty());
        let res = app
            .client
            .get(app.url(&path))
            .header("If-Modified-Since", httpdate::fmt_http_date(mtime))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 304);
        let after = app
            .metric(&format!(
                "metatiled_tile_lookups_total{{result=\"memory\",style=\"{name}\"}}"
            ))
            .await;
        assert_eq!(after - before, 2.0, "both answered from the memory cache");
        // A tile the archive lacks, inside the style's zooms; a zoom outside them.
        assert_eq!(app.get(&format!("/{name}/3/0/0.png")).await.status(), 404);
        assert_eq!(app.get(&format!("/{name}/6/0/0.png")).await.status(), 404);
        let tilejson: serde_json::Value = app
            .get(&format!("/{name}/tile.json"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(tilejson["attribution"], "test");
    }

    // A new file renamed over the old one is served (revalidated at once here), and
    // its tiles replace the old ones in memory.
    let file = archives.path().join("tiles.pmtiles");
    let staged = archives.path().join("new.pmtiles");
    let new_tiles = write_archive(&staged, ArchiveFormat::Pmtiles, 0xff);
    std::fs::rename(&staged, &file).unwrap();
    let t = TileCoord { z: 2, x: 3, y: 1 };
    let res = app.get("/pm/2/3/1.png").await;
    assert_eq!(res.status(), 200);
    assert_eq!(&res.bytes().await.unwrap()[..], &new_tiles[&t][..]);
    assert_ne!(new_tiles[&t], expected["pm"][&t]);
    app.stop().await;
}
