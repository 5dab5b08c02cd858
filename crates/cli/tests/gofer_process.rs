//! The real `sandfs gofer` process: spawned with one end of a SEQPACKET socketpair
//! inherited, served to a GoferFs in this process. Checks that file operations work
//! under full confinement, that the process is confined (capabilities, no_new_privs,
//! seccomp, landlock, a mount namespace holding only its tmpfs root and the bind of
//! the source), and that killing it fails the next operation and every operation in
//! flight with EIO within a second.
//!
//! Confinement needs root (namespaces, pivot_root, bind mounts): without it every
//! test here is skipped with a printed reason.

mod gofer_child;

use gofer_child::{Gofer, skip};
use rustix::io::Errno;
use rustix::process::Signal;
use sandfs_gofer::client::{FileAccess, GoferFs};
use sandfs_vfs::{Creds, MountFlags, MountNamespace, OpenFlags, RenameFlags, SetAttr, XattrFlags};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn namespace(fs: Arc<GoferFs>) -> Arc<MountNamespace> {
    MountNamespace::new(fs, MountFlags::empty())
}

fn read(ns: &MountNamespace, path: &str) -> Result<Vec<u8>, Errno> {
    let f = ns.open_path(&Creds::root(), None, path, OpenFlags::READ, 0)?;
    let mut out = vec![0u8; 1 << 16];
    let n = f.read_at(&mut out, 0)?;
    out.truncate(n);
    Ok(out)
}

fn list(ns: &MountNamespace, path: &str) -> Result<Vec<String>, Errno> {
    let c = Creds::root();
    let loc = ns.resolve(&c, None, path, true)?;
    let f = ns.open(&c, &loc, OpenFlags::READ | OpenFlags::DIRECTORY)?;
    let mut names = Vec::new();
    f.readdir(&mut |e| {
        let n = String::from_utf8_lossy(e.name).into_owned();
        if n != "." && n != ".." {
            names.push(n);
        }
        true
    })?;
    names.sort();
    Ok(names)
}

/// A source directory somewhere other than /tmp, and one under /tmp (where the
/// gofer mounts its own tmpfs root: the source must stay reachable).
fn sources() -> Vec<tempfile::TempDir> {
    let target = std::env::var_os("CARGO_TARGET_TMPDIR").map(PathBuf::from);
    let mut v = vec![tempfile::tempdir().expect("tempdir in TMPDIR")];
    if let Some(t) = target {
        v.push(tempfile::tempdir_in(t).expect("tempdir in the target dir"));
    }
    v
}

