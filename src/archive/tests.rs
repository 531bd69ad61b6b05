use super::*;

fn tile(z: u8, x: u32, y: u32) -> TileCoord {
    TileCoord { z, x, y }
}

fn metadata() -> ArchiveMetadata {
    ArchiveMetadata {
        name: "t".into(),
        description: "test".into(),
        attribution: "© test".into(),
        bounds: Some([24.9, 60.1, 25.0, 60.2]),
        center: Some([24.95, 60.15, 14.0]),
        minzoom: 0,
        maxzoom: 2,
    }
}

/// Every tile of zooms 0-2 in tile-id order; all but two share the same bytes.
fn tiles() -> Vec<(TileCoord, Vec<u8>)> {
    let mut all = Vec::new();
    for z in 0..=2u8 {
        for x in 0..1u32 << z {
            for y in 0..1u32 << z {
                let bytes = match (z, x, y) {
                    (1, 1, 0) => b"one-one-zero".to_vec(),
                    (2, 3, 1) => b"two-three-one".to_vec(),
                    _ => b"sea".to_vec(),
                };
                all.push((tile(z, x, y), bytes));
            }
        }
    }
    all.sort_by_key(|(t, _)| tile_id(*t));
    all
}

#[tokio::test]
async fn both_formats_round_trip_every_tile_and_store_repeats_once() {
    for format in ArchiveFormat::ALL {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("out.{format}"));
        let mut writer = ArchiveWriter::create(&path, format, &metadata()).unwrap();
        let temp = writer.temp_path().to_path_buf();
        for (t, bytes) in tiles() {
            writer.add(t, &bytes).unwrap();
        }
        assert!(
            !path.exists(),
            "{format}: nothing at the destination before finish"
        );
        assert!(temp.exists());
        let stats = writer.finish(&metadata()).unwrap();
        assert!(!temp.exists() && path.exists());
        assert_eq!((stats.tiles, stats.unique_tiles), (21, 3), "{format}");
        assert_eq!(ArchiveFormat::from_path(&path), Some(format));

        let reader = ArchiveReader::open(&path, format).await.unwrap();
        assert_eq!(reader.count_tiles().await.unwrap(), 21, "{format}");
        for (t, bytes) in tiles() {
            let got = reader.get(t).await.unwrap();
            assert_eq!(got.as_deref(), Some(&bytes[..]), "{format} {t}");
        }
        assert_eq!(reader.get(tile(3, 0, 0)).await.unwrap(), None);
        let m = reader.metadata();
        assert_eq!((m.minzoom, m.maxzoom, m.name.as_str()), (0, 2, "t"));
        assert_eq!(m.attribution, "© test");
        let b = m.bounds.unwrap();
        assert!(
            (b[0] - 24.9).abs() < 1e-6 && (b[3] - 60.2).abs() < 1e-6,
            "{b:?}"
        );
    }
}

#[test]
fn an_unfinished_archive_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    for format in ArchiveFormat::ALL {
        let path = dir.path().join(format!("out.{format}"));
        let mut writer = ArchiveWriter::create(&path, format, &metadata()).unwrap();
        writer.add(tile(0, 0, 0), b"x").unwrap();
        drop(writer);
        assert!(!path.exists());
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn mbtiles_rows_count_from_the_south() {
    assert_eq!(tms_row(tile(0, 0, 0)), 0);
    assert_eq!(tms_row(tile(3, 1, 0)), 7);
    assert_eq!(tms_row(tile(3, 1, 7)), 0);
}

#[test]
fn formats_parse_from_names_and_extensions() {
    assert_eq!(
        "pmtiles".parse::<ArchiveFormat>(),
        Ok(ArchiveFormat::Pmtiles)
    );
    assert!("zip".parse::<ArchiveFormat>().is_err());
    assert_eq!(
        ArchiveFormat::from_path(Path::new("a/b.MBTiles")),
        Some(ArchiveFormat::Mbtiles)
    );
    assert_eq!(ArchiveFormat::from_path(Path::new("a/b.png")), None);
}
