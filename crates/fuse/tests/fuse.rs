//! The FUSE front end with real programs: a tmpfs namespace (and an overlay) served
//! in this process, used through the kernel by coreutils, sh and direct syscalls.
//!
//! Needs root (mount(2) of fuse without fusermount) and /dev/fuse: otherwise every
//! test is skipped with a printed reason. Each test mounts on its own temporary
//! directory and the guard unmounts (MNT_DETACH) even when the test fails.

use rustix::fs::{Mode, OFlags, RenameFlags};
mod mnt;

use mnt::Mnt;
use sandfs_fuse::CachePolicy;
use sandfs_vfs::{MountFlags, MountNamespace};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

fn skip(test: &str) -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIP {test}: needs root (mounts FUSE without fusermount)");
        return true;
    }
    if !Path::new("/dev/fuse").exists() {
        eprintln!("SKIP {test}: no /dev/fuse");
        return true;
    }
    false
}

fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(script).current_dir(dir).output().expect("run sh");
    assert!(
        out.status.success(),
        "script failed: {script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run as uid/gid 1000 with no supplementary groups; returns (success, stderr).
fn as_user(dir: &Path, script: &str) -> (bool, String) {
    let out = Command::new("setpriv")
        .args(["--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c", script])
        .current_dir(dir)
        .output()
        .expect("run setpriv");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn coreutils_work() {
    if skip("coreutils_work") {
        return;
    }
    let m = Mnt::tmpfs();
    let out = sh(
        &m.path,
        "set -e
         mkdir -p a/b/c
         echo hello > a/b/c/f
         cat a/b/c/f
         cp a/b/c/f g
         mv g h
         ln -s h link
         cat link
         chmod 600 h
         stat -c '%a %s' h
         dd if=/dev/zero of=big bs=64k count=32 status=none
         stat -c %s big
         find . -type f | sort
         ls a/b
         rm h link big
         rm -r a
         ls -A | wc -l",
    );
    assert_eq!(out, "hello\nhello\n600 6\n2097152\n./a/b/c/f\n./big\n./h\nc\n0\n", "output of the script");
}

#[test]
fn data_round_trips_through_the_kernel() {
    if skip("data_round_trips_through_the_kernel") {
        return;
    }
    let m = Mnt::tmpfs();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 5) as u8).collect();
    std::fs::write(m.p("f"), &data).expect("write");
    assert_eq!(std::fs::read(m.p("f")).expect("read"), data);
    // Append through O_APPEND.
    sh(&m.path, "printf xyz >> f");
    let meta = std::fs::metadata(m.p("f")).expect("stat");
    assert_eq!(meta.len(), data.len() as u64 + 3);
    // Truncate through ftruncate and through truncate(2).
    let f = std::fs::OpenOptions::new().write(true).open(m.p("f")).expect("open");
    f.set_len(10).expect("ftruncate");
    drop(f);
    assert_eq!(std::fs::metadata(m.p("f")).expect("stat").len(), 10);
    sh(&m.path, "truncate -s 5 f");
    assert_eq!(std::fs::read(m.p("f")).expect("read"), &data[..5]);
}

