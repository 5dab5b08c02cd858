//! Escape attempts against the gofer server, each of which must fail to read or change
//! anything outside the mount source.
//!
//! Layout of the host side, in one base directory:
//!
//! ```text
//! base/src/            the mount source the server serves
//! base/outside/secret  a file outside the source ("OUTSIDE SECRET")
//! ```
//!
//! As root, the base directory is a kernel tmpfs mounted with `strictatime` in a
//! private mount namespace (a testkit worker), and the outside file's atime is set to
//! a fixed old value: any read of it, by anyone, moves its atime, so "unread" is
//! checked exactly. Without root no such mount can be made, and on the host's own
//! filesystem (relatime or noatime, unknown) atime proves nothing: then only
//! contents, mode, owner, size, mtime, ctime, nlink and inode are compared, and the
//! test says so.
//!
//! After every attempt the outside file, the outside and base directories' listings
//! and `/etc/passwd` (contents, mtime, ctime) are compared with a snapshot taken
//! before it. Server threads must end without panicking.
//!
//! The attackers: a hostile client speaking raw protocol (any fid, any request, any
//! bytes), and the real client (GoferFs) under a vfs MountNamespace, which follows
//! symlinks itself, inside the namespace root.

mod raw;

use raw::{Raw, serve};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags};
use rustix::io::Errno;
use sandfs_gofer::client::{FileAccess, GoferFs};
use sandfs_gofer::proto::{self, Fid, Reply, Request, WalkEnd};
use sandfs_gofer::server::Source;
use sandfs_gofer::transport::{Conn, RecvError};
use sandfs_testkit as kit;
use sandfs_vfs::{Creds, FileType, MountFlags, MountNamespace, OpenFlags, Timespec};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SECRET: &[u8] = b"OUTSIDE SECRET\n";
const OLD_ATIME: i64 = 1_000_000_000;

// ------------------------------------------------------------------ host side

/// The host directories of one test.
struct Host {
    base: OwnedFd,
    /// Whether atime is exact (strictatime tmpfs).
    strict: bool,
    _worker: Option<kit::Kernel>,
    _dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().expect("tempdir");
        let (base, strict, worker) = if kit::is_root() {
            let path = dir.path().to_path_buf();
            let worker = kit::Kernel::start(move || {
                rustix::mount::mount(
                    "sandfs-escape",
                    &path,
                    "tmpfs",
                    rustix::mount::MountFlags::STRICTATIME,
                    c"mode=0755",
                )
                .map_err(|e| format!("mount tmpfs: {e}"))?;
                Ok(path)
            })
            .expect("strictatime tmpfs worker");
            // The worker is chrooted into the tmpfs: its "/" is the base. The
            // descriptor reaches that mount from any thread.
            let base = worker.run(|| {
                rustix::fs::open("/", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            });
            (base.expect("open base"), true, Some(worker))
        } else {
            eprintln!(
                "note: not root: no strictatime tmpfs can be mounted, so \"unread\" is not checked \
                 (atime on the host filesystem follows relatime/noatime); everything else is"
            );
            let base = rustix::fs::open(
                dir.path(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .expect("open base");
            (base, false, None)
        };
        let h = Host { base, strict, _worker: worker, _dir: dir };
        h.mkdir("src");
        h.mkdir("outside");
        h.write("outside/secret", SECRET);
        h.set_old_atime("outside/secret");
        h
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.base.as_fd()
    }

    /// A path naming `rel` in the base from any thread and namespace.
    fn path(&self, rel: &str) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}/{rel}", self.base.as_raw_fd()))
    }

    fn mkdir(&self, rel: &str) {
        rustix::fs::mkdirat(self.fd(), rel, Mode::from_raw_mode(0o755))
            .unwrap_or_else(|e| panic!("mkdir {rel}: {e}"));
    }

