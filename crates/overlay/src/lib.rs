//! sandfs overlay: one writable upper layer over read-only lower layers, so every
//! change a sandboxed program makes stays in the upper layer (memory by default).
//!
//! Semantics follow Linux overlayfs (lookup through the layers, whiteouts, opaque
//! directories, merged readdir, copy-up on the first change) with gVisor's
//! extensions: renaming a merged or lower directory copies it up and marks it opaque
//! instead of failing with EXDEV, and RENAME_NOREPLACE works. Beyond both, a program
//! may create a character device 0/0 in the overlay: whiteouts here are 0/0 devices
//! that also carry the private xattr [`WHITEOUT_XATTR`], so the two never mix, and an
//! export can still write them as OCI `.wh.` entries.
//!
//! Inode numbers: every node gets its number when first looked up and keeps it for
//! the life of the mount (nodes are cached), so a directory's st_ino is unchanged by
//! copy-up and a file's too. The number is the inode number in the layer the node
//! was first found in (the topmost lower for lower files and merged directories),
//! tagged with that layer's index in the top 8 bits; numbers that do not fit get a
//! private number. st_dev is the overlay's own for every file.
//!
//! Hard links in a lower layer (as Linux overlayfs with `index=on`): the names of a
//! lower non-directory whose link count is above one share one inode, an entry of
//! the overlay's index keyed by the lower inode (layer, inode number). Each name has
//! its own node (it knows its place), and all of them show the index entry's inode
//! number, copy and link count. So a change through one name (a write, chmod,
//! truncate, xattr) is seen through every other: the file is copied up once, into
//! the work directory (the index entry), and linked from there to the name the
//! change came through (its directories copied up, as overlayfs does), and to any
//! other name that needs an upper entry (renamed, or in a directory that moves). Its
//! `st_nlink` counts the names the merged view has: the lower link count, one less
//! per name removed or replaced, one more per link made, as overlayfs keeps it.
//!
//! The upper filesystem holds two directories: `upper` (the layer itself) and `work`
//! (copy-ups are built there, then renamed into place, so a half-copied file is never
//! visible).

mod copyup;
mod dir;
mod lower;
mod node;
mod reader;

pub use node::{ONode, is_opaque, is_whiteout};

use lower::Lower;
use parking_lot::RwLock;
use sandfs_vfs::{Errno, FileType, Filesystem, NewNode, NodeRef, Result, SetAttr, StatFs, TimeSet};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Marks an upper directory whose lower layers are hidden.
pub const OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";
/// Marks an upper 0/0 character device as a whiteout (an app's 0/0 device has none).
pub const WHITEOUT_XATTR: &[u8] = b"trusted.sandfs.whiteout";

/// Whether an xattr name belongs to the overlay (hidden from and refused to programs).
pub fn is_private_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"trusted.sandfs.")
}

pub(crate) struct Inner {
    pub upper_fs: Arc<dyn Filesystem>,
    pub work: NodeRef,
    pub lock: RwLock<()>,
    pub dev: u64,
    big_inos: parking_lot::Mutex<HashMap<(u8, u64), u64>>,
    /// Lower hard-linked files: the index.
    pub index: parking_lot::Mutex<Index>,
    next_big: AtomicU64,
    next_tmp: AtomicU64,
}

/// The index of lower hard-linked files.
#[derive(Default)]
pub(crate) struct Index {
    /// By (layer tag, lower inode number).
    pub slots: HashMap<(u8, u64), Slot>,
    /// The key of a copy, by its upper inode number.
    pub by_upper: HashMap<u64, (u8, u64)>,
}

/// An index entry: one inode shared by the nodes of all names of a lower
/// hard-linked file.
pub(crate) struct Slot {
    /// Serialises the copy-up: one copy whichever name races for it.
    pub copy: Arc<parking_lot::Mutex<()>>,
    /// The copy, once made (kept while the overlay lives: an open file may read it).
    pub upper: Option<NodeRef>,
    /// The copy's name in the work directory.
    pub work_name: Option<Vec<u8>>,
    /// The merged view's link count.
    pub nlink: u64,
}

const LAYER_SHIFT: u32 = 56;

impl Inner {
    /// Overlay inode number for real inode `ino` of layer `layer` (0 upper, i+1 lower i).
    pub fn ino(&self, layer: u8, ino: u64) -> u64 {
        if ino < (1 << LAYER_SHIFT) && layer < 0xff {
            return ((layer as u64) << LAYER_SHIFT) | ino;
        }
        *self
            .big_inos
            .lock()
            .entry((layer, ino))
            .or_insert_with(|| self.next_big.fetch_add(1, Ordering::Relaxed))
    }

