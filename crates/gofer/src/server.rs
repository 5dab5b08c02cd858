//! The gofer server for one mount: a table of fids (host `O_PATH` descriptors, each
//! remembered with its parent and name), answering requests strictly beneath the
//! mount source. Every open is relative to a held descriptor, one component at a
//! time, with `openat2` RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS
//! and O_NOFOLLOW: symlinks are returned to the client, never followed here. A
//! read-only mount answers EROFS to every mutation.
//!
//! Owners: a server given the sandbox's id map ([`Server::map_ids`]) speaks container
//! ids. Every attribute it sends goes through the map host -> container (an unmapped
//! host id shows as [`OVERFLOW_ID`]) in one place ([`Server::handle`]); every owner
//! it is sent goes container -> host, and one with no mapping is EINVAL. Whatever the
//! map, no device node is made on the host, and with a map no host file is left
//! setuid (setgid) to a host id outside it.

use crate::ahead::Ahead;
use crate::proto::{
    Dent, Fid, LISTED_HEADER, MAX_DENTS, MAX_MESSAGE, MAX_NAME, Reply, Request, VERSION, WalkEnd, dent_size,
    setattr_valid,
};
use crate::transport::{Conn, RecvError};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, StatxFlags};
use rustix::io::Errno;
use sandfs_vfs::idmap::{IdMap, OVERFLOW_ID};
use sandfs_vfs::{Attr, FileType, StatFs, Timespec};
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::path::Path;
use std::sync::Arc;

/// How long a server in a burst of requests polls for the next one before it
/// sleeps (see [`Server::serve`]).
pub const SPIN: std::time::Duration = std::time::Duration::from_micros(200);
/// Requests that come within this of the last reply are a burst.
pub const BURST: std::time::Duration = std::time::Duration::from_millis(1);

/// Most fids one connection may hold unless told otherwise ([`Server::limit_fids`]).
const MAX_FIDS: usize = 1 << 20;

/// A host directory or file to serve, opened before confinement.
pub struct Source {
    root: OwnedFd,
    parent: Option<(Arc<OwnedFd>, Vec<u8>)>,
    readonly: bool,
}

impl Source {
    /// Open `path` (a directory, or a regular file served as a single-file mount).
    pub fn open(path: &Path, readonly: bool) -> Result<Source, Errno> {
        let root = rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
        let st = rustix::fs::fstat(&root)?;
        let parent = if st.st_mode & 0o170000 == 0o040000 {
            None
        } else {
            // A file mount: remember its directory and name so it can be reopened.
            use std::os::unix::ffi::OsStrExt;
            let name = path.file_name().ok_or(Errno::INVAL)?.as_bytes().to_vec();
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let dfd =
                rustix::fs::open(dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
            Some((Arc::new(dfd), name))
        };
        Ok(Source { root, parent, readonly })
    }

    /// Whether mutations are refused.
    pub fn readonly(&self) -> bool {
        self.readonly
    }

    /// The descriptor of the source.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }
}

struct Entry {
    fd: Arc<OwnedFd>,
    parent: Option<(Arc<OwnedFd>, Vec<u8>)>,
    kind: FileType,
    dev: u64,
    ino: u64,
}

/// Serves one mount over one connection.
pub struct Server {
    readonly: bool,
    max_fids: usize,
    fids: HashMap<Fid, Entry>,
    next: Fid,
    root: Option<Entry>,
    /// The version agreed on at attach (0 before).
    version: u32,
    /// getdents buffer, allocated once.
    dirbuf: Vec<MaybeUninit<u8>>,
    /// Listings made ahead (version 4).
    ahead: Ahead,
    /// The sandbox's id map for this mount; `None`: ids pass through as stored.
    ids: Option<IdMap>,
}

const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_SYMLINKS
}

fn ts(t: rustix::fs::StatxTimestamp) -> Timespec {
    Timespec { sec: t.tv_sec, nsec: t.tv_nsec }
}

/// Attributes of a descriptor (not following a symlink it refers to).
pub fn stat_fd(fd: BorrowedFd<'_>) -> Result<Attr, Errno> {
    let x = rustix::fs::statx(
        fd,
        "",
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS | StatxFlags::BTIME,
    )?;
    statx_attr(&x)
}

fn statx_attr(x: &rustix::fs::Statx) -> Result<Attr, Errno> {
    let mode = x.stx_mode as u32;
    Ok(Attr {
        kind: FileType::from_mode(mode).ok_or(Errno::IO)?,
        mode: mode & 0o7777,
        nlink: x.stx_nlink as u64,
        uid: x.stx_uid,
        gid: x.stx_gid,
        size: x.stx_size,
        blocks: x.stx_blocks,
        blksize: x.stx_blksize,
        atime: ts(x.stx_atime),
        mtime: ts(x.stx_mtime),
        ctime: ts(x.stx_ctime),
        btime: ts(x.stx_btime),
        ino: x.stx_ino,
        dev: rustix::fs::makedev(x.stx_dev_major, x.stx_dev_minor),
        rdev: rustix::fs::makedev(x.stx_rdev_major, x.stx_rdev_minor),
    })
}

