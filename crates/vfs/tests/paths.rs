//! Path resolution: absolute and relative paths, `.` and `..`, symlinks resolved
//! inside the namespace root (also when they try to climb out), ELOOP after 40 links,
//! trailing slashes, O_NOFOLLOW / O_DIRECTORY / O_CREAT / O_EXCL, the length limits,
//! the empty path, and open files keeping an unlinked node alive. A root-only test
//! runs the same cases on a kernel tmpfs (openat2 with RESOLVE_IN_ROOT) and compares.

use sandfs_tmpfs::Tmpfs;
use sandfs_vfs::{
    Creds, Errno, FileType, Filesystem, Location, MountFlags, MountNamespace, NodeRef, OpenFile, OpenFlags,
    StatFs,
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

fn write_file(ns: &MountNamespace, path: &str, data: &[u8]) {
    let f = ns
        .open_path(&root(), None, path, OpenFlags::WRITE | OpenFlags::CREAT | OpenFlags::TRUNC, 0o644)
        .unwrap_or_else(|e| panic!("create {path}: {e}"));
    assert_eq!(f.write(data).unwrap(), data.len());
}

fn read_all(f: &OpenFile) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = f.read_at(&mut buf, out.len() as u64).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn read_path(ns: &MountNamespace, cwd: Option<&Location>, path: &str) -> sandfs_vfs::Result<Vec<u8>> {
    let f = ns.open_path(&root(), cwd, path, OpenFlags::READ, 0)?;
    Ok(read_all(&f))
}

fn mkdirs(ns: &MountNamespace, dirs: &[&str]) {
    for d in dirs {
        ns.mkdir(&root(), None, d, 0o755).unwrap_or_else(|e| panic!("mkdir {d}: {e}"));
    }
}

fn new_ns() -> (Arc<Tmpfs>, Arc<MountNamespace>) {
    let fs = Tmpfs::new_default();
    let ns = MountNamespace::new(fs.clone(), MountFlags::empty());
    (fs, ns)
}

/// A filesystem whose root is a subdirectory of a tmpfs: a namespace on it has
/// real directories above its root (where `..` and symlinks must never lead).
struct Subtree {
    fs: Arc<Tmpfs>,
    root: NodeRef,
}

impl Filesystem for Subtree {
    fn root(&self) -> NodeRef {
        self.root.clone()
    }
    fn statfs(&self) -> sandfs_vfs::Result<StatFs> {
        self.fs.statfs()
    }
    fn name(&self) -> &str {
        "subtree"
    }
}

/// A tmpfs with /secret, /etc/passwd ("host") and /jail; returns a namespace whose
/// root is /jail, holding /etc/passwd ("jail") and /dir.
fn jail() -> Arc<MountNamespace> {
    let (fs, outer) = new_ns();
    mkdirs(&outer, &["/etc", "/jail", "/jail/etc", "/jail/dir", "/jail/dir/sub"]);
    write_file(&outer, "/secret", b"SECRET");
    write_file(&outer, "/etc/passwd", b"host");
    write_file(&outer, "/jail/etc/passwd", b"jail");
    let jail_root = outer.resolve(&root(), None, "/jail", true).unwrap().node;
    MountNamespace::new(Arc::new(Subtree { fs, root: jail_root }), MountFlags::empty())
}

#[test]
fn absolute_and_relative_paths() {
    let (_fs, ns) = new_ns();
    mkdirs(&ns, &["/a", "/a/b"]);
    write_file(&ns, "/a/b/c", b"C");
    let r = root();
    let c_ino = ns.stat(&r, None, "/a/b/c", true).unwrap().ino;
    let cwd = ns.resolve(&r, None, "/a", true).unwrap();
    for p in ["b/c", "./b/./c", "b/../b/c", "../a/b/c", "../../../a/b/c", "b//c", ".//b///c"] {
        assert_eq!(ns.stat(&r, Some(&cwd), p, true).unwrap().ino, c_ino, "{p}");
    }
    for p in ["/a/b/c", "//a///b//c", "/./a/./b/./c", "/a/b/../b/c", "/a/../a/b/c"] {
        assert_eq!(ns.stat(&r, None, p, true).unwrap().ino, c_ino, "{p}");
        // Absolute paths ignore the cwd.
        assert_eq!(ns.stat(&r, Some(&cwd), p, true).unwrap().ino, c_ino, "{p}");
    }
    // A relative path without a cwd starts at the root.
    assert_eq!(ns.stat(&r, None, "a/b/c", true).unwrap().ino, c_ino);
    assert_eq!(ns.stat(&r, Some(&cwd), ".", true).unwrap().ino, cwd.node.ino());
    assert_eq!(ns.stat(&r, Some(&cwd), "..", true).unwrap().ino, ns.root().node.ino());
    assert_eq!(ns.stat(&r, None, "/", true).unwrap().kind, FileType::Directory);
    // Walking through a file, or a missing name.
    assert_eq!(err(ns.stat(&r, None, "/a/b/c/d", true)), Errno::NOTDIR);
    assert_eq!(err(ns.stat(&r, None, "/a/b/c/.", true)), Errno::NOTDIR);
    assert_eq!(err(ns.stat(&r, None, "/a/b/c/..", true)), Errno::NOTDIR);
    assert_eq!(err(ns.stat(&r, None, "/a/x/c", true)), Errno::NOENT);
    assert_eq!(err(ns.stat(&r, None, "/a/b/x", true)), Errno::NOENT);
    let file = ns.resolve(&r, None, "/a/b/c", true).unwrap();
    assert_eq!(err(ns.stat(&r, Some(&file), "x", true)), Errno::NOTDIR);
    // Relative creation and removal.
    ns.mkdir(&r, Some(&cwd), "new", 0o755).unwrap();
    assert_eq!(ns.stat(&r, None, "/a/new", true).unwrap().kind, FileType::Directory);
    ns.rmdir_path(&r, Some(&cwd), "b/../new").unwrap();
    assert_eq!(err(ns.stat(&r, None, "/a/new", true)), Errno::NOENT);
}

#[test]
fn symlinks_relative_absolute_and_chains() {
    let (_fs, ns) = new_ns();
    let r = root();
    mkdirs(&ns, &["/a", "/a/b", "/x"]);
    write_file(&ns, "/a/b/f", b"F");
    ns.symlink(&r, None, "b/f", "/a/rel").unwrap();
    ns.symlink(&r, None, "/a/b", "/x/abs").unwrap();
    ns.symlink(&r, None, "../a/rel", "/x/chain").unwrap();
    ns.symlink(&r, None, "/x/chain", "/chain2").unwrap();
    ns.symlink(&r, None, "b", "/a/dirlink").unwrap();
    assert_eq!(read_path(&ns, None, "/a/rel").unwrap(), b"F");
    assert_eq!(read_path(&ns, None, "/x/abs/f").unwrap(), b"F");
    assert_eq!(read_path(&ns, None, "/x/chain").unwrap(), b"F");
    assert_eq!(read_path(&ns, None, "/chain2").unwrap(), b"F");
    assert_eq!(read_path(&ns, None, "/a/dirlink/f").unwrap(), b"F");
    // A symlink's relative target is relative to the link's directory, not the cwd.
    let cwd = ns.resolve(&r, None, "/x", true).unwrap();
    assert_eq!(read_path(&ns, Some(&cwd), "../a/rel").unwrap(), b"F");
    assert_eq!(read_path(&ns, Some(&cwd), "abs/f").unwrap(), b"F");
    // `..` after a symlinked directory is the target's parent (physical walk).
    assert_eq!(ns.stat(&r, None, "/x/abs/..", true).unwrap().ino, ns.stat(&r, None, "/a", true).unwrap().ino);
    // lstat sees the link, stat the target.
    let l = ns.stat(&r, None, "/x/chain", false).unwrap();
    assert_eq!((l.kind, l.size), (FileType::Symlink, 8));
    assert_eq!(ns.stat(&r, None, "/x/chain", true).unwrap().kind, FileType::Regular);
    assert_eq!(ns.readlink_path(&r, None, "/x/chain").unwrap(), b"../a/rel");
    assert_eq!(err(ns.readlink_path(&r, None, "/a/b/f")), Errno::INVAL);
    // Intermediate symlinks are always followed, even for lstat.
    assert_eq!(ns.stat(&r, None, "/x/abs/f", false).unwrap().kind, FileType::Regular);
    // Dangling links.
    ns.symlink(&r, None, "nothing", "/dangling").unwrap();
    assert_eq!(err(ns.stat(&r, None, "/dangling", true)), Errno::NOENT);
    assert_eq!(ns.stat(&r, None, "/dangling", false).unwrap().kind, FileType::Symlink);
    // An empty target cannot be created.
    assert_eq!(err(ns.symlink(&r, None, "", "/empty")), Errno::NOENT);
}

#[test]
fn symlinks_cannot_climb_out_of_the_root() {
    let ns = jail();
    let r = root();
    let jail_root = ns.stat(&r, None, "/", true).unwrap().ino;
    ns.symlink(&r, None, "../../../..", "/dir/up").unwrap();
    ns.symlink(&r, None, "../../../../secret", "/dir/secret").unwrap();
    ns.symlink(&r, None, "/etc/passwd", "/dir/passwd").unwrap();
    ns.symlink(&r, None, "/../../etc/passwd", "/dir/passwd2").unwrap();
    ns.symlink(&r, None, "up/../../..", "/dir/sub/chain1").unwrap();
    ns.symlink(&r, None, "chain1/etc/../../../etc/passwd", "/dir/sub/chain2").unwrap();
    ns.symlink(&r, None, "../up", "/dir/sub/up").unwrap();
    assert_eq!(ns.stat(&r, None, "/dir/up", true).unwrap().ino, jail_root);
    assert_eq!(ns.stat(&r, None, "/dir/sub/up", true).unwrap().ino, jail_root);
    assert_eq!(ns.stat(&r, None, "/dir/sub/chain1", true).unwrap().ino, jail_root);
    assert_eq!(err(ns.stat(&r, None, "/dir/secret", true)), Errno::NOENT);
    assert_eq!(err(ns.stat(&r, None, "/../secret", true)), Errno::NOENT);
    assert_eq!(err(ns.stat(&r, None, "/dir/up/secret", true)), Errno::NOENT);
    assert_eq!(read_path(&ns, None, "/dir/passwd").unwrap(), b"jail");
    assert_eq!(read_path(&ns, None, "/dir/passwd2").unwrap(), b"jail");
    assert_eq!(read_path(&ns, None, "/dir/sub/chain2").unwrap(), b"jail");
    assert_eq!(read_path(&ns, None, "/dir/up/etc/passwd").unwrap(), b"jail");
    assert_eq!(read_path(&ns, None, "/../../etc/passwd").unwrap(), b"jail");
    let cwd = ns.resolve(&r, None, "/dir/sub", true).unwrap();
    assert_eq!(read_path(&ns, Some(&cwd), "../../../../etc/passwd").unwrap(), b"jail");
    assert_eq!(ns.parent_of(&ns.root()).node.ino(), jail_root);
    // Creating through a climbing link lands inside too.
    ns.symlink(&r, None, "../../../../../created", "/dir/mk").unwrap();
    let f = ns.open_path(&r, None, "/dir/mk", OpenFlags::WRITE | OpenFlags::CREAT, 0o644).unwrap();
    f.write(b"inside").unwrap();
    assert_eq!(read_path(&ns, None, "/created").unwrap(), b"inside");
}

#[test]
fn eloop_after_forty_links() {
    let (_fs, ns) = new_ns();
    let r = root();
    write_file(&ns, "/target", b"T");
    mkdirs(&ns, &["/d"]);
    // l1 -> target, l(i) -> l(i-1): resolving l(n) follows n links.
    for i in 1..=41 {
        let to = if i == 1 { "target".to_string() } else { format!("l{}", i - 1) };
        ns.symlink(&r, None, &to, format!("/l{i}")).unwrap();
    }
    assert_eq!(read_path(&ns, None, "/l40").unwrap(), b"T");
    assert_eq!(err(ns.stat(&r, None, "/l41", true)), Errno::LOOP);
    assert_eq!(err(read_path(&ns, None, "/l41")), Errno::LOOP);
    // lstat does not follow the last one.
    assert_eq!(ns.stat(&r, None, "/l41", false).unwrap().kind, FileType::Symlink);
    // Links on intermediate components count too: 40 ok, 41 not.
    for i in 1..=41 {
        let to = if i == 1 { "d".to_string() } else { format!("m{}", i - 1) };
        ns.symlink(&r, None, &to, format!("/m{i}")).unwrap();
    }
    write_file(&ns, "/d/f", b"D");
    assert_eq!(read_path(&ns, None, "/m40/f").unwrap(), b"D");
    assert_eq!(err(read_path(&ns, None, "/m41/f")), Errno::LOOP);
    // The budget is per resolution, nested links included: /mN/mix follows N links
    // to reach /d, then mix itself, then 10 and 9 more: N + 20 in all.
    ns.symlink(&r, None, "/m10/../l9", "/d/mix").unwrap();
    assert_eq!(ns.stat(&r, None, "/m20/mix", true).unwrap().kind, FileType::Regular);
    assert_eq!(err(ns.stat(&r, None, "/m21/mix", true)), Errno::LOOP);
    // Loops.
    ns.symlink(&r, None, "self", "/self").unwrap();
    ns.symlink(&r, None, "pong", "/ping").unwrap();
    ns.symlink(&r, None, "ping", "/pong").unwrap();
    assert_eq!(err(ns.stat(&r, None, "/self", true)), Errno::LOOP);
    assert_eq!(err(ns.stat(&r, None, "/ping/x", true)), Errno::LOOP);
    assert_eq!(err(ns.open_path(&r, None, "/ping", OpenFlags::WRITE | OpenFlags::CREAT, 0o644)), Errno::LOOP);
}

#[test]
fn trailing_slashes() {
    let (_fs, ns) = new_ns();
    let r = root();
    mkdirs(&ns, &["/dir"]);
    write_file(&ns, "/file", b"x");
    ns.symlink(&r, None, "file", "/lfile").unwrap();
    ns.symlink(&r, None, "dir", "/ldir").unwrap();
    assert_eq!(err(ns.stat(&r, None, "/file/", true)), Errno::NOTDIR);
    assert_eq!(err(ns.stat(&r, None, "/file/", false)), Errno::NOTDIR);
    assert_eq!(err(ns.stat(&r, None, "/file//", true)), Errno::NOTDIR);
    assert_eq!(err(ns.stat(&r, None, "/lfile/", true)), Errno::NOTDIR);
    assert_eq!(err(ns.stat(&r, None, "/lfile/", false)), Errno::NOTDIR);
    assert_eq!(ns.stat(&r, None, "/dir/", true).unwrap().kind, FileType::Directory);
    // A trailing slash makes even lstat follow a symlink to a directory.
    assert_eq!(ns.stat(&r, None, "/ldir/", false).unwrap().kind, FileType::Directory);
    assert_eq!(ns.stat(&r, None, "/ldir", false).unwrap().kind, FileType::Symlink);
    assert_eq!(err(ns.open_path(&r, None, "/file/", OpenFlags::READ, 0)), Errno::NOTDIR);
    assert_eq!(
        err(ns.open_path(&r, None, "/file/", OpenFlags::READ | OpenFlags::CREAT, 0o644)),
        Errno::ISDIR
    );
    assert_eq!(err(ns.open_path(&r, None, "/new/", OpenFlags::READ | OpenFlags::CREAT, 0o644)), Errno::ISDIR);
    assert_eq!(err(ns.unlink_path(&r, None, "/file/")), Errno::NOTDIR);
    assert_eq!(err(ns.unlink_path(&r, None, "/dir/")), Errno::ISDIR);
    assert_eq!(err(ns.rmdir_path(&r, None, "/file")), Errno::NOTDIR);
    assert_eq!(
        err(ns.rename_path(&r, None, "/file/", "/file2", sandfs_vfs::RenameFlags::empty())),
        Errno::NOTDIR
    );
    ns.mkdir(&r, None, "/newdir/", 0o755).unwrap();
    ns.rename_path(&r, None, "/newdir/", "/newdir2/", sandfs_vfs::RenameFlags::empty()).unwrap();
    ns.rmdir_path(&r, None, "/newdir2/").unwrap();
    assert_eq!(ns.stat(&r, None, "/", true).unwrap().kind, FileType::Directory);
}

#[test]
fn open_flags_nofollow_directory_creat_excl() {
    let ns = jail();
    let r = root();
    write_file(&ns, "/dir/file", b"x");
    ns.symlink(&r, None, "file", "/dir/link").unwrap();
    ns.symlink(&r, None, "sub", "/dir/lsub").unwrap();
    ns.symlink(&r, None, "newtarget", "/dir/dangling").unwrap();
    ns.symlink(&r, None, "/etc/created", "/dir/dangling_abs").unwrap();
    ns.symlink(&r, None, "../../../../etc/climb", "/dir/dangling_up").unwrap();
    let f = OpenFlags::READ;
    // O_NOFOLLOW: ELOOP on a final symlink only.
    assert_eq!(err(ns.open_path(&r, None, "/dir/link", f | OpenFlags::NOFOLLOW, 0)), Errno::LOOP);
    assert_eq!(
        err(ns.open_path(&r, None, "/dir/link", OpenFlags::WRITE | OpenFlags::NOFOLLOW, 0)),
        Errno::LOOP
    );
    assert_eq!(
        err(ns.open_path(&r, None, "/dir/link", f | OpenFlags::CREAT | OpenFlags::NOFOLLOW, 0o644)),
        Errno::LOOP
    );
    ns.open_path(&r, None, "/dir/lsub/", f | OpenFlags::NOFOLLOW, 0).unwrap();
    ns.open_path(&r, None, "/dir/link", f, 0).unwrap();
    // O_DIRECTORY.
    assert_eq!(err(ns.open_path(&r, None, "/dir/file", f | OpenFlags::DIRECTORY, 0)), Errno::NOTDIR);
    assert_eq!(err(ns.open_path(&r, None, "/dir/link", f | OpenFlags::DIRECTORY, 0)), Errno::NOTDIR);
    ns.open_path(&r, None, "/dir/lsub", f | OpenFlags::DIRECTORY, 0).unwrap();
    ns.open_path(&r, None, "/dir", f | OpenFlags::DIRECTORY, 0).unwrap();
    // Directories cannot be opened for writing or created over.
    assert_eq!(err(ns.open_path(&r, None, "/dir", OpenFlags::WRITE, 0)), Errno::ISDIR);
    assert_eq!(err(ns.open_path(&r, None, "/dir", f | OpenFlags::CREAT, 0o644)), Errno::ISDIR);
    assert_eq!(err(ns.open_path(&r, None, "/", f | OpenFlags::CREAT, 0o644)), Errno::ISDIR);
    assert_eq!(err(ns.open_path(&r, None, "/dir/.", f | OpenFlags::CREAT, 0o644)), Errno::ISDIR);
    // O_CREAT|O_EXCL: EEXIST on an existing name, a symlink, a dangling symlink.
    let cx = OpenFlags::WRITE | OpenFlags::CREAT | OpenFlags::EXCL;
    for p in ["/dir/file", "/dir/link", "/dir/dangling", "/dir/sub", "/dir/lsub"] {
        assert_eq!(err(ns.open_path(&r, None, p, cx, 0o644)), Errno::EXIST, "{p}");
    }
    assert_eq!(err(ns.stat(&r, None, "/dir/newtarget", true)), Errno::NOENT);
    let g = ns.open_path(&r, None, "/dir/fresh", cx, 0o640).unwrap();
    let a = g.stat().unwrap();
    assert_eq!((a.kind, a.mode, a.size), (FileType::Regular, 0o640, 0));
    // O_CREAT without O_EXCL through a dangling symlink creates the target.
    let c = OpenFlags::WRITE | OpenFlags::CREAT;
    ns.open_path(&r, None, "/dir/dangling", c, 0o600).unwrap().write(b"via link").unwrap();
    let a = ns.stat(&r, None, "/dir/newtarget", false).unwrap();
    assert_eq!((a.kind, a.mode, a.size), (FileType::Regular, 0o600, 8));
    assert_eq!(ns.stat(&r, None, "/dir/dangling", false).unwrap().kind, FileType::Symlink);
    ns.open_path(&r, None, "/dir/dangling_abs", c, 0o644).unwrap();
    assert_eq!(ns.stat(&r, None, "/etc/created", false).unwrap().kind, FileType::Regular);
    ns.open_path(&r, None, "/dir/dangling_up", c, 0o644).unwrap();
    assert_eq!(ns.stat(&r, None, "/etc/climb", false).unwrap().kind, FileType::Regular);
    // O_CREAT on an existing file opens it (no truncation without O_TRUNC).
    let e = ns.open_path(&r, None, "/dir/file", OpenFlags::READ | OpenFlags::CREAT, 0o600).unwrap();
    assert_eq!(read_all(&e), b"x");
    assert_eq!(e.stat().unwrap().mode, 0o644);
    // O_CREAT with a missing parent.
    assert_eq!(err(ns.open_path(&r, None, "/nodir/x", c, 0o644)), Errno::NOENT);
}

#[test]
fn name_and_path_length_limits() {
    let (_fs, ns) = new_ns();
    let r = root();
    let long = "n".repeat(256);
    let max = "n".repeat(255);
    assert_eq!(err(ns.stat(&r, None, format!("/{long}"), true)), Errno::NAMETOOLONG);
    assert_eq!(err(ns.stat(&r, None, format!("/{long}/x"), true)), Errno::NAMETOOLONG);
    assert_eq!(err(ns.mkdir(&r, None, format!("/{long}"), 0o755)), Errno::NAMETOOLONG);
    assert_eq!(
        err(ns.open_path(&r, None, format!("/{long}"), OpenFlags::WRITE | OpenFlags::CREAT, 0o644)),
        Errno::NAMETOOLONG
    );
    assert_eq!(err(ns.symlink(&r, None, "x", format!("/{long}"))), Errno::NAMETOOLONG);
    ns.open_path(&r, None, format!("/{max}"), OpenFlags::WRITE | OpenFlags::CREAT, 0o644).unwrap();
    assert_eq!(ns.stat(&r, None, format!("/{max}"), true).unwrap().kind, FileType::Regular);
    // Paths: 4095 bytes are walked (ENOENT here), 4096 are too long.
    let mut p = String::from("/");
    while p.len() < 4095 {
        p.push_str("a/");
    }
    p.truncate(4095);
    assert_eq!(p.len(), 4095);
    assert_eq!(err(ns.stat(&r, None, &p, true)), Errno::NOENT);
    p.push('a');
    assert_eq!(err(ns.stat(&r, None, &p, true)), Errno::NAMETOOLONG);
    assert_eq!(
        err(ns.open_path(&r, None, &p, OpenFlags::WRITE | OpenFlags::CREAT, 0o644)),
        Errno::NAMETOOLONG
    );
    assert_eq!(err(ns.mkdir(&r, None, &p, 0o755)), Errno::NAMETOOLONG);
    // A 4095-byte path that exists resolves.
    let comp = "d".repeat(200);
    let mut deep = String::new();
    while deep.len() + comp.len() < 4095 - 20 {
        deep.push('/');
        deep.push_str(&comp);
        ns.mkdir(&r, None, &deep, 0o755).unwrap();
    }
    let pad = 4095 - deep.len() - 1;
    let last = format!("{deep}/{}", "f".repeat(pad));
    assert_eq!(last.len(), 4095);
    ns.open_path(&r, None, &last, OpenFlags::WRITE | OpenFlags::CREAT, 0o644).unwrap();
    assert_eq!(ns.stat(&r, None, &last, true).unwrap().kind, FileType::Regular);
    assert_eq!(err(ns.stat(&r, None, format!("{last}/"), true)), Errno::NAMETOOLONG);
}

#[test]
fn empty_path_is_enoent() {
    let (_fs, ns) = new_ns();
    let r = root();
    let cwd = ns.root();
    assert_eq!(err(ns.stat(&r, None, "", true)), Errno::NOENT);
    assert_eq!(err(ns.stat(&r, Some(&cwd), "", false)), Errno::NOENT);
    assert_eq!(err(ns.open_path(&r, None, "", OpenFlags::READ, 0)), Errno::NOENT);
    assert_eq!(err(ns.open_path(&r, None, "", OpenFlags::WRITE | OpenFlags::CREAT, 0o644)), Errno::NOENT);
    assert_eq!(err(ns.mkdir(&r, None, "", 0o755)), Errno::NOENT);
    assert_eq!(err(ns.unlink_path(&r, None, "")), Errno::NOENT);
    assert_eq!(err(ns.rmdir_path(&r, None, "")), Errno::NOENT);
    assert_eq!(err(ns.readlink_path(&r, None, "")), Errno::NOENT);
    assert_eq!(err(ns.make_mount_point(b"", FileType::Directory)), Errno::NOENT);
}

#[test]
fn open_file_keeps_an_unlinked_node_alive() {
    let (fs, ns) = new_ns();
    let r = root();
    let base_inodes = fs.used_inodes();
    let f = ns
        .open_path(&r, None, "/victim", OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREAT, 0o644)
        .unwrap();
    f.write(&vec![7u8; 3 * 4096]).unwrap();
    let g = ns.open_path(&r, None, "/victim", OpenFlags::READ, 0).unwrap();
    assert_eq!(fs.used_inodes(), base_inodes + 1);
    assert_eq!(fs.used_bytes(), 3 * 4096);
    ns.unlink_path(&r, None, "/victim").unwrap();
    assert_eq!(err(ns.stat(&r, None, "/victim", true)), Errno::NOENT);
    // Still readable and writable; nlink reads 0.
    let a = f.stat().unwrap();
    assert_eq!((a.nlink, a.size), (0, 3 * 4096));
    f.write_at(b"after", 3 * 4096).unwrap();
    f.truncate(3 * 4096 + 5).unwrap();
    let data = read_all(&g);
    assert_eq!(data.len(), 3 * 4096 + 5);
    assert!(data[..3 * 4096].iter().all(|&b| b == 7));
    assert_eq!(&data[3 * 4096..], b"after");
    assert_eq!(g.stat().unwrap().nlink, 0);
    // A new file under the same name is a different node.
    write_file(&ns, "/victim", b"new");
    assert_ne!(ns.stat(&r, None, "/victim", true).unwrap().ino, a.ino);
    assert_eq!(read_all(&g).len(), 3 * 4096 + 5);
    // Memory goes at the last close.
    assert_eq!(fs.used_bytes(), 5 * 4096);
    drop(f);
    assert_eq!(fs.used_bytes(), 5 * 4096);
    assert_eq!(fs.used_inodes(), base_inodes + 2);
    drop(g);
    assert_eq!(fs.used_bytes(), 4096);
    assert_eq!(fs.used_inodes(), base_inodes + 1);
    // Hard links: the node lives while any name or handle does.
    let h = ns.open_path(&r, None, "/victim", OpenFlags::READ, 0).unwrap();
    ns.link_path(&r, None, "/victim", "/other").unwrap();
    ns.unlink_path(&r, None, "/victim").unwrap();
    assert_eq!(h.stat().unwrap().nlink, 1);
    ns.unlink_path(&r, None, "/other").unwrap();
    assert_eq!(h.stat().unwrap().nlink, 0);
    assert_eq!(read_all(&h), b"new");
    drop(h);
    assert_eq!((fs.used_bytes(), fs.used_inodes()), (0, base_inodes));
}

// ----- the kernel as the oracle (root only) -----

mod kernel {
    use super::*;
    use rustix::fd::OwnedFd;
    use rustix::fs::{Mode, OFlags, ResolveFlags};

    /// A kernel tmpfs mounted on a private temporary directory; unmounted on drop.
    pub struct KernelTmpfs {
        pub dir: tempfile::TempDir,
        pub fd: OwnedFd,
    }

    impl KernelTmpfs {
        pub fn new() -> Option<KernelTmpfs> {
            if !rustix::process::geteuid().is_root() {
                eprintln!("skipping kernel comparison: needs root to mount a tmpfs");
                return None;
            }
            let dir = tempfile::tempdir().unwrap();
            if let Err(e) = rustix::mount::mount(
                "sandfs-test",
                dir.path(),
                "tmpfs",
                rustix::mount::MountFlags::empty(),
                c"mode=1777",
            ) {
                eprintln!("skipping kernel comparison: mount tmpfs: {e}");
                return None;
            }
            let fd = rustix::fs::open(
                dir.path(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .unwrap();
            Some(KernelTmpfs { dir, fd })
        }
    }

    impl Drop for KernelTmpfs {
        fn drop(&mut self) {
            let _ = rustix::mount::unmount(self.dir.path(), rustix::mount::UnmountFlags::DETACH);
        }
    }

    /// What a path resolves to, comparable between the kernel and sandfs.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Outcome {
        Err(Errno),
        File(Vec<u8>),
        Dir(Vec<String>),
        Symlink(Vec<u8>),
    }

    pub fn kernel(k: &KernelTmpfs, path: &str, follow: bool) -> Outcome {
        let mut fl = OFlags::PATH | OFlags::CLOEXEC;
        if !follow {
            fl |= OFlags::NOFOLLOW;
        }
        let fd = match rustix::fs::openat2(&k.fd, path, fl, Mode::empty(), ResolveFlags::IN_ROOT) {
            Ok(fd) => fd,
            Err(e) => return Outcome::Err(e),
        };
        let st = rustix::fs::fstat(&fd).unwrap();
        match FileType::from_mode(st.st_mode) {
            Some(FileType::Regular) => {
                let p = format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(&fd));
                Outcome::File(std::fs::read(p).unwrap())
            }
            Some(FileType::Directory) => {
                let d = rustix::fs::openat(
                    &fd,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .unwrap();
                let mut names: Vec<String> = rustix::fs::Dir::read_from(&d)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "." && n != "..")
                    .collect();
                names.sort();
                Outcome::Dir(names)
            }
            Some(FileType::Symlink) => {
                Outcome::Symlink(rustix::fs::readlinkat(&fd, "", Vec::new()).unwrap().into_bytes())
            }
            other => panic!("unexpected kernel file type {other:?}"),
        }
    }

    pub fn sandfs(ns: &MountNamespace, path: &str, follow: bool) -> Outcome {
        let r = root();
        let l = match ns.resolve(&r, None, path, follow) {
            Ok(l) => l,
            Err(e) => return Outcome::Err(e),
        };
        match l.node.kind() {
            FileType::Regular => Outcome::File(read_all(&ns.open(&r, &l, OpenFlags::READ).unwrap())),
            FileType::Directory => {
                let d = ns.open(&r, &l, OpenFlags::READ | OpenFlags::DIRECTORY).unwrap();
                let mut names = Vec::new();
                d.readdir(&mut |e| {
                    names.push(String::from_utf8_lossy(e.name).into_owned());
                    true
                })
                .unwrap();
                names.retain(|n| n != "." && n != "..");
                names.sort();
                Outcome::Dir(names)
            }
            FileType::Symlink => Outcome::Symlink(ns.readlink(&l).unwrap()),
            other => panic!("unexpected sandfs file type {other:?}"),
        }
    }

    pub fn kernel_open(k: &KernelTmpfs, path: &str, flags: OpenFlags) -> Result<(), Errno> {
        let mut fl = OFlags::CLOEXEC;
        fl |= match (flags.contains(OpenFlags::READ), flags.contains(OpenFlags::WRITE)) {
            (true, true) => OFlags::RDWR,
            (false, true) => OFlags::WRONLY,
            _ => OFlags::RDONLY,
        };
        for (a, b) in [
            (OpenFlags::CREAT, OFlags::CREATE),
            (OpenFlags::EXCL, OFlags::EXCL),
            (OpenFlags::TRUNC, OFlags::TRUNC),
            (OpenFlags::NOFOLLOW, OFlags::NOFOLLOW),
            (OpenFlags::DIRECTORY, OFlags::DIRECTORY),
        ] {
            if flags.contains(a) {
                fl |= b;
            }
        }
        let mode = Mode::from_raw_mode(if flags.contains(OpenFlags::CREAT) { 0o644 } else { 0 });
        rustix::fs::openat2(&k.fd, path, fl, mode, ResolveFlags::IN_ROOT).map(drop)
    }
}

/// The same tree on a kernel tmpfs and on sandfs; every path case and open case must
/// give the same outcome (errno, or what was reached).
#[test]
fn path_resolution_matches_the_kernel() {
    let Some(k) = kernel::KernelTmpfs::new() else { return };
    let (_fs, ns) = new_ns();
    let r = root();
    let kpath = |p: &str| k.dir.path().join(p);
    let dirs = ["a", "a/b", "a/b/c", "etc", "d"];
    let files = [("a/b/f", "F!"), ("etc/passwd", "passwd"), ("top", "top-level"), ("d/x", "xx")];
    let links = [
        ("a/rel", "b/f"),
        ("a/abs", "/a/b"),
        ("a/up", "../../../../.."),
        ("a/b/c/esc", "../../../../../etc/passwd"),
        ("a/absesc", "/../../etc/passwd"),
        ("chain1", "a/rel"),
        ("chain2", "/chain1"),
        ("dangling", "nowhere/file"),
        ("dangling2", "newfile"),
        ("loop1", "loop2"),
        ("loop2", "loop1"),
        ("self", "self"),
        ("ldir", "d"),
        ("lfile", "top"),
        ("d/dotdot", ".."),
        ("d/dot", "."),
        ("d/slash", "/"),
        ("d/trail", "../a/"),
        ("d/trailfile", "../top/"),
    ];
    for d in dirs {
        std::fs::create_dir(kpath(d)).unwrap();
        ns.mkdir(&r, None, format!("/{d}"), 0o755).unwrap();
    }
    for (f, data) in files {
        std::fs::write(kpath(f), data).unwrap();
        write_file(&ns, &format!("/{f}"), data.as_bytes());
    }
    for (l, t) in links {
        std::os::unix::fs::symlink(t, kpath(l)).unwrap();
        ns.symlink(&r, None, t, format!("/{l}")).unwrap();
    }
    // Chains of 40 and 41 links.
    for i in 1..=41 {
        let to = if i == 1 { "top".to_string() } else { format!("n{}", i - 1) };
        std::os::unix::fs::symlink(&to, kpath(&format!("n{i}"))).unwrap();
        ns.symlink(&r, None, &to, format!("/n{i}")).unwrap();
    }
    let long = "x".repeat(256);
    let path4095 = {
        let mut p = String::from("/");
        while p.len() < 4095 {
            p.push_str("a/");
        }
        p.truncate(4095);
        p
    };
    let path4096 = format!("{path4095}a");
    let mut cases: Vec<String> = [
        "/",
        ".",
        "..",
        "/..",
        "/../..",
        "a",
        "a/",
        "a/b/f",
        "a/b/f/",
        "a/b/f/.",
        "a/b/f/..",
        "a//b///f",
        "a/./b/../b/f",
        "a/rel",
        "a/rel/",
        "a/abs",
        "a/abs/f",
        "a/abs/",
        "a/abs/..",
        "a/up",
        "a/up/top",
        "a/up/a/up/a/up",
        "a/b/c/esc",
        "a/absesc",
        "chain1",
        "chain2",
        "dangling",
        "dangling/",
        "dangling2",
        "loop1",
        "loop1/x",
        "self",
        "ldir",
        "ldir/",
        "ldir/x",
        "ldir/x/",
        "lfile",
        "lfile/",
        "d/dotdot",
        "d/dotdot/top",
        "d/dot",
        "d/dot/x",
        "d/slash",
        "d/slash/top",
        "d/trail",
        "d/trail/b",
        "d/trailfile",
        "missing",
        "missing/",
        "a/missing/x",
        "top/x",
        "n40",
        "n41",
        "n41/",
        "/etc/passwd",
        "/../etc/passwd",
        "/a/b/c/../../../../etc/passwd",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    cases.push(long.clone());
    cases.push(format!("a/{long}/x"));
    cases.push("y".repeat(255));
    cases.push(path4095.clone());
    cases.push(path4096.clone());
    for c in &cases {
        for follow in [true, false] {
            let want = kernel::kernel(&k, c, follow);
            let got = kernel::sandfs(&ns, c, follow);
            assert_eq!(got, want, "resolve {c:?} follow={follow}");
        }
    }
    // Open flags, including creation (both sides change the same way).
    let rd = OpenFlags::READ;
    let wc = OpenFlags::WRITE | OpenFlags::CREAT;
    let open_cases: Vec<(&str, OpenFlags)> = vec![
        ("lfile", rd | OpenFlags::NOFOLLOW),
        ("lfile", rd | OpenFlags::DIRECTORY),
        ("ldir", rd | OpenFlags::DIRECTORY),
        ("ldir", rd | OpenFlags::DIRECTORY | OpenFlags::NOFOLLOW),
        ("top", rd | OpenFlags::DIRECTORY),
        ("d", OpenFlags::WRITE),
        ("d", rd | OpenFlags::CREAT),
        ("top/", wc),
        ("top", wc | OpenFlags::EXCL),
        ("lfile", wc | OpenFlags::EXCL),
        ("dangling2", wc | OpenFlags::EXCL),
        ("dangling", wc),
        ("dangling2", wc | OpenFlags::NOFOLLOW),
        ("dangling2", wc),
        ("dangling2", wc | OpenFlags::EXCL),
        ("a/up/created", wc),
        ("a/absesc", wc | OpenFlags::TRUNC),
        ("fresh/", wc),
        ("fresh", wc | OpenFlags::EXCL),
        ("loop1", wc),
        ("n40", rd),
        ("n41", rd),
        ("n41", wc),
        (&long, wc),
        ("", rd),
        ("", wc),
        (".", wc),
    ];
    for (p, fl) in open_cases {
        let want = kernel::kernel_open(&k, p, fl).err();
        let got = ns.open_path(&r, None, p, fl, 0o644).err();
        assert_eq!(got, want, "open {p:?} {fl:?}");
    }
    // The trees agree afterwards.
    for c in ["/", "a", "a/b", "etc", "d", "newfile", "created", "etc/passwd", "fresh"] {
        assert_eq!(kernel::sandfs(&ns, c, false), kernel::kernel(&k, c, false), "tree at {c:?}");
    }
}