#[test]
fn permissions_are_checked_for_other_users() {
    if skip("permissions_are_checked_for_other_users") {
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("SKIP permissions_are_checked_for_other_users: no setpriv");
        return;
    }
    let m = Mnt::tmpfs();
    sh(
        &m.path,
        "set -e
         echo secret > secret; chmod 600 secret
         echo public > public; chmod 644 public
         mkdir closed; echo x > closed/inner; chmod 700 closed
         mkdir open; chmod 777 open
         mkdir pub; chmod 755 pub
         mkdir grp; chgrp 1001 grp; chmod 770 grp",
    );
    // Warm the kernel's caches as root first: cached names must not skip checks.
    sh(&m.path, "cat closed/inner secret public > /dev/null; ls -l closed grp > /dev/null");
    assert!(as_user(&m.path, "cat public").0);
    let (ok, err) = as_user(&m.path, "cat secret");
    assert!(!ok && err.contains("Permission denied"), "read of a 0600 root file: {err}");
    let (ok, err) = as_user(&m.path, "cat closed/inner");
    assert!(!ok && err.contains("Permission denied"), "walk through a 0700 dir: {err}");
    let (ok, err) = as_user(&m.path, "stat closed/inner");
    assert!(!ok && err.contains("Permission denied"), "stat through a 0700 dir: {err}");
    let (ok, err) = as_user(&m.path, "echo x > pub/newfile");
    assert!(!ok && err.contains("Permission denied"), "create in a 0755 root dir: {err}");
    assert!(as_user(&m.path, "echo x > open/mine && cat open/mine").0);
    let st = std::fs::metadata(m.p("open/mine")).expect("stat");
    assert_eq!((st.uid(), st.gid()), (1000, 1000), "owner of a file created by uid 1000");
    // Supplementary groups come from the caller.
    let (ok, _) = as_user(&m.path, "ls grp");
    assert!(!ok, "grp is 0770 group 1001: no access without the group");
    let out = Command::new("setpriv")
        .args(["--reuid=1000", "--regid=1000", "--groups=1001", "ls", "grp"])
        .current_dir(&m.path)
        .output()
        .expect("setpriv");
    assert!(out.status.success(), "with group 1001: {}", String::from_utf8_lossy(&out.stderr));
    // A directory made unsearchable after names in it were cached.
    sh(&m.path, "mkdir later; echo y > later/f; chmod 755 later");
    assert!(as_user(&m.path, "cat later/f").0);
    sh(&m.path, "chmod 700 later");
    let (ok, _) = as_user(&m.path, "cat later/f");
    assert!(!ok, "chmod 700 must take effect on cached names");
    // chmod by a non-owner.
    let (ok, err) = as_user(&m.path, "chmod 777 public");
    assert!(!ok && err.contains("Operation not permitted"), "chmod by a non-owner: {err}");
    // exec needs x for the caller, not just any x bit.
    sh(&m.path, "printf '#!/bin/sh\\necho ran\\n' > script; chmod 700 script; ./script");
    let (ok, _) = as_user(&m.path, "./script");
    assert!(!ok, "a 0700 root script is not executable by uid 1000");
}

#[test]
fn xattrs_follow_the_size_protocol() {
    if skip("xattrs_follow_the_size_protocol") {
        return;
    }
    let m = Mnt::tmpfs();
    std::fs::write(m.p("f"), b"x").expect("write");
    let p = m.p("f");
    rustix::fs::setxattr(&p, "user.k", b"value", rustix::fs::XattrFlags::CREATE).expect("setxattr");
    assert_eq!(
        rustix::fs::setxattr(&p, "user.k", b"v", rustix::fs::XattrFlags::CREATE),
        Err(rustix::io::Errno::EXIST)
    );
    assert_eq!(rustix::fs::getxattr_query(&p, "user.k").expect("size probe"), 5);
    let mut small = [0u8; 2];
    assert_eq!(rustix::fs::getxattr(&p, "user.k", &mut small[..]), Err(rustix::io::Errno::RANGE));
    let mut buf = [0u8; 16];
    let n = rustix::fs::getxattr(&p, "user.k", &mut buf[..]).expect("getxattr");
    assert_eq!(&buf[..n], b"value");
    let n = rustix::fs::listxattr_query(&p).expect("list size");
    assert_eq!(n, 7);
    let mut list = [0u8; 64];
    let n = rustix::fs::listxattr(&p, &mut list[..]).expect("listxattr");
    assert_eq!(&list[..n], b"user.k\0");
    rustix::fs::removexattr(&p, "user.k").expect("removexattr");
    assert_eq!(rustix::fs::getxattr(&p, "user.k", &mut buf[..]), Err(rustix::io::Errno::NODATA));
}

