//! sandfs VFS + tmpfs against the kernel, side by side in one run.
//!
//! Every operation is measured twice: through a [`MountNamespace`] on a
//! `sandfs_tmpfs::Tmpfs` with root credentials (`sandfs`), and as the equivalent
//! syscall on a kernel tmpfs (`kernel`). As root the bench mounts its own kernel tmpfs
//! in a temporary directory (unmounted by a drop guard at the end); otherwise it falls
//! back to a directory under /dev/shm, which is tmpfs too, and says so.
//!
//! Kernel paths are resolved relative to an open directory fd of the kernel tmpfs
//! root, so both sides walk the same number of components.
//!
//! Before the timings, `main` measures the memory a tmpfs holds per empty file:
//! 100,000 empty files created in one directory, live heap bytes counted by the
//! counting global allocator below (bytes requested from the allocator, net of frees),
//! and for comparison the resident-set delta from /proc/self/statm (which includes
//! malloc's own overhead). Both are printed as `bytes per empty file ...` lines that
//! `bench/vfs.sh` picks up.
//!
//! `cargo bench -p sandfs-vfs`; `bench/vfs.sh` runs it and updates BENCHMARKS.md.

use divan::{Bencher, black_box};
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, Mode, OFlags, RawDir};
use sandfs_tmpfs::Tmpfs;
use sandfs_vfs::ops::Make;
use sandfs_vfs::{Creds, MountFlags, MountNamespace, OpenFile, OpenFlags};
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

// Live heap bytes are counted only inside `counted` (sandfs-testkit).
#[global_allocator]
static ALLOC: sandfs_testkit::alloc::CountingAlloc = sandfs_testkit::alloc::CountingAlloc;

// ----- fixtures -----

/// The 6-component path both sides stat.
const DEEP: &str = "a/b/c/d/e/f";
/// uid and gid of the unprivileged stat variant.
const USER: u32 = 1000;
/// Entries in the readdir directory.
const BIG_DIR_ENTRIES: usize = 10_000;
/// Size of the file pread/pwrite use.
const DATA_FILE_SIZE: usize = 1 << 20;
/// Files created for the memory measurement.
const MEM_FILES: usize = 100_000;

struct Sandfs {
    ns: Arc<MountNamespace>,
    creds: Creds,
    data: OpenFile,
}

struct Kernel {
    root: OwnedFd,
    data: OwnedFd,
}

struct Fixture {
    sandfs: Sandfs,
    kernel: Kernel,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get().expect("fixture is set up in main")
}

/// The kernel tmpfs the bench runs against; unmounts it (when it mounted one) on drop.
struct KernelTmpfs {
    dir: PathBuf,
    mounted: bool,
    _tmp: tempfile::TempDir,
}

impl KernelTmpfs {
    fn new() -> KernelTmpfs {
        if rustix::process::geteuid().is_root() {
            let tmp = tempfile::Builder::new().prefix("sandfs-bench-").tempdir().expect("tempdir");
            let dir = tmp.path().to_path_buf();
            match rustix::mount::mount(
                "tmpfs",
                &dir,
                "tmpfs",
                rustix::mount::MountFlags::empty(),
                c"mode=0755,size=1g",
            ) {
                Ok(()) => {
                    println!("kernel side: a kernel tmpfs mounted by the bench (at {})", dir.display());
                    return KernelTmpfs { dir, mounted: true, _tmp: tmp };
                }
                Err(e) => println!("kernel side: mounting a tmpfs failed ({e}); falling back to /dev/shm"),
            }
        } else {
            println!("kernel side: not root, so no tmpfs mount; falling back to /dev/shm");
        }
        let tmp = tempfile::Builder::new()
            .prefix("sandfs-bench-")
            .tempdir_in("/dev/shm")
            .expect("a directory under /dev/shm (tmpfs)");
        let dir = tmp.path().to_path_buf();
        // Searchable by others, like the root of a mounted tmpfs (mode=0755).
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod the bench directory");
        println!("kernel side: a directory on the /dev/shm tmpfs, not a fresh mount (at {})", dir.display());
        KernelTmpfs { dir, mounted: false, _tmp: tmp }
    }
}

