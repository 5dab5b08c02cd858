//! Seccomp filters: an OCI `linux.seccomp` profile, or sandfs's default profile,
//! compiled to a kernel filter and installed last before exec.
//!
//! # Building and installing
//!
//! Everything that allocates or can fail on the profile happens in the parent, before
//! fork: [`compile`] (a typed [`LinuxSeccomp`]) or [`compile_json`] (the raw
//! `linux.seccomp` JSON, for errors that name the field) or [`default_filter`] resolve
//! names and arches with libseccomp, let it generate the BPF program, and keep that
//! program in a [`Filter`]. [`Filter::load`] is then a single `seccomp(2)` call with a
//! pointer to memory the child inherited: no allocation, no lock, nothing libseccomp
//! does at load time, so it is safe in a child forked from a multithreaded parent.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let compiled = sandfs_confine::seccomp::default_filter()?;
//! for w in &compiled.warnings { eprintln!("seccomp: {w}"); }
//! // ... fork; in the child, after namespaces, mounts, identity and no_new_privs:
//! if let Err(errno) = compiled.filter.load() {
//!     // report errno.raw_os_error() to the parent, _exit
//! #   let _ = errno;
//! }
//! // execve(...)
//! # Ok(()) }
//! ```
//!
//! `load` does not set `no_new_privs`: OCI leaves that to `process.noNewPrivileges`,
//! and the sandbox sets it as its own step. Without it the kernel accepts a filter only
//! from a task with CAP_SYS_ADMIN in its user namespace (else `EACCES`).
//!
//! # OCI profile semantics
//!
//! - `defaultAction`, `defaultErrnoRet` (ERRNO's default errno is EPERM).
//! - `architectures`: every `SCMP_ARCH_*` name libseccomp has; the native arch is
//!   always in the filter. A syscall made through an arch not in the filter kills the
//!   process (libseccomp's "bad arch" action, set to KILL_PROCESS rather than killing
//!   one thread of it).
//! - `flags`: `SECCOMP_FILTER_FLAG_TSYNC`, `_LOG`, `_SPEC_ALLOW` (checked against the
//!   kernel by libseccomp when compiling). `_WAIT_KILLABLE_RECV` only matters with a
//!   notify listener, which sandfs has none of: ignored with a warning.
//! - `syscalls[i]`: `names`, `action` (`SCMP_ACT_KILL` = `KILL_THREAD`,
//!   `KILL_PROCESS`, `TRAP`, `ERRNO`, `TRACE`, `ALLOW`, `LOG`), `errnoRet` (ERRNO's
//!   errno and TRACE's message, EPERM when absent), `args` (`index` < 6, `value`,
//!   `valueTwo`, `op` `SCMP_CMP_NE/LT/LE/EQ/GE/GT/MASKED_EQ`; for `MASKED_EQ`, `value`
//!   is the mask and `valueTwo` the value the masked argument must equal).
//! - `SCMP_ACT_NOTIFY` is refused: there is no listener to answer the kernel.
//! - A syscall name libseccomp does not know is skipped with a warning (other runtimes
//!   ignore them too, so that one profile serves several kernels); an unknown action,
//!   operator, arch or flag is an error naming the field, e.g.
//!   `linux.seccomp.syscalls[3].action`.
//! - A rule whose action is the default action adds nothing and is skipped.
//! - libseccomp allows one comparison per argument in a rule. A rule with several
//!   comparisons on the same argument is split, as other runtimes do, into one rule
//!   per comparison (their OR, not their AND), with a warning.
//!
//! # The default profile
//!
//! For runs without a bundle: default ALLOW, and a deny list of what a container never
//! needs. Capabilities in the sandbox's user namespace already stop most of these on
//! host resources; the filter keeps the kernel code behind them out of reach too
//! (many past container escapes went through such code).
//!
//! Denied with EPERM, whatever the arguments:
//! - kernel modules and kexec: `init_module`, `finit_module`, `delete_module`,
//!   `kexec_load`, `kexec_file_load`; `reboot`;
//! - large kernel attack surface meant for the host's administrator: `bpf`,
//!   `perf_event_open`, `userfaultfd` (also a tool for widening race windows);
//! - the kernel keyring, which is not namespaced: `keyctl`, `add_key`, `request_key`;
//! - `open_by_handle_at` (opens any inode of a filesystem by handle, past the mount
//!   the container sees; `name_to_handle_at` only makes handles and stays allowed);
//! - host-wide state: `swapon`, `swapoff`, `acct`, `quotactl`, `quotactl_fd`,
//!   `lookup_dcookie`;
//! - the clock, which is not namespaced: `settimeofday`, `stime`, `clock_settime`,
//!   and `adjtimex` / `clock_adjtime` entirely: they would only be harmless with
//!   `modes == 0`, which lives in a struct the filter cannot read, so read-only
//!   callers (ntp status tools) get EPERM too;
//! - x86 port I/O and vm86: `iopl`, `ioperm`, `vm86`, `vm86old`.
//!
//! Denied with EPERM for some arguments only:
//! - `personality` unless its argument is one of 0 (PER_LINUX), 8 (PER_LINUX32),
//!   0x20000 (UNAME26), 0x20008 (PER_LINUX32|UNAME26) or 0xffffffff (query), the set
//!   Docker allows; other personalities turn on legacy behaviour such as
//!   READ_IMPLIES_EXEC or ADDR_NO_RANDOMIZE;
//! - `ioctl` with request TIOCSTI (push input into the terminal, so into the shell
//!   that started the sandbox) or TIOCLINUX; the request is compared on its low 32
//!   bits, as the kernel reads it, so high garbage bits do not slip past;
//! - `unshare` and `clone` with CLONE_NEWUSER: a nested user namespace would give the
//!   program a full set of capabilities over new namespaces, the usual first step of
//!   kernel exploits (`clone`'s flags are its 2nd argument on s390, its 1st elsewhere);
//! - `clone3` returns ENOSYS whatever its arguments: its flags are in memory the
//!   filter cannot read, and ENOSYS makes libc fall back to `clone`, which is checked.
//!
//! Allowed on purpose: `ptrace`, `process_vm_*` (confined by the user namespace and
//! Yama), `pivot_root`, `mount`, the new mount API (`fsopen`, `fsmount`, `open_tree`,
//! `move_mount`, `mount_setattr`; capabilities guard them), `setns`, io_uring.
//!
//! Architectures: on x86_64 the filter also covers x86 (int 0x80) and x32, so each
//! deny rule applies through those ABIs too (libseccomp adds each arch's numbers); an
//! aarch64 filter covers 32-bit arm the same way. A process cannot switch to an arch
//! outside the filter without being killed.

