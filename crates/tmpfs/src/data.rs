//! Contents of a regular file: a sparse map of 4 KiB pages. Missing pages are holes
//! and read as zeros; only allocated pages are charged to the filesystem's size limit
//! and counted in `st_blocks`. Pages fallocate reserved but nothing wrote hold no
//! memory yet: they read as zeros and are holes to SEEK_DATA, as on kernel tmpfs.
//!
//! A file that grows past the filesystem's `memfd_from` size moves into a memfd of
//! its own (kernel shmem: the same memory a kernel tmpfs would use). From then on its
//! data, size, holes and block count are the memfd's, and the memfd can be handed to
//! the kernel (FUSE passthrough) so reads and writes never pass through sandfs; this
//! module asks the memfd instead of remembering anything the kernel may change.

use crate::store::{Page, pread_full, pwrite_all};
use crate::{PAGE_SIZE, Shared};
use rustix::fd::OwnedFd;
use rustix::fs::{FallocateFlags, MemfdFlags, SeekFrom};
use sandfs_vfs::{Errno, Result, Timespec, Whence};
use std::collections::BTreeMap;
use std::sync::Arc;

const PS: usize = PAGE_SIZE as usize;
/// Largest file size (Linux MAX_LFS_FILESIZE).
const MAX_SIZE: u64 = i64::MAX as u64;

/// The data of one regular file.
#[derive(Default)]
pub(crate) struct FileData {
    /// The size while the data is in pages (a memfd knows its own).
    size: u64,
    /// Allocated pages; `None`: reserved by fallocate, never written.
    pages: BTreeMap<u64, Option<Page>>,
    /// The memfd holding the whole file, once it grew past `memfd_from` or while
    /// open handles read and write it directly (see [`FileData::lend`]); boxed, as
    /// most files never have one.
    memfd: Option<Box<Memfd>>,
}

/// A file's data in a memfd.
struct Memfd {
    fd: Arc<OwnedFd>,
    /// Its modification and change times right after the data moved in: while they
    /// hold, nothing wrote it directly and the inode's times are the file's (moving
    /// in must not look like a change).
    base: (i64, i64),
    /// Open handles that were lent it.
    lent: u32,
}

/// Size, 512-byte blocks and modification/change times (ns) of a memfd.
pub(crate) struct MemfdStat {
    pub size: u64,
    pub blocks: u64,
    pub mtime: i64,
    pub ctime: i64,
    /// Its times moved since the data moved in (something wrote it directly).
    pub changed: bool,
}

impl MemfdStat {
    /// The file's modification and change times given the inode's: the later of
    /// each when something wrote the memfd directly, the inode's otherwise.
    pub fn times_over(&self, mtime: i64, ctime: i64) -> (i64, i64) {
        if self.changed { (mtime.max(self.mtime), ctime.max(self.ctime)) } else { (mtime, ctime) }
    }
}

fn memfd_stat(fd: &OwnedFd) -> Result<MemfdStat> {
    let st = rustix::fs::fstat(fd)?;
    let ns = |sec: i64, nsec: u64| Timespec { sec, nsec: nsec as u32 }.as_nanos();
    Ok(MemfdStat {
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        mtime: ns(st.st_mtime as i64, st.st_mtime_nsec as u64),
        ctime: ns(st.st_ctime as i64, st.st_ctime_nsec as u64),
        changed: true,
    })
}

impl FileData {
    /// 512-byte blocks allocated.
    pub fn blocks(&self) -> u64 {
        self.pages.len() as u64 * (PAGE_SIZE / 512)
    }

    /// The size in bytes.
    pub fn size(&self) -> Result<u64> {
        match self.memfd() {
            Some(fd) => Ok(memfd_stat(fd)?.size),
            None => Ok(self.size),
        }
    }

    /// The memfd holding the data, once the file moved into one.
    pub fn memfd(&self) -> Option<&Arc<OwnedFd>> {
        self.memfd.as_ref().map(|m| &m.fd)
    }

    /// What the memfd says (`None` while the data is in pages).
    pub fn memfd_stat(&self) -> Result<Option<MemfdStat>> {
        let Some(memfd) = &self.memfd else { return Ok(None) };
        let mut m = memfd_stat(&memfd.fd)?;
        m.changed = memfd.base != (m.mtime, m.ctime);
        Ok(Some(m))
    }