/// Open `name` in `dir` without following symlinks or leaving `dir`.
fn open_beneath(dir: BorrowedFd<'_>, name: &[u8], flags: OFlags, mode: u32) -> Result<OwnedFd, Errno> {
    rustix::fs::openat2(
        dir,
        name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
        resolve_flags(),
    )
}

/// `/proc/self/fd`, opened once before confinement: reopening an `O_PATH`
/// descriptor through its magic link reaches exactly the inode it refers to, however
/// it was renamed since.
fn proc_fds() -> Result<BorrowedFd<'static>, Errno> {
    static PROC: std::sync::OnceLock<Result<OwnedFd, Errno>> = std::sync::OnceLock::new();
    match PROC.get_or_init(|| {
        rustix::fs::open("/proc/self/fd", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
    }) {
        Ok(fd) => Ok(fd.as_fd()),
        Err(e) => Err(*e),
    }
}

/// Open `/proc/self/fd` now (call before entering a mount namespace without /proc).
pub fn prepare_reopen() -> Result<(), Errno> {
    proc_fds().map(|_| ())
}

fn fd_name(fd: BorrowedFd<'_>) -> String {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd().to_string()
}

/// `name` beneath `dir` as an `O_PATH` descriptor (not followed), and its attributes.
fn open_node(dir: BorrowedFd<'_>, name: &[u8]) -> Result<(OwnedFd, Attr), Errno> {
    let fd = open_beneath(dir, name, OFlags::PATH, 0)?;
    let attr = stat_fd(fd.as_fd())?;
    Ok((fd, attr))
}

/// chmod the inode `fd` refers to (any descriptor, `O_PATH` included), through its
/// `/proc/self/fd` link: never a name that could have been replaced.
fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> Result<(), Errno> {
    rustix::fs::chmodat(proc_fds()?, fd_name(fd).as_str(), Mode::from_raw_mode(mode), AtFlags::empty())
}

/// Reopen an `O_PATH` descriptor for data access.
fn reopen_fd(fd: BorrowedFd<'_>, flags: OFlags) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(proc_fds()?, fd_name(fd).as_str(), flags | OFlags::CLOEXEC, Mode::empty())
}

fn errno(e: Errno) -> i32 {
    e.raw_os_error()
}

impl Server {
    /// A server for `src`.
    pub fn new(src: Source) -> Result<Server, Errno> {
        let attr = stat_fd(src.root.as_fd())?;
        let root = Entry {
            fd: Arc::new(src.root),
            parent: src.parent,
            kind: attr.kind,
            dev: attr.dev,
            ino: attr.ino,
        };
        Ok(Server {
            readonly: src.readonly,
            max_fids: MAX_FIDS,
            fids: HashMap::new(),
            next: 1,
            root: Some(root),
            version: 0,
            dirbuf: Vec::new(),
            ahead: Ahead::default(),
            ids: None,
        })
    }

    /// Speak container ids through `map` (a host volume of a sandbox in a user
    /// namespace): attributes sent translate host -> container, owners received
    /// container -> host (EINVAL for an id the map lacks), and setuid/setgid bits
    /// stay only on files whose host owner (group) the map holds.
    pub fn map_ids(&mut self, map: IdMap) {
        self.ids = Some(map);
    }

    /// Cap the host descriptors this connection may hold, so one mount cannot use up
    /// the descriptors every mount of the process shares: its fids (ENFILE beyond)
    /// get `max` less what listings made ahead may hold.
    pub fn limit_fids(&mut self, max: usize) {
        self.max_fids = max.saturating_sub(crate::ahead::MAX_READY).max(16);
    }

