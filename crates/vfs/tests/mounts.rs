//! Mount namespace rules: EROFS under read-only mounts, bind mounts of directories
//! and files, disconnected mounts, unmount and read-only switching with EBUSY, mount
//! point creation, EXDEV and EBUSY across and on mounts, and `..` at mount roots.
//! Expected values are what Linux does (checked against the kernel where noted).

use sandfs_tmpfs::Tmpfs;
use sandfs_vfs::ops::Make;
use sandfs_vfs::{
    Creds, Errno, FileType, Location, MountFlags, MountNamespace, OpenFile, OpenFlags, RenameFlags, SetAttr,
    TimeSet, Timespec, XattrFlags,
};
use std::sync::Arc;

fn root() -> Creds {
    Creds::root()
}

fn err<T>(r: sandfs_vfs::Result<T>) -> Errno {
    match r {
        Ok(_) => panic!("expected an error, got success"),
        Err(e) => e,
    }
}

fn new_ns() -> (Arc<Tmpfs>, Arc<MountNamespace>) {
    let fs = Tmpfs::new_default();
    let ns = MountNamespace::new(fs.clone(), MountFlags::empty());
    (fs, ns)
}

fn rw() -> OpenFlags {
    OpenFlags::READ | OpenFlags::WRITE
}

fn write_file(ns: &MountNamespace, c: &Creds, path: &str, data: &[u8]) {
    let f = ns
        .open_path(c, None, path, OpenFlags::WRITE | OpenFlags::CREAT | OpenFlags::TRUNC, 0o644)
        .unwrap_or_else(|e| panic!("create {path}: {e}"));
    assert_eq!(f.write(data).unwrap(), data.len());
}

fn read_file(ns: &MountNamespace, c: &Creds, path: &str) -> Vec<u8> {
    let f = ns.open_path(c, None, path, OpenFlags::READ, 0).unwrap_or_else(|e| panic!("open {path}: {e}"));
    read_all(&f)
}

fn read_all(f: &OpenFile) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut off = 0;
    loop {
        let n = f.read_at(&mut buf, off).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
        off += n as u64;
    }
}

fn list(ns: &MountNamespace, c: &Creds, path: &str) -> Vec<String> {
    let d = ns.open_path(c, None, path, OpenFlags::READ | OpenFlags::DIRECTORY, 0).unwrap();
    let mut names = Vec::new();
    d.readdir(&mut |e| {
        names.push(String::from_utf8_lossy(e.name).into_owned());
        true
    })
    .unwrap();
    names.retain(|n| n != "." && n != "..");
    names.sort();
    names
}

fn loc(ns: &MountNamespace, path: &str) -> Location {
    ns.resolve(&root(), None, path, true).unwrap_or_else(|e| panic!("resolve {path}: {e}"))
}

/// Populate a tree under `dir` (absolute, existing): a file with data and a user
/// xattr, an empty subdirectory, a symlink.
fn populate(ns: &MountNamespace, dir: &str) {
    let r = root();
    write_file(ns, &r, &format!("{dir}/f"), b"hello");
    ns.mkdir(&r, None, format!("{dir}/sub"), 0o777).unwrap();
    ns.symlink(&r, None, "f", format!("{dir}/l")).unwrap();
    ns.setattr_path(&r, None, format!("{dir}/f"), &SetAttr { mode: Some(0o666), ..Default::default() }, true)
        .unwrap();
    let f = loc(ns, &format!("{dir}/f"));
    ns.setxattr(&r, &f, b"user.k", b"v", XattrFlags::empty()).unwrap();
}

