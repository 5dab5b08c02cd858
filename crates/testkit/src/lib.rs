//! The kernel-oracle differential harness: generated operation sequences run on a
//! sandfs mount namespace and, in the same test, on a kernel filesystem, under three
//! credentials (root and two
//! unprivileged users whose groups overlap), over trees with sticky and setgid
//! directories, symlinks and hard links. Every outcome (value or errno) is compared,
//! then the whole trees (type, mode, nlink, uid, gid, size, contents, targets,
//! xattrs). A mismatch fails with the shrunk sequence.
//!
//! The kernel side runs in a worker thread with its own mount namespace and
//! filesystem context (unshare CLONE_NEWNS|CLONE_FS), chrooted into a fresh kernel
//! tmpfs, switching its per-thread uid/gid/groups per operation. It needs root; without
//! it the test prints why it skips. `PROPTEST_CASES` sets the case count (default 1000).
//!
//! Deliberate differences, excluded here and named:
//! - Data operations (read, write, truncate, open) on FIFOs, sockets and device nodes:
//!   those are the kernel's (pipes, devices); FUSE never sends them to sandfs.
//! - Timestamps are not compared (they are taken at different instants); st_blocks
//!   and st_ino are not compared (allocation and numbering are the filesystem's).

pub mod alloc;
pub mod devfuse;
pub mod probe;

use proptest::prelude::*;
use rustix::fs::{AtFlags, CWD, Mode, OFlags};
use rustix::io::Errno;
use sandfs_vfs::ops::Make;
use sandfs_vfs::{
    Creds, FallocFlags, FileType, MountNamespace, OpenFlags, RenameFlags, SetAttr, TimeSet, Timespec,
    XattrFlags,
};
use std::collections::BTreeMap;
use std::sync::mpsc;

const NAMES: &[&str] = &["a", "b", "c", "s", "g", "f", "l"];
const WHO: &[(u32, u32, &[u32])] = &[(0, 0, &[]), (1000, 1000, &[1000, 1002]), (1001, 1001, &[1001, 1000])];
const MODES: &[u32] =
    &[0o755, 0o777, 0o700, 0o644, 0o600, 0o000, 0o1777, 0o2775, 0o2777, 0o4755, 0o6755, 0o2745, 0o711, 0o070];
const XNAMES: &[&str] = &["user.a", "user.b", "trusted.t"];
const XVALS: &[&[u8]] = &[b"", b"x", b"yy"];
const IDS: &[Option<u32>] = &[None, Some(0), Some(1000), Some(1001), Some(1002)];

#[derive(Clone, Debug)]
enum Op {
    Mkdir(String, u32),
    Create(String, u32),
    Mknod(String, u8, u32),
    Symlink(String, String),
    Link(String, String),
    Unlink(String),
    Rmdir(String),
    Rename(String, String, u8),
    Chmod(String, u32),
    Chown(String, Option<u32>, Option<u32>, bool),
    Truncate(String, u64),
    Write(String, u64, u8, u8, bool),
    Read(String),
    Stat(String, bool),
    List(String),
    SetX(String, u8, u8, u8),
    GetX(String, u8),
    RmX(String, u8),
    ListX(String),
    Utimes(String, u8),
    Open(String, u8),
    Access(String, u8),
    Fallocate(String, u8, u64, u64),
}

