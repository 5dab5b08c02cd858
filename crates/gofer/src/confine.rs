//! The gofer's confinement, applied once its sources are open and before it serves
//! anything: a private mount namespace holding only the mount sources (entered with
//! pivot_root), capabilities reduced to those file serving needs, no_new_privs, a
//! landlock ruleset limited to the sources where the kernel supports it, and a
//! seccomp allowlist. Each step reports what it did; a step the host cannot do is
//! reported, not fatal, except where the caller requires it.

use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::io::Errno;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One mount source to keep reachable.
pub struct Keep<'a> {
    /// The source as the host names it (bind-mounted into the new root).
    pub path: &'a Path,
    /// The descriptor the server already holds for it.
    pub fd: BorrowedFd<'a>,
    /// Whether the gofer only reads it.
    pub readonly: bool,
}

/// What each confinement step achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The private mount namespace and pivot_root.
    pub namespace: Result<(), String>,
    /// Capabilities kept (names), or why dropping failed.
    pub caps: Result<Vec<String>, String>,
    /// no_new_privs.
    pub no_new_privs: Result<(), String>,
    /// Landlock status.
    pub landlock: Result<String, String>,
    /// Seccomp allowlist.
    pub seccomp: Result<usize, String>,
}

/// Capabilities the gofer keeps: what it needs to give files the sandbox's (mapped)
/// owners (CHOWN), reach and open every file of the sources whatever their
/// permissions (DAC_OVERRIDE, DAC_READ_SEARCH), change modes, times and xattrs of
/// files it does not own (FOWNER), and keep setuid/setgid bits it decided on
/// (FSETID). No device nodes: it makes none (no MKNOD); no file capabilities
/// (no SETFCAP); see PROTOCOL.md.
pub const KEPT_CAPS: &[caps::Capability] = &[
    caps::Capability::CAP_CHOWN,
    caps::Capability::CAP_DAC_OVERRIDE,
    caps::Capability::CAP_DAC_READ_SEARCH,
    caps::Capability::CAP_FOWNER,
    caps::Capability::CAP_FSETID,
];

fn e(x: impl std::fmt::Display) -> String {
    x.to_string()
}

/// Enter a private mount namespace whose root is a fresh tmpfs holding bind mounts
/// of the sources (read-only ones bound read-only), and nothing else. Must run while
/// the process is single-threaded.
pub fn enter_namespace(keep: &[Keep<'_>]) -> Result<(), String> {
    use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
    // SAFETY: called while single-threaded; CLONE_NEWNS does not touch descriptors.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
        .map_err(|x| format!("unshare: {x}"))?;
    rustix::mount::mount_change("/", MountPropagationFlags::PRIVATE | MountPropagationFlags::REC)
        .map_err(|x| format!("make-rprivate: {x}"))?;
    // Clone each source's mount tree now, detached (open_tree), reopened by path in
    // this namespace and checked to be the very file the server opened: the clone
    // holds the host's mounts under the source as they are, not the new root about
    // to be mounted (nor anything mounted later).
    let mut trees = Vec::with_capacity(keep.len());
    for k in keep {
        let here = rustix::fs::open(
            k.path,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|x| format!("reopen {}: {x}", k.path.display()))?;
        let (a, b) = (rustix::fs::fstat(&here).map_err(e)?, rustix::fs::fstat(k.fd).map_err(e)?);
        if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
            return Err(format!("{} was replaced since it was opened", k.path.display()));
        }
        use rustix::mount::OpenTreeFlags as T;
        let tree = rustix::mount::open_tree(
            &here,
            "",
            T::OPEN_TREE_CLONE | T::OPEN_TREE_CLOEXEC | T::AT_EMPTY_PATH | T::AT_RECURSIVE,
        )
        .map_err(|x| format!("clone the mounts of {}: {x}", k.path.display()))?;
        trees.push((tree, a.st_mode & 0o170000 == 0o040000));
    }
    // The new root is a tmpfs mounted over /tmp of this private namespace only.
    let root = ["/tmp", "/mnt", "/run", "/var"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_dir())
        .ok_or("no directory for the new root")?;
    rustix::mount::mount(
        "sandfs-gofer",
        &root,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        c"mode=0755",
    )
    .map_err(|x| format!("mount tmpfs: {x}"))?;
    for (i, (k, (tree, is_dir))) in keep.iter().zip(&trees).enumerate() {
        let target = root.join(format!("m{i}"));
        if *is_dir {
            std::fs::create_dir(&target).map_err(e)?;
        } else {
            std::fs::File::create(&target).map_err(e)?;
        }
        rustix::mount::move_mount(
            tree,
            "",
            rustix::fs::CWD,
            &target,
            rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|x| format!("attach {}: {x}", k.path.display()))?;
        if k.readonly {
            rustix::mount::mount_remount(&target, MountFlags::BIND | MountFlags::RDONLY, c"")
                .map_err(|x| format!("read-only {}: {x}", k.path.display()))?;
        }
    }
    rustix::process::chdir(&root).map_err(e)?;
    rustix::process::pivot_root(".", ".").map_err(|x| format!("pivot_root: {x}"))?;
    rustix::mount::unmount(".", UnmountFlags::DETACH).map_err(|x| format!("detach old root: {x}"))?;
    rustix::process::chdir("/").map_err(e)?;
    Ok(())
}

