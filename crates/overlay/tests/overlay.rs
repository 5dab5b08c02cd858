//! Overlay behaviour that the kernel differential test cannot cover: gVisor's
//! extensions, 0/0 devices, concurrency, sparse copy-up, inode stability, hard links
//! in a lower layer (overlayfs `index=on` semantics), and the configureOverlay root
//! rules.

use sandfs_overlay::{OPAQUE_XATTR, Overlay};
use sandfs_tmpfs::{Tmpfs, TmpfsOptions};
use sandfs_vfs::ops::Make;
use sandfs_vfs::{
    Creds, Errno, FallocFlags, FileType, Filesystem, MountFlags, MountNamespace, OpenFlags, RenameFlags,
    SetAttr, Whence, XattrFlags,
};
use std::sync::Arc;

fn root() -> Creds {
    Creds::root()
}

/// A lower tmpfs with `d/{x,y}`, `d/e/z`, `f` (content "lower"), and `h1`,`h2` hard links.
fn lower() -> Arc<Tmpfs> {
    let fs = Tmpfs::new_default();
    let ns = MountNamespace::new(fs.clone(), MountFlags::empty());
    let c = root();
    ns.mkdir(&c, None, "d", 0o755).unwrap();
    ns.mkdir(&c, None, "d/e", 0o750).unwrap();
    for p in ["d/x", "d/y", "d/e/z", "f", "h1"] {
        let f = ns.open_path(&c, None, p, OpenFlags::WRITE | OpenFlags::CREAT, 0o644).unwrap();
        f.write_at(b"lower", 0).unwrap();
    }
    ns.link_path(&c, None, "h1", "h2").unwrap();
    fs
}

fn overlay(lower: &Arc<Tmpfs>) -> (Arc<Overlay>, Arc<MountNamespace>) {
    let ov = Overlay::new(Tmpfs::new_default(), vec![lower.clone()]).unwrap();
    let ns = MountNamespace::new(ov.clone(), MountFlags::empty());
    (ov, ns)
}

fn read(ns: &MountNamespace, p: &str) -> Vec<u8> {
    let f = ns.open_path(&root(), None, p, OpenFlags::READ, 0).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let n = f.read_at(&mut buf, 0).unwrap();
    buf.truncate(n);
    buf
}

fn list(ns: &MountNamespace, p: &str) -> Vec<String> {
    let f = ns.open_path(&root(), None, p, OpenFlags::READ | OpenFlags::DIRECTORY, 0).unwrap();
    let mut v = Vec::new();
    f.readdir(&mut |e| {
        if e.name != b"." && e.name != b".." {
            v.push(String::from_utf8_lossy(e.name).into_owned());
        }
        true
    })
    .unwrap();
    v.sort();
    v
}

#[test]
fn renaming_a_lower_directory_copies_it_up_opaque() {
    let l = lower();
    let (ov, ns) = overlay(&l);
    let c = root();
    let ino = ns.stat(&c, None, "d", false).unwrap().ino;
    ns.rename_path(&c, None, "d", "moved", RenameFlags::empty()).unwrap();
    assert_eq!(list(&ns, "moved"), ["e", "x", "y"]);
    assert_eq!(list(&ns, "moved/e"), ["z"]);
    assert_eq!(read(&ns, "moved/e/z"), b"lower");
    assert_eq!(ns.stat(&c, None, "d", false).unwrap_err(), Errno::NOENT);
    assert_eq!(ns.stat(&c, None, "moved", false).unwrap().ino, ino, "st_ino survives the move");
    // The moved directory is opaque in the upper layer; the lower is untouched.
    let up = ov.upper_root().unwrap().lookup(b"moved").unwrap();
    assert_eq!(up.getxattr(OPAQUE_XATTR).unwrap(), b"y");
    assert!(l.root().lookup(b"d").is_ok());
    assert!(l.root().lookup(b"moved").is_err());
    // NOREPLACE works onto a lower name.
    assert_eq!(ns.rename_path(&c, None, "moved", "f", RenameFlags::NOREPLACE), Err(Errno::EXIST));
}