#[test]
fn operations_work_under_full_confinement() {
    if skip("operations_work_under_full_confinement") {
        return;
    }
    for src in sources() {
        let host = src.path();
        std::fs::write(host.join("existing"), b"from the host\n").expect("write");
        let (g, fs) = Gofer::start(host, false, FileAccess::Exclusive);
        let ns = namespace(fs);
        let c = Creds::root();
        let what = format!("source {}\n--- gofer log ---\n{}", host.display(), g.log());

        // create + write + read
        let f = ns
            .open_path(&c, None, "/new", OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREAT, 0o640)
            .unwrap_or_else(|e| panic!("create: {e}; {what}"));
        assert_eq!(f.write_at(b"written through the gofer\n", 0), Ok(26), "{what}");
        drop(f);
        assert_eq!(read(&ns, "/new").as_deref(), Ok(&b"written through the gofer\n"[..]), "{what}");
        assert_eq!(std::fs::read(host.join("new")).expect("host read"), b"written through the gofer\n");
        assert_eq!(std::fs::metadata(host.join("new")).expect("stat").permissions().mode() & 0o7777, 0o640);
        assert_eq!(read(&ns, "/existing").as_deref(), Ok(&b"from the host\n"[..]));
        // mkdir, readdir, rename
        ns.mkdir(&c, None, "/dir", 0o755).unwrap_or_else(|e| panic!("mkdir: {e}; {what}"));
        ns.rename_path(&c, None, "/new", "/dir/moved", RenameFlags::empty())
            .unwrap_or_else(|e| panic!("rename: {e}; {what}"));
        assert_eq!(list(&ns, "/"), Ok(vec!["dir".to_string(), "existing".to_string()]));
        assert_eq!(list(&ns, "/dir"), Ok(vec!["moved".to_string()]));
        assert!(host.join("dir/moved").is_file());
        // xattr user.*
        let loc = ns.resolve(&c, None, "/dir/moved", true).expect("resolve");
        ns.setxattr(&c, &loc, b"user.test", b"value", XattrFlags::empty())
            .unwrap_or_else(|e| panic!("setxattr: {e}; {what}"));
        assert_eq!(ns.getxattr(&c, &loc, b"user.test").as_deref(), Ok(&b"value"[..]));
        assert!(ns.listxattr(&c, &loc).expect("listxattr").contains(&b"user.test".to_vec()));
        let mut v = [0u8; 16];
        let n = rustix::fs::getxattr(host.join("dir/moved").as_path(), "user.test", &mut v)
            .expect("host getxattr");
        assert_eq!(&v[..n], b"value");
        ns.removexattr(&c, &loc, b"user.test").expect("removexattr");
        assert_eq!(ns.getxattr(&c, &loc, b"user.test").err(), Some(Errno::NODATA));
        // symlink, link, chmod, chown, truncate, fifo, unlink, rmdir, statfs
        ns.symlink(&c, None, "dir/moved", "/sl").expect("symlink");
        assert_eq!(read(&ns, "/sl").as_deref(), Ok(&b"written through the gofer\n"[..]));
        ns.link_path(&c, None, "/dir/moved", "/hard").expect("link");
        assert_eq!(std::fs::metadata(host.join("hard")).expect("stat").nlink(), 2);
        ns.setattr_path(&c, None, "/hard", &SetAttr { mode: Some(0o604), ..Default::default() }, true)
            .expect("chmod");
        ns.setattr_path(
            &c,
            None,
            "/hard",
            &SetAttr { uid: Some(1234), gid: Some(4321), ..Default::default() },
            true,
        )
        .expect("chown (CAP_CHOWN kept)");
        ns.setattr_path(&c, None, "/hard", &SetAttr { size: Some(7), ..Default::default() }, true)
            .expect("truncate");
        let t = sandfs_vfs::Timespec { sec: 1_000_000_000, nsec: 5 };
        let times = SetAttr {
            atime: Some(sandfs_vfs::TimeSet::At(t)),
            mtime: Some(sandfs_vfs::TimeSet::At(t)),
            ..Default::default()
        };
        ns.setattr_path(&c, None, "/hard", &times, true).expect("utimes");
        assert_eq!(ns.readlink_path(&c, None, "/sl").as_deref(), Ok(&b"dir/moved"[..]));
        let m = std::fs::metadata(host.join("dir/moved")).expect("stat");
        assert_eq!((m.mtime(), m.mtime_nsec()), (1_000_000_000, 5));
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid(), m.len()), (0o604, 1234, 4321, 7));
        ns.mknod(&c, None, "/fifo", sandfs_vfs::ops::Make::Fifo, 0o600).expect("mkfifo");
        ns.unlink_path(&c, None, "/fifo").expect("unlink");
        ns.unlink_path(&c, None, "/hard").expect("unlink");
        ns.unlink_path(&c, None, "/sl").expect("unlink");
        ns.unlink_path(&c, None, "/dir/moved").expect("unlink");
        ns.rmdir_path(&c, None, "/dir").expect("rmdir");
        assert!(ns.statfs(&ns.root()).is_ok());
        let mut left: Vec<_> =
            std::fs::read_dir(host).expect("read_dir").map(|e| e.expect("e").file_name()).collect();
        left.sort();
        assert_eq!(left, ["existing"]);
        drop(g);
    }
}

#[test]
fn read_only_serve_refuses_writes() {
    if skip("read_only_serve_refuses_writes") {
        return;
    }
    let src = tempfile::tempdir().expect("tempdir");
    std::fs::write(src.path().join("f"), b"ro\n").expect("write");
    let (_g, fs) = Gofer::start(src.path(), true, FileAccess::Exclusive);
    assert!(fs.readonly());
    let ns = namespace(fs);
    let c = Creds::root();
    assert_eq!(read(&ns, "/f").as_deref(), Ok(&b"ro\n"[..]));
    assert_eq!(ns.open_path(&c, None, "/f", OpenFlags::WRITE, 0).err(), Some(Errno::ROFS));
    assert_eq!(ns.mkdir(&c, None, "/d", 0o755).err(), Some(Errno::ROFS));
    assert_eq!(std::fs::read(src.path().join("f")).expect("read"), b"ro\n");
}

fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in status"))
}

