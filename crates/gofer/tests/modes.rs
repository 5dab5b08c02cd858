//! Mount modes of the gofer: a read-only source refuses every mutating request with
//! EROFS even where the host file is writable; `shared` file access sees host-side
//! changes after [`SHARED_TTL`]; `exclusive` file access does not revalidate (a
//! host-side change is not seen through a cached lookup or attribute: sandfs is
//! assumed to be the only writer, as in runsc).

mod raw;

use raw::Raw;
use rustix::fs::OFlags;
use rustix::io::Errno;
use sandfs_gofer::client::{FileAccess, GoferFs, SHARED_TTL};
use sandfs_gofer::proto::{self, Reply, Request, setattr_valid};
use sandfs_gofer::server::Source;
use sandfs_gofer::transport::Conn;
use sandfs_vfs::ops::Make;
use sandfs_vfs::{
    Creds, MountFlags, MountNamespace, OpenFlags, RenameFlags, SetAttr, TimeSet, Timespec, XattrFlags,
};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A connection to a new server for `src`.
fn serve(src: Source) -> Conn {
    raw::serve(src).0
}

/// Everything about the host tree that a mutation could change.
fn host_state(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut names: Vec<_> =
            std::fs::read_dir(&d).expect("read_dir").map(|e| e.expect("entry").path()).collect();
        names.sort();
        for p in names {
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            let content = if m.is_file() { std::fs::read(&p).expect("read") } else { Vec::new() };
            let mut xattrs = vec![0u8; 4096];
            let n = rustix::fs::llistxattr(&p, &mut xattrs[..]).unwrap_or(0);
            xattrs.truncate(n);
            out.push(format!(
                "{} mode={:o} uid={} gid={} size={} mtime={}.{} ctime={}.{} nlink={} xattrs={:?} data={:?}",
                p.strip_prefix(dir).unwrap().display(),
                m.mode(),
                m.uid(),
                m.gid(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
                m.nlink(),
                String::from_utf8_lossy(&xattrs),
                String::from_utf8_lossy(&content),
            ));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// A writable host tree: a 0666 file with a user xattr, a 0777 directory, a symlink.
fn writable_tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    let p = t.path();
    std::fs::write(p.join("f"), b"host data\n").expect("write");
    std::fs::set_permissions(p.join("f"), std::fs::Permissions::from_mode(0o666)).expect("chmod");
    std::fs::create_dir(p.join("d")).expect("mkdir");
    std::fs::set_permissions(p.join("d"), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    std::fs::write(p.join("d/inner"), b"inner\n").expect("write");
    std::os::unix::fs::symlink("f", p.join("l")).expect("symlink");
    // Not every host filesystem has user xattrs (tmpfs before 6.6 does not).
    let _ = rustix::fs::setxattr(p.join("f").as_path(), "user.k", b"v", rustix::fs::XattrFlags::empty());
    t
}

fn ts(sec: i64) -> Timespec {
    Timespec { sec, nsec: 0 }
}

#[test]
fn read_only_source_refuses_every_mutation_raw() {
    let t = writable_tree();
    let before = host_state(t.path());
    let mut raw = Raw::attach(Source::open(t.path(), true).expect("source"));
    assert!(raw.readonly, "attach reports the mount read-only");
    let root = raw.root;
    let f = raw.fid("f");
    let d = raw.fid("d");
    let l = raw.fid("l");
    let n = |s: &str| s.as_bytes().to_vec();
    let setattr = |fid, valid| Request::Setattr {
        fid,
        valid,
        mode: 0o777,
        uid: 1,
        gid: 1,
        size: 0,
        atime: ts(1),
        mtime: ts(1),
    };
    let mut mutations = vec![
        (
            "create",
            Request::Create {
                dir: root,
                name: n("new"),
                flags: OFlags::RDWR.bits(),
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
        ),
        (
            "create rdonly",
            Request::Create { dir: root, name: n("new"), flags: 0, mode: 0o644, uid: 0, gid: 0 },
        ),
        ("mknod dir", Request::Mknod { dir: root, name: n("nd"), mode: 0o040755, rdev: 0, uid: 0, gid: 0 }),
        ("mknod fifo", Request::Mknod { dir: root, name: n("nf"), mode: 0o010644, rdev: 0, uid: 0, gid: 0 }),
        (
            "mknod regular",
            Request::Mknod { dir: root, name: n("nr"), mode: 0o100644, rdev: 0, uid: 0, gid: 0 },
        ),
        (
            "mknod socket",
            Request::Mknod { dir: root, name: n("ns"), mode: 0o140644, rdev: 0, uid: 0, gid: 0 },
        ),
        (
            "mknod chardev",
            Request::Mknod { dir: root, name: n("nc"), mode: 0o020644, rdev: 0x103, uid: 0, gid: 0 },
        ),
        (
            "mknod in subdir",
            Request::Mknod { dir: d, name: n("nd"), mode: 0o040755, rdev: 0, uid: 0, gid: 0 },
        ),
        ("symlink", Request::Symlink { dir: root, name: n("sl"), target: n("f"), uid: 0, gid: 0 }),
        ("link", Request::Link { dir: root, name: n("hl"), target: f }),
        ("link into subdir", Request::Link { dir: d, name: n("hl"), target: f }),
        ("unlink", Request::Unlink { dir: root, name: n("f"), rmdir: false }),
        ("unlink symlink", Request::Unlink { dir: root, name: n("l"), rmdir: false }),
        ("rmdir", Request::Unlink { dir: root, name: n("d"), rmdir: true }),
        (
            "rename",
            Request::Rename { olddir: root, oldname: n("f"), newdir: root, newname: n("g"), flags: 0 },
        ),
        (
            "rename over",
            Request::Rename { olddir: root, oldname: n("f"), newdir: d, newname: n("inner"), flags: 0 },
        ),
        (
            "rename noreplace",
            Request::Rename { olddir: root, oldname: n("f"), newdir: root, newname: n("g"), flags: 1 },
        ),
        (
            "rename exchange",
            Request::Rename { olddir: root, oldname: n("f"), newdir: root, newname: n("d"), flags: 2 },
        ),
        ("setxattr", Request::Setxattr { fid: f, name: n("user.k"), value: n("changed"), flags: 0 }),
        ("setxattr dir", Request::Setxattr { fid: d, name: n("user.k"), value: n("v"), flags: 0 }),
        ("removexattr", Request::Removexattr { fid: f, name: n("user.k") }),
        ("fallocate", Request::Fallocate { fid: f, mode: 0, off: 0, len: 1 << 20 }),
        ("fallocate punch", Request::Fallocate { fid: f, mode: 3, off: 0, len: 4 }),
    ];
    use setattr_valid as v;
    for (what, valid) in [
        ("mode", v::MODE),
        ("uid", v::UID),
        ("gid", v::GID),
        ("size", v::SIZE),
        ("atime", v::ATIME),
        ("mtime", v::MTIME),
        ("atime now", v::ATIME_NOW),
        ("mtime now", v::MTIME_NOW),
    ] {
        for (fid, on) in [(f, "file"), (d, "dir"), (l, "symlink"), (root, "root")] {
            let label: &'static str = Box::leak(format!("setattr {what} on {on}").into_boxed_str());
            mutations.push((label, setattr(fid, valid)));
        }
    }
    let wr = [
        ("open wronly", OFlags::WRONLY),
        ("open rdwr", OFlags::RDWR),
        ("open trunc", OFlags::RDONLY | OFlags::TRUNC),
        ("open append", OFlags::RDONLY | OFlags::APPEND),
        ("open wronly append", OFlags::WRONLY | OFlags::APPEND),
        ("open rdwr trunc", OFlags::RDWR | OFlags::TRUNC),
    ];
    for (what, flags) in wr {
        mutations.push((what, Request::Open { fid: f, flags: flags.bits() }));
        mutations.push((what, Request::Openat { dir: root, name: b"f".to_vec(), flags: flags.bits() }));
    }
    mutations.push(("open dir wronly", Request::Open { fid: d, flags: OFlags::WRONLY.bits() }));
    for (what, req) in &mutations {
        assert_eq!(raw.call(req).err(), Some(Errno::ROFS), "{what}");
        assert!(raw.fds.is_empty(), "{what}: a descriptor was donated");
    }
    // Reads still work, and the donated descriptor is read-only.
    assert_eq!(raw.call(&Request::Open { fid: f, flags: 0 }), Ok(Reply::Opened));
    let fd = raw.fds.pop().expect("descriptor");
    let mut buf = [0u8; 64];
    assert_eq!(rustix::io::pread(&fd, &mut buf, 0), Ok(10));
    assert_eq!(rustix::io::pwrite(&fd, b"x", 0), Err(Errno::BADF), "the donated descriptor writes");
    assert_eq!(rustix::fs::ftruncate(&fd, 0), Err(Errno::INVAL));
    let fl = rustix::fs::fcntl_getfl(&fd).expect("getfl");
    assert_eq!(fl & OFlags::RWMODE, OFlags::RDONLY);
    // The donated descriptor's flags cannot be turned into write access either.
    let _ = rustix::fs::fcntl_setfl(&fd, OFlags::APPEND);
    assert_eq!(rustix::io::pwrite(&fd, b"x", 0), Err(Errno::BADF));
    drop(fd);
    for req in [
        Request::Getattr { fid: f },
        Request::Getdents { dir: root, off: 0 },
        Request::Listdir { dir: root, name: n("d"), off: 0 },
        Request::Readlink { fid: l },
        Request::Statfs { fid: root },
        Request::Listxattr { fid: f },
        Request::Fsync { fid: f, datasync: true },
        Request::Walk { dir: d, names: vec![n("inner")] },
    ] {
        assert!(raw.call(&req).is_ok(), "{req:?} on a read-only mount");
    }
    assert_eq!(host_state(t.path()), before, "the host tree changed");
}

#[test]
fn read_only_source_refuses_every_mutation_through_the_client() {
    let t = writable_tree();
    let before = host_state(t.path());
    let fs = GoferFs::attach(serve(Source::open(t.path(), true).expect("source")), FileAccess::Exclusive)
        .expect("attach");
    assert!(fs.readonly());
    // A writable vfs mount: only the gofer stands between the sandbox and the host.
    let ns = MountNamespace::new(fs, MountFlags::empty());
    let c = Creds::root();
    let rofs = Some(Errno::ROFS);
    assert_eq!(
        ns.open_path(&c, None, "/new", OpenFlags::WRITE | OpenFlags::CREAT, 0o644).err(),
        rofs,
        "create"
    );
    assert_eq!(ns.mkdir(&c, None, "/nd", 0o755).err(), rofs, "mkdir");
    assert_eq!(ns.mknod(&c, None, "/nf", Make::Fifo, 0o644).err(), rofs, "mkfifo");
    assert_eq!(ns.mknod(&c, None, "/nr", Make::File, 0o644).err(), rofs, "mknod regular");
    assert_eq!(ns.mknod(&c, None, "/ns", Make::Socket, 0o644).err(), rofs, "mknod socket");
    assert_eq!(ns.symlink(&c, None, "f", "/sl").err(), rofs, "symlink");
    assert_eq!(ns.link_path(&c, None, "/f", "/hl").err(), rofs, "link");
    assert_eq!(ns.unlink_path(&c, None, "/f").err(), rofs, "unlink");
    assert_eq!(ns.rmdir_path(&c, None, "/d").err(), rofs, "rmdir (non-empty: EROFS comes first)");
    assert_eq!(ns.rename_path(&c, None, "/f", "/g", RenameFlags::empty()).err(), rofs, "rename");
    assert_eq!(ns.rename_path(&c, None, "/f", "/d", RenameFlags::EXCHANGE).err(), rofs, "exchange");
    for set in [
        SetAttr { mode: Some(0o600), ..Default::default() },
        SetAttr { uid: Some(1), ..Default::default() },
        SetAttr { gid: Some(1), ..Default::default() },
        SetAttr { size: Some(0), ..Default::default() },
        SetAttr { atime: Some(TimeSet::At(ts(5))), ..Default::default() },
        SetAttr { mtime: Some(TimeSet::Now), ..Default::default() },
    ] {
        assert_eq!(ns.setattr_path(&c, None, "/f", &set, true).err(), rofs, "{set:?}");
        // (Linux checks EISDIR before EROFS for truncate.)
        let want = if set.size.is_some() { Some(Errno::ISDIR) } else { rofs };
        assert_eq!(ns.setattr_path(&c, None, "/d", &set, true).err(), want, "{set:?} on a directory");
    }
    let floc = ns.resolve(&c, None, "/f", true).expect("resolve");
    assert_eq!(ns.setxattr(&c, &floc, b"user.k", b"changed", XattrFlags::empty()).err(), rofs, "setxattr");
    assert_eq!(ns.setxattr(&c, &floc, b"user.new", b"v", XattrFlags::CREATE).err(), rofs, "setxattr create");
    assert_eq!(ns.removexattr(&c, &floc, b"user.k").err(), rofs, "removexattr");
    for flags in [
        OpenFlags::WRITE,
        OpenFlags::READ | OpenFlags::WRITE,
        OpenFlags::WRITE | OpenFlags::APPEND,
        OpenFlags::READ | OpenFlags::TRUNC,
        OpenFlags::WRITE | OpenFlags::TRUNC,
    ] {
        assert_eq!(ns.open_path(&c, None, "/f", flags, 0).err(), rofs, "open {flags:?}");
        assert_eq!(ns.open_path(&c, None, "/l", flags, 0).err(), rofs, "open {flags:?} through the symlink");
    }
    // Reading works (and its atime update is refused quietly).
    let f = ns.open_path(&c, None, "/f", OpenFlags::READ, 0).expect("open for reading");
    let mut buf = [0u8; 64];
    assert_eq!(f.read_at(&mut buf, 0), Ok(10));
    assert_eq!(f.write_at(b"x", 0).err(), Some(Errno::BADF));
    drop(f);
    assert_eq!(host_state(t.path()), before, "the host tree changed");
}

fn ns(dir: &Path, access: FileAccess) -> Arc<MountNamespace> {
    let fs = GoferFs::attach(serve(Source::open(dir, false).expect("source")), access).expect("attach");
    MountNamespace::new(fs, MountFlags::empty())
}

fn read(ns: &MountNamespace, path: &str) -> Result<Vec<u8>, Errno> {
    let f = ns.open_path(&Creds::root(), None, path, OpenFlags::READ | OpenFlags::NOATIME, 0)?;
    let mut out = vec![0u8; 4096];
    let n = f.read_at(&mut out, 0)?;
    out.truncate(n);
    Ok(out)
}

fn list(ns: &MountNamespace, path: &str) -> Vec<String> {
    let c = Creds::root();
    let loc = ns.resolve(&c, None, path, true).expect("resolve");
    let f = ns.open(&c, &loc, OpenFlags::READ | OpenFlags::DIRECTORY).expect("opendir");
    let mut names = Vec::new();
    f.readdir(&mut |e| {
        let n = String::from_utf8_lossy(e.name).into_owned();
        if n != "." && n != ".." {
            names.push(n);
        }
        true
    })
    .expect("readdir");
    names.sort();
    names
}

/// The host-side changes both mode tests make: a file grows in place, a file is
/// replaced by a new inode, a directory gains one entry and loses another.
struct Changes {
    dir: tempfile::TempDir,
}

impl Changes {
    fn new() -> Changes {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path();
        std::fs::write(p.join("f"), b"hello").expect("write");
        std::fs::write(p.join("r"), b"old inode").expect("write");
        std::fs::create_dir(p.join("d")).expect("mkdir");
        std::fs::write(p.join("d/a"), b"a").expect("write");
        std::fs::write(p.join("d/b"), b"b").expect("write");
        Changes { dir }
    }

    fn apply(&self) {
        let p = self.dir.path();
        std::fs::write(p.join("f"), b"hello, world").expect("rewrite in place");
        std::fs::write(p.join("r.new"), b"new inode!").expect("write");
        std::fs::rename(p.join("r.new"), p.join("r")).expect("replace");
        std::fs::write(p.join("d/c"), b"c").expect("add");
        std::fs::remove_file(p.join("d/b")).expect("remove");
    }
}

#[test]
fn shared_mode_sees_host_changes_after_the_ttl() {
    let h = Changes::new();
    let ns = ns(h.dir.path(), FileAccess::Shared);
    let c = Creds::root();
    // Cache everything first.
    assert_eq!(ns.stat(&c, None, "/f", true).expect("stat").size, 5);
    let old_r = ns.stat(&c, None, "/r", true).expect("stat");
    assert_eq!(read(&ns, "/r").as_deref(), Ok(&b"old inode"[..]));
    let d_before = ns.stat(&c, None, "/d", true).expect("stat");
    assert!(ns.stat(&c, None, "/d/b", true).is_ok());
    assert_eq!(ns.stat(&c, None, "/d/c", true).err(), Some(Errno::NOENT));
    assert_eq!(list(&ns, "/d"), ["a", "b"]);

    h.apply();
    std::thread::sleep(SHARED_TTL + Duration::from_millis(50));

    let f = ns.stat(&c, None, "/f", true).expect("stat");
    assert_eq!(f.size, 12, "shared mode did not see the file grow");
    assert_eq!(read(&ns, "/f").as_deref(), Ok(&b"hello, world"[..]));
    let r = ns.stat(&c, None, "/r", true).expect("stat");
    assert_ne!(r.ino, old_r.ino, "shared mode did not see the file replaced");
    assert_eq!(r.size, 10);
    assert_eq!(read(&ns, "/r").as_deref(), Ok(&b"new inode!"[..]));
    assert_eq!(ns.stat(&c, None, "/d/b", true).err(), Some(Errno::NOENT), "a removed entry is still seen");
    assert_eq!(ns.stat(&c, None, "/d/c", true).expect("new entry").size, 1);
    assert_eq!(list(&ns, "/d"), ["a", "c"]);
    let d_after = ns.stat(&c, None, "/d", true).expect("stat");
    assert_ne!(
        (d_after.mtime, d_after.ctime),
        (d_before.mtime, d_before.ctime),
        "directory times not revalidated"
    );
}

/// The documented behaviour of `exclusive`: sandfs is the only writer, so names and
/// attributes are cached for the life of the mount and a host-side change is not
/// seen through them. What does reach the host every time: names never looked up
/// (misses are not cached), directory listings (getdents), and file data (read
/// through a descriptor reopened from the cached fid: the inode looked up, so a
/// file replaced on the host still reads as the old inode).
#[test]
fn exclusive_mode_does_not_revalidate() {
    let h = Changes::new();
    let ns = ns(h.dir.path(), FileAccess::Exclusive);
    let c = Creds::root();
    let f_before = ns.stat(&c, None, "/f", true).expect("stat");
    let r_before = ns.stat(&c, None, "/r", true).expect("stat");
    let d_before = ns.stat(&c, None, "/d", true).expect("stat");
    let b_before = ns.stat(&c, None, "/d/b", true).expect("stat");

    h.apply();
    std::thread::sleep(SHARED_TTL + Duration::from_millis(50));

    assert_eq!(ns.stat(&c, None, "/f", true).expect("stat"), f_before, "cached attributes were revalidated");
    assert_eq!(ns.stat(&c, None, "/r", true).expect("stat"), r_before, "a cached lookup was revalidated");
    assert_eq!(ns.stat(&c, None, "/d", true).expect("stat"), d_before);
    assert_eq!(ns.stat(&c, None, "/d/b", true).expect("removed on the host, still cached"), b_before);
    // Data comes from the host file the cached node names.
    assert_eq!(read(&ns, "/f").as_deref(), Ok(&b"hello, world"[..]));
    assert_eq!(read(&ns, "/r").as_deref(), Ok(&b"old inode"[..]), "the cached node is the old inode");
    // Not cached: a name never looked up, and listings.
    assert!(ns.stat(&c, None, "/d/c", true).is_ok());
    assert_eq!(list(&ns, "/d"), ["a", "c"]);
}

/// Version negotiation: a client that speaks only version 1 gets version 1, and the
/// version-2 Listdir is then refused (the listing still works the version-1 way).
#[test]
fn version_one_clients_get_no_listdir() {
    let t = writable_tree();
    let conn = serve(Source::open(t.path(), false).expect("source"));
    let mut raw = Raw { conn, tag: 0, buf: Vec::new(), fds: Vec::new(), root: 0, readonly: false };
    match raw.call(&Request::Attach { version: 1 }) {
        Ok(Reply::Attached { root, version, .. }) => {
            assert_eq!(version, 1);
            raw.root = root;
        }
        other => panic!("attach: {other:?}"),
    }
    let root = raw.root;
    assert_eq!(raw.call(&Request::Listdir { dir: root, name: b"d".to_vec(), off: 0 }), Err(Errno::NOSYS));
    assert!(matches!(raw.call(&Request::Getdents { dir: root, off: 0 }), Ok(Reply::Dents { .. })));

    // A version-2 client lists a directory by name in one round trip: a fid for it,
    // its attributes, and its entries with theirs.
    let conn = serve(Source::open(t.path(), false).expect("source"));
    let mut raw = Raw { conn, tag: 0, buf: Vec::new(), fds: Vec::new(), root: 0, readonly: false };
    let Ok(Reply::Attached { root, version, .. }) = raw.call(&Request::Attach { version: u32::MAX }) else {
        panic!("attach")
    };
    assert_eq!(version, proto::VERSION);
    match raw.call(&Request::Listdir { dir: root, name: b"d".to_vec(), off: 0 }) {
        Ok(Reply::Listed { fid, attr, entries, eof, ahead }) => {
            assert!(eof && !ahead);
            assert_eq!(attr.kind, sandfs_vfs::FileType::Directory);
            let names: Vec<&[u8]> = entries.iter().map(|e| &*e.name).collect();
            assert_eq!(names, [&b"inner"[..]]);
            assert_eq!(entries[0].attr.size, 6);
            assert!(matches!(raw.call(&Request::Getattr { fid }), Ok(Reply::Attr(a)) if a.ino == attr.ino));
        }
        other => panic!("listdir: {other:?}"),
    }
    assert_eq!(raw.call(&Request::Listdir { dir: root, name: b"f".to_vec(), off: 0 }), Err(Errno::NOTDIR));
    assert_eq!(raw.call(&Request::Listdir { dir: root, name: b"l".to_vec(), off: 0 }), Err(Errno::NOTDIR));
    assert_eq!(raw.call(&Request::Listdir { dir: root, name: b"none".to_vec(), off: 0 }), Err(Errno::NOENT));

    // Version 3 opens a file by name in one round trip: a fid, its attributes and
    // the descriptor; anything but a regular file is refused without one.
    match raw.call(&Request::Openat { dir: root, name: b"f".to_vec(), flags: OFlags::RDONLY.bits() }) {
        Ok(Reply::Node { fid, attr }) => {
            assert_eq!(attr.size, 10);
            let fd = raw.fds.pop().expect("a descriptor");
            let mut b = [0u8; 4];
            assert_eq!(rustix::io::pread(&fd, &mut b, 0), Ok(4));
            assert_eq!(&b, b"host");
            assert!(matches!(raw.call(&Request::Getattr { fid }), Ok(Reply::Attr(a)) if a.ino == attr.ino));
        }
        other => panic!("openat: {other:?}"),
    }
    for (name, e) in [(&b"d"[..], Errno::ISDIR), (b"l", Errno::LOOP), (b"none", Errno::NOENT)] {
        assert_eq!(raw.call(&Request::Openat { dir: root, name: name.to_vec(), flags: 0 }), Err(e));
        assert!(raw.fds.is_empty());
    }
    // A version-2 client does not get it.
    let conn = serve(Source::open(t.path(), false).expect("source"));
    let mut raw = Raw { conn, tag: 0, buf: Vec::new(), fds: Vec::new(), root: 0, readonly: false };
    let Ok(Reply::Attached { root, .. }) = raw.call(&Request::Attach { version: 2 }) else {
        panic!("attach")
    };
    assert_eq!(raw.call(&Request::Openat { dir: root, name: b"f".to_vec(), flags: 0 }), Err(Errno::NOSYS));
    assert!(raw.fds.is_empty());
}

/// chown(-1, -1) changes nothing but ctime, on the host as on Linux: through the
/// client, a host-backed file's ctime moves as the same call made on the host moves
/// its twin's.
#[test]
fn chown_to_nobody_moves_ctime_on_the_host() {
    use std::os::unix::fs::MetadataExt;
    let t = tempfile::tempdir().expect("tempdir");
    for n in ["via_gofer", "on_host"] {
        std::fs::write(t.path().join(n), b"x").expect("write");
    }
    let ctime = |n: &str| {
        let m = std::fs::metadata(t.path().join(n)).expect("stat");
        (m.ctime(), m.ctime_nsec())
    };
    let before = (ctime("via_gofer"), ctime("on_host"));
    let ns = ns(t.path(), FileAccess::Exclusive);
    let c = Creds::root();
    let loc = ns.resolve(&c, None, "/via_gofer", true).expect("resolve");
    // Past the kernel's coarse clock tick, so a new ctime differs from the old.
    std::thread::sleep(Duration::from_millis(30));
    std::os::unix::fs::chown(t.path().join("on_host"), None, None).expect("host chown");
    let attr = ns.chown(&c, &loc, None, None).expect("chown through the gofer");
    assert_ne!(ctime("on_host"), before.1, "the host oracle: chown(-1, -1) moves ctime");
    assert_ne!(ctime("via_gofer"), before.0, "chown(-1, -1) through the gofer left the host ctime");
    assert_eq!(
        (attr.ctime.sec, attr.ctime.nsec as i64),
        ctime("via_gofer"),
        "the reply carries the new ctime"
    );
}

/// The journal of a writable mount lists every path changed through the client,
/// coalesced: what was made (and then written) is A, what existed and was written,
/// truncated, chmod'ed or had an xattr set is M, what existed and went is D; a
/// rename is a removal and a creation; what was made and removed again is not listed.
#[test]
fn the_journal_lists_changed_paths() {
    let t = writable_tree();
    std::fs::write(t.path().join("d/old"), b"old").expect("write");
    std::fs::write(t.path().join("doomed"), b"x").expect("write");
    let fs = GoferFs::attach(serve(Source::open(t.path(), false).expect("source")), FileAccess::Exclusive)
        .expect("attach");
    let j = fs.journal();
    let ns = MountNamespace::new(fs, MountFlags::empty());
    let c = Creds::root();
    let f = ns.open_path(&c, None, "/new", OpenFlags::WRITE | OpenFlags::CREAT, 0o644).expect("create");
    f.write_at(b"data", 0).expect("write");
    drop(f);
    let f = ns.open_path(&c, None, "/f", OpenFlags::WRITE | OpenFlags::APPEND, 0).expect("open");
    f.write(b"more").expect("append");
    drop(f);
    ns.mkdir(&c, None, "/nd", 0o755).expect("mkdir");
    ns.open_path(&c, None, "/nd/inner", OpenFlags::WRITE | OpenFlags::CREAT, 0o644).expect("create");
    ns.rename_path(&c, None, "/d/old", "/d/moved", RenameFlags::empty()).expect("rename");
    ns.unlink_path(&c, None, "/doomed").expect("unlink");
    ns.open_path(&c, None, "/tmp1", OpenFlags::WRITE | OpenFlags::CREAT, 0o644).expect("create");
    ns.unlink_path(&c, None, "/tmp1").expect("unlink");
    ns.setattr_path(&c, None, "/d/inner", &SetAttr { mode: Some(0o600), ..SetAttr::default() }, true)
        .expect("chmod");
    let got: Vec<String> = j
        .entries()
        .iter()
        .map(|e| format!("{} {}", e.change.code(), String::from_utf8_lossy(&e.path)))
        .collect();
    assert_eq!(got, ["M d/inner", "A d/moved", "D d/old", "D doomed", "M f", "A nd", "A nd/inner", "A new"]);
    assert_eq!(j.missed(), 0);
}
