//! Files in memfds: a big file moves into one, a handle may be lent one for direct
//! reads and writes (FUSE passthrough), and what is written straight into the memfd
//! is what the tmpfs reports and reads back; a small file goes back into pages when
//! the last loan ends.

use sandfs_tmpfs::{MEMFD_FROM, Tmpfs, TmpfsOptions};
use sandfs_vfs::{
    Creds, FallocFlags, MountFlags, MountNamespace, OpenFlags, SetAttr, TimeSet, Timespec, Whence,
};
use std::os::fd::AsFd;
use std::sync::Arc;

fn setup(opts: &TmpfsOptions) -> (Arc<Tmpfs>, Arc<MountNamespace>) {
    let fs = Tmpfs::new(opts).unwrap();
    let ns = MountNamespace::new(fs.clone(), MountFlags::empty());
    (fs, ns)
}

fn rw() -> OpenFlags {
    OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREAT
}

fn is_memfd(fd: &impl AsFd) -> bool {
    let st = rustix::fs::fstat(fd).unwrap();
    // memfds live on the kernel's internal shmem mount, with nlink 0.
    st.st_nlink == 0
}

#[test]
fn a_big_file_moves_into_a_memfd_and_direct_writes_are_seen() {
    let (fs, ns) = setup(&TmpfsOptions::default());
    let c = Creds::root();
    let f = ns.open_path(&c, None, "big", rw(), 0o644).unwrap();
    let data: Vec<u8> = (0..(MEMFD_FROM as usize + 5000)).map(|i| (i % 253) as u8).collect();
    assert_eq!(f.write_at(&data, 0).unwrap(), data.len());
    let used = fs.used_bytes();
    assert_eq!(used, (data.len() as u64).div_ceil(4096) * 4096, "memfd pages are counted");
    let h = f.handle().unwrap();
    let fd = h.passthrough_fd().expect("a big file lends its memfd");
    assert!(is_memfd(&*fd));
    // Written straight into the memfd (as the kernel does for a passthrough write).
    let far = 3 * MEMFD_FROM;
    assert_eq!(rustix::io::pwrite(&*fd, b"tail", far).unwrap(), 4);
    let a = f.stat().unwrap();
    assert_eq!(a.size, far + 4);
    let mut back = [0u8; 4];
    assert_eq!(f.read_at(&mut back, far).unwrap(), 4);
    assert_eq!(&back, b"tail");
    let mut head = vec![0u8; data.len()];
    assert_eq!(f.read_at(&mut head, 0).unwrap(), data.len());
    assert_eq!(head, data);
    // Holes, punching, truncation and times go to the memfd too.
    assert_eq!(f.seek_data(data.len() as u64 + 8192, Whence::Data).unwrap(), far / 4096 * 4096);
    f.fallocate(FallocFlags::PUNCH_HOLE | FallocFlags::KEEP_SIZE, 0, 8192).unwrap();
    let mut z = [1u8; 16];
    f.read_at(&mut z, 100).unwrap();
    assert_eq!(z, [0u8; 16]);
    assert_eq!(f.seek_data(0, Whence::Hole).unwrap(), 0);
    let when = Timespec { sec: 1_000_000, nsec: 5 };
    let root = ns.root();
    let loc = ns.lookup(&c, &root, b"big").unwrap();
    ns.setattr(&c, &loc, &SetAttr { mtime: Some(TimeSet::At(when)), ..SetAttr::default() }).unwrap();
    assert_eq!(f.stat().unwrap().mtime, when, "an explicit mtime holds over the memfd's");
    f.truncate(10).unwrap();
    assert_eq!(f.stat().unwrap().size, 10);
    drop(fd);
    drop(f);
    ns.unlink_path(&c, None, "big").unwrap();
    assert_eq!(fs.used_bytes(), 0);
}

