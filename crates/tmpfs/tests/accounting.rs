//! What the tmpfs charges against `size` besides data (inodes, directory entries,
//! symlink targets, extended attributes), that it gives every byte back, and the
//! default size limit. Where Linux defines the behaviour (xattr size and name
//! limits, the default size) the kernel tmpfs is asked; where sandfs deliberately
//! differs (xattrs count against `size`; the kernel charges them to the space behind
//! nr_inodes, a share of RAM: 3 GiB of xattrs fit on a 64 MiB kernel tmpfs of a
//! 24 GiB machine), the test says so.

use sandfs_tmpfs::{
    DIRENT_COST, INODE_COST, NO_LIMIT, PAGE_SIZE, Tmpfs, TmpfsOptions, XATTR_COST, XATTR_SIZE_MAX,
    default_size,
};
use sandfs_vfs::{
    Creds, Errno, FileType, Filesystem, MountFlags, MountNamespace, NewNode, OpenFlags, RenameFlags, SetAttr,
    XattrFlags,
};
use std::sync::Arc;

fn root() -> Creds {
    Creds::root()
}

fn ns_with(size: u64) -> (Arc<Tmpfs>, Arc<MountNamespace>) {
    let fs = Tmpfs::new(&TmpfsOptions { size: Some(size), ..TmpfsOptions::default() }).unwrap();
    let ns = MountNamespace::new(fs.clone(), MountFlags::empty());
    (fs, ns)
}

fn create(ns: &MountNamespace, path: &str) {
    ns.open_path(&root(), None, path, OpenFlags::WRITE | OpenFlags::CREAT, 0o644).unwrap();
}

fn setx(ns: &MountNamespace, path: &str, name: &str, value: &[u8]) -> sandfs_vfs::Result<()> {
    let loc = ns.resolve(&root(), None, path, false)?;
    ns.setxattr(&root(), &loc, name.as_bytes(), value, XattrFlags::empty())
}

fn rmx(ns: &MountNamespace, path: &str, name: &str) -> sandfs_vfs::Result<()> {
    let loc = ns.resolve(&root(), None, path, false)?;
    ns.removexattr(&root(), &loc, name.as_bytes())
}

/// Write `len` bytes to a new file at `path`; the bytes written before space ran out.
fn fill(ns: &MountNamespace, path: &str, len: usize) -> usize {
    let f = ns.open_path(&root(), None, path, OpenFlags::WRITE | OpenFlags::CREAT, 0o644).unwrap();
    let chunk = vec![7u8; 1 << 20];
    let mut done = 0;
    while done < len {
        match f.write_at(&chunk[..(len - done).min(chunk.len())], done as u64) {
            Ok(n) => done += n,
            Err(e) => {
                assert_eq!(e, Errno::NOSPC);
                break;
            }
        }
    }
    done
}

const MIB: u64 = 1 << 20;

#[test]
fn xattrs_on_one_file_fill_the_size_and_give_it_back() {
    let (fs, ns) = ns_with(64 * MIB);
    create(&ns, "/f");
    let base = fs.charged_bytes();
    assert_eq!(base, 2 * INODE_COST + DIRENT_COST + 1);
    let value = vec![b'v'; XATTR_SIZE_MAX];
    let mut accepted = 0u64;
    let mut n = 0;
    let err = loop {
        match setx(&ns, "/f", &format!("user.{n:06}"), &value) {
            Ok(()) => {
                accepted += value.len() as u64;
                n += 1;
            }
            Err(e) => break e,
        }
        assert!(accepted < 64 * MIB, "64 MiB of xattr values accepted under size=64m");
    };
    assert_eq!(err, Errno::NOSPC);
    // Each one cost its value, its name and XATTR_COST: what is left is less than
    // one more.
    let each = XATTR_COST + 11 + value.len() as u64;
    assert_eq!(fs.charged_bytes(), base + n * each);
    assert!(64 * MIB - fs.charged_bytes() < each);
    assert!(accepted > 63 * MIB, "only {accepted} bytes of xattrs fit");
    // Data gets only what is left (less than one more xattr).
    assert!((fill(&ns, "/data", MIB as usize) as u64) < each);
    assert_eq!(setx(&ns, "/f", "user.000000", &[b'w'; XATTR_SIZE_MAX]), Ok(()));
    let shrunk = fs.charged_bytes() - 1000;
    assert_eq!(setx(&ns, "/f", "user.000001", &value[..value.len() - 1000]), Ok(()));
    assert_eq!(fs.charged_bytes(), shrunk);
    assert_eq!(setx(&ns, "/f", "user.000001", &value), Ok(()));
    // Removing them gives everything back: the space holds data again.
    for i in 0..n {
        rmx(&ns, "/f", &format!("user.{i:06}")).unwrap();
    }
    ns.unlink_path(&root(), None, "/data").unwrap();
    assert_eq!(fs.charged_bytes(), base);
    let data = fill(&ns, "/data", 60 * MIB as usize);
    assert_eq!(data as u64, 60 * MIB);
}

