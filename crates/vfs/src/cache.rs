//! The path-resolution cache of a mount namespace: whole-path walks remembered by
//! (start, path, follow flag, credentials) and validated by generation counters, so a
//! repeated walk costs one hash lookup instead of a lock and a lookup per component.
//!
//! Validity. A walk reads three kinds of state: the mount tree (which mounts cover
//! which nodes, the namespace root, `..` out of mount roots), the directories of each
//! filesystem it passes through (names, parents, and the mode/uid/gid that decide
//! search permission), and symlink targets. An entry records
//! - the global mount-tree generation ([`tree_generation`]), read before the walk,
//!   which every change to any mount tree (connect, unmount, set_flags) moves:
//!   global rather than per namespace because a mount may be connected below a mount
//!   reached from another namespace (a cwd in a disconnected mount), and tree changes
//!   are rare;
//! - the [`Generation`] of every filesystem whose nodes the walk read, each read
//!   *before* the first read from that filesystem; a filesystem brackets each change
//!   that can alter a walk with [`Generation::change`].
//!
//! A counter with a change in progress is not stable: no entry is made from a walk
//! that saw one, and no entry matches it. Once the change ends the counter differs
//! from every value read before, so a change that completed before a lookup always
//! invalidates entries recorded before it, and a change in progress never lets an
//! old entry answer while fresh walks may already see the new state. A filesystem
//! without a generation ([`crate::Filesystem::generation`] is `None`) is never cached
//! through.
//!
//! Credentials enter the key only as far as a walk depends on them: search
//! permission. Either CAP_DAC_READ_SEARCH or CAP_DAC_OVERRIDE grants search on every
//! directory, so all such credentials share one key; others are keyed by uid, gid and
//! supplementary groups (the only inputs of the mode check for MAY_EXEC).
//!
//! Entries hold nodes and mounts weakly: the cache never keeps an unlinked file's
//! inode (and its data, and its nr_inodes charge) or an unmounted filesystem alive.
//! A start directory is identified by the addresses of its mount and node, which the
//! entry's weak references keep from being reused. Errors are not cached.

use crate::creds::{Caps, Creds};
use crate::mount::{Location, Mount};
use crate::node::{Node, NodeRef};
use hashbrown::HashTable;
use parking_lot::RwLock;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// A change counter of a filesystem, for the path cache (see
/// [`crate::Filesystem::generation`]).
///
/// One word: the low 16 bits count changes in progress, the rest counts
/// changes completed. A change is bracketed ([`Generation::change`]): while any is in
/// progress no walk through the filesystem is cached or answered from the cache, and
/// its end makes the value differ from every value read before it. So a cached walk
/// is never answered while a concurrent change is half visible (a rename a fresh walk
/// already sees, say), and never after one completed.
#[derive(Debug, Default)]
pub struct Generation(AtomicU64);

const ACTIVE_BITS: u32 = 16;
const ACTIVE_MASK: u64 = (1 << ACTIVE_BITS) - 1;

impl Generation {
    /// A counter with no change made or in progress.
    pub const fn new() -> Generation {
        Generation(AtomicU64::new(0))
    }

    /// The current value, and whether it is stable (no change in progress): only a
    /// stable value may back a cache entry.
    #[inline]
    pub(crate) fn read(&self) -> (u64, bool) {
        let v = self.0.load(Ordering::Acquire);
        (v, v & ACTIVE_MASK == 0)
    }

    /// Start a change that can alter a path walk: take it before the change becomes
    /// visible to lookups (before the first modification), drop it after the change
    /// is complete (after the last one; releasing the locks first or not).
    #[inline]
    pub fn change(&self) -> Changing<'_> {
        self.0.fetch_add(1, Ordering::AcqRel);
        Changing(self)
    }

    /// A change already complete and visible: [`Generation::change`] and its end at
    /// once.
    pub fn bump(&self) {
        drop(self.change());
    }
}

/// A change in progress: see [`Generation::change`]. Ends when dropped.
#[must_use = "the change ends when this is dropped"]
#[derive(Debug)]
pub struct Changing<'a>(&'a Generation);

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        // One change fewer in progress, one more completed.
        self.0.0.fetch_add((1 << ACTIVE_BITS) - 1, Ordering::AcqRel);
    }
}