/// Every mutation under `dir` (on a read-only mount) fails with EROFS, for `c`;
/// reads still work.
fn assert_erofs_matrix(ns: &MountNamespace, c: &Creds, dir: &str) {
    let p = |s: &str| format!("{dir}/{s}");
    let rofs = |what: &str, e: Errno| assert_eq!(e, Errno::ROFS, "{what} under {dir}");
    rofs("open O_WRONLY", err(ns.open_path(c, None, p("f"), OpenFlags::WRITE, 0)));
    rofs("open O_RDWR", err(ns.open_path(c, None, p("f"), rw(), 0)));
    rofs("open O_RDONLY|O_TRUNC", err(ns.open_path(c, None, p("f"), OpenFlags::READ | OpenFlags::TRUNC, 0)));
    rofs("open O_CREAT new", err(ns.open_path(c, None, p("new"), OpenFlags::READ | OpenFlags::CREAT, 0o644)));
    rofs(
        "open O_CREAT|O_EXCL new",
        err(ns.open_path(c, None, p("new"), OpenFlags::WRITE | OpenFlags::CREAT | OpenFlags::EXCL, 0o644)),
    );
    rofs("mkdir", err(ns.mkdir(c, None, p("newdir"), 0o755)));
    rofs("mknod fifo", err(ns.mknod(c, None, p("fifo"), Make::Fifo, 0o644)));
    rofs("mknod socket", err(ns.mknod(c, None, p("sock"), Make::Socket, 0o644)));
    rofs("mknod regular", err(ns.mknod(c, None, p("reg"), Make::File, 0o644)));
    rofs("mknod chr", err(ns.mknod(c, None, p("chr"), Make::CharDev(0x0103), 0o644)));
    rofs("symlink", err(ns.symlink(c, None, "f", p("l2"))));
    rofs("link", err(ns.link_path(c, None, p("f"), p("f2"))));
    rofs("unlink", err(ns.unlink_path(c, None, p("f"))));
    rofs("unlink symlink", err(ns.unlink_path(c, None, p("l"))));
    rofs("unlink missing", err(ns.unlink_path(c, None, p("missing"))));
    rofs("rmdir", err(ns.rmdir_path(c, None, p("sub"))));
    rofs("rename", err(ns.rename_path(c, None, p("f"), p("g"), RenameFlags::empty())));
    rofs("rename noreplace", err(ns.rename_path(c, None, p("f"), p("g"), RenameFlags::NOREPLACE)));
    rofs("rename exchange", err(ns.rename_path(c, None, p("f"), p("sub"), RenameFlags::EXCHANGE)));
    let set = |s: SetAttr| ns.setattr_path(c, None, p("f"), &s, true);
    rofs("chmod", err(set(SetAttr { mode: Some(0o600), ..Default::default() })));
    rofs("chown", err(set(SetAttr { uid: Some(c.uid), gid: Some(c.gid), ..Default::default() })));
    rofs("truncate", err(set(SetAttr { size: Some(0), ..Default::default() })));
    rofs(
        "utimes now",
        err(set(SetAttr { atime: Some(TimeSet::Now), mtime: Some(TimeSet::Now), ..Default::default() })),
    );
    let t = TimeSet::At(Timespec { sec: 1, nsec: 0 });
    rofs("utimes explicit", err(set(SetAttr { atime: Some(t), mtime: Some(t), ..Default::default() })));
    let f = loc(ns, &p("f"));
    rofs("setxattr", err(ns.setxattr(c, &f, b"user.new", b"x", XattrFlags::empty())));
    rofs("setxattr replace", err(ns.setxattr(c, &f, b"user.k", b"x", XattrFlags::REPLACE)));
    rofs("removexattr", err(ns.removexattr(c, &f, b"user.k")));
    rofs("access W_OK", err(ns.access(c, &f, 2)));
    // truncate checks the type before the mount (kernel: truncate of a directory on a
    // read-only bind mount is EISDIR).
    let trunc = SetAttr { size: Some(0), ..Default::default() };
    assert_eq!(err(ns.setattr_path(c, None, p("sub"), &trunc, true)), Errno::ISDIR);

    // Reads still work and nothing changed.
    assert_eq!(read_file(ns, c, &p("f")), b"hello");
    assert_eq!(read_file(ns, c, &p("l")), b"hello");
    assert_eq!(ns.readlink_path(c, None, p("l")).unwrap(), b"f");
    assert_eq!(ns.getxattr(c, &f, b"user.k").unwrap(), b"v");
    assert!(ns.listxattr(c, &f).unwrap().contains(&b"user.k".to_vec()));
    ns.access(c, &f, 4).unwrap();
    let a = ns.stat(c, None, p("f"), true).unwrap();
    assert_eq!((a.kind, a.size, a.mode, a.nlink), (FileType::Regular, 5, 0o666, 1));
    assert_eq!(list(ns, c, if dir.is_empty() { "/" } else { dir }), ["f", "l", "sub"]);
    // Opening an existing name with O_CREAT and no write access works (Linux ignores
    // the EROFS of the create when the name exists); O_EXCL still says EEXIST.
    let f2 = ns.open_path(c, None, p("f"), OpenFlags::READ | OpenFlags::CREAT, 0o644).unwrap();
    assert_eq!(read_all(&f2), b"hello");
    assert_eq!(
        err(ns.open_path(c, None, p("f"), OpenFlags::READ | OpenFlags::CREAT | OpenFlags::EXCL, 0o644)),
        Errno::EXIST
    );
    // mkdir of an existing name: EEXIST wins over EROFS, as on Linux.
    assert_eq!(err(ns.mkdir(c, None, p("sub"), 0o755)), Errno::EXIST);
}

#[test]
fn erofs_matrix_read_only_root() {
    let fs = Tmpfs::new_default();
    let setup = MountNamespace::new(fs.clone(), MountFlags::empty());
    populate(&setup, "");
    setup
        .setattr_path(&root(), None, "/", &SetAttr { mode: Some(0o777), ..Default::default() }, true)
        .unwrap();
    let ns = MountNamespace::new(fs.clone(), MountFlags::RDONLY);
    assert_erofs_matrix(&ns, &root(), "");
    // An unprivileged user with every permission gets EROFS too.
    assert_erofs_matrix(&ns, &Creds::user(1000, 1000, &[]), "");
    // The same tree stays writable through the read-write namespace.
    write_file(&setup, &root(), "/f", b"hello");
}