mod default;
mod profile;

use std::io::{Read, Seek};

use libseccomp::{ScmpAction, ScmpArch, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::LinuxSeccomp;

use profile::{Profile, Rule};

pub use default::default_profile_json;

/// The most instructions the kernel accepts in one filter (BPF_MAXINSNS).
const MAX_INSTRUCTIONS: usize = 4096;

/// Why a profile could not be compiled into a filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A field of the profile has a value sandfs does not accept.
    #[error("{field}: {reason}")]
    Field {
        /// The field, as a path from the spec root (`linux.seccomp.syscalls[3].action`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// libseccomp refused something the profile asked for.
    #[error("{field}: libseccomp: {source}")]
    Libseccomp {
        /// The field being applied.
        field: String,
        /// libseccomp's error.
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// The generated program is longer than the kernel accepts.
    #[error("the seccomp filter has {0} instructions, more than the kernel's 4096")]
    TooLong(usize),
    /// Reading back the program libseccomp generated failed.
    #[error("exporting the seccomp filter: {0}")]
    Export(#[from] std::io::Error),
}

/// A compiled filter and what was skipped while compiling it.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The filter, ready to [`Filter::load`].
    pub filter: Filter,
    /// Things the profile asked for that were skipped (unknown syscall names, ...),
    /// each naming its field: worth logging, not worth failing the run.
    pub warnings: Vec<String>,
}

/// A seccomp BPF program and the flags to install it with; built before fork,
/// installed in the child by [`Filter::load`].
#[derive(Clone)]
pub struct Filter {
    program: Box<[libc::sock_filter]>,
    flags: libc::c_ulong,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("instructions", &self.program.len())
            .field("flags", &self.flags)
            .finish()
    }
}

/// A filter as it is stored (a container's state directory) and passed (the
/// sandbox's parameters): each instruction packed as code << 48 | jt << 40 |
/// jf << 32 | k, so a profile is compiled once per container, not per process.
#[derive(serde::Serialize, serde::Deserialize)]
struct Packed {
    program: Vec<u64>,
    flags: u64,
}

impl serde::Serialize for Filter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let program = self
            .program
            .iter()
            .map(|i| u64::from(i.code) << 48 | u64::from(i.jt) << 40 | u64::from(i.jf) << 32 | u64::from(i.k))
            .collect();
        // c_ulong is u64 here, u32 on 32-bit targets.
        #[allow(clippy::unnecessary_cast)]
        let flags = self.flags as u64;
        Packed { program, flags }.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Filter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Filter, D::Error> {
        let p = Packed::deserialize(d)?;
        if p.program.is_empty() || p.program.len() > usize::from(u16::MAX) {
            return Err(serde::de::Error::custom("a seccomp program of 1..=65535 instructions"));
        }
        let program = p
            .program
            .iter()
            .map(|&w| libc::sock_filter {
                code: (w >> 48) as u16,
                jt: (w >> 40) as u8,
                jf: (w >> 32) as u8,
                k: w as u32,
            })
            .collect();
        // c_ulong is u64 here, u32 on 32-bit targets.
        #[allow(clippy::unnecessary_cast)]
        let flags = p.flags as libc::c_ulong;
        Ok(Filter { program, flags })
    }
}

