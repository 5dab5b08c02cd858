//! Inodes of the tmpfs and their vfs [`Node`] implementation.
//!
//! Lock order: a directory before its entries; two directories (cross-directory
//! rename, under the filesystem's rename lock) ancestor first, otherwise by inode
//! number. Never two non-directory inodes at once.

use crate::data::FileData;
use crate::dir::DirData;
use crate::xattr::Xattrs;
use crate::{Shared, dirent_cost};
use parking_lot::{RwLock, RwLockWriteGuard};
use sandfs_vfs::{
    Attr, DirEntry, Errno, FallocFlags, FileFlags, FileType, Handle, NewNode, Node, NodeRef, OpenFlags,
    RenameFlags, Result, SetAttr, TimeSet, Timespec, Whence, XattrFlags,
};
use std::sync::{Arc, Weak};

/// Size a directory reports per entry, as kernel tmpfs (BOGO_DIRENT_SIZE).
const BOGO_DIRENT: u64 = 20;

enum Body {
    File(FileData),
    Dir(Box<DirData>),
    Symlink(Box<[u8]>),
    Dev(u64),
    Other,
}

struct State {
    mode: u16,
    /// Attribute flags ([`FileFlags`] bits; all of them fit in a byte).
    flags: u8,
    nlink: u32,
    uid: u32,
    gid: u32,
    atime: i64,
    mtime: i64,
    ctime: i64,
    btime: i64,
    xattrs: Option<Box<Xattrs>>,
    body: Body,
}

impl State {
    fn dir(&self) -> Result<&DirData> {
        match &self.body {
            Body::Dir(d) => Ok(d),
            _ => Err(Errno::NOTDIR),
        }
    }
    fn dir_mut(&mut self) -> Result<&mut DirData> {
        match &mut self.body {
            Body::Dir(d) => Ok(d),
            _ => Err(Errno::NOTDIR),
        }
    }
    fn file(&mut self) -> Result<&mut FileData> {
        match &mut self.body {
            Body::File(f) => Ok(f),
            Body::Dir(_) => Err(Errno::ISDIR),
            _ => Err(Errno::INVAL),
        }
    }
    /// A live directory (not removed) that can take new entries.
    fn live_dir_mut(&mut self) -> Result<&mut DirData> {
        if self.nlink == 0 {
            return Err(Errno::NOENT);
        }
        self.dir_mut()
    }
    fn touch_dir(&mut self, now: i64) {
        self.mtime = now;
        self.ctime = now;
    }
}

fn now() -> i64 {
    Timespec::now().as_nanos()
}

/// One tmpfs inode.
pub struct Inode {
    ino: u64,
    kind: FileType,
    fs: Arc<Shared>,
    state: RwLock<State>,
}

impl Inode {
    fn build(fs: &Arc<Shared>, new: &NewNode, parent: Weak<Inode>) -> Result<Arc<Inode>> {
        let target = if new.kind == FileType::Symlink { new.target.len() as u64 } else { 0 };
        fs.charge_inode(target)?;
        let t = now();
        let (nlink, body) = match new.kind {
            FileType::Regular => (1, Body::File(FileData::default())),
            FileType::Directory => (2, Body::Dir(Box::new(DirData::new(parent)))),
            FileType::Symlink => (1, Body::Symlink(new.target.clone().into_boxed_slice())),
            FileType::CharDevice | FileType::BlockDevice => (1, Body::Dev(new.rdev)),
            FileType::Fifo | FileType::Socket => (1, Body::Other),
        };
        Ok(Arc::new(Inode {
            ino: fs.alloc_ino(),
            kind: new.kind,
            fs: fs.clone(),
            state: RwLock::new(State {
                mode: (new.mode & 0o7777) as u16,
                flags: 0,
                nlink,
                uid: new.uid,
                gid: new.gid,
                atime: t,
                mtime: t,
                ctime: t,
                btime: t,
                xattrs: None,
                body,
            }),
        }))
    }

