//! The gofer protocol's messages and their one codec, shared by client and server.
//! See PROTOCOL.md for the layout. Decoding validates everything: lengths, counts,
//! names, enum values; a message that fails is a protocol error that ends the
//! connection.

use crate::wire::{DecodeError, Reader, Writer};
use sandfs_vfs::{Attr, FileType, SetAttr, StatFs, TimeSet, Timespec};

/// Protocol version this build speaks (2 added [`Request::Listdir`], 3
/// [`Request::Openat`], 4 listings made ahead: `Reply::Listed::ahead`).
pub const VERSION: u32 = 4;
/// Oldest protocol version this build still speaks (client and server).
pub const MIN_VERSION: u32 = 1;
/// Largest message in either direction, in bytes.
pub const MAX_MESSAGE: usize = 256 * 1024;
/// Most components in one walk.
pub const MAX_WALK: usize = 255;
/// Longest name.
pub const MAX_NAME: usize = 255;
/// Longest symlink target.
pub const MAX_TARGET: usize = 4095;
/// Longest xattr name.
pub const MAX_XATTR_NAME: usize = 255;
/// Largest xattr value.
pub const MAX_XATTR_VALUE: usize = 65536;
/// Most fids released by one close.
pub const MAX_CLOSE: usize = 4096;
/// Most names in a listxattr reply.
pub const MAX_XATTRS: usize = 4096;
/// Most entries in one getdents reply.
pub const MAX_DENTS: usize = 4096;

/// A server-side handle to a file, chosen by the server.
pub type Fid = u64;

/// Attribute-set flags of [`Request::Setattr`].
pub mod setattr_valid {
    /// Set the permission bits.
    pub const MODE: u32 = 1;
    /// Set the owner.
    pub const UID: u32 = 2;
    /// Set the group.
    pub const GID: u32 = 4;
    /// Set the size.
    pub const SIZE: u32 = 8;
    /// Set the access time to the given value.
    pub const ATIME: u32 = 16;
    /// Set the modification time to the given value.
    pub const MTIME: u32 = 32;
    /// Set the access time to now.
    pub const ATIME_NOW: u32 = 64;
    /// Set the modification time to now.
    pub const MTIME_NOW: u32 = 128;
    /// Change nothing but ctime (to now), as chown(-1, -1) does.
    pub const CTIME: u32 = 256;
}

/// Whether `name` is a valid single component: 1..=255 bytes, no `/`, no NUL, not
/// `.` or `..`.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name != b"."
        && name != b".."
        && !name.contains(&b'/')
        && !name.contains(&0)
}

/// How a walk ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalkEnd {
    /// Every component was found.
    Complete,
    /// Component `index` could not be walked (`errno`: ENOENT when missing).
    Stopped {
        /// Index of the component that failed.
        index: u16,
        /// Why.
        errno: i32,
    },
    /// Component `index` is a symlink (its entry is the last one returned).
    Symlink {
        /// Index of the symlink.
        index: u16,
    },
}

/// One directory entry with attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dent {
    /// Name (shared: the client keys its entry cache with it without a copy).
    pub name: std::sync::Arc<[u8]>,
    /// Cookie to resume after this entry.
    pub off: u64,
    /// Attributes.
    pub attr: Attr,
}

