//! Device access rules (`linux.resources.devices`).
//!
//! On v1 the devices controller enforces them: the group starts from deny-all plus
//! [`default_device_rules`], and the spec's rules apply on top, in order (leading
//! deny-all rules, the spec's usual first rule, are the starting point already and
//! are not replayed: replaying one would take the defaults away again).
//!
//! On v2 device rules need an eBPF program, which sandfs does not install. What
//! bounds device access there is the sandbox's construction: it always runs in a
//! user namespace, so it has no CAP_MKNOD over the host and every filesystem it
//! mounts is nodev; the only device nodes it can open are those the runtime puts in
//! its /dev (the defaults and `linux.devices`). So on v2:
//! - an allow rule inside the default set, a mknod-only (`m`) rule, or allow-all
//!   asks for nothing the sandbox lacks: accepted silently;
//! - any other allow rule is a grant, and what grants is the node being present:
//!   accepted with a warning naming the rule (it is not enforced by the cgroup);
//! - a deny rule (other than the leading deny-all) asks to take away access the
//!   cgroup cannot take away: refused with an error naming the rule, so a policy
//!   is never silently weaker than written. Docker's and runc's generated rules are
//!   a leading deny-all plus allows, so ordinary runs are not blocked.
//!
//! A host bind mount of a device directory (`-v /dev:/dev`) keeps the host's
//! device nodes openable on v2; only v1's controller or an eBPF filter stops that.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::CgroupError;

/// One rule in the kernel's v1 syntax, with whether it allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Rule {
    /// `true` for devices.allow, `false` for devices.deny.
    pub allow: bool,
    /// `a`, `c` or `b`.
    pub typ: char,
    /// `None` for `*`.
    pub major: Option<u32>,
    /// `None` for `*`.
    pub minor: Option<u32>,
    /// Some of `r`, `w`, `m`, in that order.
    pub access: String,
}

impl Rule {
    /// The line written to devices.allow or devices.deny.
    pub fn line(&self) -> String {
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_owned(), |n| n.to_string());
        format!("{} {}:{} {}", self.typ, num(self.major), num(self.minor), self.access)
    }

    /// Whether this denies every access to every device.
    fn is_deny_all(&self) -> bool {
        !self.allow && self.typ == 'a' && self.access == "rwm"
    }

    /// Whether this allows every access to every device.
    fn is_allow_all(&self) -> bool {
        self.allow && self.typ == 'a' && self.access == "rwm"
    }

    /// Whether `self` allows no more than `other` does.
    fn within(&self, other: &Rule) -> bool {
        let num_within = |a: Option<u32>, b: Option<u32>| b.is_none() || a == b;
        self.allow
            && other.allow
            && (other.typ == 'a' || other.typ == self.typ)
            && num_within(self.major, other.major)
            && num_within(self.minor, other.minor)
            && self.access.chars().all(|c| other.access.contains(c))
    }
}

/// One `linux.resources.devices` rule: allow or deny `access` (r, w, m) to devices
/// of `typ` with `major`/`minor` (`None`: any). With `typ` `None`, all devices.
pub fn device_rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow);
    r.set_typ(typ);
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.to_owned()));
    r
}

/// The devices every sandbox may use, as runc allows them: mknod of any character
/// or block device (the user namespace forbids it anyway), /dev/null, zero, full,
/// random, urandom, tty, console, ptmx and the pty slaves.
pub fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    let rule = |typ, major, minor, access| device_rule(true, Some(typ), major, minor, access);
    use LinuxDeviceType::{B, C};
    vec![
        rule(C, None, None, "m"),
        rule(B, None, None, "m"),
        rule(C, Some(1), Some(3), "rwm"),
        rule(C, Some(1), Some(5), "rwm"),
        rule(C, Some(1), Some(7), "rwm"),
        rule(C, Some(1), Some(8), "rwm"),
        rule(C, Some(1), Some(9), "rwm"),
        rule(C, Some(5), Some(0), "rwm"),
        rule(C, Some(5), Some(1), "rwm"),
        rule(C, Some(5), Some(2), "rwm"),
        rule(C, Some(136), None, "rwm"),
    ]
}

/// Converts one spec rule, `index` naming it in errors.
pub(super) fn convert(index: usize, r: &LinuxDeviceCgroup) -> Result<Rule, CgroupError> {
    let field = |what: &str| format!("linux.resources.devices[{index}]{what}");
    let typ = match r.typ().unwrap_or_default() {
        LinuxDeviceType::A => 'a',
        LinuxDeviceType::C | LinuxDeviceType::U => 'c',
        LinuxDeviceType::B => 'b',
        LinuxDeviceType::P => {
            return Err(CgroupError::Invalid {
                field: field(".type"),
                reason: "FIFOs (p) are not devices the device cgroup controls".to_owned(),
            });
        }
    };
    let num = |n: Option<i64>, what: &str| match n {
        None | Some(-1) => Ok(None),
        Some(n) => u32::try_from(n).map(Some).map_err(|_| CgroupError::Invalid {
            field: field(what),
            reason: format!("{n} is not a device number or -1 (any)"),
        }),
    };
    let major = num(r.major(), ".major")?;
    let minor = num(r.minor(), ".minor")?;
    let given = r.access().as_deref().unwrap_or("");
    let mut access = String::new();
    for c in ['r', 'w', 'm'] {
        if given.contains(c) {
            access.push(c);
        }
    }
    if given.chars().any(|c| !"rwm".contains(c)) || given.len() != access.len() {
        return Err(CgroupError::Invalid {
            field: field(".access"),
            reason: format!("{given:?} is not a set of r, w and m"),
        });
    }
    if access.is_empty() {
        access.push_str("rwm");
    }
    Ok(Rule { allow: r.allow(), typ, major, minor, access })
}