#[test]
fn erofs_matrix_read_only_mount_and_bind() {
    let (_fs, ns) = new_ns();
    let r = root();
    // A read-only mount of another filesystem, populated beforehand.
    let other = Tmpfs::new_default();
    let pre = MountNamespace::new(other.clone(), MountFlags::empty());
    populate(&pre, "");
    ns.mkdir(&r, None, "/ro", 0o755).unwrap();
    ns.mount(other, &loc(&ns, "/ro"), MountFlags::RDONLY).unwrap();
    assert_erofs_matrix(&ns, &r, "/ro");

    // A read-only bind of a writable directory of the namespace's own filesystem.
    ns.mkdir(&r, None, "/src", 0o777).unwrap();
    populate(&ns, "/src");
    ns.mkdir(&r, None, "/robind", 0o755).unwrap();
    ns.bind(&loc(&ns, "/src"), &loc(&ns, "/robind"), MountFlags::RDONLY).unwrap();
    assert_erofs_matrix(&ns, &r, "/robind");
    // The source stays writable.
    write_file(&ns, &r, "/src/new", b"x");
    assert_eq!(read_file(&ns, &r, "/robind/new"), b"x");
}

#[test]
fn bind_mount_of_a_directory() {
    let (_fs, ns) = new_ns();
    let r = root();
    ns.mkdir(&r, None, "/a", 0o755).unwrap();
    ns.mkdir(&r, None, "/a/b", 0o755).unwrap();
    ns.mkdir(&r, None, "/a/b/src", 0o755).unwrap();
    write_file(&ns, &r, "/a/b/src/f", b"data");
    ns.mkdir(&r, None, "/mnt", 0o755).unwrap();
    ns.mkdir(&r, None, "/mnt/dst", 0o755).unwrap();
    let m = ns.bind(&loc(&ns, "/a/b/src"), &loc(&ns, "/mnt/dst"), MountFlags::empty()).unwrap();
    assert!(m.is_connected());
    assert_eq!(read_file(&ns, &r, "/mnt/dst/f"), b"data");
    // Same node through both paths; writes through either are seen by the other.
    assert_eq!(
        ns.stat(&r, None, "/mnt/dst/f", true).unwrap().ino,
        ns.stat(&r, None, "/a/b/src/f", true).unwrap().ino
    );
    write_file(&ns, &r, "/mnt/dst/g", b"new");
    assert_eq!(read_file(&ns, &r, "/a/b/src/g"), b"new");
    // `..` from the bind's root is the mount point's parent, not the source's parent.
    assert_eq!(
        ns.stat(&r, None, "/mnt/dst/..", true).unwrap().ino,
        ns.stat(&r, None, "/mnt", true).unwrap().ino
    );
    let dst = loc(&ns, "/mnt/dst");
    assert!(dst.is_mount_root());
    assert_eq!(dst.mount.id(), m.id());
    assert_eq!(ns.parent_of(&dst).node.ino(), loc(&ns, "/mnt").node.ino());
    // Relative walk from inside the bind.
    assert_eq!(ns.stat(&r, Some(&dst), "../dst/f", true).unwrap().size, 4);
    // Type mismatch: a directory cannot go on a file.
    write_file(&ns, &r, "/file", b"");
    assert_eq!(err(ns.bind(&loc(&ns, "/a"), &loc(&ns, "/file"), MountFlags::empty())), Errno::NOTDIR);
}