/// A request from the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Start: negotiate the version and get the mount root.
    Attach {
        /// Highest version the client speaks.
        version: u32,
    },
    /// Walk components from a directory, returning each one's attributes.
    Walk {
        /// Starting directory.
        dir: Fid,
        /// Components.
        names: Vec<Vec<u8>>,
    },
    /// Attributes of a fid.
    Getattr {
        /// The file.
        fid: Fid,
    },
    /// Directory entries after cookie `off`, with attributes.
    Getdents {
        /// The directory.
        dir: Fid,
        /// Resume cookie (0: start).
        off: u64,
    },
    /// Walk one component to a directory and list it (version 2): a `Walk` of
    /// `name` followed by a `Getdents` of the new fid, in one round trip.
    Listdir {
        /// The parent directory.
        dir: Fid,
        /// The directory to list.
        name: Vec<u8>,
        /// Resume cookie (0: start).
        off: u64,
    },
    /// Walk one component to a regular file and open it (version 3): a `Walk` of
    /// `name` followed by an `Open` of the new fid, in one round trip. The reply is
    /// `Node` (the new fid and its attributes) and donates the host fd.
    Openat {
        /// The parent directory.
        dir: Fid,
        /// The file to open.
        name: Vec<u8>,
        /// open(2) flags (access mode, O_APPEND, O_TRUNC).
        flags: u32,
    },
    /// Open a file; the reply donates the host fd.
    Open {
        /// The file.
        fid: Fid,
        /// open(2) flags (access mode, O_APPEND, O_TRUNC).
        flags: u32,
    },
    /// Create and open a regular file; the reply donates the host fd.
    Create {
        /// Parent directory.
        dir: Fid,
        /// New name.
        name: Vec<u8>,
        /// open(2) flags.
        flags: u32,
        /// Permission bits.
        mode: u32,
        /// Owner for the new file.
        uid: u32,
        /// Group for the new file.
        gid: u32,
    },
    /// Make a directory, device, FIFO or socket (`mode` carries the type).
    Mknod {
        /// Parent directory.
        dir: Fid,
        /// New name.
        name: Vec<u8>,
        /// Full st_mode: type and permission bits.
        mode: u32,
        /// Device number.
        rdev: u64,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
    /// Make a symlink.
    Symlink {
        /// Parent directory.
        dir: Fid,
        /// New name.
        name: Vec<u8>,
        /// Target.
        target: Vec<u8>,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
    /// Hard-link `target` as `name` in `dir`.
    Link {
        /// Parent directory.
        dir: Fid,
        /// New name.
        name: Vec<u8>,
        /// Existing file.
        target: Fid,
    },
    /// Remove a name (`rmdir`: a directory).
    Unlink {
        /// Parent directory.
        dir: Fid,
        /// Name.
        name: Vec<u8>,
        /// Remove a directory.
        rmdir: bool,
    },
    /// renameat2.
    Rename {
        /// Source directory.
        olddir: Fid,
        /// Source name.
        oldname: Vec<u8>,
        /// Target directory.
        newdir: Fid,
        /// Target name.
        newname: Vec<u8>,
        /// renameat2 flags.
        flags: u32,
    },
    /// Change attributes.
    Setattr {
        /// The file.
        fid: Fid,
        /// Which fields ([`setattr_valid`]).
        valid: u32,
        /// Permission bits.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
        /// Size.
        size: u64,
        /// Access time.
        atime: Timespec,
        /// Modification time.
        mtime: Timespec,
    },
    /// Symlink target.
    Readlink {
        /// The symlink.
        fid: Fid,
    },
    /// Filesystem statistics.
    Statfs {
        /// Any file of the filesystem.
        fid: Fid,
    },
    /// Read an xattr.
    Getxattr {
        /// The file.
        fid: Fid,
        /// Name.
        name: Vec<u8>,
    },
    /// Set an xattr.
    Setxattr {
        /// The file.
        fid: Fid,
        /// Name.
        name: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// XATTR_CREATE (1) / XATTR_REPLACE (2).
        flags: u32,
    },
    /// List xattr names.
    Listxattr {
        /// The file.
        fid: Fid,
    },
    /// Remove an xattr.
    Removexattr {
        /// The file.
        fid: Fid,
        /// Name.
        name: Vec<u8>,
    },
    /// fsync a file or directory.
    Fsync {
        /// The file.
        fid: Fid,
        /// fdatasync only.
        datasync: bool,
    },
    /// fallocate.
    Fallocate {
        /// The file.
        fid: Fid,
        /// fallocate mode bits.
        mode: u32,
        /// Offset.
        off: u64,
        /// Length.
        len: u64,
    },
    /// Release fids.
    Close {
        /// The fids.
        fids: Vec<Fid>,
    },
}

/// A successful reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// To Attach.
    Attached {
        /// Version both sides will speak.
        version: u32,
        /// The mount root.
        root: Fid,
        /// Its attributes.
        attr: Attr,
        /// Whether the mount is read-only.
        readonly: bool,
    },
    /// To Walk.
    Walked {
        /// How it ended.
        end: WalkEnd,
        /// One entry per component walked.
        entries: Vec<(Fid, Attr)>,
    },
    /// To Getattr and Setattr.
    Attr(Attr),
    /// To Getdents.
    Dents {
        /// Entries.
        entries: Vec<Dent>,
        /// No more entries after these.
        eof: bool,
    },
    /// To Listdir: the walked directory and its entries.
    Listed {
        /// The directory's new fid.
        fid: Fid,
        /// Its attributes.
        attr: Attr,
        /// Entries.
        entries: Vec<Dent>,
        /// No more entries after these.
        eof: bool,
        /// Listed ahead of the request (version 4), at most a moment ago: the
        /// client keeps attributes it holds over the ones listed here.
        ahead: bool,
    },
    /// To Create, Mknod, Symlink, Link: the new node (Create also donates an fd).
    Node {
        /// The node's fid.
        fid: Fid,
        /// Its attributes.
        attr: Attr,
    },
    /// To Open: the fd travels as ancillary data.
    Opened,
    /// To operations with no result.
    Unit,
    /// To Readlink and Getxattr.
    Data(Vec<u8>),
    /// To Listxattr.
    Names(Vec<Vec<u8>>),
    /// To Statfs.
    StatFs(StatFs),
}