#[derive(Clone, Debug)]
struct Step {
    who: usize,
    op: Op,
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof![12 => prop::sample::select(NAMES), 1 => Just("..")], 1..=2)
        .prop_map(|v| v.join("/"))
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => path(),
        1 => path().prop_map(|p| format!("/{p}")),
        1 => path().prop_map(|p| format!("../{p}")),
        1 => Just("../../..".to_string()),
        1 => path().prop_map(|p| format!("{p}/")),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let mode = prop::sample::select(MODES);
    prop_oneof![
        4 => (path(), mode.clone()).prop_map(|(p, m)| Op::Mkdir(p, m)),
        4 => (path(), mode.clone()).prop_map(|(p, m)| Op::Create(p, m)),
        1 => (path(), 0u8..4, mode.clone()).prop_map(|(p, k, m)| Op::Mknod(p, k, m)),
        2 => (target(), path()).prop_map(|(t, p)| Op::Symlink(t, p)),
        2 => (path(), path()).prop_map(|(a, b)| Op::Link(a, b)),
        2 => path().prop_map(Op::Unlink),
        2 => path().prop_map(Op::Rmdir),
        3 => (path(), path(), 0u8..4).prop_map(|(a, b, f)| Op::Rename(a, b, f)),
        3 => (path(), mode.clone()).prop_map(|(p, m)| Op::Chmod(p, m)),
        2 => (path(), prop::sample::select(IDS), prop::sample::select(IDS), any::<bool>())
            .prop_filter("chown -1 -1", |(_, u, g, _)| u.is_some() || g.is_some())
            .prop_map(|(p, u, g, n)| Op::Chown(p, u, g, n)),
        1 => (path(), 0u64..10000).prop_map(|(p, s)| Op::Truncate(p, s)),
        3 => (path(), 0u64..9000, 0u8..64, any::<u8>(), any::<bool>())
            .prop_map(|(p, o, l, b, a)| Op::Write(p, o, l, b, a)),
        2 => path().prop_map(Op::Read),
        2 => (path(), any::<bool>()).prop_map(|(p, f)| Op::Stat(p, f)),
        2 => path().prop_map(Op::List),
        2 => (path(), 0u8..3, 0u8..3, 0u8..3).prop_map(|(p, n, v, f)| Op::SetX(p, n, v, f)),
        1 => (path(), 0u8..3).prop_map(|(p, n)| Op::GetX(p, n)),
        1 => (path(), 0u8..3).prop_map(|(p, n)| Op::RmX(p, n)),
        1 => path().prop_map(Op::ListX),
        1 => (path(), 0u8..5).prop_map(|(p, v)| Op::Utimes(p, v)),
        2 => (path(), 0u8..6).prop_map(|(p, v)| Op::Open(p, v)),
        1 => (path(), 0u8..8).prop_map(|(p, m)| Op::Access(p, m)),
        2 => (path(), 0u8..4, 0u64..12000, 1u64..9000).prop_map(|(p, m, o, l)| Op::Fallocate(p, m, o, l)),
    ]
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    // Root acts more often so that trees get built; users then poke at them.
    let step = (prop_oneof![3 => Just(0usize), 2 => Just(1usize), 2 => Just(2usize)], op())
        .prop_map(|(who, op)| Step { who, op });
    prop::collection::vec(step, 1..60)
}

/// A fixed start for every sequence, so generated operations find something to act
/// on: a world-writable dir, a sticky dir and a setgid dir with files of several
/// owners, a symlink and a hard link.
fn prelude() -> Vec<Step> {
    let s = |who, op| Step { who, op };
    let p = |x: &str| x.to_string();
    vec![
        s(0, Op::Mkdir(p("a"), 0o777)),
        s(0, Op::Mkdir(p("s"), 0o1777)),
        s(0, Op::Mkdir(p("g"), 0o2777)),
        s(0, Op::Chown(p("g"), None, Some(1002), false)),
        s(0, Op::Chmod(p("g"), 0o2777)),
        s(0, Op::Create(p("c"), 0o666)),
        s(0, Op::Create(p("a/f"), 0o644)),
        s(0, Op::Write(p("c"), 0, 10, b'c', false)),
        s(1, Op::Create(p("s/f"), 0o664)),
        s(1, Op::Mkdir(p("s/b"), 0o775)),
        s(2, Op::Create(p("g/f"), 0o2755)),
        s(2, Op::Mkdir(p("g/b"), 0o755)),
        s(1, Op::Create(p("a/c"), 0o4755)),
        s(0, Op::Symlink(p("a"), p("l"))),
        s(0, Op::Link(p("c"), p("a/b"))),
        s(1, Op::SetX(p("s/f"), 0, 1, 0)),
    ]
}

/// The attributes that must agree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    kind: u32,
    mode: u32,
    nlink: u64,
    uid: u32,
    gid: u32,
    size: u64,
    rdev: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Val {
    Unit,
    Num(u64),
    Attr(View),
    Bytes(Vec<u8>),
    Names(Vec<Vec<u8>>),
    Skipped,
}

type Outcome = Result<Val, i32>;

fn errno(e: Errno) -> i32 {
    e.raw_os_error()
}

// ---------------------------------------------------------------- kernel side

fn kview(st: &rustix::fs::Stat) -> View {
    let kind = st.st_mode & 0o170000;
    View {
        kind,
        mode: st.st_mode & 0o7777,
        nlink: st.st_nlink,
        uid: st.st_uid,
        gid: st.st_gid,
        size: st.st_size as u64,
        rdev: if kind == 0o020000 || kind == 0o060000 { st.st_rdev } else { 0 },
    }
}

/// Switch the calling thread back to root credentials.
pub fn as_root() {
    use rustix::process::{Gid, Uid};
    let _ = rustix::thread::set_thread_res_uid(Uid::ROOT, Uid::ROOT, Uid::ROOT);
    let _ = rustix::thread::set_thread_res_gid(Gid::ROOT, Gid::ROOT, Gid::ROOT);
    let _ = rustix::thread::set_thread_groups(&[]);
}

