//! Contents of a regular file: a sparse map of 4 KiB pages. Missing pages are holes
//! and read as zeros; only allocated pages are charged to the filesystem's size limit
//! and counted in `st_blocks`. Pages fallocate reserved but nothing wrote hold no
//! memory yet: they read as zeros and are holes to SEEK_DATA, as on kernel tmpfs.

use crate::store::Page;
use crate::{PAGE_SIZE, Shared};
use sandfs_vfs::{Errno, Result, Whence};
use std::collections::BTreeMap;

const PS: usize = PAGE_SIZE as usize;
/// Largest file size (Linux MAX_LFS_FILESIZE).
const MAX_SIZE: u64 = i64::MAX as u64;

/// The data of one regular file.
#[derive(Default)]
pub(crate) struct FileData {
    pub size: u64,
    /// Allocated pages; `None`: reserved by fallocate, never written.
    pages: BTreeMap<u64, Option<Page>>,
}

impl FileData {
    /// 512-byte blocks allocated.
    pub fn blocks(&self) -> u64 {
        self.pages.len() as u64 * (PAGE_SIZE / 512)
    }

    /// Copy out bytes at `off`; returns the count (0 at or past the end).
    pub fn read(&self, buf: &mut [u8], off: u64, fs: &Shared) -> Result<usize> {
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
        fs.uncharge_pages(self.pages.len() as u64);
        std::mem::take(&mut self.pages).into_values().flatten().for_each(|p| fs.page_store.free(p));
    }
}
