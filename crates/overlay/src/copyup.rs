//! Copy-up: giving a lower node an upper copy before its first change. The copy is
//! built in the work directory (data with holes kept, owner, mode, times, xattrs
//! other than the overlay's own), then renamed into place under the overlay lock, so
//! a half-made copy is never visible and a file is copied up once however many
//! writers race for it.

use crate::is_private_xattr;
use crate::lower::Lower;
use crate::node::ONode;
use sandfs_vfs::{
    Errno, FileType, Handle, NewNode, NodeRef, OpenFlags, RenameFlags, Result, SetAttr, TimeSet, Whence,
    XattrFlags,
};
use std::os::fd::{BorrowedFd, OwnedFd};

const CHUNK: usize = 1 << 20;

/// Copy a lower regular file's data into `upper` (an empty regular file), keeping
/// holes: only data segments are copied, and the size is set at the end.
pub(crate) fn copy_data(lower: &Lower, upper: &NodeRef) -> Result<()> {
    let size = lower.attr()?.size;
    let src = lower.open_read()?;
    let dst = upper.clone().open(OpenFlags::WRITE)?;
    if size >= CHUNK as u64 {
        // A big file: sized first (an upper tmpfs then keeps it in a memfd), and when
        // both ends are descriptors the kernel copies (sendfile), no bytes pass here.
        upper.setattr(&SetAttr { size: Some(size), ..SetAttr::default() })?;
        if let (Some(from), Some(to)) = (src.host_fd(), dst.passthrough_fd()) {
            return copy_by_kernel(from, &to, src.as_ref(), size);
        }
    }
    let mut buf = vec![0u8; CHUNK];
    data_segments(src.as_ref(), size, |mut pos, end| {
        while pos < end {
            let want = ((end - pos) as usize).min(CHUNK);
            let n = src.read_at(&mut buf[..want], pos)?;
            if n == 0 {
                break;
            }
            // Without hole support everything is one segment: all-zero chunks stay holes.
            if buf[..n].iter().any(|&b| b != 0) {
                let mut done = 0;
                while done < n {
                    done += dst.write_at(&buf[done..n], pos + done as u64)?;
                }
            }
            pos += n as u64;
        }
        Ok(pos)
    })?;
    upper.setattr(&SetAttr { size: Some(size), ..SetAttr::default() })?;
    Ok(())
}

/// Call `copy(start, end)` for each data segment of `src` below `size` (one segment,
/// the whole file, where SEEK_DATA/SEEK_HOLE are not supported); `copy` returns where
/// it stopped (short of `end` when the file ended early).
fn data_segments(src: &dyn Handle, size: u64, mut copy: impl FnMut(u64, u64) -> Result<u64>) -> Result<()> {
    let mut off = 0u64;
    while off < size {
        let data = match src.seek(off, Whence::Data) {
            Ok(d) => d,
            Err(e) if e == Errno::NXIO => break,
            Err(_) => off,
        };
        let end = match src.seek(data, Whence::Hole) {
            Ok(h) => h.min(size),
            Err(_) => size,
        };
        off = end.max(copy(data, end)?);
    }
    Ok(())
}

