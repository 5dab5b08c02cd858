//! sandfs tmpfs: an in-memory filesystem implementing the vfs traits.
//!
//! Every node type, hard links, extended attributes, sparse files (holes read as
//! zeros, `st_blocks` counts allocated pages), the mount options mode, uid, gid,
//! size and nr_inodes with ENOSPC at the limits, and a root that is either a
//! directory or a single regular file. Each inode has its own lock, so unrelated
//! files never wait for each other; only renames between directories share a lock.
//!
//! # What counts against `size`
//!
//! Everything the filesystem holds, so that a program cannot make it hold more
//! memory than its size (kernel tmpfs charges only data pages to `size`, and inodes
//! and xattrs to the space behind `nr_inodes`, which by default is a share of RAM
//! whatever `size` says: 3 GiB of xattrs fit on a 64 MiB kernel tmpfs of a 24 GiB
//! machine). Charged, in bytes, against one budget:
//!
//! - a data page: [`PAGE_SIZE`] (only pages held; holes are free);
//! - an inode: [`INODE_COST`], plus a symlink's target length;
//! - a directory entry: [`DIRENT_COST`] plus the name's length;
//! - an extended attribute: [`XATTR_COST`] plus its name and value lengths.
//!
//! So data alone fills a `size` a little less than on the kernel (the root costs
//! [`INODE_COST`] bytes, each file its inode and entry). Removing an xattr, the
//! last link of an inode (once nothing holds it open) or data (truncate, hole
//! punching) gives its bytes back.
//!
//! Without a `size`, the limit is [`default_size`]: half of RAM, as kernel tmpfs.
//! Two kinds of data escape the budget: pages in a store file when the limit is
//! the default (they are on disk; memory held beside them still counts), and files
//! kept in memfds (no explicit `size` only, see [`TmpfsOptions::memfd_from`]), which
//! statfs counts but whose writes by the kernel (passthrough) cannot be refused.

mod data;
mod dir;
mod inode;
mod store;
mod xattr;

pub use inode::Inode;
pub use store::StoreFile;

use sandfs_vfs::{Changing, Errno, FileType, Filesystem, Generation, NodeRef, Result, StatFs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Page size used for allocation and accounting.
pub const PAGE_SIZE: u64 = 4096;
/// Default [`TmpfsOptions::memfd_from`]: files past 1 MiB live in memfds (few enough
/// descriptors for many small files; big enough that passthrough pays).
pub const MEMFD_FROM: u64 = 1 << 20;
/// f_type of tmpfs (TMPFS_MAGIC), reported by statfs.
pub const TMPFS_MAGIC: u64 = 0x0102_1994;
/// Bytes each inode is charged against `size`: at least its heap footprint (the
/// inode, its lock and state, a directory's entry table header; a test checks).
pub const INODE_COST: u64 = 256;
/// Bytes each directory entry is charged besides its name (its slot and index).
pub const DIRENT_COST: u64 = 32;
/// Bytes each extended attribute is charged besides its name and value (kernel
/// shmem charges `sizeof(struct simple_xattr)` + name + 1 + value similarly).
pub const XATTR_COST: u64 = 32;
/// Largest extended attribute value (Linux XATTR_SIZE_MAX); larger is E2BIG.
pub const XATTR_SIZE_MAX: usize = 65536;
/// Longest extended attribute name (Linux XATTR_NAME_MAX); longer is ERANGE.
pub const XATTR_NAME_MAX: usize = 255;
/// A [`TmpfsOptions::size`] meaning no limit (what `size=0` parses to, as on Linux).
pub const NO_LIMIT: u64 = u64::MAX;

/// The size limit of a tmpfs made without one: half of RAM (MemTotal, from
/// sysinfo(2)) in whole pages, as kernel tmpfs (`totalram_pages() / 2`).
pub fn default_size() -> u64 {
    static SIZE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| {
        let info = rustix::system::sysinfo();
        let ram = (info.totalram as u64).saturating_mul(info.mem_unit.max(1) as u64);
        ram / PAGE_SIZE / 2 * PAGE_SIZE
    })
}

