//! sandfs FUSE front end: serves a [`MountNamespace`] to the kernel, so real,
//! unmodified programs run on it.
//!
//! - **Mount**: fuser's pure-Rust mount (mount(2) of `fuse` with an open
//!   `/dev/fuse`; no libfuse, no fusermount: sandfs runs as root), `allow_other`
//!   (a sandbox's programs run as many users), `default_permissions`: the kernel
//!   checks permissions itself, with the caller's real credentials (groups and
//!   capabilities included) against the attributes it caches, so a cached path is
//!   as checked as an uncached one; the vfs checks again with the credentials of
//!   [`creds`]. `dev` and `suid` are on by default (a container root has device
//!   nodes and setuid programs).
//! - **Node ids** ([`nodes`]): derived from the location, stable for a file's life;
//!   lookup counts and FORGET / BATCH_FORGET; FUSE_ROOT_ID is the namespace root.
//! - **Threads**: `Options::threads` event loops, each on its own cloned `/dev/fuse`
//!   descriptor (FUSE_DEV_IOC_CLONE).
//! - **Caching** from the file-access mode ([`CachePolicy`]): `exclusive` gives the
//!   kernel hour-long entry and attribute lifetimes, keeps page cache across opens
//!   (FOPEN_KEEP_CACHE), caches directory listings and symlink targets, and answers
//!   no OPENDIR (the kernel then skips OPENDIR/RELEASEDIR); `shared` gives 100 ms
//!   lifetimes and drops page cache on open; a mount whose filesystem says others
//!   write it (`Filesystem::revalidate_after`) gets the shorter lifetime and no kept
//!   pages whatever the policy. An open of a host-backed file whose kernel cache
//!   (size, mtime, ctime last told) is of another state drops that cache before it
//!   is answered: an open never reads one state under another's size. No open is
//!   FLUSHed (nothing is held back for a close to push).
//! - **Passthrough** (FUSE_PASSTHROUGH, FUSE_DEV_IOC_BACKING_OPEN): reads and writes
//!   of a file never come here when the kernel is handed a descriptor for it: a
//!   tmpfs file's memfd (an overlay's upper files included; writable opens too), or
//!   the host descriptor of a gofer-backed file opened read-only on a read-only
//!   mount. Files still in an overlay's lower layer are not passed through (a
//!   copy-up would change the descriptor, which the kernel refuses while the file is
//!   open). When the kernel refuses, opens fall back to ordinary reads and writes;
//!   [`Status`] tells which happened.

pub mod creds;
mod fs;
mod ioctl;
pub mod nodes;

use fuser::{Config, MountOption, Session, SessionACL, SessionUnmounter};
use parking_lot::Mutex;
use sandfs_vfs::MountNamespace;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

/// Who else may change the files behind the namespace (the file-access mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CachePolicy {
    /// sandfs is the only writer: the kernel caches names, attributes and data long.
    #[default]
    Exclusive,
    /// The host may change files: the kernel revalidates after 100 ms.
    Shared,
}

impl std::str::FromStr for CachePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exclusive" => Ok(CachePolicy::Exclusive),
            "shared" => Ok(CachePolicy::Shared),
            _ => Err(format!("unknown file access mode {s:?} (exclusive or shared)")),
        }
    }
}

/// How to serve.
#[derive(Clone, Debug)]
pub struct Options {
    /// Cache policy.
    pub cache: CachePolicy,
    /// Event-loop threads (each with its own cloned /dev/fuse descriptor).
    pub threads: usize,
    /// Try FUSE passthrough for host-backed files on read-only mounts.
    pub passthrough: bool,
    /// The source name shown in /proc/self/mountinfo.
    pub fsname: String,
    /// Allow device nodes (otherwise the kernel mount is `nodev`).
    pub dev: bool,
    /// Honour setuid/setgid bits (otherwise the kernel mount is `nosuid`).
    pub suid: bool,
    /// Mount read-only in the kernel as well.
    pub read_only: bool,
    /// The id map of the user namespace the mount lives in (the kernel then sends
    /// the namespace's uids and gids; supplementary groups are translated with it).
    pub ids: Option<sandfs_vfs::IdMap>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cache: CachePolicy::Exclusive,
            threads: 4,
            passthrough: true,
            fsname: "sandfs".into(),
            dev: true,
            suid: true,
            read_only: false,
            ids: None,
        }
    }
}