mod op {
    pub const ATTACH: u8 = 1;
    pub const WALK: u8 = 2;
    pub const GETATTR: u8 = 3;
    pub const GETDENTS: u8 = 4;
    pub const OPEN: u8 = 5;
    pub const CREATE: u8 = 6;
    pub const MKNOD: u8 = 7;
    pub const SYMLINK: u8 = 8;
    pub const LINK: u8 = 9;
    pub const UNLINK: u8 = 10;
    pub const RENAME: u8 = 11;
    pub const SETATTR: u8 = 12;
    pub const READLINK: u8 = 13;
    pub const STATFS: u8 = 14;
    pub const GETXATTR: u8 = 15;
    pub const SETXATTR: u8 = 16;
    pub const LISTXATTR: u8 = 17;
    pub const REMOVEXATTR: u8 = 18;
    pub const FSYNC: u8 = 19;
    pub const FALLOCATE: u8 = 20;
    pub const CLOSE: u8 = 21;
    pub const LISTDIR: u8 = 22;
    pub const OPENAT: u8 = 23;
}

/// Reply kinds, one per request kind.
mod rk {
    pub const ATTACHED: u8 = 1;
    pub const WALKED: u8 = 2;
    pub const ATTR: u8 = 3;
    pub const DENTS: u8 = 4;
    pub const NODE: u8 = 5;
    pub const OPENED: u8 = 6;
    pub const UNIT: u8 = 7;
    pub const DATA: u8 = 8;
    pub const NAMES: u8 = 9;
    pub const STATFS: u8 = 10;
    pub const LISTED: u8 = 11;
    pub const ERROR: u8 = 255;
}

/// Encoded size of an [`Attr`].
pub const ATTR_SIZE: usize = 4 + 8 + 4 + 4 + 8 + 8 + 4 + 4 * 12 + 8 + 8 + 8;
/// Encoded size of a [`Dent`] with a name of `name_len` bytes.
pub const fn dent_size(name_len: usize) -> usize {
    4 + name_len + 8 + ATTR_SIZE
}
/// Encoded size of a `Listed` reply's fixed part (tag, kind, fid, attr, eof, count),
/// the largest header of a listing reply.
pub const LISTED_HEADER: usize = 4 + 1 + 8 + ATTR_SIZE + 1 + 4;

fn put_time(w: &mut Writer, t: Timespec) {
    w.i64(t.sec);
    w.u32(t.nsec);
}