    pub(crate) fn new_root(
        fs: &Arc<Shared>,
        kind: FileType,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<Arc<Inode>> {
        let new = NewNode { kind, mode, uid, gid, rdev: 0, target: Vec::new() };
        Inode::build(fs, &new, Weak::new())
    }

    /// A node of this same tmpfs (EXDEV otherwise).
    fn downcast(&self, node: &NodeRef) -> Result<Arc<Inode>> {
        let inode = sandfs_vfs::downcast::<Inode>(node)?;
        if !Arc::ptr_eq(&inode.fs, &self.fs) {
            return Err(Errno::XDEV);
        }
        Ok(inode)
    }

    fn parent_inode(&self) -> Option<Arc<Inode>> {
        match &self.state.read().body {
            Body::Dir(d) => d.parent.upgrade(),
            _ => None,
        }
    }

    /// Whether `self` is `other` or one of its ancestors. Only meaningful while the
    /// rename lock holds the directory tree's shape still.
    fn is_ancestor_of(self: &Arc<Self>, other: &Arc<Inode>) -> bool {
        let mut cur = Some(other.clone());
        while let Some(c) = cur {
            if Arc::ptr_eq(&c, self) {
                return true;
            }
            cur = c.parent_inode();
        }
        false
    }

    fn lock_two<'a>(
        a: &'a Arc<Inode>,
        b: &'a Arc<Inode>,
        a_first: bool,
    ) -> (RwLockWriteGuard<'a, State>, RwLockWriteGuard<'a, State>) {
        if a_first {
            let ga = a.state.write();
            (ga, b.state.write())
        } else {
            let gb = b.state.write();
            (a.state.write(), gb)
        }
    }

    /// Drop a link from `victim` (replaced or removed entry); a directory becomes dead.
    /// Returns whether it was a directory. ENOTEMPTY for a non-empty directory.
    fn drop_link(victim: &Inode, t: i64, check_only: bool) -> Result<bool> {
        let mut v = victim.state.write();
        let is_dir = matches!(v.body, Body::Dir(_));
        if is_dir && v.dir()?.len() > 0 {
            return Err(Errno::NOTEMPTY);
        }
        if check_only {
            return Ok(is_dir);
        }
        v.nlink = if is_dir { 0 } else { v.nlink.saturating_sub(1) };
        v.ctime = t;
        Ok(is_dir)
    }

    fn whiteout(&self) -> Result<Arc<Inode>> {
        let new =
            NewNode { kind: FileType::CharDevice, mode: 0, uid: 0, gid: 0, rdev: 0, target: Vec::new() };
        Inode::build(&self.fs, &new, Weak::new())
    }

    fn rename_same_dir(self: &Arc<Self>, name: &[u8], new_name: &[u8], flags: RenameFlags) -> Result<()> {
        let wo = if flags.contains(RenameFlags::WHITEOUT) { Some(self.whiteout()?) } else { None };
        let entries = self.fs.reserve(rename_reserve(name, new_name, flags))?;
        let mut st = self.state.write();
        let d = st.live_dir_mut()?;
        let src = d.get(name).cloned().ok_or(Errno::NOENT)?;
        let dst = d.get(new_name).cloned();
        let t = now();
        if let Some(dst) = &dst
            && Arc::ptr_eq(dst, &src)
        {
            return Ok(());
        }
        if flags.contains(RenameFlags::EXCHANGE) {
            let dst = dst.ok_or(Errno::NOENT)?;
            d.replace(name, dst.clone());
            d.replace(new_name, src.clone());
            dst.state.write().ctime = t;
        } else {
            let gone = dirent_cost(name) + if dst.is_some() { dirent_cost(new_name) } else { 0 };
            match &dst {
                Some(dst) => {
                    check_replace(&src, dst)?;
                    let was_dir = Inode::drop_link(dst, t, false)?;
                    d.replace(new_name, src.clone());
                    d.remove(name);
                    if was_dir {
                        st.nlink -= 1;
                    }
                }
                None => {
                    d.rename_in_place(name, new_name);
                }
            }
            if let Some(wo) = wo {
                st.dir_mut()?.insert(name, wo);
            }
            entries.keep();
            self.fs.uncharge(gone);
        }
        st.touch_dir(t);
        drop(st);
        src.state.write().ctime = t;
        Ok(())
    }