/// A rename that fails on a non-empty target copies nothing up: overlayfs checks the
/// target before any copy-up, and a copied-up parent would show other attributes
/// (nlink 1, the upper's size) than the untouched lower one.
#[test]
fn a_rename_refused_for_a_full_target_copies_nothing_up() {
    let l = lower();
    let (ov, ns) = overlay(&l);
    let c = root();
    ns.mkdir(&c, None, "n", 0o755).unwrap();
    let before = ns.stat(&c, None, "d", false).unwrap();
    assert_eq!(ns.rename_path(&c, None, "n", "d/e", RenameFlags::empty()), Err(Errno::NOTEMPTY));
    assert_eq!(ov.upper_root().unwrap().lookup(b"d").err(), Some(Errno::NOENT), "d was copied up");
    let after = ns.stat(&c, None, "d", false).unwrap();
    assert_eq!((after.nlink, after.size), (before.nlink, before.size));
}

#[test]
fn char_device_zero_zero_is_not_a_whiteout() {
    let l = lower();
    let (_ov, ns) = overlay(&l);
    let c = root();
    ns.mknod(&c, None, "dev00", Make::CharDev(0), 0o600).unwrap();
    let a = ns.stat(&c, None, "dev00", false).unwrap();
    assert_eq!((a.kind, a.rdev), (FileType::CharDevice, 0));
    assert!(list(&ns, "/").contains(&"dev00".to_string()));
    // Over a deleted lower name too.
    ns.unlink_path(&c, None, "f").unwrap();
    ns.mknod(&c, None, "f", Make::CharDev(0), 0o600).unwrap();
    assert_eq!(ns.stat(&c, None, "f", false).unwrap().kind, FileType::CharDevice);
    ns.unlink_path(&c, None, "f").unwrap();
    assert_eq!(ns.stat(&c, None, "f", false).unwrap_err(), Errno::NOENT, "the whiteout came back");
}

