//! The path-resolution cache of a mount namespace must never answer with a stale walk.
//! Every test resolves a path until the cache holds it (`look` stats and resolves it
//! twice, both through the cache's node-only path, `stat`, and its location path,
//! `resolve`, and checks they agree), changes something on the way, and checks the
//! next resolution sees the change: search permission, renames, unlink and recreate,
//! symlinks, mounts and unmounts, mount flags, credentials, start directories.

use sandfs_tmpfs::{Tmpfs, TmpfsOptions};
use sandfs_vfs::ops::Make;
use sandfs_vfs::{
    Caps, Creds, Errno, FileType, Filesystem, Generation, Location, MountFlags, MountNamespace, NodeRef,
    OpenFlags, RenameFlags, SetAttr, StatFs,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

type Res<T> = sandfs_vfs::Result<T>;

fn root() -> Creds {
    Creds::root()
}

fn user(uid: u32) -> Creds {
    Creds::user(uid, uid, &[])
}

fn new_ns() -> (Arc<Tmpfs>, Arc<MountNamespace>) {
    let fs = Tmpfs::new_default();
    let ns = MountNamespace::new(fs.clone(), MountFlags::empty());
    (fs, ns)
}

fn loc(ns: &MountNamespace, path: &str) -> Location {
    ns.resolve(&root(), None, path, false).unwrap_or_else(|e| panic!("resolve {path}: {e}"))
}

fn mkdir(ns: &MountNamespace, path: &str, mode: u32) -> Location {
    let l = ns.mkdir(&root(), None, path, mode).unwrap_or_else(|e| panic!("mkdir {path}: {e}"));
    chmod(ns, path, mode);
    l
}

fn touch(ns: &MountNamespace, path: &str) -> u64 {
    ns.mknod(&root(), None, path, Make::File, 0o644)
        .unwrap_or_else(|e| panic!("create {path}: {e}"))
        .node
        .ino()
}

fn chmod(ns: &MountNamespace, path: &str, mode: u32) {
    let set = SetAttr { mode: Some(mode), ..SetAttr::default() };
    ns.setattr_path(&root(), None, path, &set, false).unwrap_or_else(|e| panic!("chmod {path}: {e}"));
}

fn chown(ns: &MountNamespace, path: &str, uid: u32, gid: u32) {
    let set = SetAttr { uid: Some(uid), gid: Some(gid), ..SetAttr::default() };
    ns.setattr_path(&root(), None, path, &set, false).unwrap_or_else(|e| panic!("chown {path}: {e}"));
}

/// (dev, ino) of what `path` resolves to, resolved until cached: `stat` and
/// `resolve`, twice each, must agree.
fn look_from(
    ns: &MountNamespace,
    c: &Creds,
    cwd: Option<&Location>,
    path: &str,
    follow: bool,
) -> Res<(u64, u64)> {
    let mut first: Option<Res<(u64, u64)>> = None;
    for _ in 0..2 {
        let s = ns.stat(c, cwd, path, follow).map(|a| (a.dev, a.ino));
        let r = ns.resolve(c, cwd, path, follow).and_then(|l| l.node.attr()).map(|a| (a.dev, a.ino));
        assert_eq!(s, r, "stat and resolve of {path:?} disagree");
        if let Some(f) = &first {
            assert_eq!(*f, s, "two resolutions of {path:?} in a row disagree");
        }
        first = Some(s);
    }
    first.expect("resolved twice")
}

fn look(ns: &MountNamespace, c: &Creds, path: &str) -> Res<(u64, u64)> {
    look_from(ns, c, None, path, true)
}

fn ino(ns: &MountNamespace, c: &Creds, path: &str) -> u64 {
    look(ns, c, path).unwrap_or_else(|e| panic!("stat {path}: {e}")).1
}

fn err<T: std::fmt::Debug>(r: Res<T>) -> Errno {
    r.expect_err("expected an error")
}

#[test]
fn chmod_of_an_intermediate_directory_removing_search_permission() {
    let (_fs, ns) = new_ns();
    mkdir(&ns, "/a", 0o755);
    mkdir(&ns, "/a/b", 0o755);
    let f = touch(&ns, "/a/b/f");
    let u = user(1000);
    assert_eq!(ino(&ns, &u, "/a/b/f"), f);
    let b = loc(&ns, "/a/b");
    assert_eq!(look_from(&ns, &u, Some(&b), "f", true).unwrap().1, f);

    chmod(&ns, "/a", 0o700);
    assert_eq!(err(look(&ns, &u, "/a/b/f")), Errno::ACCESS);
    assert_eq!(err(look(&ns, &u, "/a/b")), Errno::ACCESS);
    // From inside, /a is not walked.
    assert_eq!(look_from(&ns, &u, Some(&b), "f", true).unwrap().1, f);
    // Root still walks it (CAP_DAC_READ_SEARCH).
    assert_eq!(ino(&ns, &root(), "/a/b/f"), f);

    // Search (x) alone is enough; read is not needed.
    chmod(&ns, "/a", 0o711);
    assert_eq!(ino(&ns, &u, "/a/b/f"), f);
    // The last directory walked, and through a relative path.
    chmod(&ns, "/a/b", 0o744);
    assert_eq!(err(look(&ns, &u, "/a/b/f")), Errno::ACCESS);
    assert_eq!(err(look_from(&ns, &u, Some(&b), "f", true)), Errno::ACCESS);
    // Ownership decides which bits count: chown gives the owner bits back.
    chmod(&ns, "/a/b", 0o700);
    assert_eq!(err(look(&ns, &u, "/a/b/f")), Errno::ACCESS);
    chown(&ns, "/a/b", 1000, 0);
    assert_eq!(ino(&ns, &u, "/a/b/f"), f);
    chown(&ns, "/a/b", 0, 1000);
    assert_eq!(err(look(&ns, &u, "/a/b/f")), Errno::ACCESS);
    chmod(&ns, "/a/b", 0o710);
    assert_eq!(ino(&ns, &u, "/a/b/f"), f);
}

#[test]
fn rename_of_an_intermediate_directory() {
    let (_fs, ns) = new_ns();
    mkdir(&ns, "/a", 0o755);
    mkdir(&ns, "/a/b", 0o755);
    let f = touch(&ns, "/a/b/f");
    mkdir(&ns, "/y", 0o755);
    mkdir(&ns, "/y/b", 0o755);
    let g = touch(&ns, "/y/b/f");
    for c in [root(), user(1000)] {
        assert_eq!(ino(&ns, &c, "/a/b/f"), f);
        assert_eq!(ino(&ns, &c, "/y/b/f"), g);
    }
    ns.rename_path(&root(), None, "/a", "/x", RenameFlags::empty()).unwrap();
    for c in [root(), user(1000)] {
        assert_eq!(err(look(&ns, &c, "/a/b/f")), Errno::NOENT);
        assert_eq!(ino(&ns, &c, "/x/b/f"), f);
    }
    // Another directory moves into the old name: the path now leads to its file.
    ns.rename_path(&root(), None, "/y", "/a", RenameFlags::empty()).unwrap();
    for c in [root(), user(1000)] {
        assert_eq!(ino(&ns, &c, "/a/b/f"), g);
        assert_eq!(err(look(&ns, &c, "/y/b/f")), Errno::NOENT);
    }
    // An exchange swaps them back.
    ns.rename_path(&root(), None, "/a", "/x", RenameFlags::EXCHANGE).unwrap();
    assert_eq!(ino(&ns, &root(), "/a/b/f"), f);
    assert_eq!(ino(&ns, &root(), "/x/b/f"), g);
    // A move to another parent changes where `..` leads.
    mkdir(&ns, "/p", 0o755);
    let x = ino(&ns, &root(), "/x");
    let p = ino(&ns, &root(), "/p");
    let xb = loc(&ns, "/x/b");
    assert_eq!(look_from(&ns, &root(), Some(&xb), "..", true).unwrap().1, x);
    ns.rename_path(&root(), None, "/x/b", "/p/b", RenameFlags::empty()).unwrap();
    assert_eq!(look_from(&ns, &root(), Some(&xb), "..", true).unwrap().1, p);
    assert_eq!(look_from(&ns, &root(), Some(&xb), "../b/f", true).unwrap().1, g);
}

#[test]
fn unlink_and_recreate_of_the_final_component() {
    let (_fs, ns) = new_ns();
    mkdir(&ns, "/d", 0o755);
    let f1 = touch(&ns, "/d/f");
    assert_eq!(ino(&ns, &root(), "/d/f"), f1);
    ns.unlink_path(&root(), None, "/d/f").unwrap();
    assert_eq!(err(look(&ns, &root(), "/d/f")), Errno::NOENT);
    let f2 = touch(&ns, "/d/f");
    assert_ne!(f1, f2);
    assert_eq!(ino(&ns, &root(), "/d/f"), f2);
    // Recreated as a directory.
    ns.unlink_path(&root(), None, "/d/f").unwrap();
    let d = ns.mkdir(&root(), None, "/d/f", 0o755).unwrap().node.ino();
    assert_eq!(ino(&ns, &root(), "/d/f"), d);
    assert_eq!(ns.stat(&root(), None, "/d/f", true).unwrap().kind, FileType::Directory);
    // Removed while a cwd holds it.
    let held = loc(&ns, "/d/f");
    assert_eq!(ino(&ns, &root(), "/d/f"), d);
    ns.rmdir_path(&root(), None, "/d/f").unwrap();
    assert_eq!(err(look(&ns, &root(), "/d/f")), Errno::NOENT);
    drop(held);

    // A name removed while its node lives on (another link, an open file).
    let f3 = touch(&ns, "/d/f");
    ns.link_path(&root(), None, "/d/f", "/d/g").unwrap();
    let open = ns.open_path(&root(), None, "/d/f", OpenFlags::READ, 0).unwrap();
    assert_eq!(ino(&ns, &root(), "/d/f"), f3);
    ns.unlink_path(&root(), None, "/d/f").unwrap();
    assert_eq!(err(look(&ns, &root(), "/d/f")), Errno::NOENT);
    assert_eq!(ino(&ns, &root(), "/d/g"), f3);
    // Renamed away and back.
    ns.rename_path(&root(), None, "/d/g", "/d/h", RenameFlags::empty()).unwrap();
    assert_eq!(err(look(&ns, &root(), "/d/g")), Errno::NOENT);
    assert_eq!(ino(&ns, &root(), "/d/h"), f3);
    // Replaced by a rename over it.
    let f4 = touch(&ns, "/d/other");
    ns.rename_path(&root(), None, "/d/other", "/d/h", RenameFlags::empty()).unwrap();
    assert_eq!(ino(&ns, &root(), "/d/h"), f4);
    drop(open);
    // O_CREAT through a cached parent of a removed name creates a new file.
    ns.unlink_path(&root(), None, "/d/h").unwrap();
    let f = ns.open_path(&root(), None, "/d/h", OpenFlags::WRITE | OpenFlags::CREAT, 0o644).unwrap();
    assert_eq!(ino(&ns, &root(), "/d/h"), f.location().node.ino());
}

#[test]
fn a_directory_replaced_by_a_symlink() {
    let (_fs, ns) = new_ns();
    mkdir(&ns, "/p", 0o755);
    mkdir(&ns, "/p/q", 0o755);
    let f = touch(&ns, "/p/q/f");
    mkdir(&ns, "/other", 0o755);
    let g = touch(&ns, "/other/f");
    assert_eq!(ino(&ns, &root(), "/p/q/f"), f);
    assert_eq!(ino(&ns, &user(1000), "/p/q/f"), f);
    let q = ino(&ns, &root(), "/p/q");
    ns.rename_path(&root(), None, "/p/q", "/p/q.old", RenameFlags::empty()).unwrap();
    ns.symlink(&root(), None, "../other", "/p/q").unwrap();
    assert_eq!(ino(&ns, &root(), "/p/q/f"), g);
    assert_eq!(ino(&ns, &user(1000), "/p/q/f"), g);
    // Not following the final symlink: the link itself, then the directory again.
    let link = look_from(&ns, &root(), None, "/p/q", false).unwrap().1;
    assert_ne!(link, q);
    assert_eq!(ino(&ns, &root(), "/p/q"), ino(&ns, &root(), "/other"));
    ns.unlink_path(&root(), None, "/p/q").unwrap();
    ns.rename_path(&root(), None, "/p/q.old", "/p/q", RenameFlags::empty()).unwrap();
    assert_eq!(look_from(&ns, &root(), None, "/p/q", false).unwrap().1, q);
    assert_eq!(ino(&ns, &root(), "/p/q/f"), f);
    // A symlink replaced by one with another target.
    ns.symlink(&root(), None, "/p/q/f", "/l").unwrap();
    assert_eq!(ino(&ns, &root(), "/l"), f);
    ns.unlink_path(&root(), None, "/l").unwrap();
    ns.symlink(&root(), None, "/other/f", "/l").unwrap();
    assert_eq!(ino(&ns, &root(), "/l"), g);
    // A directory replaced by a symlink to a place the user may not search.
    mkdir(&ns, "/closed", 0o700);
    touch(&ns, "/closed/f");
    ns.rename_path(&root(), None, "/p/q", "/p/q.old", RenameFlags::empty()).unwrap();
    ns.symlink(&root(), None, "/closed", "/p/q").unwrap();
    assert_eq!(err(look(&ns, &user(1000), "/p/q/f")), Errno::ACCESS);
}

#[test]
fn a_mount_or_unmount_on_the_path() {
    let (_fs, ns) = new_ns();
    mkdir(&ns, "/m", 0o755);
    mkdir(&ns, "/m/sub", 0o755);
    let f = touch(&ns, "/m/sub/f");
    let dev = ns.stat(&root(), None, "/", true).unwrap().dev;
    assert_eq!(look(&ns, &root(), "/m/sub/f").unwrap(), (dev, f));

    // On an intermediate directory.
    let other = Tmpfs::new_default();
    let m = ns.mount(other.clone(), &loc(&ns, "/m"), MountFlags::empty()).unwrap();
    assert_eq!(err(look(&ns, &root(), "/m/sub/f")), Errno::NOENT);
    let (odev, _) = look(&ns, &root(), "/m").unwrap();
    assert_ne!(odev, dev);
    ns.mkdir(&root(), None, "/m/sub", 0o755).unwrap();
    let g = touch(&ns, "/m/sub/f");
    assert_eq!(look(&ns, &root(), "/m/sub/f").unwrap(), (odev, g));
    // `..` out of the mount, cached, then unmounted.
    assert_eq!(look(&ns, &root(), "/m/sub/../..").unwrap(), look(&ns, &root(), "/").unwrap());
    ns.unmount(&loc(&ns, "/m"), false).unwrap();
    assert!(!m.is_connected());
    assert_eq!(look(&ns, &root(), "/m/sub/f").unwrap(), (dev, f));

    // On the final component.
    let file_fs = Tmpfs::new(&TmpfsOptions { root: FileType::Regular, ..TmpfsOptions::default() }).unwrap();
    ns.mount(file_fs.clone(), &loc(&ns, "/m/sub/f"), MountFlags::empty()).unwrap();
    let (fdev, _) = look(&ns, &root(), "/m/sub/f").unwrap();
    assert_ne!(fdev, dev);
    ns.unmount(&loc(&ns, "/m/sub/f"), true).unwrap();
    assert_eq!(look(&ns, &root(), "/m/sub/f").unwrap(), (dev, f));

    // On the namespace root.
    let top = Tmpfs::new_default();
    ns.mount(top, &ns.root(), MountFlags::empty()).unwrap();
    let (tdev, _) = look(&ns, &root(), "/").unwrap();
    assert_ne!(tdev, dev);
    assert_eq!(err(look(&ns, &root(), "/m/sub/f")), Errno::NOENT);
    ns.unmount(&ns.root(), false).unwrap();
    assert_eq!(look(&ns, &root(), "/").unwrap().0, dev);
    assert_eq!(look(&ns, &root(), "/m/sub/f").unwrap(), (dev, f));

    // A disconnected mount connected on the path later.
    let vol = Tmpfs::new_default();
    let dm = ns.new_disconnected(vol, MountFlags::empty());
    assert_eq!(look(&ns, &root(), "/m/sub").unwrap().0, dev);
    ns.connect(&dm, &loc(&ns, "/m/sub")).unwrap();
    assert_ne!(look(&ns, &root(), "/m/sub").unwrap().0, dev);
    assert_eq!(err(look(&ns, &root(), "/m/sub/f")), Errno::NOENT);
}

#[test]
fn set_flags_is_seen_through_cached_paths() {
    let (_fs, ns) = new_ns();
    mkdir(&ns, "/m", 0o755);
    let m = ns.mount(Tmpfs::new_default(), &loc(&ns, "/m"), MountFlags::empty()).unwrap();
    touch(&ns, "/m/f");
    let rw = OpenFlags::READ | OpenFlags::WRITE;
    for _ in 0..2 {
        drop(ns.open_path(&root(), None, "/m/f", rw, 0).unwrap());
        look(&ns, &root(), "/m/f").unwrap();
    }
    m.set_flags(MountFlags::RDONLY).unwrap();
    assert_eq!(err(ns.open_path(&root(), None, "/m/f", rw, 0)), Errno::ROFS);
    let set = SetAttr { mode: Some(0o600), ..SetAttr::default() };
    assert_eq!(err(ns.setattr_path(&root(), None, "/m/f", &set, true)), Errno::ROFS);
    assert_eq!(err(ns.unlink_path(&root(), None, "/m/f")), Errno::ROFS);
    let l = ns.resolve(&root(), None, "/m/f", true).unwrap();
    assert!(l.mount.flags().contains(MountFlags::RDONLY));
    m.set_flags(MountFlags::NOEXEC).unwrap();
    drop(ns.open_path(&root(), None, "/m/f", rw, 0).unwrap());
    let l = ns.resolve(&root(), None, "/m/f", true).unwrap();
    assert_eq!(l.mount.flags(), MountFlags::NOEXEC);
    ns.setattr_path(&root(), None, "/m/f", &set, true).unwrap();
}

#[test]
fn different_credentials_on_the_same_path() {
    let (_fs, ns) = new_ns();
    mkdir(&ns, "/s", 0o700);
    chown(&ns, "/s", 1000, 1000);
    let f = touch(&ns, "/s/f");
    mkdir(&ns, "/g", 0o750);
    chown(&ns, "/g", 0, 2000);
    let gf = touch(&ns, "/g/f");

    let u1000 = user(1000);
    let u1001 = user(1001);
    // Alternate, so each answer is cached while the other credentials ask.
    for _ in 0..2 {
        assert_eq!(ino(&ns, &u1000, "/s/f"), f);
        assert_eq!(err(look(&ns, &u1001, "/s/f")), Errno::ACCESS);
        // Same uid, another gid.
        assert_eq!(err(look(&ns, &Creds::user(1001, 1000, &[]), "/s/f")), Errno::ACCESS);
        assert_eq!(ino(&ns, &Creds::user(1000, 1001, &[]), "/s/f"), f);
    }
    // Same uid and gid, supplementary groups differ.
    let member = Creds::user(3000, 3000, &[2000]);
    let other = Creds::user(3000, 3000, &[2001]);
    let none = Creds::user(3000, 3000, &[]);
    for _ in 0..2 {
        assert_eq!(ino(&ns, &member, "/g/f"), gf);
        assert_eq!(err(look(&ns, &other, "/g/f")), Errno::ACCESS);
        assert_eq!(err(look(&ns, &none, "/g/f")), Errno::ACCESS);
        assert_eq!(ino(&ns, &Creds::user(3000, 2000, &[]), "/g/f"), gf);
    }
    // uid 0 without capabilities is just another user; either search capability is
    // enough alone.
    let bare_root = Creds { caps: Caps::empty(), ..Creds::root() };
    let read_search = Creds { caps: Caps::DAC_READ_SEARCH, ..user(1001) };
    let dac_override = Creds { caps: Caps::DAC_OVERRIDE, ..user(1001) };
    let fowner = Creds { caps: Caps::FOWNER | Caps::CHOWN, ..user(1001) };
    for _ in 0..2 {
        assert_eq!(ino(&ns, &root(), "/s/f"), f);
        assert_eq!(err(look(&ns, &bare_root, "/s/f")), Errno::ACCESS);
        assert_eq!(ino(&ns, &read_search, "/s/f"), f);
        assert_eq!(ino(&ns, &dac_override, "/s/f"), f);
        assert_eq!(err(look(&ns, &fowner, "/s/f")), Errno::ACCESS);
    }
}

#[test]
fn relative_paths_from_two_different_cwds() {
    let (_fs, ns) = new_ns();
    mkdir(&ns, "/c1", 0o755);
    mkdir(&ns, "/c2", 0o755);
    let f1 = touch(&ns, "/c1/f");
    let f2 = touch(&ns, "/c2/f");
    let c1 = loc(&ns, "/c1");
    let c2 = loc(&ns, "/c2");
    for _ in 0..2 {
        assert_eq!(look_from(&ns, &root(), Some(&c1), "f", true).unwrap().1, f1);
        assert_eq!(look_from(&ns, &root(), Some(&c2), "f", true).unwrap().1, f2);
        assert_eq!(look_from(&ns, &root(), None, "c1/f", true).unwrap().1, f1);
        // An absolute path ignores the cwd.
        assert_eq!(look_from(&ns, &root(), Some(&c1), "/c2/f", true).unwrap().1, f2);
        assert_eq!(look_from(&ns, &root(), Some(&c2), "/c2/f", true).unwrap().1, f2);
    }
    // `f` from a cwd with no `f` in it.
    mkdir(&ns, "/c3", 0o755);
    let c3 = loc(&ns, "/c3");
    assert_eq!(err(look_from(&ns, &root(), Some(&c3), "f", true)), Errno::NOENT);
    assert_eq!(look_from(&ns, &root(), Some(&c1), "f", true).unwrap().1, f1);

    // One node through two mounts: the same directory as a mount root in two places.
    mkdir(&ns, "/b", 0o755);
    mkdir(&ns, "/b/inner", 0o755);
    let direct = ns.bind(&c1, &loc(&ns, "/c3"), MountFlags::empty()).unwrap();
    let bound = ns.bind(&c1, &loc(&ns, "/b/inner"), MountFlags::empty()).unwrap();
    let at_c3 = loc(&ns, "/c3");
    let at_inner = loc(&ns, "/b/inner");
    assert!(Arc::ptr_eq(&at_c3.node, &at_inner.node));
    assert!(Arc::ptr_eq(&at_c3.mount, &direct) && Arc::ptr_eq(&at_inner.mount, &bound));
    let root_ino = ino(&ns, &root(), "/");
    let b_ino = ino(&ns, &root(), "/b");
    for _ in 0..2 {
        assert_eq!(look_from(&ns, &root(), Some(&at_c3), "..", true).unwrap().1, root_ino);
        assert_eq!(look_from(&ns, &root(), Some(&at_inner), "..", true).unwrap().1, b_ino);
        assert_eq!(look_from(&ns, &root(), Some(&at_c3), "f", true).unwrap().1, f1);
        assert_eq!(look_from(&ns, &root(), Some(&at_inner), "f", true).unwrap().1, f1);
    }
}

#[test]
fn a_mount_made_through_another_namespace_is_seen() {
    // A cwd in a mount of its own (disconnected), walked through one namespace while
    // another namespace mounts something on the way: the mount trees meet in the
    // shared mount, so the cache cannot count tree changes per namespace.
    let (_fs, ns1) = new_ns();
    let (_fs2, ns2) = new_ns();
    let vol = Tmpfs::new_default();
    let m = ns1.new_disconnected(vol.clone(), MountFlags::empty());
    let top = Location { mount: m.clone(), node: m.root().clone() };
    let d = ns1.make(&root(), &top, b"d", Make::Dir, 0o755).unwrap();
    let f = ns1.make(&root(), &d, b"f", Make::File, 0o644).unwrap().node.ino();
    assert_eq!(look_from(&ns1, &root(), Some(&top), "d/f", true).unwrap().1, f);
    let sub = ns2.new_disconnected(Tmpfs::new_default(), MountFlags::empty());
    ns2.connect(&sub, &d).unwrap();
    assert_eq!(err(look_from(&ns1, &root(), Some(&top), "d/f", true)), Errno::NOENT);
    ns2.unmount(&Location { mount: sub.clone(), node: sub.root().clone() }, false).unwrap();
    assert_eq!(look_from(&ns1, &root(), Some(&top), "d/f", true).unwrap().1, f);
}

#[test]
fn the_cache_keeps_no_unlinked_node_alive() {
    // nr_inodes=3: the root, /d and one file. A cached walk to the file must not keep
    // its inode (and its charge) after the unlink.
    let fs = Tmpfs::new(&TmpfsOptions { nr_inodes: Some(3), ..TmpfsOptions::default() }).unwrap();
    let ns = MountNamespace::new(fs.clone(), MountFlags::empty());
    mkdir(&ns, "/d", 0o755);
    let d = loc(&ns, "/d");
    for i in 0..5 {
        let name = format!("/d/f{i}");
        touch(&ns, &name);
        look(&ns, &root(), &name).unwrap();
        look_from(&ns, &root(), Some(&d), &name[3..], false).unwrap();
        assert_eq!(fs.used_inodes(), 3);
        ns.unlink_path(&root(), None, &name).unwrap();
        assert_eq!(fs.used_inodes(), 2, "the unlinked file's inode is freed");
    }
    // A cached start directory is not kept either.
    ns.rmdir_path(&root(), None, "/d").unwrap();
    drop(d);
    assert_eq!(fs.used_inodes(), 1);
}

/// A tmpfs behind a filesystem without a generation: changes its nodes make do not
/// reach the mounts of this filesystem's counter (there is none), so walks through
/// it must never be cached.
struct NoGeneration(Arc<Tmpfs>);

impl Filesystem for NoGeneration {
    fn root(&self) -> NodeRef {
        self.0.root()
    }
    fn statfs(&self) -> Res<StatFs> {
        self.0.statfs()
    }
    fn name(&self) -> &str {
        "nogen"
    }
}

#[test]
fn a_filesystem_without_generation_is_never_cached() {
    let (_fs, ns) = new_ns();
    mkdir(&ns, "/n", 0o755);
    let inner = Tmpfs::new_default();
    let m = ns.new_disconnected(Arc::new(NoGeneration(inner.clone())), MountFlags::empty());
    assert!(m.fs().generation().is_none());
    ns.connect(&m, &loc(&ns, "/n")).unwrap();
    let top = Location { mount: m.clone(), node: m.root().clone() };
    let f = ns.make(&root(), &top, b"f", Make::File, 0o644).unwrap().node.ino();
    assert_eq!(ino(&ns, &root(), "/n/f"), f);
    // Changed through the inner tmpfs's own nodes: its counter moves, but this mount
    // has none to look at.
    let inner_root = inner.root();
    inner_root.clone().rename(b"f", &inner_root, b"g", RenameFlags::empty()).unwrap();
    assert_eq!(err(look(&ns, &root(), "/n/f")), Errno::NOENT);
    assert_eq!(ino(&ns, &root(), "/n/g"), f);
    // Search permission changed behind the namespace's back.
    let sub = ns.make(&root(), &top, b"sub", Make::Dir, 0o755).unwrap();
    let h = ns.make(&root(), &sub, b"h", Make::File, 0o644).unwrap().node.ino();
    assert_eq!(ino(&ns, &user(1000), "/n/sub/h"), h);
    sub.node.setattr(&SetAttr { mode: Some(0o700), ..SetAttr::default() }).unwrap();
    assert_eq!(err(look(&ns, &user(1000), "/n/sub/h")), Errno::ACCESS);
    // A mixed walk: in and out of the mount, relative to a cwd in it.
    assert_eq!(look_from(&ns, &root(), Some(&sub), "../../n/g", true).unwrap().1, f);
    inner_root.clone().rename(b"g", &inner_root, b"f", RenameFlags::empty()).unwrap();
    assert_eq!(err(look_from(&ns, &root(), Some(&sub), "../../n/g", true)), Errno::NOENT);
}

/// A tmpfs whose changes are counted by the test: it decides when a change starts
/// and ends, and changes the tmpfs through its own nodes in between.
struct Controlled {
    inner: Arc<Tmpfs>,
    generation: Arc<Generation>,
}

impl Filesystem for Controlled {
    fn root(&self) -> NodeRef {
        self.inner.root()
    }
    fn statfs(&self) -> Res<StatFs> {
        self.inner.statfs()
    }
    fn name(&self) -> &str {
        "controlled"
    }
    fn generation(&self) -> Option<Arc<Generation>> {
        Some(self.generation.clone())
    }
}

#[test]
fn a_change_in_progress_is_never_answered_from_the_cache() {
    let (_fs, ns) = new_ns();
    mkdir(&ns, "/c", 0o755);
    let inner = Tmpfs::new_default();
    let generation = Arc::new(Generation::new());
    let fs = Arc::new(Controlled { inner: inner.clone(), generation: generation.clone() });
    ns.mount(fs, &loc(&ns, "/c"), MountFlags::empty()).unwrap();
    let f = touch(&ns, "/c/f");
    let top = inner.root();
    let rename = |from: &[u8], to: &[u8]| top.clone().rename(from, &top, to, RenameFlags::empty()).unwrap();

    // Cached, then renamed inside a change: the old entry must not answer, and no
    // walk made during the change may be cached.
    assert_eq!(ino(&ns, &root(), "/c/f"), f);
    let change = generation.change();
    assert_eq!(ino(&ns, &root(), "/c/f"), f, "nothing changed yet");
    rename(b"f", b"g");
    assert_eq!(err(look(&ns, &root(), "/c/f")), Errno::NOENT);
    assert_eq!(ino(&ns, &root(), "/c/g"), f);
    rename(b"g", b"f");
    assert_eq!(err(look(&ns, &root(), "/c/g")), Errno::NOENT);
    assert_eq!(ino(&ns, &root(), "/c/f"), f);
    drop(change);
    assert_eq!(ino(&ns, &root(), "/c/f"), f);
    assert_eq!(err(look(&ns, &root(), "/c/g")), Errno::NOENT);

    // Two changes overlapping: stable again only when both ended; an entry made
    // before them is not valid after.
    assert_eq!(ino(&ns, &root(), "/c/f"), f);
    let one = generation.change();
    let two = generation.change();
    rename(b"f", b"g");
    drop(one);
    assert_eq!(err(look(&ns, &root(), "/c/f")), Errno::NOENT);
    assert_eq!(ino(&ns, &root(), "/c/g"), f);
    rename(b"g", b"f");
    assert_eq!(ino(&ns, &root(), "/c/f"), f);
    rename(b"f", b"g");
    drop(two);
    assert_eq!(err(look(&ns, &root(), "/c/f")), Errno::NOENT);
    assert_eq!(ino(&ns, &root(), "/c/g"), f);
    // A change already complete (bump) after a cached walk.
    rename(b"g", b"f");
    generation.bump();
    assert_eq!(ino(&ns, &root(), "/c/f"), f);
    rename(b"f", b"g");
    generation.bump();
    assert_eq!(err(look(&ns, &root(), "/c/f")), Errno::NOENT);
}

#[test]
fn concurrent_renames_are_seen_once_done() {
    let (_fs, ns) = new_ns();
    mkdir(&ns, "/a", 0o755);
    mkdir(&ns, "/a/b", 0o755);
    let f = touch(&ns, "/a/b/f");
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|i| {
            let ns = ns.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let c = if i == 0 { root() } else { user(1000 + i) };
                while !stop.load(Ordering::Relaxed) {
                    for p in ["/a/b/f", "/x/b/f", "/a/b", "/x/b"] {
                        let _ = ns.stat(&c, None, p, true);
                    }
                }
            })
        })
        .collect();
    for round in 0..500 {
        let (from, to) = if round % 2 == 0 { ("/a", "/x") } else { ("/x", "/a") };
        ns.rename_path(&root(), None, from, to, RenameFlags::empty()).unwrap();
        let c = user(1000 + (round % 3));
        assert_eq!(ns.stat(&c, None, format!("{to}/b/f"), true).unwrap().ino, f);
        assert_eq!(err(ns.stat(&c, None, format!("{from}/b/f"), true)), Errno::NOENT);
        if round % 50 == 0 {
            chmod(&ns, to, 0o700);
            assert_eq!(err(ns.stat(&c, None, format!("{to}/b/f"), true)), Errno::ACCESS);
            chmod(&ns, to, 0o755);
            assert_eq!(ns.stat(&c, None, format!("{to}/b/f"), true).unwrap().ino, f);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
}