    fn write(&self, rel: &str, data: &[u8]) {
        let fd = rustix::fs::openat(
            self.fd(),
            rel,
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o644),
        )
        .unwrap_or_else(|e| panic!("create {rel}: {e}"));
        assert_eq!(rustix::io::write(&fd, data).expect("write"), data.len());
    }

    fn symlink(&self, target: &str, rel: &str) {
        rustix::fs::symlinkat(target, self.fd(), rel).unwrap_or_else(|e| panic!("symlink {rel}: {e}"));
    }

    fn set_old_atime(&self, rel: &str) {
        let t = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec { tv_sec: OLD_ATIME, tv_nsec: 0 },
            last_modification: rustix::fs::Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT },
        };
        rustix::fs::utimensat(self.fd(), rel, &t, AtFlags::SYMLINK_NOFOLLOW).expect("utimensat");
    }

    fn statx(&self, rel: &str) -> rustix::fs::Statx {
        rustix::fs::statx(self.fd(), rel, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS)
            .unwrap_or_else(|e| panic!("statx {rel}: {e}"))
    }

    /// Contents, read without touching atime.
    fn read(&self, rel: &str) -> Vec<u8> {
        let fd = rustix::fs::openat(
            self.fd(),
            rel,
            OFlags::RDONLY | OFlags::NOATIME | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap_or_else(|e| panic!("open {rel}: {e}"));
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = rustix::io::read(&fd, &mut buf).expect("read");
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    fn list(&self, rel: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path(rel))
            .unwrap_or_else(|e| panic!("list {rel}: {e}"))
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn snapshot(&self) -> Snapshot {
        let x = self.statx("outside/secret");
        let passwd = std::fs::read("/etc/passwd").ok();
        let pst =
            rustix::fs::statx(rustix::fs::CWD, "/etc/passwd", AtFlags::empty(), StatxFlags::BASIC_STATS)
                .ok()
                .map(|s| {
                    (
                        s.stx_ino,
                        s.stx_nlink,
                        s.stx_mode,
                        s.stx_mtime.tv_sec,
                        s.stx_mtime.tv_nsec,
                        s.stx_ctime.tv_sec,
                        s.stx_ctime.tv_nsec,
                    )
                });
        Snapshot {
            secret: self.read("outside/secret"),
            ino: x.stx_ino,
            mode: x.stx_mode,
            uid: x.stx_uid,
            gid: x.stx_gid,
            nlink: x.stx_nlink,
            size: x.stx_size,
            mtime: (x.stx_mtime.tv_sec, x.stx_mtime.tv_nsec),
            ctime: (x.stx_ctime.tv_sec, x.stx_ctime.tv_nsec),
            atime: (x.stx_atime.tv_sec, x.stx_atime.tv_nsec),
            outside: self.list("outside"),
            base: self.list(""),
            passwd,
            passwd_stat: pst,
        }
    }

    /// Everything outside the source as it was, and the outside file unread.
    fn assert_untouched(&self, before: &Snapshot, what: &str) {
        let now = self.snapshot();
        assert_eq!(now.secret, before.secret, "{what}: outside file contents changed");
        assert_eq!(
            (now.ino, now.mode, now.uid, now.gid, now.nlink, now.size, now.mtime, now.ctime),
            (
                before.ino,
                before.mode,
                before.uid,
                before.gid,
                before.nlink,
                before.size,
                before.mtime,
                before.ctime
            ),
            "{what}: outside file attributes changed"
        );
        assert_eq!(now.outside, before.outside, "{what}: outside directory changed");
        assert_eq!(now.base, before.base, "{what}: base directory changed");
        assert_eq!(now.passwd, before.passwd, "{what}: /etc/passwd changed");
        assert_eq!(now.passwd_stat, before.passwd_stat, "{what}: /etc/passwd attributes changed");
        if self.strict {
            assert_eq!(now.atime, before.atime, "{what}: outside file was read (atime moved)");
            assert_eq!(now.atime.0, OLD_ATIME, "{what}: outside file was read");
        }
    }

    fn source(&self, readonly: bool) -> Source {
        Source::open(&self.path("src"), readonly).expect("open source")
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    secret: Vec<u8>,
    ino: u64,
    mode: u16,
    uid: u32,
    gid: u32,
    nlink: u32,
    size: u64,
    mtime: (i64, u32),
    ctime: (i64, u32),
    atime: (i64, u32),
    outside: Vec<String>,
    base: Vec<String>,
    passwd: Option<Vec<u8>>,
    passwd_stat: Option<(u64, u32, u16, i64, u32, i64, u32)>,
}

// ------------------------------------------------------------------ attackers

fn ns_for(src: Source, access: FileAccess) -> Arc<MountNamespace> {
    let (conn, _t) = serve(src);
    let fs = GoferFs::attach(conn, access).expect("attach");
    MountNamespace::new(fs, MountFlags::empty())
}

fn read_ns(ns: &MountNamespace, path: &str) -> Result<Vec<u8>, Errno> {
    let f = ns.open_path(&Creds::root(), None, path, OpenFlags::READ, 0)?;
    let mut out = vec![0u8; 4096];
    let n = f.read_at(&mut out, 0)?;
    out.truncate(n);
    Ok(out)
}

fn write_ns(ns: &MountNamespace, path: &str, data: &[u8]) -> Result<(), Errno> {
    let f = ns.open_path(&Creds::root(), None, path, OpenFlags::WRITE | OpenFlags::TRUNC, 0)?;
    f.write_at(data, 0)?;
    Ok(())
}

// ------------------------------------------------------------------ the attempts

#[test]
fn symlink_to_etc_passwd() {
    let host = Host::new();
    host.symlink("/etc/passwd", "src/passwd");
    // The absolute host path of the outside file (in the worker's root, or the host's).
    let abs = if host.strict {
        "/outside/secret".to_string()
    } else {
        host._dir.path().join("outside/secret").display().to_string()
    };
    host.symlink(&abs, "src/abs");
    // Decoys: where the links lead when followed inside the sandbox's root.
    host.mkdir("src/etc");
    host.write("src/etc/passwd", b"DECOY passwd\n");
    let before = host.snapshot();

    // A hostile client gets the link reported, never followed.
    let (mut raw, t) = Raw::attach_joined(host.source(false), proto::VERSION);
    let root = raw.root;
    for link in ["passwd", "abs"] {
        let (end, entries) = raw.walk(root, &[link, "x"]);
        assert_eq!(end, WalkEnd::Symlink { index: 0 }, "{link}");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].1.kind, FileType::Symlink);
        let fid = entries[0].0;
        assert_eq!(raw.open_read(fid), Err(Errno::LOOP), "opening {link} through the server");
        assert_eq!(raw.call(&Request::Open { fid, flags: OFlags::RDWR.bits() }), Err(Errno::LOOP));
        assert!(raw.call(&Request::Getxattr { fid, name: b"user.x".to_vec() }).is_err());
        assert!(
            raw.call(&Request::Setxattr { fid, name: b"user.x".to_vec(), value: b"v".to_vec(), flags: 0 })
                .is_err()
        );
        assert!(raw.call(&Request::Fsync { fid, datasync: false }).is_err());
        assert!(raw.call(&Request::Fallocate { fid, mode: 0, off: 0, len: 4096 }).is_err());
        let truncate = Request::Setattr {
            fid,
            valid: proto::setattr_valid::SIZE,
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            atime: Timespec::default(),
            mtime: Timespec::default(),
        };
        assert!(raw.call(&truncate).is_err(), "truncate through {link}");
        let chmod = Request::Setattr {
            fid,
            valid: proto::setattr_valid::MODE,
            mode: 0o777,
            uid: 0,
            gid: 0,
            size: 0,
            atime: Timespec::default(),
            mtime: Timespec::default(),
        };
        assert!(raw.call(&chmod).is_err(), "chmod through {link}");
        // Walking *from* a symlink fid is not walking through it.
        assert_eq!(raw.call(&Request::Walk { dir: fid, names: vec![b"x".to_vec()] }), Err(Errno::NOTDIR));
        assert_eq!(raw.call(&Request::Getdents { dir: fid, off: 0 }), Err(Errno::NOTDIR));
        // Listing the link by name does not list what it points at.
        assert_eq!(
            raw.call(&Request::Listdir { dir: root, name: link.as_bytes().to_vec(), off: 0 }),
            Err(Errno::NOTDIR)
        );
        assert_eq!(raw.call(&Request::Listdir { dir: fid, name: b"x".to_vec(), off: 0 }), Err(Errno::NOTDIR));
        // Nor does opening it by name open what it points at.
        assert_eq!(
            raw.call(&Request::Openat { dir: root, name: link.as_bytes().to_vec(), flags: 0 }),
            Err(Errno::LOOP)
        );
        assert!(raw.fds.is_empty(), "a descriptor was donated for {link}");
        // The client may read the target string; that is all.
        assert_eq!(
            raw.call(&Request::Readlink { fid }),
            Ok(Reply::Data(if link == "passwd" {
                b"/etc/passwd".to_vec()
            } else {
                abs.clone().into_bytes()
            }))
        );
        host.assert_untouched(&before, &format!("raw client on {link}"));
    }
    drop(raw);
    t.join().expect("server thread");

    // The real client follows the link inside the namespace root: the decoy.
    let ns = ns_for(host.source(false), FileAccess::Shared);
    assert_eq!(read_ns(&ns, "/passwd").as_deref(), Ok(&b"DECOY passwd\n"[..]));
    assert_eq!(read_ns(&ns, "/abs"), Err(Errno::NOENT));
    write_ns(&ns, "/passwd", b"written\n").expect("write through the link");
    assert_eq!(host.read("src/etc/passwd"), b"written\n");
    assert_eq!(write_ns(&ns, "/abs", b"written\n"), Err(Errno::NOENT));
    host.assert_untouched(&before, "GoferFs through /etc/passwd links");
}