#[test]
fn one_copy_up_under_concurrent_writers() {
    let l = lower();
    let (_ov, ns) = overlay(&l);
    let threads: Vec<_> = (0..8u64)
        .map(|i| {
            let ns = ns.clone();
            std::thread::spawn(move || {
                let f = ns.open_path(&root(), None, "f", OpenFlags::WRITE, 0).unwrap();
                f.write_at(&[b'0' + i as u8], 100 + i).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let data = read(&ns, "f");
    assert_eq!(&data[..5], b"lower");
    for i in 0..8u64 {
        assert_eq!(data[100 + i as usize], b'0' + i as u8, "write {i} lost");
    }
    assert_eq!(read_lower(&l, "f"), b"lower");
}

/// Writers racing through both names of a lower hard link: one copy, no write lost.
#[test]
fn one_copy_up_under_concurrent_writers_through_both_names() {
    let l = lower();
    let (ov, ns) = overlay(&l);
    let threads: Vec<_> = (0..8u64)
        .map(|i| {
            let ns = ns.clone();
            std::thread::spawn(move || {
                let name = if i % 2 == 0 { "h1" } else { "h2" };
                let f = ns.open_path(&root(), None, name, OpenFlags::WRITE, 0).unwrap();
                f.write_at(&[b'0' + i as u8], 100 + i).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for name in ["h1", "h2"] {
        let data = read(&ns, name);
        for i in 0..8u64 {
            assert_eq!(data[100 + i as usize], b'0' + i as u8, "{name}: write {i} lost");
        }
    }
    let up = ov.upper_root().unwrap();
    assert_eq!(up.lookup(b"h1").unwrap().ino(), up.lookup(b"h2").unwrap().ino(), "one copy");
    assert_eq!(read_lower(&l, "h1"), b"lower");
}

fn read_lower(l: &Arc<Tmpfs>, p: &str) -> Vec<u8> {
    let ns = MountNamespace::new(l.clone(), MountFlags::empty());
    read(&ns, p)
}

#[test]
fn sparse_copy_up_keeps_holes_and_read_handles_follow_it() {
    let l = lower();
    {
        let ns = MountNamespace::new(l.clone(), MountFlags::empty());
        let f = ns.open_path(&root(), None, "sparse", OpenFlags::WRITE | OpenFlags::CREAT, 0o644).unwrap();
        f.write_at(b"head", 0).unwrap();
        f.write_at(b"tail", 64 << 20).unwrap();
    }
    let (_ov, ns) = overlay(&l);
    let c = root();
    let reader = ns.open_path(&c, None, "sparse", OpenFlags::READ, 0).unwrap();
    let w = ns.open_path(&c, None, "sparse", OpenFlags::WRITE, 0).unwrap();
    w.write_at(b"HEAD", 0).unwrap();
    let a = ns.stat(&c, None, "sparse", false).unwrap();
    assert_eq!(a.size, (64 << 20) + 4);
    assert!(a.blocks <= 16, "holes were filled: {} blocks", a.blocks);
    assert_eq!(w.seek_data(4096, Whence::Data).unwrap(), 64 << 20);
    let mut buf = [0u8; 4];
    reader.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"HEAD", "a read-only handle opened before the copy-up reads the copy");
    assert_eq!(reader.seek_data(4096, Whence::Data).unwrap(), 64 << 20);
    let fresh = ns.open_path(&c, None, "sparse", OpenFlags::READ, 0).unwrap();
    fresh.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"HEAD");
}

#[test]
fn size_limit_gives_enospc_without_corruption() {
    let l = lower();
    let upper = Tmpfs::new(&TmpfsOptions { size: Some(1 << 20), ..TmpfsOptions::default() }).unwrap();
    let ov = Overlay::new(upper, vec![l.clone()]).unwrap();
    let ns = MountNamespace::new(ov, MountFlags::empty());
    let f = ns.open_path(&root(), None, "big", OpenFlags::WRITE | OpenFlags::CREAT, 0o644).unwrap();
    let chunk = vec![7u8; 64 << 10];
    let mut written = 0u64;
    let err = loop {
        match f.write_at(&chunk, written) {
            Ok(n) => written += n as u64,
            Err(e) => break e,
        }
    };
    assert_eq!(err, Errno::NOSPC);
    assert!(written > 0 && written <= 1 << 20);
    let data = read_all(&ns, "big");
    assert_eq!(data.len() as u64, written);
    assert!(data.iter().all(|&b| b == 7));
    // Copy-up of a lower file also fails cleanly, leaving the lower visible.
    assert_eq!(read(&ns, "f"), b"lower");
}

fn read_all(ns: &MountNamespace, p: &str) -> Vec<u8> {
    let f = ns.open_path(&root(), None, p, OpenFlags::READ, 0).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn inode_numbers_are_stable_across_copy_up() {
    let l = lower();
    let (_ov, ns) = overlay(&l);
    let c = root();
    let d = ns.stat(&c, None, "d", false).unwrap().ino;
    let x = ns.stat(&c, None, "d/x", false).unwrap().ino;
    ns.setattr_path(&c, None, "d/x", &SetAttr { mode: Some(0o600), ..Default::default() }, false).unwrap();
    assert_eq!(ns.stat(&c, None, "d", false).unwrap().ino, d);
    assert_eq!(ns.stat(&c, None, "d/x", false).unwrap().ino, x);
    let dev = ns.stat(&c, None, "d/x", false).unwrap().dev;
    assert_eq!(ns.stat(&c, None, "f", false).unwrap().dev, dev, "one st_dev for the whole overlay");
}

fn append(ns: &MountNamespace, p: &str, data: &[u8]) {
    let f = ns.open_path(&root(), None, p, OpenFlags::WRITE | OpenFlags::APPEND, 0).unwrap();
    f.write(data).unwrap();
}

fn nlink(ns: &MountNamespace, p: &str) -> u64 {
    ns.stat(&root(), None, p, false).unwrap().nlink
}

/// The issue-13 scenario: a write through one name of a lower hard link survives the
/// other name being looked up, and shows through it.
#[test]
fn a_write_through_one_lower_link_survives_and_shows_through_the_other() {
    let l = lower();
    let (_ov, ns) = overlay(&l);
    append(&ns, "h1", b", new");
    assert_eq!(read(&ns, "h1"), b"lower, new");
    ns.stat(&root(), None, "h2", false).unwrap();
    assert_eq!(read(&ns, "h1"), b"lower, new", "the write is kept");
    assert_eq!(read(&ns, "h2"), b"lower, new", "the other name shows it");
    append(&ns, "h2", b"!");
    assert_eq!(read(&ns, "h1"), b"lower, new!");
    assert_eq!(read_lower(&l, "h1"), b"lower");
}

#[test]
fn chmod_and_truncate_through_one_lower_link_show_through_the_other() {
    let l = lower();
    let (_ov, ns) = overlay(&l);
    let c = root();
    // Both names looked up before the change.
    ns.stat(&c, None, "h1", false).unwrap();
    ns.stat(&c, None, "h2", false).unwrap();
    ns.setattr_path(&c, None, "h1", &SetAttr { mode: Some(0o600), ..Default::default() }, true).unwrap();
    assert_eq!(ns.stat(&c, None, "h2", false).unwrap().mode, 0o600);
    let f = ns.open_path(&c, None, "h2", OpenFlags::WRITE, 0).unwrap();
    f.truncate(2).unwrap();
    assert_eq!(read(&ns, "h1"), b"lo");
    assert_eq!(ns.stat(&c, None, "h1", false).unwrap().size, 2);
    ns.setxattr(&c, &ns.resolve(&c, None, "h2", true).unwrap(), b"user.x", b"1", XattrFlags::empty())
        .unwrap();
    assert_eq!(ns.getxattr(&c, &ns.resolve(&c, None, "h1", true).unwrap(), b"user.x").unwrap(), b"1");
}

#[test]
fn lower_links_share_one_inode_number() {
    let l = lower();
    let (_ov, ns) = overlay(&l);
    let c = root();
    let i1 = ns.stat(&c, None, "h1", false).unwrap().ino;
    assert_eq!(ns.stat(&c, None, "h2", false).unwrap().ino, i1);
    append(&ns, "h2", b"x");
    assert_eq!(ns.stat(&c, None, "h1", false).unwrap().ino, i1, "unchanged by the copy-up");
    assert_eq!(ns.stat(&c, None, "h2", false).unwrap().ino, i1);
    assert_ne!(ns.stat(&c, None, "f", false).unwrap().ino, i1);
}

/// st_nlink counts the merged view's names, as overlayfs with index=on: the lower
/// count, less names removed or replaced, plus links made.
#[test]
fn link_counts_follow_the_merged_names() {
    let l = lower();
    let (_ov, ns) = overlay(&l);
    let c = root();
    assert_eq!((nlink(&ns, "h1"), nlink(&ns, "h2")), (2, 2));
    append(&ns, "h1", b"+");
    assert_eq!((nlink(&ns, "h1"), nlink(&ns, "h2")), (2, 2), "a copy-up keeps the link");
    ns.unlink_path(&c, None, "h1").unwrap();
    assert_eq!(nlink(&ns, "h2"), 1);
    assert_eq!(read(&ns, "h2"), b"lower+");
    ns.link_path(&c, None, "h2", "d/h3").unwrap();
    assert_eq!((nlink(&ns, "h2"), nlink(&ns, "d/h3")), (2, 2));
    ns.rename_path(&c, None, "d/h3", "h4", RenameFlags::empty()).unwrap();
    assert_eq!(nlink(&ns, "h4"), 2, "a rename keeps the count");
    // Another file renamed over one name takes that name away.
    ns.rename_path(&c, None, "f", "h4", RenameFlags::empty()).unwrap();
    assert_eq!(nlink(&ns, "h2"), 1);
    assert_eq!(read(&ns, "h4"), b"lower");
    // Renaming one name onto another of the same file changes nothing.
    ns.link_path(&c, None, "h2", "h5").unwrap();
    ns.rename_path(&c, None, "h2", "h5", RenameFlags::empty()).unwrap();
    assert_eq!((nlink(&ns, "h2"), nlink(&ns, "h5")), (2, 2));
}

#[test]
fn a_lower_link_removed_before_any_change_counts_down() {
    let l = lower();
    let (_ov, ns) = overlay(&l);
    let c = root();
    ns.unlink_path(&c, None, "h2").unwrap();
    assert_eq!(nlink(&ns, "h1"), 1);
    assert_eq!(read(&ns, "h1"), b"lower");
    assert!(ns.stat(&c, None, "h2", false).is_err());
}

/// The copy outlives the name it was made through: the other name, looked up only
/// afterwards, shows it.
#[test]
fn the_copy_outlives_the_name_it_was_made_through() {
    let l = lower();
    let (_ov, ns) = overlay(&l);
    let c = root();
    append(&ns, "h1", b" kept");
    ns.unlink_path(&c, None, "h1").unwrap();
    assert_eq!(read(&ns, "h2"), b"lower kept");
    assert_eq!(nlink(&ns, "h2"), 1);
    ns.unlink_path(&c, None, "h2").unwrap();
    assert_eq!(list(&ns, "/"), ["d", "f"]);
}

/// Renames move a name of a lower hard link (it gets an upper entry, a link to the
/// one copy), and a moved directory takes its names of the link along.
#[test]
fn renamed_names_of_a_lower_link_stay_linked() {
    let l = lower();
    let lns = MountNamespace::new(l.clone(), MountFlags::empty());
    lns.link_path(&root(), None, "h1", "d/h").unwrap();
    let (ov, ns) = overlay(&l);
    let c = root();
    ns.rename_path(&c, None, "h2", "d/e/moved", RenameFlags::empty()).unwrap();
    append(&ns, "h1", b"1");
    assert_eq!(read(&ns, "d/e/moved"), b"lower1");
    ns.rename_path(&c, None, "d", "d2", RenameFlags::empty()).unwrap();
    append(&ns, "d2/h", b"2");
    assert_eq!(read(&ns, "h1"), b"lower12");
    assert_eq!(read(&ns, "d2/e/moved"), b"lower12");
    assert_eq!(nlink(&ns, "d2/h"), 3);
    // In the upper layer, the moved names are links to the one copy.
    let up = ov.upper_root().unwrap();
    let d2 = up.lookup(b"d2").unwrap();
    let moved = d2.lookup(b"e").unwrap().lookup(b"moved").unwrap();
    assert_eq!(moved.ino(), d2.lookup(b"h").unwrap().ino());
}

#[test]
fn root_rules_of_configure_overlay() {
    // The upper root takes the lower root's owner and mode.
    let l = lower();
    let lns = MountNamespace::new(l.clone(), MountFlags::empty());
    lns.setattr_path(
        &root(),
        None,
        "/",
        &SetAttr { mode: Some(0o750), uid: Some(42), gid: Some(43), ..Default::default() },
        false,
    )
    .unwrap();
    let (_ov, ns) = overlay(&l);
    let a = ns.stat(&root(), None, "/", false).unwrap();
    assert_eq!((a.mode, a.uid, a.gid), (0o750, 42, 43));
    // A regular-file lower root is copied up eagerly.
    let file = Tmpfs::new(&TmpfsOptions { root: FileType::Regular, ..TmpfsOptions::default() }).unwrap();
    file.root().open(OpenFlags::WRITE).unwrap().write_at(b"file root", 0).unwrap();
    let ov = Overlay::new(Tmpfs::new_default(), vec![file.clone()]).unwrap();
    let up = ov.upper_root().unwrap();
    assert_eq!(up.kind(), FileType::Regular);
    let mut buf = [0u8; 9];
    up.open(OpenFlags::READ).unwrap().read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"file root");
    // Other root types are refused.
    struct LinkRoot(sandfs_vfs::NodeRef);
    impl Filesystem for LinkRoot {
        fn root(&self) -> sandfs_vfs::NodeRef {
            self.0.clone()
        }
        fn statfs(&self) -> sandfs_vfs::Result<sandfs_vfs::StatFs> {
            Err(Errno::NOSYS)
        }
        fn name(&self) -> &str {
            "symlink-root"
        }
    }
    let t = Tmpfs::new_default();
    let tns = MountNamespace::new(t.clone(), MountFlags::empty());
    let link = tns.symlink(&root(), None, "/", "l").unwrap().node;
    let refused = Overlay::new(Tmpfs::new_default(), vec![Arc::new(LinkRoot(link))]);
    assert_eq!(refused.err(), Some(Errno::INVAL));
}

#[test]
fn lower_layers_are_never_written() {
    let l = lower();
    let before = snapshot(&l);
    let (_ov, ns) = overlay(&l);
    let c = root();
    ns.rename_path(&c, None, "d", "d2", RenameFlags::empty()).unwrap();
    ns.unlink_path(&c, None, "f").unwrap();
    ns.mkdir(&c, None, "new", 0o755).unwrap();
    ns.open_path(&c, None, "h1", OpenFlags::WRITE | OpenFlags::TRUNC, 0).unwrap();
    ns.setattr_path(&c, None, "h2", &SetAttr { mode: Some(0o777), ..Default::default() }, false).unwrap();
    let f = ns.open_path(&c, None, "d2/e/z", OpenFlags::WRITE, 0).unwrap();
    f.fallocate(FallocFlags::KEEP_SIZE | FallocFlags::PUNCH_HOLE, 0, 2).unwrap();
    assert_eq!(snapshot(&l), before);
}

fn snapshot(l: &Arc<Tmpfs>) -> Vec<(String, u32, u64, Vec<u8>)> {
    let ns = MountNamespace::new(l.clone(), MountFlags::empty());
    let mut out = Vec::new();
    let mut stack = vec!["".to_string()];
    while let Some(d) = stack.pop() {
        for n in list(&ns, if d.is_empty() { "/" } else { &d }) {
            let p = format!("{d}/{n}");
            let a = ns.stat(&root(), None, &p, false).unwrap();
            let data = if a.kind == FileType::Regular { read(&ns, &p) } else { Vec::new() };
            if a.kind == FileType::Directory {
                stack.push(p.clone());
            }
            out.push((p, a.mode, a.mtime.as_nanos() as u64, data));
        }
    }
    out.sort();
    out
}

#[test]
fn reading_and_listing_never_copy_up() {
    // Fresh lower files have atime == mtime: a relatime update would be due, and
    // must not turn into a copy-up.
    let l = lower();
    let (ov, ns) = overlay(&l);
    assert_eq!(read(&ns, "f"), b"lower");
    assert_eq!(read(&ns, "d/e/z"), b"lower");
    assert_eq!(list(&ns, "d"), ["e", "x", "y"]);
    let up = ov.upper_root().unwrap();
    assert!(up.lookup(b"f").is_err(), "a read copied f up");
    assert!(up.lookup(b"d").is_err(), "a read or a listing copied d up");
}

#[test]
fn xattrs_fill_a_sized_upper_and_copy_up_charges_them() {
    // The upper is a tmpfs: what a program stores in xattrs counts against its size
    // (kernel tmpfs would take ~3 GiB of them under size=64m; see the tmpfs crate).
    const MIB: u64 = 1 << 20;
    let l = lower();
    let lns = MountNamespace::new(l.clone(), MountFlags::empty());
    let big = vec![b'l'; sandfs_tmpfs::XATTR_SIZE_MAX];
    for i in 0..4 {
        let loc = lns.resolve(&root(), None, "f", false).unwrap();
        lns.setxattr(&root(), &loc, format!("user.l{i}").as_bytes(), &big, XattrFlags::empty()).unwrap();
    }
    let upper = Tmpfs::new(&TmpfsOptions { size: Some(64 * MIB), ..TmpfsOptions::default() }).unwrap();
    let ov = Overlay::new(upper.clone(), vec![l.clone()]).unwrap();
    let ns = MountNamespace::new(ov, MountFlags::empty());
    let c = root();
    // Copy-up (on the first xattr change) brings the lower's four with it.
    let before = upper.charged_bytes();
    let f = ns.resolve(&c, None, "f", false).unwrap();
    ns.setxattr(&c, &f, b"user.up", b"1", XattrFlags::empty()).unwrap();
    assert!(
        upper.charged_bytes() - before > 4 * big.len() as u64,
        "copy-up charged {}",
        upper.charged_bytes()
    );
    // Then fill the upper with xattrs on that file.
    let value = vec![b'v'; sandfs_tmpfs::XATTR_SIZE_MAX];
    let mut n = 0;
    let err = loop {
        match ns.setxattr(&c, &f, format!("user.{n:06}").as_bytes(), &value, XattrFlags::empty()) {
            Ok(()) => n += 1,
            Err(e) => break e,
        }
        assert!(n * value.len() as u64 <= 64 * MIB, "more than 64 MiB of xattrs on a 64m upper");
    };
    assert_eq!(err, Errno::NOSPC);
    assert!(n > 900, "only {n} xattrs fit");
    let w = ns.open_path(&c, None, "new", OpenFlags::WRITE | OpenFlags::CREAT, 0o644).unwrap();
    // Data gets what is left: less than one more xattr's worth.
    match w.write_at(&vec![1; 1 << 20], 0) {
        Ok(n) => assert!(n < 1 << 17, "{n} bytes written into a full upper"),
        Err(e) => assert_eq!(e, Errno::NOSPC),
    }
    // Removing them gives the space back to data.
    for i in 0..n {
        ns.removexattr(&c, &f, format!("user.{i:06}").as_bytes()).unwrap();
    }
    let chunk = vec![2u8; 1 << 20];
    for i in 0..32u64 {
        assert_eq!(w.write_at(&chunk, i << 20).unwrap(), chunk.len());
    }
    // Unlinking the copied-up file gives its xattrs back too (a whiteout stays).
    let held = upper.charged_bytes();
    drop(f);
    ns.unlink_path(&c, None, "f").unwrap();
    assert!(held - upper.charged_bytes() > 4 * big.len() as u64);
}

/// A gofer client of host directory `host`, read-only, served from this process.
fn gofer_lower(host: &std::path::Path, access: sandfs_gofer::client::FileAccess) -> Arc<dyn Filesystem> {
    let (client, server_end) = sandfs_gofer::transport::Conn::pair().expect("socketpair");
    let source = sandfs_gofer::server::Source::open(host, true).expect("source");
    let server = sandfs_gofer::server::Server::new(source).expect("gofer server");
    std::thread::spawn(move || server.serve(server_end));
    sandfs_gofer::client::GoferFs::attach(client, access).expect("attach")
}

/// Open `p` as the kernel does: a walk that ends in ESTALE is redone once
/// (LOOKUP_REVAL), and only the second ESTALE is the caller's.
fn open_retrying(ns: &MountNamespace, p: &str, flags: OpenFlags) -> Result<sandfs_vfs::OpenFile, Errno> {
    match ns.open_path(&root(), None, p, flags, 0) {
        Err(e) if e == Errno::STALE => ns.open_path(&root(), None, p, flags, 0),
        r => r,
    }
}

/// A lower file replaced on the host (a new file renamed over its name) after a
/// listing made the overlay's node for it: its next open, for reading or for
/// writing (a copy-up), finds the file there now, or (exclusive mode) the old one,
/// and never fails with ESTALE. The host change is made between the listing and
/// the opens; nothing waits.
#[test]
fn a_lower_file_replaced_on_the_host_is_not_stale() {
    use sandfs_gofer::client::FileAccess;
    for access in [FileAccess::Exclusive, FileAccess::Shared] {
        for write in [false, true] {
            let what = format!("{access:?}, open for {}", if write { "writing" } else { "reading" });
            let host = tempfile::tempdir().expect("tempdir");
            std::fs::write(host.path().join("f"), b"v1\n").expect("write");
            let ov =
                Overlay::new(Tmpfs::new_default(), vec![gofer_lower(host.path(), access)]).expect("overlay");
            let ns = MountNamespace::new(ov, MountFlags::empty());
            assert_eq!(list(&ns, "/"), ["f"], "{what}");
            assert_eq!(ns.stat(&root(), None, "/f", true).expect("stat").size, 3, "{what}");

            std::fs::write(host.path().join("f.new"), b"NEWCONTENT-much-longer\n").expect("write");
            std::fs::rename(host.path().join("f.new"), host.path().join("f")).expect("rename over");

            let flags = if write { OpenFlags::READ | OpenFlags::WRITE } else { OpenFlags::READ };
            let f = open_retrying(&ns, "/f", flags).unwrap_or_else(|e| panic!("{what}: open: {e}"));
            let mut buf = vec![0u8; 4096];
            let n = f.read_at(&mut buf, 0).expect("read");
            let data = &buf[..n];
            assert!(
                data == b"v1\n" || data == b"NEWCONTENT-much-longer\n",
                "{what}: read {:?}",
                String::from_utf8_lossy(data)
            );
            // The host keeps its new file whatever the overlay did.
            assert_eq!(std::fs::read(host.path().join("f")).expect("host"), b"NEWCONTENT-much-longer\n");
        }
    }
}
