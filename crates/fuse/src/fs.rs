//! The fuser `Filesystem` implementation: each FUSE request becomes one call of the
//! mount namespace's location-level operations, with the caller's credentials.

use crate::creds::request_creds;
use crate::nodes::{Nodes, Stamp};
use crate::{CachePolicy, Options, Status};
use fuser::{
    AccessFlags, BackingId, FileAttr, FileHandle, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, Notifier, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;
use sandfs_vfs::ops::Make;
use sandfs_vfs::{
    Attr, Creds, Errno, FallocFlags, FileType, Location, MountFlags, MountNamespace, OpenFile, OpenFlags,
    RenameFlags, SetAttr, TimeSet, Timespec, Whence, XattrFlags,
};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Entry and attribute lifetime when sandfs is the only writer.
const LONG_TTL: Duration = Duration::from_secs(3600);
/// Entry and attribute lifetime when the host may change files.
const SHORT_TTL: Duration = Duration::from_millis(100);

/// The open(2) flag the kernel adds when it opens a file to execute it (__FMODE_EXEC).
const FMODE_EXEC: i32 = 0o40;
const O_EXCL: i32 = 0o200;

const S_IFMT: u32 = 0o170000;

/// An open file or directory, by FUSE file handle.
struct Open {
    file: OpenFile,
    nodeid: u64,
    /// Kept for as long as the kernel passes this open's data through.
    backing: Option<Arc<BackingId>>,
}

/// How the opens of one node move their data: the kernel wants every open of an
/// inode in the same mode, and passthrough opens sharing one backing file.
#[derive(Default)]
struct IoMode {
    cached: u32,
    passthrough: u32,
    backing: Weak<BackingId>,
}

pub(crate) struct SandFs {
    ns: Arc<MountNamespace>,
    nodes: Arc<Nodes>,
    files: Mutex<HashMap<u64, Arc<Open>>>,
    io: Mutex<HashMap<u64, IoMode>>,
    next_fh: AtomicU64,
    opts: Options,
    status: Arc<Status>,
    /// Tells the kernel its cache of a node is stale (set once the session exists).
    notifier: Arc<OnceLock<Notifier>>,
}

fn err(e: Errno) -> fuser::Errno {
    fuser::Errno::from_i32(e.raw_os_error())
}

fn bytes(s: &OsStr) -> &[u8] {
    s.as_bytes()
}

fn system_time(t: Timespec) -> SystemTime {
    let r = if t.sec >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(t.sec as u64, t.nsec.min(999_999_999)))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(t.sec.unsigned_abs()))
            .and_then(|x| x.checked_add(Duration::from_nanos(t.nsec.min(999_999_999) as u64)))
    };
    r.unwrap_or(UNIX_EPOCH)
}

fn timespec(t: SystemTime) -> Timespec {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timespec { sec: d.as_secs().min(i64::MAX as u64) as i64, nsec: d.subsec_nanos() },
        Err(e) => {
            let d = e.duration();
            let secs = d.as_secs().min(i64::MAX as u64) as i64;
            if d.subsec_nanos() == 0 {
                Timespec { sec: -secs, nsec: 0 }
            } else {
                Timespec { sec: -secs - 1, nsec: 1_000_000_000 - d.subsec_nanos() }
            }
        }
    }
}

fn time_set(t: Option<TimeOrNow>) -> Option<TimeSet> {
    t.map(|t| match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(s) => TimeSet::At(timespec(s)),
    })
}

fn kind(k: FileType) -> fuser::FileType {
    match k {
        FileType::Regular => fuser::FileType::RegularFile,
        FileType::Directory => fuser::FileType::Directory,
        FileType::Symlink => fuser::FileType::Symlink,
        FileType::Fifo => fuser::FileType::NamedPipe,
        FileType::Socket => fuser::FileType::Socket,
        FileType::CharDevice => fuser::FileType::CharDevice,
        FileType::BlockDevice => fuser::FileType::BlockDevice,
    }
}

/// A glibc/vfs device number (major in bits 8..20 and 32..., minor in 0..8 and
/// 20..32) as the 32-bit encoding FUSE carries (the kernel's new_encode_dev).
fn encode_dev(dev: u64) -> u32 {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)) as u32
}