fn become_who(who: usize) {
    use rustix::process::{Gid, Uid};
    as_root();
    if who == 0 {
        return;
    }
    let (uid, gid, groups) = WHO[who];
    let groups: Vec<Gid> = groups.iter().map(|&g| Gid::from_raw(g)).collect();
    rustix::thread::set_thread_groups(&groups).expect("setgroups");
    rustix::thread::set_thread_res_gid(Gid::ROOT, Gid::from_raw(gid), Gid::ROOT).expect("setresgid");
    rustix::thread::set_thread_res_uid(Uid::ROOT, Uid::from_raw(uid), Uid::ROOT).expect("setresuid");
}

fn kopen(p: &str, flags: OFlags, mode: u32) -> Result<rustix::fd::OwnedFd, i32> {
    rustix::fs::open(p, flags | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::from_raw_mode(mode)).map_err(errno)
}

/// Whether the kernel path resolves (as root, following links) to a FIFO, socket or
/// device: data operations on those are out of scope (see the module comment).
fn kspecial(p: &str) -> bool {
    match rustix::fs::stat(p) {
        Ok(st) => !matches!(st.st_mode & 0o170000, 0o100000 | 0o040000),
        Err(_) => false,
    }
}

fn kread_all(fd: &rustix::fd::OwnedFd) -> Result<Vec<u8>, i32> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = rustix::io::read(fd, &mut buf).map_err(errno)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn klist(p: &str) -> Result<Vec<Vec<u8>>, i32> {
    let fd = kopen(p, OFlags::RDONLY | OFlags::DIRECTORY, 0)?;
    // getdents on this very fd (Dir::read_from would reopen "." and need search
    // permission).
    let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 65536];
    let mut dir = rustix::fs::RawDir::new(&fd, &mut buf);
    let mut names = Vec::new();
    while let Some(e) = dir.next() {
        let e = e.map_err(errno)?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    names.sort();
    Ok(names)
}

fn kxattrs(p: &str, follow: bool) -> Result<Vec<Vec<u8>>, i32> {
    let mut buf = vec![0u8; 65536];
    let n =
        if follow { rustix::fs::listxattr(p, &mut buf[..]) } else { rustix::fs::llistxattr(p, &mut buf[..]) }
            .map_err(errno)?;
    let mut names: Vec<Vec<u8>> =
        buf[..n].split(|&b| b == 0).filter(|s| !s.is_empty()).map(<[u8]>::to_vec).collect();
    names.sort();
    Ok(names)
}

fn times(v: u8) -> (Option<TimeSet>, Option<TimeSet>) {
    let at = |s| TimeSet::At(Timespec { sec: s, nsec: 5 });
    match v {
        0 => (Some(TimeSet::Now), Some(TimeSet::Now)),
        1 => (Some(TimeSet::Now), None),
        2 => (Some(at(1000)), Some(at(2000))),
        // (Both UTIME_OMIT is not generated: utimensat returns 0 before resolving the
        // path, a syscall-layer shortcut that never reaches a filesystem.)
        3 => (None, Some(TimeSet::Now)),
        _ => (None, Some(at(3000))),
    }
}

fn ktimespec(t: Option<TimeSet>) -> rustix::fs::Timespec {
    match t {
        None => rustix::fs::Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT },
        Some(TimeSet::Now) => rustix::fs::Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_NOW },
        Some(TimeSet::At(t)) => rustix::fs::Timespec { tv_sec: t.sec, tv_nsec: t.nsec as _ },
    }
}

fn open_variant(v: u8) -> (OFlags, OpenFlags) {
    match v {
        0 => (OFlags::RDONLY | OFlags::TRUNC, OpenFlags::READ | OpenFlags::TRUNC),
        1 => (OFlags::RDONLY | OFlags::NOFOLLOW, OpenFlags::READ | OpenFlags::NOFOLLOW),
        2 => (OFlags::RDONLY | OFlags::DIRECTORY, OpenFlags::READ | OpenFlags::DIRECTORY),
        3 => (OFlags::WRONLY | OFlags::CREATE, OpenFlags::WRITE | OpenFlags::CREAT),
        4 => (
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL,
            OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREAT | OpenFlags::EXCL,
        ),
        _ => (
            OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW,
            OpenFlags::WRITE | OpenFlags::CREAT | OpenFlags::NOFOLLOW,
        ),
    }
}

/// The path of a data operation (read, write, truncate, open), if `op` is one.
/// The path of an xattr operation, if `op` is one.
fn xattr_path(op: &Op) -> Option<&str> {
    match op {
        Op::SetX(p, ..) | Op::GetX(p, _) | Op::RmX(p, _) | Op::ListX(p) => Some(p),
        _ => None,
    }
}

fn data_path(op: &Op) -> Option<&str> {
    match op {
        Op::Truncate(p, _) | Op::Write(p, ..) | Op::Read(p) | Op::Open(p, _) | Op::Fallocate(p, ..) => {
            Some(p)
        }
        _ => None,
    }
}