#[test]
fn the_gofer_is_confined() {
    if skip("the_gofer_is_confined") {
        return;
    }
    let src = tempfile::tempdir().expect("tempdir");
    let (g, fs) = Gofer::start(src.path(), false, FileAccess::Exclusive);
    // Served: the serving thread exists and confinement is complete.
    let ns = namespace(fs);
    assert!(list(&ns, "/").expect("readdir").is_empty());
    let log = g.log();
    eprintln!("--- gofer log ---\n{log}");

    // CAP_CHOWN 0, DAC_OVERRIDE 1, DAC_READ_SEARCH 2, FOWNER 3, FSETID 4; not MKNOD
    // (27): the gofer makes no device nodes.
    let kept: u64 = 0b1_1111;
    let pid = g.child.id();
    let mut tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .map(|e| e.expect("e").file_name())
        .collect();
    tasks.sort();
    assert!(tasks.len() >= 2, "a main thread and a serving thread: {tasks:?}");
    for t in &tasks {
        let status = std::fs::read_to_string(format!("/proc/{pid}/task/{}/status", t.to_string_lossy()))
            .expect("status");
        let cap = |k| u64::from_str_radix(status_field(&status, k), 16).expect("hex");
        assert_eq!(cap("CapEff"), kept, "thread {t:?}: CapEff");
        assert_eq!(cap("CapPrm"), kept, "thread {t:?}: CapPrm");
        assert_eq!(cap("CapBnd"), kept, "thread {t:?}: CapBnd");
        assert_eq!(cap("CapInh"), 0, "thread {t:?}: CapInh");
        assert_eq!(cap("CapAmb"), 0, "thread {t:?}: CapAmb");
        assert_eq!(status_field(&status, "NoNewPrivs"), "1", "thread {t:?}");
        assert_eq!(status_field(&status, "Seccomp"), "2", "thread {t:?}: seccomp filter mode");
        assert_eq!(status_field(&status, "Seccomp_filters"), "1", "thread {t:?}");
    }
    let status = g.proc("status");
    eprintln!(
        "CapEff {} CapBnd {} NoNewPrivs {} Seccomp {}",
        status_field(&status, "CapEff"),
        status_field(&status, "CapBnd"),
        status_field(&status, "NoNewPrivs"),
        status_field(&status, "Seccomp")
    );

    // Its own mount namespace: a tmpfs root and the bind of the source, nothing else.
    let mine = std::fs::read_link("/proc/self/ns/mnt").expect("ns");
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).expect("ns");
    assert_ne!(mine, theirs, "the gofer shares this mount namespace");
    let mountinfo = g.proc("mountinfo");
    eprintln!("--- mountinfo ---\n{mountinfo}");
    let mounts: Vec<(String, String, String)> = mountinfo
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let sep = f.iter().position(|x| *x == "-").expect("separator");
            (f[3].to_string(), f[4].to_string(), f[sep + 1].to_string())
        })
        .collect();
    assert_eq!(mounts.len(), 2, "mounts: {mounts:?}");
    // Mount ids order them by creation: the source's clone predates the root tmpfs.
    let mut mounts = mounts;
    mounts.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!((mounts[0].1.as_str(), mounts[0].2.as_str()), ("/", "tmpfs"), "the root is a tmpfs");
    assert_eq!(mounts[1].1, "/m0", "the source is bound at /m0");
    let src_root = std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| src.path().starts_with(f[4]))
        .max_by_key(|f| f[4].len())
        .map(|f| (f[2].to_string(), f[4].to_string()))
        .expect("the host mount holding the source");
    let bind = mountinfo.lines().find(|l| l.split_whitespace().nth(4) == Some("/m0")).expect("bind line");
    assert!(bind.contains(&format!(" {} ", src_root.0)), "the bind is of the source's device: {bind}");
    // What the gofer sees as / holds only the source's mount point.
    let root: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/root"))
        .expect("its root")
        .map(|e| e.expect("e").file_name())
        .collect();
    assert_eq!(root, ["m0"], "the gofer's root holds more than the source");

    // Landlock (and every other step) as the gofer reported it.
    assert!(log.contains("namespace: Ok(())"), "log: {log}");
    assert!(log.contains("no_new_privs: Ok(())"), "log: {log}");
    assert!(log.contains("seccomp: Ok("), "log: {log}");
    let landlock =
        log.split("landlock: ").nth(1).map(|s| s.split(", seccomp").next().unwrap_or(s)).unwrap_or("?");
    eprintln!("landlock: {landlock}");
    assert!(
        landlock.starts_with("Ok(\"FullyEnforced\")") || landlock.starts_with("Ok(\"PartiallyEnforced\")"),
        "landlock: {landlock}"
    );
}