    fn rename_cross(
        self: &Arc<Self>,
        name: &[u8],
        ndir: &Arc<Inode>,
        new_name: &[u8],
        flags: RenameFlags,
    ) -> Result<()> {
        let _shape = self.fs.rename_lock.lock();
        let exchange = flags.contains(RenameFlags::EXCHANGE);
        let wo = if flags.contains(RenameFlags::WHITEOUT) { Some(self.whiteout()?) } else { None };
        let entries = self.fs.reserve(rename_reserve(name, new_name, flags))?;
        loop {
            let src0 = self.state.read().dir()?.get(name).cloned().ok_or(Errno::NOENT)?;
            let dst0 = ndir.state.read().dir()?.get(new_name).cloned();
            if src0.kind == FileType::Directory && src0.is_ancestor_of(ndir) {
                return Err(Errno::INVAL);
            }
            if let Some(d) = &dst0
                && d.kind == FileType::Directory
                && d.is_ancestor_of(self)
            {
                return Err(if exchange { Errno::INVAL } else { Errno::NOTEMPTY });
            }
            let self_first = if self.is_ancestor_of(ndir) {
                true
            } else if ndir.is_ancestor_of(self) {
                false
            } else {
                self.ino < ndir.ino
            };
            let (mut os, mut ns) = Inode::lock_two(self, ndir, self_first);
            let src = os.live_dir_mut()?.get(name).cloned();
            let dst = ns.live_dir_mut()?.get(new_name).cloned();
            let same = |a: &Option<Arc<Inode>>, b: &Option<Arc<Inode>>| match (a, b) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if !same(&src, &Some(src0)) || !same(&dst, &dst0) {
                continue;
            }
            let Some(src) = src else { return Err(Errno::NOENT) };
            let t = now();
            let src_dir = src.kind == FileType::Directory;
            if exchange {
                let dst = dst.ok_or(Errno::NOENT)?;
                let dst_dir = dst.kind == FileType::Directory;
                os.dir_mut()?.replace(name, dst.clone());
                ns.dir_mut()?.replace(new_name, src.clone());
                if src_dir != dst_dir {
                    if src_dir {
                        os.nlink -= 1;
                        ns.nlink += 1;
                    } else {
                        os.nlink += 1;
                        ns.nlink -= 1;
                    }
                }
                set_parent(&dst, Arc::downgrade(self), t);
                set_parent(&src, Arc::downgrade(ndir), t);
            } else {
                if let Some(dst) = &dst {
                    if Arc::ptr_eq(dst, &src) {
                        return Ok(());
                    }
                    check_replace(&src, dst)?;
                    Inode::drop_link(dst, t, true)?;
                }
                if src_dir && ns.nlink >= u32::MAX - 1 {
                    return Err(Errno::MLINK);
                }
                if let Some(dst) = &dst {
                    if Inode::drop_link(dst, t, false)? {
                        ns.nlink -= 1;
                    }
                    ns.dir_mut()?.replace(new_name, src.clone());
                } else {
                    ns.dir_mut()?.insert(new_name, src.clone());
                }
                os.dir_mut()?.remove(name);
                if src_dir {
                    os.nlink -= 1;
                    ns.nlink += 1;
                }
                set_parent(&src, Arc::downgrade(ndir), t);
                if let Some(wo) = wo {
                    os.dir_mut()?.insert(name, wo);
                }
                entries.keep();
                self.fs.uncharge(dirent_cost(name) + if dst.is_some() { dirent_cost(new_name) } else { 0 });
            }
            os.touch_dir(t);
            ns.touch_dir(t);
            return Ok(());
        }
    }
}