impl Drop for KernelTmpfs {
    fn drop(&mut self) {
        if self.mounted {
            // Lazily: the fixture's fds (in a static) stay open until exit.
            if let Err(e) = rustix::mount::unmount(&self.dir, rustix::mount::UnmountFlags::DETACH) {
                eprintln!("unmounting {}: {e}", self.dir.display());
            }
        }
    }
}

/// The calling thread runs with effective uid and gid [`USER`] (so the kernel checks
/// every directory's mode, with no capabilities) until dropped. Without root the
/// process is unprivileged already and nothing changes.
struct AsUser(bool);

impl AsUser {
    fn new() -> AsUser {
        use rustix::thread::{Gid, Uid, set_thread_res_gid, set_thread_res_uid};
        if !rustix::process::geteuid().is_root() {
            return AsUser(false);
        }
        set_thread_res_gid(None, Gid::from_raw_unchecked(USER), None).expect("setresgid");
        set_thread_res_uid(None, Uid::from_raw_unchecked(USER), None).expect("setresuid");
        AsUser(true)
    }
}

impl Drop for AsUser {
    fn drop(&mut self) {
        use rustix::thread::{Gid, Uid, set_thread_res_gid, set_thread_res_uid};
        if self.0 {
            set_thread_res_uid(None, Uid::ROOT, None).expect("back to euid 0");
            set_thread_res_gid(None, Gid::ROOT, None).expect("back to egid 0");
        }
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

fn sandfs_fixture() -> Sandfs {
    let fs = Tmpfs::new_default();
    let ns = MountNamespace::new(fs, MountFlags::empty());
    let creds = Creds::root();
    let mut p = String::new();
    for c in DEEP.split('/') {
        p.push('/');
        p.push_str(c);
        ns.mkdir(&creds, None, &p, 0o755).expect("mkdir");
    }
    ns.mkdir(&creds, None, "/cu", 0o755).expect("mkdir /cu");
    ns.mkdir(&creds, None, "/big", 0o755).expect("mkdir /big");
    let big = ns.resolve(&creds, None, "/big", true).expect("/big");
    for i in 0..BIG_DIR_ENTRIES {
        ns.make(&creds, &big, format!("entry-{i:05}").as_bytes(), Make::File, 0o644).expect("create");
    }
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREAT;
    let data = ns.open_path(&creds, None, "/data", flags, 0o644).expect("create /data");
    data.write_at(&pattern(DATA_FILE_SIZE), 0).expect("write /data");
    Sandfs { ns, creds, data }
}

fn kernel_fixture(dir: &Path) -> Kernel {
    let root = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .expect("open kernel tmpfs root");
    let mut p = String::new();
    for c in DEEP.split('/') {
        if !p.is_empty() {
            p.push('/');
        }
        p.push_str(c);
        rustix::fs::mkdirat(&root, &p, Mode::from(0o755)).expect("mkdir");
    }
    rustix::fs::mkdirat(&root, "cu", Mode::from(0o755)).expect("mkdir cu");
    rustix::fs::mkdirat(&root, "big", Mode::from(0o755)).expect("mkdir big");
    let create = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC;
    for i in 0..BIG_DIR_ENTRIES {
        rustix::fs::openat(&root, format!("big/entry-{i:05}"), create, Mode::from(0o644)).expect("create");
    }
    let data =
        rustix::fs::openat(&root, "data", OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC, Mode::from(0o644))
            .expect("create data");
    let buf = pattern(DATA_FILE_SIZE);
    let mut off = 0;
    while off < buf.len() {
        off += rustix::io::pwrite(&data, &buf[off..], off as u64).expect("write data");
    }
    Kernel { root, data }
}

// ----- memory per empty file -----

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    // statm counts pages; x86_64 and aarch64-4k pages are 4 KiB.
    pages * 4096
}

/// Live heap bytes and RSS growth per empty file, over `MEM_FILES` files in one
/// directory of a fresh tmpfs (names `f000000`..: 7 bytes).
fn memory_per_empty_file() -> (f64, f64) {
    let fs = Tmpfs::new_default();
    let ns = MountNamespace::new(fs.clone(), MountFlags::empty());
    let creds = Creds::root();
    let dir = ns.mkdir(&creds, None, "/d", 0o755).expect("mkdir /d");
    let mut names: Vec<[u8; 7]> = Vec::with_capacity(MEM_FILES);
    for i in 0..MEM_FILES {
        let mut n = *b"f000000";
        let s = format!("{i:06}");
        n[1..].copy_from_slice(s.as_bytes());
        names.push(n);
    }
    let inodes_before = fs.used_inodes();
    let rss_before = rss_bytes();
    let ((), live) = sandfs_testkit::alloc::counted(|| {
        for n in &names {
            let loc = ns.make(&creds, &dir, n, Make::File, 0o644).expect("create");
            drop(loc);
        }
    });
    let rss_after = rss_bytes();
    assert_eq!(fs.used_inodes() - inodes_before, MEM_FILES as u64);
    let per_file = live as f64 / MEM_FILES as f64;
    let rss_per_file = rss_after.saturating_sub(rss_before) as f64 / MEM_FILES as f64;
    drop(ns);
    drop(fs);
    (per_file, rss_per_file)
}

// ----- benchmarks -----

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    if benching {
        let (live, rss) = memory_per_empty_file();
        println!("bytes per empty file (allocator, live heap bytes): {live:.1}");
        println!("bytes per empty file (RSS delta, incl. malloc overhead): {rss:.1}");
        println!(
            "tmpfs inode: {} bytes (+16 for its Arc counts), directory entry slot: {} bytes + the name",
            std::mem::size_of::<sandfs_tmpfs::Inode>(),
            std::mem::size_of::<(Box<[u8]>, Arc<sandfs_tmpfs::Inode>)>()
        );
    }
    let kernel_dir = KernelTmpfs::new();
    let f = Fixture { sandfs: sandfs_fixture(), kernel: kernel_fixture(&kernel_dir.dir) };
    if FIXTURE.set(f).is_err() {
        unreachable!("main runs once");
    }
    divan::main();
    drop(kernel_dir);
}

