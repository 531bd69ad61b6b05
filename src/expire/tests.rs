//! Tests of the expiry pieces, without the CLI.

use super::*;
use crate::tile::tiles_per_axis;
use proptest::prelude::*;
use std::collections::BTreeSet;

fn t(z: u8, x: u32, y: u32) -> InputTile {
    InputTile { z, x, y }
}

#[test]
fn lines_parse_as_render_expired_reads_them() {
    assert_eq!(
        parse_tile_line(b"12/2345/1234"),
        Ok(Some(t(12, 2345, 1234)))
    );
    assert_eq!(parse_tile_line(b"  0/0/0 \r"), Ok(Some(t(0, 0, 0))));
    assert_eq!(parse_tile_line(b""), Ok(None));
    assert_eq!(parse_tile_line(b"   \t"), Ok(None));
    assert_eq!(parse_tile_line(b"12/2345"), Err(LineError::Shape));
    assert_eq!(parse_tile_line(b"12/2345/1/2"), Err(LineError::Shape));
    assert_eq!(
        parse_tile_line(b"a/1/1"),
        Err(LineError::NotANumber("zoom"))
    );
    assert_eq!(parse_tile_line(b"3/-1/1"), Err(LineError::NotANumber("x")));
    assert_eq!(parse_tile_line(b"3/1/ 1"), Err(LineError::NotANumber("y")));
    assert_eq!(parse_tile_line(b"31/0/0"), Err(LineError::ZoomTooHigh(31)));
    assert_eq!(
        parse_tile_line(b"3/8/0"),
        Err(LineError::OutOfRange { z: 3, x: 8, y: 0 })
    );
    assert_eq!(
        parse_tile_line(b"30/1073741823/0"),
        Ok(Some(t(30, (1 << 30) - 1, 0)))
    );
    assert_eq!(
        parse_tile_line(b"1/99999999999999999999/0"),
        Err(LineError::NotANumber("x"))
    );
}

#[test]
fn bad_lines_carry_their_line_numbers() {
    let long = "9".repeat(10_000);
    let input = format!("1/0/0\n\nfoo\r\n2/3/3\n{long}\n4/4/4/4\n5/1/1");
    let items: Vec<_> = TileLines::new(input.as_bytes())
        .map(|i| i.unwrap())
        .collect();
    assert_eq!(items.len(), 6);
    assert_eq!(items[0], Ok(t(1, 0, 0)));
    let bad = items[1].clone().unwrap_err();
    assert_eq!((bad.line_no, bad.text.as_str()), (3, "foo"));
    assert_eq!(items[2], Ok(t(2, 3, 3)));
    let too_long = items[3].clone().unwrap_err();
    assert_eq!((too_long.line_no, too_long.error), (5, LineError::TooLong));
    assert_eq!(too_long.text.len(), MAX_LINE_BYTES);
    assert_eq!(items[4].clone().unwrap_err().line_no, 6);
    assert_eq!(
        items[5],
        Ok(t(5, 1, 1)),
        "a last line without newline counts"
    );
    let mut lines = TileLines::new(input.as_bytes());
    lines.by_ref().for_each(drop);
    assert_eq!(lines.lines_read(), 7);
}

#[test]
fn the_plan_picks_delete_then_touch_then_render_by_zoom() {
    let plan = ExpirePlan::new(0, 18, Some(15), Some(10)).unwrap();
    assert_eq!(plan.action_at(18), ExpireAction::Delete);
    assert_eq!(plan.action_at(15), ExpireAction::Delete);
    assert_eq!(plan.action_at(14), ExpireAction::MarkDirty);
    assert_eq!(plan.action_at(10), ExpireAction::MarkDirty);
    assert_eq!(plan.action_at(9), ExpireAction::Render);
    let plan = ExpirePlan::new(0, 18, Some(0), None).unwrap();
    assert_eq!(plan.action_at(0), ExpireAction::Delete);
    assert_eq!(
        ExpirePlan::new(5, 4, None, None),
        Err(PlanError::MinAboveMax { min: 5, max: 4 })
    );
    assert_eq!(
        ExpirePlan::new(0, 21, None, None),
        Err(PlanError::ZoomTooHigh(21))
    );
}