impl Filter {
    /// Installs the filter on the calling thread (all threads with the TSYNC flag):
    /// one `seccomp(2)` call, no allocation, meant for a forked child right before
    /// exec. Needs `no_new_privs` set or CAP_SYS_ADMIN in the user namespace
    /// (`EACCES` otherwise); a TSYNC failure to synchronise a thread is `ESRCH`.
    pub fn load(&self) -> Result<(), rustix::io::Errno> {
        let prog = libc::sock_fprog {
            // The length was checked against MAX_INSTRUCTIONS when compiling.
            len: self.program.len() as libc::c_ushort,
            filter: self.program.as_ptr().cast_mut(),
        };
        // SAFETY: seccomp(SECCOMP_SET_MODE_FILTER) reads `prog` and the `len`
        // instructions it points to, both alive for the call; the kernel copies them.
        let rc = unsafe {
            libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, self.flags, &raw const prog)
        };
        match rc {
            0 => Ok(()),
            // With TSYNC the kernel returns the id of a thread it could not synchronise.
            rc if rc > 0 => Err(rustix::io::Errno::SRCH),
            _ => Err(rustix::io::Errno::from_io_error(&std::io::Error::last_os_error())
                .unwrap_or(rustix::io::Errno::INVAL)),
        }
    }

    /// Whether two filters are the same program with the same flags.
    pub fn same_as(&self, other: &Filter) -> bool {
        self.flags == other.flags
            && self.program.len() == other.program.len()
            && self
                .program
                .iter()
                .zip(other.program.iter())
                .all(|(a, b)| (a.code, a.jt, a.jf, a.k) == (b.code, b.jt, b.jf, b.k))
    }

    /// The number of BPF instructions in the program.
    pub fn instructions(&self) -> usize {
        self.program.len()
    }
}

/// Compiles an OCI `linux.seccomp` profile (already parsed by oci-spec).
pub fn compile(seccomp: &LinuxSeccomp) -> Result<Compiled, SeccompError> {
    let json = serde_json::to_value(seccomp).map_err(|e| SeccompError::Field {
        field: "linux.seccomp".into(),
        reason: format!("cannot be represented as JSON: {e}"),
    })?;
    compile_json(&json)
}

/// Checks the raw JSON of a spec's `linux.seccomp` object as [`compile_json`] does
/// (an unknown action, operator, arch or flag is an error naming its field),
/// without compiling it.
pub fn check_json(seccomp: &serde_json::Value) -> Result<(), SeccompError> {
    profile::Profile::from_json(seccomp, "linux.seccomp", &mut Vec::new()).map(|_| ())
}

/// Compiles the raw JSON of a spec's `linux.seccomp` object. Unlike parsing the spec
/// with oci-spec first, an unknown action, operator, arch or flag here is an error
/// that names its field.
pub fn compile_json(seccomp: &serde_json::Value) -> Result<Compiled, SeccompError> {
    let mut warnings = Vec::new();
    let profile = Profile::from_json(seccomp, "linux.seccomp", &mut warnings)?;
    build(&profile, warnings)
}