#[test]
fn rename_flags_and_sparse_files() {
    if skip("rename_flags_and_sparse_files") {
        return;
    }
    let m = Mnt::tmpfs();
    std::fs::write(m.p("a"), b"A").expect("write a");
    std::fs::write(m.p("b"), b"B").expect("write b");
    let cwd = rustix::fs::CWD;
    assert_eq!(
        rustix::fs::renameat_with(cwd, m.p("a"), cwd, m.p("b"), RenameFlags::NOREPLACE),
        Err(rustix::io::Errno::EXIST)
    );
    rustix::fs::renameat_with(cwd, m.p("a"), cwd, m.p("b"), RenameFlags::EXCHANGE).expect("exchange");
    assert_eq!(std::fs::read(m.p("a")).expect("a"), b"B");
    assert_eq!(std::fs::read(m.p("b")).expect("b"), b"A");
    rustix::fs::renameat_with(cwd, m.p("a"), cwd, m.p("c"), RenameFlags::NOREPLACE).expect("noreplace");
    assert!(!m.p("a").exists());
    // Sparse: data at 1 MiB only; SEEK_DATA / SEEK_HOLE through FUSE_LSEEK.
    let fd = rustix::fs::open(m.p("sparse"), OFlags::CREATE | OFlags::RDWR, Mode::from_raw_mode(0o644))
        .expect("open");
    rustix::io::pwrite(&fd, &[1u8; 4096], 1 << 20).expect("pwrite");
    let data = rustix::fs::seek(&fd, rustix::fs::SeekFrom::Data(0)).expect("SEEK_DATA");
    assert_eq!(data, 1 << 20);
    let hole = rustix::fs::seek(&fd, rustix::fs::SeekFrom::Hole(0)).expect("SEEK_HOLE");
    assert_eq!(hole, 0);
    // Punch the data out again.
    rustix::fs::fallocate(
        &fd,
        rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
        1 << 20,
        4096,
    )
    .expect("punch");
    assert_eq!(rustix::fs::seek(&fd, rustix::fs::SeekFrom::Data(0)), Err(rustix::io::Errno::NXIO));
    let st = rustix::fs::fstat(&fd).expect("fstat");
    assert_eq!(st.st_size, (1 << 20) + 4096);
}

#[test]
fn hard_links_share_an_inode_and_devices_keep_numbers() {
    if skip("hard_links_share_an_inode_and_devices_keep_numbers") {
        return;
    }
    let m = Mnt::tmpfs();
    std::fs::write(m.p("f"), b"x").expect("write");
    std::fs::hard_link(m.p("f"), m.p("g")).expect("link");
    let (f, g) = (std::fs::metadata(m.p("f")).expect("f"), std::fs::metadata(m.p("g")).expect("g"));
    assert_eq!(f.ino(), g.ino());
    assert_eq!(g.nlink(), 2);
    let dev = rustix::fs::makedev(8, 300);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        m.p("blk"),
        rustix::fs::FileType::BlockDevice,
        Mode::from_raw_mode(0o600),
        dev,
    )
    .expect("mknod");
    let st = rustix::fs::stat(m.p("blk")).expect("stat blk");
    assert_eq!((rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev)), (8, 300));
    rustix::fs::mknodat(
        rustix::fs::CWD,
        m.p("fifo"),
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .expect("mkfifo");
    assert!(std::fs::metadata(m.p("fifo")).expect("fifo").file_type().is_fifo_like());
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}
impl FifoLike for std::fs::FileType {
    fn is_fifo_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_fifo()
    }
}

#[test]
fn forget_releases_node_ids() {
    if skip("forget_releases_node_ids") {
        return;
    }
    let m = Mnt::tmpfs();
    sh(&m.path, "mkdir d; for i in $(seq 1 200); do echo $i > d/f$i; done; ls -l d > /dev/null");
    let status = m.bg.as_ref().map(|b| b.status().clone()).expect("server");
    let held = status.nodes_held();
    assert!(held > 200, "the kernel holds the 200 files: {held}");
    sh(&m.path, "rm -r d");
    // Ask the kernel to drop unused inodes: it sends FORGET for each.
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "2");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while status.nodes_held() > 10 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(status.nodes_held() <= 10, "after forget: {}", status.nodes_held());
}

/// A memory overlay over a lower tmpfs holding `files` (path, contents; parent
/// directories made), mounted: the lower namespace and the mount.
fn over_lower(files: &[(&str, &[u8])]) -> (Arc<MountNamespace>, Mnt) {
    let lower = sandfs_tmpfs::Tmpfs::new_default();
    let lns = MountNamespace::new(lower.clone(), MountFlags::empty());
    let root = sandfs_vfs::Creds::root();
    for (path, data) in files {
        if let Some((dir, _)) = path.rsplit_once('/').filter(|(d, _)| !d.is_empty()) {
            lns.mkdir(&root, None, dir, 0o755).expect("mkdir");
        }
        let flags = sandfs_vfs::OpenFlags::WRITE | sandfs_vfs::OpenFlags::CREAT;
        let f = lns.open_path(&root, None, path, flags, 0o644).expect("create");
        f.write(data).expect("write");
    }
    let ov = sandfs_overlay::Overlay::new(sandfs_tmpfs::Tmpfs::new_default(), vec![lower]).expect("overlay");
    (lns, Mnt::new(ov, CachePolicy::Exclusive))
}