#[test]
fn bind_mount_of_a_single_file() {
    let (_fs, ns) = new_ns();
    let r = root();
    ns.mkdir(&r, None, "/data", 0o755).unwrap();
    write_file(&ns, &r, "/data/hosts", b"127.0.0.1 localhost\n");
    ns.mkdir(&r, None, "/etc", 0o755).unwrap();
    write_file(&ns, &r, "/etc/hosts", b"old");
    let m = ns.bind(&loc(&ns, "/data/hosts"), &loc(&ns, "/etc/hosts"), MountFlags::empty()).unwrap();
    assert_eq!(read_file(&ns, &r, "/etc/hosts"), b"127.0.0.1 localhost\n");
    let l = loc(&ns, "/etc/hosts");
    assert!(l.is_mount_root());
    assert_eq!(l.mount.id(), m.id());
    // Writes through the mount land in the source file.
    let f = ns.open_path(&r, None, "/etc/hosts", OpenFlags::WRITE | OpenFlags::APPEND, 0).unwrap();
    f.write(b"::1 localhost\n").unwrap();
    drop(f);
    assert_eq!(read_file(&ns, &r, "/data/hosts"), b"127.0.0.1 localhost\n::1 localhost\n");
    // The mount point cannot be removed or renamed, nor replaced by a rename.
    assert_eq!(err(ns.unlink_path(&r, None, "/etc/hosts")), Errno::BUSY);
    assert_eq!(err(ns.rename_path(&r, None, "/etc/hosts", "/etc/h2", RenameFlags::empty())), Errno::BUSY);
    write_file(&ns, &r, "/etc/other", b"");
    assert_eq!(err(ns.rename_path(&r, None, "/etc/other", "/etc/hosts", RenameFlags::empty())), Errno::BUSY);
    // A file cannot go on a directory.
    assert_eq!(err(ns.bind(&loc(&ns, "/data/hosts"), &loc(&ns, "/etc"), MountFlags::empty())), Errno::NOTDIR);
    // A read-only file bind: EROFS for writes, reads fine.
    write_file(&ns, &r, "/etc/ro", b"");
    ns.bind(&loc(&ns, "/data/hosts"), &loc(&ns, "/etc/ro"), MountFlags::RDONLY).unwrap();
    assert_eq!(err(ns.open_path(&r, None, "/etc/ro", OpenFlags::WRITE, 0)), Errno::ROFS);
    assert!(read_file(&ns, &r, "/etc/ro").starts_with(b"127.0.0.1"));
    // Unmounting reveals the original file.
    ns.unmount(&loc(&ns, "/etc/hosts"), false).unwrap();
    assert_eq!(read_file(&ns, &r, "/etc/hosts"), b"old");
}

#[test]
fn disconnected_mount_connected_later() {
    let (_fs, ns) = new_ns();
    let r = root();
    ns.mkdir(&r, None, "/vol", 0o755).unwrap();
    let vol = Tmpfs::new_default();
    let m = ns.new_disconnected(vol.clone(), MountFlags::empty());
    assert!(!m.is_connected());
    // It can be populated through a Location before being attached.
    let mroot = Location { mount: m.clone(), node: m.root().clone() };
    let f = ns.create_open(&r, &mroot, b"shared", rw(), 0o644).unwrap();
    f.write(b"volume").unwrap();
    drop(f);
    assert_eq!(list(&ns, &r, "/vol"), Vec::<String>::new());
    ns.connect(&m, &loc(&ns, "/vol")).unwrap();
    assert!(m.is_connected());
    assert_eq!(read_file(&ns, &r, "/vol/shared"), b"volume");
    assert_eq!(loc(&ns, "/vol").mount.id(), m.id());
    assert_eq!(ns.stat(&r, None, "/vol/..", true).unwrap().ino, ns.stat(&r, None, "/", true).unwrap().ino);
    // Connecting twice is refused.
    ns.mkdir(&r, None, "/vol2", 0o755).unwrap();
    assert_eq!(err(ns.connect(&m, &loc(&ns, "/vol2"))), Errno::BUSY);
    // A disconnected mount of a subdirectory (new_disconnected_at).
    let sub = ns.make(&r, &mroot, b"sub", Make::Dir, 0o755).unwrap();
    ns.create_open(&r, &sub, b"inner", rw(), 0o644).unwrap();
    let m2 = ns.new_disconnected_at(vol.clone(), sub.node.clone(), MountFlags::RDONLY);
    ns.connect(&m2, &loc(&ns, "/vol2")).unwrap();
    assert_eq!(list(&ns, &r, "/vol2"), ["inner"]);
    assert_eq!(err(ns.mkdir(&r, None, "/vol2/x", 0o755)), Errno::ROFS);
    // Type mismatch on connect.
    write_file(&ns, &r, "/afile", b"");
    let m3 = ns.new_disconnected(Tmpfs::new_default(), MountFlags::empty());
    assert_eq!(err(ns.connect(&m3, &loc(&ns, "/afile"))), Errno::NOTDIR);
    assert!(!m3.is_connected());
}

