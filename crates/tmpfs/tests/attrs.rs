//! File attributes through the Rust API, paired with a kernel tmpfs (the testkit's
//! private-namespace worker): chown(-1, -1), preallocated space in st_blocks (pages
//! and memfd-backed files) and the immutable and append-only flags.

use rustix::fs::{FallocateFlags, Mode, OFlags};
use sandfs_tmpfs::{Tmpfs, TmpfsOptions};
use sandfs_vfs::{Caps, Creds, Errno, FallocFlags, FileFlags, MountFlags, MountNamespace, OpenFlags};
use std::sync::Arc;

fn kernel() -> Option<(sandfs_testkit::Kernel, tempfile::TempDir)> {
    if !sandfs_testkit::is_root() {
        eprintln!("SKIP: the kernel side needs root");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    Some((sandfs_testkit::kernel_tmpfs(dir.path()).unwrap(), dir))
}

fn ns(opts: &TmpfsOptions) -> Arc<MountNamespace> {
    MountNamespace::new(Tmpfs::new(opts).unwrap(), MountFlags::empty())
}

fn rw() -> OpenFlags {
    OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREAT
}

#[test]
fn chown_with_neither_owner_nor_group_updates_ctime_as_kernel_tmpfs() {
    let Some((k, _d)) = kernel() else { return };
    let kern = k.run(|| {
        std::fs::write("/s", b"x").unwrap();
        rustix::fs::chmod("/s", Mode::from_raw_mode(0o6755)).unwrap();
        let before = rustix::fs::stat("/s").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        rustix::fs::chown("/s", None, None).unwrap();
        let after = rustix::fs::stat("/s").unwrap();
        let moved = (after.st_ctime, after.st_ctime_nsec) != (before.st_ctime, before.st_ctime_nsec);
        (moved, after.st_mode & 0o7777)
    });
    let ns = ns(&TmpfsOptions::default());
    let root = Creds::root();
    ns.open_path(&root, None, "/s", rw(), 0o6755).unwrap();
    let loc = ns.resolve(&root, None, "/s", false).unwrap();
    let before = ns.getattr(&loc).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    // Not the owner and no capabilities: still allowed, as on Linux.
    let a = ns.chown(&Creds::user(1000, 1000, &[]), &loc, None, None).unwrap();
    assert_eq!((a.ctime != before.ctime, a.mode), kern);
}

/// (size, st_blocks) after each step of a preallocation sequence.
fn kernel_blocks(k: &sandfs_testkit::Kernel) -> Vec<(u64, u64)> {
    k.run(|| {
        let fd = rustix::fs::open("/p", OFlags::CREATE | OFlags::RDWR, Mode::from_raw_mode(0o644)).unwrap();
        let st = |fd: &rustix::fd::OwnedFd| {
            let s = rustix::fs::fstat(fd).unwrap();
            (s.st_size as u64, s.st_blocks as u64)
        };
        let mut out = Vec::new();
        rustix::fs::fallocate(&fd, FallocateFlags::empty(), 0, 1 << 20).unwrap();
        out.push(st(&fd));
        rustix::fs::fallocate(&fd, FallocateFlags::KEEP_SIZE, 2 << 20, 1 << 20).unwrap();
        out.push(st(&fd));
        rustix::fs::fallocate(&fd, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, 0, 512 << 10)
            .unwrap();
        out.push(st(&fd));
        drop(fd);
        let fd = rustix::fs::open("/p", OFlags::RDWR, Mode::empty()).unwrap();
        out.push(st(&fd));
        out
    })
}

fn sandfs_blocks(ns: &MountNamespace, lend: bool) -> Vec<(u64, u64)> {
    let root = Creds::root();
    let f = ns.open_path(&root, None, "/p", rw(), 0o644).unwrap();
    // As FUSE passthrough does: the open is lent the memfd, then gives it back.
    let _fd = lend.then(|| f.handle().unwrap().passthrough_fd());
    let st = |f: &sandfs_vfs::OpenFile| {
        let a = f.stat().unwrap();
        (a.size, a.blocks)
    };
    let mut out = Vec::new();
    f.fallocate(FallocFlags::empty(), 0, 1 << 20).unwrap();
    out.push(st(&f));
    f.fallocate(FallocFlags::KEEP_SIZE, 2 << 20, 1 << 20).unwrap();
    out.push(st(&f));
    f.fallocate(FallocFlags::PUNCH_HOLE | FallocFlags::KEEP_SIZE, 0, 512 << 10).unwrap();
    out.push(st(&f));
    drop((_fd, f));
    let f = ns.open_path(&root, None, "/p", OpenFlags::READ | OpenFlags::WRITE, 0).unwrap();
    out.push(st(&f));
    out
}

#[test]
fn preallocated_space_counts_in_blocks_as_on_kernel_tmpfs() {
    let Some((k, _d)) = kernel() else { return };
    let kern = kernel_blocks(&k);
    assert_eq!(kern[0], (1 << 20, 2048), "the oracle");
    // In pages, in a memfd lent to an open, and in a memfd from the start.
    assert_eq!(sandfs_blocks(&ns(&TmpfsOptions { memfd_from: None, ..Default::default() }), false), kern);
    assert_eq!(sandfs_blocks(&ns(&TmpfsOptions::default()), true), kern, "lent memfd");
    assert_eq!(
        sandfs_blocks(&ns(&TmpfsOptions { memfd_from: Some(4096), ..Default::default() }), false),
        kern
    );
}

#[test]
fn a_reservation_moves_into_a_memfd_and_back() {
    let ns = ns(&TmpfsOptions::default());
    let root = Creds::root();
    let f = ns.open_path(&root, None, "/r", rw(), 0o644).unwrap();
    f.write_at(b"x", 0).unwrap();
    f.fallocate(FallocFlags::KEEP_SIZE, 8192, 8192).unwrap();
    assert_eq!(f.stat().unwrap().blocks, 24);
    let fd = f.handle().unwrap().passthrough_fd().expect("lent");
    assert_eq!(rustix::fs::fstat(&*fd).unwrap().st_blocks, 24, "the memfd holds the reservation");
    assert_eq!(f.stat().unwrap().blocks, 24);
    drop((fd, f));
    let f = ns.open_path(&root, None, "/r", OpenFlags::READ, 0).unwrap();
    assert_eq!((f.stat().unwrap().size, f.stat().unwrap().blocks), (1, 24));
}

/// The outcome of each flag operation, as errno numbers (0: success).
type Outcomes = Vec<(&'static str, i32)>;

fn code<T>(r: Result<T, Errno>) -> i32 {
    r.map(|_| 0).unwrap_or_else(|e| e.raw_os_error())
}

// One push per step: the steps read as the sequence they run in.
#[allow(clippy::vec_init_then_push)]
fn kernel_flags(k: &sandfs_testkit::Kernel) -> Outcomes {
    k.run(|| {
        use rustix::fs as f;
        let set = |p: &str, v: u32| -> Result<(), Errno> {
            let fd = f::open(p, OFlags::RDONLY, Mode::empty())?;
            f::ioctl_setflags(&fd, f::IFlags::from_bits_retain(v))
        };
        std::fs::write("/i", b"x").unwrap();
        std::fs::write("/a", b"x").unwrap();
        std::fs::create_dir("/D").unwrap();
        std::fs::write("/D/f", b"y").unwrap();
        let m = Mode::from_raw_mode(0o644);
        let mut out: Outcomes = Vec::new();
        out.push(("set i", code(set("/i", 0x10))));
        out.push(("set a", code(set("/a", 0x20))));
        out.push(("set D i", code(set("/D", 0x10))));
        out.push(("set unsupported", code(set("/a", 0x20 | 0x1000))));
        out.push(("open w i", code(f::open("/i", OFlags::WRONLY, m))));
        out.push(("open trunc i", code(f::open("/i", OFlags::RDONLY | OFlags::TRUNC, m))));
        out.push(("truncate i", code(truncate("/i"))));
        out.push(("chmod i", code(f::chmod("/i", m))));
        out.push(("chown i", code(f::chown("/i", Some(rustix::process::Uid::ROOT), None))));
        out.push(("chown -1 i", code(f::chown("/i", None, None))));
        out.push(("touch i", code(f::utimensat(f::CWD, "/i", &now(), f::AtFlags::empty()))));
        out.push(("setxattr i", code(f::setxattr("/i", "user.x", b"1", f::XattrFlags::empty()))));
        out.push(("unlink i", code(f::unlink("/i"))));
        out.push(("rename i", code(f::rename("/i", "/j"))));
        out.push(("link i", code(f::link("/i", "/k"))));
        out.push(("access w i", code(f::access("/i", f::Access::WRITE_OK))));
        out.push(("open w a", code(f::open("/a", OFlags::WRONLY, m))));
        out.push(("open append a", code(f::open("/a", OFlags::WRONLY | OFlags::APPEND, m))));
        out.push((
            "open append trunc a",
            code(f::open("/a", OFlags::WRONLY | OFlags::APPEND | OFlags::TRUNC, m)),
        ));
        out.push(("truncate a", code(truncate("/a"))));
        out.push(("unlink a", code(f::unlink("/a"))));
        out.push(("rename a", code(f::rename("/a", "/b"))));
        out.push(("touch a", code(f::utimensat(f::CWD, "/a", &now(), f::AtFlags::empty()))));
        out.push(("chmod a", code(f::chmod("/a", m))));
        out.push(("create in D", code(f::open("/D/g", OFlags::CREATE | OFlags::WRONLY, m))));
        out.push(("unlink in D", code(f::unlink("/D/f"))));
        out.push(("rename out of D", code(f::rename("/D/f", "/f2"))));
        out.push(("rename into D", code(f::rename("/j", "/D/j").or_else(|_| f::rename("/a", "/D/a")))));
        out.push(("rename D", code(f::rename("/D", "/E"))));
        out.push(("write in D", code(f::open("/D/f", OFlags::WRONLY, m))));
        out.push(("clear i", code(set("/i", 0))));
        out.push(("unlink i after", code(f::unlink("/i"))));
        out
    })
}

/// Truncate to 0 through an open for writing (the open is what the flags refuse).
fn truncate(p: &str) -> Result<(), Errno> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(p)
        .and_then(|f| f.set_len(0))
        .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
}

fn now() -> rustix::fs::Timestamps {
    let t = rustix::fs::Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_NOW };
    rustix::fs::Timestamps { last_access: t, last_modification: t }
}

