//! The operations of a mount namespace, with every check Linux makes before a
//! filesystem is asked: permissions, mount flags (EROFS, nodev, noexec), EXDEV across
//! mounts, EBUSY on mount points, name rules. Two levels: operations on a
//! [`Location`] and a name (what FUSE sends), and path operations built on them (what
//! the Rust API and tests use).

use crate::attr::{Attr, FileType, SetAttr, StatFs, TimeSet};
use crate::creds::{Caps, Creds};
use crate::errno::{Errno, Result};
use crate::file::OpenFile;
use crate::mount::{Location, MountFlags, MountNamespace};
use crate::node::{FileFlags, NewNode, NodeRef, OpenFlags, RenameFlags, XattrFlags};
use crate::path::{Last, Walker, dotdot};
use crate::perm::{
    MAY_EXEC, MAY_READ, MAY_WRITE, check_access, check_delete, check_hardlink, is_owner_or_capable,
    new_node_owner, prepare_setattr,
};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

const XATTR_NAME_MAX: usize = 255;
const XATTR_SIZE_MAX: usize = 65536;

/// What kind of node to make, with its type-specific data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Make {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symlink to the target.
    Symlink(Vec<u8>),
    /// A named pipe.
    Fifo,
    /// A socket.
    Socket,
    /// A character device with this device number.
    CharDev(u64),
    /// A block device with this device number.
    BlockDev(u64),
}

impl Make {
    fn kind(&self) -> FileType {
        match self {
            Make::File => FileType::Regular,
            Make::Dir => FileType::Directory,
            Make::Symlink(_) => FileType::Symlink,
            Make::Fifo => FileType::Fifo,
            Make::Socket => FileType::Socket,
            Make::CharDev(_) => FileType::CharDevice,
            Make::BlockDev(_) => FileType::BlockDevice,
        }
    }
}

fn bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return Err(Errno::INVAL);
    }
    if name.len() > crate::NAME_MAX {
        return Err(Errno::NAMETOOLONG);
    }
    Ok(())
}

fn is_dots(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

fn dir_attr(loc: &Location) -> Result<Attr> {
    let a = loc.node.attr()?;
    if a.kind != FileType::Directory {
        return Err(Errno::NOTDIR);
    }
    Ok(a)
}

/// Which xattr namespace a name is in, and whether the caller may touch it.
fn check_xattr(creds: &Creds, attr: &Attr, name: &[u8], write: bool) -> Result<()> {
    if name.is_empty() || name.len() > XATTR_NAME_MAX {
        return Err(Errno::RANGE);
    }
    if name.starts_with(b"trusted.") {
        if !creds.has(Caps::SYS_ADMIN) {
            return Err(if write { Errno::PERM } else { Errno::NODATA });
        }
        return Ok(());
    }
    if name.starts_with(b"user.") {
        if !matches!(attr.kind, FileType::Regular | FileType::Directory) {
            return Err(if write { Errno::PERM } else { Errno::NODATA });
        }
        if write
            && attr.kind == FileType::Directory
            && attr.mode & 0o1000 != 0
            && !is_owner_or_capable(creds, attr)
        {
            return Err(Errno::PERM);
        }
        return check_access(creds, attr, if write { MAY_WRITE } else { MAY_READ });
    }
    if name.starts_with(b"security.") {
        if write && !creds.has(Caps::SYS_ADMIN) {
            return Err(Errno::PERM);
        }
        return Ok(());
    }
    Err(Errno::OPNOTSUPP)
}

/// Linux `may_create_in_sticky` for an O_CREAT open of an existing node, with
/// `fs.protected_regular` and `fs.protected_fifos` at 0 (regular files and FIFOs
/// exempt): other nodes owned by neither the opener nor the directory's owner in a
/// sticky, world-writable directory give EACCES.
fn check_create_in_sticky(creds: &Creds, dir: &Location, node: &Location) -> Result<()> {
    let d = dir.node.attr()?;
    let a = node.node.attr()?;
    if d.mode & 0o1000 == 0
        || matches!(a.kind, FileType::Regular | FileType::Fifo)
        || a.uid == d.uid
        || a.uid == creds.uid
    {
        return Ok(());
    }
    if d.mode & 0o002 != 0 { Err(Errno::ACCESS) } else { Ok(()) }
}

/// The attribute flags of a node; empty when its filesystem keeps none.
fn flags_of(node: &NodeRef) -> Result<FileFlags> {
    match node.file_flags() {
        Err(e) if e == Errno::NOTTY => Ok(FileFlags::empty()),
        r => r,
    }
}

/// Linux `inode_permission` for MAY_WRITE: nobody, root included, writes an
/// immutable node (EPERM, after EROFS and before the permission bits).
fn check_mutable(node: &NodeRef) -> Result<()> {
    if flags_of(node)?.contains(FileFlags::IMMUTABLE) { Err(Errno::PERM) } else { Ok(()) }
}

/// Whether the node is immutable or append-only (EPERM for changes of its
/// attributes, xattrs, names and links).
fn check_unpinned(node: &NodeRef) -> Result<()> {
    if flags_of(node)?.intersects(FileFlags::IMMUTABLE | FileFlags::APPEND) {
        Err(Errno::PERM)
    } else {
        Ok(())
    }
}

/// Linux `may_delete`: write and search permission on the directory (not
/// immutable), the directory not append-only, then the sticky bit and the victim
/// neither immutable nor append-only.
fn check_delete_node(
    creds: &Creds,
    dir: &NodeRef,
    dattr: &Attr,
    victim: &NodeRef,
    vattr: &Attr,
) -> Result<()> {
    check_mutable(dir)?;
    check_access(creds, dattr, MAY_WRITE | MAY_EXEC)?;
    if flags_of(dir)?.contains(FileFlags::APPEND) {
        return Err(Errno::PERM);
    }
    check_delete(creds, dattr, vattr)?;
    check_unpinned(victim)
}

/// Where a walk of `path` starts, as the path cache keys it: an absolute path does
/// not depend on the cwd (`None`: the namespace root), so one entry serves every cwd.
fn cache_start<'a>(cwd: Option<&'a Location>, path: &[u8]) -> Option<&'a Location> {
    if path.starts_with(b"/") { None } else { cwd }
}

