//! `linux.resources` as cgroup file writes, for v1 and v2, checked before any is
//! written.

use std::io;
use std::path::Path;

use oci_spec::runtime::LinuxResources;

use super::{CgroupError, devices, read_trim, write_file};

/// One value for one cgroup file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Setting {
    /// The spec field it comes from.
    pub field: String,
    /// v1: the hierarchy to write in; v2: the controller to enable (`None` for
    /// core files).
    pub controller: Option<String>,
    /// The file in the cgroup directory.
    pub file: String,
    /// What to write.
    pub value: String,
    /// A missing file means this kernel lacks the feature: warn instead of fail.
    pub optional: bool,
    /// A write that may be refused, repeated later (v1 memsw before the limit).
    pub tolerant: bool,
}

impl Setting {
    fn new(field: &str, controller: &str, file: &str, value: impl ToString) -> Setting {
        Setting {
            field: field.to_owned(),
            controller: Some(controller.to_owned()),
            file: file.to_owned(),
            value: value.to_string(),
            optional: false,
            tolerant: false,
        }
    }

    fn optional(mut self) -> Setting {
        self.optional = true;
        self
    }

    /// Writes the value into `dir`.
    pub fn write(&self, dir: &Path, warnings: &mut Vec<String>) -> Result<(), CgroupError> {
        let path = dir.join(&self.file);
        match write_file(&path, &self.value) {
            Ok(()) => Ok(()),
            Err(_) if self.tolerant => Ok(()),
            Err(e) if self.optional && e.kind() == io::ErrorKind::NotFound => {
                warnings.push(format!("{}: not applied: this kernel has no {}", self.field, self.file));
                Ok(())
            }
            Err(source) => {
                Err(CgroupError::Write { field: self.field.clone(), path, value: self.value.clone(), source })
            }
        }
    }
}

const MEM: &str = "linux.resources.memory";
const CPU: &str = "linux.resources.cpu";

fn invalid(field: &str, reason: impl Into<String>) -> CgroupError {
    CgroupError::Invalid { field: field.to_owned(), reason: reason.into() }
}

/// A byte limit: `None` unset (absent or 0), `Some(None)` unlimited (-1).
fn bytes(field: &str, v: Option<i64>) -> Result<Option<Option<i64>>, CgroupError> {
    match v {
        None | Some(0) => Ok(None),
        Some(-1) => Ok(Some(None)),
        Some(n) if n > 0 => Ok(Some(Some(n))),
        Some(n) => Err(invalid(field, format!("{n} is neither a byte count nor -1"))),
    }
}

/// The checked memory values: limit, reservation, memory+swap.
struct Memory {
    limit: Option<Option<i64>>,
    reservation: Option<Option<i64>>,
    swap: Option<Option<i64>>,
}

fn memory(res: &LinuxResources, warnings: &mut Vec<String>) -> Result<Option<Memory>, CgroupError> {
    let Some(m) = res.memory() else {
        return Ok(None);
    };
    let limit = bytes(&format!("{MEM}.limit"), m.limit())?;
    let reservation = bytes(&format!("{MEM}.reservation"), m.reservation())?;
    let swap_field = format!("{MEM}.swap");
    let swap = bytes(&swap_field, m.swap())?;
    if let Some(Some(s)) = swap {
        match limit {
            Some(Some(l)) if s >= l => {}
            Some(Some(_)) => {
                return Err(invalid(
                    &swap_field,
                    "must be at least linux.resources.memory.limit (it counts memory plus swap)",
                ));
            }
            _ => {
                return Err(invalid(&swap_field, "a memory+swap limit needs linux.resources.memory.limit"));
            }
        }
    }
    #[allow(deprecated)]
    let kernel = m.kernel();
    if kernel.is_some() {
        warnings.push(format!("{MEM}.kernel: ignored (kernel memory limits are obsolete)"));
    }
    if m.kernel_tcp().is_some() {
        warnings.push(format!("{MEM}.kernelTCP: ignored (not supported by sandfs)"));
    }
    if m.use_hierarchy() == Some(false) {
        warnings.push(format!("{MEM}.useHierarchy: ignored (cgroups are always hierarchical)"));
    }
    if m.check_before_update().is_some() {
        warnings.push(format!("{MEM}.checkBeforeUpdate: ignored"));
    }
    Ok(Some(Memory { limit, reservation, swap }))
}

