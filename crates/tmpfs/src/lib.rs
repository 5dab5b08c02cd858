//! sandfs tmpfs: an in-memory filesystem implementing the vfs traits.
//!
//! Every node type, hard links, extended attributes, sparse files (holes read as
//! zeros, `st_blocks` counts allocated pages), the mount options mode, uid, gid,
//! size and nr_inodes with ENOSPC at the limits, and a root that is either a
//! directory or a single regular file. Each inode has its own lock, so unrelated
//! files never wait for each other; only renames between directories share a lock.

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

/// Mount options, as `mount -t tmpfs -o ...` takes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TmpfsOptions {
    /// Permission bits of the root (default 01777 for a directory, 0644 for a file).
    pub mode: Option<u32>,
    /// Owner of the root.
    pub uid: u32,
    /// Group of the root.
    pub gid: u32,
    /// Cap on file data, in bytes (rounded up to pages); `None`: unlimited.
    pub size: Option<u64>,
    /// Cap on the number of inodes (the root included); `None`: unlimited.
    pub nr_inodes: Option<u64>,
    /// Whether the root is a directory or a single regular file.
    pub root: FileType,
    /// Files that grow past this many bytes move into a memfd of their own, which the
    /// FUSE front end hands to the kernel (passthrough) so their reads and writes skip
    /// sandfs. `None`: never; default [`MEMFD_FROM`]. Ignored with a `size` limit or a store file: writes the
    /// kernel makes directly could not be charged or kept in the store.
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
    /// As on Linux, 0 for size, nr_blocks or nr_inodes means no limit.
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
                "size" => o.size = Some(parse_size(v)?).filter(|&n| n != 0),
                "nr_blocks" => o.size = Some(parse_size(v)?.saturating_mul(PAGE_SIZE)).filter(|&n| n != 0),
                "nr_inodes" => o.nr_inodes = Some(parse_size(v)?).filter(|&n| n != 0),
                _ => return Err(format!("unknown tmpfs option {k:?}")),
            }
        }
        Ok(o)
    }
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
    pages: AtomicU64,
    max_pages: u64,
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

    /// Reserve `n` pages of data; ENOSPC beyond the size limit.
    pub fn charge_pages(&self, n: u64) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let prev = self.pages.fetch_add(n, Ordering::Relaxed);
        if prev + n > self.max_pages {
            self.pages.fetch_sub(n, Ordering::Relaxed);
            return Err(Errno::NOSPC);
        }
        Ok(())
    }

    /// Pages of data held: charged pages plus what the memfds of big files hold
    /// (rounded up to pages; the dead ones are forgotten here).
    pub fn used_pages(&self) -> u64 {
        let mut in_memfds = 0;
        self.memfds.lock().retain(|w| match w.upgrade() {
            Some(fd) => {
                let blocks = rustix::fs::fstat(&*fd).map(|st| st.st_blocks as u64).unwrap_or(0);
                in_memfds += (blocks * 512).div_ceil(PAGE_SIZE);
                true
            }
            None => false,
        });
        self.pages.load(Ordering::Relaxed) + in_memfds
    }

    pub fn uncharge_pages(&self, n: u64) {
        self.pages.fetch_sub(n, Ordering::Relaxed);
    }

    /// Reserve one inode; ENOSPC beyond nr_inodes.
    pub fn charge_inode(&self) -> Result<()> {
        let prev = self.inodes.fetch_add(1, Ordering::Relaxed);
        if prev + 1 > self.max_inodes {
            self.inodes.fetch_sub(1, Ordering::Relaxed);
            return Err(Errno::NOSPC);
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

    pub fn uncharge_inode(&self) {
        self.inodes.fetch_sub(1, Ordering::Relaxed);
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
        let shared = Arc::new(Shared {
            dev,
            next_ino: AtomicU64::new(1),
            pages: AtomicU64::new(0),
            max_pages: opts.size.map(|s| s.div_ceil(PAGE_SIZE)).unwrap_or(u64::MAX / 2),
            inodes: AtomicU64::new(0),
            max_inodes: opts.nr_inodes.unwrap_or(u64::MAX / 2),
            rename_lock: parking_lot::Mutex::new(()),
            generation: Arc::new(Generation::new()),
            memfd_from: opts.memfd_from.filter(|_| opts.size.is_none() && store.is_none()),
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

    /// A tmpfs with default options (unlimited, root 01777 owned by root).
    pub fn new_default() -> Arc<Tmpfs> {
        match Tmpfs::new(&TmpfsOptions::default()) {
            Ok(fs) => fs,
            Err(_) => unreachable!("default options have no inode limit"),
        }
    }

    /// Bytes of file data currently allocated (pages and memfds).
    pub fn used_bytes(&self) -> u64 {
        self.shared.used_pages() * PAGE_SIZE
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
        let used = self.shared.used_pages();
        let inodes = self.shared.inodes.load(Ordering::Relaxed);
        let blocks = self.shared.max_pages;
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