/// Whether directory `a` is `b` or one of its ancestors (same filesystem).
fn is_ancestor(a: &NodeRef, b: &NodeRef) -> bool {
    let ino = a.ino();
    let mut cur = Some(b.clone());
    while let Some(c) = cur {
        if c.ino() == ino {
            return true;
        }
        cur = c.parent();
    }
    false
}

impl MountNamespace {
    // ----- operations on locations (the FUSE level) -----

    /// Look up `name` in `dir` (search permission; `.` and `..` allowed).
    pub fn lookup(&self, creds: &Creds, dir: &Location, name: &[u8]) -> Result<Location> {
        Walker::new(self, creds).step(dir, name)
    }

    /// `..` of a directory location, as path resolution takes it.
    pub fn parent_of(&self, loc: &Location) -> Location {
        dotdot(self, loc.clone())
    }

    /// Attributes of a location.
    pub fn getattr(&self, loc: &Location) -> Result<Attr> {
        loc.node.attr()
    }

    /// access(2): check `mask` (R=4, W=2, X=1; 0 = existence) for `creds`.
    pub fn access(&self, creds: &Creds, loc: &Location, mask: u32) -> Result<()> {
        let attr = loc.node.attr()?;
        if mask & MAY_WRITE != 0
            && loc.mount.flags().contains(MountFlags::RDONLY)
            && matches!(attr.kind, FileType::Regular | FileType::Directory | FileType::Symlink)
        {
            return Err(Errno::ROFS);
        }
        if mask & MAY_WRITE != 0 {
            check_mutable(&loc.node)?;
        }
        if mask & MAY_EXEC != 0
            && attr.kind == FileType::Regular
            && loc.mount.flags().contains(MountFlags::NOEXEC)
        {
            return Err(Errno::ACCESS);
        }
        check_access(creds, &attr, mask & 7)
    }

    /// Change attributes with Linux's ownership and permission rules.
    pub fn setattr(&self, creds: &Creds, loc: &Location, set: &SetAttr) -> Result<Attr> {
        if set.is_empty() {
            return loc.node.attr();
        }
        // truncate(2) checks the type before the mount: EISDIR / EINVAL, then EROFS.
        if set.size.is_some() {
            match loc.node.kind() {
                FileType::Directory => return Err(Errno::ISDIR),
                FileType::Regular => {}
                _ => return Err(Errno::INVAL),
            }
        }
        let _w = loc.mount.want_write()?;
        let attr = loc.node.attr()?;
        let flags = flags_of(&loc.node)?;
        if set.size.is_some() {
            if attr.kind == FileType::Directory {
                return Err(Errno::ISDIR);
            }
            check_mutable(&loc.node)?;
            check_access(creds, &attr, MAY_WRITE)?;
            if flags.contains(FileFlags::APPEND) {
                return Err(Errno::PERM);
            }
        }
        // notify_change: an immutable or append-only node keeps its mode, owner and
        // explicit times; an immutable one is not even touched (both UTIME_NOW).
        let touch = set.atime == Some(TimeSet::Now) && set.mtime == Some(TimeSet::Now);
        let times = set.atime.is_some() || set.mtime.is_some();
        if (set.mode.is_some() || set.uid.is_some() || set.gid.is_some() || (times && !touch))
            && flags.intersects(FileFlags::IMMUTABLE | FileFlags::APPEND)
        {
            return Err(Errno::PERM);
        }
        if touch && flags.contains(FileFlags::IMMUTABLE) {
            return Err(Errno::PERM);
        }
        let mut set = prepare_setattr(creds, &attr, set)?;
        if set.size.is_some() && set.mtime.is_none() {
            set.mtime = Some(TimeSet::Now);
        }
        loc.node.setattr(&set)
    }

