use super::send::key_chunks;
use super::*;

fn meta(x: u32, y: u32) -> MetatileCoord {
    MetatileCoord { z: 15, x, y }
}

fn osm() -> StyleName {
    StyleName::parse("osm").unwrap()
}

fn target(name: &str) -> TargetSettings {
    TargetSettings {
        name: Some(name.into()),
        kind: TargetKind::Webhook,
        // Nothing listens on port 9 of loopback; nothing is sent in these tests.
        url: "http://127.0.0.1:9/".into(),
        method: None,
        header: None,
        headers: Default::default(),
        with_urls: false,
        concurrency: 1,
    }
}

fn purger(queue: usize) -> (Purger, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let settings = PurgeSettings {
        targets: vec![target("a")],
        queue,
        ..PurgeSettings::default()
    };
    (Purger::new(&settings, None, &registry).unwrap(), registry)
}

fn value(registry: &prometheus::Registry, name: &str, outcome: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().to_vec())
        .find(|m| m.get_label().iter().any(|l| l.value() == outcome))
        .map_or(0.0, |m| {
            m.get_counter().get_value() + m.get_gauge().get_value()
        })
}

#[test]
fn a_change_already_waiting_is_queued_once() {
    let (p, registry) = purger(10);
    p.changed(Change::Metatile(osm(), meta(8, 8)));
    p.changed(Change::Metatile(osm(), meta(8, 8)));
    p.changed(Change::Metatile(osm(), meta(16, 8)));
    assert_eq!(
        value(&registry, "metatiled_purge_changes_total", "queued"),
        2.0
    );
    assert_eq!(
        value(&registry, "metatiled_purge_changes_total", "deduplicated"),
        1.0
    );
    let batch = p.lanes[0].take(100);
    assert_eq!(
        batch,
        vec![
            Change::Metatile(osm(), meta(8, 8)),
            Change::Metatile(osm(), meta(16, 8))
        ]
    );
    // Once sent, the same change is queued again.
    p.changed(Change::Metatile(osm(), meta(8, 8)));
    assert_eq!(p.lanes[0].take(100).len(), 1);
}

#[test]
fn a_full_queue_drops_and_counts() {
    let (p, registry) = purger(2);
    for x in 0..5 {
        p.changed(Change::Metatile(osm(), meta(x * 8, 0)));
    }
    assert_eq!(
        value(&registry, "metatiled_purge_changes_total", "dropped"),
        3.0
    );
    assert_eq!(value(&registry, "metatiled_purge_queued", "a"), 2.0);
}

#[test]
fn keys_name_the_metatile_and_the_style() {
    let h = KeyHeader::new("xkey").unwrap();
    assert_eq!(h.value("osm", meta(18648, 9480)), "osm/15/18648/9480 osm");
    let cf = KeyHeader::new("Cache-Tag").unwrap();
    assert_eq!(cf.value("osm@2x", meta(8, 0)), "osm@2x/15/8/0,osm@2x");
    assert!(KeyHeader::new("").is_none());
    assert_eq!(Change::Metatile(osm(), meta(8, 16)).key(), "osm/15/8/16");
    assert_eq!(Change::Style(osm()).key(), "osm");
}

#[test]
fn tile_paths_are_the_ones_clients_ask_for() {
    let t = crate::tile::TileCoord { z: 3, x: 1, y: 2 };
    assert_eq!(tile_path(&osm(), t), "/osm/3/1/2.png");
    assert_eq!(
        tile_path(&StyleName::parse("osm@2x").unwrap(), t),
        "/osm/3/1/2@2x.png"
    );
}

#[test]
fn keys_are_split_into_headers_varnish_accepts() {
    let batch: Vec<Change> = (0..1000)
        .map(|i| Change::Metatile(osm(), meta(i * 8, 0)))
        .collect();
    let chunks = key_chunks(&batch);
    assert!(chunks.len() > 1);
    assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), 1000);
    for chunk in &chunks {
        assert!(chunk.join(" ").len() <= 4096);
    }
}

#[test]
fn a_bad_target_is_refused_with_its_name() {
    let mut t = target("cdn");
    t.url = "ftp://x".into();
    let settings = PurgeSettings {
        targets: vec![t],
        ..PurgeSettings::default()
    };
    let err = Purger::new(&settings, None, &prometheus::Registry::new())
        .err()
        .unwrap();
    assert!(err.to_string().contains("cdn"), "{err}");
}
