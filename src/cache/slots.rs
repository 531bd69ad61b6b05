//! Small integer ids for style names, handed out on first use and never taken back.
//!
//! Every tile hit needs per-style state (its memory entries, its planet time). Indexing
//! arrays by a [`StyleId`] keeps string hashing, allocation and locks off that path:
//! finding the id is a lock-free scan of the (few) names seen so far.

use crate::tile::StyleName;
use std::sync::OnceLock;

/// How many distinct style names get an id. A style beyond this still works, only
/// without the memory layer (its tiles are read from disk on every request).
pub(crate) const MAX_STYLES: usize = 256;

/// The slot of one style name in a [`StyleSlots`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct StyleId(u8);

impl StyleId {
    pub(crate) fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Style names by id, filled in order and never emptied.
#[derive(Debug)]
pub(crate) struct StyleSlots {
    names: Box<[OnceLock<StyleName>]>,
}

impl StyleSlots {
    pub(super) fn new() -> Self {
        Self {
            names: (0..MAX_STYLES).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The id of `style`, assigning the next free one on first use; `None` once every
    /// slot is taken by other names.
    pub(super) fn id(&self, style: &StyleName) -> Option<StyleId> {
        for (index, slot) in self.names.iter().enumerate() {
            let name = match slot.get() {
                Some(name) => name,
                // A racing thread may claim the slot first, with this name or another:
                // `get_or_init` returns whichever name won.
                None => slot.get_or_init(|| style.clone()),
            };
            if name == style {
                return u8::try_from(index).ok().map(StyleId);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn name(s: &str) -> StyleName {
        StyleName::parse(s).unwrap()
    }

    #[test]
    fn each_name_keeps_its_own_id() {
        let slots = StyleSlots::new();
        let osm = slots.id(&name("osm")).unwrap();
        let hidpi = slots.id(&name("osm@2x")).unwrap();
        assert_ne!(osm, hidpi);
        assert_eq!(slots.id(&name("osm")), Some(osm));
        assert_eq!(slots.id(&name("osm@2x")), Some(hidpi));
    }

    #[test]
    fn names_beyond_the_last_slot_get_no_id() {
        let slots = StyleSlots::new();
        for i in 0..MAX_STYLES {
            assert!(slots.id(&name(&format!("s{i}"))).is_some());
        }
        assert_eq!(slots.id(&name("one-too-many")), None);
        assert_eq!(
            slots.id(&name("s7")).map(StyleId::index),
            Some(7),
            "existing names keep working when full"
        );
    }

    #[test]
    fn threads_racing_for_slots_agree_on_every_id() {
        let slots = Arc::new(StyleSlots::new());
        let names: Vec<StyleName> = (0..20).map(|i| name(&format!("style{i}"))).collect();
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let (slots, names) = (slots.clone(), names.clone());
                std::thread::spawn(move || {
                    // Half the threads claim the names in reverse order.
                    let mut order: Vec<usize> = (0..names.len()).collect();
                    if t % 2 == 1 {
                        order.reverse();
                    }
                    let mut ids = vec![None; names.len()];
                    for i in order {
                        ids[i] = slots.id(&names[i]);
                    }
                    ids.into_iter().map(Option::unwrap).collect::<Vec<_>>()
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(results.windows(2).all(|w| w[0] == w[1]));
        let mut distinct = results[0].clone();
        distinct.sort_by_key(|id| id.index());
        distinct.dedup();
        assert_eq!(distinct.len(), names.len());
    }
}