    /// chown(2) / fchown / lchown: like [`MountNamespace::setattr`] with `uid` and
    /// `gid`, but, as Linux, also when both are `None` (`chown(f, -1, -1)`): that
    /// needs no ownership, updates ctime and drops setuid (and group-executable
    /// setgid) from a non-directory, even on an immutable file.
    pub fn chown(&self, creds: &Creds, loc: &Location, uid: Option<u32>, gid: Option<u32>) -> Result<Attr> {
        if uid.is_some() || gid.is_some() {
            return self.setattr(creds, loc, &SetAttr { uid, gid, ..SetAttr::default() });
        }
        let _w = loc.mount.want_write()?;
        let attr = loc.node.attr()?;
        let set = prepare_setattr(creds, &attr, &SetAttr::default())?;
        let set = SetAttr { mode: crate::perm::kill_suid_on_chown(creds, &attr), ..set };
        loc.node.setattr(&set)
    }

    /// FS_IOC_GETFLAGS: the attribute flags of a regular file or directory (ENOTTY
    /// for other types, and where the filesystem keeps none).
    pub fn file_flags(&self, loc: &Location) -> Result<FileFlags> {
        if !matches!(loc.node.kind(), FileType::Regular | FileType::Directory) {
            return Err(Errno::NOTTY);
        }
        loc.node.file_flags()
    }

    /// FS_IOC_SETFLAGS with the FS_*_FL bits `flags`, as Linux checks it: EROFS,
    /// then ownership (EPERM), then CAP_LINUX_IMMUTABLE to change `i` or `a`
    /// (EPERM), then EOPNOTSUPP for bits the filesystem does not keep.
    pub fn set_file_flags(&self, creds: &Creds, loc: &Location, flags: u32) -> Result<()> {
        let _w = loc.mount.want_write()?;
        let attr = loc.node.attr()?;
        if !is_owner_or_capable(creds, &attr) {
            return Err(Errno::PERM);
        }
        let old = self.file_flags(loc)?;
        let new = FileFlags::from_bits_retain(flags);
        if (old ^ new).intersects(FileFlags::IMMUTABLE | FileFlags::APPEND)
            && !creds.has(Caps::LINUX_IMMUTABLE)
        {
            return Err(Errno::PERM);
        }
        if new.bits() & !FileFlags::all().bits() != 0 {
            return Err(Errno::OPNOTSUPP);
        }
        loc.node.set_file_flags(new)
    }

    /// Create a node named `name` in `dir` (mkdir, mknod, symlink). `mode` has the
    /// umask applied already; setgid directories pass on their group.
    pub fn make(
        &self,
        creds: &Creds,
        dir: &Location,
        name: &[u8],
        what: Make,
        mode: u32,
    ) -> Result<Location> {
        check_name(name)?;
        if is_dots(name) {
            return Err(Errno::EXIST);
        }
        let dattr = dir_attr(dir)?;
        check_access(creds, &dattr, MAY_EXEC)?;
        // Linux answers EEXIST before any later check; the filesystem's create says
        // EEXIST itself, so the name is looked up only when a check fails (a create
        // on a gofer-backed directory then costs one round trip, not two).
        self.make_checked(creds, dir, &dattr, name, what, mode)
            .map_err(|e| if e != Errno::EXIST && dir.node.lookup(name).is_ok() { Errno::EXIST } else { e })
    }

    fn make_checked(
        &self,
        creds: &Creds,
        dir: &Location,
        dattr: &Attr,
        name: &[u8],
        what: Make,
        mode: u32,
    ) -> Result<Location> {
        let _w = dir.mount.want_write()?;
        check_mutable(&dir.node)?;
        check_access(creds, dattr, MAY_WRITE | MAY_EXEC)?;
        let kind = what.kind();
        // Devices need CAP_MKNOD, except a 0/0 character device (a whiteout), which
        // Linux lets anyone make since 5.8.
        let whiteout = what == Make::CharDev(0);
        if matches!(kind, FileType::CharDevice | FileType::BlockDevice)
            && !whiteout
            && !creds.has(Caps::MKNOD)
        {
            return Err(Errno::PERM);
        }
        // mkdir keeps only the permission and sticky bits (setgid comes from the parent).
        let mode = match kind {
            FileType::Symlink => 0o777,
            FileType::Directory => mode & 0o1777,
            _ => mode & 0o7777,
        };
        let (uid, gid, mode) = new_node_owner(creds, dattr, kind, mode);
        let (rdev, target) = match what {
            Make::CharDev(d) | Make::BlockDev(d) => (d, Vec::new()),
            Make::Symlink(t) => {
                if t.is_empty() {
                    return Err(Errno::NOENT);
                }
                if t.len() >= crate::PATH_MAX {
                    return Err(Errno::NAMETOOLONG);
                }
                (0, t)
            }
            _ => (0, Vec::new()),
        };
        let node = dir.node.clone().create(name, &NewNode { kind, mode, uid, gid, rdev, target })?;
        Ok(Location { mount: dir.mount.clone(), node })
    }