/// Mount options, as `mount -t tmpfs -o ...` takes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TmpfsOptions {
    /// Permission bits of the root (default 01777 for a directory, 0644 for a file).
    pub mode: Option<u32>,
    /// Owner of the root.
    pub uid: u32,
    /// Group of the root.
    pub gid: u32,
    /// Cap on what the filesystem holds, in bytes (rounded up to pages; see the
    /// crate documentation for what counts). `None`: [`default_size`], half of RAM;
    /// [`NO_LIMIT`]: none.
    pub size: Option<u64>,
    /// Cap on the number of inodes (the root included); `None`: unlimited.
    pub nr_inodes: Option<u64>,
    /// Whether the root is a directory or a single regular file.
    pub root: FileType,
    /// Files that grow past this many bytes move into a memfd of their own, which the
    /// FUSE front end hands to the kernel (passthrough) so their reads and writes skip
    /// sandfs. `None`: never; default [`MEMFD_FROM`]. Ignored with an explicit `size`
    /// or a store file: writes the kernel makes directly could not be charged or
    /// kept in the store.
    pub memfd_from: Option<u64>,
}

impl Default for TmpfsOptions {
    fn default() -> Self {
        TmpfsOptions {
            mode: None,
            uid: 0,
            gid: 0,
            size: None,
            nr_inodes: None,
            root: FileType::Directory,
            memfd_from: Some(MEMFD_FROM),
        }
    }
}

impl TmpfsOptions {
    /// Parse a comma-separated option string (`mode=1777,size=64m,uid=0,...`).
    /// Sizes take k/m/g suffixes or a `%` of nothing (rejected: no RAM figure here).
    /// As on Linux, 0 for size, nr_blocks or nr_inodes means no limit ([`NO_LIMIT`]
    /// for size, `None` for nr_inodes); no size means [`default_size`].
    pub fn parse(s: &str) -> std::result::Result<TmpfsOptions, String> {
        let mut o = TmpfsOptions::default();
        for opt in s.split(',').filter(|x| !x.is_empty()) {
            let (k, v) = opt.split_once('=').ok_or_else(|| format!("tmpfs option {opt:?} needs a value"))?;
            match k {
                "mode" => {
                    o.mode =
                        Some(u32::from_str_radix(v, 8).map_err(|_| format!("bad tmpfs mode {v:?}"))? & 0o7777)
                }
                "uid" => o.uid = v.parse().map_err(|_| format!("bad tmpfs uid {v:?}"))?,
                "gid" => o.gid = v.parse().map_err(|_| format!("bad tmpfs gid {v:?}"))?,
                "size" => o.size = Some(limit_or_none(parse_size(v)?)),
                "nr_blocks" => o.size = Some(limit_or_none(parse_size(v)?.saturating_mul(PAGE_SIZE))),
                "nr_inodes" => o.nr_inodes = Some(parse_size(v)?).filter(|&n| n != 0),
                _ => return Err(format!("unknown tmpfs option {k:?}")),
            }
        }
        Ok(o)
    }
}

/// A parsed size: 0 means no limit.
fn limit_or_none(n: u64) -> u64 {
    if n == 0 { NO_LIMIT } else { n }
}

/// Parse `N`, `Nk`, `Nm`, `Ng`, `Nt` (binary multiples).
pub fn parse_size(v: &str) -> std::result::Result<u64, String> {
    let (num, mult) = match v.chars().last() {
        Some('k' | 'K') => (&v[..v.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&v[..v.len() - 1], 1 << 20),
        Some('g' | 'G') => (&v[..v.len() - 1], 1 << 30),
        Some('t' | 'T') => (&v[..v.len() - 1], 1 << 40),
        _ => (v, 1),
    };
    num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)).ok_or_else(|| format!("bad size {v:?}"))
}

/// State shared by every inode of one tmpfs: limits, counters, the rename lock.
pub(crate) struct Shared {
    pub dev: u64,
    next_ino: AtomicU64,
    /// Bytes charged against `limit` (see the crate documentation).
    charged: AtomicU64,
    limit: u64,
    /// Data pages held (charged or not), for used_bytes and statfs.
    pages: AtomicU64,
    /// Data pages are charged (not when they live in a store file under the
    /// default limit: that one bounds memory).
    pages_charged: bool,
    inodes: AtomicU64,
    max_inodes: u64,
    pub rename_lock: parking_lot::Mutex<()>,
    /// Moved by every change a path walk could see (see
    /// [`Filesystem::generation`]): names, parents, mode, uid, gid.
    generation: Arc<Generation>,
    /// Where page bytes live (heap, or a store file).
    pub page_store: store::Pages,
    /// Files past this size move into memfds (see [`TmpfsOptions::memfd_from`]).
    pub memfd_from: Option<u64>,
    /// The memfds of such files, for statfs (they count their own blocks).
    pub memfds: parking_lot::Mutex<Vec<std::sync::Weak<rustix::fd::OwnedFd>>>,
}

