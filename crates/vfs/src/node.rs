//! The traits every sandfs filesystem implements: a [`Filesystem`] hands out its root
//! [`Node`]; nodes are inode-like objects (shared, `Send + Sync`) that front ends and
//! the overlay may hold for as long as they like; an open regular file is a [`Handle`].
//!
//! Nodes do no permission checking: the VFS (`ops`) checks credentials against
//! [`Node::attr`] before it calls them. Names passed in are single components, never
//! empty, `.` or `..`, never containing `/` or NUL, at most 255 bytes.

use crate::attr::{Attr, DirEntry, FileType, SetAttr, StatFs, TimeSet};
use crate::cache::Generation;
use crate::errno::Result;
use bitflags::bitflags;
use std::any::Any;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;

/// A shared reference to a node of any filesystem.
pub type NodeRef = Arc<dyn Node>;

/// `node` as a node of filesystem type `T`: how a filesystem takes back its own nodes
/// (a link target, a rename's new directory). EXDEV when it is of another type.
pub fn downcast<T: Node>(node: &NodeRef) -> Result<Arc<T>> {
    let any: Arc<dyn Any + Send + Sync> = node.clone();
    any.downcast::<T>().map_err(|_| crate::Errno::XDEV)
}

/// A filesystem instance: one per mounted source.
pub trait Filesystem: Send + Sync {
    /// The root node (a directory, or a regular file for file mounts).
    fn root(&self) -> NodeRef;
    /// Filesystem statistics.
    fn statfs(&self) -> Result<StatFs>;
    /// Short name of the filesystem type, for diagnostics ("tmpfs", "overlay", ...).
    fn name(&self) -> &str;
    /// A counter that lets mount namespaces cache path walks through this filesystem
    /// (see the `cache` module). A filesystem that returns one must bracket with
    /// [`Generation::change`] every change that can alter a walk or a
    /// search-permission check (from before it becomes visible to after it is
    /// complete): any change of
    /// names (create of every node type, link, unlink, rmdir, rename in every form),
    /// of a directory's parent, of mode, uid or gid, and of anything else
    /// [`Node::lookup`], [`Node::parent`], [`Node::readlink`] or the mode/uid/gid of
    /// [`Node::attr`] answer. It must return the same counter every time. The default,
    /// `None`, means walks through this filesystem are never cached (right for a
    /// filesystem whose contents can change behind its back, like a remote one).
    fn generation(&self) -> Option<Arc<Generation>> {
        None
    }
    /// How long what is known of this filesystem's files (names, attributes, data)
    /// may be trusted before asking again, because something else may change them;
    /// `None` (the default) when sandfs is their only writer. Front ends that cache
    /// (the FUSE kernel cache) keep it no longer than this.
    fn revalidate_after(&self) -> Option<std::time::Duration> {
        None
    }
}

/// What to create in [`Node::create`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewNode {
    /// Node type.
    pub kind: FileType,
    /// Permission bits (0o7777), final: umask and setgid rules already applied.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number for character and block devices.
    pub rdev: u64,
    /// Target for symlinks.
    pub target: Vec<u8>,
}

bitflags! {
    /// Open flags a filesystem sees (access mode plus the flags that change data).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct OpenFlags: u32 {
        /// Open for reading.
        const READ = 1 << 0;
        /// Open for writing.
        const WRITE = 1 << 1;
        /// Writes go to the end of the file.
        const APPEND = 1 << 2;
        /// Truncate on open (the VFS performs it through setattr).
        const TRUNC = 1 << 3;
        /// Create if missing (path-level; ignored by filesystems).
        const CREAT = 1 << 4;
        /// With CREAT: fail if the name exists.
        const EXCL = 1 << 5;
        /// Do not follow a final symlink.
        const NOFOLLOW = 1 << 6;
        /// Fail unless a directory.
        const DIRECTORY = 1 << 7;
        /// Do not update the access time.
        const NOATIME = 1 << 8;
        /// O_PATH: a location only, no data access.
        const PATH = 1 << 9;
    }
}

