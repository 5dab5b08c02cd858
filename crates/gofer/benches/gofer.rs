//! Gofer benchmarks, each next to its direct-syscall equivalent in the same run:
//! the round trip of a one-component walk (which returns the attributes), a cold walk
//! with a stat of every file of a 10,000-file tree through the client versus readdir +
//! fstatat, and sequential 1 GiB write (over allocated pages) and read through a
//! donated descriptor versus the same syscalls on a descriptor opened directly. Each
//! module is a pair, `sandfs` (through the gofer) and `kernel` (direct syscalls), the
//! layout `bench/gofer.sh` reads (as bench/vfs.sh does).
//!
//! The server runs in-process on a thread (the same code the confined `sandfs gofer`
//! runs). The tree lives on a kernel tmpfs mounted on a tempdir when run as root
//! (unmounted by a guard at exit), else under /dev/shm.
//!
//! `cargo bench -p sandfs-gofer`.

use divan::{Bencher, black_box, counter::BytesCount};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags, RawDir};
use sandfs_gofer::client::{FileAccess, GoferFs};
use sandfs_gofer::proto::{self, Reply, Request};
use sandfs_gofer::server::{Server, Source};
use sandfs_gofer::transport::Conn;
use sandfs_vfs::{Creds, MountFlags, MountNamespace, OpenFlags};
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const DIRS: usize = 100;
const FILES: usize = 100;
const CHUNK: usize = 1 << 20;
const GIB_CHUNKS: usize = 1024;

/// A scratch directory on tmpfs (a static: never dropped, so `main` removes it).
struct Scratch {
    dir: tempfile::TempDir,
    mounted: bool,
}

static SCRATCH: OnceLock<Scratch> = OnceLock::new();

fn scratch() -> &'static Scratch {
    SCRATCH.get_or_init(|| {
        if rustix::process::geteuid().is_root() {
            let dir = tempfile::tempdir().expect("tempdir");
            if rustix::mount::mount(
                "tmpfs",
                dir.path(),
                "tmpfs",
                rustix::mount::MountFlags::empty(),
                c"size=3g",
            )
            .is_ok()
            {
                build_tree(dir.path());
                return Scratch { dir, mounted: true };
            }
        }
        eprintln!("note: not root (or mount failed): using /dev/shm, which is tmpfs too");
        let dir = tempfile::tempdir_in("/dev/shm").expect("tempdir in /dev/shm");
        build_tree(dir.path());
        Scratch { dir, mounted: false }
    })
}

fn build_tree(root: &Path) {
    let tree = root.join("tree");
    for d in 0..DIRS {
        let dir = tree.join(format!("d{d:03}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..FILES {
            std::fs::write(dir.join(format!("f{f:03}")), b"x").expect("write");
        }
    }
}

fn serve(path: &Path, access: FileAccess) -> std::sync::Arc<GoferFs> {
    let src = Source::open(path, false).expect("source");
    let server = Server::new(src).expect("server");
    let (client, conn) = Conn::pair().expect("socketpair");
    std::thread::spawn(move || server.serve(conn));
    GoferFs::attach(client, access).expect("attach")
}

fn raw_client(path: &Path) -> (Conn, u64) {
    let src = Source::open(path, false).expect("source");
    let server = Server::new(src).expect("server");
    let (client, conn) = Conn::pair().expect("socketpair");
    std::thread::spawn(move || server.serve(conn));
    let root = match call(&client, &Request::Attach { version: proto::VERSION }) {
        Reply::Attached { root, .. } => root,
        r => panic!("attach: {r:?}"),
    };
    (client, root)
}

fn call(c: &Conn, req: &Request) -> Reply {
    c.send(&req.encode(7), &[]).expect("send");
    let mut buf = Vec::new();
    let mut fds = Vec::new();
    c.recv(&mut buf, &mut fds).expect("recv");
    proto::decode_reply(&buf).expect("decode").1.expect("reply")
}

fn main() {
    // The scratch tmpfs is mounted in this process's own mount namespace, so it goes
    // away with the process even if the run dies; it is unmounted at the end anyway.
    if rustix::process::geteuid().is_root() {
        // SAFETY: no other thread exists yet, and no file descriptor table is unshared.
        let private = unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }.is_ok()
            && rustix::mount::mount_change(
                "/",
                rustix::mount::MountPropagationFlags::REC | rustix::mount::MountPropagationFlags::PRIVATE,
            )
            .is_ok();
        if !private {
            eprintln!("note: no private mount namespace; the scratch tmpfs is unmounted at the end");
        }
    }
    scratch();
    divan::main();
    if let Some(s) = SCRATCH.get() {
        if s.mounted {
            let _ = rustix::mount::unmount(s.dir.path(), rustix::mount::UnmountFlags::DETACH);
        }
        let _ = std::fs::remove_dir_all(s.dir.path());
    }
}