/// Changes of any mount tree: connect, unmount, set_flags.
static TREE_GEN: Generation = Generation::new();

/// The current mount-tree generation, if stable.
#[inline]
pub(crate) fn tree_generation() -> Option<u64> {
    let (v, stable) = TREE_GEN.read();
    stable.then_some(v)
}

/// A change of a mount tree in progress (see [`Generation::change`]).
pub(crate) fn tree_change() -> Changing<'static> {
    TREE_GEN.change()
}

/// What a walk in progress notes for the cache: the generation of every filesystem
/// it reads, taken before the first read.
pub(crate) struct Recorder {
    on: bool,
    cacheable: bool,
    gens: Vec<(Arc<Generation>, u64)>,
}

impl Recorder {
    /// Records nothing (walks whose result is not cached).
    pub fn off() -> Recorder {
        Recorder { on: false, cacheable: false, gens: Vec::new() }
    }

    /// Records generations for a cache entry.
    pub fn on() -> Recorder {
        Recorder { on: true, cacheable: true, gens: Vec::new() }
    }

    /// The walk is about to read nodes of `mount`'s filesystem.
    #[inline]
    pub fn note(&mut self, mount: &Mount) {
        if !self.cacheable {
            return;
        }
        match mount.generation() {
            None => {
                self.cacheable = false;
                self.gens.clear();
            }
            Some(g) => {
                if !self.gens.iter().any(|(a, _)| Arc::ptr_eq(a, g)) {
                    match g.read() {
                        (v, true) => self.gens.push((g.clone(), v)),
                        (_, false) => {
                            self.cacheable = false;
                            self.gens.clear();
                        }
                    }
                }
            }
        }
    }

    /// The generations noted, if every filesystem read had one and it was stable.
    pub fn finish(self) -> Option<Vec<(Arc<Generation>, u64)>> {
        (self.on && self.cacheable).then_some(self.gens)
    }
}

/// Credentials as far as a walk depends on them.
enum CredKey {
    /// Search permission everywhere (CAP_DAC_READ_SEARCH or CAP_DAC_OVERRIDE).
    Searcher,
    /// Mode bits decide: uid, gid and supplementary groups.
    User { uid: u32, gid: u32, groups: Arc<[u32]> },
}

fn searches_anything(creds: &Creds) -> bool {
    creds.caps.intersects(Caps::DAC_READ_SEARCH | Caps::DAC_OVERRIDE)
}

impl CredKey {
    fn of(creds: &Creds) -> CredKey {
        if searches_anything(creds) {
            CredKey::Searcher
        } else {
            CredKey::User { uid: creds.uid, gid: creds.gid, groups: creds.groups.clone() }
        }
    }

    fn matches(&self, creds: &Creds) -> bool {
        match self {
            CredKey::Searcher => searches_anything(creds),
            CredKey::User { uid, gid, groups } => {
                !searches_anything(creds)
                    && *uid == creds.uid
                    && *gid == creds.gid
                    && **groups == *creds.groups
            }
        }
    }
}

/// Thin address of a node (the data pointer of the trait object).
fn node_addr<T: ?Sized>(p: *const T) -> usize {
    p as *const () as usize
}

struct Entry {
    hash: u64,
    /// The start directory of a relative path (`None`: the namespace root).
    start: Option<(Weak<Mount>, Weak<dyn Node>)>,
    path: Box<[u8]>,
    follow: bool,
    creds: CredKey,
    tree_gen: u64,
    gens: Box<[(Arc<Generation>, u64)]>,
    mount: Weak<Mount>,
    node: Weak<dyn Node>,
}

impl Entry {
    fn matches(&self, start: Option<&Location>, path: &[u8], follow: bool, creds: &Creds) -> bool {
        let same_start = match (&self.start, start) {
            (None, None) => true,
            (Some((m, n)), Some(s)) => {
                std::ptr::eq(m.as_ptr(), Arc::as_ptr(&s.mount))
                    && node_addr(n.as_ptr()) == node_addr(Arc::as_ptr(&s.node))
            }
            _ => false,
        };
        same_start && self.follow == follow && *self.path == *path && self.creds.matches(creds)
    }