    /// Answer requests until the peer closes the connection or breaks the protocol.
    ///
    /// While requests come in a burst (each within [`BURST`] of the last reply), the
    /// server polls for the next one for up to [`SPIN`] before it sleeps: a cold walk
    /// sends one every 50-150 µs, and waking a sleeping server costs each of them a
    /// wake-up of an idle CPU (on a virtual machine, an exit to the hypervisor). Once a
    /// request takes longer to come, the server sleeps at once until the next burst.
    pub fn serve(mut self, conn: Conn) {
        // Modes the client sends are final (it applied the sandbox's umask): this
        // thread gets its own filesystem context with umask 0.
        // SAFETY: CLONE_FS does not touch the file descriptor table.
        if let Err(e) = unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) } {
            tracing::warn!(
                "gofer: cannot unshare the filesystem context ({e}); modes follow the process umask"
            );
        } else {
            rustix::process::umask(Mode::empty());
        }
        let mut buf = Vec::with_capacity(MAX_MESSAGE + 1);
        let mut fds = Vec::new();
        let mut spin = SPIN;
        loop {
            if self.version >= 4 {
                self.work_ahead(&conn);
            }
            let waiting = std::time::Instant::now();
            let got = conn.recv_spinning(&mut buf, &mut fds, spin);
            // Keep polling while requests come in a burst; sleep once they stop.
            spin = if waiting.elapsed() <= BURST { SPIN } else { std::time::Duration::ZERO };
            match got {
                Ok(()) => {}
                Err(RecvError::Closed) => return,
                Err(RecvError::Malformed(why)) => {
                    tracing::error!("gofer: closing connection: {why}");
                    return;
                }
                Err(RecvError::FdsLost) => {
                    tracing::error!("gofer: closing connection: client sent descriptors");
                    return;
                }
                Err(RecvError::Io(e)) => {
                    tracing::error!("gofer: receive failed: {e}");
                    return;
                }
            }
            if !fds.is_empty() {
                tracing::error!("gofer: closing connection: client sent descriptors");
                return;
            }
            let (tag, req) = match Request::decode(&buf) {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!("gofer: closing connection: malformed request: {e}");
                    return;
                }
            };
            let (reply, fd) = self.handle(req);
            let msg = crate::proto::encode_reply(tag, &reply.map_err(errno));
            let fds: Vec<BorrowedFd<'_>> = fd.iter().map(|f| f.as_fd()).collect();
            if let Err(e) = conn.send(&msg, &fds) {
                tracing::error!("gofer: send failed: {e}");
                return;
            }
        }
    }

    /// Make listings ahead while no request waits (see [`crate::ahead`]).
    fn work_ahead(&mut self, conn: &Conn) {
        let busy = || {
            let mut b = [0u8; 1];
            let mut iov = [std::io::IoSliceMut::new(&mut b)];
            let mut anc = rustix::net::RecvAncillaryBuffer::default();
            let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
            rustix::net::recvmsg(conn.fd(), &mut iov, &mut anc, flags).err() != Some(Errno::AGAIN)
        };
        let Server { ahead, dirbuf, .. } = self;
        ahead.work(&busy, &mut |parent, name| {
            let (fd, attr) = open_node(parent, name)?;
            if attr.kind != FileType::Directory {
                return Err(Errno::NOTDIR);
            }
            let (entries, eof) = list(&fd, 0, dirbuf)?;
            Ok((fd, attr, entries, eof))
        });
    }

    fn entry(&self, fid: Fid) -> Result<&Entry, Errno> {
        self.fids.get(&fid).ok_or(Errno::BADF)
    }

    fn insert(&mut self, e: Entry) -> Result<Fid, Errno> {
        if self.fids.len() >= self.max_fids {
            return Err(Errno::NFILE);
        }
        let fid = self.next;
        self.next += 1;
        self.fids.insert(fid, e);
        Ok(fid)
    }

    /// Track `name` (just created or found) in `dir` as a new fid.
    fn adopt(&mut self, dir: &Arc<OwnedFd>, name: &[u8]) -> Result<(Fid, Attr), Errno> {
        let (fd, attr) = open_node(dir.as_fd(), name)?;
        let e = Entry {
            fd: Arc::new(fd),
            parent: Some((dir.clone(), name.to_vec())),
            kind: attr.kind,
            dev: attr.dev,
            ino: attr.ino,
        };
        Ok((self.insert(e)?, attr))
    }

    fn dir_fd(&self, fid: Fid) -> Result<Arc<OwnedFd>, Errno> {
        let e = self.entry(fid)?;
        if e.kind != FileType::Directory {
            return Err(Errno::NOTDIR);
        }
        Ok(e.fd.clone())
    }

    /// Reopen a fid for data access, checking it is still the same file.
    fn reopen(&self, fid: Fid, flags: OFlags) -> Result<OwnedFd, Errno> {
        let e = self.entry(fid)?;
        let fd = match e.kind {
            FileType::Directory => rustix::fs::openat(
                e.fd.as_fd(),
                ".",
                flags | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?,
            // The very inode the fid holds, whatever its names are now.
            FileType::Regular => reopen_fd(e.fd.as_fd(), flags)?,
            FileType::Symlink => return Err(Errno::LOOP),
            _ => return Err(Errno::NXIO),
        };
        let st = rustix::fs::fstat(&fd)?;
        if st.st_ino != e.ino || st.st_dev != e.dev {
            // Replaced on the host since it was walked.
            return Err(Errno::STALE);
        }
        if flags.intersects(OFlags::WRONLY | OFlags::RDWR | OFlags::TRUNC) {
            // A write by the sandbox must not leave a host file setuid to an id it
            // does not own (Linux clears the bit on a write by a task without
            // CAP_FSETID over the file; the writer here may have it): cleared
            // before the descriptor is handed out.
            self.drop_foreign_privs(fd.as_fd())?;
        }
        Ok(fd)
    }

    fn open_flags(&self, flags: u32) -> Result<OFlags, Errno> {
        let f = OFlags::from_bits_retain(flags);
        let allowed = OFlags::RWMODE | OFlags::APPEND | OFlags::TRUNC | OFlags::DIRECT | OFlags::NOATIME;
        let f = f & allowed;
        if self.readonly && (f.intersects(OFlags::WRONLY | OFlags::RDWR | OFlags::TRUNC | OFlags::APPEND)) {
            return Err(Errno::ROFS);
        }
        Ok(f)
    }

    /// The host uid for container uid `uid`: through the map, EINVAL for an id it
    /// lacks (as chown(2) to an unmapped id in a user namespace); as sent without one.
    fn uid_in(&self, uid: u32) -> Result<u32, Errno> {
        match &self.ids {
            Some(m) => m.uid_to_host(uid).ok_or(Errno::INVAL),
            None => Ok(uid),
        }
    }

    /// The host gid for container gid `gid` (as [`Server::uid_in`]).
    fn gid_in(&self, gid: u32) -> Result<u32, Errno> {
        match &self.ids {
            Some(m) => m.gid_to_host(gid).ok_or(Errno::INVAL),
            None => Ok(gid),
        }
    }

    /// Every attribute of a reply, host -> container (nothing without a map). The
    /// one place attributes leave the server: replies are built from host stats.
    fn reply_out(&self, r: &mut Reply) {
        let Some(map) = &self.ids else { return };
        let out = |a: &mut Attr| {
            a.uid = map.uid_from_host(a.uid).unwrap_or(OVERFLOW_ID);
            a.gid = map.gid_from_host(a.gid).unwrap_or(OVERFLOW_ID);
        };
        match r {
            Reply::Attached { attr, .. } | Reply::Attr(attr) | Reply::Node { attr, .. } => out(attr),
            Reply::Walked { entries, .. } => entries.iter_mut().for_each(|(_, a)| out(a)),
            Reply::Dents { entries, .. } => entries.iter_mut().for_each(|d| out(&mut d.attr)),
            Reply::Listed { attr, entries, .. } => {
                out(attr);
                entries.iter_mut().for_each(|d| out(&mut d.attr));
            }
            Reply::Opened | Reply::Unit | Reply::Data(_) | Reply::Names(_) | Reply::StatFs(_) => {}
        }
    }

    /// With a map: clear the setuid bit of a node whose host owner the map lacks,
    /// and the setgid bit of one whose host group it lacks.
    fn drop_foreign_privs(&self, fd: BorrowedFd<'_>) -> Result<(), Errno> {
        let Some(map) = &self.ids else { return Ok(()) };
        let a = stat_fd(fd)?;
        let mut mode = a.mode;
        if mode & S_ISUID != 0 && map.uid_from_host(a.uid).is_none() {
            mode &= !S_ISUID;
        }
        if mode & S_ISGID != 0 && map.gid_from_host(a.gid).is_none() {
            mode &= !S_ISGID;
        }
        if mode != a.mode && a.kind != FileType::Symlink {
            chmod_fd(fd, mode)?;
        }
        Ok(())
    }

    /// Track a node just made as `name` in `dir` (made without its setuid, setgid
    /// and sticky bits) as a new fid, give it its owner (`owner`: host ids), then
    /// those bits of `mode`: it is never setuid to the gofer's own id, and the chown
    /// does not clear bits the client decided. Without a map the host may refuse the
    /// chown (an unprivileged gofer): the node keeps the gofer's ids. With one the
    /// chown must succeed, else the node is removed again and the error returned,
    /// so it never stays owned by the gofer's host id.
    fn adopt_new(
        &mut self,
        dir: &Arc<OwnedFd>,
        name: &[u8],
        owner: (u32, u32),
        mode: u32,
    ) -> Result<(Fid, Attr), Errno> {
        let (fid, attr) = self.adopt(dir, name)?;
        let fd = self.entry(fid)?.fd.clone();
        let chown = rustix::fs::chownat(
            &fd,
            "",
            Some(rustix::process::Uid::from_raw(owner.0)),
            Some(rustix::process::Gid::from_raw(owner.1)),
            AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        );
        if let Err(e) = chown
            && self.ids.is_some()
        {
            self.fids.remove(&fid);
            let rm = if attr.kind == FileType::Directory { AtFlags::REMOVEDIR } else { AtFlags::empty() };
            let _ = rustix::fs::unlinkat(dir, name, rm);
            return Err(e);
        }
        if mode & 0o7000 != 0 && attr.kind != FileType::Symlink {
            let _ = chmod_fd(fd.as_fd(), mode & 0o7777);
        }
        self.drop_foreign_privs(fd.as_fd())?;
        Ok((fid, stat_fd(fd.as_fd())?))
    }

    /// Answer one request; an opened descriptor travels with the reply. Attributes
    /// in the reply are the container's view (see [`Server::map_ids`]).
    pub fn handle(&mut self, req: Request) -> (Result<Reply, Errno>, Option<OwnedFd>) {
        let (mut reply, fd) = self.answer(req);
        if let Ok(r) = &mut reply {
            self.reply_out(r);
        }
        (reply, fd)
    }

    fn answer(&mut self, req: Request) -> (Result<Reply, Errno>, Option<OwnedFd>) {
        if self.readonly && req.is_mutation() {
            return (Err(Errno::ROFS), None);
        }
        let writes = match &req {
            Request::Open { flags, .. } | Request::Openat { flags, .. } => {
                OFlags::from_bits_retain(*flags).intersects(OFlags::WRONLY | OFlags::RDWR | OFlags::TRUNC)
            }
            r => r.is_mutation(),
        };
        if writes {
            self.ahead.drop_ready();
        }
        match req {
            Request::Open { fid, flags } => match self.open_flags(flags).and_then(|f| self.reopen(fid, f)) {
                Ok(fd) => (Ok(Reply::Opened), Some(fd)),
                Err(e) => (Err(e), None),
            },
            Request::Openat { dir, name, flags } => {
                match self.open_flags(flags).and_then(|f| self.openat(dir, name, f)) {
                    Ok((reply, fd)) => (Ok(reply), Some(fd)),
                    Err(e) => (Err(e), None),
                }
            }
            Request::Create { dir, name, flags, mode, uid, gid } => {
                match self.create(dir, &name, flags, mode, uid, gid) {
                    Ok((reply, fd)) => (Ok(reply), Some(fd)),
                    Err(e) => (Err(e), None),
                }
            }
            other => (self.handle_plain(other), None),
        }
    }

    fn create(
        &mut self,
        dir: Fid,
        name: &[u8],
        flags: u32,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(Reply, OwnedFd), Errno> {
        let d = self.dir_fd(dir)?;
        let owner = (self.uid_in(uid)?, self.gid_in(gid)?);
        let flags = self.open_flags(flags)? | OFlags::CREATE | OFlags::EXCL;
        let fd = open_beneath(d.as_fd(), name, flags, mode & 0o777)?;
        let (fid, attr) = self.adopt_new(&d, name, owner, mode)?;
        Ok((Reply::Node { fid, attr }, fd))
    }

    fn handle_plain(&mut self, req: Request) -> Result<Reply, Errno> {
        match req {
            Request::Attach { version } => {
                let root = self.root.take().ok_or(Errno::ALREADY)?;
                let attr = stat_fd(root.fd.as_fd())?;
                let fid = self.insert(root)?;
                self.version = version.min(VERSION);
                Ok(Reply::Attached { version: self.version, root: fid, attr, readonly: self.readonly })
            }
            Request::Walk { dir, names } => self.walk(dir, &names),
            Request::Getattr { fid } => Ok(Reply::Attr(stat_fd(self.entry(fid)?.fd.as_fd())?)),
            Request::Getdents { dir, off } => {
                let d = self.dir_fd(dir)?;
                let (entries, eof) = list(&d, off, &mut self.dirbuf)?;
                if self.version >= 4 && off == 0 {
                    let e = self.entry(dir)?;
                    let (dev, ino) = (e.dev, e.ino);
                    self.ahead.queue(&d, dev, ino, &entries);
                }
                Ok(Reply::Dents { entries, eof })
            }
            Request::Listdir { dir, name, off } => self.listdir(dir, name, off),
            Request::Mknod { dir, name, mode, rdev, uid, gid } => {
                let d = self.dir_fd(dir)?;
                let kind = FileType::from_mode(mode).ok_or(Errno::INVAL)?;
                if matches!(kind, FileType::CharDevice | FileType::BlockDevice) {
                    // No device node reaches the host, whatever its numbers: one
                    // the sandbox could open there would reach the device itself.
                    return Err(Errno::PERM);
                }
                let owner = (self.uid_in(uid)?, self.gid_in(gid)?);
                // Made without setuid, setgid and sticky bits: adopt_new sets them
                // once the owner is final.
                let perm = Mode::from_raw_mode(mode & 0o777);
                match kind {
                    FileType::Directory => rustix::fs::mkdirat(&d, name.as_slice(), perm)?,
                    FileType::Regular => {
                        open_beneath(
                            d.as_fd(),
                            &name,
                            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY,
                            mode & 0o777,
                        )?;
                    }
                    FileType::Symlink => return Err(Errno::INVAL),
                    t => {
                        let ft = rustix::fs::FileType::from_raw_mode(t.mode_bits());
                        rustix::fs::mknodat(&d, name.as_slice(), ft, perm, rdev)?
                    }
                }
                let (fid, attr) = self.adopt_new(&d, &name, owner, mode)?;
                Ok(Reply::Node { fid, attr })
            }
            Request::Symlink { dir, name, target, uid, gid } => {
                let d = self.dir_fd(dir)?;
                let owner = (self.uid_in(uid)?, self.gid_in(gid)?);
                rustix::fs::symlinkat(target.as_slice(), &d, name.as_slice())?;
                let (fid, attr) = self.adopt_new(&d, &name, owner, 0)?;
                Ok(Reply::Node { fid, attr })
            }
            Request::Link { dir, name, target } => {
                let d = self.dir_fd(dir)?;
                let t = self.entry(target)?;
                if t.kind == FileType::Directory {
                    return Err(Errno::PERM);
                }
                // Link the inode the fid holds (not whatever its old name is now).
                rustix::fs::linkat(
                    proc_fds()?,
                    fd_name(t.fd.as_fd()).as_str(),
                    &d,
                    name.as_slice(),
                    AtFlags::SYMLINK_FOLLOW,
                )?;
                let (fid, attr) = self.adopt(&d, &name)?;
                if attr.ino != self.entry(target)?.ino {
                    return Err(Errno::STALE);
                }
                Ok(Reply::Node { fid, attr })
            }
            Request::Unlink { dir, name, rmdir } => {
                let d = self.dir_fd(dir)?;
                rustix::fs::unlinkat(
                    &d,
                    name.as_slice(),
                    if rmdir { AtFlags::REMOVEDIR } else { AtFlags::empty() },
                )?;
                Ok(Reply::Unit)
            }
            Request::Rename { olddir, oldname, newdir, newname, flags } => {
                let od = self.dir_fd(olddir)?;
                let nd = self.dir_fd(newdir)?;
                let fl = rustix::fs::RenameFlags::from_bits(flags).ok_or(Errno::INVAL)?;
                if fl.contains(rustix::fs::RenameFlags::WHITEOUT) {
                    // A whiteout is a 0/0 character device: no device node is made
                    // on the host (the overlays' whiteouts live in their own upper).
                    return Err(Errno::PERM);
                }
                rustix::fs::renameat_with(&od, oldname.as_slice(), &nd, newname.as_slice(), fl)?;
                // Fids keep their descriptors; their remembered names are refreshed
                // the next time the client walks to them.
                for e in self.fids.values_mut() {
                    if let Some((p, n)) = &e.parent
                        && Arc::ptr_eq(p, &od)
                        && *n == oldname
                    {
                        e.parent = Some((nd.clone(), newname.clone()));
                    }
                }
                Ok(Reply::Unit)
            }
            Request::Setattr { fid, valid, mode, uid, gid, size, atime, mtime } => {
                self.setattr(fid, valid, mode, uid, gid, size, atime, mtime)
            }
            Request::Readlink { fid } => {
                let e = self.entry(fid)?;
                if e.kind != FileType::Symlink {
                    return Err(Errno::INVAL);
                }
                let t = rustix::fs::readlinkat(e.fd.as_fd(), "", Vec::new())?;
                Ok(Reply::Data(t.into_bytes()))
            }
            Request::Statfs { fid } => {
                let s = rustix::fs::fstatfs(self.entry(fid)?.fd.as_fd())?;
                Ok(Reply::StatFs(StatFs {
                    bsize: s.f_bsize as u32,
                    blocks: s.f_blocks,
                    bfree: s.f_bfree,
                    bavail: s.f_bavail,
                    files: s.f_files,
                    ffree: s.f_ffree,
                    namelen: s.f_namelen as u32,
                    fs_type: s.f_type as u64,
                }))
            }
            Request::Getxattr { fid, name } => {
                let fd = self.reopen(fid, OFlags::RDONLY).map_err(xattr_errno)?;
                let mut buf = vec![0u8; crate::proto::MAX_XATTR_VALUE];
                let n = rustix::fs::fgetxattr(&fd, name.as_slice(), &mut buf[..])?;
                buf.truncate(n);
                Ok(Reply::Data(buf))
            }
            Request::Setxattr { fid, name, value, flags } => {
                let fd = self.reopen(fid, OFlags::RDONLY).map_err(xattr_errno)?;
                let fl = rustix::fs::XattrFlags::from_bits(flags).ok_or(Errno::INVAL)?;
                rustix::fs::fsetxattr(&fd, name.as_slice(), &value, fl)?;
                Ok(Reply::Unit)
            }
            Request::Listxattr { fid } => {
                let fd = match self.reopen(fid, OFlags::RDONLY) {
                    Ok(fd) => fd,
                    Err(_) => return Ok(Reply::Names(Vec::new())),
                };
                let mut buf = vec![0u8; crate::proto::MAX_XATTR_VALUE];
                let n = rustix::fs::flistxattr(&fd, &mut buf[..])?;
                let names =
                    buf[..n].split(|&b| b == 0).filter(|s| !s.is_empty()).map(<[u8]>::to_vec).collect();
                Ok(Reply::Names(names))
            }
            Request::Removexattr { fid, name } => {
                let fd = self.reopen(fid, OFlags::RDONLY).map_err(xattr_errno)?;
                rustix::fs::fremovexattr(&fd, name.as_slice())?;
                Ok(Reply::Unit)
            }
            Request::Fsync { fid, datasync } => {
                let fd = self.reopen(fid, OFlags::RDONLY)?;
                if datasync {
                    rustix::fs::fdatasync(&fd)?
                } else {
                    rustix::fs::fsync(&fd)?
                }
                Ok(Reply::Unit)
            }
            Request::Fallocate { fid, mode, off, len } => {
                let fd = self.reopen(fid, OFlags::WRONLY)?;
                let fl = rustix::fs::FallocateFlags::from_bits(mode).ok_or(Errno::INVAL)?;
                rustix::fs::fallocate(&fd, fl, off, len)?;
                Ok(Reply::Unit)
            }
            Request::Close { fids } => {
                for f in fids {
                    self.fids.remove(&f);
                }
                Ok(Reply::Unit)
            }
            Request::Open { .. } | Request::Openat { .. } | Request::Create { .. } => Err(Errno::INVAL),
        }
    }

    fn walk(&mut self, dir: Fid, names: &[Vec<u8>]) -> Result<Reply, Errno> {
        let mut cur = self.dir_fd(dir)?;
        let mut entries = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let fd = match open_beneath(cur.as_fd(), name, OFlags::PATH, 0) {
                Ok(fd) => fd,
                Err(e) if i == 0 && e != Errno::NOENT => return Err(e),
                Err(e) => {
                    return Ok(Reply::Walked {
                        end: WalkEnd::Stopped { index: i as u16, errno: errno(e) },
                        entries,
                    });
                }
            };
            let attr = stat_fd(fd.as_fd())?;
            let fd = Arc::new(fd);
            let e = Entry {
                fd: fd.clone(),
                parent: Some((cur.clone(), name.clone())),
                kind: attr.kind,
                dev: attr.dev,
                ino: attr.ino,
            };
            let fid = self.insert(e)?;
            entries.push((fid, attr));
            match attr.kind {
                FileType::Symlink => {
                    return Ok(Reply::Walked { end: WalkEnd::Symlink { index: i as u16 }, entries });
                }
                FileType::Directory => cur = fd,
                _ if i + 1 < names.len() => {
                    return Ok(Reply::Walked {
                        end: WalkEnd::Stopped { index: i as u16 + 1, errno: errno(Errno::NOTDIR) },
                        entries,
                    });
                }
                _ => {}
            }
        }
        Ok(Reply::Walked { end: WalkEnd::Complete, entries })
    }

    /// Walk `name` from `dir` to a regular file, give it a fid and open it: the
    /// same checks as a `Walk` then an `Open` (beneath the directory, the final
    /// component not followed; a symlink is ELOOP, anything but a regular file
    /// ENXIO or EISDIR).
    fn openat(&mut self, dir: Fid, name: Vec<u8>, flags: OFlags) -> Result<(Reply, OwnedFd), Errno> {
        if self.version < 3 {
            return Err(Errno::NOSYS);
        }
        let (fid, attr) = self.adopt(&self.dir_fd(dir)?, &name)?;
        let opened = match attr.kind {
            FileType::Regular => self.reopen(fid, flags),
            FileType::Directory => Err(Errno::ISDIR),
            FileType::Symlink => Err(Errno::LOOP),
            _ => Err(Errno::NXIO),
        };
        match opened {
            Ok(data) => Ok((Reply::Node { fid, attr }, data)),
            Err(e) => {
                self.fids.remove(&fid);
                Err(e)
            }
        }
    }

    /// Walk `name` from `dir` to a directory and list it.
    fn listdir(&mut self, dir: Fid, name: Vec<u8>, off: u64) -> Result<Reply, Errno> {
        if self.version < 2 {
            return Err(Errno::NOSYS);
        }
        let parent = self.dir_fd(dir)?;
        let ahead = self.version >= 4 && off == 0;
        if ahead {
            let e = self.entry(dir)?;
            if let Some(m) = self.ahead.take(e.dev, e.ino, &name) {
                let fd = Arc::new(m.fd);
                let entry = Entry {
                    fd: fd.clone(),
                    parent: Some((m.parent, name)),
                    kind: FileType::Directory,
                    dev: m.attr.dev,
                    ino: m.attr.ino,
                };
                let fid = self.insert(entry)?;
                self.ahead.queue(&fd, m.attr.dev, m.attr.ino, &m.entries);
                return Ok(Reply::Listed { fid, attr: m.attr, entries: m.entries, eof: m.eof, ahead: true });
            }
        }
        let (fid, attr) = self.adopt(&parent, &name)?;
        let listed = match attr.kind {
            FileType::Directory => self.entry(fid).map(|e| e.fd.clone()).and_then(|fd| {
                let (entries, eof) = list(&fd, off, &mut self.dirbuf)?;
                if ahead {
                    self.ahead.queue(&fd, attr.dev, attr.ino, &entries);
                }
                Ok((entries, eof))
            }),
            _ => Err(Errno::NOTDIR),
        };
        match listed {
            Ok((entries, eof)) => Ok(Reply::Listed { fid, attr, entries, eof, ahead: false }),
            Err(e) => {
                self.fids.remove(&fid);
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &self,
        fid: Fid,
        valid: u32,
        mode: u32,
        uid: u32,
        gid: u32,
        size: u64,
        atime: Timespec,
        mtime: Timespec,
    ) -> Result<Reply, Errno> {
        use setattr_valid as v;
        let e = self.entry(fid)?;
        // What the map decides is checked before anything changes.
        let uid = if valid & v::UID != 0 { Some(self.uid_in(uid)?) } else { None };
        let gid = if valid & v::GID != 0 { Some(self.gid_in(gid)?) } else { None };
        let mut mode = mode & 0o7777;
        if let Some(map) = &self.ids
            && valid & v::MODE != 0
            && mode & (S_ISUID | S_ISGID) != 0
        {
            let cur = stat_fd(e.fd.as_fd())?;
            // setuid to a host id the sandbox does not own: refused, as Linux
            // refuses chmod of a file whose owner is not mapped.
            if mode & S_ISUID != 0 && map.uid_from_host(cur.uid).is_none() {
                return Err(Errno::PERM);
            }
            // setgid to a host group it does not own: silently dropped, as Linux
            // does for a chmod by a task outside the group without CAP_FSETID.
            if mode & S_ISGID != 0 && map.gid_from_host(cur.gid).is_none() {
                mode &= !S_ISGID;
            }
        }
        if valid & v::SIZE != 0 {
            let fd = self.reopen(fid, OFlags::WRONLY)?;
            rustix::fs::ftruncate(&fd, size)?;
        }
        if valid & v::MODE != 0 {
            let m = Mode::from_raw_mode(mode);
            match e.kind {
                FileType::Directory | FileType::Regular => {
                    rustix::fs::fchmod(self.reopen(fid, OFlags::RDONLY)?, m)?
                }
                FileType::Symlink => return Err(Errno::OPNOTSUPP),
                _ => chmod_fd(e.fd.as_fd(), mode)?,
            }
        }
        // chown(-1, -1) on the host: changes nothing but ctime (and, as any chown,
        // clears setuid of a non-directory).
        if uid.is_some() || gid.is_some() || valid & v::CTIME != 0 {
            let u = uid.map(rustix::process::Uid::from_raw);
            let g = gid.map(rustix::process::Gid::from_raw);
            // The host clears setuid (and setgid with group execute) of a
            // non-directory it chowns, as Linux does for any caller.
            rustix::fs::chownat(e.fd.as_fd(), "", u, g, AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW)?;
            // A bit the chown kept (setgid without group execute) whose owner is
            // now outside the map goes too.
            self.drop_foreign_privs(e.fd.as_fd())?;
        }
        if valid & (v::ATIME | v::MTIME | v::ATIME_NOW | v::MTIME_NOW) != 0 {
            let t = |set: u32, now: u32, t: Timespec| {
                if valid & now != 0 {
                    rustix::fs::Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_NOW }
                } else if valid & set != 0 {
                    rustix::fs::Timespec { tv_sec: t.sec, tv_nsec: t.nsec as _ }
                } else {
                    rustix::fs::Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT }
                }
            };
            let times = rustix::fs::Timestamps {
                last_access: t(v::ATIME, v::ATIME_NOW, atime),
                last_modification: t(v::MTIME, v::MTIME_NOW, mtime),
            };
            rustix::fs::utimensat(e.fd.as_fd(), "", &times, AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW)?;
        }
        Ok(Reply::Attr(stat_fd(self.entry(fid)?.fd.as_fd())?))
    }
}