/// What a running server reports.
#[derive(Debug, Default)]
pub struct Status {
    /// The kernel offered FUSE_PASSTHROUGH at init and it was enabled.
    passthrough_kernel: AtomicBool,
    /// Set after the kernel refused a backing file: no more attempts.
    passthrough_off: AtomicBool,
    passthrough_accepted: AtomicU64,
    passthrough_refused: AtomicU64,
    passthrough_error: Mutex<Option<String>>,
    nodes: OnceLock<Arc<nodes::Nodes>>,
}

impl Status {
    /// How many node ids the kernel holds (the root included).
    pub fn nodes_held(&self) -> usize {
        self.nodes.get().map_or(0, |n| n.len())
    }

    /// Whether the kernel enabled passthrough at init.
    pub fn passthrough_offered(&self) -> bool {
        self.passthrough_kernel.load(Ordering::Relaxed)
    }

    /// Backing files the kernel accepted.
    pub fn passthrough_accepted(&self) -> u64 {
        self.passthrough_accepted.load(Ordering::Relaxed)
    }

    /// Backing files the kernel refused (then passthrough is off for this mount).
    pub fn passthrough_refused(&self) -> u64 {
        self.passthrough_refused.load(Ordering::Relaxed)
    }

    /// The kernel's answer to the first refused backing file.
    pub fn passthrough_error(&self) -> Option<String> {
        self.passthrough_error.lock().clone()
    }

    fn passthrough_enabled(&self) -> bool {
        self.passthrough_kernel.load(Ordering::Relaxed) && !self.passthrough_off.load(Ordering::Relaxed)
    }

    fn refuse_passthrough(&self, e: &io::Error) {
        self.passthrough_refused.fetch_add(1, Ordering::Relaxed);
        if !self.passthrough_off.swap(true, Ordering::Relaxed) {
            tracing::warn!("FUSE passthrough refused by the kernel ({e}); using ordinary reads");
            *self.passthrough_error.lock() = Some(e.to_string());
        }
    }
}

/// A mounted, not yet serving, FUSE view of a namespace.
pub struct Server {
    session: Session<fs::SandFs>,
    status: Arc<Status>,
    mountpoint: PathBuf,
}

impl Server {
    /// Mount `ns` at `mountpoint` (the kernel's INIT is answered before this returns,
    /// so the mount is live; requests are served once [`Server::run`] is called).
    pub fn mount(ns: Arc<MountNamespace>, mountpoint: &Path, opts: &Options) -> io::Result<Server> {
        let status = Arc::new(Status::default());
        let notifier = Arc::new(OnceLock::new());
        let fs = fs::SandFs::new(ns, opts.clone(), status.clone(), notifier.clone());
        let mut config = Config::default();
        let mut mo = vec![
            MountOption::FSName(opts.fsname.clone()),
            MountOption::Subtype("sandfs".into()),
            MountOption::DefaultPermissions,
        ];
        mo.push(if opts.dev { MountOption::Dev } else { MountOption::NoDev });
        mo.push(if opts.suid { MountOption::Suid } else { MountOption::NoSuid });
        mo.push(if opts.read_only { MountOption::RO } else { MountOption::RW });
        config.mount_options = mo;
        config.acl = SessionACL::All;
        config.n_threads = Some(opts.threads.max(1));
        config.clone_fd = true;
        let mountpoint = mountpoint.canonicalize()?;
        let session = Session::new(fs, &mountpoint, &config)?;
        if let Err(e) = raise_readahead(&mountpoint) {
            tracing::debug!("readahead of {} stays the kernel's: {e}", mountpoint.display());
        }
        let _ = notifier.set(session.notifier());
        Ok(Server { session, status, mountpoint })
    }

    /// Serve `ns` on `fd`, a /dev/fuse descriptor another process mounted at
    /// `mountpoint` (in its own mount namespace: a user namespace's FUSE mount is
    /// made by a process inside it). The kernel's INIT is answered before this
    /// returns. The mount options were chosen by the mounter ([`mount_data`]).
    pub fn from_fd(
        ns: Arc<MountNamespace>,
        fd: std::os::fd::OwnedFd,
        mountpoint: &Path,
        opts: &Options,
    ) -> io::Result<Server> {
        let status = Arc::new(Status::default());
        let notifier = Arc::new(OnceLock::new());
        let fs = fs::SandFs::new(ns, opts.clone(), status.clone(), notifier.clone());
        let mut config = Config::default();
        config.acl = SessionACL::All;
        config.n_threads = Some(opts.threads.max(1));
        config.clone_fd = true;
        let session = Session::from_fd(fs, fd, SessionACL::All, config)?;
        let _ = notifier.set(session.notifier());
        Ok(Server { session, status, mountpoint: mountpoint.to_path_buf() })
    }