#[test]
fn overlay_writes_stay_in_memory() {
    if skip("overlay_writes_stay_in_memory") {
        return;
    }
    // The lower layer is a tmpfs standing in for the host; its contents must not change.
    let (lns, m) = over_lower(&[("/etc/conf", b"original\n")]);
    let root = sandfs_vfs::Creds::root();
    let out = sh(&m.path, "cat etc/conf; echo changed > etc/conf; echo new > etc/x; rm etc/conf; ls etc");
    assert_eq!(out, "original\nx\n");
    let st = lns.stat(&root, None, "/etc/conf", true).expect("lower file still there");
    assert_eq!(st.size, 9);
    assert!(lns.stat(&root, None, "/etc/x", true).is_err(), "new file must not reach the lower layer");
}

/// Upper-layer files are handed to the kernel (passthrough: their memfd), lower ones
/// are not until copied up; opens in both modes mix without stale data.
#[test]
fn upper_files_pass_through() {
    if skip("upper_files_pass_through") {
        return;
    }
    let (lns, m) = over_lower(&[("/low", b"lower data\n")]);
    let root = sandfs_vfs::Creds::root();
    let status = m.bg.as_ref().expect("server").status().clone();
    // New small and big files, written and read back in several ways.
    let small = sh(&m.path, "echo one > s; echo two >> s; cat s; wc -c < s");
    assert_eq!(small, "one\ntwo\n8\n");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 13 + i / 7) as u8).collect();
    std::fs::write(m.p("big"), &data).expect("write big");
    assert_eq!(std::fs::read(m.p("big")).expect("read big"), data);
    // Two opens at once: what one writes the other reads; size and mtime follow.
    let before = std::fs::metadata(m.p("s")).expect("stat");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let r = std::fs::File::open(m.p("s")).expect("open r");
    let w = std::fs::OpenOptions::new().write(true).open(m.p("s")).expect("open w");
    use std::os::unix::fs::FileExt;
    w.write_all_at(b"ONE", 0).expect("pwrite");
    w.write_all_at(b"tail", 100).expect("pwrite past the end");
    let mut buf = [0u8; 3];
    r.read_exact_at(&mut buf, 0).expect("pread");
    assert_eq!(&buf, b"ONE");
    drop((r, w));
    let after = std::fs::metadata(m.p("s")).expect("stat");
    assert_eq!(after.len(), 104);
    assert!(after.mtime_nsec() != before.mtime_nsec() || after.mtime() != before.mtime(), "mtime moved");
    let back = std::fs::read(m.p("s")).expect("read s");
    assert_eq!(&back[..8], b"ONE\ntwo\n");
    assert_eq!(&back[100..], b"tail");
    // A lower file: read while still lower, then written (copied up) while that
    // read-only open is still there, then read again.
    let lr = std::fs::File::open(m.p("low")).expect("open low");
    let mut lb = [0u8; 5];
    lr.read_exact_at(&mut lb, 0).expect("read low");
    assert_eq!(&lb, b"lower");
    sh(&m.path, "printf LOWER | dd of=low conv=notrunc status=none");
    drop(lr);
    assert_eq!(std::fs::read(m.p("low")).expect("read low"), b"LOWER data\n");
    let lower_file = lns.open_path(&root, None, "/low", sandfs_vfs::OpenFlags::READ, 0).expect("open lower");
    let mut lowb = vec![0u8; 64];
    let n = lower_file.read_at(&mut lowb, 0).expect("read lower");
    assert_eq!(&lowb[..n], b"lower data\n", "the lower layer changed");
    // setuid files are served without passthrough (a direct write would not clear
    // the bit) and still work.
    sh(&m.path, "echo x > su; chmod 4755 su; echo y >> su");
    assert_eq!(std::fs::read(m.p("su")).expect("read su"), b"x\ny\n");
    assert_eq!(std::fs::metadata(m.p("su")).expect("stat").mode() & 0o7777, 0o4755);
    if status.passthrough_offered() {
        assert!(status.passthrough_accepted() > 0, "no upper file passed through");
        assert_eq!(status.passthrough_refused(), 0, "{:?}", status.passthrough_error());
    } else {
        eprintln!("note: the kernel did not offer passthrough; only cached I/O was checked");
    }
}