/// The kernel's 32-bit device number (mknod) as a glibc/vfs one.
fn decode_dev(dev: u32) -> u64 {
    let dev = dev as u64;
    let major = (dev & 0xfff00) >> 8;
    let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    ((major & 0xfff) << 8) | ((major & !0xfff) << 32) | (minor & 0xff) | ((minor & !0xff) << 12)
}

fn fattr(id: u64, a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(id),
        size: a.size,
        blocks: a.blocks,
        atime: system_time(a.atime),
        mtime: system_time(a.mtime),
        ctime: system_time(a.ctime),
        crtime: system_time(a.btime),
        kind: kind(a.kind),
        perm: (a.mode & 0o7777) as u16,
        nlink: a.nlink.min(u32::MAX as u64) as u32,
        uid: a.uid,
        gid: a.gid,
        rdev: encode_dev(a.rdev),
        blksize: if a.blksize == 0 { 4096 } else { a.blksize },
        flags: 0,
    }
}

/// A negative entry: node id 0 tells the kernel "no such name" with a lifetime.
fn negative() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: fuser::FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

thread_local! {
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

macro_rules! node {
    ($self:ident, $id:expr, $reply:ident) => {
        match $self.nodes.get($id.0) {
            Some(loc) => loc,
            None => return $reply.error(fuser::Errno::ESTALE),
        }
    };
}

macro_rules! open_file {
    ($self:ident, $fh:expr, $reply:ident) => {
        match $self.file($fh) {
            Some(f) => f,
            None => return $reply.error(fuser::Errno::EBADF),
        }
    };
}

/// An open directory: the one OPENDIR made, or (file handle 0: this mount answers
/// no OPENDIR) one opened for this request.
macro_rules! open_dir {
    ($self:ident, $ino:expr, $fh:expr, $reply:ident) => {
        if $fh.0 == 0 {
            let loc = node!($self, $ino, $reply);
            // The kernel checked read permission at open (default_permissions).
            let file =
                tri!($self.ns.open(&Creds::root(), &loc, OpenFlags::READ | OpenFlags::DIRECTORY), $reply);
            Arc::new(Open { file, nodeid: $ino.0, backing: None })
        } else {
            open_file!($self, $fh, $reply)
        }
    };
}

macro_rules! tri {
    ($e:expr, $reply:ident) => {
        match $e {
            Ok(v) => v,
            Err(e) => return $reply.error(err(e)),
        }
    };
}

impl SandFs {
    pub(crate) fn new(
        ns: Arc<MountNamespace>,
        opts: Options,
        status: Arc<Status>,
        notifier: Arc<OnceLock<Notifier>>,
    ) -> SandFs {
        let nodes = Arc::new(Nodes::new(ns.root()));
        let _ = status.nodes.set(nodes.clone());
        SandFs {
            nodes,
            ns,
            files: Mutex::new(HashMap::new()),
            io: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            opts,
            status,
            notifier,
        }
    }

    fn creds(&self, req: &Request) -> Creds {
        request_creds(req.uid(), req.gid(), req.pid(), self.opts.ids.as_ref())
    }

    fn file(&self, fh: FileHandle) -> Option<Arc<Open>> {
        self.files.lock().get(&fh.0).cloned()
    }

    fn insert(&self, open: Open) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.files.lock().insert(fh, Arc::new(open));
        fh
    }

    /// Entry and attribute lifetime of names and files on `loc`'s mount: the cache
    /// policy's, or shorter when the mount's filesystem is shared with others (a
    /// `shared` bind under an `exclusive` root).
    fn attr_ttl(&self, loc: &Location) -> Duration {
        let ttl = match self.opts.cache {
            CachePolicy::Exclusive => LONG_TTL,
            CachePolicy::Shared => SHORT_TTL,
        };
        loc.mount.fs().revalidate_after().map_or(ttl, |t| t.min(ttl))
    }

    /// Flags of a cached (not passthrough) open. Always FOPEN_NOFLUSH: sandfs holds
    /// nothing back for a close to push (writes are done when WRITE is answered), so
    /// the FLUSH the kernel would otherwise send on every close is a wasted round trip.
    /// Pages are kept across opens only of files sandfs alone writes.
    fn fopen_flags(&self, loc: &Location) -> FopenFlags {
        match self.opts.cache {
            CachePolicy::Exclusive if loc.mount.fs().revalidate_after().is_none() => {
                FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH
            }
            _ => FopenFlags::FOPEN_NOFLUSH,
        }
    }

    /// Count one kernel reference to `loc` and describe it.
    fn entry(&self, loc: &Location) -> sandfs_vfs::Result<(u64, FileAttr)> {
        let a = loc.node.attr()?;
        let id = self.nodes.remember(loc, &a);
        Ok((id, fattr(id, &a)))
    }

    fn reply_entry(&self, r: sandfs_vfs::Result<Location>, reply: ReplyEntry) {
        let loc = tri!(r, reply);
        let (_, attr) = tri!(self.entry(&loc), reply);
        reply.entry(&self.attr_ttl(&loc), &attr, Generation(0));
    }

    /// The node id of `..` of a directory location (for readdir).
    fn parent_id(&self, loc: &Location) -> (u64, Location) {
        let p = self.ns.parent_of(loc);
        (self.nodes.peek_id(p.mount.id(), p.node.ino()), p)
    }

    /// Decide how an open of `nodeid` moves data, and count it. Passthrough when the
    /// kernel accepted it at init, no open of the node is in cached mode (the kernel
    /// fails an open whose mode differs from the inode's other opens with EIO), and
    /// either the file lends a descriptor for direct reads and writes (a tmpfs file's
    /// memfd: the tmpfs reads size, times and data back from it), or the open is
    /// read-only, has a host descriptor (gofer-backed) and its mount is read-only: then
    /// no open of the node can ever need sandfs to see its writes or switch it to
    /// another backing file (an overlay copy-up does that). Overlay files still in a
    /// lower layer lend nothing, so they stay in cached mode.
    fn io_open(
        &self,
        nodeid: u64,
        file: &OpenFile,
        open_backing: impl FnOnce(BorrowedFd<'_>) -> std::io::Result<BackingId>,
    ) -> Option<Arc<BackingId>> {
        let mut io = self.io.lock();
        let st = io.entry(nodeid).or_default();
        if self.status.passthrough_enabled() && st.cached == 0 {
            let lent = file.handle().and_then(|h| h.passthrough_fd());
            let fd = match &lent {
                Some(fd) => Some(fd.as_fd()),
                None if file.location().mount.flags().contains(MountFlags::RDONLY)
                    && !file.flags().contains(OpenFlags::WRITE) =>
                {
                    file.handle().and_then(|h| h.host_fd())
                }
                None => None,
            };
            if let Some(fd) = fd {
                if let Some(b) = st.backing.upgrade() {
                    st.passthrough += 1;
                    return Some(b);
                }
                match open_backing(fd) {
                    Ok(b) => {
                        let b = Arc::new(b);
                        st.backing = Arc::downgrade(&b);
                        st.passthrough += 1;
                        self.status.passthrough_accepted.fetch_add(1, Ordering::Relaxed);
                        return Some(b);
                    }
                    Err(e) => self.status.refuse_passthrough(&e),
                }
            }
        }
        st.cached += 1;
        None
    }

    /// Register an open file of `nodeid` ([`SandFs::io_open`] decides passthrough):
    /// its file handle, the open flags to reply with, and the backing file to name in
    /// the reply when it passes through.
    fn opened(
        &self,
        nodeid: u64,
        file: OpenFile,
        open_backing: impl FnOnce(BorrowedFd<'_>) -> std::io::Result<BackingId>,
    ) -> (FileHandle, FopenFlags, Option<Arc<BackingId>>) {
        let backing = self.io_open(nodeid, &file, open_backing);
        // The kernel refuses (EIO) passthrough opens with any flag outside
        // PASSTHROUGH | DIRECT_IO | PARALLEL_DIRECT_WRITES | NOFLUSH: no KEEP_CACHE
        // (the page cache is the backing file's anyway).
        let flags =
            if backing.is_some() { FopenFlags::FOPEN_NOFLUSH } else { self.fopen_flags(file.location()) };
        let fh = self.insert(Open { file, nodeid, backing: backing.clone() });
        (FileHandle(fh), flags, backing)
    }

    /// Whether the host may change `file` behind sandfs (gofer-backed data).
    fn host_backed(file: &OpenFile) -> bool {
        file.handle().is_some_and(|h| h.host_fd().is_some())
    }

    /// At an open of `nodeid`: whether the kernel's cache of it (attributes and
    /// pages) may be of another state of the file than the one just opened (the
    /// host changed a gofer-backed file since the kernel was told of it). If so the
    /// kernel's attributes are dropped now, before the open is answered, so the
    /// opener's reads and fstat ask again and get the size of the state it reads;
    /// the caller drops the pages (no FOPEN_KEEP_CACHE). Pages are not dropped
    /// here: that would wait on a page another request of this server is filling.
    fn revalidate(&self, nodeid: u64, file: &OpenFile) -> bool {
        if !Self::host_backed(file) {
            return false;
        }
        let now = file.stat().ok().map(|a| Stamp::of(&a));
        let told = self.nodes.told_of(nodeid);
        if now.is_some() && told == now {
            return false;
        }
        if told.is_some() {
            self.nodes.told(nodeid, None);
            match self.notifier.get() {
                Some(n) => {
                    if let Err(e) = n.inval_inode(INodeNo(nodeid), -1, 0) {
                        tracing::warn!("dropping the kernel's attributes of node {nodeid}: {e}");
                    }
                }
                None => tracing::warn!("no notifier to drop the kernel's attributes of node {nodeid}"),
            }
        }
        true
    }

    fn io_release(&self, open: &Open) {
        let mut io = self.io.lock();
        if let Some(st) = io.get_mut(&open.nodeid) {
            if open.backing.is_some() {
                st.passthrough = st.passthrough.saturating_sub(1);
            } else {
                st.cached = st.cached.saturating_sub(1);
            }
            if st.cached == 0 && st.passthrough == 0 {
                io.remove(&open.nodeid);
            }
        }
    }
}

impl fuser::Filesystem for SandFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Not FUSE_ATOMIC_O_TRUNC: with it the kernel sends O_TRUNC in OPEN and only
        // then checks for a running executable (ETXTBSY), after the data is gone.
        // Without it the kernel checks first and truncates through SETATTR.
        let mut want = InitFlags::FUSE_HANDLE_KILLPRIV_V2
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_AUTO_INVAL_DATA
            | InitFlags::FUSE_HAS_IOCTL_DIR;
        if self.opts.cache == CachePolicy::Exclusive {
            want |= InitFlags::FUSE_CACHE_SYMLINKS;
        }
        for flag in want.iter() {
            if config.add_capabilities(flag).is_err() {
                tracing::debug!("kernel lacks FUSE capability {flag:?}");
            }
        }
        let _ = config.set_max_write(1 << 20);
        if self.opts.passthrough {
            if config.capabilities().contains(InitFlags::FUSE_PASSTHROUGH)
                && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
                && config.set_max_stack_depth(1).is_ok()
            {
                self.status.passthrough_kernel.store(true, Ordering::Relaxed);
            } else {
                tracing::info!("FUSE passthrough: the kernel does not offer it");
            }
        }
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let dir = node!(self, parent, reply);
        let creds = self.creds(req);
        match self.ns.lookup(&creds, &dir, bytes(name)) {
            Err(e) if e == Errno::NOENT => {
                let ttl = self.attr_ttl(&dir);
                if ttl.is_zero() {
                    reply.error(fuser::Errno::ENOENT)
                } else {
                    reply.entry(&ttl, &negative(), Generation(0))
                }
            }
            r => self.reply_entry(r, reply),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.nodes.forget(ino.0, nlookup);
    }

    // BATCH_FORGET: fuser's default calls `forget` per node (its item type is not
    // nameable outside fuser).

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let (attr, ttl) = match fh.and_then(|fh| self.file(fh)) {
            Some(f) => (f.file.stat(), self.attr_ttl(f.file.location())),
            None => {
                let loc = node!(self, ino, reply);
                (self.ns.getattr(&loc), self.attr_ttl(&loc))
            }
        };
        let a = tri!(attr, reply);
        self.nodes.told(ino.0, Some(&a));
        reply.attr(&ttl, &fattr(ino.0, &a));
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let loc = node!(self, ino, reply);
        let creds = self.creds(req);
        let mut set = SetAttr {
            mode: mode.map(|m| m & 0o7777),
            uid,
            gid,
            size: None,
            atime: time_set(atime),
            mtime: time_set(mtime),
            ctime: None,
        };
        if let Some(size) = size {
            // A size change sets mtime itself; the kernel's "mtime = now" beside it
            // must not turn truncate(2) into a utimes that needs ownership.
            if set.mtime == Some(TimeSet::Now) && set.atime.is_none() {
                set.mtime = None;
            }
            match fh.and_then(|fh| self.file(fh)).filter(|f| f.file.flags().contains(OpenFlags::WRITE)) {
                // ftruncate (or open(O_TRUNC) for writing): the descriptor's write
                // access is the permission.
                Some(f) => tri!(f.file.truncate(size), reply),
                // truncate(2), or open(O_RDONLY | O_TRUNC): write permission on the
                // file is checked.
                None => set.size = Some(size),
            }
        }
        let only_owner = size.is_none() && set.mode.is_none() && set.atime.is_none() && set.mtime.is_none();
        let r = if only_owner {
            // chown and fchown, chown(f, -1, -1) included (the kernel sends that as a
            // SETATTR that changes nothing; Linux still updates ctime).
            self.ns.chown(&creds, &loc, set.uid, set.gid)
        } else if set.is_empty() {
            self.ns.getattr(&loc)
        } else {
            self.ns.setattr(&creds, &loc, &set)
        };
        let a = tri!(r, reply);
        self.nodes.told(ino.0, Some(&a));
        reply.attr(&self.attr_ttl(&loc), &fattr(ino.0, &a));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let loc = node!(self, ino, reply);
        let target = tri!(self.ns.readlink(&loc), reply);
        reply.data(&target);
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let dir = node!(self, parent, reply);
        let creds = self.creds(req);
        let what = match mode & S_IFMT {
            0 | 0o100000 => Make::File,
            0o010000 => Make::Fifo,
            0o140000 => Make::Socket,
            0o020000 => Make::CharDev(decode_dev(rdev)),
            0o060000 => Make::BlockDev(decode_dev(rdev)),
            _ => return reply.error(fuser::Errno::EINVAL),
        };
        let r = self.ns.make(&creds, &dir, bytes(name), what, mode & 0o7777);
        self.reply_entry(r, reply);
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        let dir = node!(self, parent, reply);
        let creds = self.creds(req);
        let r = self.ns.make(&creds, &dir, bytes(name), Make::Dir, mode & 0o7777);
        self.reply_entry(r, reply);
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let dir = node!(self, parent, reply);
        let creds = self.creds(req);
        tri!(self.ns.unlink(&creds, &dir, bytes(name)), reply);
        reply.ok();
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let dir = node!(self, parent, reply);
        let creds = self.creds(req);
        tri!(self.ns.rmdir(&creds, &dir, bytes(name)), reply);
        reply.ok();
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let dir = node!(self, parent, reply);
        let creds = self.creds(req);
        let target = target.as_os_str().as_bytes().to_vec();
        let r = self.ns.make(&creds, &dir, bytes(link_name), Make::Symlink(target), 0o777);
        self.reply_entry(r, reply);
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        let odir = node!(self, parent, reply);
        let ndir = node!(self, newparent, reply);
        let creds = self.creds(req);
        let bits = flags.bits();
        if bits & !7 != 0 {
            return reply.error(fuser::Errno::EINVAL);
        }
        let f = RenameFlags::from_bits_truncate(
            (if bits & 1 != 0 { RenameFlags::NOREPLACE.bits() } else { 0 })
                | (if bits & 2 != 0 { RenameFlags::EXCHANGE.bits() } else { 0 })
                | (if bits & 4 != 0 { RenameFlags::WHITEOUT.bits() } else { 0 }),
        );
        tri!(self.ns.rename(&creds, &odir, bytes(name), &ndir, bytes(newname), f), reply);
        reply.ok();
    }

    fn link(&self, req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let target = node!(self, ino, reply);
        let dir = node!(self, newparent, reply);
        let creds = self.creds(req);
        let r = self.ns.link(&creds, &target, &dir, bytes(newname));
        self.reply_entry(r, reply);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: fuser::OpenFlags, reply: ReplyOpen) {
        let loc = node!(self, ino, reply);
        let creds = self.creds(req);
        if flags.0 & FMODE_EXEC != 0 {
            // execve: the kernel itself only checks that some x bit is set.
            tri!(self.ns.access(&creds, &loc, 1), reply);
        }
        let of = OpenFlags::from_linux(flags.0) - OpenFlags::CREAT - OpenFlags::EXCL;
        let file = tri!(self.ns.open(&creds, &loc, of), reply);
        let changed = self.revalidate(ino.0, &file);
        match self.opened(ino.0, file, |fd| reply.open_backing(fd)) {
            (fh, flags, Some(b)) => reply.opened_passthrough(fh, flags, &b),
            // Not FOPEN_KEEP_CACHE: the kernel drops the pages it holds of another state.
            (fh, flags, None) if changed => reply.opened(fh, flags - FopenFlags::FOPEN_KEEP_CACHE),
            (fh, flags, None) => reply.opened(fh, flags),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let f = open_file!(self, fh, reply);
        READ_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            let size = size as usize;
            if buf.len() < size {
                buf.resize(size, 0);
            }
            let mut n = 0;
            while n < size {
                match f.file.read_at(&mut buf[n..size], offset + n as u64) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e == Errno::INTR => continue,
                    Err(e) if n == 0 => return reply.error(err(e)),
                    Err(_) => break,
                }
            }
            reply.data(&buf[..n]);
        });
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let f = open_file!(self, fh, reply);
        let n = tri!(f.file.write_at(data, offset), reply);
        if Self::host_backed(&f.file) {
            // The kernel's page cache holds what was written, and it refetches the
            // attributes a write changes: its cache is of this state.
            self.nodes.told(f.nodeid, f.file.stat().ok().as_ref());
        }
        reply.written(n.min(u32::MAX as usize) as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let _f = open_file!(self, fh, reply);
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let open = self.files.lock().remove(&fh.0);
        if let Some(open) = &open {
            self.io_release(open);
        }
        reply.ok();
        drop(open);
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        let f = open_file!(self, fh, reply);
        tri!(f.file.fsync(datasync), reply);
        reply.ok();
    }

    /// In `exclusive` mode no OPENDIR is answered (ENOSYS): the kernel then stops
    /// sending OPENDIR and RELEASEDIR, two requests per directory opened, and keeps
    /// listings cached as FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR would; it has checked
    /// read permission itself (default_permissions). READDIR then comes with file
    /// handle 0 and the directory is opened for that request.
    fn opendir(&self, req: &Request, ino: INodeNo, flags: fuser::OpenFlags, reply: ReplyOpen) {
        if self.opts.cache == CachePolicy::Exclusive {
            return reply.error(fuser::Errno::ENOSYS);
        }
        let loc = node!(self, ino, reply);
        let creds = self.creds(req);
        let mut of = OpenFlags::from_linux(flags.0) | OpenFlags::DIRECTORY;
        of.remove(OpenFlags::CREAT | OpenFlags::EXCL | OpenFlags::TRUNC);
        let file = tri!(self.ns.open(&creds, &loc, of), reply);
        let fh = self.insert(Open { file, nodeid: ino.0, backing: None });
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let f = open_dir!(self, ino, fh, reply);
        let dir = f.file.location();
        let r = f.file.readdir_at(offset, &mut |e| {
            let id = match e.name {
                b"." => ino.0,
                b".." => self.parent_id(dir).0,
                _ => self.nodes.peek_id(dir.mount.id(), e.ino),
            };
            !reply.add(INodeNo(id), e.offset, kind(e.kind), OsStr::from_bytes(e.name))
        });
        tri!(r, reply);
        reply.ok();
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let f = open_dir!(self, ino, fh, reply);
        let creds = self.creds(req);
        let dir = f.file.location().clone();
        let zero = Generation(0);
        let r = f.file.readdir_at(offset, &mut |e| {
            let name = OsStr::from_bytes(e.name);
            // `.` and `..` are not linked by the kernel (no lookup counted).
            let (id, attr) = match e.name {
                b"." => (ino.0, dir.node.attr()),
                b".." => {
                    let (id, p) = self.parent_id(&dir);
                    (id, p.node.attr())
                }
                _ => match self.ns.lookup(&creds, &dir, e.name).and_then(|l| Ok((l.node.attr()?, l))) {
                    Ok((a, loc)) => {
                        let id = self.nodes.remember(&loc, &a);
                        let ttl = self.attr_ttl(&loc);
                        if reply.add(INodeNo(id), e.offset, name, &ttl, &fattr(id, &a), zero) {
                            self.nodes.forget(id, 1);
                            return false;
                        }
                        return true;
                    }
                    // Gone meanwhile, or not searchable by the caller: the name
                    // without attributes (node id 0: the kernel links nothing).
                    Err(_) => {
                        let mut a = negative();
                        a.kind = kind(e.kind);
                        return !reply.add(INodeNo(0), e.offset, name, &Duration::ZERO, &a, zero);
                    }
                },
            };
            match attr {
                Ok(a) => !reply.add(INodeNo(id), e.offset, name, &Duration::ZERO, &fattr(id, &a), zero),
                Err(_) => {
                    let mut a = negative();
                    a.kind = fuser::FileType::Directory;
                    a.ino = INodeNo(id);
                    !reply.add(INodeNo(id), e.offset, name, &Duration::ZERO, &a, zero)
                }
            }
        });
        tri!(r, reply);
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: fuser::OpenFlags,
        reply: ReplyEmpty,
    ) {
        let open = self.files.lock().remove(&fh.0);
        reply.ok();
        drop(open);
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let _f = open_dir!(self, ino, fh, reply);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        let loc = node!(self, ino, reply);
        let s = tri!(self.ns.statfs(&loc), reply);
        let bsize = if s.bsize == 0 { 4096 } else { s.bsize };
        reply.statfs(s.blocks, s.bfree, s.bavail, s.files, s.ffree, bsize, s.namelen, bsize);
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let loc = node!(self, ino, reply);
        let creds = self.creds(req);
        let mut f = XattrFlags::empty();
        if flags & 1 != 0 {
            f |= XattrFlags::CREATE;
        }
        if flags & 2 != 0 {
            f |= XattrFlags::REPLACE;
        }
        if flags & !3 != 0 {
            return reply.error(fuser::Errno::EINVAL);
        }
        tri!(self.ns.setxattr(&creds, &loc, bytes(name), value, f), reply);
        reply.ok();
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let loc = node!(self, ino, reply);
        let creds = self.creds(req);
        let value = tri!(self.ns.getxattr(&creds, &loc, bytes(name)), reply);
        xattr_reply(&value, size, reply);
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let loc = node!(self, ino, reply);
        let creds = self.creds(req);
        let names = tri!(self.ns.listxattr(&creds, &loc), reply);
        let mut list = Vec::with_capacity(names.iter().map(|n| n.len() + 1).sum());
        for n in names {
            list.extend_from_slice(&n);
            list.push(0);
        }
        xattr_reply(&list, size, reply);
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let loc = node!(self, ino, reply);
        let creds = self.creds(req);
        tri!(self.ns.removexattr(&creds, &loc, bytes(name)), reply);
        reply.ok();
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let loc = node!(self, ino, reply);
        let creds = self.creds(req);
        tri!(self.ns.access(&creds, &loc, (mask.bits() & 7) as u32), reply);
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let dir = node!(self, parent, reply);
        let creds = self.creds(req);
        let of = OpenFlags::from_linux(flags) - OpenFlags::CREAT - OpenFlags::EXCL;
        let file = match self.ns.create_open(&creds, &dir, bytes(name), of, mode & 0o7777) {
            Ok(f) => f,
            // Created by someone else since the kernel's lookup: open it, as
            // open(O_CREAT) without O_EXCL does.
            Err(e) if e == Errno::EXIST && flags & O_EXCL == 0 => {
                let loc = tri!(self.ns.lookup(&creds, &dir, bytes(name)), reply);
                if loc.node.kind() == FileType::Directory {
                    return reply.error(fuser::Errno::EISDIR);
                }
                tri!(self.ns.open(&creds, &loc, of), reply)
            }
            Err(e) => return reply.error(err(e)),
        };
        let loc = file.location().clone();
        let (id, attr) = tri!(self.entry(&loc), reply);
        let ttl = self.attr_ttl(&loc);
        match self.opened(id, file, |fd| reply.open_backing(fd)) {
            (fh, flags, Some(b)) => reply.created_passthrough(&ttl, &attr, Generation(0), fh, flags, &b),
            (fh, flags, None) => reply.created(&ttl, &attr, Generation(0), fh, flags),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        const KEEP_SIZE: i32 = 0x01;
        const PUNCH_HOLE: i32 = 0x02;
        const ZERO_RANGE: i32 = 0x10;
        let f = open_file!(self, fh, reply);
        if mode & !(KEEP_SIZE | PUNCH_HOLE | ZERO_RANGE) != 0 {
            return reply.error(fuser::Errno::EOPNOTSUPP);
        }
        let mut fl = FallocFlags::empty();
        if mode & KEEP_SIZE != 0 {
            fl |= FallocFlags::KEEP_SIZE;
        }
        if mode & PUNCH_HOLE != 0 {
            fl |= FallocFlags::PUNCH_HOLE;
        }
        if mode & ZERO_RANGE != 0 {
            fl |= FallocFlags::ZERO_RANGE;
        }
        tri!(f.file.fallocate(fl, offset, length), reply);
        reply.ok();
    }

    /// FS_IOC_GETFLAGS / SETFLAGS and FS_IOC_FSGETXATTR / FSSETXATTR (the kernel
    /// sends these for chattr and lsattr, from its fileattr code: the flags as a
    /// 32-bit int, whatever the ioctl's declared size); ENOTTY for anything else.
    fn ioctl(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        let loc = node!(self, ino, reply);
        let creds = self.creds(req);
        match crate::ioctl::decode(cmd, in_data) {
            Err(e) => reply.error(err(e)),
            Ok(crate::ioctl::Call::GetFlags(how)) => {
                let flags = tri!(self.ns.file_flags(&loc), reply);
                let out = crate::ioctl::encode(how, flags);
                reply.ioctl(0, &out[..out.len().min(out_size as usize)]);
            }
            Ok(crate::ioctl::Call::SetFlags(bits)) => {
                tri!(self.ns.set_file_flags(&creds, &loc, bits), reply);
                reply.ioctl(0, &[]);
            }
        }
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        const SEEK_DATA: i32 = 3;
        const SEEK_HOLE: i32 = 4;
        let f = open_file!(self, fh, reply);
        let w = match whence {
            SEEK_DATA => Whence::Data,
            SEEK_HOLE => Whence::Hole,
            _ => return reply.error(fuser::Errno::EINVAL),
        };
        if offset < 0 {
            return reply.error(fuser::Errno::ENXIO);
        }
        let off = tri!(f.file.seek_data(offset as u64, w), reply);
        reply.offset(off.min(i64::MAX as u64) as i64);
    }
}

