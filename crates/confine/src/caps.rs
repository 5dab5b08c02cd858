//! Capabilities: the OCI default set, OCI capability names, and applying the five
//! sets to the program's process in the order that keeps them (bounding first, then
//! identity with the permitted set kept, then effective/permitted/inheritable, then
//! ambient).

use rustix::thread::{CapabilitySet, CapabilitySets};
use serde::{Deserialize, Serialize};

/// Every capability name this build knows ([`by_name`] takes each), in number order.
pub fn all_names() -> Vec<String> {
    CapabilitySet::all().iter_names().map(|(n, _)| format!("CAP_{n}")).collect()
}

/// What OCI runtimes give a container by default (runc's and podman's list).
pub const DEFAULT: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SYS_CHROOT",
    "CAP_MKNOD",
    "CAP_AUDIT_WRITE",
    "CAP_SETFCAP",
];

/// The five capability sets of a process, as bit masks (bit N = capability N).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sets {
    /// Bounding: the most any exec can give.
    pub bounding: u64,
    /// Effective.
    pub effective: u64,
    /// Permitted.
    pub permitted: u64,
    /// Inheritable.
    pub inheritable: u64,
    /// Ambient: kept across exec by a non-root program.
    pub ambient: u64,
}

/// The capability named `name` (`CAP_SYS_ADMIN`, case-insensitive, `CAP_` optional).
pub fn by_name(name: &str) -> Option<CapabilitySet> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    CapabilitySet::from_name(bare)
}

/// The mask of `names`; an unknown name is an error naming `field` and the entry.
pub fn mask<S: AsRef<str>>(names: &[S], field: &str) -> Result<u64, String> {
    let mut m = 0;
    for (i, n) in names.iter().enumerate() {
        let n = n.as_ref();
        let c = by_name(n).ok_or_else(|| format!("{field}[{i}]: unknown capability {n:?}"))?;
        m |= c.bits();
    }
    Ok(m)
}

impl Sets {
    /// The OCI default set in bounding, effective and permitted.
    pub fn default_container() -> Sets {
        // The names above are all known to rustix; an unknown one would be a bug here.
        let m = mask(DEFAULT, "default").unwrap_or(0);
        Sets { bounding: m, effective: m, permitted: m, inheritable: 0, ambient: 0 }
    }

    /// From a spec's `process.capabilities`; `None` means no capabilities at all (as
    /// runc does when the field is absent).
    pub fn from_oci(c: Option<&oci_spec::runtime::LinuxCapabilities>) -> Result<Sets, String> {
        let Some(c) = c else { return Ok(Sets::default()) };
        let names = |s: &Option<oci_spec::runtime::Capabilities>, field: &str| -> Result<u64, String> {
            let v: Vec<String> = s.iter().flatten().map(|c| c.to_string()).collect();
            mask(&v, field)
        };
        Ok(Sets {
            bounding: names(c.bounding(), "process.capabilities.bounding")?,
            effective: names(c.effective(), "process.capabilities.effective")?,
            permitted: names(c.permitted(), "process.capabilities.permitted")?,
            inheritable: names(c.inheritable(), "process.capabilities.inheritable")?,
            ambient: names(c.ambient(), "process.capabilities.ambient")?,
        })
    }
}

/// The highest capability number this kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Drop from the bounding set everything not in `keep` (needs CAP_SETPCAP).
pub fn limit_bounding(keep: u64, last: u32) -> Result<(), String> {
    for n in 0..=last.min(63) {
        let bit = 1u64 << n;
        if keep & bit != 0 {
            continue;
        }
        let c = CapabilitySet::from_bits_retain(bit);
        match rustix::thread::remove_capability_from_bounding_set(c) {
            Ok(()) => {}
            // A capability this kernel does not have.
            Err(rustix::io::Errno::INVAL) => {}
            Err(e) => return Err(format!("drop capability {n} from the bounding set: {e}")),
        }
    }
    Ok(())
}

/// Set effective, permitted and inheritable, then the ambient set (after the
/// identity change, which kept the permitted set through PR_SET_KEEPCAPS).
pub fn apply_sets(s: &Sets, last: u32) -> Result<(), String> {
    let sets = CapabilitySets {
        effective: CapabilitySet::from_bits_retain(s.effective),
        permitted: CapabilitySet::from_bits_retain(s.permitted),
        inheritable: CapabilitySet::from_bits_retain(s.inheritable),
    };
    rustix::thread::set_capabilities(None, sets).map_err(|e| format!("set capabilities: {e}"))?;
    rustix::thread::clear_ambient_capability_set().map_err(|e| format!("clear ambient capabilities: {e}"))?;
    for n in 0..=last.min(63) {
        let bit = 1u64 << n;
        if s.ambient & bit == 0 {
            continue;
        }
        let c = CapabilitySet::from_bits_retain(bit);
        // The kernel refuses an ambient capability that is not both permitted and
        // inheritable; runc skips those too.
        if s.permitted & s.inheritable & bit == 0 {
            continue;
        }
        rustix::thread::configure_capability_in_ambient_set(c, true)
            .map_err(|e| format!("raise ambient capability {n}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_unknown_names_are_errors() {
        assert_eq!(by_name("CAP_SYS_ADMIN"), Some(CapabilitySet::SYS_ADMIN));
        assert_eq!(by_name("cap_chown"), Some(CapabilitySet::CHOWN));
        assert_eq!(by_name("NET_RAW"), Some(CapabilitySet::NET_RAW));
        let e = mask(&["CAP_CHOWN", "CAP_BOGUS"], "process.capabilities.bounding").unwrap_err();
        assert!(e.contains("process.capabilities.bounding[1]") && e.contains("CAP_BOGUS"), "{e}");
    }

    #[test]
    fn the_default_set_has_fourteen_and_no_admin() {
        let d = Sets::default_container();
        assert_eq!(d.bounding.count_ones(), 14);
        assert_eq!(d.bounding & CapabilitySet::SYS_ADMIN.bits(), 0);
        assert_eq!(d.effective, d.bounding);
        assert_eq!(d.ambient, 0);
    }
}