fn get_time(r: &mut Reader<'_>) -> Result<Timespec, DecodeError> {
    let sec = r.i64()?;
    let nsec = r.u32()?;
    if nsec >= 1_000_000_000 {
        return Err(DecodeError::Invalid("nanoseconds"));
    }
    Ok(Timespec { sec, nsec })
}

/// Encode attributes.
pub fn put_attr(w: &mut Writer, a: &Attr) {
    w.u32(a.st_mode());
    w.u64(a.nlink);
    w.u32(a.uid);
    w.u32(a.gid);
    w.u64(a.size);
    w.u64(a.blocks);
    w.u32(a.blksize);
    put_time(w, a.atime);
    put_time(w, a.mtime);
    put_time(w, a.ctime);
    put_time(w, a.btime);
    w.u64(a.ino);
    w.u64(a.dev);
    w.u64(a.rdev);
}

/// Decode attributes.
pub fn get_attr(r: &mut Reader<'_>) -> Result<Attr, DecodeError> {
    let mode = r.u32()?;
    // Only type and permission bits: anything else would be silently dropped.
    if mode & !0o177777 != 0 {
        return Err(DecodeError::Invalid("mode"));
    }
    let kind = FileType::from_mode(mode).ok_or(DecodeError::Invalid("file type"))?;
    Ok(Attr {
        kind,
        mode: mode & 0o7777,
        nlink: r.u64()?,
        uid: r.u32()?,
        gid: r.u32()?,
        size: r.u64()?,
        blocks: r.u64()?,
        blksize: r.u32()?,
        atime: get_time(r)?,
        mtime: get_time(r)?,
        ctime: get_time(r)?,
        btime: get_time(r)?,
        ino: r.u64()?,
        dev: r.u64()?,
        rdev: r.u64()?,
    })
}

fn get_name(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    Ok(get_name_ref(r)?.to_vec())
}

fn get_name_ref<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], DecodeError> {
    let n = r.bytes_ref(MAX_NAME, "name length")?;
    if !valid_name(n) {
        return Err(DecodeError::Invalid("name"));
    }
    Ok(n)
}

/// `flags`: bit 0 eof, bit 1 (Listed only) listed ahead.
fn put_dents(w: &mut Writer, entries: &[Dent], flags: u8) {
    w.u8(flags);
    w.u32(entries.len() as u32);
    for d in entries {
        w.bytes(&d.name);
        w.u64(d.off);
        put_attr(w, &d.attr);
    }
}

/// The entries and the flags byte, which may have no bit above `max_flags`.
fn get_dents(r: &mut Reader<'_>, max_flags: u8) -> Result<(Vec<Dent>, u8), DecodeError> {
    let flags = r.u8()?;
    if flags > max_flags {
        return Err(DecodeError::Invalid("dirent flags"));
    }
    let n = r.count(MAX_DENTS, dent_size(1), "dirent count")?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        entries.push(Dent { name: get_name_ref(r)?.into(), off: r.u64()?, attr: get_attr(r)? });
    }
    Ok((entries, flags))
}

fn get_bool(r: &mut Reader<'_>) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::Invalid("boolean")),
    }
}

