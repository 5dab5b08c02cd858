//! The in-memory filesystem: node types, hard links and link counts, sparse files and
//! block accounting, fallocate and SEEK_DATA/SEEK_HOLE, mount options and their
//! limits, a regular-file root, option parsing, readdir under concurrent change, and
//! rename with RENAME_NOREPLACE / RENAME_EXCHANGE. Expected values were checked on a
//! kernel tmpfs (Linux 6.18) where the kernel defines them.

use sandfs_tmpfs::{NO_LIMIT, PAGE_SIZE, TMPFS_MAGIC, Tmpfs, TmpfsOptions};
use sandfs_vfs::ops::Make;
use sandfs_vfs::{
    Creds, Errno, FallocFlags, FileType, Filesystem, MountFlags, MountNamespace, OpenFile, OpenFlags,
    RenameFlags, SetAttr, Whence, XattrFlags,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const PS: u64 = PAGE_SIZE;

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

fn with_opts(o: &TmpfsOptions) -> (Arc<Tmpfs>, Arc<MountNamespace>) {
    let fs = Tmpfs::new(o).unwrap();
    let ns = MountNamespace::new(fs.clone(), MountFlags::empty());
    (fs, ns)
}

fn create(ns: &MountNamespace, path: &str) -> OpenFile {
    ns.open_path(&root(), None, path, OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREAT, 0o644)
        .unwrap_or_else(|e| panic!("create {path}: {e}"))
}

fn write_file(ns: &MountNamespace, path: &str, data: &[u8]) {
    assert_eq!(create(ns, path).write(data).unwrap(), data.len());
}

fn read_at(f: &OpenFile, off: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0xAAu8; len];
    let n = f.read_at(&mut buf, off).unwrap();
    buf.truncate(n);
    buf
}

fn read_file(ns: &MountNamespace, path: &str) -> Vec<u8> {
    let f = ns.open_path(&root(), None, path, OpenFlags::READ, 0).unwrap();
    let size = f.stat().unwrap().size as usize;
    read_at(&f, 0, size + 10)
}

fn stat(ns: &MountNamespace, path: &str) -> sandfs_vfs::Attr {
    ns.stat(&root(), None, path, false).unwrap_or_else(|e| panic!("stat {path}: {e}"))
}

fn nlink(ns: &MountNamespace, path: &str) -> u64 {
    stat(ns, path).nlink
}