/// The checked CPU values.
struct Cpu {
    shares: Option<u64>,
    /// `Some(None)`: unlimited.
    quota: Option<Option<i64>>,
    period: Option<u64>,
    burst: Option<u64>,
    idle: Option<i64>,
    cpus: Option<String>,
    mems: Option<String>,
}

fn cpu_list(field: &str, v: Option<&String>) -> Result<Option<String>, CgroupError> {
    match v.map(|s| s.trim()) {
        None | Some("") => Ok(None),
        Some(s) if s.bytes().all(|b| b.is_ascii_digit() || b == b',' || b == b'-') => Ok(Some(s.to_owned())),
        Some(s) => Err(invalid(field, format!("{s:?} is not a list such as 0-3,6"))),
    }
}

fn cpu(res: &LinuxResources) -> Result<Option<Cpu>, CgroupError> {
    let Some(c) = res.cpu() else {
        return Ok(None);
    };
    let shares = match c.shares() {
        None | Some(0) => None,
        Some(s @ 2..=262_144) => Some(s),
        Some(s) => {
            return Err(invalid(&format!("{CPU}.shares"), format!("{s} is outside 2..=262144")));
        }
    };
    let quota = match c.quota() {
        None | Some(0) => None,
        Some(q) if q < 0 => {
            if q != -1 {
                return Err(invalid(&format!("{CPU}.quota"), format!("{q} is neither microseconds nor -1")));
            }
            Some(None)
        }
        Some(q @ 1000..) => Some(Some(q)),
        Some(q) => {
            return Err(invalid(
                &format!("{CPU}.quota"),
                format!("{q} µs is below the kernel's minimum of 1000"),
            ));
        }
    };
    let period = match c.period() {
        None | Some(0) => None,
        Some(p @ 1000..=1_000_000) => Some(p),
        Some(p) => {
            return Err(invalid(&format!("{CPU}.period"), format!("{p} µs is outside 1000..=1000000")));
        }
    };
    Ok(Some(Cpu {
        shares,
        quota,
        period,
        burst: c.burst(),
        idle: c.idle(),
        cpus: cpu_list(&format!("{CPU}.cpus"), c.cpus().as_ref())?,
        mems: cpu_list(&format!("{CPU}.mems"), c.mems().as_ref())?,
    }))
}

/// `pids.max`'s value: a positive limit, else unlimited.
fn pids_max(res: &LinuxResources) -> Option<String> {
    res.pids().map(|p| match p.limit() {
        n if n > 0 => n.to_string(),
        _ => "max".to_owned(),
    })
}

/// Warnings for the parts sandfs does not apply on either version.
fn unapplied(res: &LinuxResources, warnings: &mut Vec<String>) {
    let r = "linux.resources";
    // Engines send `blockIO: {weight: 0}` for "not set" (docker).
    let asked = |b: &oci_spec::runtime::LinuxBlockIo| {
        b.weight().is_some_and(|w| w > 0)
            || b.leaf_weight().is_some_and(|w| w > 0)
            || [
                b.throttle_read_bps_device(),
                b.throttle_write_bps_device(),
                b.throttle_read_iops_device(),
                b.throttle_write_iops_device(),
            ]
            .iter()
            .any(|d| d.as_ref().is_some_and(|d| !d.is_empty()))
            || b.weight_device().as_ref().is_some_and(|d| !d.is_empty())
    };
    if res.block_io().as_ref().is_some_and(asked) {
        warnings.push(format!("{r}.blockIO: not applied (not supported by sandfs)"));
    }
    if res.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
        warnings.push(format!("{r}.hugepageLimits: not applied (not supported by sandfs)"));
    }
    if res.network().is_some() {
        warnings.push(format!("{r}.network: not applied (not supported by sandfs)"));
    }
    if res.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
        warnings.push(format!("{r}.rdma: not applied (not supported by sandfs)"));
    }
}