impl Request {
    /// Encode with a tag.
    pub fn encode(&self, tag: u32) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(tag);
        match self {
            Request::Attach { version } => {
                w.u8(op::ATTACH);
                w.u32(*version);
            }
            Request::Walk { dir, names } => {
                w.u8(op::WALK);
                w.u64(*dir);
                w.u32(names.len() as u32);
                for n in names {
                    w.bytes(n);
                }
            }
            Request::Getattr { fid } => {
                w.u8(op::GETATTR);
                w.u64(*fid);
            }
            Request::Getdents { dir, off } => {
                w.u8(op::GETDENTS);
                w.u64(*dir);
                w.u64(*off);
            }
            Request::Listdir { dir, name, off } => {
                w.u8(op::LISTDIR);
                w.u64(*dir);
                w.bytes(name);
                w.u64(*off);
            }
            Request::Openat { dir, name, flags } => {
                w.u8(op::OPENAT);
                w.u64(*dir);
                w.bytes(name);
                w.u32(*flags);
            }
            Request::Open { fid, flags } => {
                w.u8(op::OPEN);
                w.u64(*fid);
                w.u32(*flags);
            }
            Request::Create { dir, name, flags, mode, uid, gid } => {
                w.u8(op::CREATE);
                w.u64(*dir);
                w.bytes(name);
                w.u32(*flags);
                w.u32(*mode);
                w.u32(*uid);
                w.u32(*gid);
            }
            Request::Mknod { dir, name, mode, rdev, uid, gid } => {
                w.u8(op::MKNOD);
                w.u64(*dir);
                w.bytes(name);
                w.u32(*mode);
                w.u64(*rdev);
                w.u32(*uid);
                w.u32(*gid);
            }
            Request::Symlink { dir, name, target, uid, gid } => {
                w.u8(op::SYMLINK);
                w.u64(*dir);
                w.bytes(name);
                w.bytes(target);
                w.u32(*uid);
                w.u32(*gid);
            }
            Request::Link { dir, name, target } => {
                w.u8(op::LINK);
                w.u64(*dir);
                w.bytes(name);
                w.u64(*target);
            }
            Request::Unlink { dir, name, rmdir } => {
                w.u8(op::UNLINK);
                w.u64(*dir);
                w.bytes(name);
                w.u8(*rmdir as u8);
            }
            Request::Rename { olddir, oldname, newdir, newname, flags } => {
                w.u8(op::RENAME);
                w.u64(*olddir);
                w.bytes(oldname);
                w.u64(*newdir);
                w.bytes(newname);
                w.u32(*flags);
            }
            Request::Setattr { fid, valid, mode, uid, gid, size, atime, mtime } => {
                w.u8(op::SETATTR);
                w.u64(*fid);
                w.u32(*valid);
                w.u32(*mode);
                w.u32(*uid);
                w.u32(*gid);
                w.u64(*size);
                put_time(&mut w, *atime);
                put_time(&mut w, *mtime);
            }
            Request::Readlink { fid } => {
                w.u8(op::READLINK);
                w.u64(*fid);
            }
            Request::Statfs { fid } => {
                w.u8(op::STATFS);
                w.u64(*fid);
            }
            Request::Getxattr { fid, name } => {
                w.u8(op::GETXATTR);
                w.u64(*fid);
                w.bytes(name);
            }
            Request::Setxattr { fid, name, value, flags } => {
                w.u8(op::SETXATTR);
                w.u64(*fid);
                w.bytes(name);
                w.bytes(value);
                w.u32(*flags);
            }
            Request::Listxattr { fid } => {
                w.u8(op::LISTXATTR);
                w.u64(*fid);
            }
            Request::Removexattr { fid, name } => {
                w.u8(op::REMOVEXATTR);
                w.u64(*fid);
                w.bytes(name);
            }
            Request::Fsync { fid, datasync } => {
                w.u8(op::FSYNC);
                w.u64(*fid);
                w.u8(*datasync as u8);
            }
            Request::Fallocate { fid, mode, off, len } => {
                w.u8(op::FALLOCATE);
                w.u64(*fid);
                w.u32(*mode);
                w.u64(*off);
                w.u64(*len);
            }
            Request::Close { fids } => {
                w.u8(op::CLOSE);
                w.u32(fids.len() as u32);
                for f in fids {
                    w.u64(*f);
                }
            }
        }
        w.buf
    }

    /// Decode a request and its tag.
    pub fn decode(buf: &[u8]) -> Result<(u32, Request), DecodeError> {
        if buf.len() > MAX_MESSAGE {
            return Err(DecodeError::Invalid("message size"));
        }
        let mut r = Reader::new(buf);
        let tag = r.u32()?;
        let req = match r.u8()? {
            op::ATTACH => Request::Attach { version: r.u32()? },
            op::WALK => {
                let dir = r.u64()?;
                let n = r.count(MAX_WALK, 5, "walk count")?;
                let mut names = Vec::with_capacity(n);
                for _ in 0..n {
                    names.push(get_name(&mut r)?);
                }
                Request::Walk { dir, names }
            }
            op::GETATTR => Request::Getattr { fid: r.u64()? },
            op::GETDENTS => Request::Getdents { dir: r.u64()?, off: r.u64()? },
            op::LISTDIR => Request::Listdir { dir: r.u64()?, name: get_name(&mut r)?, off: r.u64()? },
            op::OPEN => Request::Open { fid: r.u64()?, flags: r.u32()? },
            op::OPENAT => Request::Openat { dir: r.u64()?, name: get_name(&mut r)?, flags: r.u32()? },
            op::CREATE => Request::Create {
                dir: r.u64()?,
                name: get_name(&mut r)?,
                flags: r.u32()?,
                mode: r.u32()?,
                uid: r.u32()?,
                gid: r.u32()?,
            },
            op::MKNOD => Request::Mknod {
                dir: r.u64()?,
                name: get_name(&mut r)?,
                mode: r.u32()?,
                rdev: r.u64()?,
                uid: r.u32()?,
                gid: r.u32()?,
            },
            op::SYMLINK => {
                let dir = r.u64()?;
                let name = get_name(&mut r)?;
                let target = r.bytes(MAX_TARGET, "symlink target")?;
                if target.is_empty() || target.contains(&0) {
                    return Err(DecodeError::Invalid("symlink target"));
                }
                Request::Symlink { dir, name, target, uid: r.u32()?, gid: r.u32()? }
            }
            op::LINK => Request::Link { dir: r.u64()?, name: get_name(&mut r)?, target: r.u64()? },
            op::UNLINK => {
                Request::Unlink { dir: r.u64()?, name: get_name(&mut r)?, rmdir: get_bool(&mut r)? }
            }
            op::RENAME => Request::Rename {
                olddir: r.u64()?,
                oldname: get_name(&mut r)?,
                newdir: r.u64()?,
                newname: get_name(&mut r)?,
                flags: r.u32()?,
            },
            op::SETATTR => Request::Setattr {
                fid: r.u64()?,
                valid: r.u32()?,
                mode: r.u32()?,
                uid: r.u32()?,
                gid: r.u32()?,
                size: r.u64()?,
                atime: get_time(&mut r)?,
                mtime: get_time(&mut r)?,
            },
            op::READLINK => Request::Readlink { fid: r.u64()? },
            op::STATFS => Request::Statfs { fid: r.u64()? },
            op::GETXATTR => Request::Getxattr { fid: r.u64()?, name: get_xname(&mut r)? },
            op::SETXATTR => Request::Setxattr {
                fid: r.u64()?,
                name: get_xname(&mut r)?,
                value: r.bytes(MAX_XATTR_VALUE, "xattr value")?,
                flags: r.u32()?,
            },
            op::LISTXATTR => Request::Listxattr { fid: r.u64()? },
            op::REMOVEXATTR => Request::Removexattr { fid: r.u64()?, name: get_xname(&mut r)? },
            op::FSYNC => Request::Fsync { fid: r.u64()?, datasync: get_bool(&mut r)? },
            op::FALLOCATE => {
                Request::Fallocate { fid: r.u64()?, mode: r.u32()?, off: r.u64()?, len: r.u64()? }
            }
            op::CLOSE => {
                let n = r.count(MAX_CLOSE, 8, "close count")?;
                let mut fids = Vec::with_capacity(n);
                for _ in 0..n {
                    fids.push(r.u64()?);
                }
                Request::Close { fids }
            }
            _ => return Err(DecodeError::Invalid("operation")),
        };
        r.finish()?;
        Ok((tag, req))
    }

    /// Whether the request changes the mount (refused with EROFS on read-only mounts).
    pub fn is_mutation(&self) -> bool {
        matches!(
            self,
            Request::Create { .. }
                | Request::Mknod { .. }
                | Request::Symlink { .. }
                | Request::Link { .. }
                | Request::Unlink { .. }
                | Request::Rename { .. }
                | Request::Setattr { .. }
                | Request::Setxattr { .. }
                | Request::Removexattr { .. }
                | Request::Fallocate { .. }
        )
    }
}

