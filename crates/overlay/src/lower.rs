//! Read-only access to a lower layer. Lower nodes are wrapped so that the overlay's
//! code cannot call a mutating method on them: the type has none. This is how
//! "lower layers are never written" is enforced rather than merely avoided.

use sandfs_vfs::{Attr, DirEntry, FileType, Handle, NodeRef, OpenFlags, Result};
use std::sync::Arc;

/// A node of a lower layer (and the layer's index, 0 = topmost), read-only by
/// construction.
#[derive(Clone)]
pub(crate) struct Lower(NodeRef, u8);

impl Lower {
    pub fn new(n: NodeRef, layer: u8) -> Lower {
        Lower(n, layer)
    }
    pub fn layer(&self) -> u8 {
        self.1
    }
    pub fn ino(&self) -> u64 {
        self.0.ino()
    }
    pub fn kind(&self) -> FileType {
        self.0.kind()
    }
    pub fn attr(&self) -> Result<Attr> {
        self.0.attr()
    }
    pub fn lookup(&self, name: &[u8]) -> Result<Lower> {
        self.0.lookup(name).map(|n| Lower(n, self.1))
    }
    pub fn readdir(&self, after: u64, sink: &mut dyn FnMut(DirEntry<'_>) -> bool) -> Result<()> {
        self.0.readdir(after, sink)
    }
    pub fn readlink(&self) -> Result<Vec<u8>> {
        self.0.readlink()
    }
    /// Open for reading only: the handle is read (by a copy-up) or wrapped in
    /// [`crate::reader::Reader`], whose writes fail and which lends nothing.
    pub fn open_read(&self) -> Result<Arc<dyn Handle>> {
        self.0.clone().open(OpenFlags::READ)
    }
    pub fn getxattr(&self, name: &[u8]) -> Result<Vec<u8>> {
        self.0.getxattr(name)
    }
    pub fn listxattr(&self) -> Result<Vec<Vec<u8>>> {
        self.0.listxattr()
    }
    /// The lower node's attribute flags; none where its filesystem keeps none.
    pub fn file_flags(&self) -> Result<sandfs_vfs::FileFlags> {
        match self.0.file_flags() {
            Err(e) if e == sandfs_vfs::Errno::NOTTY => Ok(sandfs_vfs::FileFlags::empty()),
            r => r,
        }
    }
}
