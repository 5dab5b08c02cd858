//! Differential test of gofer + client: generated operation sequences run through
//! the vfs on a gofer-served host directory (a kernel tmpfs, so attributes can match
//! exactly) and as direct syscalls on a twin kernel tmpfs; every result, errno,
//! attribute, listing and content compared (see sandfs-testkit).
//!
//! Named exceptions: xattrs of FIFOs, sockets and devices are not reachable through
//! the gofer (it would have to open them), and the gofer makes no device node on the
//! host (mknod of a device and RENAME_WHITEOUT are EPERM, tested in `owners.rs`), so
//! those operations are skipped.

use sandfs_gofer::client::{FileAccess, GoferFs};
use sandfs_gofer::server::{Server, Source};
use sandfs_gofer::transport::Conn;
use sandfs_testkit as kit;
use sandfs_vfs::{MountFlags, MountNamespace};
use std::path::Path;

#[test]
fn differential_gofer_against_kernel_tmpfs() {
    if !kit::is_root() {
        eprintln!(
            "SKIP differential_gofer_against_kernel_tmpfs: needs root (mounts kernel tmpfs, switches uids)"
        );
        return;
    }
    let twin = tempfile::tempdir().expect("tempdir");
    let kernel = kit::kernel_tmpfs(twin.path()).expect("kernel worker");
    // The host side the gofer serves: another kernel tmpfs, in its own worker's
    // private mount namespace (gone when the worker ends).
    let served = tempfile::tempdir().expect("tempdir");
    let host = kit::kernel_tmpfs(served.path()).expect("host worker");
    let cfg = kit::Config { special_xattrs: false, devices: false, ..kit::Config::new(kit::cases(300)) };
    let (total, stats) = kit::run_with(&kernel, cfg, || {
        let src = host
            .run(|| {
                kit::as_root();
                kit::kwipe();
                Source::open(Path::new("/"), false)
            })
            .expect("open source");
        let (client, conn) = Conn::pair().expect("socketpair");
        let server = Server::new(src).expect("server");
        std::thread::spawn(move || server.serve(conn));
        let fs = GoferFs::attach(client, FileAccess::Exclusive).expect("attach");
        MountNamespace::new(fs, MountFlags::empty())
    });
    kit::report("gofer vs kernel tmpfs", total, &stats);
}
