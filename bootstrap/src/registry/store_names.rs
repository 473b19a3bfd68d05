//! Store names held by any record: each name once, with an id, and the slots of the peers that
//! hold it (so `/peers/store/{store}` never scans every record).

use std::collections::HashMap;
use std::mem::size_of;
use std::sync::Arc;

use super::footprint;

/// One store name and the slots of the peers holding it.
pub(super) struct StoreName {
    name: Arc<str>,
    holders: Vec<u32>,
}

/// What removing a holder changed.
pub(super) enum HolderRemoved {
    /// The last holder moved into the freed position: its back-pointer must follow.
    Moved { slot: u32 },
    /// The name had no other holder and was forgotten; its id may be reused.
    NameFreed,
    /// The removed holder was the last in the list.
    Nothing,
}

#[derive(Default)]
pub(super) struct StoreNames {
    names: Vec<Option<StoreName>>,
    ids: HashMap<Arc<str>, u32>,
    free_ids: Vec<u32>,
    /// Estimated memory of the names and their holder lists ([`footprint`]).
    bytes: usize,
}

impl StoreNames {
    /// Distinct names held.
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    pub(super) fn name(&self, id: u32) -> &Arc<str> {
        &self.entry(id).name
    }

    pub(super) fn holders(&self, id: u32) -> &[u32] {
        &self.entry(id).holders
    }

    fn entry(&self, id: u32) -> &StoreName {
        self.names[id as usize]
            .as_ref()
            .expect("stored ids point at live store names")
    }

    /// The id of `name`, creating it (with no holders) when new.
    pub(super) fn id_or_insert(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let name: Arc<str> = Arc::from(name);
        self.bytes += store_name_bytes(name.len());
        let entry = StoreName {
            name: name.clone(),
            holders: Vec::new(),
        };
        let id = match self.free_ids.pop() {
            Some(id) => {
                self.names[id as usize] = Some(entry);
                id
            }
            None => {
                self.names.push(Some(entry));
                (self.names.len() - 1) as u32
            }
        };
        self.ids.insert(name, id);
        id
    }

    /// Adds `slot` as a holder of `id`; returns its position in the holder list.
    pub(super) fn add_holder(&mut self, id: u32, slot: u32) -> u32 {
        self.bytes += footprint::HOLDER;
        let holders = &mut self.entry_mut(id).holders;
        holders.push(slot);
        (holders.len() - 1) as u32
    }

    /// Removes the holder at `position` of `id` by moving the last holder into its place.
    pub(super) fn remove_holder(&mut self, id: u32, position: u32) -> HolderRemoved {
        self.bytes -= footprint::HOLDER;
        let position = position as usize;
        let holders = &mut self.entry_mut(id).holders;
        holders.swap_remove(position);
        if let Some(&moved) = holders.get(position) {
            return HolderRemoved::Moved { slot: moved };
        }
        if !holders.is_empty() {
            return HolderRemoved::Nothing;
        }
        let freed = self.names[id as usize].take().expect("live store name");
        self.bytes -= store_name_bytes(freed.name.len());
        self.ids.remove(&freed.name);
        self.free_ids.push(id);
        HolderRemoved::NameFreed
    }

    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, &str, &[u32])> {
        self.names.iter().enumerate().filter_map(|(id, entry)| {
            entry
                .as_ref()
                .map(|e| (id as u32, &*e.name, e.holders.as_slice()))
        })
    }

    /// The memory estimate counted again from the names held.
    #[cfg(test)]
    pub(super) fn recount_bytes(&self) -> usize {
        self.iter()
            .map(|(_, name, holders)| {
                store_name_bytes(name.len()) + holders.len() * footprint::HOLDER
            })
            .sum()
    }

    fn entry_mut(&mut self, id: u32) -> &mut StoreName {
        self.names[id as usize]
            .as_mut()
            .expect("stored ids point at live store names")
    }
}

/// Every live name with its id and holders.
/// A store name of `len` bytes: its shared text, its table entry, its id map entry and the
/// (empty) holder list.
pub(super) fn store_name_bytes(len: usize) -> usize {
    let text = footprint::BLOCK + 2 * size_of::<usize>() + len;
    let entry = size_of::<Option<StoreName>>();
    let id_entry = size_of::<(usize, usize, u32)>() + footprint::HASH_ENTRY;
    text + entry + id_entry + footprint::BLOCK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_move_and_names_are_freed_and_reused() {
        let mut names = StoreNames::default();
        let a = names.id_or_insert("a");
        assert_eq!(names.id_or_insert("a"), a);
        assert_eq!(names.add_holder(a, 10), 0);
        assert_eq!(names.add_holder(a, 11), 1);
        assert_eq!(names.add_holder(a, 12), 2);
        assert!(matches!(
            names.remove_holder(a, 0),
            HolderRemoved::Moved { slot: 12 }
        ));
        assert_eq!(names.holders(a), [12, 11]);
        assert!(matches!(names.remove_holder(a, 1), HolderRemoved::Nothing));
        assert!(matches!(
            names.remove_holder(a, 0),
            HolderRemoved::NameFreed
        ));
        assert_eq!((names.len(), names.bytes()), (0, 0));
        let b = names.id_or_insert("b");
        assert_eq!(b, a, "a freed id is reused");
        assert_eq!(&**names.name(b), "b");
        assert_eq!(names.id("a"), None);
    }
}
