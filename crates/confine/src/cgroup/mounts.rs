//! Where the cgroup hierarchies are: the cgroup mounts from /proc/self/mountinfo,
//! the caller's own cgroup in each from /proc/self/cgroup, and which layout that is.

use std::fmt;
use std::path::{Path, PathBuf};

use super::CgroupError;

/// The v1 controllers sandfs manages; a v1 hierarchy holding none of them (such as
/// `name=systemd`) is left alone.
pub(super) const V1_CONTROLLERS: [&str; 8] =
    ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"];

/// Which cgroup layout the host has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CgroupVersion {
    /// Only v1 hierarchies, one mount per controller (or per group of controllers).
    V1,
    /// v1 controller hierarchies plus a v2 tree (systemd's "hybrid"): limits go
    /// through v1; the v2 tree only tracks membership.
    Hybrid,
    /// One unified v2 hierarchy holds every controller.
    V2,
}

impl fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::Hybrid => "hybrid (v1 controllers, v2 tree)",
            CgroupVersion::V2 => "v2",
        })
    }
}

/// One mounted cgroup hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Mount {
    /// Where it is mounted.
    pub point: PathBuf,
    /// Which cgroup of the hierarchy the mount shows (usually `/`).
    pub root: String,
    /// `None` for cgroup2, else the v1 controllers bound to this hierarchy.
    pub controllers: Option<Vec<String>>,
}

/// The cgroup mounts of this process's mount namespace, first mount of each
/// hierarchy only.
pub(super) fn mounts() -> Result<Vec<Mount>, CgroupError> {
    let path = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(path)
        .map_err(|source| CgroupError::Read { path: path.to_path_buf(), source })?;
    Ok(parse_mountinfo(&text))
}

/// Parses mountinfo text into its cgroup mounts.
pub(super) fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(point), Some(fstype), Some(opts)) =
            (left.get(3), left.get(4), right.first(), right.get(2))
        else {
            continue;
        };
        let controllers = match *fstype {
            "cgroup2" => None,
            "cgroup" => Some(
                opts.split(',').filter(|o| V1_CONTROLLERS.contains(o)).map(str::to_owned).collect::<Vec<_>>(),
            ),
            _ => continue,
        };
        if controllers.as_ref().is_some_and(Vec::is_empty) {
            continue;
        }
        if out.iter().any(|m| m.controllers == controllers) {
            continue;
        }
        out.push(Mount { point: PathBuf::from(unescape(point)), root: unescape(root), controllers });
    }
    out
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).and_then(|d| {
            d.iter()
                .try_fold(0u32, |v, c| c.is_ascii_digit().then(|| v * 8 + u32::from(c - b'0')))
                .filter(|_| d.iter().all(|c| *c < b'8'))
                .and_then(|v| u8::try_from(v).ok())
        });
        if let (b'\\', Some(v)) = (b[i], octal) {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of /proc/self/cgroup: the hierarchy's v1 controllers (empty for v2)
/// and the caller's cgroup in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Membership {
    /// The v1 controllers of the hierarchy (named hierarchies' `name=` dropped);
    /// `None` for the v2 line (`0::`).
    pub controllers: Option<Vec<String>>,
    /// The caller's cgroup, absolute within the hierarchy.
    pub path: String,
}

/// The caller's cgroups.
pub(super) fn own_cgroups() -> Result<Vec<Membership>, CgroupError> {
    let path = Path::new("/proc/self/cgroup");
    let text = std::fs::read_to_string(path)
        .map_err(|source| CgroupError::Read { path: path.to_path_buf(), source })?;
    Ok(parse_proc_cgroup(&text))
}

/// Parses /proc/<pid>/cgroup text.
pub(super) fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctl), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let controllers = if id == "0" && ctl.is_empty() {
            None
        } else {
            Some(ctl.split(',').filter(|c| V1_CONTROLLERS.contains(c)).map(str::to_owned).collect())
        };
        out.push(Membership { controllers, path: path.to_owned() });
    }
    out
}

/// Tells the layout from the mounts: v2 when only a cgroup2 tree is mounted, v1
/// when only v1 controllers are, hybrid when both are.
pub(super) fn version_of(mounts: &[Mount]) -> Option<CgroupVersion> {
    let v1 = mounts.iter().any(|m| m.controllers.is_some());
    let v2 = mounts.iter().any(|m| m.controllers.is_none());
    match (v1, v2) {
        (true, true) => Some(CgroupVersion::Hybrid),
        (true, false) => Some(CgroupVersion::V1),
        (false, true) => Some(CgroupVersion::V2),
        (false, false) => None,
    }
}

/// The host's cgroup layout, for `sandfs info`.
pub fn detect() -> Result<CgroupVersion, CgroupError> {
    version_of(&mounts()?).ok_or(CgroupError::NoCgroupFs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:5 - cgroup2 cgroup2 rw
50 23 0:32 /docker/x /mnt/my\\040mem rw - cgroup cgroup rw,memory
";

    #[test]
    fn mountinfo_hybrid() {
        let m = parse_mountinfo(HYBRID);
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(m[0].point, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(m[0].controllers, Some(vec!["cpu".to_owned(), "cpuacct".to_owned()]));
        assert_eq!(m[2].controllers, None);
        assert_eq!(version_of(&m), Some(CgroupVersion::Hybrid));
        assert_eq!(version_of(&m[2..]), Some(CgroupVersion::V2));
        assert_eq!(version_of(&m[..2]), Some(CgroupVersion::V1));
        assert_eq!(version_of(&[]), None);
    }

    #[test]
    fn mountinfo_escapes_and_roots() {
        let m = parse_mountinfo("50 23 0:32 /docker/x /mnt/my\\040mem rw - cgroup cgroup rw,memory\n");
        assert_eq!(m[0].point, Path::new("/mnt/my mem"));
        assert_eq!(m[0].root, "/docker/x");
    }

    #[test]
    fn proc_cgroup_lines() {
        let m = parse_proc_cgroup("9:name=systemd:/\n4:memory:/a/b\n2:cpu,cpuacct:/\n0::/user.slice\n");
        assert_eq!(m[0].controllers, Some(vec![]));
        assert_eq!(m[1].path, "/a/b");
        assert_eq!(m[2].controllers, Some(vec!["cpu".to_owned(), "cpuacct".to_owned()]));
        assert_eq!(m[3].controllers, None);
        assert_eq!(m[3].path, "/user.slice");
    }
}
