//! A FUSE mount of a namespace served in the test process, shared by the FUSE
//! test files: each on its own temporary directory, unmounted (MNT_DETACH) and its
//! server joined when dropped, also when the test fails.
#![allow(dead_code)] // each test file uses part of it

use sandfs_fuse::{Background, CachePolicy, Options, Server};
use sandfs_vfs::{Filesystem, MountFlags, MountNamespace};
use std::path::PathBuf;
use std::sync::Arc;

/// A mounted namespace; unmounted (detached) and its server joined on drop.
pub struct Mnt {
    pub bg: Option<Background>,
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mnt {
    pub fn new(fs: Arc<dyn Filesystem>, cache: CachePolicy) -> Mnt {
        Mnt::with_flags(fs, cache, MountFlags::empty())
    }

    pub fn with_flags(fs: Arc<dyn Filesystem>, cache: CachePolicy, flags: MountFlags) -> Mnt {
        Mnt::of(MountNamespace::new(fs, flags), cache)
    }

    pub fn of(ns: Arc<MountNamespace>, cache: CachePolicy) -> Mnt {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).expect("mkdir mnt");
        let opts = Options { cache, ..Options::default() };
        let bg = Server::mount(ns, &path, &opts).expect("mount").spawn().expect("spawn");
        Mnt { bg: Some(bg), path, _dir: dir }
    }

    pub fn tmpfs() -> Mnt {
        let fs = sandfs_tmpfs::Tmpfs::new_default();
        Mnt::new(fs, CachePolicy::Exclusive)
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }
}

impl Drop for Mnt {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.path, rustix::mount::UnmountFlags::DETACH);
        if let Some(bg) = self.bg.take() {
            drop(bg);
        }
    }
}