/// One component's attributes: a Walk message (a full round trip) against fstatat of
/// the name relative to a held descriptor.
mod walk_stat_round_trip {
    use super::*;

    /// One Walk message of one component (attributes included).
    #[divan::bench]
    fn sandfs(b: Bencher) {
        let (c, root) = raw_client(&scratch().dir.path().join("tree"));
        let mut fids = Vec::new();
        b.bench_local(|| {
            let r = call(&c, &Request::Walk { dir: root, names: vec![b"d050".to_vec()] });
            if let Reply::Walked { entries, .. } = r {
                fids.extend(entries.iter().map(|e| e.0));
            }
            if fids.len() >= 4096 {
                call(&c, &Request::Close { fids: std::mem::take(&mut fids) });
            }
        });
    }

    /// The same information directly: fstatat of one name relative to a held fd.
    #[divan::bench]
    fn kernel(b: Bencher) {
        let fd = rustix::fs::open(
            scratch().dir.path().join("tree"),
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .expect("open");
        b.bench_local(|| {
            black_box(rustix::fs::statat(&fd, "d050", AtFlags::SYMLINK_NOFOLLOW).expect("stat"))
        });
    }
}

/// A cold walk of 10,000 files, a stat of each: through a fresh client against
/// readdir + fstatat.
mod cold_walk_10k {
    use super::*;

    /// A freshly attached client (empty caches), readdir of every directory, lookup and
    /// getattr of every file. Attaching (a server thread, a socketpair, the Attach
    /// message) and dropping the client's caches afterwards are outside the timing, as
    /// opening the root and closing descriptors are on the direct side.
    #[divan::bench(sample_count = 15, sample_size = 1)]
    fn sandfs(b: Bencher) {
        let root = scratch().dir.path().join("tree");
        b.with_inputs(|| MountNamespace::new(serve(&root, FileAccess::Exclusive), MountFlags::empty()))
            .bench_local_values(|ns| {
                black_box(walk_ns(&ns));
                ns
            });
    }

    fn walk_ns(ns: &MountNamespace) -> usize {
        let c = Creds::root();
        let mut n = 0;
        let mut stack = vec![ns.root()];
        while let Some(dir) = stack.pop() {
            let f = ns.open(&c, &dir, OpenFlags::READ | OpenFlags::DIRECTORY).expect("opendir");
            let mut names = Vec::new();
            f.readdir(&mut |e| {
                if e.name != b"." && e.name != b".." {
                    names.push(e.name.to_vec());
                }
                true
            })
            .expect("readdir");
            for name in names {
                let loc = ns.lookup(&c, &dir, &name).expect("lookup");
                let a = ns.getattr(&loc).expect("getattr");
                n += 1;
                if a.kind == sandfs_vfs::FileType::Directory {
                    stack.push(loc);
                }
            }
        }
        n
    }

    /// The same walk with readdir and fstatat.
    #[divan::bench(sample_count = 15, sample_size = 1)]
    fn kernel(b: Bencher) {
        let root = scratch().dir.path().join("tree");
        b.with_inputs(|| {
            rustix::fs::open(&root, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).expect("open")
        })
        .bench_local_values(|fd| black_box(walk_direct_fd(fd)));
    }