    /// Open an existing location with open(2) flags semantics (permissions, EROFS,
    /// O_TRUNC, nodev, EISDIR).
    pub fn open(&self, creds: &Creds, loc: &Location, flags: OpenFlags) -> Result<OpenFile> {
        let attr = loc.node.attr()?;
        let kind = attr.kind;
        // Linux checks O_DIRECTORY before anything else, so O_NOFOLLOW|O_DIRECTORY on
        // a symlink is ENOTDIR, not ELOOP.
        if flags.contains(OpenFlags::DIRECTORY) && kind != FileType::Directory {
            return Err(Errno::NOTDIR);
        }
        if flags.contains(OpenFlags::PATH) {
            return OpenFile::new(self, loc.clone(), flags, creds, None, None);
        }
        if kind == FileType::Symlink {
            return Err(Errno::LOOP);
        }
        let write = flags.intersects(OpenFlags::WRITE);
        let trunc = flags.contains(OpenFlags::TRUNC) && kind == FileType::Regular;
        if kind == FileType::Directory && (write || flags.intersects(OpenFlags::CREAT | OpenFlags::TRUNC)) {
            return Err(Errno::ISDIR);
        }
        let mut want = 0;
        if flags.contains(OpenFlags::READ) {
            want |= MAY_READ;
        }
        if write || flags.contains(OpenFlags::TRUNC) {
            want |= MAY_WRITE;
        }
        let ro = loc.mount.flags().contains(MountFlags::RDONLY);
        if want & MAY_WRITE != 0 && ro && matches!(kind, FileType::Regular | FileType::Directory) {
            return Err(Errno::ROFS);
        }
        if want & MAY_WRITE != 0 {
            check_mutable(&loc.node)?;
        }
        check_access(creds, &attr, want)?;
        // may_open: an append-only file opens for writing only with O_APPEND, and
        // never with O_TRUNC.
        if (write && !flags.contains(OpenFlags::APPEND) || flags.contains(OpenFlags::TRUNC))
            && kind == FileType::Regular
            && flags_of(&loc.node)?.contains(FileFlags::APPEND)
        {
            return Err(Errno::PERM);
        }
        if matches!(kind, FileType::CharDevice | FileType::BlockDevice)
            && loc.mount.flags().contains(MountFlags::NODEV)
        {
            return Err(Errno::ACCESS);
        }
        if flags.contains(OpenFlags::NOATIME) && !is_owner_or_capable(creds, &attr) {
            return Err(Errno::PERM);
        }
        let guard =
            if (write || trunc) && kind == FileType::Regular { Some(loc.mount.want_write()?) } else { None };
        if trunc {
            let mut set = SetAttr { size: Some(0), mtime: Some(TimeSet::Now), ..SetAttr::default() };
            if let Some(mode) = crate::perm::kill_suid_on_write(creds, &attr) {
                set.mode = Some(mode);
            }
            loc.node.setattr(&set)?;
        }
        // The write access O_TRUNC took ends with the truncation (Linux drops it in
        // do_open): only a file open for writing keeps the mount busy for remount ro.
        let guard = if write { guard } else { None };
        let handle = if kind == FileType::Regular { Some(loc.node.clone().open(flags)?) } else { None };
        OpenFile::new(self, loc.clone(), flags, creds, handle, guard)
    }

    /// Create and open a regular file `name` in `dir` (O_CREAT with the name absent;
    /// EEXIST if present).
    pub fn create_open(
        &self,
        creds: &Creds,
        dir: &Location,
        name: &[u8],
        flags: OpenFlags,
        mode: u32,
    ) -> Result<OpenFile> {
        let loc = self.make(creds, dir, name, Make::File, mode)?;
        // A new file: no permission check against its own mode (open(O_CREAT|O_RDWR, 0)
        // works), as Linux.
        let guard = if flags.contains(OpenFlags::WRITE) { Some(loc.mount.want_write()?) } else { None };
        let handle = loc.node.clone().open(flags)?;
        OpenFile::new(self, loc, flags, creds, Some(handle), guard)
    }

