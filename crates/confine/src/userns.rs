//! The user namespace every sandbox runs in: which host ids its ids map to, and
//! writing the maps of a child that has unshared one.
//!
//! - Started by root: container ids 0..65535 map onto a subordinate range, the
//!   `sandfs` entry of /etc/subuid and /etc/subgid when there is one, else
//!   [`DEFAULT_BASE`]..+65536. Never onto host 0.
//! - Started by an ordinary user (rootless): container 0 is that user; with
//!   newuidmap/newgidmap (package uidmap) and an entry for the user in
//!   /etc/subuid and /etc/subgid, container 1.. map onto that range too. Without
//!   them only container 0 exists, and setgroups is denied (the kernel requires it
//!   for an unprivileged gid map).

use sandfs_vfs::{IdMap, IdRange};
use std::path::Path;

/// First host id of the default range a root-started sandbox uses when /etc/subuid
/// has no `sandfs` entry: inside the range systemd sets aside for containers
/// (524288..1879048191), clear of the ranges `useradd` hands out from 100000 up.
pub const DEFAULT_BASE: u32 = 1_000_000_000;
/// Ids per sandbox: 0..65535 covers every id a distribution image uses, nobody included.
pub const DEFAULT_COUNT: u32 = 65536;

/// One `name:start:count` line of /etc/subuid or /etc/subgid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubRange {
    /// User name or number.
    pub owner: String,
    /// First host id.
    pub start: u32,
    /// How many.
    pub count: u32,
}

/// The ranges of a subuid/subgid file (malformed lines are skipped, as shadow does).
pub fn parse_sub(text: &str) -> Vec<SubRange> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let mut p = l.split(':');
            let owner = p.next()?.to_string();
            let start = p.next()?.trim().parse().ok()?;
            let count: u32 = p.next()?.trim().parse().ok()?;
            (count > 0 && p.next().is_none()).then_some(SubRange { owner, start, count })
        })
        .collect()
}

/// The first range of `file` owned by `name` or by the number `id`.
pub fn sub_range(file: &Path, name: &str, id: u32) -> Option<SubRange> {
    let text = std::fs::read_to_string(file).ok()?;
    parse_sub(&text).into_iter().find(|r| r.owner == name || r.owner == id.to_string())
}

/// The map of a root-started sandbox: the `sandfs` subordinate ranges, or the default.
pub fn root_map(subuid: &Path, subgid: &Path) -> IdMap {
    let pick = |f: &Path| {
        sub_range(f, "sandfs", u32::MAX)
            .filter(|r| r.start != 0)
            .map(|r| IdRange { inside: 0, outside: r.start, count: r.count.min(u32::MAX - r.start) })
            .unwrap_or(IdRange { inside: 0, outside: DEFAULT_BASE, count: DEFAULT_COUNT })
    };
    IdMap { uids: vec![pick(subuid)], gids: vec![pick(subgid)] }
}

/// The map of a rootless sandbox of user `uid`/`gid` (named `name`): container 0 is
/// the user; `sub` adds the user's subordinate ranges at container 1 onwards.
pub fn rootless_map(uid: u32, gid: u32, sub: Option<(SubRange, SubRange)>) -> IdMap {
    let mut m = IdMap::shifted(uid, gid, 1);
    if let Some((u, g)) = sub {
        m.uids.push(IdRange { inside: 1, outside: u.start, count: u.count });
        m.gids.push(IdRange { inside: 1, outside: g.start, count: g.count });
    }
    m
}

/// How the maps of a child's new user namespace get written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Writer {
    /// This process may write them itself (root, or one range of its own ids).
    Direct,
    /// Through the setuid helpers newuidmap and newgidmap (rootless with
    /// subordinate ranges).
    Helpers,
}

