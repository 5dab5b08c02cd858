//! User and group id maps: how the ids a sandbox sees (inside its user namespace)
//! relate to the ids the host stores. The runtime writes them into the user
//! namespace's `uid_map`/`gid_map`; the gofer translates host file owners through
//! them for host mounts that hold the container's writes (a writable bind), so a
//! file the container's root creates there belongs on the host to the mapped id,
//! never to host root.

use std::fmt;

/// Owner id Linux shows for a host id with no mapping (`/proc/sys/kernel/overflowuid`).
pub const OVERFLOW_ID: u32 = 65534;

/// One line of a `uid_map`: `count` ids from `inside` map to `outside` onwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IdRange {
    /// First id inside the namespace.
    pub inside: u32,
    /// The host id it maps to.
    pub outside: u32,
    /// How many consecutive ids.
    pub count: u32,
}

impl IdRange {
    fn host_id(&self, id: u32) -> Option<u32> {
        let off = id.checked_sub(self.inside)?;
        (off < self.count).then(|| self.outside + off)
    }

    fn inside_id(&self, id: u32) -> Option<u32> {
        let off = id.checked_sub(self.outside)?;
        (off < self.count).then(|| self.inside + off)
    }
}

impl fmt::Display for IdRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.inside, self.outside, self.count)
    }
}

impl std::str::FromStr for IdRange {
    type Err = String;
    /// `INSIDE:OUTSIDE:COUNT`.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let [a, b, c] = parts[..] else { return Err(format!("id range {s:?}: want INSIDE:OUTSIDE:COUNT")) };
        let num = |x: &str| x.parse::<u32>().map_err(|_| format!("id range {s:?}: {x:?} is not a number"));
        let r = IdRange { inside: num(a)?, outside: num(b)?, count: num(c)? };
        if r.count == 0
            || r.inside.checked_add(r.count - 1).is_none()
            || r.outside.checked_add(r.count - 1).is_none()
        {
            return Err(format!("id range {s:?}: empty or past the largest id"));
        }
        Ok(r)
    }
}

/// The uid and gid maps of one user namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdMap {
    /// uid ranges.
    pub uids: Vec<IdRange>,
    /// gid ranges.
    pub gids: Vec<IdRange>,
}

impl IdMap {
    /// `count` ids from 0 inside mapped onto host ids from `uid`/`gid` onwards.
    pub fn shifted(uid: u32, gid: u32, count: u32) -> IdMap {
        IdMap {
            uids: vec![IdRange { inside: 0, outside: uid, count }],
            gids: vec![IdRange { inside: 0, outside: gid, count }],
        }
    }

    /// The host uid of container uid `id`, if mapped.
    pub fn uid_to_host(&self, id: u32) -> Option<u32> {
        self.uids.iter().find_map(|r| r.host_id(id))
    }

    /// The host gid of container gid `id`, if mapped.
    pub fn gid_to_host(&self, id: u32) -> Option<u32> {
        self.gids.iter().find_map(|r| r.host_id(id))
    }

    /// The container uid of host uid `id`, if mapped.
    pub fn uid_from_host(&self, id: u32) -> Option<u32> {
        self.uids.iter().find_map(|r| r.inside_id(id))
    }

    /// The container gid of host gid `id`, if mapped.
    pub fn gid_from_host(&self, id: u32) -> Option<u32> {
        self.gids.iter().find_map(|r| r.inside_id(id))
    }

    /// The text of a `/proc/PID/uid_map` for the uid ranges.
    pub fn uid_map_text(&self) -> String {
        map_text(&self.uids)
    }

    /// The text of a `/proc/PID/gid_map` for the gid ranges.
    pub fn gid_map_text(&self) -> String {
        map_text(&self.gids)
    }
}

fn map_text(ranges: &[IdRange]) -> String {
    ranges.iter().map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_both_ways_and_refuses_outside() {
        let m = IdMap {
            uids: vec![
                IdRange { inside: 0, outside: 1000, count: 1 },
                IdRange { inside: 1, outside: 100000, count: 65536 },
            ],
            gids: vec![IdRange { inside: 0, outside: 200000, count: 10 }],
        };
        assert_eq!(m.uid_to_host(0), Some(1000));
        assert_eq!(m.uid_to_host(1), Some(100000));
        assert_eq!(m.uid_to_host(65536), Some(165535));
        assert_eq!(m.uid_to_host(65537), None);
        assert_eq!(m.uid_from_host(1000), Some(0));
        assert_eq!(m.uid_from_host(0), None);
        assert_eq!(m.gid_to_host(9), Some(200009));
        assert_eq!(m.gid_to_host(10), None);
        assert_eq!(m.gid_from_host(200000), Some(0));
        assert_eq!(m.uid_map_text(), "0 1000 1\n1 100000 65536\n");
    }

    #[test]
    fn parses_ranges_and_refuses_bad_ones() {
        assert_eq!(
            "0:100000:65536".parse::<IdRange>(),
            Ok(IdRange { inside: 0, outside: 100000, count: 65536 })
        );
        for bad in ["", "0:1", "0:1:0", "a:1:1", "4294967295:0:2", "0:4294967295:2", "1:2:3:4"] {
            assert!(bad.parse::<IdRange>().is_err(), "{bad}");
        }
        assert_eq!(IdRange { inside: 1, outside: 2, count: 3 }.to_string(), "1:2:3");
    }
}