    /// Move the data into a memfd when the file is about to reach `end` bytes and the
    /// filesystem keeps files that big in memfds. Pages are copied, then freed and
    /// uncharged; fallocate reservations are made again in the memfd (they count in
    /// `st_blocks` as on kernel tmpfs).
    fn grow_to(&mut self, end: u64, fs: &Shared) -> Result<()> {
        if self.memfd.is_some() || fs.memfd_from.is_none_or(|t| end <= t) {
            return Ok(());
        }
        // A memfd is an optimisation: when none can be made (the descriptor limit,
        // say), the data stays in pages and the write goes on.
        let _ = self.move_to_memfd(fs);
        Ok(())
    }

    /// Lend an open handle the memfd for direct reads and writes (moving the data
    /// into one first, whatever the size), when the filesystem uses memfds at all.
    /// Every loan is given back with [`FileData::give_back`].
    pub fn lend(&mut self, fs: &Shared) -> Result<Option<Arc<OwnedFd>>> {
        if fs.memfd_from.is_none() {
            return Ok(None);
        }
        if self.memfd.is_none() {
            self.move_to_memfd(fs)?;
        }
        Ok(self.memfd.as_mut().map(|m| {
            m.lent += 1;
            m.fd.clone()
        }))
    }

    /// A handle gave its loan back: when it was the last and the file is small, the
    /// data goes back into pages (a descriptor per small file would not scale),
    /// unless the memfd holds allocated pages that are not data (fallocated, never
    /// written: a memfd cannot say where they are, so they could not be kept).
    /// Returns what the memfd said then (its times are the file's: the caller keeps
    /// them), or `None` when the data stays where it is.
    pub fn give_back(&mut self, fs: &Shared) -> Option<MemfdStat> {
        let m = self.memfd.as_mut()?;
        m.lent = m.lent.saturating_sub(1);
        if m.lent > 0 {
            return None;
        }
        let fd = m.fd.clone();
        let st = self.memfd_stat().ok()??;
        if fs.memfd_from.is_some_and(|t| st.size > t) {
            return None;
        }
        // On failure the memfd stays: still correct, one descriptor more.
        self.move_to_pages(&fd, fs).ok().map(|()| st)
    }

    /// Copy the data segments of the memfd into pages; all or nothing.
    fn move_to_pages(&mut self, fd: &OwnedFd, fs: &Shared) -> Result<()> {
        let MemfdStat { size, blocks, .. } = memfd_stat(fd)?;
        let mut pages = BTreeMap::new();
        let mut buf = vec![0u8; PS];
        let mut pos = 0;
        let result = (|| {
            while pos < size {
                let data = match rustix::fs::seek(fd, SeekFrom::Data(pos)) {
                    Ok(d) => d,
                    Err(Errno::NXIO) => break,
                    Err(e) => return Err(e),
                };
                let hole = rustix::fs::seek(fd, SeekFrom::Hole(data))?.min(size);
                for idx in data / PAGE_SIZE..hole.div_ceil(PAGE_SIZE) {
                    let at = idx * PAGE_SIZE;
                    let want = (size - at).min(PAGE_SIZE) as usize;
                    buf.fill(0);
                    pread_full(fd, &mut buf[..want], at)?;
                    fs.charge_pages(1)?;
                    let mut page = fs.page_store.new_page();
                    let w = fs.page_store.write(&mut page, 0, &buf);
                    pages.insert(idx, Some(page));
                    w?;
                }
                pos = hole.max(data + 1);
            }
            // Allocated pages SEEK_DATA does not see (fallocate reservations): keep
            // the memfd, which knows where they are.
            if (pages.len() as u64) * (PAGE_SIZE / 512) < blocks {
                return Err(Errno::BUSY);
            }
            Ok(())
        })();
        if let Err(e) = result {
            fs.uncharge_pages(pages.len() as u64);
            pages.into_values().flatten().for_each(|p| fs.page_store.free(p));
            return Err(e);
        }
        self.pages = pages;
        self.size = size;
        self.memfd = None;
        Ok(())
    }