fn enumerate(set: &ExpireSet, min_zoom: u8) -> Vec<MetatileCoord> {
    set.blocks(min_zoom).flat_map(|b| b.metatiles()).collect()
}

#[test]
fn a_low_zoom_line_covers_all_its_descendants_and_its_ancestors() {
    let mut set = ExpireSet::new(5);
    set.insert(t(3, 5, 2));
    let got: BTreeSet<_> = enumerate(&set, 0).into_iter().collect();
    let m = |z: u32, x: u64, y: u64| MetatileCoord::try_new(z, x, y).unwrap();
    // z0-2: the world metatile; z3: (0,0); z4: tiles 10-11 x 4-5 -> (8,0);
    // z5: tiles 20-23 x 8-11 -> (16,8).
    let expected: BTreeSet<_> = [
        m(0, 0, 0),
        m(1, 0, 0),
        m(2, 0, 0),
        m(3, 0, 0),
        m(4, 8, 0),
        m(5, 16, 8),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, expected);
}

#[test]
fn a_zoom_0_line_to_zoom_20_is_counted_not_enumerated() {
    let mut set = ExpireSet::new(20);
    set.insert(t(0, 0, 0));
    assert_eq!(set.len(), 1);
    let per_zoom: u64 = (3..=20).map(|z| 1u64 << (2 * (z - 3))).sum();
    assert_eq!(set.metatile_count(0), 3 + per_zoom);
    let blocks: Vec<_> = set.blocks(0).collect();
    assert_eq!(blocks.len(), 21);
    assert_eq!(
        blocks[20],
        MetatileBlock {
            z: 20,
            mx: 0,
            my: 0,
            side: 1 << 17
        }
    );
}

#[test]
fn a_bbox_range_is_held_as_few_squares() {
    let mut set = ExpireSet::new(20);
    set.insert_range(&crate::tile::Bbox::WORLD.tile_range(20));
    assert_eq!(set.len(), 1);
    let mut set = ExpireSet::new(18);
    let r = TileRange {
        z: 18,
        min_x: 1000,
        max_x: 90_000,
        min_y: 5,
        max_y: 70_000,
    };
    set.insert_range(&r);
    // About 97 million metatiles at z18, held as squares along the outline (whose
    // length is about 40,000 metatiles).
    let outline = 2 * (r.metatiles().len().isqrt() * 3);
    assert!((set.len() as u64) < outline, "{} squares", set.len());
    assert_eq!(set.metatile_count(18), r.metatiles().len());
}

#[test]
fn walking_a_huge_block_finds_exactly_what_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskCache::new(dir.path(), false);
    let style = StyleName::parse("osm").unwrap();
    let tiles = vec![vec![1u8]; 64];
    let metas = [
        MetatileCoord::try_new(20, 8, 8).unwrap(),
        MetatileCoord::try_new(20, 1_000_000, 555_552).unwrap(),
        MetatileCoord::try_new(15, 32000, 0).unwrap(),
    ];
    for m in metas {
        disk.write_metatile(&style, m, &tiles).unwrap();
    }
    let mut set = ExpireSet::new(20);
    set.insert(t(0, 0, 0));
    let plan = ExpirePlan::new(0, 20, Some(0), None).unwrap();
    let mut reports = 0;
    let summary = apply(&disk, &style, &plan, &set, &mut |_| reports += 1);
    assert_eq!(summary.delete.changed, 3);
    assert_eq!(summary.delete.matched, set.metatile_count(0));
    assert_eq!(summary.delete.absent, summary.delete.matched - 3);
    assert!(reports > 0);
    for m in metas {
        assert!(!disk.path_of(&style, m).exists());
    }
}