    /// A fresh name in the work directory.
    pub fn tmp_name(&self) -> Vec<u8> {
        format!("#{}", self.next_tmp.fetch_add(1, Ordering::Relaxed)).into_bytes()
    }
}

/// An overlay filesystem.
pub struct Overlay {
    inner: Arc<Inner>,
    root: Arc<ONode>,
    lowers: Vec<Arc<dyn Filesystem>>,
}

static NEXT_DEV: AtomicU64 = AtomicU64::new(1);

impl Overlay {
    /// An overlay of `upper_fs` (writable, with a directory root; the overlay makes
    /// `upper` and `work` in it) over `lowers` (topmost first).
    ///
    /// As runsc's configureOverlay: the upper root takes the lower root's owner and
    /// mode; a lower root that is a regular file is copied up eagerly (a file
    /// mount); a lower root of any other type is refused with EINVAL.
    pub fn new(upper_fs: Arc<dyn Filesystem>, lowers: Vec<Arc<dyn Filesystem>>) -> Result<Arc<Overlay>> {
        let first = lowers.first().ok_or(Errno::INVAL)?;
        let lroot = first.root();
        let lattr = lroot.attr()?;
        let top = upper_fs.root();
        if top.kind() != FileType::Directory {
            return Err(Errno::NOTDIR);
        }
        let mk = |name: &[u8], kind: FileType, mode: u32| {
            top.clone().create(name, &NewNode { kind, mode, uid: 0, gid: 0, rdev: 0, target: Vec::new() })
        };
        let work = mk(b"work", FileType::Directory, 0o700)?;
        let minor = NEXT_DEV.fetch_add(1, Ordering::Relaxed);
        let inner = Arc::new(Inner {
            upper_fs: upper_fs.clone(),
            work,
            lock: RwLock::new(()),
            dev: (minor & 0xff) | ((minor & !0xff) << 12) | (3 << 44),
            big_inos: parking_lot::Mutex::new(HashMap::new()),
            index: parking_lot::Mutex::new(Index::default()),
            next_big: AtomicU64::new(0xfe << LAYER_SHIFT),
            next_tmp: AtomicU64::new(1),
        });
        let lower_roots: Vec<Lower> =
            lowers.iter().enumerate().map(|(i, l)| Lower::new(l.root(), i.min(0xfd) as u8)).collect();
        let upper = match lattr.kind {
            FileType::Directory => {
                if lower_roots.iter().any(|l| l.kind() != FileType::Directory) {
                    return Err(Errno::INVAL);
                }
                mk(b"upper", FileType::Directory, lattr.mode)?
            }
            FileType::Regular => {
                let u = mk(b"upper", FileType::Regular, lattr.mode)?;
                copyup::copy_data(&lower_roots[0], &u)?;
                u
            }
            _ => return Err(Errno::INVAL),
        };
        upper.setattr(&SetAttr {
            uid: Some(lattr.uid),
            gid: Some(lattr.gid),
            mode: Some(lattr.mode),
            atime: Some(TimeSet::At(lattr.atime)),
            mtime: Some(TimeSet::At(lattr.mtime)),
            ..SetAttr::default()
        })?;
        let lowers_of_root =
            if lattr.kind == FileType::Directory { lower_roots } else { vec![lower_roots[0].clone()] };
        let ino = inner.ino(1, lattr.ino);
        let root = ONode::new_root(&inner, ino, lattr.kind, upper, lowers_of_root);
        Ok(Arc::new(Overlay { inner, root, lowers }))
    }

    /// The upper layer's directory (or file), for export and inspection.
    pub fn upper_root(&self) -> Option<NodeRef> {
        self.root.upper()
    }

    /// The lower layers' roots, topmost first (read-only use only: for comparing
    /// the upper layer with what it covers).
    pub fn lower_roots(&self) -> Vec<NodeRef> {
        self.lowers.iter().map(|l| l.root()).collect()
    }
}

impl Filesystem for Overlay {
    fn root(&self) -> NodeRef {
        self.root.clone()
    }
    fn statfs(&self) -> Result<StatFs> {
        let mut s = self.inner.upper_fs.statfs()?;
        s.fs_type = 0x794c_7630; // OVERLAYFS_SUPER_MAGIC
        Ok(s)
    }
    fn name(&self) -> &str {
        "overlay"
    }
}