/// Bytes a rename reserves before it changes anything: the new entry and the
/// whiteout's (an exchange changes no entry). Once done, it gives back the entries
/// that went away.
fn rename_reserve(name: &[u8], new_name: &[u8], flags: RenameFlags) -> u64 {
    if flags.contains(RenameFlags::EXCHANGE) {
        return 0;
    }
    dirent_cost(new_name) + if flags.contains(RenameFlags::WHITEOUT) { dirent_cost(name) } else { 0 }
}

/// Type rules for replacing `dst` by `src`.
fn check_replace(src: &Inode, dst: &Inode) -> Result<()> {
    match (src.kind == FileType::Directory, dst.kind == FileType::Directory) {
        (true, false) => Err(Errno::NOTDIR),
        (false, true) => Err(Errno::ISDIR),
        _ => Ok(()),
    }
}

fn set_parent(node: &Inode, parent: Weak<Inode>, t: i64) {
    let mut st = node.state.write();
    if let Body::Dir(d) = &mut st.body {
        d.parent = parent;
    }
    st.ctime = t;
}

impl Drop for Inode {
    fn drop(&mut self) {
        let fs = self.fs.clone();
        let st = self.state.get_mut();
        if let Some(x) = st.xattrs.take() {
            fs.uncharge(x.charged());
        }
        let mut target = 0;
        match &mut st.body {
            Body::File(f) => f.release(&fs),
            Body::Dir(d) => {
                // Tear down iteratively: a deep tree must not overflow the stack.
                let mut stack = d.drain(&fs);
                while let Some(n) = stack.pop() {
                    if let Ok(mut inner) = Arc::try_unwrap(n)
                        && let Body::Dir(d) = &mut inner.state.get_mut().body
                    {
                        stack.extend(d.drain(&fs));
                    }
                }
            }
            Body::Symlink(t) => target = t.len() as u64,
            _ => {}
        }
        fs.uncharge_inode(target);
    }
}

impl Node for Inode {
    fn ino(&self) -> u64 {
        self.ino
    }

    fn kind(&self) -> FileType {
        self.kind
    }

    fn attr(&self) -> Result<Attr> {
        let st = self.state.read();
        let (mut mtime, mut ctime) = (st.mtime, st.ctime);
        let (size, blocks, rdev) = match &st.body {
            // A memfd the kernel writes directly knows the size and times best.
            Body::File(f) => match f.memfd_stat()? {
                Some(m) => {
                    (mtime, ctime) = m.times_over(mtime, ctime);
                    (m.size, m.blocks, 0)
                }
                None => (f.size()?, f.blocks(), 0),
            },
            Body::Dir(d) => ((d.len() as u64 + 2) * BOGO_DIRENT, 0, 0),
            Body::Symlink(t) => (t.len() as u64, 0, 0),
            Body::Dev(r) => (0, 0, *r),
            Body::Other => (0, 0, 0),
        };
        Ok(Attr {
            kind: self.kind,
            mode: st.mode as u32,
            nlink: st.nlink as u64,
            uid: st.uid,
            gid: st.gid,
            size,
            blocks,
            blksize: crate::PAGE_SIZE as u32,
            atime: Timespec::from_nanos(st.atime),
            mtime: Timespec::from_nanos(mtime),
            ctime: Timespec::from_nanos(ctime),
            btime: Timespec::from_nanos(st.btime),
            ino: self.ino,
            dev: self.fs.dev,
            rdev,
        })
    }