fn falloc_mode(m: u8) -> (rustix::fs::FallocateFlags, FallocFlags) {
    use rustix::fs::FallocateFlags as K;
    match m {
        0 => (K::empty(), FallocFlags::empty()),
        1 => (K::KEEP_SIZE, FallocFlags::KEEP_SIZE),
        2 => (K::KEEP_SIZE | K::PUNCH_HOLE, FallocFlags::KEEP_SIZE | FallocFlags::PUNCH_HOLE),
        _ => (K::ZERO_RANGE, FallocFlags::ZERO_RANGE),
    }
}

fn kernel_op(op: &Op) -> Outcome {
    use rustix::fs as f;
    let unit = |r: rustix::io::Result<()>| r.map(|_| Val::Unit).map_err(errno);
    match op {
        Op::Mkdir(p, m) => unit(f::mkdir(p.as_str(), Mode::from_raw_mode(*m))),
        Op::Create(p, m) => kopen(p, OFlags::RDWR | OFlags::CREATE | OFlags::EXCL, *m).map(|_| Val::Unit),
        Op::Mknod(p, k, m) => {
            let (ft, dev) = match k {
                0 => (f::FileType::Fifo, 0),
                1 => (f::FileType::Socket, 0),
                2 => (f::FileType::CharacterDevice, rustix::fs::makedev(1, 3)),
                _ => (f::FileType::CharacterDevice, 0),
            };
            unit(f::mknodat(CWD, p.as_str(), ft, Mode::from_raw_mode(*m), dev))
        }
        Op::Symlink(t, p) => unit(f::symlink(t.as_str(), p.as_str())),
        Op::Link(a, b) => unit(f::link(a.as_str(), b.as_str())),
        Op::Unlink(p) => unit(f::unlink(p.as_str())),
        Op::Rmdir(p) => unit(f::rmdir(p.as_str())),
        Op::Rename(a, b, fl) => unit(f::renameat_with(CWD, a.as_str(), CWD, b.as_str(), krename(*fl))),
        Op::Chmod(p, m) => unit(f::chmod(p.as_str(), Mode::from_raw_mode(*m))),
        Op::Chown(p, u, g, nofollow) => unit(f::chownat(
            CWD,
            p.as_str(),
            u.map(rustix::process::Uid::from_raw),
            g.map(rustix::process::Gid::from_raw),
            if *nofollow { AtFlags::SYMLINK_NOFOLLOW } else { AtFlags::empty() },
        )),
        Op::Truncate(p, s) => {
            let fd = kopen(p, OFlags::WRONLY, 0)?;
            unit(f::ftruncate(&fd, *s))
        }
        Op::Write(p, off, len, b, append) => {
            let fl = if *append { OFlags::WRONLY | OFlags::APPEND } else { OFlags::WRONLY };
            let fd = kopen(p, fl, 0)?;
            let data = vec![*b; *len as usize];
            rustix::io::pwrite(&fd, &data, *off).map(|n| Val::Num(n as u64)).map_err(errno)
        }
        Op::Read(p) => {
            let fd = kopen(p, OFlags::RDONLY, 0)?;
            kread_all(&fd).map(Val::Bytes)
        }
        Op::Stat(p, follow) => {
            let fl = if *follow { AtFlags::empty() } else { AtFlags::SYMLINK_NOFOLLOW };
            f::statat(CWD, p.as_str(), fl).map(|s| Val::Attr(kview(&s))).map_err(errno)
        }
        Op::List(p) => klist(p).map(Val::Names),
        Op::SetX(p, n, v, fl) => {
            let flags = match fl {
                0 => f::XattrFlags::empty(),
                1 => f::XattrFlags::CREATE,
                _ => f::XattrFlags::REPLACE,
            };
            unit(f::setxattr(p.as_str(), XNAMES[*n as usize], XVALS[*v as usize], flags))
        }
        Op::GetX(p, n) => {
            let mut buf = vec![0u8; 65536];
            f::getxattr(p.as_str(), XNAMES[*n as usize], &mut buf[..])
                .map(|n| Val::Bytes(buf[..n].to_vec()))
                .map_err(errno)
        }
        Op::RmX(p, n) => unit(f::removexattr(p.as_str(), XNAMES[*n as usize])),
        Op::ListX(p) => kxattrs(p, true).map(Val::Names),
        Op::Utimes(p, v) => {
            let (a, m) = times(*v);
            let ts = f::Timestamps { last_access: ktimespec(a), last_modification: ktimespec(m) };
            unit(f::utimensat(CWD, p.as_str(), &ts, AtFlags::empty()))
        }
        Op::Open(p, v) => {
            let (k, _) = open_variant(*v);
            kopen(p, k, 0o644).map(|_| Val::Unit)
        }
        Op::Fallocate(p, m, off, len) => {
            let fd = kopen(p, OFlags::WRONLY, 0)?;
            unit(f::fallocate(&fd, falloc_mode(*m).0, *off, *len))
        }
        Op::Access(p, m) => {
            let acc = f::Access::from_bits_truncate(*m as u32);
            unit(f::accessat(
                CWD,
                p.as_str(),
                if *m == 0 { f::Access::EXISTS } else { acc },
                AtFlags::EACCESS,
            ))
        }
    }
}