    /// Add a hard link to `target` as `name` in `dir`.
    pub fn link(&self, creds: &Creds, target: &Location, dir: &Location, name: &[u8]) -> Result<Location> {
        check_name(name)?;
        if is_dots(name) {
            return Err(Errno::EXIST);
        }
        let dattr = dir_attr(dir)?;
        check_access(creds, &dattr, MAY_EXEC)?;
        if dir.node.lookup(name).is_ok() {
            return Err(Errno::EXIST);
        }
        let _w = dir.mount.want_write()?;
        if !Arc::ptr_eq(&target.mount, &dir.mount) {
            return Err(Errno::XDEV);
        }
        let tattr = target.node.attr()?;
        check_hardlink(creds, &tattr)?;
        check_mutable(&dir.node)?;
        check_access(creds, &dattr, MAY_WRITE | MAY_EXEC)?;
        if tattr.kind == FileType::Directory {
            return Err(Errno::PERM);
        }
        check_unpinned(&target.node)?;
        if tattr.nlink == 0 {
            return Err(Errno::NOENT);
        }
        dir.node.link(name, &target.node)?;
        Ok(Location { mount: dir.mount.clone(), node: target.node.clone() })
    }

    /// Remove the non-directory `name` from `dir`.
    pub fn unlink(&self, creds: &Creds, dir: &Location, name: &[u8]) -> Result<()> {
        self.remove(creds, dir, name, false)
    }

    /// Remove the empty directory `name` from `dir`.
    pub fn rmdir(&self, creds: &Creds, dir: &Location, name: &[u8]) -> Result<()> {
        self.remove(creds, dir, name, true)
    }

    fn remove(&self, creds: &Creds, dir: &Location, name: &[u8], is_rmdir: bool) -> Result<()> {
        check_name(name)?;
        let dattr = dir_attr(dir)?;
        check_access(creds, &dattr, MAY_EXEC)?;
        if is_dots(name) {
            return Err(if !is_rmdir {
                Errno::ISDIR
            } else if name == b"." {
                Errno::INVAL
            } else {
                Errno::NOTEMPTY
            });
        }
        let _w = dir.mount.want_write()?;
        let victim = dir.node.lookup(name)?;
        let vattr = victim.attr()?;
        check_delete_node(creds, &dir.node, &dattr, &victim, &vattr)?;
        if is_rmdir && vattr.kind != FileType::Directory {
            return Err(Errno::NOTDIR);
        }
        if !is_rmdir && vattr.kind == FileType::Directory {
            return Err(Errno::ISDIR);
        }
        if self.is_mount_point(&dir.mount, &victim) {
            return Err(Errno::BUSY);
        }
        if is_rmdir { dir.node.rmdir(name) } else { dir.node.unlink(name) }
    }

