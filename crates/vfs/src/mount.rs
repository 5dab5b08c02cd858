//! Mount namespaces: a tree of mounts, each a view of a filesystem (or of one of its
//! directories or files, for bind mounts) with its own flags. Locations pair a node
//! with the mount it was reached through, which is what mount flags, `..` at a mount
//! root and EXDEV depend on.

use crate::attr::FileType;
use crate::cache::{Generation, PathCache, tree_change};
use crate::errno::{Errno, Result};
use crate::node::{Filesystem, NewNode, NodeRef};
use bitflags::bitflags;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

bitflags! {
    /// Per-mount flags.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct MountFlags: u32 {
        /// Read-only: every mutation fails with EROFS.
        const RDONLY = 1 << 0;
        /// Ignore setuid/setgid bits on exec.
        const NOSUID = 1 << 1;
        /// Refuse to open device nodes.
        const NODEV = 1 << 2;
        /// Refuse to execute files.
        const NOEXEC = 1 << 3;
        /// Never update access times.
        const NOATIME = 1 << 4;
    }
}

/// Set while a read-only switch checks for writers (Linux MNT_WRITE_HOLD).
const WRITE_HOLD: u32 = 1 << 31;

/// Identifier of a mount, unique within its namespace.
pub type MountId = u64;

/// One mount: a filesystem, the node that is its root, flags, and its place in a tree.
pub struct Mount {
    id: MountId,
    fs: Arc<dyn Filesystem>,
    /// `fs.generation()`, read once.
    generation: Option<Arc<Generation>>,
    root: NodeRef,
    flags: AtomicU32,
    writers: AtomicU64,
    users: AtomicUsize,
    parent: RwLock<Option<(Arc<Mount>, NodeRef)>>,
    children: RwLock<HashMap<u64, Arc<Mount>>>,
    nchildren: AtomicUsize,
}

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mount")
            .field("id", &self.id)
            .field("fs", &self.fs.name())
            .field("flags", &self.flags())
            .finish()
    }
}

impl Mount {
    /// The mount's id.
    pub fn id(&self) -> MountId {
        self.id
    }
    /// The mounted filesystem.
    pub fn fs(&self) -> &Arc<dyn Filesystem> {
        &self.fs
    }
    /// The node at the mount's root.
    pub fn root(&self) -> &NodeRef {
        &self.root
    }
    /// Current flags.
    pub fn flags(&self) -> MountFlags {
        MountFlags::from_bits_truncate(self.flags.load(Ordering::SeqCst))
    }
    /// The filesystem's change counter, if it has one (for the path cache).
    #[inline]
    pub(crate) fn generation(&self) -> Option<&Arc<Generation>> {
        self.generation.as_ref()
    }
    /// Whether the mount is attached to a parent mount (false for a namespace root).
    pub fn is_connected(&self) -> bool {
        self.parent.read().is_some()
    }

    /// The child mount stacked on `node` of this mount, if any.
    pub(crate) fn child_at(&self, node: &NodeRef) -> Option<Arc<Mount>> {
        if self.nchildren.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.children.read().get(&node.ino()).cloned()
    }

    pub(crate) fn parent(&self) -> Option<(Arc<Mount>, NodeRef)> {
        self.parent.read().clone()
    }

    /// Take write access for one mutation (Linux `mnt_want_write`): EROFS when
    /// read-only. The returned guard releases it.
    pub fn want_write(self: &Arc<Self>) -> Result<WriteGuard> {
        self.writers.fetch_add(1, Ordering::SeqCst);
        loop {
            let f = self.flags.load(Ordering::SeqCst);
            if f & WRITE_HOLD != 0 {
                std::thread::yield_now();
                continue;
            }
            if f & MountFlags::RDONLY.bits() != 0 {
                self.writers.fetch_sub(1, Ordering::SeqCst);
                return Err(Errno::ROFS);
            }
            return Ok(WriteGuard { mount: self.clone() });
        }
    }

    /// Change flags. Switching to read-only fails with EBUSY while a write is in
    /// flight or a file is open for writing, as Linux remount does.
    pub fn set_flags(&self, flags: MountFlags) -> Result<()> {
        // Path walks do not read mount flags, but cached walks are dropped anyway:
        // a mount-tree change, as the path cache counts them.
        let _change = tree_change();
        let old = self.flags();
        if flags.contains(MountFlags::RDONLY) && !old.contains(MountFlags::RDONLY) {
            if self.flags.fetch_or(WRITE_HOLD, Ordering::SeqCst) & WRITE_HOLD != 0 {
                return Err(Errno::BUSY);
            }
            if self.writers.load(Ordering::SeqCst) > 0 {
                self.flags.fetch_and(!WRITE_HOLD, Ordering::SeqCst);
                return Err(Errno::BUSY);
            }
            self.flags.store(flags.bits(), Ordering::SeqCst);
        } else {
            self.flags.store(flags.bits(), Ordering::SeqCst);
        }
        Ok(())
    }