#[test]
fn unmount_busy_and_detach() {
    let (_fs, ns) = new_ns();
    let r = root();
    ns.mkdir(&r, None, "/m", 0o755).unwrap();
    write_file(&ns, &r, "/m/under", b"");
    ns.mount(Tmpfs::new_default(), &loc(&ns, "/m"), MountFlags::empty()).unwrap();
    write_file(&ns, &r, "/m/f", b"abc");
    // Not a mount root, and the namespace root: EINVAL.
    assert_eq!(err(ns.unmount(&loc(&ns, "/m/f"), false)), Errno::INVAL);
    assert_eq!(err(ns.unmount(&ns.root(), false)), Errno::INVAL);
    // An open file keeps it busy.
    let f = ns.open_path(&r, None, "/m/f", rw(), 0).unwrap();
    assert_eq!(err(ns.unmount(&loc(&ns, "/m"), false)), Errno::BUSY);
    drop(f);
    // A child mount keeps it busy.
    ns.mkdir(&r, None, "/m/child", 0o755).unwrap();
    ns.mount(Tmpfs::new_default(), &loc(&ns, "/m/child"), MountFlags::empty()).unwrap();
    assert_eq!(err(ns.unmount(&loc(&ns, "/m"), false)), Errno::BUSY);
    ns.unmount(&loc(&ns, "/m/child"), false).unwrap();
    // Now it goes.
    ns.unmount(&loc(&ns, "/m"), false).unwrap();
    assert_eq!(list(&ns, &r, "/m"), ["under"]);

    // Detach with an open file: the mount leaves the tree, the file keeps working.
    ns.mount(Tmpfs::new_default(), &loc(&ns, "/m"), MountFlags::empty()).unwrap();
    write_file(&ns, &r, "/m/f", b"abc");
    ns.mkdir(&r, None, "/m/child", 0o755).unwrap();
    ns.mount(Tmpfs::new_default(), &loc(&ns, "/m/child"), MountFlags::empty()).unwrap();
    let f = ns.open_path(&r, None, "/m/f", rw(), 0).unwrap();
    let mloc = loc(&ns, "/m");
    ns.unmount(&mloc, true).unwrap();
    assert!(!mloc.mount.is_connected());
    assert_eq!(list(&ns, &r, "/m"), ["under"]);
    assert_eq!(err(ns.stat(&r, None, "/m/f", true)), Errno::NOENT);
    f.write_at(b"XYZ", 3).unwrap();
    assert_eq!(read_all(&f), b"abcXYZ");
    assert_eq!(f.stat().unwrap().size, 6);
    // Unmounting it again: it is not in the tree any more.
    assert_eq!(err(ns.unmount(&mloc, true)), Errno::INVAL);
}

#[test]
fn read_only_switch_of_a_live_mount() {
    let (_fs, ns) = new_ns();
    let r = root();
    ns.mkdir(&r, None, "/m", 0o755).unwrap();
    let m = ns.mount(Tmpfs::new_default(), &loc(&ns, "/m"), MountFlags::empty()).unwrap();
    write_file(&ns, &r, "/m/f", b"abc");
    // Open for writing: EBUSY, and the file stays writable.
    let w = ns.open_path(&r, None, "/m/f", OpenFlags::WRITE, 0).unwrap();
    assert_eq!(err(m.set_flags(MountFlags::RDONLY)), Errno::BUSY);
    assert!(!m.flags().contains(MountFlags::RDONLY));
    w.write_at(b"d", 3).unwrap();
    ns.mkdir(&r, None, "/m/d", 0o755).unwrap();
    drop(w);
    // Readers do not block the switch; neither does a read-only open that truncated
    // (Linux drops the write access taken for O_TRUNC once the truncation is done).
    let rd = ns.open_path(&r, None, "/m/f", OpenFlags::READ, 0).unwrap();
    write_file(&ns, &r, "/m/t", b"xyz");
    let tr = ns.open_path(&r, None, "/m/t", OpenFlags::READ | OpenFlags::TRUNC, 0).unwrap();
    assert_eq!(tr.stat().unwrap().size, 0);
    m.set_flags(MountFlags::RDONLY).unwrap();
    assert!(m.flags().contains(MountFlags::RDONLY));
    assert_eq!(read_all(&rd), b"abcd");
    assert_eq!(err(ns.open_path(&r, None, "/m/f", OpenFlags::WRITE, 0)), Errno::ROFS);
    assert_eq!(err(ns.mkdir(&r, None, "/m/e", 0o755)), Errno::ROFS);
    assert_eq!(err(ns.unlink_path(&r, None, "/m/f")), Errno::ROFS);
    drop((rd, tr));
    // And back to read-write.
    m.set_flags(MountFlags::empty()).unwrap();
    let w = ns.open_path(&r, None, "/m/f", OpenFlags::WRITE | OpenFlags::APPEND, 0).unwrap();
    w.write(b"e").unwrap();
    drop(w);
    assert_eq!(read_file(&ns, &r, "/m/f"), b"abcde");
    ns.mkdir(&r, None, "/m/e", 0o755).unwrap();
    // Other flags change freely while writers are open.
    let w = ns.open_path(&r, None, "/m/f", OpenFlags::WRITE, 0).unwrap();
    m.set_flags(MountFlags::NOATIME | MountFlags::NODEV).unwrap();
    assert_eq!(m.flags(), MountFlags::NOATIME | MountFlags::NODEV);
    assert_eq!(err(m.set_flags(MountFlags::RDONLY | MountFlags::NODEV)), Errno::BUSY);
    drop(w);
}

