//! Linux discretionary access control through the namespace operations: owner,
//! group and other bits, capabilities, search permission on every directory walked,
//! the sticky bit, setgid directories, setuid/setgid clearing, chown/chmod/utimes
//! ownership rules and xattr namespaces. Expected values were checked on Linux 6.18
//! (kernel tmpfs, fsuid switched per case).

use sandfs_tmpfs::Tmpfs;
use sandfs_vfs::ops::Make;
use sandfs_vfs::perm::{MAY_EXEC, MAY_READ, MAY_WRITE};
use sandfs_vfs::{
    Caps, Creds, Errno, FileType, Location, MountFlags, MountNamespace, OpenFlags, RenameFlags, SetAttr,
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

fn new_ns() -> Arc<MountNamespace> {
    MountNamespace::new(Tmpfs::new_default(), MountFlags::empty())
}

fn loc(ns: &MountNamespace, path: &str) -> Location {
    ns.resolve(&root(), None, path, false).unwrap_or_else(|e| panic!("resolve {path}: {e}"))
}

/// Create `path` as root with exactly `mode`, owned by uid:gid.
fn file(ns: &MountNamespace, path: &str, mode: u32, uid: u32, gid: u32) {
    let f = ns.open_path(&root(), None, path, OpenFlags::WRITE | OpenFlags::CREAT, 0o600).unwrap();
    f.write(b"data").unwrap();
    chown_chmod(ns, path, mode, uid, gid);
}

fn dir(ns: &MountNamespace, path: &str, mode: u32, uid: u32, gid: u32) {
    ns.mkdir(&root(), None, path, 0o700).unwrap();
    chown_chmod(ns, path, mode, uid, gid);
}

fn chown_chmod(ns: &MountNamespace, path: &str, mode: u32, uid: u32, gid: u32) {
    let r = root();
    ns.setattr_path(&r, None, path, &SetAttr { uid: Some(uid), gid: Some(gid), ..Default::default() }, false)
        .unwrap();
    ns.setattr_path(&r, None, path, &SetAttr { mode: Some(mode), ..Default::default() }, false).unwrap();
}

fn mode(ns: &MountNamespace, path: &str) -> u32 {
    ns.stat(&root(), None, path, false).unwrap().mode
}

fn open(ns: &MountNamespace, c: &Creds, path: &str, flags: OpenFlags) -> sandfs_vfs::Result<()> {
    ns.open_path(c, None, path, flags, 0o644).map(drop)
}

const R: OpenFlags = OpenFlags::READ;
const W: OpenFlags = OpenFlags::WRITE;

#[test]
fn owner_group_other_bits() {
    let ns = new_ns();
    file(&ns, "/f", 0o640, 1000, 100);
    let owner = Creds::user(1000, 1000, &[]);
    let member = Creds::user(1001, 100, &[]);
    let supp = Creds::user(1002, 200, &[7, 100]);
    let other = Creds::user(1003, 200, &[]);
    open(&ns, &owner, "/f", R | W).unwrap();
    open(&ns, &member, "/f", R).unwrap();
    assert_eq!(err(open(&ns, &member, "/f", W)), Errno::ACCESS);
    open(&ns, &supp, "/f", R).unwrap();
    assert_eq!(err(open(&ns, &supp, "/f", R | W)), Errno::ACCESS);
    assert_eq!(err(open(&ns, &other, "/f", R)), Errno::ACCESS);
    assert_eq!(err(open(&ns, &other, "/f", R | OpenFlags::TRUNC)), Errno::ACCESS);
    // The owner class is used alone even when group/other would allow more.
    chown_chmod(&ns, "/f", 0o077, 1000, 100);
    assert_eq!(err(open(&ns, &owner, "/f", R)), Errno::ACCESS);
    open(&ns, &member, "/f", R | W).unwrap();
    open(&ns, &other, "/f", R | W).unwrap();
    // And the group class alone for members.
    chown_chmod(&ns, "/f", 0o707, 1000, 100);
    assert_eq!(err(open(&ns, &member, "/f", R)), Errno::ACCESS);
    assert_eq!(err(open(&ns, &supp, "/f", R)), Errno::ACCESS);
    open(&ns, &other, "/f", R).unwrap();
    // access(2).
    let f = loc(&ns, "/f");
    chown_chmod(&ns, "/f", 0o754, 1000, 100);
    ns.access(&owner, &f, MAY_READ | MAY_WRITE | MAY_EXEC).unwrap();
    ns.access(&member, &f, MAY_READ | MAY_EXEC).unwrap();
    assert_eq!(err(ns.access(&member, &f, MAY_WRITE)), Errno::ACCESS);
    ns.access(&other, &f, MAY_READ).unwrap();
    assert_eq!(err(ns.access(&other, &f, MAY_EXEC)), Errno::ACCESS);
    ns.access(&other, &f, 0).unwrap();
}

#[test]
fn capabilities_override_dac() {
    let ns = new_ns();
    let r = root();
    file(&ns, "/none", 0o000, 1000, 1000);
    file(&ns, "/x", 0o100, 1000, 1000);
    dir(&ns, "/d", 0o000, 1000, 1000);
    file(&ns, "/d/inner", 0o644, 1000, 1000);
    // Root reads and writes anything, searches any directory...
    open(&ns, &r, "/none", R | W).unwrap();
    ns.stat(&r, None, "/d/inner", true).unwrap();
    ns.access(&r, &loc(&ns, "/d"), MAY_READ | MAY_WRITE | MAY_EXEC).unwrap();
    // ...but executes a file only when some execute bit is set.
    assert_eq!(err(ns.access(&r, &loc(&ns, "/none"), MAY_EXEC)), Errno::ACCESS);
    ns.access(&r, &loc(&ns, "/x"), MAY_EXEC).unwrap();
    // CAP_DAC_READ_SEARCH alone: read files, read and search directories, no writes.
    let mut rs = Creds::user(2000, 2000, &[]);
    rs.caps = Caps::DAC_READ_SEARCH;
    open(&ns, &rs, "/none", R).unwrap();
    assert_eq!(err(open(&ns, &rs, "/none", W)), Errno::ACCESS);
    ns.stat(&rs, None, "/d/inner", true).unwrap();
    assert_eq!(err(ns.mkdir(&rs, None, "/d/new", 0o755)), Errno::ACCESS);
    assert_eq!(err(ns.access(&rs, &loc(&ns, "/x"), MAY_EXEC)), Errno::ACCESS);
    // CAP_DAC_OVERRIDE alone: the same as root for DAC.
    let mut ov = Creds::user(2000, 2000, &[]);
    ov.caps = Caps::DAC_OVERRIDE;
    open(&ns, &ov, "/none", R | W).unwrap();
    ns.mkdir(&ov, None, "/d/new", 0o755).unwrap();
    // Without capabilities: nothing.
    let u = Creds::user(2000, 2000, &[]);
    assert_eq!(err(ns.stat(&u, None, "/d/inner", true)), Errno::ACCESS);
}

#[test]
fn search_permission_on_every_directory_walked() {
    let ns = new_ns();
    dir(&ns, "/a", 0o755, 0, 0);
    dir(&ns, "/a/b", 0o755, 0, 0);
    dir(&ns, "/a/b/c", 0o777, 0, 0);
    file(&ns, "/a/b/c/f", 0o666, 0, 0);
    let u = Creds::user(1000, 1000, &[]);
    ns.stat(&u, None, "/a/b/c/f", true).unwrap();
    let cwd_c = loc(&ns, "/a/b/c");
    // Remove search permission at each level in turn.
    for (p, m) in [("/", 0o1776), ("/a", 0o754), ("/a/b", 0o700), ("/a/b/c", 0o776)] {
        let old = mode(&ns, p);
        ns.setattr_path(&root(), None, p, &SetAttr { mode: Some(m), ..Default::default() }, true).unwrap();
        assert_eq!(err(ns.stat(&u, None, "/a/b/c/f", true)), Errno::ACCESS, "stat with {p} {m:o}");
        assert_eq!(err(open(&ns, &u, "/a/b/c/f", R)), Errno::ACCESS, "open with {p} {m:o}");
        assert_eq!(err(ns.mkdir(&u, None, "/a/b/c/new", 0o755)), Errno::ACCESS, "mkdir with {p} {m:o}");
        assert_eq!(err(ns.unlink_path(&u, None, "/a/b/c/f")), Errno::ACCESS, "unlink with {p} {m:o}");
        ns.setattr_path(&root(), None, p, &SetAttr { mode: Some(old), ..Default::default() }, true).unwrap();
    }
    // Relative to a cwd without search permission.
    ns.setattr_path(&root(), None, "/a/b/c", &SetAttr { mode: Some(0o776), ..Default::default() }, true)
        .unwrap();
    assert_eq!(err(ns.stat(&u, Some(&cwd_c), "f", true)), Errno::ACCESS);
    assert_eq!(err(ns.stat(&u, Some(&cwd_c), "..", true)), Errno::ACCESS);
    // `.` and `..` need search permission on the directory they start from, too.
    assert_eq!(err(ns.stat(&u, None, "/a/b/c/..", true)), Errno::ACCESS);
    // Root is not stopped.
    ns.stat(&root(), Some(&cwd_c), "f", true).unwrap();
    // Symlink targets are walked with the same checks.
    ns.symlink(&root(), None, "/a/b/c/f", "/link").unwrap();
    assert_eq!(err(ns.stat(&u, None, "/link", true)), Errno::ACCESS);
    ns.stat(&u, None, "/link", false).unwrap();
    // Write but no search on the parent: no creation either.
    dir(&ns, "/wx", 0o776, 0, 0);
    assert_eq!(err(open(&ns, &u, "/wx/new", W | OpenFlags::CREAT)), Errno::ACCESS);
    // Search but no write: EACCES for every change of entries.
    dir(&ns, "/rx", 0o755, 0, 0);
    file(&ns, "/rx/f", 0o666, 1000, 1000);
    assert_eq!(err(open(&ns, &u, "/rx/new", W | OpenFlags::CREAT)), Errno::ACCESS);
    assert_eq!(err(ns.mkdir(&u, None, "/rx/d", 0o755)), Errno::ACCESS);
    assert_eq!(err(ns.symlink(&u, None, "x", "/rx/l")), Errno::ACCESS);
    assert_eq!(err(ns.link_path(&u, None, "/rx/f", "/rx/g")), Errno::ACCESS);
    assert_eq!(err(ns.unlink_path(&u, None, "/rx/f")), Errno::ACCESS);
    assert_eq!(err(ns.rename_path(&u, None, "/rx/f", "/rx/g", RenameFlags::empty())), Errno::ACCESS);
    // Renaming a name onto another name of the same inode is a no-op that needs no
    // write permission (Linux returns 0 before any permission check).
    ns.link_path(&root(), None, "/rx/f", "/rx/h").unwrap();
    ns.rename_path(&u, None, "/rx/f", "/rx/h", RenameFlags::empty()).unwrap();
    assert_eq!(ns.stat(&u, None, "/rx/f", true).unwrap().nlink, 2);
    // But writing the file itself is fine (owner, 0666).
    open(&ns, &u, "/rx/f", W).unwrap();
}

#[test]
fn sticky_directory_deletion_and_rename() {
    let ns = new_ns();
    dir(&ns, "/tmp", 0o1777, 0, 0);
    let a = Creds::user(1000, 1000, &[]);
    let b = Creds::user(1001, 1001, &[]);
    let r = root();
    for (c, name) in [(&a, "a"), (&a, "a2"), (&a, "a3"), (&b, "b"), (&b, "b2")] {
        ns.open_path(c, None, format!("/tmp/{name}"), W | OpenFlags::CREAT, 0o666).unwrap();
    }
    ns.mkdir(&a, None, "/tmp/adir", 0o777).unwrap();
    // B may not remove or rename away A's entries, nor rename over them.
    assert_eq!(err(ns.unlink_path(&b, None, "/tmp/a")), Errno::PERM);
    assert_eq!(err(ns.rmdir_path(&b, None, "/tmp/adir")), Errno::PERM);
    assert_eq!(err(ns.rename_path(&b, None, "/tmp/a", "/tmp/c", RenameFlags::empty())), Errno::PERM);
    assert_eq!(err(ns.rename_path(&b, None, "/tmp/b", "/tmp/a", RenameFlags::empty())), Errno::PERM);
    assert_eq!(err(ns.rename_path(&b, None, "/tmp/b", "/tmp/a", RenameFlags::EXCHANGE)), Errno::PERM);
    // B may write A's 0666 file, and link it (protected_hardlinks allows rw files).
    ns.open_path(&b, None, "/tmp/a", W, 0).unwrap();
    ns.link_path(&b, None, "/tmp/a", "/tmp/blink").unwrap();
    // B's own entries: fine.
    ns.rename_path(&b, None, "/tmp/b", "/tmp/b3", RenameFlags::empty()).unwrap();
    ns.unlink_path(&b, None, "/tmp/b3").unwrap();
    // A removes its own; the directory owner and root remove anyone's.
    ns.unlink_path(&a, None, "/tmp/a").unwrap();
    dir(&ns, "/own", 0o1777, 1001, 1001);
    ns.open_path(&a, None, "/own/x", W | OpenFlags::CREAT, 0o644).unwrap();
    ns.rename_path(&b, None, "/own/x", "/own/y", RenameFlags::empty()).unwrap();
    ns.unlink_path(&b, None, "/own/y").unwrap();
    ns.unlink_path(&r, None, "/tmp/a2").unwrap();
    let mut fowner = Creds::user(1005, 1005, &[]);
    fowner.caps = Caps::FOWNER;
    ns.unlink_path(&fowner, None, "/tmp/a3").unwrap();
    // Without the sticky bit, anyone with write permission removes anything.
    dir(&ns, "/open", 0o777, 0, 0);
    ns.open_path(&a, None, "/open/a", W | OpenFlags::CREAT, 0o644).unwrap();
    ns.unlink_path(&b, None, "/open/a").unwrap();
}

#[test]
fn rename_of_a_directory_to_another_parent_needs_write_on_it() {
    let ns = new_ns();
    let u = Creds::user(1000, 1000, &[]);
    dir(&ns, "/p1", 0o777, 0, 0);
    dir(&ns, "/p2", 0o777, 0, 0);
    dir(&ns, "/p1/d", 0o555, 1000, 1000);
    // Same parent: no write permission on the directory itself needed.
    ns.rename_path(&u, None, "/p1/d", "/p1/e", RenameFlags::empty()).unwrap();
    // Other parent: `..` changes, so EACCES.
    assert_eq!(err(ns.rename_path(&u, None, "/p1/e", "/p2/e", RenameFlags::empty())), Errno::ACCESS);
    ns.setattr_path(&u, None, "/p1/e", &SetAttr { mode: Some(0o755), ..Default::default() }, true).unwrap();
    ns.rename_path(&u, None, "/p1/e", "/p2/e", RenameFlags::empty()).unwrap();
}

#[test]
fn setgid_directories_pass_group_and_bit() {
    let ns = new_ns();
    dir(&ns, "/g", 0o2777, 0, 50);
    let non_member = Creds::user(1000, 1000, &[]);
    let member = Creds::user(1001, 1001, &[50]);
    let r = root();
    // A file gets the directory's group; a directory also gets the setgid bit.
    ns.open_path(&non_member, None, "/g/f", W | OpenFlags::CREAT, 0o644).unwrap();
    let a = ns.stat(&r, None, "/g/f", false).unwrap();
    assert_eq!((a.uid, a.gid, a.mode), (1000, 50, 0o644));
    ns.mkdir(&non_member, None, "/g/d", 0o755).unwrap();
    let a = ns.stat(&r, None, "/g/d", false).unwrap();
    assert_eq!((a.uid, a.gid, a.mode), (1000, 50, 0o2755));
    // And on down.
    ns.mkdir(&non_member, None, "/g/d/e", 0o700).unwrap();
    let a = ns.stat(&r, None, "/g/d/e", false).unwrap();
    assert_eq!((a.gid, a.mode), (50, 0o2700));
    // Other node types get the group too.
    ns.mknod(&non_member, None, "/g/p", Make::Fifo, 0o644).unwrap();
    assert_eq!(ns.stat(&r, None, "/g/p", false).unwrap().gid, 50);
    ns.symlink(&non_member, None, "f", "/g/l").unwrap();
    assert_eq!(ns.stat(&r, None, "/g/l", false).unwrap().gid, 50);
    // A non-member asking for setgid+group-exec on a new file loses setgid; without
    // group-exec, or as a member, or as root it stays.
    ns.open_path(&non_member, None, "/g/sx", W | OpenFlags::CREAT, 0o2755).unwrap();
    assert_eq!(mode(&ns, "/g/sx"), 0o755);
    ns.open_path(&non_member, None, "/g/s", W | OpenFlags::CREAT, 0o2644).unwrap();
    assert_eq!(mode(&ns, "/g/s"), 0o2644);
    ns.mknod(&non_member, None, "/g/sp", Make::Fifo, 0o2770).unwrap();
    assert_eq!(mode(&ns, "/g/sp"), 0o770);
    ns.open_path(&member, None, "/g/mx", W | OpenFlags::CREAT, 0o2755).unwrap();
    assert_eq!(mode(&ns, "/g/mx"), 0o2755);
    ns.open_path(&r, None, "/g/rx", W | OpenFlags::CREAT, 0o2755).unwrap();
    let a = ns.stat(&r, None, "/g/rx", false).unwrap();
    assert_eq!((a.uid, a.gid, a.mode), (0, 50, 0o2755));
    // Outside a setgid directory the creator's group is used.
    dir(&ns, "/plain", 0o777, 0, 50);
    ns.mkdir(&non_member, None, "/plain/d", 0o755).unwrap();
    let a = ns.stat(&r, None, "/plain/d", false).unwrap();
    assert_eq!((a.gid, a.mode), (1000, 0o755));
    // mkdir never sets setuid/setgid from the requested mode (Linux masks it with
    // S_IRWXUGO|S_ISVTX); the sticky bit is kept.
    ns.mkdir(&r, None, "/plain/m", 0o7777).unwrap();
    assert_eq!(mode(&ns, "/plain/m"), 0o1777);
    ns.mkdir(&r, None, "/g/m", 0o6777).unwrap();
    assert_eq!(mode(&ns, "/g/m"), 0o2777);
}

#[test]
fn setuid_and_setgid_cleared_on_write_and_truncate() {
    let ns = new_ns();
    dir(&ns, "/d", 0o777, 0, 0);
    let u = Creds::user(1000, 1000, &[]);
    let member = Creds::user(1001, 1001, &[60]);
    let r = root();
    let reset = |p: &str, m: u32, gid: u32| chown_chmod(&ns, p, m, 0, gid);
    file(&ns, "/d/f", 0o6777, 0, 60);
    // An unprivileged write clears both (setgid with group-exec).
    let f = ns.open_path(&u, None, "/d/f", W, 0).unwrap();
    assert_eq!(mode(&ns, "/d/f"), 0o6777);
    f.write(b"x").unwrap();
    assert_eq!(mode(&ns, "/d/f"), 0o777);
    // pwrite, ftruncate and fallocate too.
    reset("/d/f", 0o6777, 60);
    f.write_at(b"y", 10).unwrap();
    assert_eq!(mode(&ns, "/d/f"), 0o777);
    reset("/d/f", 0o6777, 60);
    f.truncate(3).unwrap();
    assert_eq!(mode(&ns, "/d/f"), 0o777);
    reset("/d/f", 0o6777, 60);
    f.fallocate(sandfs_vfs::FallocFlags::empty(), 0, 8192).unwrap();
    assert_eq!(mode(&ns, "/d/f"), 0o777);
    drop(f);
    // truncate(2) by path and open with O_TRUNC.
    reset("/d/f", 0o6777, 60);
    ns.setattr_path(&u, None, "/d/f", &SetAttr { size: Some(1), ..Default::default() }, true).unwrap();
    assert_eq!(mode(&ns, "/d/f"), 0o777);
    reset("/d/f", 0o6777, 60);
    ns.open_path(&u, None, "/d/f", W | OpenFlags::TRUNC, 0).unwrap();
    assert_eq!(mode(&ns, "/d/f"), 0o777);
    // setgid without group-exec: cleared for a non-member, kept for a member (Linux
    // 6.x setattr_should_drop_sgid); setuid always cleared.
    reset("/d/f", 0o6666, 60);
    ns.open_path(&member, None, "/d/f", W, 0).unwrap().write(b"m").unwrap();
    assert_eq!(mode(&ns, "/d/f"), 0o2666);
    reset("/d/f", 0o2666, 60);
    ns.open_path(&u, None, "/d/f", W, 0).unwrap().write(b"u").unwrap();
    assert_eq!(mode(&ns, "/d/f"), 0o666);
    // Root (CAP_FSETID) keeps them on write and truncate.
    reset("/d/f", 0o6777, 60);
    let f = ns.open_path(&r, None, "/d/f", W | OpenFlags::TRUNC, 0).unwrap();
    f.write(b"root").unwrap();
    f.truncate(1).unwrap();
    ns.setattr_path(&r, None, "/d/f", &SetAttr { size: Some(0), ..Default::default() }, true).unwrap();
    assert_eq!(mode(&ns, "/d/f"), 0o6777);
    drop(f);
    // A failed permission check changes nothing.
    reset("/d/f", 0o6755, 60);
    assert_eq!(err(ns.open_path(&u, None, "/d/f", W, 0)), Errno::ACCESS);
    assert_eq!(mode(&ns, "/d/f"), 0o6755);
    // Directories are untouched by chown's clearing.
    dir(&ns, "/d/sg", 0o2775, 0, 60);
    ns.setattr_path(&r, None, "/d/sg", &SetAttr { gid: Some(61), ..Default::default() }, true).unwrap();
    assert_eq!(mode(&ns, "/d/sg"), 0o2775);
}

#[test]
fn chown_and_chmod_rules() {
    let ns = new_ns();
    dir(&ns, "/d", 0o777, 0, 0);
    let u = Creds::user(1000, 1000, &[20, 30]);
    let other = Creds::user(1001, 1001, &[20]);
    let r = root();
    ns.open_path(&u, None, "/d/mine", W | OpenFlags::CREAT, 0o644).unwrap();
    let set =
        |c: &Creds, s: SetAttr| ns.setattr_path(c, None, "/d/mine", &s, true).map(|a| (a.uid, a.gid, a.mode));
    let chown = |uid: Option<u32>, gid: Option<u32>| SetAttr { uid, gid, ..Default::default() };
    let chmod = |m: u32| SetAttr { mode: Some(m), ..Default::default() };
    // The owner may give the file to a group it is in, not to another user or group.
    assert_eq!(set(&u, chown(None, Some(20))).unwrap(), (1000, 20, 0o644));
    assert_eq!(set(&u, chown(None, Some(30))).unwrap(), (1000, 30, 0o644));
    assert_eq!(set(&u, chown(None, Some(1000))).unwrap(), (1000, 1000, 0o644));
    assert_eq!(err(set(&u, chown(None, Some(40)))), Errno::PERM);
    assert_eq!(err(set(&u, chown(Some(1001), None))), Errno::PERM);
    assert_eq!(set(&u, chown(Some(1000), Some(1000))).unwrap(), (1000, 1000, 0o644));
    // A non-owner may do neither, even to a group it is in, even a no-op.
    assert_eq!(err(set(&other, chown(None, Some(20)))), Errno::PERM);
    assert_eq!(err(set(&other, chown(Some(1000), None))), Errno::PERM);
    assert_eq!(err(set(&other, chmod(0o777))), Errno::PERM);
    // Root, and CAP_CHOWN, may.
    assert_eq!(set(&r, chown(Some(5), Some(6))).unwrap(), (5, 6, 0o644));
    let mut cc = Creds::user(1002, 1002, &[]);
    cc.caps = Caps::CHOWN;
    assert_eq!(set(&cc, chown(Some(1000), Some(1000))).unwrap(), (1000, 1000, 0o644));
    // chmod: owner yes; setgid dropped when the owner is not in the file's group.
    assert_eq!(set(&u, chmod(0o2755)).unwrap().2, 0o2755);
    set(&r, chown(None, Some(77))).unwrap();
    assert_eq!(set(&u, chmod(0o2755)).unwrap().2, 0o755);
    assert_eq!(set(&u, chmod(0o4755)).unwrap().2, 0o4755);
    assert_eq!(set(&r, chmod(0o2755)).unwrap().2, 0o2755);
    let mut fo = Creds::user(1003, 1003, &[]);
    fo.caps = Caps::FOWNER;
    assert_eq!(set(&fo, chmod(0o600)).unwrap().2, 0o600);
    // chown clears setuid, and setgid with group-exec, even for root; setgid without
    // group-exec survives for root (CAP_FSETID).
    set(&r, chmod(0o6755)).unwrap();
    assert_eq!(set(&r, chown(Some(0), Some(0))).unwrap(), (0, 0, 0o755));
    set(&r, chmod(0o2644)).unwrap();
    assert_eq!(set(&r, chown(Some(5), Some(5))).unwrap(), (5, 5, 0o2644));
    set(&r, chown(Some(1000), Some(1000))).unwrap();
    set(&r, chmod(0o6755)).unwrap();
    assert_eq!(set(&u, chown(None, Some(20))).unwrap(), (1000, 20, 0o755));
    // Ownership changes of a symlink itself (lchown) work for root.
    ns.symlink(&r, None, "mine", "/d/l").unwrap();
    ns.setattr_path(&r, None, "/d/l", &chown(Some(9), Some(9)), false).unwrap();
    assert_eq!(ns.stat(&r, None, "/d/l", false).unwrap().uid, 9);
    assert_eq!(ns.stat(&r, None, "/d/mine", true).unwrap().uid, 1000);
}

#[test]
fn utimes_ownership_rules() {
    let ns = new_ns();
    dir(&ns, "/d", 0o777, 0, 0);
    file(&ns, "/d/rw", 0o666, 0, 0);
    file(&ns, "/d/ro", 0o644, 0, 0);
    let u = Creds::user(1000, 1000, &[]);
    let t = TimeSet::At(Timespec { sec: 1234, nsec: 5 });
    let times = |a: Option<TimeSet>, m: Option<TimeSet>| SetAttr { atime: a, mtime: m, ..Default::default() };
    let set = |c: &Creds, p: &str, s: SetAttr| ns.setattr_path(c, None, p, &s, true);
    let now = Some(TimeSet::Now);
    // Explicit times need ownership, whatever the write permission.
    assert_eq!(err(set(&u, "/d/rw", times(Some(t), Some(t)))), Errno::PERM);
    assert_eq!(err(set(&u, "/d/rw", times(None, Some(t)))), Errno::PERM);
    assert_eq!(err(set(&u, "/d/rw", times(Some(t), now))), Errno::PERM);
    // Only "both now" (utimes(NULL)) is allowed with write permission alone; one NOW
    // and one OMIT counts as explicit (ATTR_TIMES_SET): EPERM.
    set(&u, "/d/rw", times(now, now)).unwrap();
    assert_eq!(err(set(&u, "/d/rw", times(now, None))), Errno::PERM);
    assert_eq!(err(set(&u, "/d/rw", times(None, now))), Errno::PERM);
    // Without write permission: EACCES for "now", EPERM for explicit.
    assert_eq!(err(set(&u, "/d/ro", times(now, now))), Errno::ACCESS);
    assert_eq!(err(set(&u, "/d/ro", times(Some(t), Some(t)))), Errno::PERM);
    // The owner may do anything, even without write permission.
    chown_chmod(&ns, "/d/ro", 0o444, 1000, 1000);
    let a = set(&u, "/d/ro", times(Some(t), None)).unwrap();
    assert_eq!(a.atime, Timespec { sec: 1234, nsec: 5 });
    let a = set(&u, "/d/ro", times(None, Some(t))).unwrap();
    assert_eq!(a.mtime, Timespec { sec: 1234, nsec: 5 });
    set(&u, "/d/ro", times(now, now)).unwrap();
    set(&u, "/d/ro", times(now, None)).unwrap();
    // Root and CAP_FOWNER may set explicit times on anything.
    set(&root(), "/d/rw", times(Some(t), Some(t))).unwrap();
    let mut fo = Creds::user(1003, 1003, &[]);
    fo.caps = Caps::FOWNER;
    let a = set(&fo, "/d/rw", times(Some(t), Some(t))).unwrap();
    assert_eq!((a.atime, a.mtime), (Timespec { sec: 1234, nsec: 5 }, Timespec { sec: 1234, nsec: 5 }));
    // Truncate needs write permission (EACCES), not ownership.
    let other = Creds::user(1001, 1001, &[]);
    set(&other, "/d/rw", SetAttr { size: Some(0), ..Default::default() }).unwrap();
    chown_chmod(&ns, "/d/ro", 0o644, 1000, 1000);
    assert_eq!(err(set(&other, "/d/ro", SetAttr { size: Some(0), ..Default::default() })), Errno::ACCESS);
    assert_eq!(err(set(&root(), "/d", SetAttr { size: Some(0), ..Default::default() })), Errno::ISDIR);
}

#[test]
fn xattr_namespaces_and_flags() {
    let ns = new_ns();
    let r = root();
    dir(&ns, "/d", 0o777, 0, 0);
    file(&ns, "/d/f", 0o666, 1000, 1000);
    ns.symlink(&r, None, "f", "/d/l").unwrap();
    ns.mknod(&r, None, "/d/p", Make::Fifo, 0o666).unwrap();
    ns.mknod(&r, None, "/d/c", Make::CharDev(0x0501), 0o666).unwrap();
    let u = Creds::user(1000, 1000, &[]);
    let other = Creds::user(1001, 1001, &[]);
    let f = loc(&ns, "/d/f");
    let none = XattrFlags::empty();
    // user.* on regular files and directories.
    ns.setxattr(&u, &f, b"user.a", b"1", none).unwrap();
    ns.setxattr(&u, &loc(&ns, "/d"), b"user.d", b"dir", none).unwrap();
    assert_eq!(ns.getxattr(&other, &f, b"user.a").unwrap(), b"1");
    assert_eq!(ns.getxattr(&u, &loc(&ns, "/d"), b"user.d").unwrap(), b"dir");
    // ...not on symlinks, fifos or devices: EPERM to set, ENODATA to get.
    for p in ["/d/l", "/d/p", "/d/c"] {
        let l = loc(&ns, p);
        assert_eq!(err(ns.setxattr(&r, &l, b"user.a", b"1", none)), Errno::PERM, "{p}");
        assert_eq!(err(ns.getxattr(&r, &l, b"user.a")), Errno::NODATA, "{p}");
        assert_eq!(err(ns.removexattr(&r, &l, b"user.a")), Errno::PERM, "{p}");
        // trusted.* works on them for root.
        ns.setxattr(&r, &l, b"trusted.t", b"v", none).unwrap();
        assert_eq!(ns.getxattr(&r, &l, b"trusted.t").unwrap(), b"v");
    }
    // user.* follows the file's permission bits.
    chown_chmod(&ns, "/d/f", 0o640, 1000, 1000);
    assert_eq!(err(ns.getxattr(&other, &f, b"user.a")), Errno::ACCESS);
    assert_eq!(err(ns.setxattr(&other, &f, b"user.b", b"1", none)), Errno::ACCESS);
    assert_eq!(err(ns.removexattr(&other, &f, b"user.a")), Errno::ACCESS);
    // A sticky directory's user.* attributes belong to its owner.
    dir(&ns, "/sticky", 0o1777, 0, 0);
    assert_eq!(err(ns.setxattr(&u, &loc(&ns, "/sticky"), b"user.x", b"1", none)), Errno::PERM);
    ns.setxattr(&r, &loc(&ns, "/sticky"), b"user.x", b"1", none).unwrap();
    // trusted.* needs CAP_SYS_ADMIN: EPERM to set or remove, ENODATA to get, hidden
    // from the list.
    ns.setxattr(&r, &f, b"trusted.t", b"secret", none).unwrap();
    assert_eq!(err(ns.setxattr(&u, &f, b"trusted.t2", b"1", none)), Errno::PERM);
    assert_eq!(err(ns.getxattr(&u, &f, b"trusted.t")), Errno::NODATA);
    assert_eq!(err(ns.removexattr(&u, &f, b"trusted.t")), Errno::PERM);
    let mut names = ns.listxattr(&u, &f).unwrap();
    names.sort();
    assert_eq!(names, [b"user.a".to_vec()]);
    let mut names = ns.listxattr(&r, &f).unwrap();
    names.sort();
    assert_eq!(names, [b"trusted.t".to_vec(), b"user.a".to_vec()]);
    let mut admin = Creds::user(1000, 1000, &[]);
    admin.caps = Caps::SYS_ADMIN;
    assert_eq!(ns.getxattr(&admin, &f, b"trusted.t").unwrap(), b"secret");
    // XATTR_CREATE / XATTR_REPLACE.
    assert_eq!(err(ns.setxattr(&u, &f, b"user.a", b"2", XattrFlags::CREATE)), Errno::EXIST);
    assert_eq!(err(ns.setxattr(&u, &f, b"user.new", b"2", XattrFlags::REPLACE)), Errno::NODATA);
    ns.setxattr(&u, &f, b"user.a", b"2", XattrFlags::REPLACE).unwrap();
    assert_eq!(ns.getxattr(&u, &f, b"user.a").unwrap(), b"2");
    ns.setxattr(&u, &f, b"user.c", b"3", XattrFlags::CREATE).unwrap();
    assert_eq!(ns.getxattr(&u, &f, b"user.c").unwrap(), b"3");
    // Both flags: Linux tests them one after the other (EEXIST if present, ENODATA
    // if absent), it does not reject the combination.
    let both = XattrFlags::CREATE | XattrFlags::REPLACE;
    assert_eq!(err(ns.setxattr(&u, &f, b"user.a", b"4", both)), Errno::EXIST);
    assert_eq!(err(ns.setxattr(&u, &f, b"user.zz", b"4", both)), Errno::NODATA);
    // Remove; then it is gone.
    ns.removexattr(&u, &f, b"user.c").unwrap();
    assert_eq!(err(ns.getxattr(&u, &f, b"user.c")), Errno::NODATA);
    assert_eq!(err(ns.removexattr(&u, &f, b"user.c")), Errno::NODATA);
    // Unknown namespaces are not supported; empty values are fine.
    assert_eq!(err(ns.setxattr(&r, &f, b"bogus.x", b"1", none)), Errno::OPNOTSUPP);
    ns.setxattr(&u, &f, b"user.empty", b"", none).unwrap();
    assert_eq!(ns.getxattr(&u, &f, b"user.empty").unwrap(), b"");
    // Name limits.
    let long = [b"user.".as_slice(), &[b'x'; 251]].concat();
    assert_eq!(err(ns.setxattr(&u, &f, &long, b"1", none)), Errno::RANGE);
    ns.setxattr(&u, &f, &long[..255], b"1", none).unwrap();
}

#[test]
fn device_nodes_need_cap_mknod() {
    let ns = new_ns();
    dir(&ns, "/d", 0o777, 0, 0);
    let u = Creds::user(1000, 1000, &[]);
    assert_eq!(err(ns.mknod(&u, None, "/d/c", Make::CharDev(0x0103), 0o666)), Errno::PERM);
    assert_eq!(err(ns.mknod(&u, None, "/d/b", Make::BlockDev(0x0800), 0o666)), Errno::PERM);
    ns.mknod(&u, None, "/d/p", Make::Fifo, 0o666).unwrap();
    ns.mknod(&u, None, "/d/s", Make::Socket, 0o666).unwrap();
    let mut mk = Creds::user(1000, 1000, &[]);
    mk.caps = Caps::MKNOD;
    ns.mknod(&mk, None, "/d/c", Make::CharDev(0x0103), 0o666).unwrap();
    let a = ns.stat(&u, None, "/d/c", false).unwrap();
    assert_eq!((a.kind, a.rdev, a.uid), (FileType::CharDevice, 0x0103, 1000));
}