fn get_xname(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    let n = r.bytes(MAX_XATTR_NAME, "xattr name")?;
    if n.is_empty() || n.contains(&0) {
        return Err(DecodeError::Invalid("xattr name"));
    }
    Ok(n)
}

/// Encode a reply (or an errno) with its tag.
pub fn encode_reply(tag: u32, reply: &Result<Reply, i32>) -> Vec<u8> {
    let mut w = match reply {
        Ok(Reply::Dents { entries, .. }) | Ok(Reply::Listed { entries, .. }) => Writer::with_capacity(
            LISTED_HEADER + entries.iter().map(|d| dent_size(d.name.len())).sum::<usize>(),
        ),
        _ => Writer::new(),
    };
    w.u32(tag);
    match reply {
        Err(errno) => {
            w.u8(rk::ERROR);
            w.i32(*errno);
        }
        Ok(Reply::Attached { version, root, attr, readonly }) => {
            w.u8(rk::ATTACHED);
            w.u32(*version);
            w.u64(*root);
            put_attr(&mut w, attr);
            w.u8(*readonly as u8);
        }
        Ok(Reply::Walked { end, entries }) => {
            w.u8(rk::WALKED);
            match end {
                WalkEnd::Complete => w.u8(0),
                WalkEnd::Stopped { index, errno } => {
                    w.u8(1);
                    w.u16(*index);
                    w.i32(*errno);
                }
                WalkEnd::Symlink { index } => {
                    w.u8(2);
                    w.u16(*index);
                }
            }
            w.u32(entries.len() as u32);
            for (fid, attr) in entries {
                w.u64(*fid);
                put_attr(&mut w, attr);
            }
        }
        Ok(Reply::Attr(a)) => {
            w.u8(rk::ATTR);
            put_attr(&mut w, a);
        }
        Ok(Reply::Dents { entries, eof }) => {
            w.u8(rk::DENTS);
            put_dents(&mut w, entries, *eof as u8);
        }
        Ok(Reply::Listed { fid, attr, entries, eof, ahead }) => {
            w.u8(rk::LISTED);
            w.u64(*fid);
            put_attr(&mut w, attr);
            put_dents(&mut w, entries, *eof as u8 | (*ahead as u8) << 1);
        }
        Ok(Reply::Node { fid, attr }) => {
            w.u8(rk::NODE);
            w.u64(*fid);
            put_attr(&mut w, attr);
        }
        Ok(Reply::Opened) => w.u8(rk::OPENED),
        Ok(Reply::Unit) => w.u8(rk::UNIT),
        Ok(Reply::Data(d)) => {
            w.u8(rk::DATA);
            w.bytes(d);
        }
        Ok(Reply::Names(n)) => {
            w.u8(rk::NAMES);
            w.u32(n.len() as u32);
            for x in n {
                w.bytes(x);
            }
        }
        Ok(Reply::StatFs(s)) => {
            w.u8(rk::STATFS);
            w.u32(s.bsize);
            w.u64(s.blocks);
            w.u64(s.bfree);
            w.u64(s.bavail);
            w.u64(s.files);
            w.u64(s.ffree);
            w.u32(s.namelen);
            w.u64(s.fs_type);
        }
    }
    w.buf
}