/// The data segments of `from` (a lower file's host descriptor; `src` its handle,
/// for SEEK_DATA/SEEK_HOLE) into `to`, already `size` bytes long, by sendfile.
fn copy_by_kernel(from: BorrowedFd<'_>, to: &OwnedFd, src: &dyn Handle, size: u64) -> Result<()> {
    data_segments(src, size, |mut pos, end| {
        // sendfile writes at the output's file position: nothing else uses the
        // memfd's (its readers and writers use positioned I/O).
        rustix::fs::seek(to, rustix::fs::SeekFrom::Start(pos))?;
        while pos < end {
            let want = ((end - pos) as usize).min(1 << 30);
            match rustix::fs::sendfile(to, from, Some(&mut pos), want) {
                Ok(0) => break,
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(pos)
    })
}

impl ONode {
    /// The upper node, copying this node (and its ancestors) up first if needed.
    pub(crate) fn copy_up(&self) -> Result<NodeRef> {
        let r = self.copy_up_now();
        self.forget_if_stale(r)
    }

    /// [`ONode::copy_up`], whatever a lower file's ESTALE leaves behind.
    fn copy_up_now(&self) -> Result<NodeRef> {
        if self.key.is_some() {
            // Through this name: the name gets its upper entry too.
            if let Some(u) = self.upper.lock().clone() {
                return Ok(u);
            }
            return self.copy_up_indexed();
        }
        if let Some(u) = self.upper() {
            return Ok(u);
        }
        let (parent, name) = self.parent.lock().clone().ok_or(Errno::STALE)?;
        let pu = parent.copy_up()?;
        let _one = self.copy_lock.lock();
        if let Some(u) = self.upper() {
            return Ok(u);
        }
        let (u, tmp) = self.build_copy()?;
        let work = &self.fs.work;
        let placed = {
            let _w = self.fs.lock.write();
            work.clone().rename(&tmp, &pu, &name, RenameFlags::NOREPLACE)
        };
        if let Err(e) = placed {
            let _ = if u.kind() == FileType::Directory { work.rmdir(&tmp) } else { work.unlink(&tmp) };
            return Err(e);
        }
        *self.upper.lock() = Some(u.clone());
        Ok(u)
    }

    /// The upper node for a change of xattrs: as [`ONode::copy_up`], except that a
    /// name of a lower hard-linked file already copied up (through another name)
    /// changes the copy without getting an upper entry of its own, as overlayfs.
    pub(crate) fn copy_up_inode(&self) -> Result<NodeRef> {
        match self.upper() {
            Some(u) => Ok(u),
            None => self.copy_up(),
        }
    }

    /// Copy-up of a name of a lower hard-linked file: the copy is made once, in the
    /// work directory (the index entry every name shares), and linked to this name
    /// when it still shows this node.
    fn copy_up_indexed(&self) -> Result<NodeRef> {
        let key = self.key.ok_or(Errno::STALE)?;
        let copy = self.fs.index.lock().slots.get(&key).map(|s| s.copy.clone()).ok_or(Errno::STALE)?;
        let u = {
            let _one = copy.lock();
            match self.upper() {
                Some(u) => u,
                None => {
                    let (u, tmp) = self.build_copy()?;
                    let _w = self.fs.lock.write();
                    let mut index = self.fs.index.lock();
                    index.by_upper.insert(u.ino(), key);
                    if let Some(slot) = index.slots.get_mut(&key) {
                        slot.upper = Some(u.clone());
                        slot.work_name = Some(tmp);
                    }
                    u
                }
            }
        };
        // The data is safe in the index now; an upper entry for the name makes the
        // upper layer show the change too (an export).
        let placement = self.parent.lock().clone();
        if let Some((parent, name)) = placement {
            parent.link_up(&name, self)?;
        }
        Ok(u)
    }

    /// Build this node's copy in the work directory (data, xattrs, owner, mode and
    /// times): the copy and its name there. Nothing is left behind on failure.
    fn build_copy(&self) -> Result<(NodeRef, Vec<u8>)> {
        let lower = self.lowers.lock().first().cloned().ok_or(Errno::STALE)?;
        let a = lower.attr()?;
        let target = if a.kind == FileType::Symlink { lower.readlink()? } else { Vec::new() };
        let work = self.fs.work.clone();
        let tmp = self.fs.tmp_name();
        let new = NewNode { kind: a.kind, mode: a.mode, uid: a.uid, gid: a.gid, rdev: a.rdev, target };
        let u = work.clone().create(&tmp, &new)?;
        let built = (|| -> Result<()> {
            if a.kind == FileType::Regular {
                copy_data(&lower, &u)?;
            }
            for x in lower.listxattr().unwrap_or_default() {
                if is_private_xattr(&x) {
                    continue;
                }
                if let Ok(v) = lower.getxattr(&x) {
                    u.setxattr(&x, &v, XattrFlags::empty())?;
                }
            }
            // Attribute flags go up too (an upper that keeps none drops them).
            if let Ok(f) = lower.file_flags()
                && !f.is_empty()
            {
                let _ = u.set_file_flags(f);
            }
            u.setattr(&SetAttr {
                atime: Some(TimeSet::At(a.atime)),
                mtime: Some(TimeSet::At(a.mtime)),
                ctime: Some(a.ctime),
                ..SetAttr::default()
            })?;
            Ok(())
        })();
        if let Err(e) = built {
            let _ = if a.kind == FileType::Directory { work.rmdir(&tmp) } else { work.unlink(&tmp) };
            return Err(e);
        }
        Ok((u, tmp))
    }

    /// Copy up for a rename: a directory that has lower layers is copied up whole
    /// (everything it shows) and made opaque, gVisor's answer to overlayfs's EXDEV.
    pub(crate) fn copy_up_for_move(&self) -> Result<()> {
        let u = self.copy_up()?;
        if self.kind != FileType::Directory || *self.opaque.lock() || self.lowers.lock().is_empty() {
            return Ok(());
        }
        let mut names = Vec::new();
        crate::dir::readdir(self, 0, &mut |e| {
            names.push(e.name.to_vec());
            true
        })?;
        for n in names {
            let c = self.child(&n)?;
            c.copy_up_for_move()?;
            self.link_up(&n, &c)?;
        }
        let _w = self.fs.lock.write();
        u.setxattr(crate::OPAQUE_XATTR, b"y", XattrFlags::empty())?;
        *self.opaque.lock() = true;
        self.lowers.lock().clear();
        Ok(())
    }
}
