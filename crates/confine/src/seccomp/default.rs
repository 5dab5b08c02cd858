//! sandfs's default profile, written as an OCI `linux.seccomp` object (the list and
//! the reasons are in the parent module's docs).

use libseccomp::ScmpArch;
use serde_json::{Value, json};

use super::profile::arch_name;

/// Denied with EPERM whatever their arguments.
const DENIED: &[&str] = &[
    // kernel modules, kexec, reboot
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    // large kernel surfaces meant for the host's administrator
    "bpf",
    "perf_event_open",
    "userfaultfd",
    // the keyring is not namespaced
    "keyctl",
    "add_key",
    "request_key",
    // opens inodes by handle, past the container's mounts
    "open_by_handle_at",
    // host-wide state
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    // the clock is not namespaced
    "settimeofday",
    "stime",
    "clock_settime",
    "adjtimex",
    "clock_adjtime",
    // x86 port I/O and vm86
    "iopl",
    "ioperm",
    "vm86",
    "vm86old",
];

/// The personalities a program may switch to (Docker's set): PER_LINUX,
/// PER_LINUX32, UNAME26, PER_LINUX32|UNAME26, and 0xffffffff, which only queries.
const PERSONALITIES: [u64; 5] = [0, 0x0008, 0x20000, 0x20008, 0xffff_ffff];

/// Terminal ioctls that inject input (TIOCSTI) or reach the console (TIOCLINUX).
const IOCTLS: [u64; 2] = [0x5412, 0x541c];

const CLONE_NEWUSER: u64 = 0x1000_0000;

/// The default profile as an OCI `linux.seccomp` JSON object, for a filter whose
/// native arch is `native` (its compat arches are added: x86 and x32 for x86_64, arm
/// for aarch64, s390 for s390x). Printable as the profile a run without a bundle gets.
pub fn default_profile_json(native: ScmpArch) -> Value {
    let eperm = libc::EPERM;
    let arches: &[ScmpArch] = match native {
        ScmpArch::X8664 => &[ScmpArch::X8664, ScmpArch::X86, ScmpArch::X32],
        ScmpArch::Aarch64 => &[ScmpArch::Aarch64, ScmpArch::Arm],
        ScmpArch::S390X => &[ScmpArch::S390X, ScmpArch::S390],
        _ => &[],
    };
    let arches: Vec<&str> = arches.iter().filter_map(|a| arch_name(*a)).collect();
    // clone's flags come second on s390 (its first two arguments are swapped).
    let clone_flags = if matches!(native, ScmpArch::S390X | ScmpArch::S390) { 1 } else { 0 };

    // EPERM when the argument at `index`, masked with `mask`, equals `value`.
    let masked = |name: &str, index: u32, mask: u64, value: u64| {
        json!({
            "names": [name],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": eperm,
            "args": [{ "index": index, "value": mask, "valueTwo": value, "op": "SCMP_CMP_MASKED_EQ" }],
        })
    };

    let mut syscalls = vec![json!({
        "names": DENIED,
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": eperm,
    })];
    // personality: every value outside PERSONALITIES, as aligned blocks (one masked
    // comparison each: libseccomp has one comparison per argument in a rule).
    for (start, size) in complement_blocks(&PERSONALITIES) {
        syscalls.push(masked("personality", 0, !(size - 1), start));
    }
    syscalls.push(json!({
        "names": ["personality"],
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": eperm,
        "args": [{ "index": 0, "value": 0xffff_ffff_u64, "op": "SCMP_CMP_GT" }],
    }));
    // ioctl's request is an unsigned int to the kernel: compare its low 32 bits.
    for request in IOCTLS {
        syscalls.push(masked("ioctl", 1, 0xffff_ffff, request));
    }
    syscalls.push(masked("unshare", 0, CLONE_NEWUSER, CLONE_NEWUSER));
    syscalls.push(masked("clone", clone_flags, CLONE_NEWUSER, CLONE_NEWUSER));
    syscalls.push(json!({
        "names": ["clone3"],
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": libc::ENOSYS,
    }));

    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": arches,
        "syscalls": syscalls,
    })
}

/// The 32-bit values not in `allowed` (sorted), as aligned power-of-two blocks
/// `(start, size)`: `x` is in a block iff `x & !(size - 1) == start`.
fn complement_blocks(allowed: &[u64]) -> Vec<(u64, u64)> {
    let mut blocks = Vec::new();
    let mut next = 0u64; // first value not yet covered or allowed
    for &a in allowed.iter().chain([1u64 << 32].iter()) {
        let mut start = next;
        while start < a {
            // The largest block aligned at `start` that ends before `a`.
            let mut size = if start == 0 { 1u64 << 32 } else { 1u64 << start.trailing_zeros() };
            while start + size > a {
                size >>= 1;
            }
            blocks.push((start, size));
            start += size;
        }
        next = a + 1;
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complement_blocks_cover_exactly_the_others() {
        let blocks = complement_blocks(&PERSONALITIES);
        let denied = |x: u64| blocks.iter().any(|&(s, n)| x & !(n - 1) == s);
        for a in PERSONALITIES {
            assert!(!denied(a), "{a:#x} allowed");
        }
        for x in [1, 7, 9, 0x1234, 0x1ffff, 0x20001, 0x20007, 0x20009, 0x40000] {
            assert!(denied(x), "{x:#x} denied");
        }
        for x in [0x8000_0000, 0xffff_fffe, 0x7fff_ffff, 0x0040_0000] {
            assert!(denied(x), "{x:#x} denied");
        }
        // Blocks are disjoint and, with the allowed values, fill 32 bits.
        let total: u64 = blocks.iter().map(|b| b.1).sum();
        assert_eq!(total + PERSONALITIES.len() as u64, 1 << 32);
    }
}
