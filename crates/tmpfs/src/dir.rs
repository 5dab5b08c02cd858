//! Directory contents: entries in a slot array whose indices are the readdir cookies,
//! plus a hash index of slot numbers by name. A slot keeps its index while its entry
//! lives, so an iteration in progress returns every entry that was present throughout
//! exactly once, whatever is added or removed meanwhile. Freed slots are reused.

use crate::inode::Inode;
use crate::{Shared, dirent_cost};
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock, Weak};

/// One entry.
pub(crate) struct Slot {
    pub name: Box<[u8]>,
    pub node: Arc<Inode>,
}

/// The entries of one directory.
pub(crate) struct DirData {
    slots: Vec<Option<Slot>>,
    index: HashTable<u32>,
    free: Vec<u32>,
    /// The containing directory (dangling for the root).
    pub parent: Weak<Inode>,
}

fn hash(name: &[u8]) -> u64 {
    static STATE: OnceLock<DefaultHashBuilder> = OnceLock::new();
    STATE.get_or_init(DefaultHashBuilder::default).hash_one(name)
}

impl DirData {
    pub fn new(parent: Weak<Inode>) -> DirData {
        DirData { slots: Vec::new(), index: HashTable::new(), free: Vec::new(), parent }
    }

    fn slot_name(slots: &[Option<Slot>], i: u32) -> &[u8] {
        match &slots[i as usize] {
            Some(s) => &s.name,
            None => &[],
        }
    }

    fn find(&self, name: &[u8]) -> Option<u32> {
        let slots = &self.slots;
        self.index.find(hash(name), |&i| Self::slot_name(slots, i) == name).copied()
    }

    /// The node named `name`.
    pub fn get(&self, name: &[u8]) -> Option<&Arc<Inode>> {
        let i = self.find(name)?;
        self.slots[i as usize].as_ref().map(|s| &s.node)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Add an entry; the name must be absent.
    pub fn insert(&mut self, name: &[u8], node: Arc<Inode>) {
        let slot = Slot { name: name.into(), node };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        self.index.insert_unique(hash(name), i, |&j| hash(Self::slot_name(slots, j)));
    }

    /// Remove an entry, returning its node.
    pub fn remove(&mut self, name: &[u8]) -> Option<Arc<Inode>> {
        let slots = &self.slots;
        let entry = self.index.find_entry(hash(name), |&i| Self::slot_name(slots, i) == name).ok()?;
        let (i, _) = entry.remove();
        self.free.push(i);
        self.slots[i as usize].take().map(|s| s.node)
    }

    /// Point an existing entry at another node, returning the old one.
    pub fn replace(&mut self, name: &[u8], node: Arc<Inode>) -> Option<Arc<Inode>> {
        let i = self.find(name)?;
        let slot = self.slots[i as usize].as_mut()?;
        Some(std::mem::replace(&mut slot.node, node))
    }

    /// Rename an entry in place (keeping its position); `new` must be absent.
    pub fn rename_in_place(&mut self, old: &[u8], new: &[u8]) -> bool {
        let slots = &self.slots;
        let Ok(entry) = self.index.find_entry(hash(old), |&i| Self::slot_name(slots, i) == old) else {
            return false;
        };
        let (i, _) = entry.remove();
        if let Some(s) = self.slots[i as usize].as_mut() {
            s.name = new.into();
        }
        let slots = &self.slots;
        self.index.insert_unique(hash(new), i, |&j| hash(Self::slot_name(slots, j)));
        true
    }

    /// Entries whose cookie (slot index + 1) is greater than `after`, in order.
    pub fn iter_after(&self, after: u64) -> impl Iterator<Item = (u64, &Slot)> {
        let start = after.min(self.slots.len() as u64) as usize;
        self.slots[start..]
            .iter()
            .enumerate()
            .filter_map(move |(k, s)| s.as_ref().map(|s| ((start + k + 1) as u64, s)))
    }

    /// Every node, for teardown; the entries' charges are given back.
    pub fn drain(&mut self, fs: &Shared) -> Vec<Arc<Inode>> {
        self.index.clear();
        self.free.clear();
        let mut charged = 0;
        let nodes = self
            .slots
            .drain(..)
            .flatten()
            .map(|s| {
                charged += dirent_cost(&s.name);
                s.node
            })
            .collect();
        fs.uncharge(charged);
        nodes
    }
}