fn list(ns: &MountNamespace, path: &str) -> Vec<String> {
    let d = ns.open_path(&root(), None, path, OpenFlags::READ | OpenFlags::DIRECTORY, 0).unwrap();
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

#[test]
fn every_node_type() {
    let (fs, ns) = new_ns();
    let r = root();
    ns.mkdir(&r, None, "/dir", 0o751).unwrap();
    write_file(&ns, "/reg", b"abc");
    ns.symlink(&r, None, "reg", "/sym").unwrap();
    ns.mknod(&r, None, "/fifo", Make::Fifo, 0o620).unwrap();
    ns.mknod(&r, None, "/sock", Make::Socket, 0o755).unwrap();
    let chr = (4u64 << 8) | 64; // tty64-like 4:64
    let blk = (259u64 << 32) | (7 << 8) | 3; // a large major too
    ns.mknod(&r, None, "/chr", Make::CharDev(chr), 0o600).unwrap();
    ns.mknod(&r, None, "/blk", Make::BlockDev(blk), 0o660).unwrap();
    ns.mknod(&r, None, "/plain", Make::File, 0o640).unwrap();
    let expect = [
        ("/dir", FileType::Directory, 0o751, 0, 2),
        ("/reg", FileType::Regular, 0o644, 0, 1),
        ("/sym", FileType::Symlink, 0o777, 0, 1),
        ("/fifo", FileType::Fifo, 0o620, 0, 1),
        ("/sock", FileType::Socket, 0o755, 0, 1),
        ("/chr", FileType::CharDevice, 0o600, chr, 1),
        ("/blk", FileType::BlockDevice, 0o660, blk, 1),
        ("/plain", FileType::Regular, 0o640, 0, 1),
    ];
    let mut inos = BTreeSet::new();
    for (p, kind, mode, rdev, nl) in expect {
        let a = stat(&ns, p);
        assert_eq!((a.kind, a.mode, a.rdev, a.nlink), (kind, mode, rdev, nl), "{p}");
        assert_eq!(a.st_mode(), kind.mode_bits() | mode);
        assert_eq!(a.dev, stat(&ns, "/").dev);
        assert!(inos.insert(a.ino), "{p}: inode number reused");
    }
    assert_eq!(stat(&ns, "/reg").size, 3);
    assert_eq!(stat(&ns, "/sym").size, 3);
    assert_eq!(ns.readlink_path(&r, None, "/sym").unwrap(), b"reg");
    // readdir reports the types.
    let d = ns.open_path(&r, None, "/", OpenFlags::READ, 0).unwrap();
    let mut types = BTreeMap::new();
    d.readdir(&mut |e| {
        types.insert(String::from_utf8_lossy(e.name).into_owned(), (e.kind, e.ino));
        true
    })
    .unwrap();
    for (p, kind, ..) in expect {
        assert_eq!(types[&p[1..]], (kind, stat(&ns, p).ino), "{p}");
    }
    assert_eq!(types["."].0, FileType::Directory);
    assert_eq!(types[".."].1, stat(&ns, "/").ino);
    assert_eq!(fs.used_inodes(), 9);
    assert_eq!(fs.used_bytes(), PS);
}

#[test]
fn hard_links_and_link_counts() {
    let (fs, ns) = new_ns();
    let r = root();
    assert_eq!(nlink(&ns, "/"), 2);
    write_file(&ns, "/f", b"data");
    ns.link_path(&r, None, "/f", "/g").unwrap();
    ns.mkdir(&r, None, "/d", 0o755).unwrap();
    ns.link_path(&r, None, "/f", "/d/h").unwrap();
    assert_eq!(nlink(&ns, "/f"), 3);
    assert_eq!(stat(&ns, "/d/h").ino, stat(&ns, "/f").ino);
    assert_eq!(fs.used_inodes(), 3);
    ns.unlink_path(&r, None, "/f").unwrap();
    assert_eq!(nlink(&ns, "/g"), 2);
    assert_eq!(read_file(&ns, "/d/h"), b"data");
    // Links to directories are refused; to symlinks and devices allowed.
    assert_eq!(err(ns.link_path(&r, None, "/d", "/d2")), Errno::PERM);
    ns.symlink(&r, None, "nowhere", "/s").unwrap();
    ns.link_path(&r, None, "/s", "/s2").unwrap();
    assert_eq!(stat(&ns, "/s2").kind, FileType::Symlink);
    assert_eq!(nlink(&ns, "/s"), 2);
    assert_eq!(err(ns.link_path(&r, None, "/g", "/s")), Errno::EXIST);
    // Directory counts: 2 + subdirectories.
    for d in ["/d/a", "/d/b", "/d/c"] {
        ns.mkdir(&r, None, d, 0o755).unwrap();
    }
    assert_eq!((nlink(&ns, "/"), nlink(&ns, "/d"), nlink(&ns, "/d/a")), (3, 5, 2));
    ns.rmdir_path(&r, None, "/d/c").unwrap();
    assert_eq!(nlink(&ns, "/d"), 4);
    // Moving a directory moves its `..` link.
    ns.mkdir(&r, None, "/e", 0o755).unwrap();
    ns.rename_path(&r, None, "/d/a", "/e/a", RenameFlags::empty()).unwrap();
    assert_eq!((nlink(&ns, "/d"), nlink(&ns, "/e")), (3, 3));
    assert_eq!(stat(&ns, "/e/a/..").ino, stat(&ns, "/e").ino);
    // Replacing an empty directory by rename drops the victim's link on its parent.
    ns.rename_path(&r, None, "/d/b", "/e/a", RenameFlags::empty()).unwrap();
    assert_eq!((nlink(&ns, "/d"), nlink(&ns, "/e")), (2, 3));
    // A file keeps its count through rename; replacing a name drops a link.
    write_file(&ns, "/x", b"x");
    ns.rename_path(&r, None, "/x", "/g", RenameFlags::empty()).unwrap();
    assert_eq!(nlink(&ns, "/d/h"), 1);
    assert_eq!(read_file(&ns, "/d/h"), b"data");
    // rmdir of a non-empty directory; an open, removed directory cannot take entries.
    assert_eq!(err(ns.rmdir_path(&r, None, "/e")), Errno::NOTEMPTY);
    let dh = ns.resolve(&r, None, "/e/a", true).unwrap();
    ns.rmdir_path(&r, None, "/e/a").unwrap();
    assert_eq!(dh.node.attr().unwrap().nlink, 0);
    assert_eq!(err(ns.make(&r, &dh, b"new", Make::File, 0o644)), Errno::NOENT);
    // Linking an unlinked (still open) file: ENOENT.
    let f = create(&ns, "/tmpf");
    ns.unlink_path(&r, None, "/tmpf").unwrap();
    assert_eq!(err(ns.link(&r, f.location(), &ns.root(), b"back")), Errno::NOENT);
}

#[test]
fn sparse_files_and_blocks() {
    let (fs, ns) = new_ns();
    let f = create(&ns, "/sparse");
    let far = (1 << 20) + 1;
    f.write_at(b"xy", far).unwrap();
    let a = f.stat().unwrap();
    assert_eq!((a.size, a.blocks), (far + 2, 8));
    assert_eq!(fs.used_bytes(), PS);
    // Holes read as zeros, also across a hole/data boundary.
    assert!(read_at(&f, 0, 8192).iter().all(|&b| b == 0));
    let tail = read_at(&f, far - 3, 100);
    assert_eq!(tail, [0, 0, 0, b'x', b'y']);
    assert_eq!(read_at(&f, far + 2, 10), b"");
    assert_eq!(read_at(&f, far + 1000, 10), b"");
    // Extending by truncate allocates nothing.
    f.truncate(10 << 20).unwrap();
    assert_eq!((f.stat().unwrap().size, f.stat().unwrap().blocks), (10 << 20, 8));
    // Each touched page counts 8 blocks, wherever it is.
    f.write_at(b"a", 0).unwrap();
    f.write_at(b"b", 3 * PS - 1).unwrap();
    f.write_at(b"cd", 5 * PS - 1).unwrap(); // straddles pages 4 and 5
    assert_eq!(f.stat().unwrap().blocks, 8 * 5);
    assert_eq!(fs.used_bytes(), 5 * PS);
    // Shrinking frees every page past the new end, including a partly used last one
    // (kernel: a 5000-byte file truncated to 100 has 8 blocks).
    let g = create(&ns, "/g");
    g.write(&[1u8; 5000]).unwrap();
    assert_eq!(g.stat().unwrap().blocks, 16);
    g.truncate(100).unwrap();
    assert_eq!(g.stat().unwrap().blocks, 8);
    // The bytes past the end read as zeros when the file grows again.
    g.truncate(6000).unwrap();
    let data = read_at(&g, 0, 6000);
    assert!(data[..100].iter().all(|&b| b == 1));
    assert!(data[100..].iter().all(|&b| b == 0));
    g.truncate(0).unwrap();
    assert_eq!(g.stat().unwrap().blocks, 0);
    // Shrink at a page boundary keeps the pages before it.
    g.write_at(&[2u8; 3 * PS as usize], 0).unwrap();
    g.truncate(PS).unwrap();
    assert_eq!(g.stat().unwrap().blocks, 8);
    drop(g);
    ns.unlink_path(&root(), None, "/g").unwrap();
    assert_eq!(fs.used_bytes(), 5 * PS);
    f.truncate(0).unwrap();
    assert_eq!((f.stat().unwrap().blocks, fs.used_bytes()), (0, 0));
}

#[test]
fn fallocate_and_punch_hole() {
    let (fs, ns) = new_ns();
    let f = create(&ns, "/f");
    let keep = FallocFlags::KEEP_SIZE;
    let punch = FallocFlags::PUNCH_HOLE | FallocFlags::KEEP_SIZE;
    // Plain allocation extends the size and reads zeros.
    f.fallocate(FallocFlags::empty(), 0, 2 * PS).unwrap();
    let a = f.stat().unwrap();
    assert_eq!((a.size, a.blocks), (2 * PS, 16));
    assert!(read_at(&f, 0, 2 * PS as usize).iter().all(|&b| b == 0));
    // KEEP_SIZE past the end: blocks, no size.
    f.fallocate(keep, 4 * PS, PS).unwrap();
    let a = f.stat().unwrap();
    assert_eq!((a.size, a.blocks), (2 * PS, 24));
    // An unaligned range allocates every page it touches.
    f.fallocate(FallocFlags::empty(), 6 * PS + 10, 20).unwrap();
    let a = f.stat().unwrap();
    assert_eq!((a.size, a.blocks), (6 * PS + 30, 32));
    // Existing data survives allocation over it.
    f.write_at(b"keep me", 100).unwrap();
    f.fallocate(FallocFlags::empty(), 0, 3 * PS).unwrap();
    assert_eq!(read_at(&f, 100, 7), b"keep me");
    assert_eq!(fs.used_bytes(), 5 * PS);
    // Punch a whole page: blocks go, zeros read, size stays.
    f.write_at(&[9u8; PS as usize], PS).unwrap();
    f.fallocate(punch, PS, PS).unwrap();
    let a = f.stat().unwrap();
    assert_eq!((a.size, a.blocks), (6 * PS + 30, 32));
    assert!(read_at(&f, PS, PS as usize).iter().all(|&b| b == 0));
    // Partial pages are zeroed but stay allocated.
    f.write_at(&[5u8; 300], 0).unwrap();
    f.fallocate(punch, 10, 100).unwrap();
    let d = read_at(&f, 0, 300);
    assert!(d[..10].iter().all(|&b| b == 5) && d[10..110].iter().all(|&b| b == 0));
    assert!(d[110..].iter().all(|&b| b == 5));
    assert_eq!(f.stat().unwrap().blocks, 32);
    // A hole punched to far past the end frees the pages there, kernel-style (a
    // 5000-byte file punched from 4096 for 1 MiB keeps 8 blocks).
    let g = create(&ns, "/g");
    g.write(&[1u8; 5000]).unwrap();
    g.fallocate(punch, PS, 1 << 20).unwrap();
    let a = g.stat().unwrap();
    assert_eq!((a.size, a.blocks), (5000, 8));
    assert!(read_at(&g, PS, 904).iter().all(|&b| b == 0));
    // Pages allocated past the end with KEEP_SIZE can be punched too.
    g.fallocate(keep, 8 * PS, 2 * PS).unwrap();
    assert_eq!(g.stat().unwrap().blocks, 24);
    g.fallocate(punch, 8 * PS, 2 * PS).unwrap();
    assert_eq!(g.stat().unwrap().blocks, 8);
    // Mode and argument errors, as kernel tmpfs.
    assert_eq!(err(f.fallocate(FallocFlags::PUNCH_HOLE, 0, 10)), Errno::OPNOTSUPP);
    assert_eq!(err(f.fallocate(FallocFlags::ZERO_RANGE, 0, 10)), Errno::OPNOTSUPP);
    assert_eq!(err(f.fallocate(FallocFlags::empty(), 0, 0)), Errno::INVAL);
    let ro = ns.open_path(&root(), None, "/f", OpenFlags::READ, 0).unwrap();
    assert_eq!(err(ro.fallocate(FallocFlags::empty(), 0, 10)), Errno::BADF);
}

#[test]
fn seek_data_and_seek_hole() {
    let (_fs, ns) = new_ns();
    let f = create(&ns, "/f");
    // Values from a kernel tmpfs: 10 bytes written at 8197 (page 2 only).
    f.write_at(&[1u8; 10], 2 * PS + 5).unwrap();
    let size = 2 * PS + 15;
    assert_eq!(f.seek_data(0, Whence::Data).unwrap(), 2 * PS);
    assert_eq!(f.seek_data(0, Whence::Hole).unwrap(), 0);
    assert_eq!(f.seek_data(PS + 7, Whence::Hole).unwrap(), PS + 7);
    assert_eq!(f.seek_data(2 * PS + 8, Whence::Data).unwrap(), 2 * PS + 8);
    assert_eq!(f.seek_data(2 * PS + 8, Whence::Hole).unwrap(), size);
    assert_eq!(err(f.seek_data(size, Whence::Data)), Errno::NXIO);
    assert_eq!(err(f.seek_data(size, Whence::Hole)), Errno::NXIO);
    assert_eq!(err(f.seek_data(size + 100, Whence::Hole)), Errno::NXIO);
    // The file position moves to the answer.
    f.seek_data(0, Whence::Data).unwrap();
    let mut b = [0u8; 1];
    f.read(&mut b).unwrap();
    assert_eq!(f.seek(std::io::SeekFrom::Current(0)).unwrap(), 2 * PS + 1);
    // Data at the start, a hole, data: both transitions.
    f.write_at(b"a", 0).unwrap();
    f.write_at(b"b", 5 * PS).unwrap();
    assert_eq!(f.seek_data(0, Whence::Data).unwrap(), 0);
    assert_eq!(f.seek_data(0, Whence::Hole).unwrap(), PS);
    assert_eq!(f.seek_data(PS, Whence::Data).unwrap(), 2 * PS);
    assert_eq!(f.seek_data(2 * PS, Whence::Hole).unwrap(), 3 * PS);
    assert_eq!(f.seek_data(3 * PS, Whence::Data).unwrap(), 5 * PS);
    assert_eq!(f.seek_data(5 * PS, Whence::Hole).unwrap(), 5 * PS + 1);
    // A punched page becomes a hole.
    f.fallocate(FallocFlags::PUNCH_HOLE | FallocFlags::KEEP_SIZE, 2 * PS, PS).unwrap();
    assert_eq!(f.seek_data(PS, Whence::Data).unwrap(), 5 * PS);
    // Allocated but never written pages are holes for SEEK_DATA on kernel tmpfs
    // (fallocate 0..8192 on an empty file: SEEK_DATA 0 is ENXIO, SEEK_HOLE 0 is 0),
    // though they count in st_blocks.
    let g = create(&ns, "/g");
    g.fallocate(FallocFlags::empty(), 0, 2 * PS).unwrap();
    assert_eq!(g.stat().unwrap().blocks, 16);
    assert_eq!(err(g.seek_data(0, Whence::Data)), Errno::NXIO);
    assert_eq!(g.seek_data(0, Whence::Hole).unwrap(), 0);
    g.write_at(b"w", PS + 1).unwrap();
    assert_eq!(g.seek_data(0, Whence::Data).unwrap(), PS);
    assert_eq!(g.seek_data(PS, Whence::Hole).unwrap(), 2 * PS);
    assert_eq!(g.stat().unwrap().blocks, 16);
    assert!(
        read_at(&g, 0, 2 * PS as usize)
            .iter()
            .enumerate()
            .all(|(i, &b)| b == if i == PS as usize + 1 { b'w' } else { 0 })
    );
}

#[test]
fn mount_options_mode_uid_gid() {
    let o = TmpfsOptions { mode: Some(0o750), uid: 1000, gid: 100, ..Default::default() };
    let (_fs, ns) = with_opts(&o);
    let a = stat(&ns, "/");
    assert_eq!((a.kind, a.mode, a.uid, a.gid, a.nlink), (FileType::Directory, 0o750, 1000, 100, 2));
    let (_fs, ns) = new_ns();
    let a = stat(&ns, "/");
    assert_eq!((a.mode, a.uid, a.gid), (0o1777, 0, 0));
    let s = ns.statfs(&ns.root()).unwrap();
    assert_eq!((s.fs_type, s.namelen, s.bsize), (TMPFS_MAGIC, 255, PS as u32));
}

#[test]
fn size_limit_gives_enospc_without_corruption() {
    // Metadata counts against the size too: of 5 pages, the few inodes and entries
    // made here (under 1.5 KiB) take part of one, leaving 4 for data.
    let o = TmpfsOptions { size: Some(5 * PS), ..Default::default() };
    let (fs, ns) = with_opts(&o);
    let s = ns.statfs(&ns.root()).unwrap();
    assert_eq!((s.blocks, s.bfree), (5, 4));
    assert_eq!(fs.charged_bytes(), sandfs_tmpfs::INODE_COST);
    let f = create(&ns, "/a");
    let data: Vec<u8> = (0..6 * PS).map(|i| (i % 251) as u8).collect();
    // A write that does not fit is short; the next one fails.
    assert_eq!(f.write(&data).unwrap(), 4 * PS as usize);
    assert_eq!(err(f.write(&data[4 * PS as usize..])), Errno::NOSPC);
    assert_eq!(f.stat().unwrap().size, 4 * PS);
    assert_eq!(read_file(&ns, "/a"), &data[..4 * PS as usize]);
    assert_eq!(ns.statfs(&ns.root()).unwrap().bfree, 0);
    assert_eq!(fs.used_bytes(), 4 * PS);
    // Other files cannot get data; metadata still works.
    let g = create(&ns, "/b");
    assert_eq!(err(g.write(b"x")), Errno::NOSPC);
    assert_eq!(g.stat().unwrap().size, 0);
    ns.mkdir(&root(), None, "/dir", 0o755).unwrap();
    // Writing inside already allocated pages still works.
    f.write_at(b"overwrite", 10).unwrap();
    // fallocate is all-or-nothing.
    assert_eq!(err(g.fallocate(FallocFlags::empty(), 0, PS)), Errno::NOSPC);
    assert_eq!((g.stat().unwrap().size, g.stat().unwrap().blocks), (0, 0));
    // Appends that run out of space report what they wrote (kernel: 4000 bytes, then
    // an 8000-byte append on size=8k writes 4192).
    drop(f);
    ns.unlink_path(&root(), None, "/a").unwrap();
    assert_eq!(fs.used_bytes(), 0);
    let h = ns
        .open_path(&root(), None, "/c", OpenFlags::WRITE | OpenFlags::CREAT | OpenFlags::APPEND, 0o644)
        .unwrap();
    assert_eq!(g.write(&data[..2 * PS as usize]).unwrap(), 2 * PS as usize);
    assert_eq!(h.write(&data[..4000]).unwrap(), 4000);
    assert_eq!(h.write(&data[..8000]).unwrap(), 4192);
    assert_eq!(h.stat().unwrap().size, 8192);
    assert_eq!(err(h.write(b"more")), Errno::NOSPC);
    assert_eq!(err(h.write_at(b"more", 0)), Errno::NOSPC);
    // Space comes back after delete.
    drop((g, h));
    ns.unlink_path(&root(), None, "/b").unwrap();
    ns.unlink_path(&root(), None, "/c").unwrap();
    assert_eq!(fs.used_bytes(), 0);
    let f = create(&ns, "/again");
    assert_eq!(f.write(&data[..4 * PS as usize]).unwrap(), 4 * PS as usize);
    // Truncating returns space too.
    f.truncate(PS).unwrap();
    assert_eq!(fs.used_bytes(), PS);
    // The size option rounds up to whole pages (3 here: 2 for data, 1 for the
    // root, /x and its entry).
    let (_fs, ns) = with_opts(&TmpfsOptions { size: Some(2 * PS + 1), ..Default::default() });
    assert_eq!(create(&ns, "/x").write(&data[..2 * PS as usize]).unwrap(), 2 * PS as usize);
}

#[test]
fn inode_limit_gives_enospc_without_corruption() {
    // nr_inodes counts the root: nr_inodes=4 leaves room for 3 (kernel: nr_inodes=3
    // takes 2 files).
    let (fs, ns) = with_opts(&TmpfsOptions { nr_inodes: Some(4), ..Default::default() });
    let r = root();
    assert_eq!(fs.used_inodes(), 1);
    let s = ns.statfs(&ns.root()).unwrap();
    assert_eq!((s.files, s.ffree), (4, 3));
    write_file(&ns, "/a", b"a");
    ns.mkdir(&r, None, "/d", 0o755).unwrap();
    ns.symlink(&r, None, "a", "/l").unwrap();
    assert_eq!(fs.used_inodes(), 4);
    assert_eq!(err(ns.open_path(&r, None, "/b", OpenFlags::WRITE | OpenFlags::CREAT, 0o644)), Errno::NOSPC);
    assert_eq!(err(ns.mkdir(&r, None, "/d/e", 0o755)), Errno::NOSPC);
    assert_eq!(err(ns.symlink(&r, None, "a", "/m")), Errno::NOSPC);
    assert_eq!(err(ns.mknod(&r, None, "/p", Make::Fifo, 0o644)), Errno::NOSPC);
    assert_eq!(ns.statfs(&ns.root()).unwrap().ffree, 0);
    // Nothing half-made is left behind.
    assert_eq!(list(&ns, "/"), ["a", "d", "l"]);
    assert_eq!(list(&ns, "/d"), Vec::<String>::new());
    assert_eq!((nlink(&ns, "/"), nlink(&ns, "/d")), (3, 2));
    assert_eq!(fs.used_inodes(), 4);
    // Deleting returns the inode.
    ns.unlink_path(&r, None, "/l").unwrap();
    assert_eq!(fs.used_inodes(), 3);
    ns.mkdir(&r, None, "/d/e", 0o755).unwrap();
    assert_eq!(err(ns.mkdir(&r, None, "/d/f", 0o755)), Errno::NOSPC);
    // ...but not while an unlinked file is still open.
    let f = ns.open_path(&r, None, "/a", OpenFlags::READ, 0).unwrap();
    ns.unlink_path(&r, None, "/a").unwrap();
    assert_eq!(err(ns.mkdir(&r, None, "/x", 0o755)), Errno::NOSPC);
    drop(f);
    ns.mkdir(&r, None, "/x", 0o755).unwrap();
    // nr_inodes 0 through the struct: not even a root.
    assert_eq!(err(Tmpfs::new(&TmpfsOptions { nr_inodes: Some(0), ..Default::default() })), Errno::NOSPC);
}

#[test]
fn root_can_be_a_single_regular_file() {
    let o = TmpfsOptions { root: FileType::Regular, uid: 5, ..Default::default() };
    let (fs, ns) = with_opts(&o);
    let r = root();
    let a = stat(&ns, "/");
    assert_eq!((a.kind, a.mode, a.uid, a.nlink, a.size), (FileType::Regular, 0o644, 5, 1, 0));
    let f = ns.open_path(&r, None, "/", OpenFlags::READ | OpenFlags::WRITE, 0).unwrap();
    f.write(b"single file").unwrap();
    assert_eq!(read_at(&f, 0, 100), b"single file");
    assert_eq!(fs.used_bytes(), PS);
    assert_eq!(err(ns.mkdir(&r, None, "/x", 0o755)), Errno::NOTDIR);
    assert_eq!(err(ns.stat(&r, None, "/x", true)), Errno::NOTDIR);
    assert_eq!(err(ns.open_path(&r, None, "/", OpenFlags::READ | OpenFlags::DIRECTORY, 0)), Errno::NOTDIR);
    drop(f);
    // As a file mount in another namespace.
    let (_fs2, outer) = new_ns();
    outer.make_mount_point(b"/etc/hostname", FileType::Regular).unwrap();
    let m = outer.new_disconnected(fs.clone(), MountFlags::empty());
    outer.connect(&m, &outer.resolve(&r, None, "/etc/hostname", true).unwrap()).unwrap();
    assert_eq!(read_file(&outer, "/etc/hostname"), b"single file");
    let o = TmpfsOptions { root: FileType::Regular, mode: Some(0o600), ..Default::default() };
    assert_eq!(Tmpfs::new(&o).unwrap().root().attr().unwrap().mode, 0o600);
    // Other root types are refused.
    let o = TmpfsOptions { root: FileType::Symlink, ..Default::default() };
    assert_eq!(err(Tmpfs::new(&o)), Errno::INVAL);
}

#[test]
fn option_parsing() {
    let o = TmpfsOptions::parse("mode=1777,size=64m,uid=1000,gid=100,nr_inodes=10k").unwrap();
    assert_eq!(
        o,
        TmpfsOptions {
            mode: Some(0o1777),
            uid: 1000,
            gid: 100,
            size: Some(64 << 20),
            nr_inodes: Some(10 << 10),
            root: FileType::Directory,
            memfd_from: Some(sandfs_tmpfs::MEMFD_FROM),
        }
    );
    assert_eq!(TmpfsOptions::parse("").unwrap(), TmpfsOptions::default());
    assert_eq!(TmpfsOptions::parse("mode=755").unwrap().mode, Some(0o755));
    assert_eq!(TmpfsOptions::parse("mode=0700").unwrap().mode, Some(0o700));
    assert_eq!(TmpfsOptions::parse("size=2g").unwrap().size, Some(2 << 30));
    assert_eq!(TmpfsOptions::parse("size=3K").unwrap().size, Some(3 << 10));
    assert_eq!(TmpfsOptions::parse("size=12345").unwrap().size, Some(12345));
    assert_eq!(TmpfsOptions::parse("nr_blocks=10").unwrap().size, Some(10 * PS));
    assert_eq!(TmpfsOptions::parse("size=1m,,uid=3").unwrap().uid, 3);
    // As on Linux, 0 means "no limit" for size, nr_blocks and nr_inodes; no size
    // means the default (half of RAM).
    assert_eq!(TmpfsOptions::parse("size=0").unwrap().size, Some(NO_LIMIT));
    assert_eq!(TmpfsOptions::parse("nr_blocks=0").unwrap().size, Some(NO_LIMIT));
    assert_eq!(TmpfsOptions::parse("mode=755").unwrap().size, None);
    assert_eq!(TmpfsOptions::parse("nr_inodes=0").unwrap().nr_inodes, None);
    let (fs, ns) = with_opts(&TmpfsOptions::parse("size=0,nr_inodes=0").unwrap());
    assert_eq!(create(&ns, "/big").write(&vec![1u8; 65536]).unwrap(), 65536);
    assert_eq!(fs.used_bytes(), 65536);
    for bad in
        ["mode=9", "mode=", "size=abc", "size=50%", "uid=-1", "gid=x", "bogus=1", "uid", "size=99999999999t"]
    {
        assert!(TmpfsOptions::parse(bad).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn readdir_offsets_survive_changes_during_iteration() {
    let (_fs, ns) = new_ns();
    let r = root();
    ns.mkdir(&r, None, "/d", 0o755).unwrap();
    let n = 600;
    for i in 0..n {
        ns.mknod(&r, None, format!("/d/f{i}"), Make::File, 0o644).unwrap();
    }
    let dir = ns.open_path(&r, None, "/d", OpenFlags::READ | OpenFlags::DIRECTORY, 0).unwrap();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut removed: BTreeSet<String> = BTreeSet::new();
    let mut added = 0;
    let mut step = 0;
    loop {
        // Take a few entries at a time, then change the directory.
        let mut got = 0;
        let take = 1 + step % 7;
        dir.readdir(&mut |e| {
            if got == take {
                return false;
            }
            *seen.entry(String::from_utf8_lossy(e.name).into_owned()).or_default() += 1;
            got += 1;
            true
        })
        .unwrap();
        if got == 0 {
            break;
        }
        step += 1;
        // Remove one name already read and one perhaps not yet read; add two.
        for victim in [format!("f{}", (step * 13) % n), format!("f{}", n - 1 - (step * 7) % n)] {
            if removed.insert(victim.clone()) {
                ns.unlink_path(&r, None, format!("/d/{victim}")).unwrap();
            }
        }
        for _ in 0..2 {
            ns.mknod(&r, None, format!("/d/new{added}"), Make::File, 0o644).unwrap();
            added += 1;
        }
        // Rename one in place, too.
        let from = format!("f{}", (step * 31) % n);
        if !removed.contains(&from) {
            ns.rename_path(&r, None, format!("/d/{from}"), format!("/d/r{from}"), RenameFlags::empty())
                .unwrap();
            removed.insert(from);
        }
    }
    assert_eq!(seen.get("."), Some(&1));
    assert_eq!(seen.get(".."), Some(&1));
    for (name, count) in &seen {
        assert_eq!(*count, 1, "{name} returned {count} times");
    }
    // Every entry present from start to end was returned exactly once.
    for i in 0..n {
        let name = format!("f{i}");
        if !removed.contains(&name) {
            assert_eq!(seen.get(&name), Some(&1), "{name} missing");
        }
    }
    // Explicit offsets (FUSE style) resume after the entry, even if it is gone.
    let dir = ns.open_path(&r, None, "/d", OpenFlags::READ | OpenFlags::DIRECTORY, 0).unwrap();
    let mut all: Vec<(String, u64)> = Vec::new();
    dir.readdir_at(0, &mut |e| {
        all.push((String::from_utf8_lossy(e.name).into_owned(), e.offset));
        true
    })
    .unwrap();
    let offsets: Vec<u64> = all.iter().map(|e| e.1).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets increase");
    let (mid_name, mid_off) = all[all.len() / 2].clone();
    ns.unlink_path(&r, None, format!("/d/{mid_name}")).unwrap();
    let mut rest = Vec::new();
    let end = dir
        .readdir_at(mid_off, &mut |e| {
            rest.push(String::from_utf8_lossy(e.name).into_owned());
            true
        })
        .unwrap();
    let expect: Vec<String> = all[all.len() / 2 + 1..].iter().map(|e| e.0.clone()).collect();
    assert_eq!(rest, expect);
    assert_eq!(end, all.last().unwrap().1);
    // Reading from the end gives nothing and keeps the offset.
    assert_eq!(dir.readdir_at(end, &mut |_| true).unwrap(), end);
}

#[test]
fn rename_noreplace_and_exchange() {
    let (_fs, ns) = new_ns();
    let r = root();
    let ren = |a: &str, b: &str, f: RenameFlags| ns.rename_path(&r, None, a, b, f);
    for d in ["/a", "/b", "/a/sub", "/b/other", "/b/other/deep"] {
        ns.mkdir(&r, None, d, 0o755).unwrap();
    }
    write_file(&ns, "/a/f", b"F");
    write_file(&ns, "/b/g", b"G");
    // NOREPLACE.
    assert_eq!(err(ren("/a/f", "/b/g", RenameFlags::NOREPLACE)), Errno::EXIST);
    assert_eq!(err(ren("/a/sub", "/b/other", RenameFlags::NOREPLACE)), Errno::EXIST);
    ren("/a/f", "/a/f2", RenameFlags::NOREPLACE).unwrap();
    assert_eq!(read_file(&ns, "/a/f2"), b"F");
    // EXCHANGE of two files in one directory, then across directories.
    write_file(&ns, "/a/h", b"H");
    ren("/a/f2", "/a/h", RenameFlags::EXCHANGE).unwrap();
    assert_eq!((read_file(&ns, "/a/f2"), read_file(&ns, "/a/h")), (b"H".to_vec(), b"F".to_vec()));
    ren("/a/h", "/b/g", RenameFlags::EXCHANGE).unwrap();
    assert_eq!((read_file(&ns, "/a/h"), read_file(&ns, "/b/g")), (b"G".to_vec(), b"F".to_vec()));
    // A directory with a file across directories: link counts and `..` follow.
    assert_eq!((nlink(&ns, "/a"), nlink(&ns, "/b")), (3, 3));
    let sub_ino = stat(&ns, "/a/sub").ino;
    ren("/a/sub", "/b/g", RenameFlags::EXCHANGE).unwrap();
    assert_eq!(stat(&ns, "/b/g").ino, sub_ino);
    assert_eq!(stat(&ns, "/a/sub").kind, FileType::Regular);
    assert_eq!((nlink(&ns, "/a"), nlink(&ns, "/b")), (2, 4));
    assert_eq!(stat(&ns, "/b/g/..").ino, stat(&ns, "/b").ino);
    // Two directories across parents.
    ns.mkdir(&r, None, "/a/x", 0o755).unwrap();
    ns.mkdir(&r, None, "/a/x/inside", 0o755).unwrap();
    let (x, other) = (stat(&ns, "/a/x").ino, stat(&ns, "/b/other").ino);
    ren("/a/x", "/b/other", RenameFlags::EXCHANGE).unwrap();
    assert_eq!((stat(&ns, "/a/x").ino, stat(&ns, "/b/other").ino), (other, x));
    assert_eq!((nlink(&ns, "/a"), nlink(&ns, "/b")), (3, 4));
    assert_eq!(stat(&ns, "/a/x/..").ino, stat(&ns, "/a").ino);
    assert_eq!(stat(&ns, "/b/other/..").ino, stat(&ns, "/b").ino);
    assert_eq!(list(&ns, "/a/x"), ["deep"]);
    assert_eq!(list(&ns, "/b/other"), ["inside"]);
    assert_eq!(stat(&ns, "/a/x/deep/..").ino, stat(&ns, "/a/x").ino);
    // EXCHANGE needs both; refuses NOREPLACE alongside.
    assert_eq!(err(ren("/a/h", "/a/none", RenameFlags::EXCHANGE)), Errno::NOENT);
    assert_eq!(err(ren("/a/h", "/b/g", RenameFlags::EXCHANGE | RenameFlags::NOREPLACE)), Errno::INVAL);
    // A directory into its own subdirectory, or onto itself below: EINVAL; onto an
    // ancestor: ENOTEMPTY (EINVAL for an exchange).
    assert_eq!(err(ren("/b", "/b/other/b", RenameFlags::empty())), Errno::INVAL);
    assert_eq!(err(ren("/b", "/b/other/inside/b", RenameFlags::empty())), Errno::INVAL);
    assert_eq!(err(ren("/b", "/b/new", RenameFlags::NOREPLACE)), Errno::INVAL);
    assert_eq!(err(ren("/b/other", "/b/other/inside", RenameFlags::EXCHANGE)), Errno::INVAL);
    assert_eq!(err(ren("/b/other/inside", "/b", RenameFlags::empty())), Errno::NOTEMPTY);
    assert_eq!(err(ren("/b/other/inside", "/b", RenameFlags::EXCHANGE)), Errno::INVAL);
    // Type rules and non-empty targets.
    assert_eq!(err(ren("/a/h", "/a/x", RenameFlags::empty())), Errno::ISDIR);
    assert_eq!(err(ren("/a/x", "/a/h", RenameFlags::empty())), Errno::NOTDIR);
    ns.mkdir(&r, None, "/a/empty", 0o755).unwrap();
    assert_eq!(err(ren("/a/empty", "/b/other", RenameFlags::empty())), Errno::NOTEMPTY);
    ren("/a/x/deep", "/a/empty", RenameFlags::empty()).unwrap();
    assert_eq!(list(&ns, "/a/x"), Vec::<String>::new());
    // Renaming onto itself is a no-op.
    ren("/a/h", "/a/h", RenameFlags::empty()).unwrap();
    assert_eq!(read_file(&ns, "/a/h"), b"G");
    // Nothing is lost: every directory's count is 2 + its subdirectories.
    for d in ["/", "/a", "/b", "/a/x", "/b/other", "/b/g"] {
        let subdirs = list(&ns, d)
            .iter()
            .filter(|n| stat(&ns, &format!("{}/{n}", d.trim_end_matches('/'))).kind == FileType::Directory)
            .count();
        assert_eq!(nlink(&ns, d), 2 + subdirs as u64, "{d}");
    }
}

#[test]
fn node_level_xattrs_and_times() {
    let (_fs, ns) = new_ns();
    let node = create(&ns, "/f").location().node.clone();
    node.setxattr(b"user.a", b"1", XattrFlags::empty()).unwrap();
    node.setxattr(b"trusted.b", b"2", XattrFlags::empty()).unwrap();
    assert_eq!(err(node.setxattr(b"user.a", b"x", XattrFlags::CREATE)), Errno::EXIST);
    assert_eq!(err(node.setxattr(b"user.z", b"x", XattrFlags::REPLACE)), Errno::NODATA);
    let mut names = node.listxattr().unwrap();
    names.sort();
    assert_eq!(names, [b"trusted.b".to_vec(), b"user.a".to_vec()]);
    node.removexattr(b"user.a").unwrap();
    assert_eq!(err(node.getxattr(b"user.a")), Errno::NODATA);
    assert_eq!(err(node.removexattr(b"user.a")), Errno::NODATA);
    assert_eq!(node.getxattr(b"trusted.b").unwrap(), b"2");
    // Writes move mtime and ctime; creating an entry moves the directory's.
    let before = node.attr().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2));
    let f = ns.open_path(&root(), None, "/f", OpenFlags::WRITE, 0).unwrap();
    f.write(b"x").unwrap();
    let after = node.attr().unwrap();
    assert!(after.mtime > before.mtime && after.ctime > before.ctime);
    let d0 = stat(&ns, "/");
    std::thread::sleep(std::time::Duration::from_millis(2));
    write_file(&ns, "/g", b"");
    let d1 = stat(&ns, "/");
    assert!(d1.mtime > d0.mtime && d1.ctime > d0.ctime);
    assert_eq!(d1.size, d0.size + 20);
    // setattr with an explicit ctime keeps it (copy-up).
    let t = sandfs_vfs::Timespec { sec: 100, nsec: 7 };
    let a = node.setattr(&SetAttr { mode: Some(0o600), ctime: Some(t), ..Default::default() }).unwrap();
    assert_eq!((a.mode, a.ctime), (0o600, t));
}