/// A lower file the gofer serves, copied up while a reader of it stays open: the
/// writer's open succeeds (the kernel fails any open of an inode that is not a
/// passthrough open on the inode's backing file while one is, so lower files on a
/// writable overlay are never passed through), the reader then reads the copy as on
/// overlayfs (since Linux 4.19), so do later opens, and the host files do not change.
#[test]
fn a_lower_file_copied_up_under_an_open_reader() {
    if skip("a_lower_file_copied_up_under_an_open_reader") {
        return;
    }
    use std::os::unix::fs::FileExt;
    let host = tempfile::tempdir().expect("tempdir");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 11) as u8).collect();
    std::fs::write(host.path().join("low"), b"lower data\n").expect("write low");
    std::fs::write(host.path().join("big"), &big).expect("write big");
    let (client, server_end) = sandfs_gofer::transport::Conn::pair().expect("socketpair");
    let source = sandfs_gofer::server::Source::open(host.path(), true).expect("source");
    let server = sandfs_gofer::server::Server::new(source).expect("gofer server");
    std::thread::spawn(move || server.serve(server_end));
    let lower = sandfs_gofer::client::GoferFs::attach(client, sandfs_gofer::client::FileAccess::Exclusive)
        .expect("attach");
    let ov = sandfs_overlay::Overlay::new(sandfs_tmpfs::Tmpfs::new_default(), vec![lower]).expect("overlay");
    let m = Mnt::new(ov, CachePolicy::Exclusive);
    let status = m.bg.as_ref().expect("server").status().clone();
    assert_eq!(std::fs::read(m.p("big")).expect("read big"), big);
    for (name, at, old) in [("low", 0usize, b"lower data\n".to_vec()), ("big", 1_000_000, big.clone())] {
        let r = std::fs::File::open(m.p(name)).expect("open reader");
        let mut buf = [0u8; 5];
        r.read_exact_at(&mut buf, at as u64).expect("read lower");
        assert_eq!(buf, old[at..at + 5]);
        let w =
            std::fs::OpenOptions::new().write(true).open(m.p(name)).expect("open writer next to the reader");
        w.write_all_at(b"COPY!", at as u64).expect("write the copy");
        let mut new = old.clone();
        new[at..at + 5].copy_from_slice(b"COPY!");
        let mut all = vec![0u8; new.len()];
        r.read_exact_at(&mut all, 0).expect("read again");
        assert!(all == new, "{name}: the reader opened before the copy-up does not see it");
        assert_eq!(std::fs::read(m.p(name)).expect("read the copy"), new, "{name}: a new open");
        drop((r, w));
        assert_eq!(std::fs::read(m.p(name)).expect("read the copy"), new, "{name}: after the reader left");
        assert_eq!(
            std::fs::read(host.path().join(name)).expect("host file"),
            old,
            "{name}: the host file changed"
        );
    }
    assert_eq!(status.passthrough_refused(), 0, "{:?}", status.passthrough_error());
}

/// An overlay over a host directory the gofer serves (as `sandfs mount --rootfs`).
fn over_host(host: &Path) -> Mnt {
    let (client, server_end) = sandfs_gofer::transport::Conn::pair().expect("socketpair");
    let source = sandfs_gofer::server::Source::open(host, true).expect("source");
    let server = sandfs_gofer::server::Server::new(source).expect("gofer server");
    std::thread::spawn(move || server.serve(server_end));
    let lower = sandfs_gofer::client::GoferFs::attach(client, sandfs_gofer::client::FileAccess::Exclusive)
        .expect("attach");
    let ov = sandfs_overlay::Overlay::new(sandfs_tmpfs::Tmpfs::new_default(), vec![lower]).expect("overlay");
    Mnt::new(ov, CachePolicy::Exclusive)
}

