//! A read-only open of a file that is still in a lower layer. Its writes fail and it
//! lends no descriptor for direct writes (one would reach the lower layer). It reads
//! the lower file until someone copies the file up, then the copy: every open of a
//! file sees one content, as on overlayfs since Linux 4.19 (a reader opened before the
//! copy-up sees the writes made after it). Over FUSE this also keeps the kernel's one
//! page cache per inode right: a read through a stale lower open would refill it with
//! the old content for every open to see.

use crate::lower::Lower;
use crate::node::ONode;
use sandfs_vfs::{Errno, FallocFlags, Handle, OpenFlags, Result, Whence};
use std::os::fd::BorrowedFd;
use std::sync::{Arc, OnceLock};

/// See the module documentation.
pub(crate) struct Reader {
    node: Arc<ONode>,
    lower: Arc<dyn Handle>,
    /// The copy, opened at the first use after the copy-up.
    upper: OnceLock<Arc<dyn Handle>>,
}

impl Reader {
    pub fn open(node: Arc<ONode>, lower: &Lower) -> Result<Reader> {
        Ok(Reader { lower: lower.open_read()?, node, upper: OnceLock::new() })
    }

    /// The open that serves reads now.
    fn current(&self) -> Result<&Arc<dyn Handle>> {
        if let Some(u) = self.upper.get() {
            return Ok(u);
        }
        match self.node.upper() {
            None => Ok(&self.lower),
            Some(u) => {
                let h = u.open(OpenFlags::READ)?;
                Ok(self.upper.get_or_init(|| h))
            }
        }
    }
}

impl Handle for Reader {
    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<usize> {
        self.current()?.read_at(buf, off)
    }
    fn write_at(&self, _data: &[u8], _off: u64) -> Result<usize> {
        Err(Errno::BADF)
    }
    fn append(&self, _data: &[u8]) -> Result<(usize, u64)> {
        Err(Errno::BADF)
    }
    fn fsync(&self, datasync: bool) -> Result<()> {
        self.current()?.fsync(datasync)
    }
    fn fallocate(&self, _flags: FallocFlags, _off: u64, _len: u64) -> Result<()> {
        Err(Errno::BADF)
    }
    fn seek(&self, off: u64, whence: Whence) -> Result<u64> {
        self.current()?.seek(off, whence)
    }
    /// The lower file's host descriptor: FUSE passes it through only on a read-only
    /// mount, where no copy-up can happen.
    fn host_fd(&self) -> Option<BorrowedFd<'_>> {
        self.lower.host_fd()
    }
}