    /// renameat2 between two directory locations.
    pub fn rename(
        &self,
        creds: &Creds,
        odir: &Location,
        oname: &[u8],
        ndir: &Location,
        nname: &[u8],
        flags: RenameFlags,
    ) -> Result<()> {
        if flags.contains(RenameFlags::EXCHANGE)
            && flags.intersects(RenameFlags::NOREPLACE | RenameFlags::WHITEOUT)
        {
            return Err(Errno::INVAL);
        }
        check_name(oname)?;
        check_name(nname)?;
        let oattr = dir_attr(odir)?;
        let nattr = dir_attr(ndir)?;
        check_access(creds, &oattr, MAY_EXEC)?;
        check_access(creds, &nattr, MAY_EXEC)?;
        if !Arc::ptr_eq(&odir.mount, &ndir.mount) {
            return Err(Errno::XDEV);
        }
        if is_dots(oname) || is_dots(nname) {
            return Err(if flags.contains(RenameFlags::NOREPLACE) && !is_dots(oname) {
                Errno::EXIST
            } else {
                Errno::BUSY
            });
        }
        let _w = odir.mount.want_write()?;
        let src = odir.node.lookup(oname)?;
        let dst = match ndir.node.lookup(nname) {
            Ok(n) => Some(n),
            Err(e) if e == Errno::NOENT => None,
            Err(e) => return Err(e),
        };
        if flags.contains(RenameFlags::EXCHANGE) && dst.is_none() {
            return Err(Errno::NOENT);
        }
        if flags.contains(RenameFlags::NOREPLACE) && dst.is_some() {
            return Err(Errno::EXIST);
        }
        // Loops: a directory may not move below itself (EINVAL), nor replace one of
        // the source's ancestors (ENOTEMPTY; EINVAL for an exchange).
        if src.kind() == FileType::Directory && is_ancestor(&src, &ndir.node) {
            return Err(Errno::INVAL);
        }
        if let Some(d) = &dst
            && d.kind() == FileType::Directory
            && is_ancestor(d, &odir.node)
        {
            return Err(if flags.contains(RenameFlags::EXCHANGE) { Errno::INVAL } else { Errno::NOTEMPTY });
        }
        let sattr = src.attr()?;
        let same_dir = odir.node.ino() == ndir.node.ino();
        if let Some(d) = &dst
            && d.ino() == src.ino()
        {
            // Two names of one inode (or the same name): nothing to do, no checks.
            return Ok(());
        }
        // Linux vfs_rename order: may_delete on the source, may_delete (with the type
        // rules) or may_create on the target, then write permission on directories
        // whose `..` changes, then busy mount points.
        check_delete_node(creds, &odir.node, &oattr, &src, &sattr)?;
        let is_dir = |k: FileType| k == FileType::Directory;
        let dattr = match &dst {
            Some(d) => {
                let dattr = d.attr()?;
                check_delete_node(creds, &ndir.node, &nattr, d, &dattr)?;
                let victim_should_be_dir = if flags.contains(RenameFlags::EXCHANGE) {
                    is_dir(dattr.kind)
                } else {
                    is_dir(sattr.kind)
                };
                match (victim_should_be_dir, is_dir(dattr.kind)) {
                    (true, false) => return Err(Errno::NOTDIR),
                    (false, true) => return Err(Errno::ISDIR),
                    _ => {}
                }
                Some(dattr)
            }
            None => {
                check_mutable(&ndir.node)?;
                check_access(creds, &nattr, MAY_WRITE | MAY_EXEC)?;
                None
            }
        };
        if !same_dir {
            if is_dir(sattr.kind) {
                check_access(creds, &sattr, MAY_WRITE)?;
            }
            if let Some(dattr) = dattr.filter(|a| is_dir(a.kind) && flags.contains(RenameFlags::EXCHANGE)) {
                check_access(creds, &dattr, MAY_WRITE)?;
            }
        }
        if self.is_mount_point(&odir.mount, &src)
            || dst.as_ref().is_some_and(|d| self.is_mount_point(&ndir.mount, d))
        {
            return Err(Errno::BUSY);
        }
        odir.node.clone().rename(oname, &ndir.node, nname, flags)?;
        if flags.contains(RenameFlags::WHITEOUT) {
            // The whiteout belongs to the caller, as a mknod of it would.
            let (uid, gid, _) = new_node_owner(creds, &oattr, FileType::CharDevice, 0);
            let wo = odir.node.lookup(oname)?;
            wo.setattr(&SetAttr { uid: Some(uid), gid: Some(gid), ..SetAttr::default() })?;
        }
        Ok(())
    }

    /// Symlink target (no permission needed beyond reaching it).
    pub fn readlink(&self, loc: &Location) -> Result<Vec<u8>> {
        if loc.node.kind() != FileType::Symlink {
            return Err(Errno::INVAL);
        }
        loc.node.readlink()
    }

    /// Read an extended attribute.
    pub fn getxattr(&self, creds: &Creds, loc: &Location, name: &[u8]) -> Result<Vec<u8>> {
        let attr = loc.node.attr()?;
        check_xattr(creds, &attr, name, false)?;
        loc.node.getxattr(name)
    }

    /// Set an extended attribute (XATTR_CREATE / XATTR_REPLACE).
    pub fn setxattr(
        &self,
        creds: &Creds,
        loc: &Location,
        name: &[u8],
        value: &[u8],
        flags: XattrFlags,
    ) -> Result<()> {
        // Both XATTR_CREATE and XATTR_REPLACE is not an error on Linux: each is
        // tested in turn (EEXIST if present, ENODATA if absent).
        if value.len() > XATTR_SIZE_MAX {
            return Err(Errno::TOOBIG);
        }
        let attr = loc.node.attr()?;
        if name.is_empty() || name.len() > XATTR_NAME_MAX {
            return Err(Errno::RANGE);
        }
        let _w = loc.mount.want_write()?;
        check_unpinned(&loc.node)?;
        check_xattr(creds, &attr, name, true)?;
        loc.node.setxattr(name, value, flags)
    }

    /// Names of the extended attributes the caller may see.
    pub fn listxattr(&self, creds: &Creds, loc: &Location) -> Result<Vec<Vec<u8>>> {
        let mut names = loc.node.listxattr()?;
        if !creds.has(Caps::SYS_ADMIN) {
            names.retain(|n| !n.starts_with(b"trusted."));
        }
        Ok(names)
    }

    /// Remove an extended attribute.
    pub fn removexattr(&self, creds: &Creds, loc: &Location, name: &[u8]) -> Result<()> {
        let attr = loc.node.attr()?;
        if name.is_empty() || name.len() > XATTR_NAME_MAX {
            return Err(Errno::RANGE);
        }
        let _w = loc.mount.want_write()?;
        check_unpinned(&loc.node)?;
        check_xattr(creds, &attr, name, true)?;
        loc.node.removexattr(name)
    }

