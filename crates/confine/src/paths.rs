//! Masked and read-only paths: the parts of /proc and /sys that reveal or change
//! the host kernel are hidden (a file under /dev/null, a directory under an empty
//! read-only tmpfs) or made read-only (bound over themselves, remounted `ro`), as
//! OCI runtimes do with a spec's `linux.maskedPaths` and `linux.readonlyPaths`.

use rustix::mount::{MountFlags, MountPropagationFlags, mount, mount_bind, mount_change, mount_remount};
use std::path::{Path, PathBuf};

/// Paths hidden without a bundle (those of the OCI default spec, and a few more).
pub const DEFAULT_MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/interrupts",
    "/proc/kallsyms",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/sys/kernel/debug",
    "/sys/kernel/security",
];

/// Paths made read-only without a bundle.
pub const DEFAULT_READONLY: &[&str] =
    &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

fn under(root: &Path, p: &str) -> PathBuf {
    root.join(p.trim_start_matches('/'))
}

/// Hide `path` (inside the tree at `root`): a missing path is skipped, a directory
/// gets an empty read-only tmpfs, anything else /dev/null bound over it.
pub fn mask(root: &Path, path: &str) -> Result<(), String> {
    let at = under(root, path);
    let Ok(meta) = std::fs::symlink_metadata(&at) else { return Ok(()) };
    let r = if meta.is_dir() {
        mount(
            "tmpfs",
            &at,
            "tmpfs",
            MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            c"size=0,mode=755",
        )
    } else {
        mount_bind("/dev/null", &at)
    };
    r.map_err(|e| format!("mask {path}: {e}"))
}

/// Make `path` (inside the tree at `root`) read-only: bind it over itself and
/// remount that bind read-only, keeping the flags the kernel locked on it. A
/// missing path is skipped.
pub fn read_only(root: &Path, path: &str) -> Result<(), String> {
    let at = under(root, path);
    if std::fs::symlink_metadata(&at).is_err() {
        return Ok(());
    }
    rustix::mount::mount_bind_recursive(&at, &at).map_err(|e| format!("bind {path} read-only: {e}"))?;
    let _ = mount_change(&at, MountPropagationFlags::PRIVATE);
    let flags =
        locked_flags(&at) | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    mount_remount(&at, MountFlags::BIND | flags, c"").map_err(|e| format!("make {path} read-only: {e}"))
}

/// The mount flags a remount must repeat (nosuid, nodev, noexec, atime ones).
pub fn locked_flags(at: &Path) -> MountFlags {
    use rustix::fs::StatVfsMountFlags as S;
    let Ok(st) = rustix::fs::statvfs(at) else { return MountFlags::empty() };
    let mut f = MountFlags::empty();
    for (s, m) in [
        (S::NOSUID, MountFlags::NOSUID),
        (S::NODEV, MountFlags::NODEV),
        (S::NOEXEC, MountFlags::NOEXEC),
        (S::NOATIME, MountFlags::NOATIME),
        (S::NODIRATIME, MountFlags::NODIRATIME),
        (S::RELATIME, MountFlags::RELATIME),
        (S::RDONLY, MountFlags::RDONLY),
    ] {
        if st.f_flag.contains(s) {
            f |= m;
        }
    }
    f
}
