//! Overlay nodes: one per name looked up, cached for the life of the mount, each
//! holding its upper node (once it exists) and its lower nodes (the topmost one for
//! a non-directory, every merged one for a directory).
//!
//! Locking: the overlay's RwLock serialises namespace changes (write) against
//! lookups that miss the cache (read); copy-ups of data happen outside it, in the
//! work directory, and only the final rename into place takes it. A node's own
//! mutexes are leaf locks.

use crate::lower::Lower;
use crate::{Inner, OPAQUE_XATTR, WHITEOUT_XATTR, is_private_xattr};
use parking_lot::Mutex;
use sandfs_vfs::{
    Attr, DirEntry, Errno, FileFlags, FileType, Handle, NewNode, Node, NodeRef, OpenFlags, RenameFlags,
    Result, SetAttr, XattrFlags,
};
use std::collections::HashMap;
use std::sync::{Arc, Weak};

/// A node's containing directory and its name there.
pub(crate) type Placement = (Arc<ONode>, Arc<[u8]>);

/// A node of the overlay.
pub struct ONode {
    pub(crate) me: Weak<ONode>,
    pub(crate) fs: Arc<Inner>,
    pub(crate) ino: u64,
    pub(crate) kind: FileType,
    /// Containing directory and name (None for the root).
    pub(crate) parent: Mutex<Option<Placement>>,
    /// The upper node. For a name of a lower hard-linked file (`key`), whose upper
    /// node is its index entry's: the copy once this name has an upper entry.
    pub(crate) upper: Mutex<Option<NodeRef>>,
    pub(crate) lowers: Mutex<Vec<Lower>>,
    pub(crate) opaque: Mutex<bool>,
    pub(crate) copy_lock: Mutex<()>,
    /// The index key of a lower hard-linked file (see [`crate::Slot`], which holds the
    /// upper node and link count of every name's node).
    pub(crate) key: Option<(u8, u64)>,
    /// Cached children and listing cookies: directories only (a file's node stays
    /// small; there are many).
    dir_state: Option<Box<Mutex<crate::dir::DirState>>>,
}

/// Whether an upper-layer node is one of the overlay's whiteouts.
pub fn is_whiteout(n: &NodeRef) -> bool {
    n.kind() == FileType::CharDevice
        && n.attr().map(|a| a.rdev == 0).unwrap_or(false)
        && n.getxattr(WHITEOUT_XATTR).is_ok()
}

/// Whether an upper-layer directory is marked opaque.
pub fn is_opaque(n: &NodeRef) -> bool {
    n.kind() == FileType::Directory && n.getxattr(OPAQUE_XATTR).map(|v| v == b"y").unwrap_or(false)
}

pub(crate) fn lower_is_whiteout(l: &Lower) -> bool {
    l.kind() == FileType::CharDevice
        && l.attr().map(|a| a.rdev == 0).unwrap_or(false)
        && l.getxattr(WHITEOUT_XATTR).is_ok()
}

fn lower_is_opaque(l: &Lower) -> bool {
    l.kind() == FileType::Directory && l.getxattr(OPAQUE_XATTR).map(|v| v == b"y").unwrap_or(false)
}

/// What a name resolves to across the layers.
pub(crate) struct Found {
    pub upper: Option<NodeRef>,
    pub lowers: Vec<Lower>,
    pub opaque: bool,
    /// An upper whiteout sits at the name.
    pub whiteout: bool,
    /// Some lower layer has the name (visible or not from here).
    pub in_lower: bool,
}

impl ONode {
    pub(crate) fn new_root(
        fs: &Arc<Inner>,
        ino: u64,
        kind: FileType,
        upper: NodeRef,
        lowers: Vec<Lower>,
    ) -> Arc<ONode> {
        ONode::build(fs, ino, kind, None, Some(upper), lowers, false, None)
    }

