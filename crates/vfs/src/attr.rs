//! File attributes at the level of statx, the changes setattr may make, directory
//! entries and filesystem statistics.

use std::time::{SystemTime, UNIX_EPOCH};

/// The type of a node (the S_IFMT part of a mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    /// Regular file.
    Regular,
    /// Directory.
    Directory,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Unix domain socket.
    Socket,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
}

impl FileType {
    /// The S_IFMT bits for this type.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileType::Regular => 0o100000,
            FileType::Directory => 0o040000,
            FileType::Symlink => 0o120000,
            FileType::Fifo => 0o010000,
            FileType::Socket => 0o140000,
            FileType::CharDevice => 0o020000,
            FileType::BlockDevice => 0o060000,
        }
    }

    /// The type encoded in a full st_mode, if valid.
    pub fn from_mode(mode: u32) -> Option<FileType> {
        Some(match mode & 0o170000 {
            0o100000 => FileType::Regular,
            0o040000 => FileType::Directory,
            0o120000 => FileType::Symlink,
            0o010000 => FileType::Fifo,
            0o140000 => FileType::Socket,
            0o020000 => FileType::CharDevice,
            0o060000 => FileType::BlockDevice,
            _ => return None,
        })
    }

    /// The d_type value readdir reports.
    pub fn dirent_type(self) -> u8 {
        ((self.mode_bits() >> 12) & 0o17) as u8
    }
}

/// A point in time as seconds and nanoseconds since the epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timespec {
    /// Seconds since 1970-01-01 UTC (negative before).
    pub sec: i64,
    /// Nanoseconds, 0..1e9.
    pub nsec: u32,
}

impl Timespec {
    /// The current wall-clock time.
    pub fn now() -> Timespec {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => Timespec { sec: d.as_secs() as i64, nsec: d.subsec_nanos() },
            Err(_) => Timespec::default(),
        }
    }

    /// Nanoseconds since the epoch (saturating outside ±292 years).
    #[inline]
    pub fn as_nanos(self) -> i64 {
        self.sec.saturating_mul(1_000_000_000).saturating_add(self.nsec as i64)
    }

    /// From nanoseconds since the epoch.
    #[inline]
    pub fn from_nanos(ns: i64) -> Timespec {
        Timespec { sec: ns.div_euclid(1_000_000_000), nsec: ns.rem_euclid(1_000_000_000) as u32 }
    }
}

/// Attributes of a node, as statx reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Node type.
    pub kind: FileType,
    /// Permission bits including setuid, setgid and sticky (0o7777).
    pub mode: u32,
    /// Number of hard links (0 once unlinked while still open).
    pub nlink: u64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (symlinks: target length).
    pub size: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    /// Preferred I/O size.
    pub blksize: u32,
    /// Last access.
    pub atime: Timespec,
    /// Last data modification.
    pub mtime: Timespec,
    /// Last status change.
    pub ctime: Timespec,
    /// Creation.
    pub btime: Timespec,
    /// Inode number, unique within the filesystem.
    pub ino: u64,
    /// Device of the filesystem holding the node.
    pub dev: u64,
    /// Device number for character and block devices.
    pub rdev: u64,
}

impl Attr {
    /// The full st_mode: type bits and permission bits.
    pub fn st_mode(&self) -> u32 {
        self.kind.mode_bits() | self.mode
    }
}

/// How setattr changes a timestamp (absent: UTIME_OMIT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSet {
    /// UTIME_NOW: the filesystem's current time.
    Now,
    /// An explicit time.
    At(Timespec),
}

/// A change of attributes. `None` fields are left alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits (0o7777).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (truncate or extend).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<TimeSet>,
    /// New modification time.
    pub mtime: Option<TimeSet>,
    /// Explicit change time; filesystems otherwise set ctime to now on any change.
    /// Used by copy-up to preserve the original.
    pub ctime: Option<Timespec>,
}

impl SetAttr {
    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        *self == SetAttr::default()
    }
}

/// One directory entry. `offset` is the cookie to pass back to continue after it.
#[derive(Clone, Copy, Debug)]
pub struct DirEntry<'a> {
    /// Entry name.
    pub name: &'a [u8],
    /// Inode number of the entry.
    pub ino: u64,
    /// Entry type.
    pub kind: FileType,
    /// Cookie of this entry: readdir with `after = offset` resumes after it.
    pub offset: u64,
}

/// Filesystem statistics (statfs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatFs {
    /// Block size for the counts below.
    pub bsize: u32,
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks for unprivileged users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Longest name.
    pub namelen: u32,
    /// Filesystem magic (f_type).
    pub fs_type: u64,
}