    fn setattr(&self, set: &SetAttr) -> Result<Attr> {
        // Mode and ownership decide search permission: path walks must be redone.
        let _changing =
            (set.mode.is_some() || set.uid.is_some() || set.gid.is_some()).then(|| self.fs.changing());
        {
            let mut st = self.state.write();
            let t = now();
            if let Some(size) = set.size {
                let fs = self.fs.clone();
                st.file()?.truncate(size, &fs)?;
            }
            if let Some(m) = set.mode {
                st.mode = (m & 0o7777) as u16;
            }
            if let Some(u) = set.uid {
                st.uid = u;
            }
            if let Some(g) = set.gid {
                st.gid = g;
            }
            let when = |ts: TimeSet| match ts {
                TimeSet::Now => t,
                TimeSet::At(ts) => ts.as_nanos(),
            };
            if let Some(a) = set.atime {
                st.atime = when(a);
            }
            if let Some(m) = set.mtime {
                st.mtime = when(m);
                // attr() takes the later of this and the memfd's own mtime: set both.
                if let Body::File(f) = &st.body
                    && let Some(fd) = f.memfd()
                {
                    let t = Timespec::from_nanos(st.mtime);
                    let mtime = rustix::fs::Timespec { tv_sec: t.sec, tv_nsec: t.nsec as _ };
                    let omit = rustix::fs::Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT };
                    rustix::fs::futimens(
                        &**fd,
                        &rustix::fs::Timestamps { last_access: omit, last_modification: mtime },
                    )?;
                }
            }
            st.ctime = set.ctime.map(Timespec::as_nanos).unwrap_or(t);
        }
        self.attr()
    }

    fn lookup(&self, name: &[u8]) -> Result<NodeRef> {
        let st = self.state.read();
        match st.dir()?.get(name) {
            Some(n) => Ok(n.clone()),
            None => Err(Errno::NOENT),
        }
    }

    fn parent(&self) -> Option<NodeRef> {
        self.parent_inode().map(|p| p as NodeRef)
    }

    fn create(self: Arc<Self>, name: &[u8], new: &NewNode) -> Result<NodeRef> {
        let _changing = self.fs.changing();
        let mut st = self.state.write();
        let d = st.live_dir_mut()?;
        if d.get(name).is_some() {
            return Err(Errno::EXIST);
        }
        let entry = self.fs.reserve(dirent_cost(name))?;
        let child = Inode::build(&self.fs, new, Arc::downgrade(&self))?;
        d.insert(name, child.clone());
        entry.keep();
        if new.kind == FileType::Directory {
            st.nlink += 1;
        }
        st.touch_dir(now());
        Ok(child)
    }

    fn link(&self, name: &[u8], target: &NodeRef) -> Result<()> {
        let _changing = self.fs.changing();
        let target = self.downcast(target)?;
        if target.kind == FileType::Directory {
            return Err(Errno::PERM);
        }
        let mut st = self.state.write();
        let d = st.live_dir_mut()?;
        if d.get(name).is_some() {
            return Err(Errno::EXIST);
        }
        let entry = self.fs.reserve(dirent_cost(name))?;
        let t = now();
        {
            let mut ts = target.state.write();
            if ts.nlink == 0 {
                return Err(Errno::NOENT);
            }
            if ts.nlink == u32::MAX {
                return Err(Errno::MLINK);
            }
            ts.nlink += 1;
            ts.ctime = t;
        }
        d.insert(name, target);
        entry.keep();
        st.touch_dir(t);
        Ok(())
    }

    fn unlink(&self, name: &[u8]) -> Result<()> {
        let _changing = self.fs.changing();
        let mut st = self.state.write();
        let d = st.dir_mut()?;
        let victim = d.get(name).cloned().ok_or(Errno::NOENT)?;
        if victim.kind == FileType::Directory {
            return Err(Errno::ISDIR);
        }
        let t = now();
        Inode::drop_link(&victim, t, false)?;
        d.remove(name);
        self.fs.uncharge(dirent_cost(name));
        st.touch_dir(t);
        Ok(())
    }

    fn rmdir(&self, name: &[u8]) -> Result<()> {
        let _changing = self.fs.changing();
        let mut st = self.state.write();
        let d = st.dir_mut()?;
        let victim = d.get(name).cloned().ok_or(Errno::NOENT)?;
        if victim.kind != FileType::Directory {
            return Err(Errno::NOTDIR);
        }
        let t = now();
        Inode::drop_link(&victim, t, false)?;
        d.remove(name);
        self.fs.uncharge(dirent_cost(name));
        st.nlink -= 1;
        st.touch_dir(t);
        Ok(())
    }

    fn rename(
        self: Arc<Self>,
        name: &[u8],
        new_dir: &NodeRef,
        new_name: &[u8],
        flags: RenameFlags,
    ) -> Result<()> {
        let _changing = self.fs.changing();
        let ndir = self.downcast(new_dir)?;
        if Arc::ptr_eq(&self, &ndir) {
            self.rename_same_dir(name, new_name, flags)
        } else {
            self.rename_cross(name, &ndir, new_name, flags)
        }
    }

    fn readdir(&self, after: u64, sink: &mut dyn FnMut(DirEntry<'_>) -> bool) -> Result<()> {
        const BATCH: usize = 256;
        let mut after = after;
        let mut names: Vec<u8> = Vec::new();
        let mut items: Vec<(usize, usize, u64, FileType, u64)> = Vec::with_capacity(BATCH);
        loop {
            names.clear();
            items.clear();
            {
                let st = self.state.read();
                for (cookie, slot) in st.dir()?.iter_after(after).take(BATCH) {
                    let start = names.len();
                    names.extend_from_slice(&slot.name);
                    items.push((start, names.len(), slot.node.ino, slot.node.kind, cookie));
                }
            }
            if items.is_empty() {
                return Ok(());
            }
            for &(a, b, ino, kind, cookie) in &items {
                if !sink(DirEntry { name: &names[a..b], ino, kind, offset: cookie }) {
                    return Ok(());
                }
                after = cookie;
            }
            if items.len() < BATCH {
                return Ok(());
            }
        }
    }

    fn file_flags(&self) -> Result<FileFlags> {
        Ok(FileFlags::from_bits_truncate(self.state.read().flags as u32))
    }

    fn set_file_flags(&self, flags: FileFlags) -> Result<()> {
        let mut st = self.state.write();
        st.flags = flags.bits() as u8;
        st.ctime = now();
        Ok(())
    }

    fn readlink(&self) -> Result<Vec<u8>> {
        match &self.state.read().body {
            Body::Symlink(t) => Ok(t.to_vec()),
            _ => Err(Errno::INVAL),
        }
    }

    fn open(self: Arc<Self>, _flags: OpenFlags) -> Result<Arc<dyn Handle>> {
        match self.kind {
            FileType::Regular => Ok(Arc::new(FileHandle { inode: self, lent: Default::default() })),
            FileType::Directory => Err(Errno::ISDIR),
            _ => Err(Errno::NXIO),
        }
    }

    fn getxattr(&self, name: &[u8]) -> Result<Vec<u8>> {
        match &self.state.read().xattrs {
            Some(x) => x.get(name),
            None => Err(Errno::NODATA),
        }
    }

    fn setxattr(&self, name: &[u8], value: &[u8], flags: XattrFlags) -> Result<()> {
        if value.len() > crate::XATTR_SIZE_MAX {
            return Err(Errno::TOOBIG);
        }
        if name.is_empty() || name.len() > crate::XATTR_NAME_MAX {
            return Err(Errno::RANGE);
        }
        let mut st = self.state.write();
        let x = st.xattrs.get_or_insert_with(Default::default);
        let r = x.set(name, value, flags, &self.fs);
        if x.is_empty() {
            st.xattrs = None;
        }
        r?;
        st.ctime = now();
        Ok(())
    }

    fn listxattr(&self) -> Result<Vec<Vec<u8>>> {
        Ok(self.state.read().xattrs.as_ref().map(|x| x.list()).unwrap_or_default())
    }

    fn removexattr(&self, name: &[u8]) -> Result<()> {
        let mut st = self.state.write();
        let x = st.xattrs.as_mut().ok_or(Errno::NODATA)?;
        x.remove(name, &self.fs)?;
        if x.is_empty() {
            st.xattrs = None;
        }
        st.ctime = now();
        Ok(())
    }
}

