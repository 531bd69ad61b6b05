//! Tests of plans and of [`apply`] on a real cache directory.

use super::*;
use crate::area::{InputTile, MetatileSet};

fn t(z: u8, x: u32, y: u32) -> InputTile {
    InputTile { z, x, y }
}

#[test]
fn the_plan_picks_delete_then_touch_then_render_by_zoom() {
    let plan = ExpirePlan::new(0, 18, Some(15), Some(10)).unwrap();
    assert_eq!(plan.action_at(18), ExpireMode::Delete);
    assert_eq!(plan.action_at(15), ExpireMode::Delete);
    assert_eq!(plan.action_at(14), ExpireMode::Dirty);
    assert_eq!(plan.action_at(10), ExpireMode::Dirty);
    assert_eq!(plan.action_at(9), ExpireMode::Render);
    let plan = ExpirePlan::new(0, 18, Some(0), None).unwrap();
    assert_eq!(plan.action_at(0), ExpireMode::Delete);
    assert_eq!(
        ExpirePlan::new(5, 4, None, None),
        Err(PlanError::MinAboveMax { min: 5, max: 4 })
    );
    assert_eq!(
        ExpirePlan::new(0, 21, None, None),
        Err(PlanError::ZoomTooHigh(21))
    );
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
    let mut set = MetatileSet::new(20);
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

/// Counts the lookups an expiry makes, on top of a disk cache.
struct CountingTarget {
    disk: DiskCache,
    lookups: std::cell::Cell<u64>,
}

impl ExpireTarget for CountingTarget {
    fn disk(&self) -> &DiskCache {
        &self.disk
    }
    fn delete(&self, style: &StyleName, meta: MetatileCoord) -> Result<ExpireOutcome, CacheError> {
        self.lookups.set(self.lookups.get() + 1);
        self.disk.delete(style, meta)
    }
    fn mark_dirty(
        &self,
        style: &StyleName,
        meta: MetatileCoord,
    ) -> Result<ExpireOutcome, CacheError> {
        self.lookups.set(self.lookups.get() + 1);
        ExpireTarget::mark_dirty(&self.disk, style, meta)
    }
    fn render(&self, style: &StyleName, meta: MetatileCoord) -> Result<ExpireOutcome, CacheError> {
        self.lookups.set(self.lookups.get() + 1);
        ExpireTarget::render(&self.disk, style, meta)
    }
}

#[test]
fn metatiles_under_missing_directories_are_absent_without_a_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let target = CountingTarget {
        disk: DiskCache::new(dir.path(), false),
        lookups: std::cell::Cell::new(0),
    };
    let style = StyleName::parse("osm").unwrap();
    let present = MetatileCoord::try_new(14, 9328, 4736).unwrap();
    target
        .disk
        .write_metatile(&style, present, &vec![vec![1u8]; 64])
        .unwrap();
    // A row of 2048 single z14 metatiles along the top of the world, and one square
    // around the metatile that exists: enumerated, not walked.
    let mut set = MetatileSet::new(14);
    for x in 0..2048 {
        set.insert(t(11, x, 0));
    }
    set.insert(t(11, 1166, 592));
    let plan = ExpirePlan::new(12, 14, Some(0), None).unwrap();
    let summary = apply(&target, &style, &plan, &set, &mut |_| {});
    assert_eq!(summary.delete.changed, 1);
    assert_eq!(summary.delete.matched, set.metatile_count(12));
    assert_eq!(summary.delete.absent, summary.delete.matched - 1);
    // z12 and z13 have no directory at all; at z14 only the metatiles sharing the top
    // two hash directories of the existing one are looked up.
    assert!(
        target.lookups.get() <= 2,
        "{} lookups",
        target.lookups.get()
    );
    assert!(!target.disk.path_of(&style, present).exists());
}