impl Shared {
    pub fn alloc_ino(&self) -> u64 {
        self.next_ino.fetch_add(1, Ordering::Relaxed)
    }

    /// Charge `n` bytes against the limit; ENOSPC (nothing charged) beyond it.
    pub fn charge(&self, n: u64) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.charged
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                c.checked_add(n).filter(|&t| t <= self.limit)
            })
            .map(|_| ())
            .map_err(|_| Errno::NOSPC)
    }

    /// Give back `n` charged bytes.
    pub fn uncharge(&self, n: u64) {
        self.charged.fetch_sub(n, Ordering::Relaxed);
    }

    /// Charge `n` bytes until the result is kept or dropped: a reservation taken
    /// before a change that may still fail.
    pub fn reserve(&self, n: u64) -> Result<Reserved<'_>> {
        self.charge(n)?;
        Ok(Reserved { fs: self, bytes: n })
    }

    /// Reserve `n` pages of data; ENOSPC beyond the size limit.
    pub fn charge_pages(&self, n: u64) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        if self.pages_charged {
            self.charge(n.saturating_mul(PAGE_SIZE))?;
        }
        self.pages.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Pages of data held: pages plus what the memfds of big files hold
    /// (rounded up to pages; the dead ones are forgotten here).
    pub fn used_pages(&self) -> u64 {
        self.pages.load(Ordering::Relaxed) + self.memfd_pages()
    }

    /// Pages the memfds of big files hold (the dead ones are forgotten here).
    fn memfd_pages(&self) -> u64 {
        let mut in_memfds = 0;
        self.memfds.lock().retain(|w| match w.upgrade() {
            Some(fd) => {
                let blocks = rustix::fs::fstat(&*fd).map(|st| st.st_blocks as u64).unwrap_or(0);
                in_memfds += (blocks * 512).div_ceil(PAGE_SIZE);
                true
            }
            None => false,
        });
        in_memfds
    }

    pub fn uncharge_pages(&self, n: u64) {
        self.pages.fetch_sub(n, Ordering::Relaxed);
        if self.pages_charged {
            self.uncharge(n * PAGE_SIZE);
        }
    }

    /// Reserve one inode (and `extra` bytes held with it, a symlink's target);
    /// ENOSPC beyond nr_inodes or the size limit.
    pub fn charge_inode(&self, extra: u64) -> Result<()> {
        let prev = self.inodes.fetch_add(1, Ordering::Relaxed);
        if prev + 1 > self.max_inodes {
            self.inodes.fetch_sub(1, Ordering::Relaxed);
            return Err(Errno::NOSPC);
        }
        if let Err(e) = self.charge(INODE_COST + extra) {
            self.inodes.fetch_sub(1, Ordering::Relaxed);
            return Err(e);
        }
        Ok(())
    }

    /// A change a path walk could see is in progress until the result is dropped:
    /// taken first thing in an operation that changes names or permissions (before
    /// any lock, so it ends after they are released), it brackets the change on every
    /// path out, errors included.
    pub fn changing(&self) -> Changing<'_> {
        self.generation.change()
    }

    /// Give back an inode and the `extra` bytes charged with it.
    pub fn uncharge_inode(&self, extra: u64) {
        self.inodes.fetch_sub(1, Ordering::Relaxed);
        self.uncharge(INODE_COST + extra);
    }
}

/// Bytes charged for a directory entry named `name`.
pub(crate) fn dirent_cost(name: &[u8]) -> u64 {
    DIRENT_COST + name.len() as u64
}

/// Bytes charged until kept ([`Reserved::keep`]) or given back when dropped.
pub(crate) struct Reserved<'a> {
    fs: &'a Shared,
    bytes: u64,
}

impl Reserved<'_> {
    /// The change happened: the bytes stay charged.
    pub fn keep(mut self) {
        self.bytes = 0;
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.fs.uncharge(self.bytes);
    }
}

static NEXT_DEV: AtomicU64 = AtomicU64::new(1);

/// One tmpfs instance.
pub struct Tmpfs {
    shared: Arc<Shared>,
    root: Arc<Inode>,
}

impl Tmpfs {
    /// A new, empty tmpfs. ENOSPC if nr_inodes is 0.
    pub fn new(opts: &TmpfsOptions) -> Result<Arc<Tmpfs>> {
        Tmpfs::with_store(opts, None)
    }