    fn valid(&self) -> bool {
        // Recorded values are stable ones: equal means stable and unchanged.
        Some(self.tree_gen) == tree_generation() && self.gens.iter().all(|(g, v)| g.read().0 == *v)
    }
}

const SHARDS: usize = 8;
/// Entries per shard before the shard is cleared.
const SHARD_CAPACITY: usize = 256;
/// Longer paths are walked every time (bounds the memory the cache holds).
const MAX_CACHED_PATH: usize = 512;

/// See the module documentation.
pub(crate) struct PathCache {
    hasher: hashbrown::DefaultHashBuilder,
    shards: [RwLock<HashTable<Entry>>; SHARDS],
}

impl PathCache {
    pub fn new() -> PathCache {
        PathCache {
            hasher: hashbrown::DefaultHashBuilder::default(),
            shards: std::array::from_fn(|_| RwLock::new(HashTable::new())),
        }
    }

    fn hash(&self, start: Option<&Location>, path: &[u8], follow: bool, creds: &Creds) -> u64 {
        let mut h = self.hasher.build_hasher();
        if let Some(s) = start {
            h.write_usize(Arc::as_ptr(&s.mount) as usize);
            h.write_usize(node_addr(Arc::as_ptr(&s.node)));
        }
        h.write(path);
        if searches_anything(creds) {
            h.write_u8(follow as u8 | 2);
        } else {
            h.write_u8(follow as u8);
            h.write_u64(u64::from(creds.uid) << 32 | u64::from(creds.gid));
        }
        h.finish()
    }

    fn shard(&self, hash: u64) -> &RwLock<HashTable<Entry>> {
        &self.shards[(hash >> 32) as usize % SHARDS]
    }

    /// The cached result of walking `path` from `start` (`None`: the root), if the
    /// cache holds a valid one.
    #[inline]
    pub fn get(
        &self,
        start: Option<&Location>,
        path: &[u8],
        follow: bool,
        creds: &Creds,
    ) -> Option<Location> {
        self.find(start, path, follow, creds, |e| {
            Some(Location { mount: e.mount.upgrade()?, node: e.node.upgrade()? })
        })
    }

    /// [`PathCache::get`] for the node alone (stat needs no mount).
    #[inline]
    pub fn get_node(
        &self,
        start: Option<&Location>,
        path: &[u8],
        follow: bool,
        creds: &Creds,
    ) -> Option<NodeRef> {
        self.find(start, path, follow, creds, |e| e.node.upgrade())
    }

    #[inline]
    fn find<T>(
        &self,
        start: Option<&Location>,
        path: &[u8],
        follow: bool,
        creds: &Creds,
        f: impl FnOnce(&Entry) -> Option<T>,
    ) -> Option<T> {
        if path.len() > MAX_CACHED_PATH {
            return None;
        }
        let hash = self.hash(start, path, follow, creds);
        let shard = self.shard(hash).read();
        let e = shard.find(hash, |e| e.hash == hash && e.matches(start, path, follow, creds))?;
        if !e.valid() {
            return None;
        }
        f(e)
    }

    /// Remember that walking `path` from `start` led to `loc`, given the generations
    /// read before the walk (`tree_gen`) and during it (`gens`).
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &self,
        start: Option<&Location>,
        path: &[u8],
        follow: bool,
        creds: &Creds,
        tree_gen: u64,
        gens: Vec<(Arc<Generation>, u64)>,
        loc: &Location,
    ) {
        if path.len() > MAX_CACHED_PATH {
            return;
        }
        let hash = self.hash(start, path, follow, creds);
        let entry = Entry {
            hash,
            start: start.map(|s| (Arc::downgrade(&s.mount), Arc::downgrade(&s.node))),
            path: path.into(),
            follow,
            creds: CredKey::of(creds),
            tree_gen,
            gens: gens.into_boxed_slice(),
            mount: Arc::downgrade(&loc.mount),
            node: Arc::downgrade(&loc.node),
        };
        let mut shard = self.shard(hash).write();
        if let Some(old) = shard.find_mut(hash, |e| e.hash == hash && e.matches(start, path, follow, creds)) {
            *old = entry;
            return;
        }
        if shard.len() >= SHARD_CAPACITY {
            shard.clear();
        }
        shard.insert_unique(hash, entry, |e| e.hash);
    }
}