    /// Count a user that keeps the mount busy (an open file).
    pub(crate) fn busy(self: &Arc<Self>) -> BusyGuard {
        self.users.fetch_add(1, Ordering::SeqCst);
        BusyGuard { mount: self.clone() }
    }
}

/// Write access to a mount, held for one mutation or for an open-for-write file.
pub struct WriteGuard {
    mount: Arc<Mount>,
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        self.mount.writers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Keeps a mount busy (EBUSY on a non-detaching unmount) while held.
pub(crate) struct BusyGuard {
    mount: Arc<Mount>,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.mount.users.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A node together with the mount it was reached through.
#[derive(Clone)]
pub struct Location {
    /// The mount.
    pub mount: Arc<Mount>,
    /// The node.
    pub node: NodeRef,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Location(mount {}, ino {})", self.mount.id, self.node.ino())
    }
}

impl Location {
    /// Whether this is the root node of its mount.
    pub fn is_mount_root(&self) -> bool {
        self.node.ino() == self.mount.root.ino()
    }

    /// Cross into mounts stacked on this location, topmost last.
    pub(crate) fn cross_mounts(mut self) -> Location {
        while let Some(child) = self.mount.child_at(&self.node) {
            let node = child.root.clone();
            self.mount = child;
            self.node = node;
        }
        self
    }
}

/// A tree of mounts with one root, the view a sandboxed program has.
pub struct MountNamespace {
    root: Arc<Mount>,
    next_id: AtomicU64,
    tree: Mutex<()>,
    /// Path walks remembered (see the `cache` module).
    pub(crate) cache: PathCache,
}

impl MountNamespace {
    /// A namespace whose root is the root of `fs`.
    pub fn new(fs: Arc<dyn Filesystem>, flags: MountFlags) -> Arc<MountNamespace> {
        let root = Arc::new(new_mount(1, fs.clone(), fs.root(), flags));
        Arc::new(MountNamespace {
            root,
            next_id: AtomicU64::new(2),
            tree: Mutex::new(()),
            cache: PathCache::new(),
        })
    }

    /// The root mount.
    pub fn root_mount(&self) -> &Arc<Mount> {
        &self.root
    }

    /// The namespace root (`/`), after crossing anything mounted on it.
    pub fn root(&self) -> Location {
        Location { mount: self.root.clone(), node: self.root.root.clone() }.cross_mounts()
    }

    /// Whether `loc` is the namespace root (where `..` stays put).
    pub(crate) fn is_root(&self, loc: &Location) -> bool {
        Arc::ptr_eq(&loc.mount, &self.root) && loc.node.ino() == self.root.root.ino()
    }

    /// A mount of `fs` (its root) that is not attached anywhere yet
    /// (runsc's MountDisconnected); attach it with [`MountNamespace::connect`].
    pub fn new_disconnected(&self, fs: Arc<dyn Filesystem>, flags: MountFlags) -> Arc<Mount> {
        let root = fs.root();
        self.new_disconnected_at(fs, root, flags)
    }

    /// A disconnected mount whose root is `root`, a node of `fs` (a bind of part of it).
    pub fn new_disconnected_at(
        &self,
        fs: Arc<dyn Filesystem>,
        root: NodeRef,
        flags: MountFlags,
    ) -> Arc<Mount> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Arc::new(new_mount(id, fs, root, flags))
    }

    /// Attach a disconnected mount at `at` (ConnectMountAt). The mount point's type
    /// must match the mount root's: a directory on a directory, a non-directory on a
    /// non-directory (ENOTDIR otherwise). Stacks on top of an existing mount there.
    pub fn connect(&self, mount: &Arc<Mount>, at: &Location) -> Result<()> {
        let _change = tree_change();
        let _tree = self.tree.lock();
        let at = at.clone().cross_mounts();
        let dir_at = at.node.kind() == FileType::Directory;
        let dir_root = mount.root.kind() == FileType::Directory;
        if dir_at != dir_root {
            return Err(Errno::NOTDIR);
        }
        let mut parent = mount.parent.write();
        if parent.is_some() || Arc::ptr_eq(mount, &self.root) {
            return Err(Errno::BUSY);
        }
        at.mount.children.write().insert(at.node.ino(), mount.clone());
        at.mount.nchildren.fetch_add(1, Ordering::Release);
        *parent = Some((at.mount.clone(), at.node.clone()));
        Ok(())
    }