#[test]
fn make_mount_point_under_read_only_root() {
    let fs = Tmpfs::new_default();
    let setup = MountNamespace::new(fs.clone(), MountFlags::empty());
    let r = root();
    write_file(&setup, &r, "/file", b"x");
    setup.mkdir(&r, None, "/dir", 0o700).unwrap();
    setup.mkdir(&r, None, "/real", 0o700).unwrap();
    setup.symlink(&r, None, "/real", "/abs").unwrap();
    setup.symlink(&r, None, "../../../../real", "/real/up").unwrap();
    setup.symlink(&r, None, "/nowhere/deep", "/dangling").unwrap();
    let ns = MountNamespace::new(fs.clone(), MountFlags::RDONLY);
    assert_eq!(err(ns.mkdir(&r, None, "/x", 0o755)), Errno::ROFS);

    // Missing directories with parents, 0755 root:root.
    let l = ns.make_mount_point(b"/a/b/c", FileType::Directory).unwrap();
    assert_eq!(l.node.kind(), FileType::Directory);
    for p in ["/a", "/a/b", "/a/b/c"] {
        let a = ns.stat(&r, None, p, true).unwrap();
        assert_eq!((a.kind, a.mode, a.uid, a.gid), (FileType::Directory, 0o755, 0, 0), "{p}");
    }
    // A file mount point: parents 0755, an empty 0644 file.
    let l = ns.make_mount_point(b"/etc/resolv/resolv.conf", FileType::Regular).unwrap();
    assert_eq!(l.node.kind(), FileType::Regular);
    let a = ns.stat(&r, None, "/etc/resolv/resolv.conf", true).unwrap();
    assert_eq!((a.kind, a.mode, a.size, a.uid), (FileType::Regular, 0o644, 0, 0));
    assert_eq!(ns.stat(&r, None, "/etc", true).unwrap().mode, 0o755);
    // Existing destinations of the right kind are returned as they are.
    assert_eq!(
        ns.make_mount_point(b"/dir", FileType::Directory).unwrap().node.ino(),
        loc(&ns, "/dir").node.ino()
    );
    assert_eq!(ns.stat(&r, None, "/dir", true).unwrap().mode, 0o700);
    assert_eq!(
        ns.make_mount_point(b"/file", FileType::Regular).unwrap().node.ino(),
        loc(&ns, "/file").node.ino()
    );
    // Wrong kinds.
    assert_eq!(err(ns.make_mount_point(b"/file", FileType::Directory)), Errno::NOTDIR);
    assert_eq!(err(ns.make_mount_point(b"/dir", FileType::Regular)), Errno::ISDIR);
    assert_eq!(err(ns.make_mount_point(b"/file/sub", FileType::Directory)), Errno::NOTDIR);
    assert_eq!(err(ns.make_mount_point(b"/", FileType::Regular)), Errno::ISDIR);
    // Symlinks are followed inside the root: absolute, climbing, dangling.
    ns.make_mount_point(b"/abs/x", FileType::Directory).unwrap();
    assert_eq!(ns.stat(&r, None, "/real/x", true).unwrap().kind, FileType::Directory);
    ns.make_mount_point(b"/real/up/y", FileType::Regular).unwrap();
    assert_eq!(ns.stat(&r, None, "/real/y", true).unwrap().kind, FileType::Regular);
    ns.make_mount_point(b"/dangling", FileType::Directory).unwrap();
    assert_eq!(ns.stat(&r, None, "/nowhere/deep", true).unwrap().kind, FileType::Directory);
    // Nothing but the root's own children were made: the root is where it was.
    let mut top = list(&ns, &r, "/");
    top.sort();
    assert_eq!(top, ["a", "abs", "dangling", "dir", "etc", "file", "nowhere", "real"]);
    // The namespace is still read-only for programs; the mount point takes a mount.
    assert_eq!(err(ns.mkdir(&r, None, "/a/b/c/d", 0o755)), Errno::ROFS);
    ns.mount(Tmpfs::new_default(), &loc(&ns, "/a/b/c"), MountFlags::empty()).unwrap();
    ns.mkdir(&r, None, "/a/b/c/d", 0o755).unwrap();
    // Mount point creation under a read-only mount below the root, too.
    let l = ns.make_mount_point(b"/a/b/c/d/e/f", FileType::Directory).unwrap();
    assert_eq!(l.node.kind(), FileType::Directory);
    let ro = Tmpfs::new_default();
    let ro_mount = ns.mount(ro.clone(), &loc(&ns, "/a/b/c/d/e/f"), MountFlags::RDONLY).unwrap();
    let l = ns.make_mount_point(b"/a/b/c/d/e/f/g/file", FileType::Regular).unwrap();
    assert_eq!(l.mount.id(), ro_mount.id());
    assert_eq!(err(ns.unlink_path(&r, None, "/a/b/c/d/e/f/g/file")), Errno::ROFS);
}

