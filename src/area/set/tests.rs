//! Tests of [`MetatileSet`]: squares, blocks, counts.

use super::*;
use crate::area::test_tiles::{any_input, t};
use crate::tile::tiles_per_axis;
use proptest::prelude::*;
use std::collections::BTreeSet;

fn enumerate(set: &MetatileSet, min_zoom: u8) -> Vec<MetatileCoord> {
    set.blocks(min_zoom).flat_map(|b| b.metatiles()).collect()
}

#[test]
fn a_low_zoom_line_covers_all_its_descendants_and_its_ancestors() {
    let mut set = MetatileSet::new(5);
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
fn a_set_with_a_limit_holds_at_most_that_many_squares_and_says_it_overflowed() {
    let mut set = MetatileSet::with_limit(20, 3);
    for x in 0..3 {
        set.insert(t(17, x, 0));
    }
    set.insert(t(17, 0, 0));
    assert!(!set.overflowed(), "a square already held is not a new one");
    set.insert(t(17, 9, 9));
    assert!(set.overflowed());
    assert_eq!(set.len(), 3);

    // A long thin range at the finest level needs one square per tile: stopped early.
    let mut range = MetatileSet::with_limit(20, 1000);
    range.insert_range(&TileRange {
        z: 17,
        min_x: 0,
        min_y: 5,
        max_x: (1 << 17) - 1,
        max_y: 5,
    });
    assert!(range.overflowed());
    assert_eq!(range.len(), 1000);
}

#[test]
fn a_zoom_0_line_to_zoom_20_is_counted_not_enumerated() {
    let mut set = MetatileSet::new(20);
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
    let mut set = MetatileSet::new(20);
    set.insert_range(&crate::tile::Bbox::WORLD.tile_range(20));
    assert_eq!(set.len(), 1);
    let mut set = MetatileSet::new(18);
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

proptest! {
    #[test]
    fn every_touched_metatile_is_listed_exactly_once(
        inputs in proptest::collection::vec(any_input(), 0..12),
        max_zoom in 0u8..=9,
        min_offset in 0u8..=9,
    ) {
        let min_zoom = max_zoom.saturating_sub(min_offset);
        let mut set = MetatileSet::new(max_zoom);
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
        let mut by_range = MetatileSet::new(max_zoom);
        by_range.insert_range(&TileRange { z, min_x: x0, max_x: x1, min_y: y0, max_y: y1 });
        let mut by_tile = MetatileSet::new(max_zoom);
        for x in x0..=x1 {
            for y in y0..=y1 {
                by_tile.insert(t(z, x, y));
            }
        }
        let a: BTreeSet<_> = enumerate(&by_range, 0).into_iter().collect();
        let b: BTreeSet<_> = enumerate(&by_tile, 0).into_iter().collect();
        prop_assert_eq!(a, b);
    }
}

#[test]
fn a_set_survives_its_flat_form_and_bad_triples_are_counted() {
    let mut set = MetatileSet::new(18);
    set.insert(t(18, 149236, 75878));
    set.insert(t(16, 37310, 18969));
    set.insert(t(14, 9300, 4700));
    let flat = set.squares_flat();
    assert_eq!(flat.len(), 9);
    let (back, bad) = MetatileSet::from_squares_flat(18, &flat);
    assert_eq!(bad, 0);
    assert_eq!(enumerate(&back, 0), enumerate(&set, 0));
    assert_eq!(back.squares_flat(), flat);
    // A level finer than z18 metatiles need, x outside level 1, and a partial triple.
    let (back, bad) = MetatileSet::from_squares_flat(18, &[16, 1, 1, 1, 2, 0, 3, 1]);
    assert_eq!(bad, 3);
    assert!(back.is_empty());
}