#[test]
fn xattr_charges_follow_the_inode_through_rename_link_and_unlink() {
    let (fs, ns) = ns_with(8 * MIB);
    let r = root();
    let empty = fs.charged_bytes();
    ns.mkdir(&r, None, "/d", 0o755).unwrap();
    create(&ns, "/d/f");
    setx(&ns, "/d/f", "user.a", &[1; 1000]).unwrap();
    setx(&ns, "/d/f", "trusted.b", &[2; 3000]).unwrap();
    let xattrs = 2 * XATTR_COST + 6 + 9 + 4000;
    let tree = empty + 2 * INODE_COST + 2 * DIRENT_COST + 1 + 1;
    assert_eq!(fs.charged_bytes(), tree + xattrs);
    // Another name: one entry more; the xattrs are the inode's, charged once.
    ns.link_path(&r, None, "/d/f", "/g").unwrap();
    assert_eq!(fs.charged_bytes(), tree + xattrs + DIRENT_COST + 1);
    // Renames charge the new name, give the old one back, and move nothing else.
    ns.rename_path(&r, None, "/d/f", "/longer-name", RenameFlags::empty()).unwrap();
    assert_eq!(fs.charged_bytes(), tree + xattrs + DIRENT_COST + 1 + 10);
    ns.rename_path(&r, None, "/longer-name", "/d/f", RenameFlags::empty()).unwrap();
    // Over an existing name: the replaced entry and its inode go.
    create(&ns, "/h");
    ns.rename_path(&r, None, "/g", "/h", RenameFlags::empty()).unwrap();
    assert_eq!(fs.charged_bytes(), tree + xattrs + DIRENT_COST + 1);
    // Exchange and whiteout.
    ns.rename_path(&r, None, "/h", "/d", RenameFlags::EXCHANGE).unwrap();
    assert_eq!(fs.charged_bytes(), tree + xattrs + DIRENT_COST + 1);
    ns.rename_path(&r, None, "/d", "/h", RenameFlags::EXCHANGE).unwrap();
    ns.rename_path(&r, None, "/h", "/d/w", RenameFlags::WHITEOUT).unwrap();
    // /h became a whiteout (an inode and the old entry), /d/w a new entry.
    assert_eq!(fs.charged_bytes(), tree + xattrs + INODE_COST + 2 * DIRENT_COST + 1 + 1);
    ns.unlink_path(&r, None, "/h").unwrap();
    // The last name gone, an open handle still holds the inode and its xattrs.
    let open = ns.open_path(&r, None, "/d/w", OpenFlags::READ, 0).unwrap();
    ns.unlink_path(&r, None, "/d/w").unwrap();
    ns.unlink_path(&r, None, "/d/f").unwrap();
    assert_eq!(fs.charged_bytes(), empty + INODE_COST + DIRENT_COST + 1 + INODE_COST + xattrs);
    drop(open);
    ns.rmdir_path(&r, None, "/d").unwrap();
    assert_eq!(fs.charged_bytes(), empty);
}

#[test]
fn inodes_entries_and_symlink_targets_count() {
    // Room for the root and `fit` directories with one-byte names, not one more.
    let size = PAGE_SIZE;
    let fit = (size - INODE_COST) / (INODE_COST + DIRENT_COST + 1);
    let (fs, ns) = ns_with(size);
    let r = root();
    for i in 0..fit {
        ns.mkdir(&r, None, format!("/{}", (b'a' + i as u8) as char), 0o755).unwrap();
    }
    assert_eq!(ns.mkdir(&r, None, "/z", 0o755).unwrap_err(), Errno::NOSPC);
    // A long symlink target does not fit where a short one would.
    ns.rmdir_path(&r, None, "/a").unwrap();
    let left = size - fs.charged_bytes();
    let target = "t".repeat((left - INODE_COST - DIRENT_COST - 1 + 1) as usize);
    assert_eq!(ns.symlink(&r, None, &target, "/s").unwrap_err(), Errno::NOSPC);
    ns.symlink(&r, None, &target[1..], "/s").unwrap();
    assert_eq!(fs.charged_bytes(), size);
    ns.unlink_path(&r, None, "/s").unwrap();
    assert_eq!(fs.charged_bytes(), size - left);
    // Truncation gives data pages back.
    let (fs, ns) = ns_with(NO_LIMIT);
    assert_eq!(fs.size_limit(), NO_LIMIT);
    let f = ns.open_path(&r, None, "/f", OpenFlags::WRITE | OpenFlags::CREAT, 0o644).unwrap();
    f.write_at(&[1; 3 * PAGE_SIZE as usize], 0).unwrap();
    let with_data = fs.charged_bytes();
    ns.setattr_path(&r, None, "/f", &SetAttr { size: Some(10), ..SetAttr::default() }, true).unwrap();
    assert_eq!(fs.charged_bytes(), with_data - 2 * PAGE_SIZE);
}