impl OpenFlags {
    /// Translate Linux open(2) flags.
    pub fn from_linux(flags: i32) -> OpenFlags {
        let mut f = OpenFlags::empty();
        match flags & 0o3 {
            0 => f |= OpenFlags::READ,
            1 => f |= OpenFlags::WRITE,
            _ => f |= OpenFlags::READ | OpenFlags::WRITE,
        }
        let map = [
            (0o2000, OpenFlags::APPEND),
            (0o1000, OpenFlags::TRUNC),
            (0o100, OpenFlags::CREAT),
            (0o200, OpenFlags::EXCL),
            (0o400000, OpenFlags::NOFOLLOW),
            (0o200000, OpenFlags::DIRECTORY),
            (0o1000000, OpenFlags::NOATIME),
            (0o10000000, OpenFlags::PATH),
        ];
        for (bit, flag) in map {
            if flags & bit != 0 {
                f |= flag;
            }
        }
        f
    }
}

bitflags! {
    /// renameat2 flags.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct RenameFlags: u32 {
        /// Fail with EEXIST if the target exists.
        const NOREPLACE = 1 << 0;
        /// Atomically swap source and target (both must exist).
        const EXCHANGE = 1 << 1;
        /// Leave a whiteout (character device 0/0) where the source was.
        const WHITEOUT = 1 << 2;
    }
}

bitflags! {
    /// setxattr flags.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct XattrFlags: u32 {
        /// Fail with EEXIST if the attribute exists.
        const CREATE = 1 << 0;
        /// Fail with ENODATA if the attribute does not exist.
        const REPLACE = 1 << 1;
    }
}

bitflags! {
    /// fallocate modes.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct FallocFlags: u32 {
        /// Do not change the file size.
        const KEEP_SIZE = 1 << 0;
        /// Deallocate the range (requires KEEP_SIZE).
        const PUNCH_HOLE = 1 << 1;
        /// Zero the range.
        const ZERO_RANGE = 1 << 2;
    }
}

bitflags! {
    /// Inode attribute flags (chattr/lsattr; FS_IOC_GETFLAGS values): the ones kernel
    /// tmpfs supports.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct FileFlags: u32 {
        /// `i`: no change of data, name, links, attributes or xattrs, even by root.
        const IMMUTABLE = 0x10;
        /// `a`: writes only at the end (O_APPEND); no truncate, unlink or rename.
        const APPEND = 0x20;
        /// `d`: skipped by dump(8).
        const NODUMP = 0x40;
        /// `A`: reads do not update the access time.
        const NOATIME = 0x80;
    }
}

impl FileFlags {
    /// The FS_XFLAG_* form (struct fsxattr's fsx_xflags).
    pub fn to_xflags(self) -> u32 {
        let mut x = 0;
        for (f, bit) in Self::XFLAGS {
            if self.contains(f) {
                x |= bit;
            }
        }
        x
    }

    /// From FS_XFLAG_* bits; `None` when one has no flag here.
    pub fn from_xflags(x: u32) -> Option<FileFlags> {
        let mut f = FileFlags::empty();
        let mut rest = x;
        for (flag, bit) in Self::XFLAGS {
            if x & bit != 0 {
                f |= flag;
                rest &= !bit;
            }
        }
        (rest == 0).then_some(f)
    }

    const XFLAGS: [(FileFlags, u32); 4] = [
        (FileFlags::IMMUTABLE, 0x8),
        (FileFlags::APPEND, 0x10),
        (FileFlags::NODUMP, 0x80),
        (FileFlags::NOATIME, 0x40),
    ];
}

/// lseek for sparse files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whence {
    /// Next offset at or after `off` holding data.
    Data,
    /// Next offset at or after `off` in a hole (end of file counts as a hole).
    Hole,
}

/// An inode-like object of some filesystem.
///
/// Directory operations are called on the directory; they return ENOTDIR on other
/// nodes. Default implementations answer the errno Linux gives when a filesystem does
/// not support the operation.
pub trait Node: Any + Send + Sync {
    /// Inode number (cheap; stable for the node's life).
    fn ino(&self) -> u64;
    /// Node type (cheap).
    fn kind(&self) -> FileType;
    /// Current attributes.
    fn attr(&self) -> Result<Attr>;
    /// Change attributes; the filesystem updates ctime (and mtime on size change).
    fn setattr(&self, set: &SetAttr) -> Result<Attr>;