    /// Mount `fs` at `at`; returns the new mount.
    pub fn mount(&self, fs: Arc<dyn Filesystem>, at: &Location, flags: MountFlags) -> Result<Arc<Mount>> {
        let m = self.new_disconnected(fs, flags);
        self.connect(&m, at)?;
        Ok(m)
    }

    /// Bind-mount `src` (a directory or a single file, with its mount's filesystem)
    /// at `at`.
    pub fn bind(&self, src: &Location, at: &Location, flags: MountFlags) -> Result<Arc<Mount>> {
        let m = self.new_disconnected_at(src.mount.fs.clone(), src.node.clone(), flags);
        self.connect(&m, at)?;
        Ok(m)
    }

    /// Unmount the mount whose root `loc` is. EINVAL if `loc` is not a mount root or
    /// is the namespace root; EBUSY if it has child mounts or open files, unless
    /// `detach` (MNT_DETACH), which removes it from the tree and leaves open files
    /// working.
    pub fn unmount(&self, loc: &Location, detach: bool) -> Result<()> {
        let _change = tree_change();
        let _tree = self.tree.lock();
        let m = &loc.mount;
        if Arc::ptr_eq(m, &self.root) || !loc.is_mount_root() {
            return Err(Errno::INVAL);
        }
        if !detach && (m.nchildren.load(Ordering::SeqCst) > 0 || m.users.load(Ordering::SeqCst) > 0) {
            return Err(Errno::BUSY);
        }
        let Some((parent, point)) = m.parent.write().take() else {
            return Err(Errno::INVAL);
        };
        let mut children = parent.children.write();
        if children.get(&point.ino()).is_some_and(|c| Arc::ptr_eq(c, m)) {
            children.remove(&point.ino());
            parent.nchildren.fetch_sub(1, Ordering::Release);
        }
        Ok(())
    }

    /// Whether `node` in `mount` has something mounted on it, through `mount` or
    /// through another mount of the same filesystem in this namespace (a bind mount
    /// shows the same node): Linux's is_local_mountpoint looks at the dentry, not at
    /// the path it was reached by.
    pub fn is_mount_point(&self, mount: &Arc<Mount>, node: &NodeRef) -> bool {
        if mount.child_at(node).is_some() {
            return true;
        }
        if self.root.nchildren.load(Ordering::Acquire) == 0 {
            return false;
        }
        let ino = node.ino();
        let mut stack = vec![self.root.clone()];
        while let Some(m) = stack.pop() {
            if m.nchildren.load(Ordering::Acquire) == 0 {
                continue;
            }
            let children = m.children.read();
            if Arc::ptr_eq(&m.fs, &mount.fs) && children.contains_key(&ino) {
                return true;
            }
            stack.extend(children.values().cloned());
        }
        false
    }

    /// Create a missing mount point at `path` (absolute, inside this namespace) with
    /// its parents: directories 0755 and, when `kind` is Regular, an empty 0644 file.
    /// Works under read-only mounts: this is setup by the runtime, not a program
    /// write. An existing destination must already be of the right kind (a directory
    /// for a directory mount, a non-directory for a file mount): ENOTDIR/EISDIR.
    /// Symlinks on the way are followed inside the namespace root.
    pub fn make_mount_point(&self, path: &[u8], kind: FileType) -> Result<Location> {
        crate::path::make_mount_point(self, path, kind)
    }

    pub(crate) fn create_unchecked(&self, dir: &Location, name: &[u8], kind: FileType) -> Result<Location> {
        let new = NewNode {
            kind,
            mode: if kind == FileType::Directory { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            rdev: 0,
            target: Vec::new(),
        };
        let node = dir.node.clone().create(name, &new)?;
        Ok(Location { mount: dir.mount.clone(), node })
    }
}

fn new_mount(id: MountId, fs: Arc<dyn Filesystem>, root: NodeRef, flags: MountFlags) -> Mount {
    Mount {
        id,
        generation: fs.generation(),
        fs,
        root,
        flags: AtomicU32::new(flags.bits()),
        writers: AtomicU64::new(0),
        users: AtomicUsize::new(0),
        parent: RwLock::new(None),
        children: RwLock::new(HashMap::new()),
        nchildren: AtomicUsize::new(0),
    }
}
