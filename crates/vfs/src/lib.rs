//! sandfs virtual filesystem core.
//!
//! Every filesystem (tmpfs, overlay, gofer client) implements the [`Node`] and
//! [`Filesystem`] traits defined here, and every front end (FUSE, the Rust API, tests)
//! reaches them through a [`MountNamespace`], which walks paths, crosses mounts, applies
//! mount flags and performs the Linux permission checks. Filesystems therefore contain
//! no permission logic of their own: they store and retrieve, the VFS decides.

pub mod attr;
mod cache;
pub mod creds;
pub mod errno;
pub mod file;
pub mod idmap;
pub mod mount;
pub mod node;
pub mod ops;
pub mod path;
pub mod perm;

pub use attr::{Attr, DirEntry, FileType, SetAttr, StatFs, TimeSet, Timespec};
pub use cache::{Changing, Generation};
pub use creds::{Caps, Creds};
pub use errno::{Errno, Result};
pub use file::OpenFile;
pub use idmap::{IdMap, IdRange};
pub use mount::{Location, Mount, MountFlags, MountId, MountNamespace};
pub use node::{
    FallocFlags, FileFlags, Filesystem, Handle, NewNode, Node, NodeRef, OpenFlags, RenameFlags, Whence,
    XattrFlags, downcast,
};

/// Longest single path component, in bytes (Linux NAME_MAX).
pub const NAME_MAX: usize = 255;
/// Longest path, in bytes, including the terminating NUL Linux counts (PATH_MAX).
pub const PATH_MAX: usize = 4096;
/// Symlinks followed in one resolution before ELOOP (Linux MAXSYMLINKS).
pub const MAX_SYMLINKS: u32 = 40;