/// The v1 writes, in order.
pub(super) fn v1(res: &LinuxResources, warnings: &mut Vec<String>) -> Result<Vec<Setting>, CgroupError> {
    let mut out = Vec::new();
    if res.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(invalid(
            "linux.resources.unified",
            "cgroup v2 settings cannot be applied on a v1/hybrid host",
        ));
    }
    unapplied(res, warnings);
    if let Some(m) = memory(res, warnings)? {
        let v1 = |v: Option<i64>| v.unwrap_or(-1);
        let swap = m.swap.map(|s| {
            Setting::new(&format!("{MEM}.swap"), "memory", "memory.memsw.limit_in_bytes", v1(s)).optional()
        });
        if let Some(s) = &swap {
            // Raising both: memsw must go first (it may not be below the limit).
            // Lowering: this write is refused and the one after the limit counts.
            out.push(Setting { tolerant: true, ..s.clone() });
        }
        if let Some(l) = m.limit {
            out.push(Setting::new(&format!("{MEM}.limit"), "memory", "memory.limit_in_bytes", v1(l)));
        }
        out.extend(swap);
        if let Some(r) = m.reservation {
            out.push(Setting::new(
                &format!("{MEM}.reservation"),
                "memory",
                "memory.soft_limit_in_bytes",
                v1(r),
            ));
        }
        if let Some(mem) = res.memory() {
            if let Some(s) = mem.swappiness() {
                if s > 100 {
                    return Err(invalid(&format!("{MEM}.swappiness"), format!("{s} is above 100")));
                }
                out.push(Setting::new(&format!("{MEM}.swappiness"), "memory", "memory.swappiness", s));
            }
            if mem.disable_oom_killer() == Some(true) {
                out.push(Setting::new(&format!("{MEM}.disableOOMKiller"), "memory", "memory.oom_control", 1));
            }
        }
    }
    if let Some(max) = pids_max(res) {
        out.push(Setting::new("linux.resources.pids.limit", "pids", "pids.max", max));
    }
    if let Some(c) = cpu(res)? {
        if let Some(s) = c.shares {
            out.push(Setting::new(&format!("{CPU}.shares"), "cpu", "cpu.shares", s));
        }
        if let Some(p) = c.period {
            out.push(Setting::new(&format!("{CPU}.period"), "cpu", "cpu.cfs_period_us", p));
        }
        if let Some(q) = c.quota {
            out.push(Setting::new(&format!("{CPU}.quota"), "cpu", "cpu.cfs_quota_us", q.unwrap_or(-1)));
        }
        if let Some(b) = c.burst {
            out.push(Setting::new(&format!("{CPU}.burst"), "cpu", "cpu.cfs_burst_us", b).optional());
        }
        if let Some(i) = c.idle {
            out.push(Setting::new(&format!("{CPU}.idle"), "cpu", "cpu.idle", i).optional());
        }
        if let Some(cpu) = res.cpu() {
            if let Some(p) = cpu.realtime_period() {
                out.push(
                    Setting::new(&format!("{CPU}.realtimePeriod"), "cpu", "cpu.rt_period_us", p).optional(),
                );
            }
            if let Some(r) = cpu.realtime_runtime() {
                out.push(
                    Setting::new(&format!("{CPU}.realtimeRuntime"), "cpu", "cpu.rt_runtime_us", r).optional(),
                );
            }
        }
        if let Some(s) = c.cpus {
            out.push(Setting::new(&format!("{CPU}.cpus"), "cpuset", "cpuset.cpus", s));
        }
        if let Some(s) = c.mems {
            out.push(Setting::new(&format!("{CPU}.mems"), "cpuset", "cpuset.mems", s));
        }
    }
    if let Some(rules) = res.devices() {
        out.push(Setting::new("linux.resources.devices", "devices", "devices.deny", "a"));
        for (field, rule) in devices::v1_rules(rules)? {
            let file = if rule.allow { "devices.allow" } else { "devices.deny" };
            out.push(Setting::new(&field, "devices", file, rule.line()));
        }
    }
    Ok(out)
}

/// cgroup v1 cpu.shares as v2 cpu.weight: 2..=262144 onto 1..=10000.
pub(super) fn shares_to_weight(shares: u64) -> u64 {
    1 + (shares.saturating_sub(2) * 9999) / 262_142
}