fn krename(fl: u8) -> rustix::fs::RenameFlags {
    match fl {
        0 => rustix::fs::RenameFlags::empty(),
        1 => rustix::fs::RenameFlags::NOREPLACE,
        2 => rustix::fs::RenameFlags::EXCHANGE,
        _ => rustix::fs::RenameFlags::WHITEOUT,
    }
}

fn vrename(fl: u8) -> RenameFlags {
    match fl {
        0 => RenameFlags::empty(),
        1 => RenameFlags::NOREPLACE,
        2 => RenameFlags::EXCHANGE,
        _ => RenameFlags::WHITEOUT,
    }
}

/// Snapshot of a whole tree: path → (attributes, contents or target, xattrs).
pub type Tree = BTreeMap<String, (View, Vec<u8>, Vec<Vec<u8>>)>;

/// Snapshot the kernel side's whole tree (call inside the worker).
pub fn ktree() -> Tree {
    let mut out = Tree::new();
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        let p = if dir.is_empty() { "/".to_string() } else { dir.clone() };
        for n in klist(&p).unwrap_or_default() {
            let name = String::from_utf8_lossy(&n).into_owned();
            let full = format!("{dir}/{name}");
            let Ok(st) = rustix::fs::lstat(full.as_str()) else { continue };
            let v = kview(&st);
            let body = match v.kind {
                0o100000 => kopen(&full, OFlags::RDONLY, 0).and_then(|fd| kread_all(&fd)).unwrap_or_default(),
                0o120000 => rustix::fs::readlink(full.as_str(), Vec::new())
                    .map(|c| c.into_bytes())
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            let x = kxattrs(&full, false).unwrap_or_default();
            if v.kind == 0o040000 {
                stack.push(full.clone());
            }
            out.insert(full, (v, body, x));
        }
    }
    out
}

/// Empty the kernel side's root and reset its attributes (call inside the worker).
pub fn kwipe() {
    for n in klist("/").unwrap_or_default() {
        let p = format!("/{}", String::from_utf8_lossy(&n));
        let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
    }
    for x in kxattrs("/", false).unwrap_or_default() {
        let _ = rustix::fs::lremovexattr("/", x.as_slice());
    }
    let _ = rustix::fs::chown("/", Some(rustix::process::Uid::ROOT), Some(rustix::process::Gid::ROOT));
    let _ = rustix::fs::chmod("/", Mode::from_raw_mode(0o1777));
}

type Job = Box<dyn FnOnce() + Send>;

/// A thread with its own mount namespace and root, chrooted into a kernel tmpfs.
pub struct Kernel {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Kernel {
    /// A worker thread with its own mount namespace and filesystem context; `setup`
    /// runs in it (mounting whatever the test compares against) and returns the
    /// directory to chroot into. Mounts vanish with the namespace when the worker ends.
    pub fn start(
        setup: impl FnOnce() -> Result<std::path::PathBuf, String> + Send + 'static,
    ) -> Result<Kernel, String> {
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let thread = std::thread::spawn(move || {
            let prepare = || -> Result<(), String> {
                use rustix::thread::UnshareFlags;
                // SAFETY: CLONE_FS|CLONE_NEWNS do not touch the file descriptor table.
                unsafe { rustix::thread::unshare_unsafe(UnshareFlags::FS | UnshareFlags::NEWNS) }
                    .map_err(|e| format!("unshare: {e}"))?;
                rustix::mount::mount_change(
                    "/",
                    rustix::mount::MountPropagationFlags::PRIVATE | rustix::mount::MountPropagationFlags::REC,
                )
                .map_err(|e| format!("make-rprivate: {e}"))?;
                let dir = setup()?;
                rustix::process::chroot(&dir).map_err(|e| format!("chroot: {e}"))?;
                rustix::process::chdir("/").map_err(|e| format!("chdir: {e}"))?;
                rustix::process::umask(Mode::empty());
                Ok(())
            };
            let r = prepare();
            let ok = r.is_ok();
            let _ = ready_tx.send(r);
            if !ok {
                return;
            }
            for job in rx {
                job();
            }
        });
        ready_rx.recv().map_err(|e| e.to_string())??;
        Ok(Kernel { tx: Some(tx), thread: Some(thread) })
    }