    /// Statistics of the filesystem holding `loc`.
    pub fn statfs(&self, loc: &Location) -> Result<StatFs> {
        loc.mount.fs().statfs()
    }

    // ----- path operations (the Rust API) -----

    /// Resolve a path (relative paths start at `cwd`, or `/`). Walks are cached
    /// (see the `cache` module): a repeated resolution of a path nothing on whose way
    /// changed is one hash lookup.
    pub fn resolve(
        &self,
        creds: &Creds,
        cwd: Option<&Location>,
        path: impl AsRef<Path>,
        follow: bool,
    ) -> Result<Location> {
        self.resolve_bytes(creds, cwd, bytes(path.as_ref()), follow)
    }

    fn resolve_bytes(
        &self,
        creds: &Creds,
        cwd: Option<&Location>,
        path: &[u8],
        follow: bool,
    ) -> Result<Location> {
        match self.cache.get(cache_start(cwd, path), path, follow, creds) {
            Some(loc) => Ok(loc),
            None => self.walk_and_cache(creds, cwd, path, follow),
        }
    }

    /// Resolve by walking, and remember the result when every filesystem on the way
    /// has a generation.
    fn walk_and_cache(
        &self,
        creds: &Creds,
        cwd: Option<&Location>,
        path: &[u8],
        follow: bool,
    ) -> Result<Location> {
        let start = cache_start(cwd, path);
        let tree_gen = crate::cache::tree_generation();
        let mut w = Walker::recording(self, creds);
        let loc = w.resolve(cwd, path, follow)?;
        if let (Some(tree_gen), Some(gens)) = (tree_gen, w.into_generations()) {
            self.cache.insert(start, path, follow, creds, tree_gen, gens, &loc);
        }
        Ok(loc)
    }

    fn parent_named(
        &self,
        creds: &Creds,
        cwd: Option<&Location>,
        path: &Path,
        root_err: Errno,
    ) -> Result<(Location, Vec<u8>, bool)> {
        let (dir, last, trailing) = Walker::new(self, creds).walk_parent(cwd, bytes(path))?;
        match last {
            Last::Name(n) => Ok((dir, n, trailing)),
            Last::Dot => Ok((dir, b".".to_vec(), trailing)),
            Last::DotDot => Ok((dir, b"..".to_vec(), trailing)),
            Last::Root => Err(root_err),
        }
    }

    /// stat / lstat.
    pub fn stat(
        &self,
        creds: &Creds,
        cwd: Option<&Location>,
        path: impl AsRef<Path>,
        follow: bool,
    ) -> Result<Attr> {
        let path = bytes(path.as_ref());
        match self.cache.get_node(cache_start(cwd, path), path, follow, creds) {
            Some(node) => node.attr(),
            None => self.walk_and_cache(creds, cwd, path, follow)?.node.attr(),
        }
    }

    /// mkdir(2).
    pub fn mkdir(
        &self,
        creds: &Creds,
        cwd: Option<&Location>,
        path: impl AsRef<Path>,
        mode: u32,
    ) -> Result<Location> {
        let (dir, name, _) = self.parent_named(creds, cwd, path.as_ref(), Errno::EXIST)?;
        self.make(creds, &dir, &name, Make::Dir, mode)
    }

    /// mknod(2) (and mkfifo, and regular files).
    pub fn mknod(
        &self,
        creds: &Creds,
        cwd: Option<&Location>,
        path: impl AsRef<Path>,
        what: Make,
        mode: u32,
    ) -> Result<Location> {
        let (dir, name, trailing) = self.parent_named(creds, cwd, path.as_ref(), Errno::EXIST)?;
        if trailing && what != Make::Dir {
            return match dir.node.lookup(&name) {
                Ok(_) => Err(Errno::EXIST),
                Err(_) => Err(Errno::NOENT),
            };
        }
        self.make(creds, &dir, &name, what, mode)
    }

    /// symlink(2): a link at `path` pointing to `target`.
    pub fn symlink(
        &self,
        creds: &Creds,
        cwd: Option<&Location>,
        target: impl AsRef<Path>,
        path: impl AsRef<Path>,
    ) -> Result<Location> {
        self.mknod(creds, cwd, path, Make::Symlink(bytes(target.as_ref()).to_vec()), 0o777)
    }

