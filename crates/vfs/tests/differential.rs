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

/// The same with every file past one page moved into a memfd (as big files are).
#[test]
fn differential_against_kernel_tmpfs_with_memfd_files() {
    if !kit::is_root() {
        eprintln!("SKIP differential_against_kernel_tmpfs_with_memfd_files: needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kit::kernel_tmpfs(dir.path()).expect("kernel worker");
    let opts = sandfs_tmpfs::TmpfsOptions { memfd_from: Some(4096), ..Default::default() };
    let (total, stats) = kit::run(&kernel, kit::cases(300), || {
        MountNamespace::new(Tmpfs::new(&opts).expect("tmpfs"), MountFlags::empty())
    });
    kit::report("vfs+tmpfs (memfd files) vs kernel tmpfs", total, &stats);
}