    /// What the server reports (passthrough).
    pub fn status(&self) -> Arc<Status> {
        self.status.clone()
    }

    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Something another thread can unmount with (ending [`Server::run`]).
    pub fn unmounter(&mut self) -> Unmounter {
        Unmounter { inner: Mutex::new(Some(self.session.unmount_callable())), path: self.mountpoint.clone() }
    }

    /// Serve until unmounted (by [`Unmounter::unmount`] or an external `umount`).
    pub fn run(self) -> io::Result<()> {
        self.session.run()
    }

    /// Serve on a background thread.
    pub fn spawn(mut self) -> io::Result<Background> {
        let unmounter = self.unmounter();
        let status = self.status.clone();
        let path = self.mountpoint.clone();
        let thread = std::thread::Builder::new().name("sandfs-fuse".into()).spawn(move || self.run())?;
        Ok(Background { thread: Some(thread), unmounter, status, path })
    }
}

/// The data string of a FUSE mount(2) serving on descriptor `fd` with `opts`, for a
/// mounter in another process (see [`Server::from_fd`]); `uid`/`gid` own the mount.
pub fn mount_data(fd: i32, uid: u32, gid: u32) -> String {
    format!("fd={fd},rootmode=40000,user_id={uid},group_id={gid},default_permissions,allow_other")
}

/// Readahead asked of the kernel for a sandfs mount, in KiB: one request's worth
/// (the 1 MiB `max_write` negotiated at init also raises a request's pages to 256).
pub const READAHEAD_KIB: u32 = 1024;

/// Raise the kernel's readahead of the FUSE mount whose root is at `root` to
/// [`READAHEAD_KIB`]. The kernel starts a FUSE mount with 128 KiB, so a sequential
/// read of a file that is not passed through (a lower file under the overlay) costs
/// a request per 128 KiB. The mount's device comes from a statx that asks for no
/// fresh attributes (AT_STATX_DONT_SYNC: no request, so the mount need not be
/// served yet). Only a host root may write the mount's /sys/class/bdi entry:
/// otherwise the default stays (a tuning, not a setting a run depends on).
pub fn raise_readahead(root: &Path) -> io::Result<()> {
    use rustix::fs::{AtFlags, CWD, StatxFlags, statx};
    let x = statx(CWD, root, AtFlags::STATX_DONT_SYNC, StatxFlags::empty())?;
    let bdi = format!("/sys/class/bdi/{}:{}/read_ahead_kb", x.stx_dev_major, x.stx_dev_minor);
    std::fs::write(bdi, READAHEAD_KIB.to_string())
}

/// Unmounts a server's mount from any thread.
pub struct Unmounter {
    inner: Mutex<Option<SessionUnmounter>>,
    path: PathBuf,
}

impl Unmounter {
    /// Unmount; when the mount is busy, detach it (MNT_DETACH): it goes away, and
    /// the server ends, when its last user does.
    pub fn unmount(&self) -> io::Result<()> {
        let taken = self.inner.lock().take();
        if let Some(mut u) = taken
            && u.unmount().is_ok()
        {
            return Ok(());
        }
        match rustix::mount::unmount(&self.path, rustix::mount::UnmountFlags::DETACH) {
            Ok(()) => Ok(()),
            // Already gone (an external umount).
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOENT => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// A server running on its own thread; unmounted (detached) and joined when dropped.
pub struct Background {
    thread: Option<JoinHandle<io::Result<()>>>,
    unmounter: Unmounter,
    status: Arc<Status>,
    path: PathBuf,
}

impl Background {
    /// What the server reports.
    pub fn status(&self) -> &Arc<Status> {
        &self.status
    }

    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.path
    }

    /// Unmount and wait for the server to end.
    pub fn unmount(mut self) -> io::Result<()> {
        self.unmounter.unmount()?;
        self.join()
    }

    /// Wait for the server to end (after an external unmount).
    pub fn join(&mut self) -> io::Result<()> {
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| io::Error::other("FUSE server thread panicked"))?,
            None => Ok(()),
        }
    }

    /// Whether the serving thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.unmounter.unmount();
        let _ = self.join();
    }
}
