//! Open files: a location, the open flags, a file position and the filesystem's data
//! handle. An open file keeps its node alive (an unlinked file stays usable until the
//! last close), keeps its mount busy, and holds write access to the mount while open
//! for writing (so a switch to read-only gets EBUSY, as on Linux).

use crate::attr::{Attr, DirEntry, FileType, SetAttr, StatFs, TimeSet};
use crate::creds::Creds;
use crate::errno::{Errno, Result};
use crate::mount::{BusyGuard, Location, MountFlags, MountNamespace, WriteGuard};
use crate::node::{FallocFlags, FileFlags, Handle, OpenFlags, Whence};
use crate::perm::kill_suid_on_write;
use parking_lot::Mutex;
use std::io::SeekFrom;
use std::sync::Arc;

/// An open file description.
pub struct OpenFile {
    loc: Location,
    flags: OpenFlags,
    creds: Creds,
    handle: Option<Arc<dyn Handle>>,
    pos: Mutex<u64>,
    parent_ino: u64,
    _write: Option<WriteGuard>,
    _busy: BusyGuard,
}

impl std::fmt::Debug for OpenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenFile({:?}, {:?})", self.loc, self.flags)
    }
}

impl OpenFile {
    pub(crate) fn new(
        ns: &MountNamespace,
        loc: Location,
        flags: OpenFlags,
        creds: &Creds,
        handle: Option<Arc<dyn Handle>>,
        write: Option<WriteGuard>,
    ) -> Result<OpenFile> {
        let parent_ino =
            if loc.node.kind() == FileType::Directory { ns.parent_of(&loc).node.ino() } else { 0 };
        let busy = loc.mount.busy();
        Ok(OpenFile {
            loc,
            flags,
            creds: creds.clone(),
            handle,
            pos: Mutex::new(0),
            parent_ino,
            _write: write,
            _busy: busy,
        })
    }

    /// Where the file is.
    pub fn location(&self) -> &Location {
        &self.loc
    }

    /// The flags it was opened with.
    pub fn flags(&self) -> OpenFlags {
        self.flags
    }

    /// The filesystem's data handle (regular files).
    pub fn handle(&self) -> Option<&Arc<dyn Handle>> {
        self.handle.as_ref()
    }

    fn data(&self, write: bool) -> Result<&Arc<dyn Handle>> {
        if self.flags.contains(OpenFlags::PATH) {
            return Err(Errno::BADF);
        }
        let allowed = if write { OpenFlags::WRITE } else { OpenFlags::READ };
        if !self.flags.contains(allowed) {
            return Err(Errno::BADF);
        }
        match &self.handle {
            Some(h) => Ok(h),
            None if self.loc.node.kind() == FileType::Directory => Err(Errno::ISDIR),
            None => Err(Errno::INVAL),
        }
    }

    /// fstat.
    pub fn stat(&self) -> Result<Attr> {
        self.loc.node.attr()
    }

    /// fstatfs.
    pub fn statfs(&self) -> Result<StatFs> {
        self.loc.mount.fs().statfs()
    }

    /// pread(2).
    pub fn read_at(&self, buf: &mut [u8], off: u64) -> Result<usize> {
        let h = self.data(false)?;
        let n = h.read_at(buf, off)?;
        self.touch_atime();
        Ok(n)
    }

    /// Record the access (see [`crate::Node::touch_atime`]) unless the mount or the
    /// open says noatime.
    fn touch_atime(&self) {
        if self.flags.contains(OpenFlags::NOATIME)
            || self.loc.mount.flags().intersects(MountFlags::NOATIME | MountFlags::RDONLY)
        {
            return;
        }
        self.loc.node.touch_atime();
    }

    /// The node's attribute flags (empty where the filesystem keeps none).
    fn flags_of(&self) -> Result<FileFlags> {
        match self.loc.node.file_flags() {
            Err(e) if e == Errno::NOTTY => Ok(FileFlags::empty()),
            r => r,
        }
    }

    fn kill_suid(&self) -> Result<()> {
        let attr = self.loc.node.attr()?;
        if let Some(mode) = kill_suid_on_write(&self.creds, &attr) {
            self.loc.node.setattr(&SetAttr { mode: Some(mode), ..SetAttr::default() })?;
        }
        Ok(())
    }

    /// pwrite(2). With O_APPEND the data goes to the end, as Linux does.
    pub fn write_at(&self, data: &[u8], off: u64) -> Result<usize> {
        let h = self.data(true)?;
        if data.is_empty() {
            return Ok(0);
        }
        self.kill_suid()?;
        if self.flags.contains(OpenFlags::APPEND) {
            return Ok(h.append(data)?.0);
        }
        h.write_at(data, off)
    }