/// Issue 13: a host file with two names under the overlay. A write through one name
/// survives the other being looked up and shows through it; both names are one
/// inode (number, mode, size); st_nlink counts the names, before and after an rm;
/// the host files do not change.
#[test]
fn lower_hard_links_stay_one_file() {
    if skip("lower_hard_links_stay_one_file") {
        return;
    }
    let host = tempfile::tempdir().expect("tempdir");
    std::fs::write(host.path().join("a"), b"linked\n").expect("write a");
    std::fs::hard_link(host.path().join("a"), host.path().join("b")).expect("ln");
    std::fs::write(host.path().join("c"), b"cc\n").expect("write c");
    std::fs::hard_link(host.path().join("c"), host.path().join("d")).expect("ln");
    let m = over_host(host.path());
    let out = sh(&m.path, "echo new >> a; cat a; ls -l b >/dev/null; cat a; cat b");
    assert_eq!(out, "linked\nnew\nlinked\nnew\nlinked\nnew\n");
    let (a, b) = (std::fs::metadata(m.p("a")).expect("stat a"), std::fs::metadata(m.p("b")).expect("stat b"));
    assert_eq!(a.ino(), b.ino(), "one inode number");
    assert_eq!((a.nlink(), b.nlink()), (2, 2));
    // chmod through one name, truncate through the other.
    sh(&m.path, "chmod 600 a; truncate -s 3 b");
    let (a, b) = (std::fs::metadata(m.p("a")).expect("stat a"), std::fs::metadata(m.p("b")).expect("stat b"));
    assert_eq!((a.mode() & 0o7777, b.mode() & 0o7777), (0o600, 0o600));
    assert_eq!((a.len(), b.len()), (3, 3));
    assert_eq!(std::fs::read(m.p("a")).expect("read a"), b"lin");
    // Link counts: both names looked up before anything changes, then one removed.
    assert_eq!(sh(&m.path, "stat -c %h c d"), "2\n2\n");
    assert_eq!(sh(&m.path, "rm c; stat -c %h d; cat d"), "1\ncc\n");
    assert_eq!(sh(&m.path, "rm a; stat -c %h b; cat b"), "1\nlin");
    assert_eq!(std::fs::read(host.path().join("a")).expect("host a"), b"linked\n", "the host file changed");
    let st = std::fs::metadata(host.path().join("c")).expect("host c");
    assert_eq!(st.nlink(), 2, "the host links changed");
}

#[test]
fn shared_mode_serves_too() {
    if skip("shared_mode_serves_too") {
        return;
    }
    let m = Mnt::new(sandfs_tmpfs::Tmpfs::new_default(), CachePolicy::Shared);
    let out = sh(&m.path, "mkdir d && echo hi > d/f && cat d/f && ls d");
    assert_eq!(out, "hi\nf\n");
    let mode = std::fs::metadata(m.p("d")).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o755 & !0o022 | 0o755);
}

#[test]
fn external_umount_ends_the_server() {
    if skip("external_umount_ends_the_server") {
        return;
    }
    let mut m = Mnt::tmpfs();
    std::fs::write(m.p("f"), b"x").expect("write");
    let st = Command::new("umount").arg(&m.path).status().expect("umount");
    assert!(st.success());
    let mut bg = m.bg.take().expect("server");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !bg.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(bg.is_finished(), "server still running after umount");
    bg.join().expect("server ended cleanly");
}

/// The host directory `host` served by a gofer in `cache` mode (the gofer client
/// and the kernel both), as `sandfs run` serves the root: a memory overlay over it
/// (`overlay`), or the gofer mount itself, read-only (its read-only opens are then
/// passed through when the kernel offers it).
fn host_view(host: &Path, cache: CachePolicy, overlay: bool) -> Mnt {
    let lower = gofer(host, cache, !overlay);
    if overlay {
        let ov =
            sandfs_overlay::Overlay::new(sandfs_tmpfs::Tmpfs::new_default(), vec![lower]).expect("overlay");
        Mnt::new(ov, cache)
    } else {
        Mnt::with_flags(lower, cache, MountFlags::RDONLY)
    }
}