/// stat of a 6-component path (`a/b/c/d/e/f`, a directory), following symlinks.
mod stat_6_components {
    use super::*;

    #[divan::bench(sample_count = 300, sample_size = 64)]
    fn sandfs(b: Bencher) {
        let s = &fixture().sandfs;
        b.bench(|| s.ns.stat(&s.creds, None, black_box("/a/b/c/d/e/f"), true).expect("stat"));
    }

    #[divan::bench(sample_count = 300, sample_size = 64)]
    fn kernel(b: Bencher) {
        let k = &fixture().kernel;
        b.bench(|| rustix::fs::statat(&k.root, black_box(DEEP), AtFlags::empty()).expect("stat"));
    }
}

/// The same stat as an unprivileged user (uid/gid 1000, no capabilities), so both
/// sides check every directory's mode bits. (The kernel side drops to euid 1000 on
/// the benchmark thread for the duration.)
mod stat_6_components_uid1000 {
    use super::*;

    #[divan::bench(sample_count = 300, sample_size = 64)]
    fn sandfs(b: Bencher) {
        let s = &fixture().sandfs;
        let user = Creds::user(USER, USER, &[]);
        b.bench(|| s.ns.stat(&user, None, black_box("/a/b/c/d/e/f"), true).expect("stat"));
    }

    #[divan::bench(sample_count = 300, sample_size = 64)]
    fn kernel(b: Bencher) {
        let k = &fixture().kernel;
        let user = AsUser::new();
        if user.0 {
            assert_eq!(rustix::process::geteuid().as_raw(), USER, "running as the user");
        }
        b.bench(|| rustix::fs::statat(&k.root, black_box(DEEP), AtFlags::empty()).expect("stat"));
    }
}

/// Create (open O_CREAT|O_EXCL|O_WRONLY), close, unlink one file in a directory.
mod create_unlink {
    use super::*;