/// Compiles sandfs's default profile (see the module docs) for the native arch and
/// its compat arches.
pub fn default_filter() -> Result<Compiled, SeccompError> {
    compile_json(&default_profile())
}

/// sandfs's default profile for this machine's arch, as an OCI `linux.seccomp`
/// object (what `sandfs spec` writes into a starter bundle).
pub fn default_profile() -> serde_json::Value {
    default_profile_json(ScmpArch::native())
}

/// Turns a checked profile into a BPF program with libseccomp.
fn build(profile: &Profile, mut warnings: Vec<String>) -> Result<Compiled, SeccompError> {
    let lib = |field: &str| {
        let field = field.to_owned();
        move |source| SeccompError::Libseccomp { field, source }
    };
    let mut ctx = ScmpFilterContext::new(profile.default_action).map_err(lib(&profile.default_field))?;
    let top = &profile.field;
    ctx.set_act_badarch(ScmpAction::KillProcess).map_err(lib(top))?;
    // A binary tree over syscall numbers: a few hundred rules cost a few comparisons.
    ctx.set_ctl_optimize(2).map_err(lib(top))?;
    for (arch, field) in &profile.arches {
        if !ctx.is_arch_present(*arch).map_err(lib(field))? {
            ctx.add_arch(*arch).map_err(lib(field))?;
        }
    }
    let mut flags: libc::c_ulong = 0;
    for (flag, field) in &profile.flags {
        match *flag {
            libc::SECCOMP_FILTER_FLAG_TSYNC => ctx.set_ctl_tsync(true),
            libc::SECCOMP_FILTER_FLAG_LOG => ctx.set_ctl_log(true),
            _ => ctx.set_ctl_ssb(true),
        }
        .map_err(lib(field))?;
        flags |= flag;
    }
    for rule in &profile.rules {
        add_rule(&mut ctx, profile.default_action, rule, &mut warnings)?;
    }
    let program = export(&ctx)?;
    Ok(Compiled { filter: Filter { program, flags }, warnings })
}

/// Adds one OCI rule: each of its names, with its comparisons.
fn add_rule(
    ctx: &mut ScmpFilterContext,
    default: ScmpAction,
    rule: &Rule,
    warnings: &mut Vec<String>,
) -> Result<(), SeccompError> {
    if rule.action == default {
        return Ok(()); // libseccomp refuses it; the default already does it
    }
    for (i, name) in rule.names.iter().enumerate() {
        let field = format!("{}.names[{i}]", rule.field);
        let Ok(syscall) = ScmpSyscall::from_name(name) else {
            warnings.push(format!("{field}: syscall {name:?} unknown to libseccomp, skipped"));
            continue;
        };
        let result = if rule.args.is_empty() {
            ctx.add_rule(rule.action, syscall).map(drop)
        } else if rule.alternatives {
            rule.args.iter().try_for_each(|c| {
                ctx.add_rule_conditional(rule.action, syscall, std::slice::from_ref(c)).map(drop)
            })
        } else {
            ctx.add_rule_conditional(rule.action, syscall, &rule.args).map(drop)
        };
        result.map_err(|source| SeccompError::Libseccomp { field, source })?;
    }
    Ok(())
}

/// Has libseccomp generate the program and reads it back.
fn export(ctx: &ScmpFilterContext) -> Result<Box<[libc::sock_filter]>, SeccompError> {
    let fd = rustix::fs::memfd_create("sandfs-seccomp", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(std::io::Error::from)?;
    ctx.export_bpf(&fd)
        .map_err(|source| SeccompError::Libseccomp { field: "linux.seccomp".into(), source })?;
    let mut file = std::fs::File::from(fd);
    file.rewind()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    const INSN: usize = size_of::<libc::sock_filter>();
    if bytes.len() % INSN != 0 || bytes.is_empty() {
        return Err(SeccompError::Export(std::io::Error::other(format!(
            "libseccomp wrote {} bytes, not whole instructions",
            bytes.len()
        ))));
    }
    let program: Box<[libc::sock_filter]> = bytes
        .chunks_exact(INSN)
        .map(|b| libc::sock_filter {
            code: u16::from_ne_bytes([b[0], b[1]]),
            jt: b[2],
            jf: b[3],
            k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        })
        .collect();
    if program.len() > MAX_INSTRUCTIONS {
        return Err(SeccompError::TooLong(program.len()));
    }
    Ok(program)
}
