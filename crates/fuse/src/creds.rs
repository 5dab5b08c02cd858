//! The credentials of a FUSE request.
//!
//! The kernel sends the caller's filesystem uid and gid and its thread id, but not its
//! supplementary groups. Those are read from `/proc/<tid>/status` (the `Groups:`
//! line) of the requesting thread, for callers other than uid 0: one open, read and
//! close of a small procfs file, a few microseconds, on each request that needs
//! credentials (lookups, opens, creation, removal, setattr, xattrs, access). Nothing
//! is cached: a program may change its groups between two calls (test suites switch
//! identities constantly), and a stale group list is a wrong permission decision.
//! uid 0 needs no groups (root's capabilities decide every check that a group
//! membership could), so root's requests cost nothing extra.
//!
//! Capabilities: uid 0 gets every file capability ([`Creds::root`]), any other uid
//! none. The kernel does not send the caller's capability sets; a root process that
//! dropped capabilities is still treated as fully privileged, and an unprivileged
//! process holding file capabilities is not (documented limitation).

use sandfs_vfs::{Caps, Creds, IdMap};
use std::io::Read;
use std::sync::Arc;

/// Credentials for a request from `uid`/`gid` made by thread `pid`. With `ids`
/// (the mount lives in a user namespace with that map), the groups read from
/// /proc, which show host ids to this server, become the namespace's ids; a group
/// with no mapping is dropped (it grants nothing inside).
pub fn request_creds(uid: u32, gid: u32, pid: u32, ids: Option<&IdMap>) -> Creds {
    if uid == 0 {
        return Creds { uid, gid, groups: Arc::from([]), caps: Caps::ROOT };
    }
    let mut groups = if pid == 0 { Vec::new() } else { groups_of(pid) };
    if let Some(m) = ids {
        groups = groups.into_iter().filter_map(|g| m.gid_from_host(g)).collect();
    }
    Creds::user(uid, gid, &groups)
}

/// Supplementary groups of thread `pid` (empty when it is gone or unreadable).
pub fn groups_of(pid: u32) -> Vec<u32> {
    let mut buf = [0u8; 4096];
    let Ok(mut f) = std::fs::File::open(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    let mut len = 0;
    while len < buf.len() {
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    parse_groups(&buf[..len])
}

/// The numbers on the `Groups:` line of a `/proc/PID/status` text.
pub fn parse_groups(status: &[u8]) -> Vec<u32> {
    for line in status.split(|&b| b == b'\n') {
        if let Some(rest) = line.strip_prefix(b"Groups:") {
            return rest
                .split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty())
                .filter_map(|w| std::str::from_utf8(w).ok()?.parse().ok())
                .collect();
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_groups_line() {
        let s = b"Name:\tcat\nUid:\t1000\t1000\t1000\t1000\nGroups:\t4 24 27 1000 \nNgid:\t0\n";
        assert_eq!(parse_groups(s), vec![4, 24, 27, 1000]);
        assert_eq!(parse_groups(b"Groups:\n"), Vec::<u32>::new());
        assert_eq!(parse_groups(b"Name: x\n"), Vec::<u32>::new());
    }

    #[test]
    fn groups_translate_through_the_namespace_map() {
        let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
        let own = groups_of(tid);
        let Some(&g) = own.first() else { return };
        let m = IdMap::shifted(g, g, 1);
        let c = request_creds(1000, 1000, tid, Some(&m));
        assert!(c.groups.contains(&0), "host group {g} is group 0 inside: {:?}", c.groups);
        let none = IdMap::shifted(u32::MAX - 1, u32::MAX - 1, 1);
        assert!(request_creds(1000, 1000, tid, Some(&none)).groups.is_empty());
    }

    #[test]
    fn reads_own_groups() {
        let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
        // Whatever they are, reading them works and matches getgroups.
        let mut want: Vec<u32> = rustix::process::getgroups()
            .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
            .unwrap_or_default();
        let mut got = groups_of(tid);
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want);
    }
}