/// A gofer client of `host` in `cache` mode, served from this process.
fn gofer(host: &Path, cache: CachePolicy, readonly: bool) -> Arc<sandfs_gofer::client::GoferFs> {
    use sandfs_gofer::client::{FileAccess, GoferFs};
    let (client, server_end) = sandfs_gofer::transport::Conn::pair().expect("socketpair");
    let source = sandfs_gofer::server::Source::open(host, readonly).expect("source");
    let server = sandfs_gofer::server::Server::new(source).expect("gofer server");
    std::thread::spawn(move || server.serve(server_end));
    let access = match cache {
        CachePolicy::Exclusive => FileAccess::Exclusive,
        CachePolicy::Shared => FileAccess::Shared,
    };
    GoferFs::attach(client, access).expect("attach")
}

/// Rewrite a host file in place (same inode: truncate, then write), as `echo > f`.
fn rewrite_in_place(path: &Path, data: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(path).expect("open host file");
    f.write_all(data).expect("write host file");
}

/// Open `path` and read it whole with plain read(2)s (std's read_to_end asks statx
/// for a size hint first, which may refresh the kernel's attributes by itself); then
/// its size as fstat(2) of that open tells it.
fn read_with_size(path: &Path) -> (Vec<u8>, u64) {
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).expect("open");
    let mut data = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match rustix::io::read(&fd, &mut buf).expect("read") {
            0 => break,
            n => data.extend_from_slice(&buf[..n]),
        }
    }
    let size = rustix::fs::fstat(&fd).expect("fstat").st_size as u64;
    (data, size)
}

/// Issue 13: a host file changed while sandfs serves it. An open made after the
/// change shows the complete old content or the complete new content, with the size
/// of the same state, never a mix (new data cut to the old size, or old cached
/// pages beside new ones): in both modes, through an overlay and passed through. The
/// order is explicit: each host change happens after the sandbox's stat or read
/// returned and before its next open.
#[test]
fn host_changes_are_seen_whole() {
    if skip("host_changes_are_seen_whole") {
        return;
    }
    // Every mix seen, not just the first.
    let mut mixes = Vec::new();
    let mut check = |ok: bool, why: String| {
        if !ok {
            mixes.push(why);
        }
    };
    for cache in [CachePolicy::Exclusive, CachePolicy::Shared] {
        for overlay in [true, false] {
            let what = format!("{cache:?}, {}", if overlay { "overlay" } else { "read-only gofer mount" });
            let host = tempfile::tempdir().expect("tempdir");
            let old_big = vec![b'a'; 4 << 20];
            let new_big = vec![b'b'; 4 << 20];
            std::fs::write(host.path().join("grow"), b"v1\n").expect("write");
            std::fs::write(host.path().join("shrink"), vec![b'x'; 3000]).expect("write");
            std::fs::write(host.path().join("big"), &old_big).expect("write");
            std::fs::write(host.path().join("swap"), b"v1\n").expect("write");
            let m = host_view(host.path(), cache, overlay);

            // Replaced (renamed over) after a listing: sandfs knows the old file by
            // name only, and finds it gone; the gofer client and the overlay forget
            // the name, so the kernel's retry of the walk opens the new file.
            assert!(std::fs::read_dir(&m.path).expect("list").count() >= 4, "{what}");
            std::fs::write(host.path().join("swap.new"), b"NEWCONTENT-much-longer\n").expect("write");
            std::fs::rename(host.path().join("swap.new"), host.path().join("swap")).expect("rename");
            match std::fs::read(m.p("swap")) {
                Ok(d) => check(
                    d == b"v1\n" || d == b"NEWCONTENT-much-longer\n",
                    format!("{what}: swap read {:?}", String::from_utf8_lossy(&d)),
                ),
                Err(e) => check(false, format!("{what}: swap: {e}")),
            }

            // Grows after a stat: the kernel holds the old size.
            assert_eq!(std::fs::metadata(m.p("grow")).expect("stat").len(), 3, "{what}");
            let new = b"NEWCONTENT-much-longer\n";
            rewrite_in_place(&host.path().join("grow"), new);
            let (data, size) = read_with_size(&m.p("grow"));
            check(
                data == b"v1\n" || data == new,
                format!("{what}: grow read {:?}", String::from_utf8_lossy(&data)),
            );
            check(size == data.len() as u64, format!("{what}: grow: fstat says {size}, read {}", data.len()));

            // Shrinks after a whole read: old pages and size are cached.
            assert_eq!(std::fs::read(m.p("shrink")).expect("read"), vec![b'x'; 3000], "{what}");
            rewrite_in_place(&host.path().join("shrink"), b"short\n");
            let (data, size) = read_with_size(&m.p("shrink"));
            check(
                data == vec![b'x'; 3000] || data == b"short\n",
                format!(
                    "{what}: shrink read {} bytes: {:?}",
                    data.len(),
                    String::from_utf8_lossy(&data[..data.len().min(40)])
                ),
            );
            check(
                size == data.len() as u64,
                format!("{what}: shrink: fstat says {size}, read {}", data.len()),
            );

            // Same size, new bytes, after a read of its start only: some old pages
            // are cached, the rest are not.
            {
                use std::os::unix::fs::FileExt;
                let f = std::fs::File::open(m.p("big")).expect("open big");
                let mut head = [0u8; 4096];
                f.read_exact_at(&mut head, 0).expect("read head");
                assert!(head.iter().all(|&b| b == b'a'), "{what}");
            }
            rewrite_in_place(&host.path().join("big"), &new_big);
            let (data, size) = read_with_size(&m.p("big"));
            let olds = data.iter().filter(|&&b| b == b'a').count();
            check(
                data == old_big || data == new_big,
                format!("{what}: big read {} bytes, {olds} of them old", data.len()),
            );
            check(size == data.len() as u64, format!("{what}: big: fstat says {size}, read {}", data.len()));
            drop(m);
        }
    }
    assert!(mixes.is_empty(), "mixed views:\n{}", mixes.join("\n"));
}