/// getxattr/listxattr's size protocol: 0 asks for the size; too small is ERANGE.
fn xattr_reply(value: &[u8], size: u32, reply: ReplyXattr) {
    if size == 0 {
        reply.size(value.len().min(u32::MAX as usize) as u32);
    } else if value.len() > size as usize {
        reply.error(fuser::Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_round_trip() {
        for (major, minor) in [(0u64, 0u64), (1, 3), (8, 1), (259, 7), (4095, 255), (12, 0xfffff)] {
            let glibc =
                ((major & 0xfff) << 8) | ((major & !0xfff) << 32) | (minor & 0xff) | ((minor & !0xff) << 12);
            let kernel = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
            assert_eq!(encode_dev(glibc) as u64, kernel, "{major}:{minor}");
            assert_eq!(decode_dev(kernel as u32), glibc, "{major}:{minor}");
        }
    }

    #[test]
    fn times_round_trip() {
        for t in [
            Timespec { sec: 0, nsec: 0 },
            Timespec { sec: 1_700_000_000, nsec: 123 },
            Timespec { sec: -1, nsec: 500 },
            Timespec { sec: -86400, nsec: 0 },
        ] {
            assert_eq!(timespec(system_time(t)), t);
        }
    }

    #[test]
    fn root_id_is_reserved() {
        assert_eq!(crate::nodes::ROOT_ID, 1);
    }
}