/// Decode a reply and its tag; `Err(errno)` inside for error replies.
pub fn decode_reply(buf: &[u8]) -> Result<(u32, Result<Reply, i32>), DecodeError> {
    if buf.len() > MAX_MESSAGE {
        return Err(DecodeError::Invalid("message size"));
    }
    let mut r = Reader::new(buf);
    let tag = r.u32()?;
    let reply = match r.u8()? {
        rk::ERROR => {
            let e = r.i32()?;
            if e <= 0 || e > 4095 {
                return Err(DecodeError::Invalid("errno"));
            }
            Err(e)
        }
        rk::ATTACHED => Ok(Reply::Attached {
            version: r.u32()?,
            root: r.u64()?,
            attr: get_attr(&mut r)?,
            readonly: get_bool(&mut r)?,
        }),
        rk::WALKED => {
            let end = match r.u8()? {
                0 => WalkEnd::Complete,
                1 => {
                    let index = r.u16()?;
                    let errno = r.i32()?;
                    if errno <= 0 || errno > 4095 {
                        return Err(DecodeError::Invalid("errno"));
                    }
                    WalkEnd::Stopped { index, errno }
                }
                2 => WalkEnd::Symlink { index: r.u16()? },
                _ => return Err(DecodeError::Invalid("walk status")),
            };
            let n = r.count(MAX_WALK, 8 + ATTR_SIZE, "walk entries")?;
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                entries.push((r.u64()?, get_attr(&mut r)?));
            }
            Ok(Reply::Walked { end, entries })
        }
        rk::ATTR => Ok(Reply::Attr(get_attr(&mut r)?)),
        rk::DENTS => {
            let (entries, flags) = get_dents(&mut r, 1)?;
            Ok(Reply::Dents { entries, eof: flags & 1 != 0 })
        }
        rk::LISTED => {
            let fid = r.u64()?;
            let attr = get_attr(&mut r)?;
            let (entries, flags) = get_dents(&mut r, 3)?;
            Ok(Reply::Listed { fid, attr, entries, eof: flags & 1 != 0, ahead: flags & 2 != 0 })
        }
        rk::NODE => Ok(Reply::Node { fid: r.u64()?, attr: get_attr(&mut r)? }),
        rk::OPENED => Ok(Reply::Opened),
        rk::UNIT => Ok(Reply::Unit),
        rk::DATA => Ok(Reply::Data(r.bytes(MAX_XATTR_VALUE.max(MAX_TARGET), "data")?)),
        rk::NAMES => {
            let n = r.count(MAX_XATTRS, 5, "xattr names")?;
            let mut names = Vec::with_capacity(n);
            for _ in 0..n {
                names.push(get_xname(&mut r)?);
            }
            Ok(Reply::Names(names))
        }
        rk::STATFS => Ok(Reply::StatFs(StatFs {
            bsize: r.u32()?,
            blocks: r.u64()?,
            bfree: r.u64()?,
            bavail: r.u64()?,
            files: r.u64()?,
            ffree: r.u64()?,
            namelen: r.u32()?,
            fs_type: r.u64()?,
        })),
        _ => return Err(DecodeError::Invalid("reply kind")),
    };
    r.finish()?;
    Ok((tag, reply))
}

/// Translate a vfs setattr into the wire fields.
pub fn setattr_fields(set: &SetAttr) -> (u32, u32, u32, u32, u64, Timespec, Timespec) {
    use setattr_valid as v;
    let mut valid = 0;
    let mut atime = Timespec::default();
    let mut mtime = Timespec::default();
    if set.mode.is_some() {
        valid |= v::MODE;
    }
    if set.uid.is_some() {
        valid |= v::UID;
    }
    if set.gid.is_some() {
        valid |= v::GID;
    }
    if set.size.is_some() {
        valid |= v::SIZE;
    }
    match set.atime {
        Some(TimeSet::Now) => valid |= v::ATIME_NOW,
        Some(TimeSet::At(t)) => {
            valid |= v::ATIME;
            atime = t;
        }
        None => {}
    }
    match set.mtime {
        Some(TimeSet::Now) => valid |= v::MTIME_NOW,
        Some(TimeSet::At(t)) => {
            valid |= v::MTIME;
            mtime = t;
        }
        None => {}
    }
    (
        valid,
        set.mode.unwrap_or(0),
        set.uid.unwrap_or(0),
        set.gid.unwrap_or(0),
        set.size.unwrap_or(0),
        atime,
        mtime,
    )
}