/// A `shared` host volume under an `exclusive` root (`--file-access-mounts shared`):
/// the kernel keeps the volume's names and attributes 100 ms, not the root's hour,
/// so a stat without an open sees a host change, and a host file made after a
/// lookup missed it appears; an open after a change sees one state, as on the root. Polled up to a deadline: only revalidation ends it.
#[test]
fn a_shared_volume_under_an_exclusive_root_revalidates() {
    if skip("a_shared_volume_under_an_exclusive_root_revalidates") {
        return;
    }
    let host = tempfile::tempdir().expect("tempdir");
    std::fs::write(host.path().join("f"), b"v1\n").expect("write");
    std::fs::write(host.path().join("h"), b"v1\n").expect("write");
    let root = sandfs_tmpfs::Tmpfs::new_default();
    let ns = MountNamespace::new(root, MountFlags::empty());
    let creds = sandfs_vfs::Creds::root();
    let at = ns.mkdir(&creds, None, "/vol", 0o755).expect("mkdir /vol");
    ns.mount(gofer(host.path(), CachePolicy::Shared, false), &at, MountFlags::empty()).expect("mount /vol");
    let m = Mnt::of(ns, CachePolicy::Exclusive);

    assert_eq!(std::fs::metadata(m.p("vol/f")).expect("stat").len(), 3);
    assert_eq!(std::fs::metadata(m.p("vol/h")).expect("stat").len(), 3);
    assert!(std::fs::metadata(m.p("vol/g")).is_err(), "g before the host made it");
    let new = b"NEWCONTENT-much-longer\n";
    rewrite_in_place(&host.path().join("f"), new);
    rewrite_in_place(&host.path().join("h"), new);
    std::fs::write(host.path().join("g"), b"g\n").expect("write g");
    let (data, size) = read_with_size(&m.p("vol/f"));
    assert!(data == b"v1\n" || data == new, "read {:?}", String::from_utf8_lossy(&data));
    assert_eq!(size, data.len() as u64, "fstat disagrees with the data");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let seen = |p: &str| std::fs::metadata(m.p(p)).map(|md| md.len()).ok();
    let size = Some(new.len() as u64);
    while (seen("vol/h") != size || seen("vol/g").is_none()) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(seen("vol/f"), size, "the size an open saw is not kept");
    assert_eq!(seen("vol/h"), size, "the new size of a file not opened is never seen");
    assert_eq!(seen("vol/g"), Some(2), "a host file made after a missed lookup never appears");
}