#[test]
fn a_small_file_is_lent_a_memfd_and_goes_back_to_pages() {
    let (fs, ns) = setup(&TmpfsOptions::default());
    let c = Creds::root();
    let f = ns.open_path(&c, None, "small", rw(), 0o644).unwrap();
    f.write_at(b"before", 0).unwrap();
    let g = ns.open_path(&c, None, "small", OpenFlags::READ, 0).unwrap();
    let before = f.stat().unwrap().mtime;
    std::thread::sleep(std::time::Duration::from_millis(20));
    let fd = f.handle().unwrap().passthrough_fd().unwrap();
    let fd2 = g.handle().unwrap().passthrough_fd().unwrap();
    assert_eq!(
        rustix::fs::fstat(&*fd).unwrap().st_ino,
        rustix::fs::fstat(&*fd2).unwrap().st_ino,
        "one memfd"
    );
    rustix::io::pwrite(&*fd, b"AFTER", 0).unwrap();
    rustix::io::pwrite(&*fd, b"!", 20_000).unwrap();
    drop(fd);
    drop(f);
    // g still holds a loan: the data stays in the memfd.
    assert_eq!(f_read(&g, 0, 6), b"AFTERe");
    drop(fd2);
    drop(g);
    // Back in pages: the same bytes, the hole between stays a hole.
    let h = ns.open_path(&c, None, "small", OpenFlags::READ, 0).unwrap();
    assert_eq!(f_read(&h, 0, 6), b"AFTERe");
    assert_eq!(f_read(&h, 20_000, 1), b"!");
    let a = h.stat().unwrap();
    assert_eq!(a.size, 20_001);
    assert!(a.mtime > before, "the direct writes' mtime was lost going back to pages");
    // The same writes on a kernel tmpfs (/dev/shm) are the oracle for blocks and holes.
    let twin = tempfile::tempfile_in("/dev/shm").unwrap();
    use std::os::unix::fs::FileExt;
    twin.write_all_at(b"before", 0).unwrap();
    twin.write_all_at(b"AFTER", 0).unwrap();
    twin.write_all_at(b"!", 20_000).unwrap();
    let kernel_blocks = rustix::fs::fstat(&twin).unwrap().st_blocks as u64;
    assert_eq!(a.blocks, kernel_blocks, "the hole between the two pages holds none");
    assert_eq!(fs.used_bytes(), kernel_blocks * 512);
    let kernel_data = rustix::fs::seek(&twin, rustix::fs::SeekFrom::Data(4096)).unwrap();
    assert_eq!(h.seek_data(4096, Whence::Data).unwrap(), kernel_data);
}

#[test]
fn no_loans_for_setuid_files_or_capped_filesystems() {
    let (_fs, ns) = setup(&TmpfsOptions::default());
    let c = Creds::root();
    let f = ns.open_path(&c, None, "suid", rw(), 0o4755).unwrap();
    assert!(f.handle().unwrap().passthrough_fd().is_none(), "a direct write would not clear setuid");
    let (_fs, ns) = setup(&TmpfsOptions { size: Some(64 << 20), ..TmpfsOptions::default() });
    let f = ns.open_path(&c, None, "f", rw(), 0o644).unwrap();
    assert!(f.handle().unwrap().passthrough_fd().is_none(), "direct writes could not be charged");
    let big = vec![1u8; 2 * MEMFD_FROM as usize];
    f.write_at(&big, 0).unwrap();
    assert!(f.handle().unwrap().passthrough_fd().is_none());
}

fn f_read(f: &sandfs_vfs::OpenFile, off: u64, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    let got = f.read_at(&mut b, off).unwrap();
    b.truncate(got);
    b
}

/// Lending a memfd and giving it back, with no write, changes no time: a read
/// through passthrough is not a modification (git compares both times).
#[test]
fn a_loan_without_writes_changes_no_time() {
    let (_fs, ns) = setup(&TmpfsOptions::default());
    let c = Creds::root();
    let f = ns.open_path(&c, None, "f", rw(), 0o644).unwrap();
    f.write_at(b"data", 0).unwrap();
    drop(f);
    let before = ns.stat(&c, None, "f", true).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let g = ns.open_path(&c, None, "f", OpenFlags::READ, 0).unwrap();
    let fd = g.handle().unwrap().passthrough_fd().unwrap();
    let mut b = [0u8; 4];
    rustix::io::pread(&*fd, &mut b, 0).unwrap();
    let during = ns.stat(&c, None, "f", true).unwrap();
    drop(fd);
    drop(g);
    let after = ns.stat(&c, None, "f", true).unwrap();
    for (what, a) in [("during the loan", &during), ("after it", &after)] {
        assert_eq!((a.mtime, a.ctime), (before.mtime, before.ctime), "times moved {what}");
    }
}

/// With no descriptor left for a memfd, a big file stays in pages: writes go on.
#[test]
fn without_descriptors_big_files_stay_in_pages() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    // Run in a child process: the descriptor limit is process-wide.
    if std::env::var_os("SANDFS_MEMFD_CHILD").is_none() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args(["--exact", "without_descriptors_big_files_stay_in_pages", "--nocapture"])
            .env("SANDFS_MEMFD_CHILD", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        return;
    }
    let (fs, ns) = setup(&TmpfsOptions::default());
    let c = Creds::root();
    let f = ns.open_path(&c, None, "big", rw(), 0o644).unwrap();
    // Use up the descriptors: a limit just above the highest open one, and every
    // free number below it taken.
    let highest = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    let mut lim = getrlimit(Resource::Nofile);
    lim.current = Some(highest + 1);
    setrlimit(Resource::Nofile, lim).unwrap();
    let mut fillers = Vec::new();
    while let Ok(fd) = rustix::fs::open("/dev/null", rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty()) {
        fillers.push(fd);
    }
    let data = vec![5u8; 2 * MEMFD_FROM as usize];
    assert_eq!(f.write_at(&data, 0).unwrap(), data.len());
    assert!(f.handle().unwrap().passthrough_fd().is_none(), "no memfd could be made");
    let mut back = vec![0u8; data.len()];
    assert_eq!(f.read_at(&mut back, 0).unwrap(), data.len());
    assert!(back == data);
    assert_eq!(fs.used_bytes(), data.len() as u64);
}