    /// Find a child by name.
    fn lookup(&self, name: &[u8]) -> Result<NodeRef>;
    /// The parent directory (directories only; `None` at the filesystem root).
    fn parent(&self) -> Option<NodeRef> {
        None
    }
    /// Create a child. EEXIST if the name exists.
    fn create(self: Arc<Self>, name: &[u8], new: &NewNode) -> Result<NodeRef>;
    /// Add a hard link to `target` (a node of the same filesystem) under `name`.
    fn link(&self, name: &[u8], target: &NodeRef) -> Result<()>;
    /// Remove a non-directory child.
    fn unlink(&self, name: &[u8]) -> Result<()>;
    /// Remove an empty directory child.
    fn rmdir(&self, name: &[u8]) -> Result<()>;
    /// Rename `name` in this directory to `new_name` in `new_dir` (same filesystem).
    fn rename(
        self: Arc<Self>,
        name: &[u8],
        new_dir: &NodeRef,
        new_name: &[u8],
        flags: RenameFlags,
    ) -> Result<()>;
    /// Read entries with cookies greater than `after` (0 = from the start), calling
    /// `sink` until it returns false. `.` and `..` are not included.
    fn readdir(&self, after: u64, sink: &mut dyn FnMut(DirEntry<'_>) -> bool) -> Result<()>;

    /// Record an access (a read or a listing), relatime style: the access time moves
    /// only when it is not newer than the last modification or change. Filesystems
    /// whose storage keeps access times itself (the host, behind a gofer), or that
    /// must not change for a read (an overlay's lower layers), override this.
    fn touch_atime(&self) {
        if self.file_flags().is_ok_and(|f| f.contains(FileFlags::NOATIME)) {
            return;
        }
        if let Ok(a) = self.attr()
            && (a.atime <= a.mtime || a.atime <= a.ctime)
        {
            let set = SetAttr { atime: Some(TimeSet::Now), ctime: Some(a.ctime), ..SetAttr::default() };
            let _ = self.setattr(&set);
        }
    }

    /// Attribute flags (FS_IOC_GETFLAGS). ENOTTY (the default) when the filesystem
    /// keeps none: the VFS then takes them as empty.
    fn file_flags(&self) -> Result<FileFlags> {
        Err(crate::Errno::NOTTY)
    }

    /// Replace the attribute flags (FS_IOC_SETFLAGS) and update ctime; the VFS has
    /// checked permissions and that only supported flags are set.
    fn set_file_flags(&self, flags: FileFlags) -> Result<()> {
        let _ = flags;
        Err(crate::Errno::NOTTY)
    }

    /// Symlink target.
    fn readlink(&self) -> Result<Vec<u8>>;
    /// Open a regular file for data access.
    fn open(self: Arc<Self>, flags: OpenFlags) -> Result<Arc<dyn Handle>>;

    /// Read an extended attribute.
    fn getxattr(&self, name: &[u8]) -> Result<Vec<u8>>;
    /// Set an extended attribute.
    fn setxattr(&self, name: &[u8], value: &[u8], flags: XattrFlags) -> Result<()>;
    /// Names of all extended attributes.
    fn listxattr(&self) -> Result<Vec<Vec<u8>>>;
    /// Remove an extended attribute (ENODATA if absent).
    fn removexattr(&self, name: &[u8]) -> Result<()>;
}

/// An open regular file's data access. Holding a handle keeps the node alive.
pub trait Handle: Send + Sync {
    /// Read at an offset; returns bytes read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<usize>;
    /// Write at an offset; returns bytes written.
    fn write_at(&self, data: &[u8], off: u64) -> Result<usize>;
    /// Write at the current end of file atomically; returns the bytes written
    /// (fewer than `data.len()` when the filesystem filled up part way: a short
    /// write, as Linux reports it) and the end offset after.
    fn append(&self, data: &[u8]) -> Result<(usize, u64)>;
    /// Flush to stable storage.
    fn fsync(&self, datasync: bool) -> Result<()>;
    /// Allocate, punch or zero a range.
    fn fallocate(&self, flags: FallocFlags, off: u64, len: u64) -> Result<()>;
    /// SEEK_DATA / SEEK_HOLE; ENXIO past the end.
    fn seek(&self, off: u64, whence: Whence) -> Result<u64>;
    /// The host file descriptor backing the data, when there is one (for FUSE
    /// passthrough).
    fn host_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    /// A descriptor the kernel may read and write this open file through directly
    /// (FUSE passthrough, writable opens included), for the life of the file: the
    /// filesystem reads the file's size, times and data back from it, so nothing
    /// written there is missed. `None` when writes must pass through the filesystem.
    fn passthrough_fd(&self) -> Option<Arc<OwnedFd>> {
        None
    }
}