/// An open regular file of the tmpfs.
struct FileHandle {
    inode: Arc<Inode>,
    /// This handle was lent the file's memfd (and gives it back when dropped).
    lent: std::sync::atomic::AtomicBool,
}

impl Drop for FileHandle {
    fn drop(&mut self) {
        if self.lent.load(std::sync::atomic::Ordering::Relaxed) {
            let fs = self.inode.fs.clone();
            let mut st = self.inode.state.write();
            let back = st.file().ok().and_then(|f| f.give_back(&fs));
            // The memfd's times were the file's (direct writes set them): keep them.
            if let Some(m) = back {
                (st.mtime, st.ctime) = m.times_over(st.mtime, st.ctime);
            }
        }
    }
}

impl FileHandle {
    fn write_locked(&self, f: impl FnOnce(&mut FileData, &Shared) -> Result<usize>) -> Result<usize> {
        let mut st = self.inode.state.write();
        let fs = self.inode.fs.clone();
        let n = f(st.file()?, &fs)?;
        let t = now();
        st.mtime = t;
        st.ctime = t;
        Ok(n)
    }
}

impl Handle for FileHandle {
    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<usize> {
        match &self.inode.state.read().body {
            Body::File(f) => f.read(buf, off, &self.inode.fs),
            _ => Err(Errno::INVAL),
        }
    }