/// The v2 writes, in order.
pub(super) fn v2(res: &LinuxResources, warnings: &mut Vec<String>) -> Result<Vec<Setting>, CgroupError> {
    let mut out = Vec::new();
    unapplied(res, warnings);
    let max = |v: Option<i64>| v.map_or_else(|| "max".to_owned(), |n| n.to_string());
    if let Some(m) = memory(res, warnings)? {
        if let Some(l) = m.limit {
            out.push(Setting::new(&format!("{MEM}.limit"), "memory", "memory.max", max(l)));
        }
        if let Some(s) = m.swap {
            // v2 limits swap alone; the spec gives memory plus swap.
            let swap_only = s.map(|s| s - m.limit.flatten().unwrap_or(0));
            out.push(
                Setting::new(&format!("{MEM}.swap"), "memory", "memory.swap.max", max(swap_only)).optional(),
            );
        }
        if let Some(r) = m.reservation {
            out.push(Setting::new(&format!("{MEM}.reservation"), "memory", "memory.low", max(r)));
        }
        if let Some(mem) = res.memory() {
            if mem.swappiness().is_some() {
                warnings.push(format!("{MEM}.swappiness: not applied (no such setting on cgroup v2)"));
            }
            if mem.disable_oom_killer() == Some(true) {
                warnings.push(format!("{MEM}.disableOOMKiller: not applied (no such setting on cgroup v2)"));
            }
        }
    }
    if let Some(m) = pids_max(res) {
        out.push(Setting::new("linux.resources.pids.limit", "pids", "pids.max", m));
    }
    if let Some(c) = cpu(res)? {
        if let Some(s) = c.shares {
            out.push(Setting::new(&format!("{CPU}.shares"), "cpu", "cpu.weight", shares_to_weight(s)));
        }
        if c.quota.is_some() || c.period.is_some() {
            let field = if c.quota.is_some() { "quota" } else { "period" };
            let value = format!("{} {}", max(c.quota.flatten()), c.period.unwrap_or(super::CPU_PERIOD_US));
            out.push(Setting::new(&format!("{CPU}.{field}"), "cpu", "cpu.max", value));
        }
        if let Some(b) = c.burst {
            out.push(Setting::new(&format!("{CPU}.burst"), "cpu", "cpu.max.burst", b).optional());
        }
        if let Some(i) = c.idle {
            out.push(Setting::new(&format!("{CPU}.idle"), "cpu", "cpu.idle", i).optional());
        }
        if let Some(cpu) = res.cpu()
            && (cpu.realtime_period().is_some() || cpu.realtime_runtime().is_some())
        {
            warnings.push(format!(
                "{CPU}.realtimeRuntime/realtimePeriod: not applied (no such setting on cgroup v2)"
            ));
        }
        if let Some(s) = c.cpus {
            out.push(Setting::new(&format!("{CPU}.cpus"), "cpuset", "cpuset.cpus", s));
        }
        if let Some(s) = c.mems {
            out.push(Setting::new(&format!("{CPU}.mems"), "cpuset", "cpuset.mems", s));
        }
    }
    if let Some(rules) = res.devices() {
        warnings.extend(devices::v2_check(rules)?);
    }
    if let Some(unified) = res.unified() {
        let mut keys: Vec<_> = unified.iter().collect();
        keys.sort();
        for (key, value) in keys {
            let field = format!("linux.resources.unified.{key}");
            let Some((prefix, _)) = key.split_once('.') else {
                return Err(invalid(&field, "not a cgroup interface file name"));
            };
            if key.contains('/') || prefix.is_empty() {
                return Err(invalid(&field, "not a cgroup interface file name"));
            }
            out.push(Setting {
                controller: (prefix != "cgroup").then(|| prefix.to_owned()),
                ..Setting::new(&field, prefix, key, value)
            });
        }
    }
    Ok(out)
}