/// Entries of directory `d` after cookie `off`, with attributes, as many as one reply
/// holds (`buf`: the getdents buffer, kept between calls).
fn list(d: &OwnedFd, off: u64, buf: &mut Vec<MaybeUninit<u8>>) -> Result<(Vec<Dent>, bool), Errno> {
    let fd = rustix::fs::openat(
        d.as_fd(),
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if off != 0 {
        rustix::fs::seek(&fd, rustix::fs::SeekFrom::Start(off))?;
    }
    if buf.is_empty() {
        buf.resize(32 * 1024, MaybeUninit::uninit());
    }
    let mut raw = rustix::fs::RawDir::new(&fd, buf);
    let mut entries = Vec::with_capacity(64);
    let mut size = LISTED_HEADER;
    let mut eof = true;
    while let Some(ent) = raw.next() {
        let ent = ent?;
        let cname = ent.file_name();
        let name = cname.to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        // Entries whose names the protocol cannot carry are skipped: none exist on
        // Linux, but a hostile host filesystem must not break the client.
        if !crate::proto::valid_name(name) {
            continue;
        }
        // The C string as getdents returned it: no copy to add a NUL.
        // NO_AUTOMOUNT, as ls: listing a directory must not mount what an
        // automount point in it stands for.
        let x = match rustix::fs::statx(
            &fd,
            cname,
            AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT,
            StatxFlags::BASIC_STATS | StatxFlags::BTIME,
        ) {
            Ok(x) => x,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e),
        };
        let attr = statx_attr(&x)?;
        size += dent_size(name.len());
        entries.push(Dent { name: name.into(), off: ent.next_entry_cookie(), attr });
        if size + dent_size(MAX_NAME) > MAX_MESSAGE || entries.len() >= MAX_DENTS {
            eof = false;
            break;
        }
    }
    Ok((entries, eof))
}

/// xattrs live on regular files and directories here; others have none to read and
/// refuse changes, like Linux's user namespace.
fn xattr_errno(e: Errno) -> Errno {
    if e == Errno::NXIO || e == Errno::LOOP { Errno::OPNOTSUPP } else { e }
}