#[test]
fn symlink_chain_climbing_with_dotdot() {
    let host = Host::new();
    host.mkdir("src/a");
    host.mkdir("src/a/b");
    host.mkdir("src/a/b/c");
    host.mkdir("src/outside");
    host.write("src/outside/secret", b"DECOY\n");
    // Chains that on the host would climb out of src to base/outside/secret.
    host.symlink("a/b/l2", "src/l1");
    host.symlink("c/l3", "src/a/b/l2");
    host.symlink("../../../../../../../outside/secret", "src/a/b/c/l3");
    host.symlink("../../../../..", "src/a/b/c/up");
    host.symlink("../outside/secret", "src/rel");
    host.symlink("a/b/c/up/outside/secret", "src/viaup");
    let before = host.snapshot();

    let (mut raw, t) = Raw::attach_joined(host.source(false), proto::VERSION);
    let root = raw.root;
    // Each walk stops at the first symlink; following is the client's business.
    let (end, entries) = raw.walk(root, &["a", "b", "c", "up", "outside", "secret"]);
    assert_eq!(end, WalkEnd::Symlink { index: 3 });
    assert_eq!(entries.len(), 4);
    let up = entries[3].0;
    assert_eq!(raw.open_read(up), Err(Errno::LOOP));
    assert_eq!(raw.call(&Request::Walk { dir: up, names: vec![b"outside".to_vec()] }), Err(Errno::NOTDIR));
    for l in ["l1", "rel", "viaup"] {
        let (end, e) = raw.walk(root, &[l]);
        assert_eq!(end, WalkEnd::Symlink { index: 0 });
        assert_eq!(raw.open_read(e[0].0), Err(Errno::LOOP), "{l}");
    }
    drop(raw);
    t.join().expect("server thread");
    host.assert_untouched(&before, "raw walks of climbing chains");

    // Followed by the client, `..` stops at the namespace root: the decoy.
    let ns = ns_for(host.source(false), FileAccess::Exclusive);
    for p in
        ["/l1", "/rel", "/viaup", "/a/b/c/l3", "/a/b/c/up/outside/secret", "/a/b/c/up/../../outside/secret"]
    {
        assert_eq!(read_ns(&ns, p).as_deref(), Ok(&b"DECOY\n"[..]), "{p}");
    }
    // Links the sandbox makes itself climb no further.
    ns.symlink(&Creds::root(), None, "../../../../../../outside/secret", "/made").expect("symlink");
    assert_eq!(read_ns(&ns, "/made").as_deref(), Ok(&b"DECOY\n"[..]));
    write_ns(&ns, "/made", b"overwritten\n").expect("write through a climbing link");
    assert_eq!(host.read("src/outside/secret"), b"overwritten\n");
    host.assert_untouched(&before, "GoferFs through climbing chains");
}