#[test]
fn exdev_across_mounts() {
    let (_fs, ns) = new_ns();
    let r = root();
    for d in ["/src", "/b1", "/b2", "/other"] {
        ns.mkdir(&r, None, d, 0o755).unwrap();
    }
    write_file(&ns, &r, "/src/f", b"x");
    ns.mkdir(&r, None, "/src/dir", 0o755).unwrap();
    ns.mount(Tmpfs::new_default(), &loc(&ns, "/other"), MountFlags::empty()).unwrap();
    assert_eq!(err(ns.rename_path(&r, None, "/src/f", "/other/f", RenameFlags::empty())), Errno::XDEV);
    assert_eq!(err(ns.rename_path(&r, None, "/src/dir", "/other/dir", RenameFlags::empty())), Errno::XDEV);
    assert_eq!(err(ns.link_path(&r, None, "/src/f", "/other/f")), Errno::XDEV);
    // Two bind mounts of the same filesystem are still different mounts.
    ns.bind(&loc(&ns, "/src"), &loc(&ns, "/b1"), MountFlags::empty()).unwrap();
    ns.bind(&loc(&ns, "/src"), &loc(&ns, "/b2"), MountFlags::empty()).unwrap();
    assert_eq!(err(ns.rename_path(&r, None, "/b1/f", "/b2/g", RenameFlags::empty())), Errno::XDEV);
    assert_eq!(err(ns.rename_path(&r, None, "/b1/f", "/src/g", RenameFlags::empty())), Errno::XDEV);
    assert_eq!(err(ns.link_path(&r, None, "/b1/f", "/b2/g")), Errno::XDEV);
    assert_eq!(err(ns.rename_path(&r, None, "/b1/f", "/b2/dir", RenameFlags::EXCHANGE)), Errno::XDEV);
    // Within one mount both work.
    ns.rename_path(&r, None, "/b1/f", "/b1/g", RenameFlags::empty()).unwrap();
    ns.link_path(&r, None, "/b2/g", "/b2/h").unwrap();
    assert_eq!(ns.stat(&r, None, "/src/h", true).unwrap().nlink, 2);
    assert_eq!(list(&ns, &r, "/src"), ["dir", "g", "h"]);
}

#[test]
fn ebusy_for_mount_points() {
    let (_fs, ns) = new_ns();
    let r = root();
    ns.mkdir(&r, None, "/mp", 0o755).unwrap();
    ns.mkdir(&r, None, "/empty", 0o755).unwrap();
    ns.mount(Tmpfs::new_default(), &loc(&ns, "/mp"), MountFlags::empty()).unwrap();
    assert_eq!(err(ns.rmdir_path(&r, None, "/mp")), Errno::BUSY);
    assert_eq!(err(ns.rename_path(&r, None, "/mp", "/mq", RenameFlags::empty())), Errno::BUSY);
    assert_eq!(err(ns.rename_path(&r, None, "/empty", "/mp", RenameFlags::empty())), Errno::BUSY);
    assert_eq!(err(ns.rename_path(&r, None, "/empty", "/mp", RenameFlags::EXCHANGE)), Errno::BUSY);
    assert_eq!(err(ns.rename_path(&r, None, "/mp", "/empty", RenameFlags::EXCHANGE)), Errno::BUSY);
    assert_eq!(list(&ns, &r, "/"), ["empty", "mp"]);
    // The mount point reached through another bind mount of the same filesystem is
    // the same directory: still EBUSY (Linux checks the dentry, not the path).
    ns.mkdir(&r, None, "/src", 0o755).unwrap();
    ns.mkdir(&r, None, "/src/inner", 0o755).unwrap();
    write_file(&ns, &r, "/src/fmp", b"");
    ns.mkdir(&r, None, "/view", 0o755).unwrap();
    ns.bind(&loc(&ns, "/src"), &loc(&ns, "/view"), MountFlags::empty()).unwrap();
    ns.mount(Tmpfs::new_default(), &loc(&ns, "/src/inner"), MountFlags::empty()).unwrap();
    write_file(&ns, &r, "/data", b"");
    ns.bind(&loc(&ns, "/data"), &loc(&ns, "/src/fmp"), MountFlags::empty()).unwrap();
    assert_eq!(err(ns.rmdir_path(&r, None, "/view/inner")), Errno::BUSY);
    assert_eq!(err(ns.rename_path(&r, None, "/view/inner", "/view/x", RenameFlags::empty())), Errno::BUSY);
    assert_eq!(err(ns.unlink_path(&r, None, "/view/fmp")), Errno::BUSY);
    // Through the bind the later mount is not visible (binds are not recursive), yet
    // the directory is the same one.
    let through_bind = loc(&ns, "/view/inner");
    let direct = loc(&ns, "/src/inner");
    assert!(direct.is_mount_root());
    assert_eq!(through_bind.mount.id(), loc(&ns, "/view").mount.id());
    assert_ne!(through_bind.mount.id(), direct.mount.id());
    // After unmounting, removal works.
    ns.unmount(&loc(&ns, "/src/inner"), false).unwrap();
    ns.rmdir_path(&r, None, "/view/inner").unwrap();
    ns.unmount(&loc(&ns, "/mp"), false).unwrap();
    ns.rmdir_path(&r, None, "/mp").unwrap();
}