    /// Run `f` in the worker and return its result.
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.tx.as_ref().expect("kernel worker").send(job).expect("kernel worker alive");
        rx.recv().expect("kernel worker answered")
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------- sandfs side

fn vcreds(who: usize) -> Creds {
    if who == 0 {
        Creds::root()
    } else {
        let (u, g, gs) = WHO[who];
        Creds::user(u, g, gs)
    }
}

fn vview(a: &sandfs_vfs::Attr) -> View {
    View {
        kind: a.kind.mode_bits(),
        mode: a.mode,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        size: a.size,
        rdev: if matches!(a.kind, FileType::CharDevice | FileType::BlockDevice) { a.rdev } else { 0 },
    }
}

fn e(x: sandfs_vfs::Errno) -> i32 {
    x.raw_os_error()
}

fn vspecial(ns: &MountNamespace, p: &str) -> bool {
    match ns.stat(&Creds::root(), None, p, true) {
        Ok(a) => !matches!(a.kind, FileType::Regular | FileType::Directory),
        Err(_) => false,
    }
}

fn vread_all(f: &sandfs_vfs::OpenFile) -> Result<Vec<u8>, i32> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = f.read(&mut buf).map_err(e)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn vlist(ns: &MountNamespace, c: &Creds, p: &str) -> Result<Vec<Vec<u8>>, i32> {
    let f = ns.open_path(c, None, p, OpenFlags::READ | OpenFlags::DIRECTORY, 0).map_err(e)?;
    let mut names = Vec::new();
    f.readdir(&mut |d| {
        if d.name != b"." && d.name != b".." {
            names.push(d.name.to_vec());
        }
        true
    })
    .map_err(e)?;
    names.sort();
    Ok(names)
}

fn sandfs_op(ns: &MountNamespace, who: usize, op: &Op) -> Outcome {
    let c = &vcreds(who);
    let unit = |r: sandfs_vfs::Result<()>| r.map(|_| Val::Unit).map_err(e);
    match op {
        Op::Mkdir(p, m) => ns.mkdir(c, None, p, *m).map(|_| Val::Unit).map_err(e),
        Op::Create(p, m) => ns
            .open_path(
                c,
                None,
                p,
                OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREAT | OpenFlags::EXCL,
                *m,
            )
            .map(|_| Val::Unit)
            .map_err(e),
        Op::Mknod(p, k, m) => {
            let what = match k {
                0 => Make::Fifo,
                1 => Make::Socket,
                2 => Make::CharDev(rustix::fs::makedev(1, 3)),
                _ => Make::CharDev(0),
            };
            ns.mknod(c, None, p, what, *m).map(|_| Val::Unit).map_err(e)
        }
        Op::Symlink(t, p) => ns.symlink(c, None, t, p).map(|_| Val::Unit).map_err(e),
        Op::Link(a, b) => ns.link_path(c, None, a, b).map(|_| Val::Unit).map_err(e),
        Op::Unlink(p) => unit(ns.unlink_path(c, None, p)),
        Op::Rmdir(p) => unit(ns.rmdir_path(c, None, p)),
        Op::Rename(a, b, fl) => unit(ns.rename_path(c, None, a, b, vrename(*fl))),
        Op::Chmod(p, m) => ns
            .setattr_path(c, None, p, &SetAttr { mode: Some(*m), ..Default::default() }, true)
            .map(|_| Val::Unit)
            .map_err(e),
        Op::Chown(p, u, g, nofollow) => ns
            .setattr_path(c, None, p, &SetAttr { uid: *u, gid: *g, ..Default::default() }, !nofollow)
            .map(|_| Val::Unit)
            .map_err(e),
        Op::Truncate(p, s) => {
            let f = ns.open_path(c, None, p, OpenFlags::WRITE, 0).map_err(e)?;
            unit(f.truncate(*s))
        }
        Op::Write(p, off, len, b, append) => {
            let fl = if *append { OpenFlags::WRITE | OpenFlags::APPEND } else { OpenFlags::WRITE };
            let f = ns.open_path(c, None, p, fl, 0).map_err(e)?;
            let data = vec![*b; *len as usize];
            f.write_at(&data, *off).map(|n| Val::Num(n as u64)).map_err(e)
        }
        Op::Read(p) => {
            let f = ns.open_path(c, None, p, OpenFlags::READ, 0).map_err(e)?;
            vread_all(&f).map(Val::Bytes)
        }
        Op::Stat(p, follow) => ns.stat(c, None, p, *follow).map(|a| Val::Attr(vview(&a))).map_err(e),
        Op::List(p) => vlist(ns, c, p).map(Val::Names),
        Op::SetX(p, n, v, fl) => {
            let flags = match fl {
                0 => XattrFlags::empty(),
                1 => XattrFlags::CREATE,
                _ => XattrFlags::REPLACE,
            };
            let loc = ns.resolve(c, None, p, true).map_err(e)?;
            unit(ns.setxattr(c, &loc, XNAMES[*n as usize].as_bytes(), XVALS[*v as usize], flags))
        }
        Op::GetX(p, n) => {
            let loc = ns.resolve(c, None, p, true).map_err(e)?;
            ns.getxattr(c, &loc, XNAMES[*n as usize].as_bytes()).map(Val::Bytes).map_err(e)
        }
        Op::RmX(p, n) => {
            let loc = ns.resolve(c, None, p, true).map_err(e)?;
            unit(ns.removexattr(c, &loc, XNAMES[*n as usize].as_bytes()))
        }
        Op::ListX(p) => {
            let loc = ns.resolve(c, None, p, true).map_err(e)?;
            let mut names = ns.listxattr(c, &loc).map_err(e)?;
            names.sort();
            Ok(Val::Names(names))
        }
        Op::Utimes(p, v) => {
            let (atime, mtime) = times(*v);
            let loc = ns.resolve(c, None, p, true).map_err(e)?;
            ns.setattr(c, &loc, &SetAttr { atime, mtime, ..Default::default() }).map(|_| Val::Unit).map_err(e)
        }
        Op::Open(p, v) => {
            let (_, fl) = open_variant(*v);
            ns.open_path(c, None, p, fl, 0o644).map(|_| Val::Unit).map_err(e)
        }
        Op::Fallocate(p, m, off, len) => {
            let f = ns.open_path(c, None, p, OpenFlags::WRITE, 0).map_err(e)?;
            unit(f.fallocate(falloc_mode(*m).1, *off, *len))
        }
        Op::Access(p, m) => {
            let loc = ns.resolve(c, None, p, true).map_err(e)?;
            unit(ns.access(c, &loc, *m as u32 & 7))
        }
    }
}

/// Snapshot a sandfs namespace's whole tree, as root.
pub fn vtree(ns: &MountNamespace) -> Tree {
    let root = Creds::root();
    let mut out = Tree::new();
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        let p = if dir.is_empty() { "/".to_string() } else { dir.clone() };
        for n in vlist(ns, &root, &p).unwrap_or_default() {
            let name = String::from_utf8_lossy(&n).into_owned();
            let full = format!("{dir}/{name}");
            let Ok(loc) = ns.resolve(&root, None, &full, false) else { continue };
            let Ok(a) = loc.node.attr() else { continue };
            let v = vview(&a);
            let body = match a.kind {
                FileType::Regular => ns
                    .open_path(&root, None, &full, OpenFlags::READ, 0)
                    .ok()
                    .and_then(|f| vread_all(&f).ok())
                    .unwrap_or_default(),
                FileType::Symlink => ns.readlink(&loc).unwrap_or_default(),
                _ => Vec::new(),
            };
            let mut x = ns.listxattr(&root, &loc).unwrap_or_default();
            x.sort();
            if a.kind == FileType::Directory {
                stack.push(full.clone());
            }
            out.insert(full, (v, body, x));
        }
    }
    out
}

// ---------------------------------------------------------------- the runner

/// Whether the test runs as root (the kernel side needs it).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Cases to run: `PROPTEST_CASES`, or `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A kernel worker chrooted into a fresh kernel tmpfs mounted on `dir`.
pub fn kernel_tmpfs(dir: &std::path::Path) -> Result<Kernel, String> {
    let dir = dir.to_path_buf();
    Kernel::start(move || {
        rustix::mount::mount("tmpfs", &dir, "tmpfs", rustix::mount::MountFlags::empty(), c"mode=1777")
            .map_err(|e| format!("mount tmpfs: {e}"))?;
        Ok(dir)
    })
}

/// Per-operation counts: (run, succeeded on the kernel).
pub type Stats = BTreeMap<String, (usize, usize)>;

/// Run `cases` generated sequences, each on a fresh namespace from `fresh` (called
/// after the kernel side was wiped) and on the kernel worker; compare every outcome
/// and the final trees. Panics with the shrunk sequence on a mismatch; returns the
/// number of sequences compared and per-operation counts.
pub fn run(
    kernel: &Kernel,
    cases: u32,
    fresh: impl Fn() -> std::sync::Arc<MountNamespace>,
) -> (usize, Stats) {
    run_with(kernel, Config::new(cases), fresh)
}

/// What a sandfs filesystem under test supports beyond the common ground.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Sequences to run.
    pub cases: u32,
    /// Whether xattrs on FIFOs, sockets and devices are supported (a gofer cannot
    /// open those to reach their xattrs; such operations are skipped when false).
    pub special_xattrs: bool,
    /// Resets the kernel side before each sequence (runs in the worker, as root).
    pub reset: fn(),
    /// The filesystems are overlays: a 0/0 character device (the kernel's whiteout,
    /// which kernel overlayfs refuses to create) is not generated, and a sequence in
    /// which the kernel answers a rename with EXDEV (a merged or lower directory,
    /// which sandfs moves as gVisor does) is discarded; both are tested on their own.
    /// Nor is fallocate ZERO_RANGE (see `run_with`).
    pub overlay: bool,
    /// Whether device nodes can be made (mknod of a character device, rename with
    /// RENAME_WHITEOUT); when false such operations are skipped (the gofer makes no
    /// device node on the host and refuses them with EPERM, tested on its own).
    pub devices: bool,
}