#[test]
fn killing_the_gofer_fails_operations_with_eio_within_a_second() {
    if skip("killing_the_gofer_fails_operations_with_eio_within_a_second") {
        return;
    }
    let src = tempfile::tempdir().expect("tempdir");
    let other_src = tempfile::tempdir().expect("tempdir");
    std::fs::write(other_src.path().join("still"), b"here\n").expect("write");
    for i in 0..8 {
        std::fs::write(src.path().join(format!("f{i}")), b"x").expect("write");
    }
    // Shared mode, so every stat after the TTL goes to the gofer.
    let (mut g, fs) = Gofer::start(src.path(), false, FileAccess::Shared);
    let (_other, other_fs) = Gofer::start(other_src.path(), false, FileAccess::Shared);
    let ns = namespace(fs);
    let other = namespace(other_fs);
    let c = Creds::root();
    assert!(ns.stat(&c, None, "/f0", true).is_ok());
    assert_eq!(list(&ns, "/").expect("readdir").len(), 8);
    // Past the revalidation bound, the listing must be asked for again.
    std::thread::sleep(sandfs_gofer::client::SHARED_TTL + Duration::from_millis(20));

    // Stop the gofer so requests are surely in flight when it dies: one thread
    // blocked in recv holding the connection, the others queued behind it.
    rustix::process::kill_process(g.pid(), Signal::STOP).expect("SIGSTOP");
    // The stop is asynchronous: wait until every thread of the gofer is stopped.
    let stopped = |pid: u32| {
        std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks").all(|t| {
            let stat = std::fs::read_to_string(t.expect("task").path().join("stat")).unwrap_or_default();
            // The state follows the parenthesised command name.
            stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T'))
        })
    };
    let t0 = Instant::now();
    while !stopped(g.child.id()) {
        assert!(t0.elapsed() < Duration::from_secs(5), "the gofer does not stop");
        std::thread::sleep(Duration::from_millis(1));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let mut threads = Vec::new();
    for i in 0..8 {
        let (ns, tx) = (ns.clone(), tx.clone());
        threads.push(std::thread::spawn(move || {
            let r = if i % 2 == 0 {
                list(&ns, "/").map(|_| ())
            } else {
                ns.stat(&Creds::root(), None, format!("/never-looked-up-{i}"), true).map(|_| ())
            };
            let _ = tx.send((i, r, Instant::now()));
        }));
    }
    drop(tx);
    std::thread::sleep(Duration::from_millis(200));
    if let Ok((i, r, _)) = rx.try_recv() {
        panic!("operation {i} finished while the gofer was stopped: {r:?}");
    }
    let killed = Instant::now();
    g.kill();
    let mut done = 0;
    while let Ok((i, r, at)) = rx.recv_timeout(Duration::from_secs(5)) {
        let took = at.duration_since(killed);
        assert_eq!(r, Err(Errno::IO), "in-flight operation {i}");
        assert!(took < Duration::from_secs(1), "in-flight operation {i} failed after {took:?}");
        done += 1;
    }
    assert_eq!(done, 8, "operations still hang after the kill");
    for t in threads {
        t.join().expect("thread");
    }
    // Later operations fail at once, on every path (cached or not).
    let t0 = Instant::now();
    assert_eq!(list(&ns, "/").err(), Some(Errno::IO));
    assert_eq!(ns.stat(&c, None, "/another", true).err(), Some(Errno::IO));
    std::thread::sleep(sandfs_gofer::client::SHARED_TTL);
    assert_eq!(ns.stat(&c, None, "/f0", true).err(), Some(Errno::IO));
    assert_eq!(
        ns.open_path(&c, None, "/new", OpenFlags::WRITE | OpenFlags::CREAT, 0o644).err(),
        Some(Errno::IO)
    );
    assert!(t0.elapsed() < Duration::from_secs(1) + sandfs_gofer::client::SHARED_TTL);
    // The other mount, served by another gofer, is unaffected.
    assert_eq!(read(&other, "/still").as_deref(), Ok(&b"here\n"[..]));
    assert_eq!(list(&other, "/"), Ok(vec!["still".to_string()]));
    let _ = g.child.wait();

    // A kill while requests are streaming (not stopped first): whatever was in
    // flight ends with EIO within a second of the kill.
    let (mut g, fs) = Gofer::start(src.path(), false, FileAccess::Shared);
    let ns = namespace(fs);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let mut threads = Vec::new();
    for _ in 0..4 {
        let (ns, tx, stop) = (ns.clone(), tx.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut ok = 0usize;
            loop {
                match list(&ns, "/") {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        let _ = tx.send((e, Instant::now(), ok));
                        return;
                    }
                }
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
            }
        }));
    }
    drop(tx);
    std::thread::sleep(Duration::from_millis(200));
    let killed = Instant::now();
    g.kill();
    for _ in 0..4 {
        let (e, at, ok) =
            rx.recv_timeout(Duration::from_secs(5)).expect("a streaming operation hangs after the kill");
        assert_eq!(e, Errno::IO);
        assert!(ok > 0, "nothing succeeded before the kill");
        let took = at.saturating_duration_since(killed);
        assert!(took < Duration::from_secs(1), "failed only after {took:?}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in threads {
        t.join().expect("thread");
    }
}

