//! Where file pages live. By default on the heap; with a store file, in a host file
//! (unnamed: O_TMPFILE in a chosen directory), so a large tmpfs — an overlay's upper
//! layer — need not live in RAM. The store hands out 4 KiB slots; a freed slot is
//! punched out of the file (giving its disk space back) and reused.

use crate::PAGE_SIZE;
use parking_lot::Mutex;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{FallocateFlags, Mode, OFlags};
use sandfs_vfs::{Errno, Result};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

const PS: usize = PAGE_SIZE as usize;

/// A page's bytes: in memory or a slot of the store file.
pub(crate) enum Page {
    Mem(Box<[u8; PS]>),
    Store(u64),
}

/// A host file holding pages.
pub struct StoreFile {
    fd: OwnedFd,
    free: Mutex<Vec<u64>>,
    next: AtomicU64,
}

impl StoreFile {
    /// An unnamed store file in directory `dir` (O_TMPFILE; where the filesystem
    /// lacks it, a named file unlinked at once). Nothing is left in `dir`.
    pub fn create_in(dir: &Path) -> Result<StoreFile> {
        let fd = match rustix::fs::open(
            dir,
            OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => fd,
            Err(e) if e == Errno::OPNOTSUPP || e == Errno::ISDIR || e == Errno::INVAL => {
                let name = dir.join(format!(".sandfs-store-{}-{}", std::process::id(), rand_suffix()));
                let fd = rustix::fs::open(
                    &name,
                    OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                    Mode::from_raw_mode(0o600),
                )?;
                rustix::fs::unlink(&name)?;
                fd
            }
            Err(e) => return Err(e),
        };
        Ok(StoreFile { fd, free: Mutex::new(Vec::new()), next: AtomicU64::new(0) })
    }

    fn alloc(&self) -> u64 {
        self.free.lock().pop().unwrap_or_else(|| self.next.fetch_add(1, Ordering::Relaxed))
    }

    fn release(&self, slot: u64) {
        // Punched slots read as zeros when reused and give the space back.
        let _ = rustix::fs::fallocate(
            &self.fd,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            slot * PAGE_SIZE,
            PAGE_SIZE,
        );
        self.free.lock().push(slot);
    }

    fn pread(&self, slot: u64, at: usize, out: &mut [u8]) -> Result<()> {
        let n = pread_full(&self.fd, out, slot * PAGE_SIZE + at as u64)?;
        out[n..].fill(0);
        Ok(())
    }

    fn pwrite(&self, slot: u64, at: usize, data: &[u8]) -> Result<()> {
        pwrite_all(&self.fd, data, slot * PAGE_SIZE + at as u64)
    }
}

/// pread until `buf` is full or the file ends; the bytes read.
pub(crate) fn pread_full(fd: impl AsFd, buf: &mut [u8], off: u64) -> Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::pread(&fd, &mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// pwrite all of `data`.
pub(crate) fn pwrite_all(fd: impl AsFd, data: &[u8], off: u64) -> Result<()> {
    let mut done = 0;
    while done < data.len() {
        match rustix::io::pwrite(&fd, &data[done..], off + done as u64) {
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// The page operations of one filesystem.
pub(crate) struct Pages {
    pub store: Option<StoreFile>,
}

impl Pages {
    pub fn new_page(&self) -> Page {
        match &self.store {
            None => Page::Mem(Box::new([0u8; PS])),
            Some(s) => Page::Store(s.alloc()),
        }
    }

    pub fn read(&self, p: &Page, at: usize, out: &mut [u8]) -> Result<()> {
        match (p, &self.store) {
            (Page::Mem(b), _) => {
                out.copy_from_slice(&b[at..at + out.len()]);
                Ok(())
            }
            (Page::Store(slot), Some(s)) => s.pread(*slot, at, out),
            (Page::Store(_), None) => Err(Errno::IO),
        }
    }

    pub fn write(&self, p: &mut Page, at: usize, data: &[u8]) -> Result<()> {
        match (p, &self.store) {
            (Page::Mem(b), _) => {
                b[at..at + data.len()].copy_from_slice(data);
                Ok(())
            }
            (Page::Store(slot), Some(s)) => s.pwrite(*slot, at, data),
            (Page::Store(_), None) => Err(Errno::IO),
        }
    }

    pub fn zero(&self, p: &mut Page, at: usize, len: usize) {
        match (p, &self.store) {
            (Page::Mem(b), _) => b[at..at + len].fill(0),
            (Page::Store(slot), Some(s)) => {
                let _ = s.pwrite(*slot, at, &vec![0u8; len]);
            }
            (Page::Store(_), None) => {}
        }
    }

    pub fn free(&self, p: Page) {
        if let (Page::Store(slot), Some(s)) = (p, &self.store) {
            s.release(slot);
        }
    }
}
