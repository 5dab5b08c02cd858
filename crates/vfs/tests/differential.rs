//! Differential test of vfs + tmpfs against a kernel tmpfs: see sandfs-testkit for
//! the generated operations, the credentials and the named exceptions.

use sandfs_testkit as kit;
use sandfs_tmpfs::Tmpfs;
use sandfs_vfs::{MountFlags, MountNamespace};

#[test]
fn differential_against_kernel_tmpfs() {
    if !kit::is_root() {
        eprintln!(
            "SKIP differential_against_kernel_tmpfs: needs root (mounts a kernel tmpfs, switches uids)"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kit::kernel_tmpfs(dir.path()).expect("kernel worker");
    let (total, stats) = kit::run(&kernel, kit::cases(1000), || {
        MountNamespace::new(Tmpfs::new_default(), MountFlags::empty())
    });
    kit::report("vfs+tmpfs vs kernel tmpfs", total, &stats);
}