/// Write `map` into the user namespace of `pid`. Rootless without helpers maps only
/// the caller, after denying setgroups (the kernel's rule for such a gid map).
pub fn write_maps(pid: i32, map: &IdMap, how: &Writer) -> Result<(), String> {
    match how {
        Writer::Direct => {
            if !rustix::process::geteuid().is_root() {
                std::fs::write(format!("/proc/{pid}/setgroups"), "deny")
                    .map_err(|e| format!("deny setgroups in the user namespace: {e}"))?;
            }
            std::fs::write(format!("/proc/{pid}/uid_map"), map.uid_map_text())
                .map_err(|e| format!("write uid_map {:?}: {e}", map.uid_map_text()))?;
            std::fs::write(format!("/proc/{pid}/gid_map"), map.gid_map_text())
                .map_err(|e| format!("write gid_map {:?}: {e}", map.gid_map_text()))?;
        }
        Writer::Helpers => {
            for (tool, ranges) in [("newuidmap", &map.uids), ("newgidmap", &map.gids)] {
                let mut cmd = std::process::Command::new(tool);
                cmd.arg(pid.to_string());
                for r in ranges {
                    cmd.args([r.inside.to_string(), r.outside.to_string(), r.count.to_string()]);
                }
                let out = cmd.output().map_err(|e| format!("{tool}: {e}"))?;
                if !out.status.success() {
                    return Err(format!("{tool} {pid}: {}", String::from_utf8_lossy(&out.stderr).trim()));
                }
            }
        }
    }
    Ok(())
}

/// Whether `tool` is a file on PATH.
pub fn on_path(tool: &str) -> bool {
    crate::which(tool).is_some()
}

/// The user's name, from /etc/passwd (empty when absent).
pub fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2].parse() == Ok(uid)).then(|| f[0].to_string())
            })
        })
        .unwrap_or_default()
}

/// The map and the way to write it for this caller (root or rootless).
pub fn for_caller() -> (IdMap, Writer) {
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    if uid == 0 {
        return (root_map(Path::new("/etc/subuid"), Path::new("/etc/subgid")), Writer::Direct);
    }
    let name = user_name(uid);
    let sub = match (
        sub_range(Path::new("/etc/subuid"), &name, uid),
        sub_range(Path::new("/etc/subgid"), &name, uid),
    ) {
        (Some(u), Some(g)) if on_path("newuidmap") && on_path("newgidmap") => Some((u, g)),
        _ => None,
    };
    let how = if sub.is_some() { Writer::Helpers } else { Writer::Direct };
    (rootless_map(uid, gid, sub), how)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subuid_lines_parse_and_bad_ones_are_skipped() {
        let t = "alice:100000:65536\n# c\n\nsandfs:200000:65536\nbad\nbob:x:1\nzero:5:0\n1001:300000:10\n";
        let r = parse_sub(t);
        assert_eq!(r.len(), 3);
        assert_eq!(r[1], SubRange { owner: "sandfs".into(), start: 200000, count: 65536 });
        assert_eq!(r[2].owner, "1001");
    }

    #[test]
    fn root_map_prefers_the_sandfs_entry_and_never_maps_host_root() {
        let d = tempfile::tempdir().unwrap();
        let (u, g) = (d.path().join("subuid"), d.path().join("subgid"));
        let m = root_map(&u, &g);
        assert_eq!(m.uid_to_host(0), Some(DEFAULT_BASE));
        assert_eq!(m.uid_from_host(0), None);
        std::fs::write(&u, "alice:100000:65536\nsandfs:300000:65536\n").unwrap();
        std::fs::write(&g, "sandfs:0:65536\n").unwrap();
        let m = root_map(&u, &g);
        assert_eq!(m.uid_to_host(0), Some(300000));
        // A range starting at host 0 is refused: the default is used instead.
        assert_eq!(m.gid_to_host(0), Some(DEFAULT_BASE));
    }

    #[test]
    fn rootless_map_puts_the_user_at_zero() {
        let m = rootless_map(1000, 1000, None);
        assert_eq!(m.uid_map_text(), "0 1000 1\n");
        let s = |start| SubRange { owner: "u".into(), start, count: 65536 };
        let m = rootless_map(1000, 1001, Some((s(100000), s(200000))));
        assert_eq!(m.uid_map_text(), "0 1000 1\n1 100000 65536\n");
        assert_eq!(m.gid_to_host(1), Some(200000));
    }
}