    fn move_to_memfd(&mut self, fs: &Shared) -> Result<()> {
        let fd = rustix::fs::memfd_create("sandfs", MemfdFlags::CLOEXEC)?;
        rustix::fs::ftruncate(&fd, self.size)?;
        let mut buf = vec![0u8; PS];
        for (idx, page) in &self.pages {
            let at = idx * PAGE_SIZE;
            match page {
                // Only up to the size: a write must not extend the file.
                Some(p) if at < self.size => {
                    let want = (self.size - at).min(PAGE_SIZE) as usize;
                    fs.page_store.read(p, 0, &mut buf)?;
                    pwrite_all(&fd, &buf[..want], at)?;
                }
                // Reservations (past the end too, with KEEP_SIZE) are made again.
                _ => rustix::fs::fallocate(&fd, FallocateFlags::KEEP_SIZE, at, PAGE_SIZE)?,
            }
        }
        let fd = Arc::new(fd);
        {
            let mut all = fs.memfds.lock();
            // Files move in and out of memfds often: drop the dead ones now and then.
            if all.len() >= 64 && all.len().is_power_of_two() {
                all.retain(|w| w.strong_count() > 0);
            }
            all.push(Arc::downgrade(&fd));
        }
        let base = memfd_stat(&fd)?;
        self.release(fs);
        self.memfd = Some(Box::new(Memfd { fd, base: (base.mtime, base.ctime), lent: 0 }));
        Ok(())
    }