    fn walk_direct_fd(root: OwnedFd) -> usize {
        let mut n = 0;
        let mut stack = vec![root];
        let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
        while let Some(dir) = stack.pop() {
            let mut names = Vec::new();
            let mut raw = RawDir::new(dir.as_fd(), &mut buf);
            while let Some(e) = raw.next() {
                let e = e.expect("getdents");
                let name = e.file_name().to_bytes();
                if name != b"." && name != b".." {
                    names.push(name.to_vec());
                }
            }
            for name in names {
                let st = rustix::fs::statat(&dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW).expect("stat");
                n += 1;
                if st.st_mode & 0o170000 == 0o040000 {
                    stack.push(
                        rustix::fs::openat(
                            &dir,
                            name.as_slice(),
                            OFlags::RDONLY | OFlags::DIRECTORY,
                            Mode::empty(),
                        )
                        .expect("open"),
                    );
                }
            }
        }
        n
    }
}

fn big_path() -> PathBuf {
    scratch().dir.path().join("big")
}

/// 1 GiB written in 1 MiB pwrites over the allocated pages of a 1 GiB file, through
/// the descriptor the gofer donated against a descriptor opened directly. Over, not
/// after a truncation: allocating a gigabyte of pages is the host filesystem's work,
/// the same on both sides, and its run-to-run spread (71-120% between identical
/// runs) hid the descriptor's throughput, which is what is compared.
mod write_1g {
    use super::*;

    #[divan::bench(sample_count = 15, sample_size = 1)]
    fn sandfs(b: Bencher) {
        ensure_big();
        let root = scratch().dir.path();
        let ns = MountNamespace::new(serve(root, FileAccess::Exclusive), MountFlags::empty());
        let data = vec![7u8; CHUNK];
        b.counter(BytesCount::new(CHUNK * GIB_CHUNKS)).bench_local(|| {
            let c = Creds::root();
            let f = ns.open_path(&c, None, "big", OpenFlags::WRITE, 0).expect("open");
            for i in 0..GIB_CHUNKS {
                f.write_at(&data, (i * CHUNK) as u64).expect("write");
            }
        });
    }

    #[divan::bench(sample_count = 15, sample_size = 1)]
    fn kernel(b: Bencher) {
        ensure_big();
        let data = vec![7u8; CHUNK];
        b.counter(BytesCount::new(CHUNK * GIB_CHUNKS)).bench_local(|| {
            let fd = rustix::fs::open(big_path(), OFlags::WRONLY, Mode::empty()).expect("open");
            for i in 0..GIB_CHUNKS {
                rustix::io::pwrite(&fd, &data, (i * CHUNK) as u64).expect("write");
            }
        });
    }
}

/// 1 GiB read in 1 MiB preads through the descriptor the gofer donated, against a
/// descriptor opened directly.
mod read_1g {
    use super::*;

    #[divan::bench(sample_count = 15, sample_size = 1)]
    fn sandfs(b: Bencher) {
        ensure_big();
        let root = scratch().dir.path();
        let ns = MountNamespace::new(serve(root, FileAccess::Exclusive), MountFlags::empty());
        let mut buf = vec![0u8; CHUNK];
        b.counter(BytesCount::new(CHUNK * GIB_CHUNKS)).bench_local(|| {
            let f = ns.open_path(&Creds::root(), None, "big", OpenFlags::READ, 0).expect("open");
            for i in 0..GIB_CHUNKS {
                f.read_at(&mut buf, (i * CHUNK) as u64).expect("read");
            }
        });
    }

    #[divan::bench(sample_count = 15, sample_size = 1)]
    fn kernel(b: Bencher) {
        ensure_big();
        let mut buf = vec![0u8; CHUNK];
        b.counter(BytesCount::new(CHUNK * GIB_CHUNKS)).bench_local(|| {
            let fd = rustix::fs::open(big_path(), OFlags::RDONLY, Mode::empty()).expect("open");
            for i in 0..GIB_CHUNKS {
                rustix::io::pread(&fd, &mut buf, (i * CHUNK) as u64).expect("read");
            }
        });
    }
}

fn ensure_big() {
    let ok = std::fs::metadata(big_path()).map(|m| m.len() == (CHUNK * GIB_CHUNKS) as u64).unwrap_or(false);
    if !ok {
        let data = vec![7u8; CHUNK];
        let fd = rustix::fs::open(
            big_path(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC,
            Mode::from_raw_mode(0o644),
        )
        .expect("open");
        for i in 0..GIB_CHUNKS {
            rustix::io::pwrite(&fd, &data, (i * CHUNK) as u64).expect("write");
        }
    }
}
