//! The mount plan: the spec's `mounts` classified (tmpfs, bind, kernel mounts for
//! the sandbox process, unknown types skipped with a warning), their generic options
//! turned into mount flags, tmpfs data options filtered, shared propagation refused,
//! and the list ordered parents first (stable for equal depth).

use crate::error::SetupError;
use oci_spec::runtime::Mount;
use sandfs_tmpfs::TmpfsOptions;
use sandfs_vfs::MountFlags;
use std::path::{Component, Path, PathBuf};

/// Kernel filesystems the sandbox process mounts itself.
pub const KERNEL_TYPES: &[&str] = &["proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2"];

/// tmpfs data options kept; others are dropped with a warning.
pub const TMPFS_KEEP: &[&str] = &["mode", "size", "uid", "gid", "nr_inodes", "nr_blocks"];

/// Options that are not data: flags, propagation, and the ones that mean nothing here.
pub const GENERIC: &[&str] = &[
    "ro",
    "rw",
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "noexec",
    "exec",
    "noatime",
    "atime",
    "relatime",
    "strictatime",
    "nodiratime",
    "bind",
    "rbind",
    "private",
    "rprivate",
    "slave",
    "rslave",
    "sync",
    "async",
    "defaults",
];

/// What a planned mount is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An in-memory tmpfs with these options.
    Tmpfs(TmpfsOptions),
    /// A host directory or file through the gofer.
    Bind {
        /// Absolute host path.
        source: PathBuf,
    },
    /// A kernel filesystem the sandbox process mounts (proc, sysfs, ...).
    Kernel {
        /// Filesystem type.
        fstype: String,
        /// Source field, if any.
        source: Option<PathBuf>,
        /// Data options as given.
        data: Vec<String>,
    },
}

/// One mount to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// Index in the spec's `mounts`, for error messages.
    pub index: usize,
    /// Absolute, lexically cleaned destination.
    pub destination: PathBuf,
    /// What to mount.
    pub kind: Kind,
    /// Generic flags.
    pub flags: MountFlags,
}

/// The plan for one container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Mounts, parents first.
    pub mounts: Vec<Planned>,
    /// What was skipped or dropped, for the user.
    pub warnings: Vec<String>,
}

/// Lexically clean an absolute path (`.`, `..`, repeated slashes); `..` stops at `/`.
pub fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn depth(p: &Path) -> usize {
    p.components().filter(|c| matches!(c, Component::Normal(_))).count()
}

/// Plan the spec's mounts.
pub fn plan(mounts: &[Mount]) -> Result<Plan, SetupError> {
    let mut plan = Plan::default();
    for (i, m) in mounts.iter().enumerate() {
        let dest = m.destination();
        if !dest.is_absolute() {
            return Err(SetupError::field(
                format!("mounts[{i}].destination"),
                dest.display().to_string(),
                "must be an absolute path",
            ));
        }
        let destination = clean(dest);
        let options: Vec<String> = m.options().clone().unwrap_or_default();
        let mut flags = MountFlags::empty();
        let mut data = Vec::new();
        let mut bind = false;
        for o in &options {
            match o.as_str() {
                "shared" | "rshared" => {
                    return Err(SetupError::field(
                        format!("mounts[{i}].options"),
                        o.clone(),
                        "shared mount propagation is not supported",
                    ));
                }
                "ro" => flags |= MountFlags::RDONLY,
                "nosuid" => flags |= MountFlags::NOSUID,
                "nodev" => flags |= MountFlags::NODEV,
                "noexec" => flags |= MountFlags::NOEXEC,
                "noatime" => flags |= MountFlags::NOATIME,
                "bind" | "rbind" => bind = true,
                g if GENERIC.contains(&g) => {}
                other => data.push(other.to_string()),
            }
        }
        let typ = m.typ().clone().unwrap_or_default();
        let kind = if bind || typ == "bind" {
            let source = m.source().clone().ok_or_else(|| {
                SetupError::field(format!("mounts[{i}].source"), "", "a bind mount needs a source")
            })?;
            Kind::Bind { source }
        } else if typ == "tmpfs" {
            let mut kept = Vec::new();
            for d in &data {
                let key = d.split('=').next().unwrap_or("");
                if TMPFS_KEEP.contains(&key) {
                    kept.push(d.clone());
                } else {
                    plan.warnings.push(format!(
                        "mounts[{i}] ({}): tmpfs option {d:?} not supported, dropped",
                        destination.display()
                    ));
                }
            }
            let opts = TmpfsOptions::parse(&kept.join(","))
                .map_err(|why| SetupError::field(format!("mounts[{i}].options"), kept.join(","), why))?;
            Kind::Tmpfs(opts)
        } else if KERNEL_TYPES.contains(&typ.as_str()) {
            Kind::Kernel { fstype: typ.clone(), source: m.source().clone(), data }
        } else {
            plan.warnings.push(format!(
                "mounts[{i}] ({}): unknown mount type {typ:?}, skipped",
                destination.display()
            ));
            continue;
        };
        plan.mounts.push(Planned { index: i, destination, kind, flags });
    }
    plan.mounts.sort_by_key(|p| depth(&p.destination));
    Ok(plan)
}