/// Hand-encoded requests with names the codec refuses: the encoder writes any name.
fn hostile_requests(root: Fid) -> Vec<(String, Vec<u8>)> {
    let long = vec![b'a'; 256];
    let bad: Vec<&[u8]> = vec![
        b"..",
        b".",
        b"../outside",
        b"../outside/secret",
        b"/etc/passwd",
        b"a/b",
        b"/",
        b"x\0y",
        b"\0",
        b"",
        &long,
    ];
    let mut out = Vec::new();
    for n in bad {
        let n = n.to_vec();
        let what = format!("{:?}", String::from_utf8_lossy(&n));
        let reqs = [
            Request::Walk { dir: root, names: vec![n.clone()] },
            Request::Walk { dir: root, names: vec![b"ok".to_vec(), n.clone(), b"secret".to_vec()] },
            Request::Listdir { dir: root, name: n.clone(), off: 0 },
            Request::Openat { dir: root, name: n.clone(), flags: 0 },
            Request::Create {
                dir: root,
                name: n.clone(),
                flags: OFlags::RDWR.bits(),
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
            Request::Mknod { dir: root, name: n.clone(), mode: 0o040755, rdev: 0, uid: 0, gid: 0 },
            Request::Symlink { dir: root, name: n.clone(), target: b"/etc/passwd".to_vec(), uid: 0, gid: 0 },
            Request::Link { dir: root, name: n.clone(), target: root },
            Request::Unlink { dir: root, name: n.clone(), rmdir: false },
            Request::Unlink { dir: root, name: n.clone(), rmdir: true },
            Request::Rename {
                olddir: root,
                oldname: n.clone(),
                newdir: root,
                newname: b"stolen".to_vec(),
                flags: 0,
            },
            Request::Rename {
                olddir: root,
                oldname: b"ok".to_vec(),
                newdir: root,
                newname: n.clone(),
                flags: 0,
            },
        ];
        for r in reqs {
            out.push((format!("{r:?} with name {what}").chars().take(160).collect(), r.encode(99)));
        }
    }
    // Other malformed messages: symlink target with NUL, unknown op, truncated,
    // trailing bytes, counts past the message, an oversized message.
    out.push((
        "symlink target with NUL".into(),
        Request::Symlink {
            dir: root,
            name: b"s".to_vec(),
            target: b"/etc/\0passwd".to_vec(),
            uid: 0,
            gid: 0,
        }
        .encode(1),
    ));
    out.push(("unknown op".into(), vec![1, 0, 0, 0, 200]));
    out.push(("truncated".into(), Request::Getattr { fid: root }.encode(1)[..8].to_vec()));
    let mut trailing = Request::Getattr { fid: root }.encode(1);
    trailing.push(0);
    out.push(("trailing byte".into(), trailing));
    let mut count = vec![1, 0, 0, 0, 2];
    count.extend_from_slice(&root.to_le_bytes());
    count.extend_from_slice(&u32::MAX.to_le_bytes());
    out.push(("walk count past the message".into(), count));
    out.push(("oversized".into(), vec![0u8; proto::MAX_MESSAGE + 1]));
    out.push(("empty".into(), Vec::new()));
    out
}

#[test]
fn hostile_names_close_the_connection() {
    let host = Host::new();
    host.mkdir("src/ok");
    host.write("src/ok/secret", b"inside\n");
    let before = host.snapshot();
    let src_before = host.list("src");
    let n = hostile_requests(1).len();
    for i in 0..n {
        let (mut raw, t) = Raw::attach_joined(host.source(false), proto::VERSION);
        let (what, msg) = hostile_requests(raw.root).swap_remove(i);
        if msg.len() > proto::MAX_MESSAGE {
            // Let the socket carry it, so the server sees it (root may exceed wmem_max).
            let _ = rustix::net::sockopt::set_socket_send_buffer_size(raw.conn.fd(), 2 * msg.len());
        }
        match raw.send_bytes(&msg) {
            Ok(()) => {}
            // Only the oversized message may be refused by the socket itself; then
            // the server saw nothing and the connection goes on.
            Err(e) => {
                assert_eq!(e, Errno::MSGSIZE, "{what}: send");
                assert_eq!(raw.call(&Request::Getattr { fid: raw.root }).map(|_| ()), Ok(()));
                eprintln!("note: {what}: the socket refused it (EMSGSIZE); the server never saw it");
                drop(raw);
                t.join().expect("server thread");
                continue;
            }
        }
        if !msg.is_empty() && msg.len() <= proto::MAX_MESSAGE {
            // No reply: the server logged the error and closed the connection.
            match raw.recv() {
                Err(RecvError::Closed) | Err(RecvError::Io(_)) => {}
                other => panic!("{what}: the server answered a malformed request: {other:?}"),
            }
        }
        assert!(raw.is_closed(), "{what}: the connection stays open");
        t.join().unwrap_or_else(|_| panic!("{what}: the server thread panicked"));
        host.assert_untouched(&before, &what);
        assert_eq!(host.list("src"), src_before, "{what}: the source changed");
        assert_eq!(host.read("src/ok/secret"), b"inside\n");
    }
    // Client-sent descriptors are refused too.
    let (raw, t) = Raw::attach_joined(host.source(false), proto::VERSION);
    let passwd = rustix::fs::open("/etc/passwd", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty());
    let outside = rustix::fs::openat(host.fd(), "outside", OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .expect("open");
    let mut fds = vec![outside.as_fd()];
    if let Ok(p) = &passwd {
        fds.push(p.as_fd());
    }
    raw.conn.send(&Request::Getattr { fid: raw.root }.encode(5), &fds).expect("send");
    let mut raw = raw;
    assert!(matches!(raw.recv(), Err(RecvError::Closed) | Err(RecvError::Io(_))));
    t.join().expect("server thread");
    host.assert_untouched(&before, "client-sent descriptors");
}

#[test]
fn unknown_and_foreign_fids_are_refused() {
    let host = Host::new();
    host.write("src/f", b"inside\n");
    let before = host.snapshot();
    let (mut raw, t) = Raw::attach_joined(host.source(false), proto::VERSION);
    for fid in [0, 2, 3, 1000, u64::MAX] {
        if fid == raw.root {
            continue;
        }
        assert_eq!(raw.call(&Request::Getattr { fid }), Err(Errno::BADF));
        assert_eq!(raw.call(&Request::Open { fid, flags: 0 }), Err(Errno::BADF));
        assert_eq!(raw.call(&Request::Walk { dir: fid, names: vec![b"f".to_vec()] }), Err(Errno::BADF));
        assert_eq!(raw.call(&Request::Listdir { dir: fid, name: b"f".to_vec(), off: 0 }), Err(Errno::BADF));
        assert_eq!(raw.call(&Request::Openat { dir: fid, name: b"f".to_vec(), flags: 0 }), Err(Errno::BADF));
        assert_eq!(
            raw.call(&Request::Link { dir: raw.root, name: b"l".to_vec(), target: fid }),
            Err(Errno::BADF)
        );
    }
    // A second attach cannot get another root.
    assert!(raw.call(&Request::Attach { version: 1 }).is_err());
    // Flags the server does not allow are dropped, not honoured: O_PATH, O_CREAT,
    // O_DIRECTORY, O_NOFOLLOW off... the open still reaches only the fid's inode.
    let (_, e) = raw.walk(raw.root, &["f"]);
    let all = !(OFlags::WRONLY | OFlags::RDWR | OFlags::TRUNC | OFlags::APPEND | OFlags::DIRECT).bits();
    assert_eq!(raw.open_read(e[0].0).as_deref(), Ok(&b"inside\n"[..]));
    raw.call(&Request::Open { fid: e[0].0, flags: all }).expect("open with junk flags");
    drop(raw);
    t.join().expect("server thread");
    host.assert_untouched(&before, "unknown fids");
}

#[test]
fn directory_swapped_for_symlink_race() {
    let host = Arc::new(Host::new());
    host.mkdir("src/d");
    host.write("src/d/secret", b"inside\n");
    host.mkdir("src/outside");
    host.write("src/outside/secret", b"DECOY\n");
    // On the host, src/d.lnk -> ../outside is the directory holding the secret.
    host.symlink("../outside", "src/d.lnk");
    let inside_ino = host.statx("src/d/secret").stx_ino;
    let decoy_ino = host.statx("src/outside/secret").stx_ino;
    let before = host.snapshot();

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicUsize::new(0));
    // The swapper: atomically exchange the directory and the symlink, over and over.
    let swapper = {
        let (host, stop, swaps) = (host.clone(), stop.clone(), swaps.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                rustix::fs::renameat_with(
                    host.fd(),
                    "src/d",
                    host.fd(),
                    "src/d.lnk",
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .expect("exchange");
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut tries = 0usize;
    let mut inside_reads = 0usize;
    let mut stopped_at_link = 0usize;
    let (mut raw, t) = Raw::attach_joined(host.source(false), proto::VERSION);
    let ns = ns_for(host.source(false), FileAccess::Shared);
    while Instant::now() < deadline || tries < 200 {
        tries += 1;
        let root = raw.root;
        // One walk through the swapped name.
        let (end, entries) = raw.walk(root, &["d", "secret"]);
        match end {
            WalkEnd::Complete => {
                let (fid, attr) = entries[1];
                assert_eq!(attr.ino, inside_ino, "walk reached another file");
                if let Ok(data) = raw.open_read(fid) {
                    assert_eq!(data, b"inside\n");
                    inside_reads += 1;
                }
            }
            WalkEnd::Symlink { index } => {
                assert_eq!(index, 0);
                stopped_at_link += 1;
                assert!(raw.open_read(entries[0].0).is_err());
            }
            WalkEnd::Stopped { .. } => {}
        }
        let _ = raw.call(&Request::Close { fids: entries.iter().map(|e| e.0).collect() });
        // Two walks: the directory fid first, its child after the swap.
        let (end, entries) = raw.walk(root, &["d"]);
        if end == WalkEnd::Complete {
            let dir = entries[0].0;
            std::thread::yield_now();
            let (end2, e2) = raw.walk(dir, &["secret"]);
            if end2 == WalkEnd::Complete {
                assert_eq!(e2[0].1.ino, inside_ino, "a held directory fid moved elsewhere");
                if let Ok(data) = raw.open_read(e2[0].0) {
                    assert_eq!(data, b"inside\n");
                }
            }
            let _ = raw.call(&Request::Close { fids: e2.iter().map(|e| e.0).collect() });
            let _ = raw.call(&Request::Close { fids: vec![dir] });
        }
        // The real client, revalidating every 100 ms.
        match read_ns(&ns, "/d/secret") {
            Ok(d) => assert!(d == b"inside\n" || d == b"DECOY\n", "read {d:?}"),
            Err(e) => assert!([Errno::NOENT, Errno::NOTDIR, Errno::STALE, Errno::LOOP].contains(&e), "{e}"),
        }
        if let Ok(a) = ns.stat(&Creds::root(), None, "/d/secret", true) {
            assert!(a.ino == inside_ino || a.ino == decoy_ino);
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().expect("swapper");
    drop(raw);
    t.join().expect("server thread");
    eprintln!(
        "swap race: {tries} rounds, {} swaps, {inside_reads} reads of the inside file, \
         {stopped_at_link} walks stopped at the symlink",
        swaps.load(Ordering::Relaxed)
    );
    assert!(swaps.load(Ordering::Relaxed) > 0);
    host.assert_untouched(&before, "directory/symlink swap race");
}

/// A hard link to an outside file, made on the host before the gofer starts.
///
/// What happens, precisely: a hard link is not a reference to a path but another
/// name of the same inode, and that name is inside the source. The gofer cannot tell
/// it apart from a file created inside (nlink > 1 is common and legitimate), so it
/// serves it like any other file, exactly as runsc's gofer and a kernel bind mount
/// do. Therefore:
///  - reading through the link reads the outside file's data (and moves its atime);
///  - operations on the *inode* (writing, truncating, chmod/chown/utimes, xattrs)
///    change the outside file, because it is the same file;
///  - operations on the *name* (rename, unlink, linking it again) change only the
///    source directory; the outside file's data, mode, owner and mtime stay, only
///    its nlink (and ctime, as for any link count change) move;
///  - nothing reaches any *other* outside file, and a sandbox cannot make such a
///    link itself: Link takes a fid, and every fid is beneath the source.
///
/// Placing hard links to sensitive files inside a served directory is therefore the
/// host's decision; the test documents it rather than pretending otherwise.
#[test]
fn hard_link_to_an_outside_file_made_beforehand() {
    let host = Host::new();
    rustix::fs::linkat(host.fd(), "outside/secret", host.fd(), "src/hl", AtFlags::empty()).expect("link");
    host.set_old_atime("outside/secret");
    let before = host.snapshot();
    assert_eq!(before.nlink, 2);

    let ns = ns_for(host.source(false), FileAccess::Shared);
    let root = Creds::root();
    // Name operations: rename and an extra link, then unlink that link.
    ns.rename_path(&root, None, "/hl", "/hl2", Default::default()).expect("rename");
    ns.link_path(&root, None, "/hl2", "/hl3").expect("link");
    assert_eq!(host.statx("outside/secret").stx_nlink, 3);
    ns.unlink_path(&root, None, "/hl3").expect("unlink");
    let mid = host.snapshot();
    assert_eq!(mid.secret, before.secret, "name operations changed the data");
    assert_eq!(
        (mid.mode, mid.uid, mid.gid, mid.size, mid.mtime, mid.nlink),
        (before.mode, before.uid, before.gid, before.size, before.mtime, 2)
    );
    assert_eq!(mid.outside, before.outside);
    if host.strict {
        assert_eq!(mid.atime, before.atime, "name operations read the data");
    }

    // Reading through the link reads the outside inode (documented, not an escape
    // beyond that inode).
    assert_eq!(read_ns(&ns, "/hl2").as_deref(), Ok(SECRET));
    if host.strict {
        assert_ne!(host.snapshot().atime.0, OLD_ATIME, "a read through the link is a read of that inode");
    }
    // Writing through the link writes the outside file: the same inode.
    write_ns(&ns, "/hl2", b"changed through the link\n").expect("write");
    assert_eq!(host.read("outside/secret"), b"changed through the link\n");

    // Unlinking the name leaves the outside file, now with one link.
    ns.unlink_path(&root, None, "/hl2").expect("unlink");
    let after = host.snapshot();
    assert_eq!(after.nlink, 1);
    assert_eq!(after.secret, b"changed through the link\n");
    assert_eq!(after.outside, before.outside);
    assert_eq!(after.base, before.base);
    assert_eq!(after.passwd, before.passwd);
}

#[test]
fn proc_self_root_and_fd_tricks() {
    let host = Host::new();
    host.symlink("/proc/self/root/etc/passwd", "src/root_passwd");
    host.symlink("/proc/self/cwd/etc/passwd", "src/cwd_passwd");
    host.symlink("/proc/thread-self/root/etc/passwd", "src/thread_passwd");
    host.symlink("/proc/1/root/etc/passwd", "src/init_passwd");
    let outside_fd = rustix::fs::openat(
        host.fd(),
        "outside",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .expect("open outside");
    let fd_targets: Vec<String> = (0..64)
        .map(|n| format!("/proc/self/fd/{n}"))
        .chain([
            format!("/proc/self/fd/{}/secret", outside_fd.as_raw_fd()),
            format!("/proc/self/fd/{}/outside/secret", host.base.as_raw_fd()),
        ])
        .collect();
    for (i, t) in fd_targets.iter().enumerate() {
        host.symlink(t, &format!("src/fd{i}"));
    }
    // Decoys for resolution inside the sandbox's root.
    host.mkdir("src/proc");
    host.mkdir("src/proc/self");
    host.mkdir("src/proc/self/root");
    host.mkdir("src/proc/self/root/etc");
    host.write("src/proc/self/root/etc/passwd", b"DECOY\n");
    let before = host.snapshot();

    let (mut raw, t) = Raw::attach_joined(host.source(false), proto::VERSION);
    let root = raw.root;
    let mut links =
        vec!["root_passwd".to_string(), "cwd_passwd".into(), "thread_passwd".into(), "init_passwd".into()];
    links.extend((0..fd_targets.len()).map(|i| format!("fd{i}")));
    for l in &links {
        let (end, e) = raw.walk(root, &[l]);
        assert_eq!(end, WalkEnd::Symlink { index: 0 }, "{l}");
        let fid = e[0].0;
        assert_eq!(raw.open_read(fid), Err(Errno::LOOP), "{l}");
        assert!(raw.call(&Request::Getxattr { fid, name: b"user.x".to_vec() }).is_err());
        // Hard-linking the symlink fid goes through the server's own /proc/self/fd
        // entry for it: that must link the symlink itself, never its target.
        let name = format!("ln_{l}").into_bytes();
        let lr = raw.call(&Request::Link { dir: root, name: name.clone(), target: fid });
        if lr.is_ok() {
            let (end, e2) = raw.walk(root, &[std::str::from_utf8(&name).unwrap()]);
            assert_eq!(end, WalkEnd::Symlink { index: 0 }, "{l}: link of a symlink fid is not a symlink");
            assert_eq!(e2[0].1.ino, e[0].1.ino, "{l}: the link names another inode");
        }
        host.assert_untouched(&before, &format!("raw client on {l}"));
    }
    // Links through the server onto the outside file and /etc/passwd: nothing.
    drop(raw);
    t.join().expect("server thread");

    let ns = ns_for(host.source(false), FileAccess::Exclusive);
    assert_eq!(read_ns(&ns, "/root_passwd").as_deref(), Ok(&b"DECOY\n"[..]));
    for l in links.iter().filter(|l| *l != "root_passwd") {
        let r = read_ns(&ns, &format!("/{l}"));
        assert!(matches!(r, Err(Errno::NOENT)), "{l}: {r:?}");
        let w = write_ns(&ns, &format!("/{l}"), b"pwned\n");
        assert!(w.is_err(), "{l}: write succeeded");
    }
    host.assert_untouched(&before, "GoferFs through /proc links");
    drop(outside_fd);
}

#[test]
fn read_only_source_with_outside_links() {
    // The same links on a read-only mount: reads resolve inside, writes are EROFS.
    let host = Host::new();
    host.symlink("/etc/passwd", "src/passwd");
    host.symlink("../outside/secret", "src/rel");
    let before = host.snapshot();
    let ns = ns_for(host.source(true), FileAccess::Exclusive);
    assert_eq!(read_ns(&ns, "/passwd"), Err(Errno::NOENT));
    assert_eq!(read_ns(&ns, "/rel"), Err(Errno::NOENT));
    assert_eq!(write_ns(&ns, "/passwd", b"x"), Err(Errno::NOENT));
    let r = ns.open_path(&Creds::root(), None, "/new", OpenFlags::WRITE | OpenFlags::CREAT, 0o644).err();
    assert_eq!(r, Some(Errno::ROFS));
    assert_eq!(ns.symlink(&Creds::root(), None, "/etc/passwd", "/l").err(), Some(Errno::ROFS));
    host.assert_untouched(&before, "read-only mount");
}

#[test]
fn single_file_mount_reaches_nothing_else() {
    // A file served on its own: the directory holding it is never reachable.
    let host = Host::new();
    host.write("src/single", b"just this\n");
    host.write("src/sibling", b"not served\n");
    let before = host.snapshot();
    let src_before = host.list("src");
    let source = Source::open(&host.path("src/single"), false).expect("open single-file source");
    let (mut raw, t) = Raw::attach_joined(source, proto::VERSION);
    let root = raw.root;
    assert_eq!(raw.open_read(root).as_deref(), Ok(&b"just this\n"[..]));
    let n = |s: &str| s.as_bytes().to_vec();
    for req in [
        Request::Walk { dir: root, names: vec![n("sibling")] },
        Request::Getdents { dir: root, off: 0 },
        Request::Create { dir: root, name: n("x"), flags: 0, mode: 0o644, uid: 0, gid: 0 },
        Request::Mknod { dir: root, name: n("x"), mode: 0o040755, rdev: 0, uid: 0, gid: 0 },
        Request::Symlink { dir: root, name: n("x"), target: n("/etc/passwd"), uid: 0, gid: 0 },
        Request::Link { dir: root, name: n("x"), target: root },
        Request::Unlink { dir: root, name: n("sibling"), rmdir: false },
        Request::Rename { olddir: root, oldname: n("sibling"), newdir: root, newname: n("y"), flags: 0 },
    ] {
        assert_eq!(raw.call(&req).err(), Some(Errno::NOTDIR), "{req:?}");
    }
    drop(raw);
    t.join().expect("server thread");
    assert_eq!(host.list("src"), src_before);
    assert_eq!(host.read("src/sibling"), b"not served\n");
    host.assert_untouched(&before, "single-file mount");
}

/// A compromised gofer: the client must fail the operation (EIO for anything that
/// breaks the protocol, after which the mount is dead), never panic, never pass a
/// nonsense errno or a name like `..` up to the vfs.
#[test]
fn hostile_gofer_replies() {
    use sandfs_vfs::Attr;
    let dir_attr = raw::dir_attr();
    let file_attr = Attr { kind: FileType::Regular, mode: 0o644, nlink: 1, ino: 2, ..dir_attr };
    let raw_reply = |tag: u32, kind: u8, body: &[u8]| {
        let mut m = tag.to_le_bytes().to_vec();
        m.push(kind);
        m.extend_from_slice(body);
        m
    };
    type Bad = Box<dyn Fn(u32) -> Vec<u8> + Send>;
    let cases: Vec<(&str, Bad, bool)> = vec![
        ("garbage", Box::new(|_| vec![0xde, 0xad, 0xbe, 0xef, 0x42]), true),
        ("wrong tag", Box::new(move |t| proto::encode_reply(t + 7, &Ok(Reply::Unit))), true),
        ("errno 0", Box::new(move |t| raw_reply(t, 255, &0i32.to_le_bytes())), true),
        ("negative errno", Box::new(move |t| raw_reply(t, 255, &(-2i32).to_le_bytes())), true),
        (
            "walk stopped with errno 0",
            Box::new(move |t| {
                let r = Reply::Walked { end: WalkEnd::Stopped { index: 0, errno: 0 }, entries: vec![] };
                proto::encode_reply(t, &Ok(r))
            }),
            true,
        ),
        (
            "walk stopped with a negative errno",
            Box::new(move |t| {
                let r = Reply::Walked { end: WalkEnd::Stopped { index: 0, errno: -1 }, entries: vec![] };
                proto::encode_reply(t, &Ok(r))
            }),
            true,
        ),
        (
            "dirent named ..",
            Box::new(move |t| {
                let d = proto::Dent { name: b"..".as_slice().into(), off: 1, attr: dir_attr };
                proto::encode_reply(t, &Ok(Reply::Dents { entries: vec![d], eof: true }))
            }),
            true,
        ),
        (
            "walk complete without entries",
            Box::new(move |t| {
                proto::encode_reply(t, &Ok(Reply::Walked { end: WalkEnd::Complete, entries: vec![] }))
            }),
            false,
        ),
        (
            "reply of another kind",
            Box::new(move |t| proto::encode_reply(t, &Ok(Reply::Attr(file_attr)))),
            false,
        ),
        ("closed", Box::new(|_| Vec::new()), true),
    ];
    for (what, bad, breaks) in cases {
        let (client, server) = Conn::pair().expect("socketpair");
        let fake = std::thread::spawn(move || {
            let (mut buf, mut fds) = (Vec::new(), Vec::new());
            server.recv(&mut buf, &mut fds).expect("attach");
            let (tag, _) = Request::decode(&buf).expect("attach");
            let ok = Reply::Attached { version: 1, root: 1, attr: dir_attr, readonly: false };
            server.send(&proto::encode_reply(tag, &Ok(ok)), &[]).expect("send");
            // Every later request gets the hostile reply (or the connection closes).
            while server.recv(&mut buf, &mut fds).is_ok() {
                let tag = u32::from_le_bytes(buf[..4].try_into().expect("tag"));
                let msg = bad(tag);
                if msg.is_empty() || server.send(&msg, &[]).is_err() {
                    return;
                }
            }
        });
        let fs = GoferFs::attach(client, FileAccess::Shared).expect("attach");
        let ns = MountNamespace::new(fs, MountFlags::empty());
        let c = Creds::root();
        let r = if what.starts_with("dirent") {
            let loc = ns.resolve(&c, None, "/", true).expect("root");
            let f = ns.open(&c, &loc, OpenFlags::READ | OpenFlags::DIRECTORY).expect("opendir");
            let mut names = Vec::new();
            f.readdir(&mut |e| {
                names.push(e.name.to_vec());
                true
            })
            .map(|_| ())
        } else {
            ns.stat(&c, None, "/x", true).map(|_| ())
        };
        let e = r.expect_err(what);
        assert!((1..4096).contains(&e.raw_os_error()), "{what}: errno {}", e.raw_os_error());
        if breaks {
            assert_eq!(e, Errno::IO, "{what}");
            assert_eq!(ns.stat(&c, None, "/y", true).err(), Some(Errno::IO), "{what}: the mount lives on");
        }
        drop(ns);
        fake.join().expect("fake gofer");
    }
}