impl Config {
    /// Defaults: kernel tmpfs semantics, `cases` sequences.
    pub fn new(cases: u32) -> Config {
        Config { cases, special_xattrs: true, reset: kwipe, overlay: false, devices: true }
    }
}

/// [`run`] with a [`Config`].
pub fn run_with(
    kernel: &Kernel,
    cfg: Config,
    fresh: impl Fn() -> std::sync::Arc<MountNamespace>,
) -> (usize, Stats) {
    let special_xattrs = cfg.special_xattrs;
    let overlay = cfg.overlay;
    let devices = cfg.devices;
    let skip = move |op: &Op, special: &dyn Fn(&str) -> bool| {
        data_path(op).is_some_and(special)
            || (!special_xattrs && xattr_path(op).is_some_and(special))
            || (overlay && matches!(op, Op::Mknod(_, 3, _)))
            || (!devices && matches!(op, Op::Mknod(_, 2.., _) | Op::Rename(_, _, 3..)))
            // Kernel overlayfs clears setuid/setgid before tmpfs refuses ZERO_RANGE
            // (EOPNOTSUPP); sandfs clears them only once the operation is accepted.
            || (overlay && matches!(op, Op::Fallocate(_, 3, ..)))
    };
    let config = ProptestConfig {
        cases: cfg.cases,
        failure_persistence: None,
        max_global_rejects: cfg.cases.saturating_mul(4).max(1024),
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let total = std::sync::atomic::AtomicUsize::new(0);
    let stats = std::sync::Mutex::new(Stats::new());
    let result = runner.run(&steps(), |steps| {
        total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let reset = cfg.reset;
        kernel.run(move || {
            as_root();
            reset();
        });
        let ns = fresh();
        let all: Vec<Step> = prelude().into_iter().chain(steps).collect();
        for (i, s) in all.iter().enumerate() {
            let op = s.op.clone();
            let who = s.who;
            let k = kernel.run(move || {
                // Decided as root, like the sandfs side: is this data op on a special file?
                if skip(&op, &kspecial) {
                    return Ok(Val::Skipped);
                }
                become_who(who);
                let r = kernel_op(&op);
                as_root();
                r
            });
            if overlay && matches!(s.op, Op::Rename(..)) && k == Err(Errno::XDEV.raw_os_error()) {
                return Err(proptest::test_runner::TestCaseError::reject("kernel overlayfs: EXDEV rename"));
            }
            let v = if skip(&s.op, &|p| vspecial(&ns, p)) {
                Ok(Val::Skipped)
            } else {
                sandfs_op(&ns, s.who, &s.op)
            };
            let kind = format!("{:?}", s.op);
            let kind = kind.split('(').next().unwrap_or("").to_string();
            let mut st = stats.lock().expect("stats");
            let e = st.entry(kind).or_insert((0usize, 0usize));
            e.0 += 1;
            if matches!(k, Ok(Val::Unit | Val::Num(_) | Val::Attr(_) | Val::Bytes(_) | Val::Names(_))) {
                e.1 += 1;
            }
            drop(st);
            prop_assert_eq!(
                &v,
                &k,
                "step {} {:?} as {:?}: sandfs (left) vs kernel (right)",
                i,
                s.op,
                WHO[s.who]
            );
        }
        let mut kt = kernel.run(ktree);
        let mut vt = vtree(&ns);
        if !special_xattrs {
            for t in [&mut kt, &mut vt] {
                for (v, _, x) in t.values_mut() {
                    if v.kind != 0o100000 && v.kind != 0o040000 {
                        x.clear();
                    }
                }
            }
        }
        prop_assert_eq!(vt, kt, "final trees differ: sandfs (left) vs kernel (right)");
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    (total.into_inner(), stats.into_inner().expect("stats"))
}

/// Print what [`run`] returned.
pub fn report(name: &str, total: usize, stats: &Stats) {
    eprintln!("{name}: {total} sequences compared; operations (succeeded on the kernel / run):");
    for (k, (n, ok)) in stats {
        eprintln!("  {k:10} {ok:6}/{n}");
    }
}