/// Reduce capabilities to [`KEPT_CAPS`] in every set, bounding set included.
pub fn drop_caps() -> Result<Vec<String>, String> {
    use caps::{CapSet, CapsHashSet};
    let keep: CapsHashSet = KEPT_CAPS.iter().copied().collect();
    for c in caps::all() {
        if !keep.contains(&c) {
            // The bounding set can only shrink; ignore caps this kernel lacks.
            let _ = caps::drop(None, CapSet::Bounding, c);
        }
    }
    let _ = caps::clear(None, CapSet::Ambient);
    caps::set(None, CapSet::Inheritable, &CapsHashSet::new()).map_err(e)?;
    let have = caps::read(None, CapSet::Permitted).map_err(e)?;
    let kept: CapsHashSet = have.intersection(&keep).copied().collect();
    caps::set(None, CapSet::Effective, &kept).map_err(e)?;
    caps::set(None, CapSet::Permitted, &kept).map_err(e)?;
    let mut names: Vec<String> = kept.iter().map(|c| c.to_string()).collect();
    names.sort();
    Ok(names)
}

/// Restrict file access to the sources with landlock (best effort on older kernels).
pub fn landlock(keep: &[Keep<'_>]) -> Result<String, String> {
    use landlock::{ABI, Access, AccessFs, PathBeneath, Ruleset, RulesetAttr, RulesetCreatedAttr};
    let abi = ABI::V5;
    let mut ruleset =
        Ruleset::default().handle_access(AccessFs::from_all(abi)).map_err(e)?.create().map_err(e)?;
    for k in keep {
        let fd: OwnedFd = k.fd.try_clone_to_owned().map_err(e)?;
        let access = if k.readonly { AccessFs::from_read(abi) } else { AccessFs::from_all(abi) };
        ruleset = ruleset.add_rule(PathBeneath::new(fd, access)).map_err(e)?;
    }
    let status = ruleset.restrict_self().map_err(e)?;
    Ok(format!("{:?}", status.ruleset))
}

/// The system calls a serving gofer makes; anything else fails with EPERM.
fn allowed_syscalls() -> Vec<i64> {
    use rustix_syscalls as s;
    s::ALLOWED.to_vec()
}

/// Numbers of the allowed system calls (x86_64 and aarch64).
mod rustix_syscalls {
    #[cfg(target_arch = "x86_64")]
    pub const ALLOWED: &[i64] = &[
        0,   // read
        1,   // write
        3,   // close
        5,   // fstat
        8,   // lseek
        9,   // mmap
        10,  // mprotect
        11,  // munmap
        12,  // brk
        13,  // rt_sigaction
        14,  // rt_sigprocmask
        15,  // rt_sigreturn
        17,  // pread64
        18,  // pwrite64
        20,  // writev
        24,  // sched_yield
        25,  // mremap
        28,  // madvise
        39,  // getpid
        46,  // sendmsg
        47,  // recvmsg
        60,  // exit
        72,  // fcntl
        74,  // fsync
        75,  // fdatasync
        77,  // ftruncate
        90,  // chmod (never reached with a path outside: landlock)
        91,  // fchmod
        93,  // fchown
        95,  // umask
        131, // sigaltstack
        137, // statfs
        138, // fstatfs
        157, // prctl
        186, // gettid
        193, // fgetxattr
        190, // fsetxattr
        196, // flistxattr
        199, // fremovexattr
        202, // futex
        204, // sched_getaffinity
        217, // getdents64
        228, // clock_gettime
        231, // exit_group
        257, // openat
        258, // mkdirat
        259, // mknodat
        260, // fchownat
        262, // newfstatat
        263, // unlinkat
        265, // linkat
        266, // symlinkat
        267, // readlinkat
        268, // fchmodat
        273, // set_robust_list
        280, // utimensat
        285, // fallocate
        302, // prlimit64
        316, // renameat2
        318, // getrandom
        332, // statx
        334, // rseq
        435, // clone3
        437, // openat2
        56,  // clone
        272, // unshare (CLONE_FS only; see the rule)
    ];
    #[cfg(target_arch = "aarch64")]
    pub const ALLOWED: &[i64] = &[
        63, 64, 57, 80, 62, 222, 226, 215, 214, 134, 135, 139, 67, 68, 66, 124, 216, 233, 172, 211, 212, 93,
        25, 82, 83, 46, 52, 55, 166, 132, 43, 44, 167, 178, 10, 7, 13, 16, 98, 123, 61, 113, 94, 56, 34, 33,
        54, 79, 35, 37, 36, 78, 53, 99, 88, 47, 261, 276, 278, 291, 293, 435, 437, 220, 97,
    ];
}

/// Install the seccomp allowlist on this thread and the threads it starts later.
pub fn seccomp() -> Result<usize, String> {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };
    let arch: TargetArch = std::env::consts::ARCH.try_into().map_err(e)?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let unshare = if cfg!(target_arch = "x86_64") { 272 } else { 97 };
    for nr in allowed_syscalls() {
        if nr == unshare {
            // Only a private filesystem context (per-thread umask): CLONE_FS.
            let only_fs =
                SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, 0x200).map_err(e)?;
            rules.insert(nr, vec![SeccompRule::new(vec![only_fs]).map_err(e)?]);
        } else {
            rules.insert(nr, vec![]);
        }
    }
    let n = rules.len();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(Errno::PERM.raw_os_error() as u32),
        SeccompAction::Allow,
        arch,
    )
    .map_err(e)?;
    let prog: BpfProgram = filter.try_into().map_err(e)?;
    seccompiler::apply_filter(&prog).map_err(e)?;
    Ok(n)
}