#[test]
fn dotdot_at_mount_roots() {
    let (_fs, ns) = new_ns();
    let r = root();
    ns.mkdir(&r, None, "/a", 0o755).unwrap();
    ns.mkdir(&r, None, "/a/b", 0o755).unwrap();
    ns.mkdir(&r, None, "/a/b/mnt", 0o755).unwrap();
    let ino = |p: &str| ns.stat(&r, None, p, true).unwrap().ino;
    let b_ino = ino("/a/b");
    let m = ns.mount(Tmpfs::new_default(), &loc(&ns, "/a/b/mnt"), MountFlags::empty()).unwrap();
    ns.mkdir(&r, None, "/a/b/mnt/sub", 0o755).unwrap();
    ns.mkdir(&r, None, "/a/b/mnt/inner", 0o755).unwrap();
    ns.mount(Tmpfs::new_default(), &loc(&ns, "/a/b/mnt/inner"), MountFlags::empty()).unwrap();
    assert_eq!(ino("/a/b/mnt/.."), b_ino);
    assert_eq!(ino("/a/b/mnt/sub/../.."), b_ino);
    assert_eq!(ino("/a/b/mnt/inner/../.."), b_ino);
    assert_eq!(ino("/a/b/mnt/inner/.."), ino("/a/b/mnt"));
    assert_eq!(loc(&ns, "/a/b/mnt/inner/..").mount.id(), m.id());
    // Relative to a cwd at the mount root.
    let cwd = loc(&ns, "/a/b/mnt");
    assert_eq!(ns.stat(&r, Some(&cwd), "..", true).unwrap().ino, b_ino);
    assert_eq!(ns.resolve(&r, Some(&cwd), "..", true).unwrap().mount.id(), ns.root_mount().id());
    assert_eq!(ns.stat(&r, Some(&cwd), "../../../../../a", true).unwrap().ino, ino("/a"));
    // A symlink in the mount climbing out of it.
    ns.symlink(&r, None, "../..", "/a/b/mnt/up").unwrap();
    assert_eq!(ino("/a/b/mnt/up"), ino("/a"));
    // Through a bind of a subdirectory: `..` goes to the bind's mount point's parent.
    ns.mkdir(&r, None, "/view", 0o755).unwrap();
    ns.bind(&loc(&ns, "/a/b/mnt/sub"), &loc(&ns, "/view"), MountFlags::empty()).unwrap();
    assert_eq!(ino("/view/.."), ino("/"));
    assert_eq!(ino("/view"), ino("/a/b/mnt/sub"));
}

#[test]
fn dotdot_never_above_the_namespace_root() {
    let (_fs, ns) = new_ns();
    let r = root();
    ns.mkdir(&r, None, "/a", 0o755).unwrap();
    write_file(&ns, &r, "/lower", b"");
    let root_ino = ns.stat(&r, None, "/", true).unwrap().ino;
    for p in ["/..", "/../..", "/a/../..", "/a/../../../.", "/./../a/.."] {
        assert_eq!(ns.stat(&r, None, p, true).unwrap().ino, root_ino, "{p}");
    }
    let cwd = loc(&ns, "/a");
    assert_eq!(ns.stat(&r, Some(&cwd), "../../..", true).unwrap().ino, root_ino);
    ns.symlink(&r, None, "../../../../../../..", "/a/up").unwrap();
    assert_eq!(ns.stat(&r, None, "/a/up", true).unwrap().ino, root_ino);
    assert_eq!(ns.parent_of(&ns.root()).node.ino(), root_ino);

    // A mount stacked on `/`: the root is its root, and `..` stays there instead of
    // uncovering the filesystem underneath.
    let top = Tmpfs::new_default();
    let m = ns.mount(top, &ns.root(), MountFlags::empty()).unwrap();
    assert_eq!(ns.root().mount.id(), m.id());
    let top_ino = ns.stat(&r, None, "/", true).unwrap().ino;
    write_file(&ns, &r, "/upper", b"");
    for p in ["/..", "/../..", "/../.", "/./../../."] {
        let l = ns.resolve(&r, None, p, true).unwrap();
        assert_eq!((l.mount.id(), l.node.ino()), (m.id(), top_ino), "{p}");
    }
    assert_eq!(err(ns.stat(&r, None, "/../lower", true)), Errno::NOENT);
    assert_eq!(err(ns.stat(&r, None, "/../../a", true)), Errno::NOENT);
    ns.stat(&r, None, "/../upper", true).unwrap();
}