fn brute_force(inputs: &[InputTile], min_zoom: u8, max_zoom: u8) -> BTreeSet<MetatileCoord> {
    let mut out = BTreeSet::new();
    for z in min_zoom..=max_zoom {
        let n = tiles_per_axis(z);
        for mx in (0..n).step_by(8) {
            for my in (0..n).step_by(8) {
                let w = n.min(8);
                let hit = inputs.iter().any(|i| {
                    let (x0, x1, y0, y1) = if z >= i.z {
                        let d = z - i.z;
                        (i.x << d, (i.x + 1) << d, i.y << d, (i.y + 1) << d)
                    } else {
                        let d = i.z - z;
                        (i.x >> d, (i.x >> d) + 1, i.y >> d, (i.y >> d) + 1)
                    };
                    x0 < mx + w && mx < x1 && y0 < my + w && my < y1
                });
                if hit {
                    out.insert(MetatileCoord { z, x: mx, y: my });
                }
            }
        }
    }
    out
}

fn any_input() -> impl Strategy<Value = InputTile> {
    (0u8..=11, any::<u32>(), any::<u32>()).prop_map(|(z, x, y)| {
        let n = 1u32 << z;
        t(z, x % n, y % n)
    })
}

proptest! {
    #[test]
    fn every_touched_metatile_is_listed_exactly_once(
        inputs in proptest::collection::vec(any_input(), 0..12),
        max_zoom in 0u8..=9,
        min_offset in 0u8..=9,
    ) {
        let min_zoom = max_zoom.saturating_sub(min_offset);
        let mut set = ExpireSet::new(max_zoom);
        for i in &inputs {
            set.insert(*i);
        }
        let listed = enumerate(&set, min_zoom);
        let unique: BTreeSet<_> = listed.iter().copied().collect();
        prop_assert_eq!(unique.len(), listed.len(), "a metatile was listed twice");
        prop_assert_eq!(unique, brute_force(&inputs, min_zoom, max_zoom));
        prop_assert_eq!(set.metatile_count(min_zoom), listed.len() as u64);
    }

    #[test]
    fn a_range_expires_what_its_tiles_expire(
        z in 0u8..=9, a in any::<(u32, u32)>(), b in any::<(u32, u32)>(), max_zoom in 0u8..=9,
    ) {
        let n = 1u32 << z;
        let (x0, x1) = ((a.0 % n).min(b.0 % n), (a.0 % n).max(b.0 % n));
        let (y0, y1) = ((a.1 % n).min(b.1 % n), (a.1 % n).max(b.1 % n));
        let mut by_range = ExpireSet::new(max_zoom);
        by_range.insert_range(&TileRange { z, min_x: x0, max_x: x1, min_y: y0, max_y: y1 });
        let mut by_tile = ExpireSet::new(max_zoom);
        for x in x0..=x1 {
            for y in y0..=y1 {
                by_tile.insert(t(z, x, y));
            }
        }
        let a: BTreeSet<_> = enumerate(&by_range, 0).into_iter().collect();
        let b: BTreeSet<_> = enumerate(&by_tile, 0).into_iter().collect();
        prop_assert_eq!(a, b);
    }

    #[test]
    fn the_line_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(Some(tile)) = parse_tile_line(&bytes) {
            prop_assert!(tile.z <= MAX_INPUT_ZOOM);
            prop_assert!(u64::from(tile.x) < 1u64 << tile.z && u64::from(tile.y) < 1u64 << tile.z);
        }
    }

    #[test]
    fn the_line_reader_never_panics_and_counts_every_line(
        bytes in proptest::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'/'), Just(b'1'), Just(b'0'), any::<u8>()],
            0..2000,
        ),
    ) {
        let mut lines = TileLines::new(bytes.as_slice());
        let mut last = 0;
        for item in lines.by_ref() {
            let line_no = match item.unwrap() {
                Ok(_) => continue,
                Err(bad) => bad.line_no,
            };
            prop_assert!(line_no > last);
            last = line_no;
        }
        let newlines = bytes.iter().filter(|b| **b == b'\n').count() as u64;
        let trailing = u64::from(!bytes.is_empty() && bytes.last() != Some(&b'\n'));
        prop_assert_eq!(lines.lines_read(), newlines + trailing);
    }

    #[test]
    fn valid_lines_round_trip(tile in any_input()) {
        let line = format!("{}/{}/{}", tile.z, tile.x, tile.y);
        prop_assert_eq!(parse_tile_line(line.as_bytes()), Ok(Some(tile)));
    }
}