/// Enables in every ancestor's `cgroup.subtree_control`, from the mount down to
/// the leaf's parent, the controllers the settings need.
pub(super) fn enable_v2(mount: &Path, leaf: &Path, settings: &[Setting]) -> Result<(), CgroupError> {
    let mut ancestors = vec![mount.to_path_buf()];
    if let Some(rel) = leaf.parent().and_then(|p| p.strip_prefix(mount).ok()) {
        let mut cur = mount.to_path_buf();
        for c in rel.components() {
            cur.push(c);
            ancestors.push(cur.clone());
        }
    }
    let mut done: Vec<&str> = Vec::new();
    for s in settings {
        let Some(ctl) = s.controller.as_deref() else {
            continue;
        };
        if done.contains(&ctl) {
            continue;
        }
        done.push(ctl);
        for dir in &ancestors {
            let listed = |file: &str| -> Result<bool, CgroupError> {
                Ok(read_trim(&dir.join(file))?.split_whitespace().any(|c| c == ctl))
            };
            if listed("cgroup.subtree_control")? {
                continue;
            }
            if !listed("cgroup.controllers")? {
                return Err(invalid(
                    &s.field,
                    format!(
                        "the {ctl} controller is not available in {} (not enabled above it, \
                         or not delegated)",
                        dir.display()
                    ),
                ));
            }
            let path = dir.join("cgroup.subtree_control");
            match write_file(&path, &format!("+{ctl}")) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {
                    return Err(invalid(
                        &s.field,
                        format!(
                            "cannot enable the {ctl} controller in {}: it holds processes \
                             itself (cgroup v2 allows controllers only over cgroups without \
                             processes of their own); run sandfs from a leaf cgroup and give \
                             an absolute cgroupsPath beside it",
                            dir.display()
                        ),
                    ));
                }
                Err(source) => {
                    return Err(CgroupError::Write {
                        field: s.field.clone(),
                        path,
                        value: format!("+{ctl}"),
                        source,
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder};

    use super::*;

    fn files(list: &[Setting]) -> Vec<(String, String)> {
        list.iter().map(|s| (s.file.clone(), s.value.clone())).collect()
    }

    #[test]
    fn weight_conversion() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn memory_and_cpu_both_versions() {
        let res = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(64i64 << 20).swap(96i64 << 20).build().unwrap())
            .cpu(
                LinuxCpuBuilder::default()
                    .quota(50_000i64)
                    .period(200_000u64)
                    .shares(1024u64)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let mut w = Vec::new();
        let v2 = files(&v2(&res, &mut w).unwrap());
        assert!(v2.contains(&("memory.max".into(), (64u64 << 20).to_string())));
        assert!(v2.contains(&("memory.swap.max".into(), (32u64 << 20).to_string())));
        assert!(v2.contains(&("cpu.max".into(), "50000 200000".into())));
        assert!(v2.contains(&("cpu.weight".into(), "39".into())));
        let v1 = files(&v1(&res, &mut w).unwrap());
        assert_eq!(v1[0].0, "memory.memsw.limit_in_bytes");
        assert_eq!(v1[1], ("memory.limit_in_bytes".into(), (64u64 << 20).to_string()));
        assert!(v1.contains(&("cpu.cfs_quota_us".into(), "50000".into())));
        assert!(v1.contains(&("cpu.shares".into(), "1024".into())));
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn bad_values_name_fields() {
        let cases = [
            (
                LinuxResourcesBuilder::default()
                    .memory(LinuxMemoryBuilder::default().limit(-5i64).build().unwrap()),
                "linux.resources.memory.limit",
            ),
            (
                LinuxResourcesBuilder::default()
                    .memory(LinuxMemoryBuilder::default().limit(10i64).swap(5i64).build().unwrap()),
                "linux.resources.memory.swap",
            ),
            (
                LinuxResourcesBuilder::default()
                    .cpu(LinuxCpuBuilder::default().shares(1u64).build().unwrap()),
                "linux.resources.cpu.shares",
            ),
            (
                LinuxResourcesBuilder::default()
                    .cpu(LinuxCpuBuilder::default().quota(10i64).build().unwrap()),
                "linux.resources.cpu.quota",
            ),
            (
                LinuxResourcesBuilder::default()
                    .cpu(LinuxCpuBuilder::default().period(5u64).build().unwrap()),
                "linux.resources.cpu.period",
            ),
            (
                LinuxResourcesBuilder::default()
                    .cpu(LinuxCpuBuilder::default().cpus("zero").build().unwrap()),
                "linux.resources.cpu.cpus",
            ),
        ];
        for (b, field) in cases {
            let res = b.build().unwrap();
            let mut w = Vec::new();
            assert_eq!(v1(&res, &mut w).unwrap_err().field(), Some(field));
            assert_eq!(v2(&res, &mut w).unwrap_err().field(), Some(field));
        }
    }
}