    /// Copy out bytes at `off`; returns the count (0 at or past the end).
    pub fn read(&self, buf: &mut [u8], off: u64, fs: &Shared) -> Result<usize> {
        if let Some(fd) = self.memfd() {
            return pread_full(fd, buf, off);
        }
        if off >= self.size {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(self.size - off) as usize;
        let mut done = 0;
        while done < n {
            let pos = off + done as u64;
            let (idx, in_page) = (pos / PAGE_SIZE, (pos % PAGE_SIZE) as usize);
            let chunk = (PS - in_page).min(n - done);
            let out = &mut buf[done..done + chunk];
            match self.pages.get(&idx) {
                Some(Some(p)) => fs.page_store.read(p, in_page, out)?,
                _ => out.fill(0),
            }
            done += chunk;
        }
        Ok(n)
    }

    /// Write `data` at `off`, allocating pages. Short write when space runs out
    /// after some bytes; ENOSPC when none fit; EFBIG past the maximum size.
    pub fn write(&mut self, data: &[u8], off: u64, fs: &Shared) -> Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if off >= MAX_SIZE {
            return Err(Errno::FBIG);
        }
        let len = (data.len() as u64).min(MAX_SIZE - off) as usize;
        self.grow_to(off + len as u64, fs)?;
        if let Some(fd) = self.memfd() {
            let mut done = 0;
            while done < len {
                match rustix::io::pwrite(fd, &data[done..len], off + done as u64) {
                    Ok(n) => done += n,
                    Err(Errno::INTR) => continue,
                    Err(e) if done == 0 => return Err(e),
                    Err(_) => break,
                }
            }
            return Ok(done);
        }
        let mut done = 0;
        while done < len {
            let pos = off + done as u64;
            let (idx, in_page) = (pos / PAGE_SIZE, (pos % PAGE_SIZE) as usize);
            let chunk = (PS - in_page).min(len - done);
            let slot = match self.pages.entry(idx) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => {
                    if let Err(e) = fs.charge_pages(1) {
                        if done == 0 {
                            return Err(e);
                        }
                        break;
                    }
                    v.insert(None)
                }
            };
            let page = slot.get_or_insert_with(|| fs.page_store.new_page());
            fs.page_store.write(page, in_page, &data[done..done + chunk])?;
            done += chunk;
        }
        self.size = self.size.max(off + done as u64);
        Ok(done)
    }

    /// Set the size; shrinking frees every page past the end (a partly used last
    /// page and pages fallocated beyond the old end included, as shmem does) and
    /// zeroes the tail of the last one kept.
    pub fn truncate(&mut self, size: u64, fs: &Shared) -> Result<()> {
        if size > MAX_SIZE {
            return Err(Errno::FBIG);
        }
        self.grow_to(size, fs)?;
        if let Some(fd) = self.memfd() {
            return rustix::fs::ftruncate(fd, size);
        }
        if size <= self.size {
            self.zero(size, self.size - size, fs);
            let doomed = self.pages.split_off(&size.div_ceil(PAGE_SIZE));
            fs.uncharge_pages(doomed.len() as u64);
            doomed.into_values().flatten().for_each(|p| fs.page_store.free(p));
        }
        self.size = size;
        Ok(())
    }

    /// Deallocate whole pages in the range and zero partial ones (holes stay holes).
    pub fn zero(&mut self, off: u64, len: u64, fs: &Shared) {
        if let Some(fd) = self.memfd() {
            let len = len.min(MAX_SIZE - off.min(MAX_SIZE));
            let _ =
                rustix::fs::fallocate(fd, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, off, len);
            return;
        }
        let end = off.saturating_add(len);
        let first_full = off.div_ceil(PAGE_SIZE);
        let last_full = end / PAGE_SIZE; // exclusive
        if first_full < last_full {
            let doomed: Vec<u64> = self.pages.range(first_full..last_full).map(|(k, _)| *k).collect();
            for k in &doomed {
                if let Some(Some(p)) = self.pages.remove(k) {
                    fs.page_store.free(p);
                }
            }
            fs.uncharge_pages(doomed.len() as u64);
        }
        let mut zero_part = |from: u64, to: u64| {
            if from >= to {
                return;
            }
            if let Some(Some(p)) = self.pages.get_mut(&(from / PAGE_SIZE)) {
                let a = (from % PAGE_SIZE) as usize;
                fs.page_store.zero(p, a, (to - from) as usize);
            }
        };
        if first_full > last_full {
            // Range inside one page.
            zero_part(off, end);
        } else {
            zero_part(off, (first_full * PAGE_SIZE).min(end));
            zero_part((last_full * PAGE_SIZE).max(off), end);
        }
    }

    /// Allocate the pages of a range (posix_fallocate); extends the size unless
    /// `keep_size`. All-or-nothing against the size limit.
    pub fn allocate(&mut self, off: u64, len: u64, keep_size: bool, fs: &Shared) -> Result<()> {
        let end = off.checked_add(len).filter(|&e| e <= MAX_SIZE).ok_or(Errno::FBIG)?;
        if !keep_size {
            self.grow_to(end, fs)?;
        }
        if let Some(fd) = self.memfd() {
            let mode = if keep_size { FallocateFlags::KEEP_SIZE } else { FallocateFlags::empty() };
            return rustix::fs::fallocate(fd, mode, off, len);
        }
        let first = off / PAGE_SIZE;
        let last = end.div_ceil(PAGE_SIZE);
        let missing: Vec<u64> = (first..last).filter(|i| !self.pages.contains_key(i)).collect();
        fs.charge_pages(missing.len() as u64)?;
        for i in missing {
            self.pages.insert(i, None);
        }
        if !keep_size {
            self.size = self.size.max(end);
        }
        Ok(())
    }

    /// SEEK_DATA / SEEK_HOLE at page granularity (written pages are data; holes
    /// and never-written fallocated pages are holes); ENXIO at or past the end.
    pub fn seek(&self, off: u64, whence: Whence) -> Result<u64> {
        if let Some(fd) = self.memfd() {
            let to = match whence {
                Whence::Data => SeekFrom::Data(off),
                Whence::Hole => SeekFrom::Hole(off),
            };
            return rustix::fs::seek(fd, to);
        }
        if off >= self.size {
            return Err(Errno::NXIO);
        }
        let idx = off / PAGE_SIZE;
        match whence {
            Whence::Data => {
                if matches!(self.pages.get(&idx), Some(Some(_))) {
                    return Ok(off);
                }
                match self.pages.range(idx..).find(|(_, p)| p.is_some()) {
                    Some((k, _)) if k * PAGE_SIZE < self.size => Ok(k * PAGE_SIZE),
                    _ => Err(Errno::NXIO),
                }
            }
            Whence::Hole => {
                let mut i = idx;
                while matches!(self.pages.get(&i), Some(Some(_))) {
                    i += 1;
                }
                let hole = if i == idx { off } else { i * PAGE_SIZE };
                Ok(hole.min(self.size))
            }
        }
    }

    /// Free everything (the inode is gone).
    pub fn release(&mut self, fs: &Shared) {
        self.memfd = None;
        fs.uncharge_pages(self.pages.len() as u64);
        std::mem::take(&mut self.pages).into_values().flatten().for_each(|p| fs.page_store.free(p));
    }
}