    /// open(2), including O_CREAT (following a dangling final symlink to create its
    /// target unless O_EXCL or O_NOFOLLOW) and O_EXCL.
    pub fn open_path(
        &self,
        creds: &Creds,
        cwd: Option<&Location>,
        path: impl AsRef<Path>,
        flags: OpenFlags,
        mode: u32,
    ) -> Result<OpenFile> {
        let path = bytes(path.as_ref());
        if !flags.contains(OpenFlags::CREAT) {
            let follow = !flags.contains(OpenFlags::NOFOLLOW);
            let loc = self.resolve_bytes(creds, cwd, path, follow)?;
            return self.open(creds, &loc, flags);
        }
        let mut w = Walker::new(self, creds);
        let mut cur: Vec<u8> = path.to_vec();
        let mut cwd = cwd.cloned();
        loop {
            let (dir, last, trailing) = w.walk_parent(cwd.as_ref(), &cur)?;
            let name = match last {
                Last::Name(n) => n,
                _ if flags.contains(OpenFlags::EXCL) => return Err(Errno::EXIST),
                _ => return Err(Errno::ISDIR),
            };
            if trailing {
                return Err(Errno::ISDIR);
            }
            match w.step(&dir, &name) {
                Ok(loc) => {
                    if flags.contains(OpenFlags::EXCL) {
                        return Err(Errno::EXIST);
                    }
                    if loc.node.kind() == FileType::Symlink && !flags.contains(OpenFlags::NOFOLLOW) {
                        w.count_link()?;
                        cur = loc.node.readlink()?;
                        cwd = Some(dir);
                        continue;
                    }
                    if loc.node.kind() == FileType::Directory {
                        return Err(Errno::ISDIR);
                    }
                    check_create_in_sticky(creds, &dir, &loc)?;
                    return self.open(creds, &loc, flags - OpenFlags::CREAT);
                }
                Err(e) if e == Errno::NOENT => return self.create_open(creds, &dir, &name, flags, mode),
                Err(e) => return Err(e),
            }
        }
    }

    /// link(2): `new` becomes another name of `old` (not following a final symlink).
    pub fn link_path(
        &self,
        creds: &Creds,
        cwd: Option<&Location>,
        old: impl AsRef<Path>,
        new: impl AsRef<Path>,
    ) -> Result<Location> {
        let target = self.resolve(creds, cwd, old, false)?;
        let (dir, name, trailing) = self.parent_named(creds, cwd, new.as_ref(), Errno::EXIST)?;
        if trailing {
            return Err(if dir.node.lookup(&name).is_ok() { Errno::EXIST } else { Errno::NOENT });
        }
        self.link(creds, &target, &dir, &name)
    }

    /// unlink(2).
    pub fn unlink_path(&self, creds: &Creds, cwd: Option<&Location>, path: impl AsRef<Path>) -> Result<()> {
        let (dir, name, trailing) = self.parent_named(creds, cwd, path.as_ref(), Errno::ISDIR)?;
        if trailing {
            let v = Walker::new(self, creds).step(&dir, &name)?;
            return Err(if v.node.kind() == FileType::Directory { Errno::ISDIR } else { Errno::NOTDIR });
        }
        self.unlink(creds, &dir, &name)
    }

    /// rmdir(2).
    pub fn rmdir_path(&self, creds: &Creds, cwd: Option<&Location>, path: impl AsRef<Path>) -> Result<()> {
        let (dir, name, _) = self.parent_named(creds, cwd, path.as_ref(), Errno::BUSY)?;
        self.rmdir(creds, &dir, &name)
    }

    /// renameat2(2).
    pub fn rename_path(
        &self,
        creds: &Creds,
        cwd: Option<&Location>,
        old: impl AsRef<Path>,
        new: impl AsRef<Path>,
        flags: RenameFlags,
    ) -> Result<()> {
        let (odir, oname, otrail) = self.parent_named(creds, cwd, old.as_ref(), Errno::BUSY)?;
        let (ndir, nname, ntrail) = self.parent_named(creds, cwd, new.as_ref(), Errno::BUSY)?;
        if otrail || ntrail {
            let src = Walker::new(self, creds).step(&odir, &oname)?;
            if src.node.kind() != FileType::Directory {
                return Err(Errno::NOTDIR);
            }
        }
        self.rename(creds, &odir, &oname, &ndir, &nname, flags)
    }

    /// readlink(2).
    pub fn readlink_path(
        &self,
        creds: &Creds,
        cwd: Option<&Location>,
        path: impl AsRef<Path>,
    ) -> Result<Vec<u8>> {
        self.readlink(&self.resolve(creds, cwd, path, false)?)
    }

    /// chmod, chown, truncate, utimensat by path.
    pub fn setattr_path(
        &self,
        creds: &Creds,
        cwd: Option<&Location>,
        path: impl AsRef<Path>,
        set: &SetAttr,
        follow: bool,
    ) -> Result<Attr> {
        let loc = self.resolve(creds, cwd, path, follow)?;
        self.setattr(creds, &loc, set)
    }
}