// One push per step: the steps read as the sequence they run in.
#[allow(clippy::vec_init_then_push)]
fn sandfs_flags(ns: &MountNamespace) -> Outcomes {
    use sandfs_vfs::{SetAttr, TimeSet};
    let c = Creds::root();
    let set = |p: &str, v: u32| {
        let loc = ns.resolve(&c, None, p, false)?;
        ns.set_file_flags(&c, &loc, v)
    };
    let open = |p: &str, fl: OpenFlags| ns.open_path(&c, None, p, fl, 0o644);
    let sa = |p: &str, s: SetAttr| ns.setattr_path(&c, None, p, &s, true);
    let chown = |p: &str| {
        let loc = ns.resolve(&c, None, p, true)?;
        ns.chown(&c, &loc, None, None)
    };
    let touch = SetAttr { atime: Some(TimeSet::Now), mtime: Some(TimeSet::Now), ..SetAttr::default() };
    let w = OpenFlags::WRITE;
    open("/i", rw()).unwrap().write_at(b"x", 0).unwrap();
    open("/a", rw()).unwrap().write_at(b"x", 0).unwrap();
    ns.mkdir(&c, None, "/D", 0o755).unwrap();
    open("/D/f", rw()).unwrap().write_at(b"y", 0).unwrap();
    let loc = ns.resolve(&c, None, "/i", true).unwrap();
    let mut out: Outcomes = Vec::new();
    out.push(("set i", code(set("/i", 0x10))));
    out.push(("set a", code(set("/a", 0x20))));
    out.push(("set D i", code(set("/D", 0x10))));
    out.push(("set unsupported", code(set("/a", 0x20 | 0x1000))));
    out.push(("open w i", code(open("/i", w))));
    out.push(("open trunc i", code(open("/i", OpenFlags::READ | OpenFlags::TRUNC))));
    out.push(("truncate i", code(sa("/i", SetAttr { size: Some(0), ..SetAttr::default() }))));
    out.push(("chmod i", code(sa("/i", SetAttr { mode: Some(0o644), ..SetAttr::default() }))));
    out.push(("chown i", code(sa("/i", SetAttr { uid: Some(0), ..SetAttr::default() }))));
    out.push(("chown -1 i", code(chown("/i"))));
    out.push(("touch i", code(sa("/i", touch))));
    out.push(("setxattr i", code(ns.setxattr(&c, &loc, b"user.x", b"1", sandfs_vfs::XattrFlags::empty()))));
    out.push(("unlink i", code(ns.unlink_path(&c, None, "/i"))));
    out.push(("rename i", code(ns.rename_path(&c, None, "/i", "/j", Default::default()))));
    out.push(("link i", code(ns.link_path(&c, None, "/i", "/k"))));
    out.push(("access w i", code(ns.access(&c, &loc, 2))));
    out.push(("open w a", code(open("/a", w))));
    out.push(("open append a", code(open("/a", w | OpenFlags::APPEND))));
    out.push(("open append trunc a", code(open("/a", w | OpenFlags::APPEND | OpenFlags::TRUNC))));
    out.push(("truncate a", code(sa("/a", SetAttr { size: Some(0), ..SetAttr::default() }))));
    out.push(("unlink a", code(ns.unlink_path(&c, None, "/a"))));
    out.push(("rename a", code(ns.rename_path(&c, None, "/a", "/b", Default::default()))));
    out.push(("touch a", code(sa("/a", touch))));
    out.push(("chmod a", code(sa("/a", SetAttr { mode: Some(0o644), ..SetAttr::default() }))));
    out.push(("create in D", code(open("/D/g", OpenFlags::CREAT | w))));
    out.push(("unlink in D", code(ns.unlink_path(&c, None, "/D/f"))));
    out.push(("rename out of D", code(ns.rename_path(&c, None, "/D/f", "/f2", Default::default()))));
    out.push((
        "rename into D",
        code(
            ns.rename_path(&c, None, "/j", "/D/j", Default::default())
                .or_else(|_| ns.rename_path(&c, None, "/a", "/D/a", Default::default())),
        ),
    ));
    out.push(("rename D", code(ns.rename_path(&c, None, "/D", "/E", Default::default()))));
    out.push(("write in D", code(open("/D/f", w))));
    out.push(("clear i", code(set("/i", 0))));
    out.push(("unlink i after", code(ns.unlink_path(&c, None, "/i"))));
    out
}