    #[expect(clippy::too_many_arguments, reason = "private constructor: one argument per field")]
    fn build(
        fs: &Arc<Inner>,
        ino: u64,
        kind: FileType,
        parent: Option<Placement>,
        upper: Option<NodeRef>,
        lowers: Vec<Lower>,
        opaque: bool,
        key: Option<(u8, u64)>,
    ) -> Arc<ONode> {
        Arc::new_cyclic(|me| ONode {
            me: me.clone(),
            fs: fs.clone(),
            ino,
            kind,
            parent: Mutex::new(parent),
            upper: Mutex::new(upper),
            lowers: Mutex::new(lowers),
            opaque: Mutex::new(opaque),
            copy_lock: Mutex::new(()),
            key,
            dir_state: (kind == FileType::Directory).then(Default::default),
        })
    }

    /// The directory state (`None` for anything but a directory).
    pub(crate) fn dir(&self) -> Option<parking_lot::MutexGuard<'_, crate::dir::DirState>> {
        self.dir_state.as_ref().map(|d| d.lock())
    }

    /// A node of this same overlay (EXDEV otherwise).
    fn downcast(&self, n: &NodeRef) -> Result<Arc<ONode>> {
        let o = sandfs_vfs::downcast::<ONode>(n)?;
        if !Arc::ptr_eq(&o.fs, &self.fs) {
            return Err(Errno::XDEV);
        }
        Ok(o)
    }

    pub(crate) fn arc(&self) -> Result<Arc<ONode>> {
        self.me.upgrade().ok_or(Errno::STALE)
    }

    /// The upper node, if copied up.
    pub fn upper(&self) -> Option<NodeRef> {
        if let Some(key) = self.key {
            return self.fs.index.lock().slots.get(&key).and_then(|s| s.upper.clone());
        }
        self.upper.lock().clone()
    }

    fn top_lower(&self) -> Option<Lower> {
        self.lowers.lock().first().cloned()
    }

    /// Look `name` up through the layers below this directory (caller holds the
    /// overlay lock, read or write).
    pub(crate) fn find(&self, name: &[u8]) -> Result<Found> {
        let mut f =
            Found { upper: None, lowers: Vec::new(), opaque: false, whiteout: false, in_lower: false };
        let mut stop = false;
        let mut first_kind = None;
        if let Some(u) = self.upper() {
            match u.lookup(name) {
                Ok(c) if is_whiteout(&c) => {
                    f.whiteout = true;
                    stop = true;
                }
                Ok(c) => {
                    first_kind = Some(c.kind());
                    if c.kind() != FileType::Directory || is_opaque(&c) {
                        f.opaque = c.kind() == FileType::Directory;
                        stop = true;
                    }
                    f.upper = Some(c);
                }
                Err(e) if e == Errno::NOENT => {}
                Err(e) => return Err(e),
            }
        }
        let opaque_here = *self.opaque.lock();
        let lowers = self.lowers.lock().clone();
        for (i, l) in lowers.iter().enumerate() {
            if l.kind() != FileType::Directory {
                break;
            }
            // Opacity only hides layers further down: the last one's is not asked
            // (for a gofer-backed layer, a message per directory).
            let below = i + 1 < lowers.len();
            let c = match l.lookup(name) {
                Ok(c) => c,
                Err(e) if e == Errno::NOENT => continue,
                Err(e) => return Err(e),
            };
            f.in_lower = true;
            if stop || opaque_here || lower_is_whiteout(&c) {
                break;
            }
            match first_kind {
                None => {
                    first_kind = Some(c.kind());
                    let dir = c.kind() == FileType::Directory;
                    let opaque = below && lower_is_opaque(&c);
                    f.lowers.push(c);
                    if !dir || opaque {
                        stop = true;
                    }
                }
                Some(FileType::Directory) if c.kind() == FileType::Directory => {
                    let opaque = below && lower_is_opaque(&c);
                    f.lowers.push(c);
                    if opaque {
                        stop = true;
                    }
                }
                Some(_) => stop = true,
            }
        }
        Ok(f)
    }

    /// The child named `name`, from the cache or the layers.
    pub(crate) fn child(&self, name: &[u8]) -> Result<Arc<ONode>> {
        if let Some(c) = self.dir().ok_or(Errno::NOTDIR)?.children.get(name) {
            return Ok(c.clone());
        }
        let _r = self.fs.lock.read();
        self.child_locked(name)
    }

    /// [`ONode::child`] with the overlay lock already held.
    pub(crate) fn child_locked(&self, name: &[u8]) -> Result<Arc<ONode>> {
        if let Some(c) = self.dir().ok_or(Errno::NOTDIR)?.children.get(name) {
            return Ok(c.clone());
        }
        let f = self.find(name)?;
        match (&f.upper, f.lowers.first()) {
            (None, Some(l)) if l.kind() != FileType::Directory => {
                let nlink = l.attr()?.nlink;
                if nlink > 1 {
                    let key = (1 + l.layer(), l.ino());
                    return self.indexed_child(name, Some(l.clone()), None, key, nlink);
                }
            }
            // A name linked to an index entry's copy.
            (Some(u), _) if u.kind() != FileType::Directory && u.attr()?.nlink > 1 => {
                let key = self.fs.index.lock().by_upper.get(&u.ino()).copied();
                if let Some(key) = key {
                    return self.indexed_child(name, None, Some(u.clone()), key, 0);
                }
            }
            _ => {}
        }
        let (kind, layer, real) = match (&f.upper, f.lowers.first()) {
            (_, Some(l)) => (l.kind(), 1 + l.layer(), l.ino()),
            (Some(u), None) => (u.kind(), 0, u.ino()),
            (None, None) => return Err(Errno::NOENT),
        };
        let kind = f.upper.as_ref().map(|u| u.kind()).unwrap_or(kind);
        let ino = self.fs.ino(layer, real);
        // One allocation of the name, shared by the cache key and the node.
        let key: Arc<[u8]> = name.into();
        let node = ONode::build(
            &self.fs,
            ino,
            kind,
            Some((self.arc()?, key.clone())),
            f.upper,
            f.lowers,
            f.opaque,
            None,
        );
        if let Some(mut d) = self.dir() {
            d.children.insert(key, node.clone());
        }
        Ok(node)
    }

    /// The node of `name`, a name of the lower hard-linked file `key` (`lower` its
    /// lower node, or `linked` its upper entry, a link to the copy; `nlink` the lower
    /// link count): its index entry made if new.
    fn indexed_child(
        &self,
        name: &[u8],
        lower: Option<Lower>,
        linked: Option<NodeRef>,
        key: (u8, u64),
        nlink: u64,
    ) -> Result<Arc<ONode>> {
        let name: Arc<[u8]> = name.into();
        let kind = {
            let mut index = self.fs.index.lock();
            let slot = index.slots.entry(key).or_insert_with(|| crate::Slot {
                copy: Default::default(),
                upper: None,
                work_name: None,
                nlink,
            });
            match (&slot.upper, &lower) {
                (Some(u), _) => u.kind(),
                (None, Some(l)) => l.kind(),
                (None, None) => return Err(Errno::STALE),
            }
        };
        let ino = self.fs.ino(key.0, key.1);
        let lowers = lower.into_iter().collect();
        let node = ONode::build(
            &self.fs,
            ino,
            kind,
            Some((self.arc()?, name.clone())),
            linked,
            lowers,
            false,
            Some(key),
        );
        self.cache(name, node.clone());
        Ok(node)
    }

    /// Whether `other` is this node or another name of the same lower hard-linked
    /// file.
    fn same_inode(&self, other: &ONode) -> bool {
        std::ptr::eq(self, other) || (self.key.is_some() && self.key == other.key)
    }

    /// Whether this directory's cached child `name` is `child`.
    fn holds(&self, name: &[u8], child: &ONode) -> bool {
        self.dir().is_some_and(|d| d.children.get(name).is_some_and(|c| std::ptr::eq(c.as_ref(), child)))
    }

    /// Give `child`, a lower hard-linked file already copied up (into the index),
    /// an upper entry at its name `name` in this directory if it has none yet: a
    /// link to the copy. Nothing to do for other nodes.
    pub(crate) fn link_up(&self, name: &[u8], child: &ONode) -> Result<()> {
        if child.key.is_none() {
            return Ok(());
        }
        let Some(u) = child.upper() else { return Ok(()) };
        let udir = self.copy_up()?;
        let _w = self.fs.lock.write();
        if !self.holds(name, child) {
            return Ok(());
        }
        match udir.lookup(name) {
            Ok(_) => {}
            Err(e) if e == Errno::NOENT => udir.link(name, &u)?,
            Err(e) => return Err(e),
        }
        *child.upper.lock() = Some(u);
        Ok(())
    }

    /// Add `delta` names to an indexed node's merged link count; at none left its
    /// copy leaves the work directory.
    fn count_links(&self, delta: i64) {
        let Some(key) = self.key else { return };
        let mut index = self.fs.index.lock();
        let Some(slot) = index.slots.get_mut(&key) else { return };
        slot.nlink = slot.nlink.saturating_add_signed(delta);
        if slot.nlink == 0
            && let Some(w) = slot.work_name.take()
        {
            // No name left: the work directory lets go of the copy (its data lives
            // as long as the slot, for files still open).
            let _ = self.fs.work.unlink(&w);
        }
    }

    /// The attributes the merged view shows, from those of the layer's node.
    fn merged_attr(&self, mut a: Attr) -> Attr {
        if let Some(key) = self.key
            && let Some(slot) = self.fs.index.lock().slots.get(&key)
        {
            a.nlink = slot.nlink;
        }
        a.ino = self.ino;
        a.dev = self.fs.dev;
        a
    }

    /// `r`, after this node's lower file turned out gone (ESTALE: the host replaced
    /// the file under its name, and a gofer-backed layer that knew it by name only
    /// found another one there): while nothing is copied up, its directory forgets
    /// this node under its name, so the next lookup (the kernel walks again once
    /// after ESTALE) finds the file the name has now.
    pub(crate) fn forget_if_stale<T>(&self, r: Result<T>) -> Result<T> {
        if matches!(r, Err(e) if e == Errno::STALE) && self.upper().is_none() {
            let placement = self.parent.lock().clone();
            if let Some((dir, name)) = placement {
                let _w = self.fs.lock.write();
                if dir.holds(&name, self) {
                    dir.uncache(&name);
                }
            }
        }
        r
    }

    /// Cache `child` under `name` in this directory.
    pub(crate) fn cache(&self, name: Arc<[u8]>, child: Arc<ONode>) {
        if let Some(mut d) = self.dir() {
            d.children.insert(name, child);
        }
    }

    pub(crate) fn uncache(&self, name: &[u8]) -> Option<Arc<ONode>> {
        self.dir()?.children.remove(name)
    }

    /// Make a whiteout at `name` in upper directory `udir`.
    pub(crate) fn make_whiteout(udir: &NodeRef, name: &[u8]) -> Result<()> {
        let new =
            NewNode { kind: FileType::CharDevice, mode: 0, uid: 0, gid: 0, rdev: 0, target: Vec::new() };
        let wo = udir.clone().create(name, &new)?;
        if let Err(e) = wo.setxattr(WHITEOUT_XATTR, b"y", XattrFlags::empty()) {
            let _ = udir.unlink(name);
            return Err(e);
        }
        Ok(())
    }

    fn set_opaque(&self, udir: &NodeRef) -> Result<()> {
        udir.setxattr(OPAQUE_XATTR, b"y", XattrFlags::empty())?;
        *self.opaque.lock() = true;
        self.lowers.lock().clear();
        Ok(())
    }

    fn writing(flags: OpenFlags) -> bool {
        flags.intersects(OpenFlags::WRITE | OpenFlags::TRUNC | OpenFlags::APPEND)
    }

    /// Remove the upper entry `name` of directory `udir` if it is a whiteout.
    fn clear_whiteout(udir: &NodeRef, name: &[u8]) -> Result<bool> {
        match udir.lookup(name) {
            Ok(n) if is_whiteout(&n) => {
                udir.unlink(name)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Whether this directory shows no entries.
    fn is_empty_merged(&self) -> Result<bool> {
        let mut empty = true;
        self.readdir(0, &mut |_| {
            empty = false;
            false
        })?;
        Ok(empty)
    }

    /// Empty the upper directory of a merged directory that shows nothing (it can
    /// hold only whiteouts), so it can be removed or replaced.
    fn purge_whiteouts(udir: &NodeRef) -> Result<()> {
        let mut names = Vec::new();
        udir.readdir(0, &mut |e| {
            names.push(e.name.to_vec());
            true
        })?;
        for n in names {
            udir.unlink(&n)?;
        }
        Ok(())
    }
}

impl Node for ONode {
    fn ino(&self) -> u64 {
        self.ino
    }

    fn kind(&self) -> FileType {
        self.kind
    }

    fn attr(&self) -> Result<Attr> {
        let a = match self.upper() {
            Some(u) => {
                let mut a = u.attr()?;
                // A merged directory's link count is unknown; like overlayfs, say 1
                // (which find(1) understands).
                if self.kind == FileType::Directory && !self.lowers.lock().is_empty() {
                    a.nlink = 1;
                }
                a
            }
            None => self.top_lower().ok_or(Errno::STALE)?.attr()?,
        };
        Ok(self.merged_attr(a))
    }

    fn setattr(&self, set: &SetAttr) -> Result<Attr> {
        let u = self.copy_up()?;
        let a = u.setattr(set)?;
        Ok(self.merged_attr(a))
    }

    fn lookup(&self, name: &[u8]) -> Result<NodeRef> {
        self.child(name).map(|c| c as NodeRef)
    }

    fn parent(&self) -> Option<NodeRef> {
        self.parent.lock().as_ref().map(|(p, _)| p.clone() as NodeRef)
    }

    fn create(self: Arc<Self>, name: &[u8], new: &NewNode) -> Result<NodeRef> {
        // EEXIST before anything is copied up. The lower layers cannot change, so what
        // this finds there holds; a racing create in the upper layer gets EEXIST from
        // the upper create below.
        let f = {
            let _r = self.fs.lock.read();
            if self.dir().is_some_and(|d| d.children.contains_key(name)) {
                return Err(Errno::EXIST);
            }
            self.find(name)?
        };
        if f.upper.is_some() || !f.lowers.is_empty() {
            return Err(Errno::EXIST);
        }
        let udir = self.copy_up()?;
        let _w = self.fs.lock.write();
        let had_whiteout = Self::clear_whiteout(&udir, name)?;
        let child = match udir.clone().create(name, new) {
            Ok(c) => c,
            Err(e) => {
                if had_whiteout {
                    let _ = Self::make_whiteout(&udir, name);
                }
                return Err(e);
            }
        };
        let mut opaque = false;
        if new.kind == FileType::Directory && (had_whiteout || f.in_lower) {
            child.setxattr(OPAQUE_XATTR, b"y", XattrFlags::empty())?;
            opaque = true;
        }
        let ino = self.fs.ino(0, child.ino());
        let key: Arc<[u8]> = name.into();
        let node = ONode::build(
            &self.fs,
            ino,
            new.kind,
            Some((self.clone(), key.clone())),
            Some(child),
            Vec::new(),
            opaque,
            None,
        );
        self.cache(key, node.clone());
        Ok(node)
    }

    fn link(&self, name: &[u8], target: &NodeRef) -> Result<()> {
        let t = self.downcast(target)?;
        let tu = t.copy_up()?;
        let udir = self.copy_up()?;
        let _w = self.fs.lock.write();
        if self.child_locked(name).is_ok() {
            return Err(Errno::EXIST);
        }
        let had_whiteout = Self::clear_whiteout(&udir, name)?;
        if let Err(e) = udir.link(name, &tu) {
            if had_whiteout {
                let _ = Self::make_whiteout(&udir, name);
            }
            return Err(e);
        }
        t.count_links(1);
        self.cache(name.into(), t);
        Ok(())
    }

    fn unlink(&self, name: &[u8]) -> Result<()> {
        self.remove(name, false)
    }

    fn rmdir(&self, name: &[u8]) -> Result<()> {
        self.remove(name, true)
    }

    fn rename(
        self: Arc<Self>,
        name: &[u8],
        new_dir: &NodeRef,
        new_name: &[u8],
        flags: RenameFlags,
    ) -> Result<()> {
        let nd = self.downcast(new_dir)?;
        if flags.contains(RenameFlags::WHITEOUT) {
            return Err(Errno::INVAL);
        }
        let src = self.child(name)?;
        let dst = nd.child(new_name).ok();
        if let Some(d) = &dst
            && d.same_inode(&src)
        {
            return Ok(());
        }
        // A full directory target fails before any copy-up, as on overlayfs (checked
        // again under the lock below; the vfs refused NOREPLACE onto a name already).
        if let Some(d) = &dst
            && !flags.contains(RenameFlags::EXCHANGE)
            && d.kind == FileType::Directory
            && !d.is_empty_merged()?
        {
            return Err(Errno::NOTEMPTY);
        }
        // Copy-ups first (they take the overlay lock themselves). A directory that
        // has lower layers moves whole: copied up with everything in it, then opaque.
        let ou = self.copy_up()?;
        let nu = nd.copy_up()?;
        // A name of a lower hard-linked file replaced: copied up first, as on unlink.
        if let Some(d) = &dst
            && !flags.contains(RenameFlags::EXCHANGE)
            && d.key.is_some()
            && d.upper().is_none()
        {
            d.copy_up()?;
        }
        src.copy_up_for_move()?;
        self.link_up(name, &src)?;
        if flags.contains(RenameFlags::EXCHANGE)
            && let Some(d) = &dst
        {
            d.copy_up_for_move()?;
            nd.link_up(new_name, d)?;
        }
        let _w = self.fs.lock.write();
        let src_in_lower = self.find(name)?.in_lower;
        let f = nd.find(new_name)?;
        let dst_in_lower = f.in_lower;
        if flags.contains(RenameFlags::NOREPLACE) && (f.upper.is_some() || !f.lowers.is_empty()) {
            return Err(Errno::EXIST);
        }
        if flags.contains(RenameFlags::EXCHANGE) {
            let dst = dst.ok_or(Errno::NOENT)?;
            ou.clone().rename(name, &nu, new_name, RenameFlags::EXCHANGE)?;
            for (node, to_dir, to_name, in_lower) in
                [(&src, &nd, new_name, dst_in_lower), (&dst, &self, name, src_in_lower)]
            {
                if node.kind == FileType::Directory
                    && in_lower
                    && !*node.opaque.lock()
                    && let Some(u) = node.upper()
                {
                    node.set_opaque(&u)?;
                }
                *node.parent.lock() = Some((to_dir.clone(), to_name.into()));
            }
            self.uncache(name);
            nd.uncache(new_name);
            nd.cache(new_name.into(), src);
            self.cache(name.into(), dst);
            return Ok(());
        }
        // Replacing a directory: it must show nothing; its upper may hold whiteouts.
        if let Some(d) = &dst
            && d.kind == FileType::Directory
        {
            if !d.is_empty_merged()? {
                return Err(Errno::NOTEMPTY);
            }
            if let Some(du) = d.upper() {
                Self::purge_whiteouts(&du)?;
            }
        }
        let had_whiteout = Self::clear_whiteout(&nu, new_name)?;
        if let Err(e) = ou.clone().rename(name, &nu, new_name, RenameFlags::empty()) {
            if had_whiteout {
                let _ = Self::make_whiteout(&nu, new_name);
            }
            return Err(e);
        }
        if src_in_lower {
            Self::make_whiteout(&ou, name)?;
        }
        if src.kind == FileType::Directory
            && (dst_in_lower || had_whiteout)
            && !*src.opaque.lock()
            && let Some(u) = src.upper()
        {
            src.set_opaque(&u)?;
        }
        if let Some(d) = &dst {
            d.count_links(-1);
        }
        let key: Arc<[u8]> = new_name.into();
        *src.parent.lock() = Some((nd.clone(), key.clone()));
        self.uncache(name);
        nd.uncache(new_name);
        nd.cache(key, src);
        Ok(())
    }

    fn readdir(&self, after: u64, sink: &mut dyn FnMut(DirEntry<'_>) -> bool) -> Result<()> {
        crate::dir::readdir(self, after, sink)
    }

    /// A read never copies up: the upper node records it, a lower one stays as is
    /// (as overlayfs).
    fn touch_atime(&self) {
        if let Some(u) = self.upper() {
            u.touch_atime();
        }
    }

    fn readlink(&self) -> Result<Vec<u8>> {
        match self.upper() {
            Some(u) => u.readlink(),
            None => self.top_lower().ok_or(Errno::STALE)?.readlink(),
        }
    }

    fn open(self: Arc<Self>, flags: OpenFlags) -> Result<Arc<dyn Handle>> {
        if Self::writing(flags) {
            return self.copy_up()?.open(flags);
        }
        match self.upper() {
            Some(u) => u.open(flags),
            // Reads the lower file until the file is copied up, then the copy.
            None => {
                let lower = self.top_lower().ok_or(Errno::STALE)?;
                let r = crate::reader::Reader::open(self.clone(), &lower);
                Ok(Arc::new(self.forget_if_stale(r)?))
            }
        }
    }

    fn getxattr(&self, name: &[u8]) -> Result<Vec<u8>> {
        if is_private_xattr(name) {
            return Err(Errno::NODATA);
        }
        match self.upper() {
            Some(u) => u.getxattr(name),
            None => self.top_lower().ok_or(Errno::STALE)?.getxattr(name),
        }
    }

    fn file_flags(&self) -> Result<FileFlags> {
        match self.upper() {
            Some(u) => match u.file_flags() {
                Err(e) if e == Errno::NOTTY => Ok(FileFlags::empty()),
                r => r,
            },
            None => self.top_lower().ok_or(Errno::STALE)?.file_flags(),
        }
    }

    fn set_file_flags(&self, flags: FileFlags) -> Result<()> {
        self.copy_up()?.set_file_flags(flags)
    }

    fn setxattr(&self, name: &[u8], value: &[u8], flags: XattrFlags) -> Result<()> {
        if is_private_xattr(name) {
            return Err(Errno::PERM);
        }
        self.copy_up_inode()?.setxattr(name, value, flags)
    }

    fn listxattr(&self) -> Result<Vec<Vec<u8>>> {
        let mut names = match self.upper() {
            Some(u) => u.listxattr()?,
            None => self.top_lower().ok_or(Errno::STALE)?.listxattr()?,
        };
        names.retain(|n| !is_private_xattr(n));
        Ok(names)
    }

    fn removexattr(&self, name: &[u8]) -> Result<()> {
        if is_private_xattr(name) {
            return Err(Errno::PERM);
        }
        // Removing what is not there changes nothing: no copy-up (as overlayfs).
        if self.upper().is_none() {
            self.top_lower().ok_or(Errno::STALE)?.getxattr(name)?;
        }
        self.copy_up_inode()?.removexattr(name)
    }
}

impl ONode {
    fn remove(&self, name: &[u8], is_rmdir: bool) -> Result<()> {
        let child = self.child(name)?;
        let check = || -> Result<()> {
            if is_rmdir {
                if child.kind != FileType::Directory {
                    return Err(Errno::NOTDIR);
                }
                if !child.is_empty_merged()? {
                    return Err(Errno::NOTEMPTY);
                }
            } else if child.kind == FileType::Directory {
                return Err(Errno::ISDIR);
            }
            Ok(())
        };
        // Refuse before copying anything up, and again once the lock is held.
        check()?;
        // A name of a lower hard-linked file: the file is copied up first, as
        // overlayfs makes its index entry before a whiteout changes the link count
        // (later changes through the other names then find the copy made).
        if child.key.is_some() && child.upper().is_none() {
            child.copy_up()?;
        }
        let udir = self.copy_up()?;
        let _w = self.fs.lock.write();
        let f = self.find(name)?;
        check()?;
        if let Some(u) = &f.upper {
            if is_rmdir {
                Self::purge_whiteouts(u)?;
                udir.rmdir(name)?;
            } else {
                udir.unlink(name)?;
            }
        }
        if f.in_lower {
            Self::make_whiteout(&udir, name)?;
        }
        if !is_rmdir {
            child.count_links(-1);
        }
        self.uncache(name);
        Ok(())
    }
}

/// Map of children, kept by [`crate::dir::DirState`].
pub(crate) type Children = HashMap<Arc<[u8]>, Arc<ONode>>;