    /// A new, empty tmpfs whose file pages live in `store` (a host file) rather than
    /// on the heap, when given.
    pub fn with_store(opts: &TmpfsOptions, store: Option<StoreFile>) -> Result<Arc<Tmpfs>> {
        let minor = NEXT_DEV.fetch_add(1, Ordering::Relaxed);
        // Anonymous device numbers live under major 0, as the kernel's do.
        let dev = (minor & 0xff) | ((minor & !0xff) << 12) | (1 << 44);
        let limit = match opts.size {
            Some(NO_LIMIT) => NO_LIMIT,
            Some(n) => n.div_ceil(PAGE_SIZE) * PAGE_SIZE,
            None => default_size(),
        };
        let shared = Arc::new(Shared {
            dev,
            next_ino: AtomicU64::new(1),
            charged: AtomicU64::new(0),
            limit,
            pages: AtomicU64::new(0),
            pages_charged: store.is_none() || opts.size.is_some(),
            inodes: AtomicU64::new(0),
            max_inodes: opts.nr_inodes.unwrap_or(u64::MAX / 2),
            rename_lock: parking_lot::Mutex::new(()),
            generation: Arc::new(Generation::new()),
            memfd_from: opts
                .memfd_from
                .filter(|_| matches!(opts.size, None | Some(NO_LIMIT)) && store.is_none()),
            memfds: parking_lot::Mutex::new(Vec::new()),
            page_store: store::Pages { store },
        });
        let mode = opts.mode.unwrap_or(if opts.root == FileType::Directory { 0o1777 } else { 0o644 });
        let root = match opts.root {
            FileType::Directory | FileType::Regular => {
                Inode::new_root(&shared, opts.root, mode, opts.uid, opts.gid)?
            }
            _ => return Err(Errno::INVAL),
        };
        Ok(Arc::new(Tmpfs { shared, root }))
    }

    /// A tmpfs with default options (limited to [`default_size`], root 01777 owned
    /// by root).
    pub fn new_default() -> Arc<Tmpfs> {
        match Tmpfs::new(&TmpfsOptions::default()) {
            Ok(fs) => fs,
            Err(_) => unreachable!("default options have no inode limit and room for the root"),
        }
    }

    /// Bytes of file data currently allocated (pages and memfds).
    pub fn used_bytes(&self) -> u64 {
        self.shared.used_pages() * PAGE_SIZE
    }

    /// Bytes currently charged against the size limit: data pages and metadata
    /// (see the crate documentation; memfds are not charged).
    pub fn charged_bytes(&self) -> u64 {
        self.shared.charged.load(Ordering::Relaxed)
    }

    /// The size limit in bytes ([`NO_LIMIT`]: none).
    pub fn size_limit(&self) -> u64 {
        self.shared.limit
    }

    /// Inodes currently allocated.
    pub fn used_inodes(&self) -> u64 {
        self.shared.inodes.load(Ordering::Relaxed)
    }
}

impl Filesystem for Tmpfs {
    fn root(&self) -> NodeRef {
        self.root.clone()
    }

    fn statfs(&self) -> Result<StatFs> {
        // Everything charged, in pages, plus what memfds hold (uncharged pages in a
        // store file do not fill the default limit; they are not counted either).
        let used = self.charged_bytes().div_ceil(PAGE_SIZE) + self.shared.memfd_pages();
        let inodes = self.shared.inodes.load(Ordering::Relaxed);
        let blocks = (self.shared.limit / PAGE_SIZE).min(u64::MAX / 2);
        Ok(StatFs {
            bsize: PAGE_SIZE as u32,
            blocks,
            bfree: blocks.saturating_sub(used),
            bavail: blocks.saturating_sub(used),
            files: self.shared.max_inodes,
            ffree: self.shared.max_inodes.saturating_sub(inodes),
            namelen: sandfs_vfs::NAME_MAX as u32,
            fs_type: TMPFS_MAGIC,
        })
    }

    fn name(&self) -> &str {
        "tmpfs"
    }

    fn generation(&self) -> Option<Arc<Generation>> {
        Some(self.shared.generation.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inode_cost_covers_an_inode() {
        // An Arc's two counts, the inode, and a directory's boxed entry table.
        let heap = 2 * size_of::<usize>() + size_of::<Inode>() + size_of::<dir::DirData>();
        assert!(heap as u64 <= INODE_COST, "an inode takes {heap} bytes, charged {INODE_COST}");
        // A directory entry: its slot and its index (a u32 and a control byte).
        let entry = size_of::<Option<dir::Slot>>() + size_of::<u32>() + 1;
        assert!(entry as u64 <= DIRENT_COST, "an entry takes {entry} bytes, charged {DIRENT_COST}");
    }
}