#[test]
fn node_level_xattr_limits_hold_without_the_vfs() {
    // The overlay and other filesystems call nodes directly: the limits are the
    // tmpfs's own too.
    let fs = Tmpfs::new(&TmpfsOptions { size: Some(MIB), ..TmpfsOptions::default() }).unwrap();
    let f = fs
        .root()
        .create(
            b"f",
            &NewNode { kind: FileType::Regular, mode: 0o644, uid: 0, gid: 0, rdev: 0, target: vec![] },
        )
        .unwrap();
    let before = fs.charged_bytes();
    assert_eq!(f.setxattr(b"user.x", &vec![0; XATTR_SIZE_MAX + 1], XattrFlags::empty()), Err(Errno::TOOBIG));
    assert_eq!(f.setxattr(&[b'n'; 256], b"", XattrFlags::empty()), Err(Errno::RANGE));
    assert_eq!(f.setxattr(b"", b"", XattrFlags::empty()), Err(Errno::RANGE));
    f.setxattr(b"user.x", b"v", XattrFlags::empty()).unwrap();
    assert_eq!(f.setxattr(b"user.x", b"w", XattrFlags::CREATE), Err(Errno::EXIST));
    assert_eq!(f.setxattr(b"user.y", b"w", XattrFlags::REPLACE), Err(Errno::NODATA));
    assert_eq!(fs.charged_bytes(), before + XATTR_COST + 6 + 1);
    for i in 0..15 {
        f.setxattr(format!("user.{i}").as_bytes(), &vec![0; XATTR_SIZE_MAX], XattrFlags::empty()).unwrap();
    }
    assert_eq!(f.setxattr(b"user.15", &vec![0; XATTR_SIZE_MAX], XattrFlags::empty()), Err(Errno::NOSPC));
    assert_eq!(f.listxattr().unwrap().len(), 16);
    drop(f);
    fs.root().unlink(b"f").unwrap();
    assert_eq!(fs.charged_bytes(), INODE_COST);
}

#[test]
fn default_size_is_half_of_ram() {
    let ram_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert_eq!(default_size(), ram_kib * 1024 / 2 / PAGE_SIZE * PAGE_SIZE);
    let fs = Tmpfs::new_default();
    assert_eq!(fs.size_limit(), default_size());
    assert_eq!(fs.statfs().unwrap().blocks, default_size() / PAGE_SIZE);
    // Explicit sizes win; size=0 is no limit.
    assert_eq!(Tmpfs::new(&TmpfsOptions::parse("size=1m").unwrap()).unwrap().size_limit(), MIB);
    assert_eq!(Tmpfs::new(&TmpfsOptions::parse("size=0").unwrap()).unwrap().size_limit(), NO_LIMIT);
}

/// Kernel tmpfs, mounted with `opts` in a worker of its own.
fn kernel(opts: &'static std::ffi::CStr) -> Option<(sandfs_testkit::Kernel, tempfile::TempDir)> {
    if !sandfs_testkit::is_root() {
        eprintln!("SKIP: the kernel side needs root");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let k = sandfs_testkit::Kernel::start(move || {
        rustix::mount::mount("tmpfs", &path, "tmpfs", rustix::mount::MountFlags::empty(), opts)
            .map_err(|e| format!("mount tmpfs: {e}"))?;
        Ok(path)
    })
    .unwrap();
    Some((k, dir))
}

#[test]
fn kernel_agrees_on_the_default_size_and_xattr_limits() {
    let Some((k, _dir)) = kernel(c"mode=1777") else { return };
    // The default size: statfs f_blocks of a tmpfs mounted without one.
    let kblocks = k.run(|| rustix::fs::statvfs("/").map(|s| s.f_blocks).unwrap());
    assert_eq!(Tmpfs::new_default().statfs().unwrap().blocks, kblocks);
    // Value and name limits, on both.
    let cases: Vec<(String, usize)> = vec![
        ("user.a".into(), XATTR_SIZE_MAX),
        ("user.b".into(), XATTR_SIZE_MAX + 1),
        ("user.b".into(), 0),
        (format!("user.{}", "n".repeat(250)), 1),
        (format!("user.{}", "n".repeat(251)), 1),
    ];
    let kcases = cases.clone();
    let kernel: Vec<Result<(), i32>> = k.run(move || {
        std::fs::write("/f", b"").unwrap();
        kcases
            .iter()
            .map(|(n, len)| {
                rustix::fs::setxattr("/f", n.as_str(), &vec![b'v'; *len], rustix::fs::XattrFlags::empty())
                    .map_err(|e| e.raw_os_error())
            })
            .collect()
    });
    let (_fs, ns) = ns_with(64 * MIB);
    create(&ns, "/f");
    let ours: Vec<Result<(), i32>> = cases
        .iter()
        .map(|(n, len)| setx(&ns, "/f", n, &vec![b'v'; *len]).map_err(|e| e.raw_os_error()))
        .collect();
    assert_eq!(ours, kernel);
}
