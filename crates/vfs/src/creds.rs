//! Credentials of the caller of an operation: the filesystem uid/gid, supplementary
//! groups, and the capabilities Linux consults for file operations.

use bitflags::bitflags;
use std::sync::Arc;

bitflags! {
    /// The capabilities that matter to filesystem permission checks.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Caps: u32 {
        /// Change file ownership arbitrarily.
        const CHOWN = 1 << 0;
        /// Bypass read, write and execute permission checks.
        const DAC_OVERRIDE = 1 << 1;
        /// Bypass read permission on files and read/search on directories.
        const DAC_READ_SEARCH = 1 << 2;
        /// Act as the owner of any file (chmod, utimes, sticky deletion, linking).
        const FOWNER = 1 << 3;
        /// Keep setuid/setgid bits on write and chmod.
        const FSETID = 1 << 4;
        /// Create character and block devices.
        const MKNOD = 1 << 5;
        /// trusted.* extended attributes and other administrative operations.
        const SYS_ADMIN = 1 << 6;
        /// Set or clear the immutable and append-only file flags.
        const LINUX_IMMUTABLE = 1 << 7;
    }
}

impl Caps {
    /// What a root process holds by default.
    pub const ROOT: Caps = Caps::all();
}

/// The identity an operation runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Creds {
    /// Filesystem user id.
    pub uid: u32,
    /// Filesystem group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Arc<[u32]>,
    /// Effective capabilities relevant to files.
    pub caps: Caps,
}

impl Creds {
    /// uid 0 with every file capability.
    pub fn root() -> Self {
        Creds { uid: 0, gid: 0, groups: Arc::from([]), caps: Caps::ROOT }
    }

    /// An unprivileged user with no capabilities.
    pub fn user(uid: u32, gid: u32, groups: &[u32]) -> Self {
        Creds { uid, gid, groups: Arc::from(groups), caps: Caps::empty() }
    }

    /// Whether `gid` is the primary group or one of the supplementary groups.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    /// Whether the capability is held.
    pub fn has(&self, cap: Caps) -> bool {
        self.caps.contains(cap)
    }
}
