//! Resource limits from command-line flags (`--memory 512m`, `--pids-limit 100`,
//! `--cpus 1.5`), as the spec's `linux.resources`.

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

use super::CgroupError;

/// The CFS period the `--cpus` quota is expressed over, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// Parses a byte count with an optional `k`, `m`, `g` or `t` suffix (powers of
/// 1024, either case, an optional trailing `b`): `512m`, `1G`, `4096`.
pub fn parse_memory(value: &str) -> Result<i64, CgroupError> {
    let bad = |reason: &str| CgroupError::Flag {
        flag: "--memory",
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let s = value.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (digits, shift) = match s.as_bytes().last() {
        Some(b'k') => (&s[..s.len() - 1], 10),
        Some(b'm') => (&s[..s.len() - 1], 20),
        Some(b'g') => (&s[..s.len() - 1], 30),
        Some(b't') => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("expected a whole number of bytes with an optional k, m, g or t suffix"));
    }
    let n: i64 = digits.parse().map_err(|_| bad("too large"))?;
    let bytes = n.checked_mul(1i64 << shift).ok_or_else(|| bad("too large"))?;
    if bytes <= 0 {
        return Err(bad("must be more than zero"));
    }
    Ok(bytes)
}

/// Parses a CPU count (`1.5`, `0.25`, `2`) into a CFS quota over
/// [`CPU_PERIOD_US`]: `cpus * 100000` microseconds, at least 1000 (the kernel's
/// minimum quota, 0.01 CPU).
pub fn parse_cpus(value: &str) -> Result<i64, CgroupError> {
    let bad = |reason: &str| CgroupError::Flag {
        flag: "--cpus",
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let s = value.trim();
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) {
        return Err(bad("expected a decimal number of CPUs such as 1.5"));
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > 5 {
        return Err(bad("at most 5 decimals (a microsecond of each 100 ms period)"));
    }
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad("too large"))? };
    let frac_us: i64 = format!("{frac:0<5}").parse().map_err(|_| bad("too large"))?;
    let quota = whole
        .checked_mul(CPU_PERIOD_US as i64)
        .and_then(|q| q.checked_add(frac_us))
        .ok_or_else(|| bad("too large"))?;
    if quota < 1000 {
        return Err(bad("must be at least 0.01"));
    }
    Ok(quota)
}

/// Builds `linux.resources` from the CLI's limit flags; `None` leaves a limit
/// unset. `--memory` sets the memory limit only (swap stays as the host has it),
/// `--pids-limit` must be positive, `--cpus` becomes quota/period over 100 ms.
pub fn resources_from_flags(
    memory: Option<&str>,
    pids_limit: Option<i64>,
    cpus: Option<&str>,
) -> Result<LinuxResources, CgroupError> {
    let oci = |flag: &'static str, value: String| {
        move |e: oci_spec::OciSpecError| CgroupError::Flag { flag, value, reason: e.to_string() }
    };
    let mut res = LinuxResourcesBuilder::default();
    if let Some(m) = memory {
        let limit = parse_memory(m)?;
        let mem =
            LinuxMemoryBuilder::default().limit(limit).build().map_err(oci("--memory", m.to_owned()))?;
        res = res.memory(mem);
    }
    if let Some(n) = pids_limit {
        if n <= 0 {
            return Err(CgroupError::Flag {
                flag: "--pids-limit",
                value: n.to_string(),
                reason: "must be more than zero".to_owned(),
            });
        }
        let pids =
            LinuxPidsBuilder::default().limit(n).build().map_err(oci("--pids-limit", n.to_string()))?;
        res = res.pids(pids);
    }
    if let Some(c) = cpus {
        let quota = parse_cpus(c)?;
        let cpu = LinuxCpuBuilder::default()
            .quota(quota)
            .period(CPU_PERIOD_US)
            .build()
            .map_err(oci("--cpus", c.to_owned()))?;
        res = res.cpu(cpu);
    }
    res.build().map_err(oci("resource flags", String::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_suffixes() {
        assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1G").unwrap(), 1 << 30);
        assert_eq!(parse_memory("64kb").unwrap(), 64 << 10);
        assert_eq!(parse_memory("4096").unwrap(), 4096);
        for bad in ["", "m", "-5m", "1.5g", "0", "12x", "99999999999t"] {
            let e = parse_memory(bad).unwrap_err();
            assert!(e.to_string().starts_with("--memory"), "{bad}: {e}");
        }
    }

    #[test]
    fn cpus_to_quota() {
        assert_eq!(parse_cpus("1.5").unwrap(), 150_000);
        assert_eq!(parse_cpus("2").unwrap(), 200_000);
        assert_eq!(parse_cpus(".25").unwrap(), 25_000);
        assert_eq!(parse_cpus("0.01").unwrap(), 1_000);
        assert_eq!(parse_cpus("1.500000").unwrap(), 150_000);
        for bad in ["", ".", "0", "0.001", "1.000001", "-1", "1e3", "abc"] {
            let e = parse_cpus(bad).unwrap_err();
            assert!(e.to_string().starts_with("--cpus"), "{bad}: {e}");
        }
    }

    #[test]
    fn flags_build_resources() {
        let r = resources_from_flags(Some("512m"), Some(64), Some("1.5")).unwrap();
        assert_eq!(r.memory().unwrap().limit(), Some(512 << 20));
        assert_eq!(r.pids().unwrap().limit(), 64);
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!((cpu.quota(), cpu.period()), (Some(150_000), Some(100_000)));
        let e = resources_from_flags(None, Some(0), None).unwrap_err();
        assert!(e.to_string().starts_with("--pids-limit"), "{e}");
        let none = resources_from_flags(None, None, None).unwrap();
        assert!(none.memory().is_none() && none.cpu().is_none() && none.pids().is_none());
    }
}