/// Requests the client library does not send itself (it uses the donated descriptor
/// for fsync and fallocate) still work under the seccomp allowlist and landlock.
#[test]
fn raw_requests_under_confinement() {
    use sandfs_gofer::proto::{self, Reply, Request, WalkEnd};
    if skip("raw_requests_under_confinement") {
        return;
    }
    let src = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(src.path().join("d")).expect("mkdir");
    let (g, conn) = Gofer::spawn(src.path(), false);
    let (mut buf, mut fds) = (Vec::new(), Vec::new());
    let mut tag = 0;
    let mut call = |req: Request| -> Result<Reply, Errno> {
        tag += 1;
        conn.send(&req.encode(tag), &[]).expect("send");
        if conn.recv(&mut buf, &mut fds).is_err() {
            panic!("the gofer hung up on {req:?}\n--- gofer log ---\n{}", g.log());
        }
        let (t, r) = proto::decode_reply(&buf).expect("reply");
        assert_eq!(t, tag);
        r.map_err(Errno::from_raw_os_error)
    };
    let Ok(Reply::Attached { root, .. }) = call(Request::Attach { version: proto::VERSION }) else {
        panic!("attach");
    };
    let n = |s: &str| s.as_bytes().to_vec();
    let flags = rustix::fs::OFlags::RDWR.bits();
    let req = Request::Create { dir: root, name: n("f"), flags, mode: 0o600, uid: 0, gid: 0 };
    let Ok(Reply::Node { fid: f, .. }) = call(req) else { panic!("create") };
    assert_eq!(call(Request::Fallocate { fid: f, mode: 0, off: 0, len: 8192 }), Ok(Reply::Unit));
    assert_eq!(std::fs::metadata(src.path().join("f")).expect("stat").len(), 8192);
    assert_eq!(call(Request::Fsync { fid: f, datasync: false }), Ok(Reply::Unit));
    assert_eq!(call(Request::Fsync { fid: f, datasync: true }), Ok(Reply::Unit));
    assert_eq!(call(Request::Fsync { fid: root, datasync: false }), Ok(Reply::Unit));
    assert_eq!(call(Request::Open { fid: f, flags: 0 }), Ok(Reply::Opened));
    let req = Request::Mknod { dir: root, name: n("fifo"), mode: 0o010600, rdev: 0, uid: 0, gid: 0 };
    assert!(matches!(call(req), Ok(Reply::Node { .. })), "mkfifo");
    let req = Request::Walk { dir: root, names: vec![n("d"), n("missing")] };
    let Ok(Reply::Walked { end, .. }) = call(req) else { panic!("walk") };
    assert_eq!(end, WalkEnd::Stopped { index: 1, errno: Errno::NOENT.raw_os_error() });
    let req = Request::Rename { olddir: root, oldname: n("f"), newdir: root, newname: n("d"), flags: 2 };
    assert_eq!(call(req), Ok(Reply::Unit), "RENAME_EXCHANGE");
    assert!(matches!(call(Request::Statfs { fid: root }), Ok(Reply::StatFs(_))));
    assert!(matches!(call(Request::Getdents { dir: root, off: 0 }), Ok(Reply::Dents { .. })));
    assert_eq!(call(Request::Close { fids: vec![f] }), Ok(Reply::Unit));
}
