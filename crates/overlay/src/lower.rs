//! Read-only access to a lower layer. Lower nodes are wrapped so that the overlay's
//! code cannot call a mutating method on them: the type has none. This is how
//! "lower layers are never written" is enforced rather than merely avoided.

use sandfs_vfs::{Attr, DirEntry, Errno, FallocFlags, FileType, Handle, NodeRef, OpenFlags, Result, Whence};
use std::os::fd::BorrowedFd;
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
    /// Open for reading only.
    pub fn open_read(&self) -> Result<Arc<dyn Handle>> {
        Ok(Arc::new(LowerHandle(self.0.clone().open(OpenFlags::READ)?)))
    }
    pub fn getxattr(&self, name: &[u8]) -> Result<Vec<u8>> {
        self.0.getxattr(name)
    }
    pub fn listxattr(&self) -> Result<Vec<Vec<u8>>> {
        self.0.listxattr()
    }
}

/// A read-only open of a lower file. It lends no descriptor for direct writes: a
/// copy-up moves the file to another one, and a write there would reach the lower
/// layer. Its host descriptor is still offered, for reads on a read-only mount.
struct LowerHandle(Arc<dyn Handle>);

impl Handle for LowerHandle {
    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<usize> {
        self.0.read_at(buf, off)
    }
    fn write_at(&self, _data: &[u8], _off: u64) -> Result<usize> {
        Err(Errno::BADF)
    }
    fn append(&self, _data: &[u8]) -> Result<(usize, u64)> {
        Err(Errno::BADF)
    }
    fn fsync(&self, datasync: bool) -> Result<()> {
        self.0.fsync(datasync)
    }
    fn fallocate(&self, _flags: FallocFlags, _off: u64, _len: u64) -> Result<()> {
        Err(Errno::BADF)
    }
    fn seek(&self, off: u64, whence: Whence) -> Result<u64> {
        self.0.seek(off, whence)
    }
    fn host_fd(&self) -> Option<BorrowedFd<'_>> {
        self.0.host_fd()
    }
}