/// The spec's rules converted, with the leading deny-all ones dropped (the group
/// starts from deny-all), each with its index in the spec.
fn spec_rules(rules: &[LinuxDeviceCgroup]) -> Result<Vec<(usize, Rule)>, CgroupError> {
    let mut out = Vec::with_capacity(rules.len());
    for (i, r) in rules.iter().enumerate() {
        let rule = convert(i, r)?;
        if out.is_empty() && rule.is_deny_all() {
            continue;
        }
        out.push((i, rule));
    }
    Ok(out)
}

/// The v1 rules to write after `a` to devices.deny: the defaults, then the spec's.
pub(super) fn v1_rules(rules: &[LinuxDeviceCgroup]) -> Result<Vec<(String, Rule)>, CgroupError> {
    let mut out = Vec::new();
    for (i, r) in default_device_rules().iter().enumerate() {
        out.push((format!("default device rule {i}"), convert(i, r)?));
    }
    for (i, r) in spec_rules(rules)? {
        out.push((format!("linux.resources.devices[{i}]"), r));
    }
    Ok(out)
}

/// The v2 policy check described in the module documentation: warnings for allow
/// rules beyond the defaults, an error for a deny rule.
pub(super) fn v2_check(rules: &[LinuxDeviceCgroup]) -> Result<Vec<String>, CgroupError> {
    let defaults = default_device_rules()
        .iter()
        .enumerate()
        .map(|(i, r)| convert(i, r))
        .collect::<Result<Vec<_>, _>>()?;
    let mut warnings = Vec::new();
    for (i, r) in spec_rules(rules)? {
        let field = format!("linux.resources.devices[{i}]");
        if !r.allow {
            return Err(CgroupError::Invalid {
                field,
                reason: format!(
                    "deny rule \"{}\" cannot be enforced on cgroup v2 without an eBPF device \
                     filter, which sandfs does not install",
                    r.line()
                ),
            });
        }
        if r.is_allow_all() || r.access == "m" || defaults.iter().any(|d| r.within(d)) {
            continue;
        }
        warnings.push(format!(
            "{field}: allow rule \"{}\" is not enforced on cgroup v2 (no eBPF device filter); \
             the sandbox reaches only the device nodes the runtime puts in its /dev",
            r.line()
        ));
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(allow: bool, typ: LinuxDeviceType, major: i64, minor: i64, access: &str) -> LinuxDeviceCgroup {
        device_rule(allow, Some(typ), Some(major), Some(minor), access)
    }

    fn deny_all() -> LinuxDeviceCgroup {
        device_rule(false, None, None, None, "rwm")
    }

    #[test]
    fn lines() {
        let r = convert(0, &rule(true, LinuxDeviceType::C, 1, -1, "mr")).unwrap();
        assert_eq!(r.line(), "c 1:* rm");
        let r = convert(0, &deny_all()).unwrap();
        assert_eq!(r.line(), "a *:* rwm");
        assert!(r.is_deny_all());
    }

    #[test]
    fn bad_fields_are_named() {
        let e = convert(3, &rule(true, LinuxDeviceType::C, 1, 3, "rx")).unwrap_err();
        assert_eq!(e.field(), Some("linux.resources.devices[3].access"));
        let e = convert(1, &rule(true, LinuxDeviceType::C, -7, 3, "r")).unwrap_err();
        assert_eq!(e.field(), Some("linux.resources.devices[1].major"));
        let e = convert(2, &rule(true, LinuxDeviceType::P, 1, 3, "r")).unwrap_err();
        assert_eq!(e.field(), Some("linux.resources.devices[2].type"));
    }

    #[test]
    fn v1_keeps_defaults_under_a_leading_deny_all() {
        let spec = [deny_all(), rule(true, LinuxDeviceType::C, 10, 200, "rwm")];
        let rules = v1_rules(&spec).unwrap();
        assert_eq!(rules.len(), default_device_rules().len() + 1);
        let (field, last) = rules.last().unwrap();
        assert_eq!(field, "linux.resources.devices[1]");
        assert_eq!(last.line(), "c 10:200 rwm");
    }

    #[test]
    fn v2_policy() {
        // Docker-like: deny all, then defaults: nothing to say.
        let spec = [deny_all(), rule(true, LinuxDeviceType::C, 1, 3, "rw")];
        assert!(v2_check(&spec).unwrap().is_empty());
        // An extra device: accepted with a warning naming it.
        let spec = [deny_all(), rule(true, LinuxDeviceType::C, 10, 200, "rwm")];
        let w = v2_check(&spec).unwrap();
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("linux.resources.devices[1]:"), "{w:?}");
        // A deny rule cannot be honoured: refused.
        let spec = [deny_all(), rule(false, LinuxDeviceType::C, 1, 3, "rwm")];
        let e = v2_check(&spec).unwrap_err();
        assert_eq!(e.field(), Some("linux.resources.devices[1]"));
    }
}
