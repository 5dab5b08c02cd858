//! The node-id table: FUSE node ids ↔ vfs locations, with the kernel's lookup counts.
//!
//! fuser sends one number per inode: the node id is also the `st_ino` programs see.
//! So node ids are *derived* from the location rather than handed out in sequence,
//! which keeps a file's inode number stable across the kernel forgetting and looking
//! it up again: on the mount that holds the namespace root it is the filesystem's own
//! inode number; on other mounts that number mixed with the mount id. The namespace
//! root is always [`ROOT_ID`] (FUSE_ROOT_ID). A derived id that is 0, 1 or already
//! taken by another location gets a private number from a reserved range instead
//! (for as long as the kernel remembers it).
//!
//! Each entry also keeps the [`Stamp`] of the attributes the kernel was last given
//! (size, mtime, ctime), so an open can tell whether the kernel's cache of the file
//! is of another state than the file it opens.
//!
//! Each entry counts the lookups the kernel holds on it (every reply that hands the
//! kernel an entry counts one: lookup, mknod, mkdir, symlink, link, create and each
//! readdirplus entry); `forget` subtracts and drops the entry at zero. The root is
//! never dropped.

use parking_lot::Mutex;
use sandfs_vfs::{Attr, Location, MountId, Timespec};
use std::collections::HashMap;

/// FUSE_ROOT_ID.
pub const ROOT_ID: u64 = 1;

/// First private node id, used when a derived one collides.
const FALLBACK_BASE: u64 = 0xffff_ff00_0000_0000;

struct Entry {
    loc: Location,
    nlookup: u64,
    /// What the kernel was last told of the file's content; `None` when unknown.
    told: Option<Stamp>,
}

/// What the kernel caches of a file's content: its size, modification and change
/// times. An open that finds another one tells the kernel its cache is stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    size: u64,
    mtime: Timespec,
    ctime: Timespec,
}

impl Stamp {
    /// The stamp of `a`.
    pub fn of(a: &Attr) -> Stamp {
        Stamp { size: a.size, mtime: a.mtime, ctime: a.ctime }
    }
}

impl Entry {
    fn key(&self) -> (MountId, u64) {
        (self.loc.mount.id(), self.loc.node.ino())
    }
}

struct Table {
    by_id: HashMap<u64, Entry>,
    /// Locations whose derived id was taken (by another location, or reserved):
    /// their private ids. Usually empty; the derived id needs no index.
    fallback: HashMap<(MountId, u64), u64>,
    next_fallback: u64,
}

impl Table {
    /// The id `key` holds now, if the kernel holds it.
    fn held(&self, key: (MountId, u64), derived: u64) -> Option<u64> {
        if !self.fallback.is_empty()
            && let Some(&id) = self.fallback.get(&key)
        {
            return Some(id);
        }
        self.by_id.get(&derived).filter(|e| e.key() == key).map(|_| derived)
    }
}

/// The table. Locking: one mutex, held for a hash operation at a time.
pub struct Nodes {
    root_mount: MountId,
    table: Mutex<Table>,
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Nodes({} held)", self.len())
    }
}

impl Nodes {
    /// A table whose root is `root` (the namespace root).
    pub fn new(root: Location) -> Nodes {
        let key = (root.mount.id(), root.node.ino());
        let mut by_id = HashMap::new();
        let mut fallback = HashMap::new();
        fallback.insert(key, ROOT_ID);
        by_id.insert(ROOT_ID, Entry { loc: root.clone(), nlookup: 1, told: None });
        Nodes {
            root_mount: root.mount.id(),
            table: Mutex::new(Table { by_id, fallback, next_fallback: FALLBACK_BASE }),
        }
    }

    /// The node id a location would get (without registering it): for `readdir`
    /// entries and `..`, which the kernel does not count.
    pub fn peek_id(&self, mount: MountId, ino: u64) -> u64 {
        let derived = self.derive(mount, ino);
        self.table.lock().held((mount, ino), derived).unwrap_or(derived)
    }

    fn derive(&self, mount: MountId, ino: u64) -> u64 {
        if mount == self.root_mount { ino } else { ino ^ mount.wrapping_mul(0x9e37_79b9_7f4a_7c15) }
    }

    /// Register one kernel lookup of `loc`, given the attributes `attr`; returns its
    /// node id.
    pub fn remember(&self, loc: &Location, attr: &Attr) -> u64 {
        let key = (loc.mount.id(), loc.node.ino());
        let derived = self.derive(key.0, key.1);
        let mut t = self.table.lock();
        if let Some(id) = t.held(key, derived)
            && let Some(e) = t.by_id.get_mut(&id)
        {
            e.nlookup += 1;
            // The newest node object for this inode (a cache may have replaced it).
            e.loc = loc.clone();
            e.told = Some(Stamp::of(attr));
            return id;
        }
        let mut id = derived;
        if id == 0 || id == ROOT_ID || id >= FALLBACK_BASE || t.by_id.contains_key(&id) {
            id = t.next_fallback;
            t.next_fallback += 1;
            t.fallback.insert(key, id);
        }
        t.by_id.insert(id, Entry { loc: loc.clone(), nlookup: 1, told: Some(Stamp::of(attr)) });
        id
    }

    /// The location of a node id the kernel holds.
    pub fn get(&self, id: u64) -> Option<Location> {
        self.table.lock().by_id.get(&id).map(|e| e.loc.clone())
    }

    /// The kernel was given the attributes `a` of `id` (or, with `None`, told to
    /// drop them).
    pub fn told(&self, id: u64, a: Option<&Attr>) {
        if let Some(e) = self.table.lock().by_id.get_mut(&id) {
            e.told = a.map(Stamp::of);
        }
    }

    /// What the kernel was last told of `id`'s content.
    pub fn told_of(&self, id: u64) -> Option<Stamp> {
        self.table.lock().by_id.get(&id).and_then(|e| e.told)
    }

    /// FORGET: the kernel dropped `n` lookups of `id`.
    pub fn forget(&self, id: u64, n: u64) {
        let mut t = self.table.lock();
        if id == ROOT_ID {
            return;
        }
        let Some(e) = t.by_id.get_mut(&id) else { return };
        e.nlookup = e.nlookup.saturating_sub(n);
        if e.nlookup == 0 {
            let key = e.key();
            t.by_id.remove(&id);
            if t.fallback.get(&key) == Some(&id) {
                t.fallback.remove(&key);
            }
        }
    }

    /// How many node ids the kernel holds (the root included).
    pub fn len(&self) -> usize {
        self.table.lock().by_id.len()
    }

    /// Whether only the root is held.
    pub fn is_empty(&self) -> bool {
        self.len() <= 1
    }
}