    fn write_at(&self, data: &[u8], off: u64) -> Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        self.write_locked(|f, fs| f.write(data, off, fs))
    }

    fn append(&self, data: &[u8]) -> Result<(usize, u64)> {
        let mut end = 0;
        let n = self.write_locked(|f, fs| {
            let at = f.size()?;
            let n = f.write(data, at, fs)?;
            end = at + n as u64;
            Ok(n)
        })?;
        Ok((n, end))
    }

    fn fsync(&self, _datasync: bool) -> Result<()> {
        Ok(())
    }

    fn fallocate(&self, flags: FallocFlags, off: u64, len: u64) -> Result<()> {
        self.write_locked(|f, fs| {
            if flags.contains(FallocFlags::PUNCH_HOLE) {
                // Not clipped at the size: pages past the end (a partly used last one,
                // or fallocated with KEEP_SIZE) are punched too, as shmem does.
                f.zero(off, len, fs);
            } else if flags.contains(FallocFlags::ZERO_RANGE) {
                // As kernel tmpfs: only allocation and hole punching.
                return Err(Errno::OPNOTSUPP);
            } else {
                f.allocate(off, len, flags.contains(FallocFlags::KEEP_SIZE), fs)?;
            }
            Ok(0)
        })?;
        Ok(())
    }

    fn seek(&self, off: u64, whence: Whence) -> Result<u64> {
        match &self.inode.state.read().body {
            Body::File(f) => f.seek(off, whence),
            _ => Err(Errno::INVAL),
        }
    }

    /// The file's memfd (the data moves into one if it is in pages), unless the
    /// file is setuid or setgid: a write the kernel makes directly would not clear
    /// those bits. The loan lasts until this handle is dropped.
    fn passthrough_fd(&self) -> Option<Arc<rustix::fd::OwnedFd>> {
        use std::sync::atomic::Ordering;
        let mut st = self.inode.state.write();
        if st.mode & 0o6000 != 0 {
            return None;
        }
        let fs = self.inode.fs.clone();
        let f = st.file().ok()?;
        if self.lent.load(Ordering::Relaxed) {
            return f.memfd().cloned();
        }
        let fd = f.lend(&fs).ok()??;
        self.lent.store(true, Ordering::Relaxed);
        Some(fd)
    }
}