    /// read(2) at the file position.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize> {
        let mut pos = self.pos.lock();
        let n = self.read_at(buf, *pos)?;
        *pos += n as u64;
        Ok(n)
    }

    /// write(2) at the file position (or the end with O_APPEND).
    pub fn write(&self, data: &[u8]) -> Result<usize> {
        let h = self.data(true)?;
        if data.is_empty() {
            return Ok(0);
        }
        self.kill_suid()?;
        let mut pos = self.pos.lock();
        if self.flags.contains(OpenFlags::APPEND) {
            let (n, end) = h.append(data)?;
            *pos = end;
            return Ok(n);
        }
        let n = h.write_at(data, *pos)?;
        *pos += n as u64;
        Ok(n)
    }

    /// lseek(2) with SEEK_SET/CUR/END.
    pub fn seek(&self, to: SeekFrom) -> Result<u64> {
        let mut pos = self.pos.lock();
        let new = match to {
            SeekFrom::Start(o) => Some(o),
            SeekFrom::Current(d) => pos.checked_add_signed(d),
            SeekFrom::End(d) => self.loc.node.attr()?.size.checked_add_signed(d),
        };
        let new = new.filter(|&n| n <= i64::MAX as u64).ok_or(Errno::INVAL)?;
        *pos = new;
        Ok(new)
    }

    /// lseek(2) with SEEK_DATA / SEEK_HOLE.
    pub fn seek_data(&self, off: u64, whence: Whence) -> Result<u64> {
        let h = self.handle.as_ref().ok_or(Errno::INVAL)?;
        let new = h.seek(off, whence)?;
        *self.pos.lock() = new;
        Ok(new)
    }

    /// ftruncate(2): needs the file open for writing.
    pub fn truncate(&self, size: u64) -> Result<()> {
        if !self.flags.contains(OpenFlags::WRITE) || self.handle.is_none() {
            return Err(Errno::INVAL);
        }
        // do_sys_ftruncate: an append-only file is never truncated (an immutable one
        // opened for writing before it became immutable is, as on Linux).
        if self.flags_of()?.contains(FileFlags::APPEND) {
            return Err(Errno::PERM);
        }
        let attr = self.loc.node.attr()?;
        let mut set = SetAttr { size: Some(size), mtime: Some(TimeSet::Now), ..SetAttr::default() };
        if let Some(mode) = kill_suid_on_write(&self.creds, &attr) {
            set.mode = Some(mode);
        }
        self.loc.node.setattr(&set)?;
        Ok(())
    }

    /// fallocate(2).
    pub fn fallocate(&self, flags: FallocFlags, off: u64, len: u64) -> Result<()> {
        let h = self.data(true)?;
        if len == 0 {
            return Err(Errno::INVAL);
        }
        if flags.contains(FallocFlags::PUNCH_HOLE) && !flags.contains(FallocFlags::KEEP_SIZE) {
            return Err(Errno::OPNOTSUPP);
        }
        // vfs_fallocate: only plain allocation on an append-only file, nothing on an
        // immutable one.
        let ff = self.flags_of()?;
        if ff.contains(FileFlags::IMMUTABLE)
            || (ff.contains(FileFlags::APPEND) && !(flags - FallocFlags::KEEP_SIZE).is_empty())
        {
            return Err(Errno::PERM);
        }
        off.checked_add(len).filter(|&e| e <= i64::MAX as u64).ok_or(Errno::FBIG)?;
        h.fallocate(flags, off, len)?;
        // After the filesystem accepted the mode (kernel tmpfs: file_modified after
        // its EOPNOTSUPP check).
        self.kill_suid()
    }

    /// fsync(2) / fdatasync(2).
    pub fn fsync(&self, datasync: bool) -> Result<()> {
        match &self.handle {
            Some(h) => h.fsync(datasync),
            None => Ok(()),
        }
    }

    /// getdents: entries from the current position, `.` and `..` first, calling `sink`
    /// until it returns false; the position advances past every entry accepted.
    /// Offsets stay valid while entries are added and removed.
    pub fn readdir(&self, sink: &mut dyn FnMut(DirEntry<'_>) -> bool) -> Result<()> {
        let mut pos = self.pos.lock();
        let p = self.readdir_at(*pos, sink)?;
        *pos = p;
        Ok(())
    }

    /// Like [`OpenFile::readdir`] from an explicit offset (what FUSE sends); returns
    /// the offset after the last accepted entry.
    pub fn readdir_at(&self, mut pos: u64, sink: &mut dyn FnMut(DirEntry<'_>) -> bool) -> Result<u64> {
        if self.loc.node.kind() != FileType::Directory {
            return Err(Errno::NOTDIR);
        }
        let ino = self.loc.node.ino();
        if pos == 0 {
            if !sink(DirEntry { name: b".", ino, kind: FileType::Directory, offset: 1 }) {
                return Ok(pos);
            }
            pos = 1;
        }
        if pos == 1 {
            let e = DirEntry { name: b"..", ino: self.parent_ino, kind: FileType::Directory, offset: 2 };
            if !sink(e) {
                return Ok(pos);
            }
            pos = 2;
        }
        let mut last = pos;
        self.loc.node.readdir(pos - 2, &mut |e| {
            let off = e.offset + 2;
            if sink(DirEntry { offset: off, ..e }) {
                last = off;
                true
            } else {
                false
            }
        })?;
        self.touch_atime();
        Ok(last)
    }
}