const NOT_TRIED: &str = "not attempted";

/// Apply every step, in order. `require_all`: fail on the first step that fails.
/// `in_namespace` runs right after the mount namespace is entered (before any other
/// restriction), with whether that succeeded: the caller reopens its sources there.
pub fn confine_with(
    keep: &[Keep<'_>],
    require_all: bool,
    in_namespace: &mut dyn FnMut(bool) -> Result<(), String>,
) -> Result<Report, String> {
    let mut r = Report {
        namespace: enter_namespace(keep),
        caps: Err(NOT_TRIED.into()),
        no_new_privs: Err(NOT_TRIED.into()),
        landlock: Err(NOT_TRIED.into()),
        seccomp: Err(NOT_TRIED.into()),
    };
    // An unprivileged gofer (rootless mode) cannot make a mount namespace without a
    // user namespace of its own, and inside one it would see every host owner but
    // its own as nobody and pass that on; it is confined by its own ids (it reaches
    // what the user reaches), landlock beneath its sources, openat2 RESOLVE_BENEATH
    // and the seccomp allowlist instead. Root must get the namespace.
    let privileged = rustix::process::geteuid().is_root();
    if r.namespace.is_err() && require_all && privileged {
        return Err(format!("mount namespace: {}", r.namespace.clone().err().unwrap_or_default()));
    }
    in_namespace(r.namespace.is_ok())?;
    r.caps = drop_caps();
    rest(r, keep, require_all)
}

fn rest(mut r: Report, keep: &[Keep<'_>], require_all: bool) -> Result<Report, String> {
    let check = |name: &str, res: &Result<(), String>| -> Result<(), String> {
        match res {
            Err(x) if require_all => Err(format!("{name}: {x}")),
            _ => Ok(()),
        }
    };
    check("capabilities", &r.caps.clone().map(|_| ()))?;
    r.no_new_privs = rustix::thread::set_no_new_privs(true).map_err(e);
    check("no_new_privs", &r.no_new_privs)?;
    r.landlock = landlock(keep);
    check("landlock", &r.landlock.clone().map(|_| ()))?;
    r.seccomp = seccomp();
    check("seccomp", &r.seccomp.clone().map(|_| ()))?;
    Ok(r)
}

/// [`confine_with`] with nothing to do inside the namespace.
pub fn confine(keep: &[Keep<'_>], require_all: bool) -> Result<Report, String> {
    confine_with(keep, require_all, &mut |_| Ok(()))
}