#[test]
fn immutable_and_append_only_as_kernel_tmpfs() {
    let Some((k, _d)) = kernel() else { return };
    let kern = kernel_flags(&k);
    assert_eq!(sandfs_flags(&ns(&TmpfsOptions::default())), kern);
}

#[test]
fn flag_changes_need_ownership_and_cap_linux_immutable() {
    let ns = ns(&TmpfsOptions::default());
    let root = Creds::root();
    ns.open_path(&root, None, "/u", rw(), 0o644).unwrap();
    let loc = ns.resolve(&root, None, "/u", false).unwrap();
    ns.chown(&root, &loc, Some(1000), Some(1000)).unwrap();
    let user = Creds::user(1000, 1000, &[]);
    let other = Creds::user(1001, 1001, &[]);
    assert_eq!(ns.set_file_flags(&other, &loc, 0x40), Err(Errno::PERM), "not the owner");
    assert_eq!(ns.set_file_flags(&user, &loc, 0x40), Ok(()));
    assert_eq!(ns.set_file_flags(&user, &loc, 0x40 | 0x10), Err(Errno::PERM), "i needs the capability");
    let mut admin = Creds::root();
    admin.caps -= Caps::LINUX_IMMUTABLE;
    assert_eq!(ns.set_file_flags(&admin, &loc, 0x40 | 0x20), Err(Errno::PERM), "so does a");
    assert_eq!(ns.set_file_flags(&root, &loc, 0x40 | 0x20), Ok(()));
    assert_eq!(ns.file_flags(&loc), Ok(FileFlags::NODUMP | FileFlags::APPEND));
    // An append-only file still takes appends.
    let f = ns.open_path(&user, None, "/u", OpenFlags::WRITE | OpenFlags::APPEND, 0).unwrap();
    assert_eq!(f.write_at(b"abc", 0), Ok(3));
    assert_eq!(f.truncate(0), Err(Errno::PERM));
    assert_eq!(f.fallocate(FallocFlags::PUNCH_HOLE | FallocFlags::KEEP_SIZE, 0, 4096), Err(Errno::PERM));
}