    #[divan::bench(sample_count = 300, sample_size = 16)]
    fn sandfs(b: Bencher) {
        let s = &fixture().sandfs;
        let flags = OpenFlags::CREAT | OpenFlags::EXCL | OpenFlags::WRITE;
        b.bench(|| {
            let f = s.ns.open_path(&s.creds, None, black_box("/cu/x"), flags, 0o644).expect("create");
            drop(f);
            s.ns.unlink_path(&s.creds, None, black_box("/cu/x")).expect("unlink");
        });
    }

    #[divan::bench(sample_count = 300, sample_size = 16)]
    fn kernel(b: Bencher) {
        let k = &fixture().kernel;
        let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC;
        b.bench(|| {
            let f = rustix::fs::openat(&k.root, black_box("cu/x"), flags, Mode::from(0o644)).expect("create");
            drop(f);
            rustix::fs::unlinkat(&k.root, black_box("cu/x"), AtFlags::empty()).expect("unlink");
        });
    }
}

/// pread of 4 KiB at offset 0 of a 1 MiB file.
mod pread_4k {
    use super::*;

    #[divan::bench(sample_count = 300, sample_size = 64)]
    fn sandfs(b: Bencher) {
        let s = &fixture().sandfs;
        let mut buf = vec![0u8; 4096];
        b.bench_local(|| {
            let n = s.data.read_at(black_box(&mut buf), black_box(0)).expect("pread");
            assert_eq!(n, 4096);
        });
    }

    #[divan::bench(sample_count = 300, sample_size = 64)]
    fn kernel(b: Bencher) {
        let k = &fixture().kernel;
        let mut buf = vec![0u8; 4096];
        b.bench_local(|| {
            let n = rustix::io::pread(&k.data, black_box(&mut buf[..]), black_box(0)).expect("pread");
            assert_eq!(n, 4096);
        });
    }
}

/// pwrite of 4 KiB at offset 0 of a 1 MiB file (an allocated page: no growth).
mod pwrite_4k {
    use super::*;

    #[divan::bench(sample_count = 300, sample_size = 64)]
    fn sandfs(b: Bencher) {
        let s = &fixture().sandfs;
        let buf = pattern(4096);
        b.bench(|| {
            let n = s.data.write_at(black_box(&buf), black_box(0)).expect("pwrite");
            assert_eq!(n, 4096);
        });
    }

    #[divan::bench(sample_count = 300, sample_size = 64)]
    fn kernel(b: Bencher) {
        let k = &fixture().kernel;
        let buf = pattern(4096);
        b.bench(|| {
            let n = rustix::io::pwrite(&k.data, black_box(&buf), black_box(0)).expect("pwrite");
            assert_eq!(n, 4096);
        });
    }
}

/// open, read every entry of, and close a 10,000-entry directory.
mod readdir_10k {
    use super::*;

    #[divan::bench(sample_count = 200, sample_size = 1)]
    fn sandfs(b: Bencher) {
        let s = &fixture().sandfs;
        let flags = OpenFlags::READ | OpenFlags::DIRECTORY;
        b.bench(|| {
            let d = s.ns.open_path(&s.creds, None, black_box("/big"), flags, 0).expect("opendir");
            let mut n = 0usize;
            d.readdir(&mut |e| {
                black_box(e.name);
                n += 1;
                true
            })
            .expect("readdir");
            assert_eq!(n, BIG_DIR_ENTRIES + 2);
        });
    }

    #[divan::bench(sample_count = 200, sample_size = 1)]
    fn kernel(b: Bencher) {
        let k = &fixture().kernel;
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
        b.bench_local(|| {
            let d = rustix::fs::openat(&k.root, black_box("big"), flags, Mode::empty()).expect("opendir");
            let mut dir = RawDir::new(&d, &mut buf);
            let mut n = 0usize;
            while let Some(e) = dir.next() {
                black_box(e.expect("getdents").file_name());
                n += 1;
            }
            assert_eq!(n, BIG_DIR_ENTRIES + 2);
        });
    }
}
