//! `sandfs __sandbox`: the process that becomes the container. It makes the
//! sandbox's user namespace (the runtime writes its maps), opens /dev/fuse in it,
//! becomes its root and makes the new mount, pid, ipc, uts, cgroup and (unless the
//! host network is asked for) network namespaces. Then:
//!
//! 1. it mounts the FUSE view itself (a user namespace's FUSE mount is made from
//!    inside it, so the kernel speaks the namespace's ids to the server) and hands
//!    the /dev/fuse descriptor to the runtime, which serves it;
//! 2. it forks pid 1 of the new pid namespace, which mounts kernel proc, sysfs,
//!    devpts, a minimal /dev, masks and write-protects /proc and /sys paths (the
//!    runtime's createRuntime and createContainer hooks run then), pivot_roots into
//!    the view, sets hostname, loopback and sysctls, and waits for `start`;
//! 3. pid 1 then becomes the program: startContainer hooks, new session, limits,
//!    umask, identity, capabilities, no_new_privs, only stdio left open, seccomp
//!    last, exec.
//!
//! Attached (`sandfs run`) this process stays, without capabilities, forwarding
//! signals and exiting with the program's status; otherwise it exits and pid 1
//! belongs to the caller's reaper. Any step that fails stops the run (exit 125)
//! before the program starts: it never runs less confined than asked.

use anyhow::{Context, Result, bail};
use rustix::mount::{MountFlags, UnmountFlags, mount, mount_bind, unmount};
use sandfs_confine::caps::Sets;
use sandfs_confine::seccomp::Filter;
use sandfs_gofer::transport::Conn;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// A kernel mount to make inside the view.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KMount {
    /// Destination inside the container.
    pub destination: PathBuf,
    /// Filesystem type, or "sandfs-dev" for the minimal /dev.
    pub fstype: String,
    /// Data options.
    pub data: Vec<String>,
    /// Read-only.
    pub ro: bool,
    /// nosuid, nodev, noexec.
    pub nosuid: bool,
    /// No device nodes.
    pub nodev: bool,
    /// No execution.
    pub noexec: bool,
}

/// Everything the container process needs, passed as JSON in one argument.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    /// Where to mount the FUSE view: the runtime's own empty directory (a
    /// container's state directory), or made on a scratch tmpfs of the sandbox's own.
    pub root: PathBuf,
    /// `root` exists and is the runtime's: nothing of the host is covered to make
    /// it (createContainer hooks, which run in this mount namespace before
    /// pivot_root, see the host's paths, /tmp included).
    pub own_mount_point: bool,
    /// The socket on which to hand the runtime the /dev/fuse descriptor.
    pub fuse_channel: i32,
    /// Pipes to the runtime: (tell it the user namespace exists, wait for its maps).
    pub userns_sync: (i32, i32),
    /// Kernel mounts, parents first.
    pub mounts: Vec<KMount>,
    /// Working directory inside the container.
    pub cwd: PathBuf,
    /// When `cwd` is missing in the view, start in `/` (the caller's own directory,
    /// not a bundle's `process.cwd`), saying so.
    pub cwd_fallback: bool,
    /// Environment, as NAME=VALUE.
    pub env: Vec<String>,
    /// Program and arguments.
    pub args: Vec<String>,
    /// User.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Hostname, if any.
    pub hostname: Option<String>,
    /// NIS domain name, if any.
    pub domainname: Option<String>,
    /// (resource name, soft, hard).
    pub rlimits: Vec<(String, u64, u64)>,
    /// Capability sets of the program.
    pub caps: Sets,
    /// Set no_new_privs before exec.
    pub no_new_privs: bool,
    /// The program's umask, if set.
    pub umask: Option<u32>,
    /// The sandbox's oom_score_adj, if set (written by the runtime).
    pub oom_score_adj: Option<i32>,
    /// Host device nodes to bind at the same path in the container's /dev.
    pub devices: Vec<PathBuf>,
    /// Paths to hide.
    pub masked: Vec<String>,
    /// Paths to make read-only.
    pub readonly: Vec<String>,
    /// Sysctls to write (already checked to be namespaced).
    pub sysctl: Vec<(String, String)>,
    /// Existing namespaces to join first (OCI type name, path).
    pub join: Vec<(String, PathBuf)>,
    /// Which namespaces to make new besides the user namespace (OCI type names).
    pub new_ns: Vec<String>,
    /// Time namespace offsets (clock name, seconds, nanoseconds), if one is made.
    pub time_offsets: Vec<(String, i64, u32)>,
    /// Whether the program gets the runtime's pty (its stdio) as its terminal.
    pub tty: bool,
    /// The seccomp filter, compiled by the runtime, if any.
    pub seccomp: Option<Filter>,
    /// `sandfs run`: the sandbox process stays, forwards signals and exits with the
    /// program's status; otherwise (`create`) it leaves pid 1 to the caller's reaper.
    pub attached: bool,
    /// The startContainer hooks, run by pid 1 in the container before the program.
    pub start_hooks: Vec<oci_spec::runtime::Hook>,
    /// The terminal's size (height, width), `process.consoleSize`.
    pub console_size: Option<(u16, u16)>,
}

impl Params {
    /// Whether the sandbox makes a network namespace of its own (loopback brought
    /// up, sysfs mounted fresh); a joined or the host's one is not its own.
    pub fn own_network(&self) -> bool {
        self.new_ns.iter().any(|t| t == "network")
    }
}

const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

fn flags(m: &KMount) -> MountFlags {
    let mut f = MountFlags::empty();
    if m.ro {
        f |= MountFlags::RDONLY;
    }
    if m.nosuid {
        f |= MountFlags::NOSUID;
    }
    if m.nodev {
        f |= MountFlags::NODEV;
    }
    if m.noexec {
        f |= MountFlags::NOEXEC;
    }
    f
}

fn at(root: &Path, dest: &Path) -> PathBuf {
    root.join(dest.strip_prefix("/").unwrap_or(dest))
}

/// A minimal /dev: a tmpfs with the host's null, zero, full, random, urandom and tty
/// bound in, a private devpts, ptmx, the std links and /dev/shm.
fn minimal_dev(dev: &Path) -> Result<()> {
    mount("tmpfs", dev, "tmpfs", MountFlags::NOSUID | MountFlags::NOEXEC, c"mode=755")
        .context("mount /dev")?;
    for n in DEV_NODES {
        let p = dev.join(n);
        std::fs::File::create(&p).with_context(|| format!("create {}", p.display()))?;
        mount_bind(Path::new("/dev").join(n), &p).with_context(|| format!("bind /dev/{n}"))?;
    }
    std::fs::create_dir(dev.join("pts"))?;
    mount(
        "devpts",
        dev.join("pts"),
        "devpts",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        c"newinstance,ptmxmode=0666,mode=0620",
    )
    .context("mount /dev/pts")?;
    std::os::unix::fs::symlink("pts/ptmx", dev.join("ptmx"))?;
    std::fs::create_dir(dev.join("shm"))?;
    mount("tmpfs", dev.join("shm"), "tmpfs", MountFlags::NOSUID | MountFlags::NODEV, c"mode=1777")
        .context("mount /dev/shm")?;
    for (l, t) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(t, dev.join(l))?;
    }
    Ok(())
}

fn rlimit_resource(name: &str) -> Option<rustix::process::Resource> {
    use rustix::process::Resource as R;
    Some(match name {
        "RLIMIT_NOFILE" => R::Nofile,
        "RLIMIT_NPROC" => R::Nproc,
        "RLIMIT_CORE" => R::Core,
        "RLIMIT_STACK" => R::Stack,
        "RLIMIT_AS" => R::As,
        "RLIMIT_CPU" => R::Cpu,
        "RLIMIT_FSIZE" => R::Fsize,
        "RLIMIT_DATA" => R::Data,
        "RLIMIT_MEMLOCK" => R::Memlock,
        "RLIMIT_MSGQUEUE" => R::Msgqueue,
        "RLIMIT_NICE" => R::Nice,
        "RLIMIT_RTPRIO" => R::Rtprio,
        "RLIMIT_SIGPENDING" => R::Sigpending,
        "RLIMIT_RSS" => R::Rss,
        "RLIMIT_LOCKS" => R::Locks,
        "RLIMIT_RTTIME" => R::Rttime,
        _ => return None,
    })
}

/// A kernel filesystem on the view. In a user namespace some cannot be mounted
/// fresh: sysfs without a network namespace of our own, cgroup v1 hierarchies; they
/// are bound read-only from the host's instead, as rootless runtimes do.
fn kernel_mount(p: &Params, m: &KMount) -> Result<()> {
    let dest = at(&p.root, &m.destination);
    let data = std::ffi::CString::new(m.data.join(",")).context("mount data")?;
    let mut f = flags(m);
    match m.fstype.as_str() {
        "sandfs-dev" => return minimal_dev(&dest),
        "proc" => f |= MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        "sysfs" if !p.own_network() => return bind_host_read_only("/sys", &dest),
        "cgroup" | "cgroup2" => {
            f |= MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
            if mount("cgroup2", &dest, "cgroup2", f, c"").is_ok() {
                return Ok(());
            }
            return bind_host_read_only("/sys/fs/cgroup", &dest);
        }
        _ => {}
    }
    mount(m.fstype.as_str(), &dest, m.fstype.as_str(), f, data.as_c_str())
        .with_context(|| format!("mount {} on {}", m.fstype, m.destination.display()))
}

fn bind_host_read_only(src: &str, dest: &Path) -> Result<()> {
    rustix::mount::mount_bind_recursive(src, dest)
        .with_context(|| format!("bind the host's {src} on {}", dest.display()))?;
    let f = sandfs_confine::paths::locked_flags(dest) | MountFlags::RDONLY;
    rustix::mount::mount_remount(dest, MountFlags::BIND | f, c"")
        .with_context(|| format!("make {} read-only", dest.display()))
}

/// In pid 1 of the container, before pivot_root: kernel mounts, devices, sysctls,
/// masked and read-only paths.
fn mount_all(p: &Params) -> Result<()> {
    for m in &p.mounts {
        kernel_mount(p, m)?;
    }
    for d in &p.devices {
        let dest = at(&p.root, d);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("linux.devices {}", d.display()))?;
        }
        if !dest.exists() {
            std::fs::File::create(&dest).with_context(|| format!("linux.devices {}", d.display()))?;
        }
        mount_bind(d, &dest).with_context(|| format!("linux.devices: bind {}", d.display()))?;
    }
    for (k, v) in &p.sysctl {
        let path = at(&p.root, Path::new("/proc/sys")).join(k.replace('.', "/"));
        std::fs::write(&path, v).with_context(|| format!("linux.sysctl {k}={v}"))?;
    }
    for m in &p.masked {
        sandfs_confine::paths::mask(&p.root, m).map_err(anyhow::Error::msg)?;
    }
    for r in &p.readonly {
        sandfs_confine::paths::read_only(&p.root, r).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// In pid 1: pivot_root into the view, hostname, domain name, loopback.
fn pivot(p: &Params) -> Result<()> {
    rustix::process::chdir(&p.root).context("enter the view")?;
    rustix::process::pivot_root(".", ".").context("pivot_root into the view")?;
    unmount(".", UnmountFlags::DETACH).context("detach the old root")?;
    rustix::process::chdir("/")?;
    if let Some(h) = &p.hostname {
        rustix::system::sethostname(h.as_bytes()).context("sethostname")?;
    }
    if let Some(d) = &p.domainname {
        rustix::system::setdomainname(d.as_bytes()).context("setdomainname")?;
    }
    if p.own_network() {
        sandfs_confine::net::loopback_up().map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// The program's identity, capabilities and no_new_privs, in the order that keeps
/// what it should: bounding set first, identity with the permitted set kept, then
/// the sets, then no_new_privs.
fn take_identity(p: &Params) -> Result<()> {
    use rustix::process::{Gid, Uid};
    let last = sandfs_confine::caps::last_cap();
    rustix::thread::set_keep_capabilities(true).context("keep capabilities over the identity change")?;
    sandfs_confine::caps::limit_bounding(p.caps.bounding, last).map_err(anyhow::Error::msg)?;
    let groups: Vec<Gid> = p.groups.iter().map(|&g| Gid::from_raw(g)).collect();
    match rustix::thread::set_thread_groups(&groups) {
        Ok(()) => {}
        // Rootless without subordinate ids: setgroups is denied in the namespace and
        // only group 0 exists; asking for more is an error, none is fine.
        Err(rustix::io::Errno::PERM) if groups.is_empty() => {}
        Err(e) => bail!("setgroups {:?}: {e}", p.groups),
    }
    let gid = Gid::from_raw(p.gid);
    rustix::thread::set_thread_res_gid(gid, gid, gid).with_context(|| format!("setgid {}", p.gid))?;
    let uid = Uid::from_raw(p.uid);
    rustix::thread::set_thread_res_uid(uid, uid, uid).with_context(|| format!("setuid {}", p.uid))?;
    rustix::thread::set_keep_capabilities(false)?;
    sandfs_confine::caps::apply_sets(&p.caps, last).map_err(anyhow::Error::msg)?;
    if p.no_new_privs {
        rustix::thread::set_no_new_privs(true).context("set no_new_privs")?;
    }
    Ok(())
}

/// Give up every capability (pid 1 and the outer sandbox process only wait).
fn drop_all_caps(parent: Option<rustix::process::Pid>) -> Result<()> {
    sandfs_confine::caps::limit_bounding(0, sandfs_confine::caps::last_cap()).map_err(anyhow::Error::msg)?;
    sandfs_confine::caps::apply_sets(&Sets::default(), sandfs_confine::caps::last_cap())
        .map_err(anyhow::Error::msg)?;
    rustix::thread::set_no_new_privs(true)?;
    die_with_parent(parent)
}

/// Die when the parent does. The kernel clears this setting on every change of
/// credentials (identity, capabilities), so it is set again after each; a parent
/// already gone by then is noticed here.
fn die_with_parent(parent: Option<rustix::process::Pid>) -> Result<()> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    if rustix::process::getppid() != parent {
        bail!("the runtime is gone");
    }
    Ok(())
}

/// Why exec failed, and the shell's status for it: 127 for a program (or its
/// interpreter) that is not there, 126 for one that cannot be run.
fn exec_failure(prog: &str, err: &std::io::Error) -> (String, i32) {
    let code = if err.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 };
    let what = if prog.contains('/') && Path::new(prog).exists() && code == 127 {
        format!("exec {prog}: its interpreter was not found ({err})")
    } else {
        format!("exec {prog}: {err}")
    };
    (what, code)
}

/// In the program's process: session, limits, umask, identity, descriptors,
/// seccomp, exec. Returns only on failure, with the exit status to use.
pub(crate) fn exec_program(p: &Params, term: Option<OwnedFd>) -> (String, i32) {
    let filter = p.seccomp.as_ref();
    // Not dumpable until exec (which resets it): once this process has the program's
    // identity and capabilities and until its filter is on, another process of the
    // container with the same ones could otherwise ptrace it or write its memory, and
    // so run unfiltered (exec joins a container whose processes already run).
    if let Err(e) = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable) {
        return (format!("make the process not dumpable: {e}"), 125);
    }
    let setup = (|| -> Result<()> {
        if let Some(t) = term {
            rustix::process::setsid().context("setsid")?;
            terminal_as_stdio(&t)?;
            drop(t);
            rustix::process::ioctl_tiocsctty(std::io::stdin().as_fd()).context("take the terminal")?;
        } else {
            // No controlling terminal: nothing written reaches the caller's terminal
            // except through the descriptors given.
            rustix::process::setsid().context("setsid")?;
        }
        for (name, soft, hard) in &p.rlimits {
            let r = rlimit_resource(name).with_context(|| format!("process.rlimits: unknown {name}"))?;
            rustix::process::setrlimit(
                r,
                rustix::process::Rlimit { current: Some(*soft), maximum: Some(*hard) },
            )
            .with_context(|| format!("setrlimit {name}"))?;
        }
        if let Some(m) = p.umask {
            rustix::process::umask(rustix::fs::Mode::from_raw_mode(m));
        }
        if !p.no_new_privs
            && let Some(f) = filter
        {
            // Without no_new_privs the kernel takes a filter only from a holder of
            // CAP_SYS_ADMIN (in the namespace): install it before the identity
            // change gives that up, as runc does.
            f.load().map_err(|e| anyhow::anyhow!("install the seccomp filter: {e}"))?;
        }
        take_identity(p)?;
        match rustix::process::chdir(&p.cwd) {
            Ok(()) => {}
            Err(rustix::io::Errno::NOENT) if p.cwd_fallback => {
                eprintln!("sandfs: {} does not exist in the sandbox; starting in /", p.cwd.display());
                rustix::process::chdir("/").context("working directory /")?;
            }
            Err(e) => bail!("working directory {}: {e}", p.cwd.display()),
        }
        // Only stdin, stdout and stderr reach the program.
        sandfs_confine::fds::cloexec_from(3).map_err(anyhow::Error::msg)?;
        Ok(())
    })();
    if let Err(e) = setup {
        return (format!("{e:#}"), 125);
    }
    let Some((prog, args)) = p.args.split_first() else { return ("no program to run".into(), 125) };
    let mut cmd = std::process::Command::new(prog);
    cmd.args(args).env_clear();
    for kv in &p.env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    if let Some(f) = filter.filter(|_| p.no_new_privs) {
        // Last before exec: the filter applies to the program, not to the setup.
        if let Err(e) = f.load() {
            return (format!("install the seccomp filter: {e}"), 125);
        }
    }
    let err = cmd.exec();
    exec_failure(prog, &err)
}

/// The signals passed on to the program: those a user or a supervisor sends to
/// ask something of it (sandfs itself is never their target).
pub const FORWARDED: &[nix::sys::signal::Signal] = {
    use nix::sys::signal::Signal as S;
    &[S::SIGINT, S::SIGTERM, S::SIGHUP, S::SIGQUIT, S::SIGUSR1, S::SIGUSR2, S::SIGWINCH]
};

/// Take the [`FORWARDED`] signals (and `extra`) synchronously: default disposition
/// (a caller may have left them ignored, as shells do for background jobs, and an
/// ignored signal is dropped before it could be forwarded), then blocked.
pub fn take_signals(extra: &[nix::sys::signal::Signal]) -> Result<nix::sys::signal::SigSet> {
    use nix::sys::signal::{SigHandler, SigSet, signal};
    let mut set = SigSet::empty();
    for &s in FORWARDED.iter().chain(extra) {
        // SAFETY: resetting to the default disposition installs no handler code.
        unsafe { signal(s, SigHandler::SigDfl) }.context("reset a signal's disposition")?;
        set.add(s);
    }
    set.thread_block().context("block signals")?;
    Ok(set)
}

/// Whether the process of `proc_dir` (its /proc directory) has a handler for `sig`
/// or ignores it (its status masks). The kernel drops a signal that pid 1 of a
/// namespace neither handles nor ignores when it comes from outside (SIGKILL and
/// SIGSTOP aside).
fn handles(proc_dir: &OwnedFd, sig: nix::sys::signal::Signal) -> bool {
    let status = rustix::fs::openat(
        proc_dir,
        "status",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()
    .and_then(|fd| std::io::read_to_string(std::fs::File::from(fd)).ok());
    let Some(status) = status else { return true };
    let bit = 1u64 << (sig as i32 - 1);
    status.lines().any(|l| {
        let (k, v) = l.split_once(':').unwrap_or((l, ""));
        (k == "SigCgt" || k == "SigIgn") && u64::from_str_radix(v.trim(), 16).is_ok_and(|m| m & bit != 0)
    })
}

/// Wait for `child` (the program, pid 1 of its namespace), forwarding the
/// [`FORWARDED`] signals (blocked in `sigs`); its exit status, or 128+N for a
/// signal. A terminating signal the program neither handles nor ignores would be
/// dropped by the kernel (it is pid 1): it is given SIGKILL instead and the exit
/// reported as that signal's, as if the program were not pid 1.
fn supervise(child: nix::unistd::Pid, proc_dir: &OwnedFd, sigs: &nix::sys::signal::SigSet) -> Result<i32> {
    use nix::sys::signal::Signal;
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let mut killed_for: Option<Signal> = None;
    loop {
        let sig = sigs.wait().context("wait for signals")?;
        if sig != Signal::SIGCHLD {
            if sig != Signal::SIGWINCH && !handles(proc_dir, sig) {
                killed_for.get_or_insert(sig);
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
            } else {
                let _ = nix::sys::signal::kill(child, sig);
            }
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => return Ok(code),
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == child => {
                    let s = match (s, killed_for) {
                        (Signal::SIGKILL, Some(f)) => f,
                        _ => s,
                    };
                    return Ok(128 + s as i32);
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

fn fork_or_die() -> Result<nix::unistd::ForkResult> {
    // SAFETY: every caller is single-threaded (this process was just exec'd, or is
    // the child of such a fork, and starts no threads), so the child may do anything
    // after fork.
    unsafe { nix::unistd::fork() }.context("fork")
}

/// Make the user namespace (the runtime writes its maps), become its root, then
/// make the other namespaces, owned by it.
/// Returns /dev/fuse opened in the new user namespace (a FUSE mount wants its
/// descriptor opened by the namespace that mounts it), while this process still has
/// the runtime's file access: the device is often root's alone, and container root
/// is not host root.
fn enter_namespaces(p: &Params, parent: Option<rustix::process::Pid>) -> Result<OwnedFd> {
    use rustix::thread::UnshareFlags as U;
    use std::io::{Read, Write};
    // SAFETY: the runtime passed these two pipe ends for this exchange alone; they
    // are owned here and closed after it.
    let (mut ready, mut go) =
        unsafe { (std::fs::File::from_raw_fd(p.userns_sync.0), std::fs::File::from_raw_fd(p.userns_sync.1)) };
    // Joined first, while this process holds the runtime's privileges over them.
    for (typ, path) in &p.join {
        let f = std::fs::File::open(path)
            .with_context(|| format!("linux.namespaces {typ} path {}", path.display()))?;
        rustix::thread::move_into_link_name_space(f.as_fd(), None)
            .with_context(|| format!("join the {typ} namespace {}", path.display()))?;
    }
    // SAFETY: this process was just exec'd and has started no thread, as unshare of
    // a user namespace requires; no descriptor table is shared.
    unsafe { rustix::thread::unshare_unsafe(U::NEWUSER) }.context("make a user namespace")?;
    let dev = rustix::fs::open("/dev/fuse", rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())
        .context("open /dev/fuse (rootless mode needs it usable by the user: chmod 0666 /dev/fuse, as distributions ship it)")?;
    ready.write_all(&[1]).context("tell the runtime")?;
    let mut b = [0u8; 1];
    if go.read(&mut b).context("wait for the id maps")? != 1 {
        bail!("the runtime did not map the user namespace");
    }
    // Denied (rootless without subordinate ids): there are no groups to drop then.
    let _ = rustix::thread::set_thread_groups(&[]);
    let g = rustix::process::Gid::ROOT;
    rustix::thread::set_thread_res_gid(g, g, g).context("become group 0 of the namespace")?;
    let u = rustix::process::Uid::ROOT;
    rustix::thread::set_thread_res_uid(u, u, u).context("become root of the namespace")?;
    die_with_parent(parent)?;
    let mut ns = U::empty();
    for t in &p.new_ns {
        ns |= match t.as_str() {
            "mount" => U::NEWNS,
            "pid" => U::NEWPID,
            "ipc" => U::NEWIPC,
            "uts" => U::NEWUTS,
            "cgroup" => U::NEWCGROUP,
            "network" => U::NEWNET,
            "time" => U::NEWTIME,
            other => bail!("linux.namespaces: unknown type {other:?}"),
        };
    }
    // SAFETY: still single-threaded, as above.
    unsafe { rustix::thread::unshare_unsafe(ns) }.context("make the sandbox's namespaces")?;
    // The runtime may attach to them now (pasta's network) and says when done.
    ready.write_all(&[2]).context("tell the runtime")?;
    drop(ready);
    if go.read(&mut b).context("wait for the runtime")? != 1 {
        bail!("the runtime did not finish setting up the namespaces");
    }
    if !p.time_offsets.is_empty() {
        // Written before the first process enters the time namespace (pid 1).
        let text: String = p.time_offsets.iter().map(|(c, s, n)| format!("{c} {s} {n}\n")).collect();
        // The identity change left this process not dumpable, which gives its /proc
        // files to host root: dumpable again for the write (not dumpable at the end).
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::Dumpable)?;
        std::fs::write("/proc/self/timens_offsets", text).context("linux.timeOffsets")?;
    }
    Ok(dev)
}

/// Mount the FUSE view at `p.root` on a scratch tmpfs of this mount namespace and
/// send the /dev/fuse descriptor to the runtime.
fn mount_view(p: &Params, dev: OwnedFd) -> Result<Conn> {
    rustix::mount::mount_change(
        "/",
        rustix::mount::MountPropagationFlags::PRIVATE | rustix::mount::MountPropagationFlags::REC,
    )
    .context("make mounts private")?;
    if !p.own_mount_point {
        // No directory of the runtime's to mount on: a scratch tmpfs of this
        // namespace's own over the parent (/tmp) gives one.
        let scratch = p.root.parent().context("view path")?;
        mount("sandfs", scratch, "tmpfs", MountFlags::NOSUID | MountFlags::NODEV, c"mode=700")
            .context("mount the scratch tmpfs")?;
        std::fs::create_dir(&p.root).context("make the view's mount point")?;
    }
    let data = sandfs_fuse::mount_data(dev.as_raw_fd(), 0, 0);
    let data = std::ffi::CString::new(data).context("fuse mount data")?;
    mount("sandfs", &p.root, "fuse.sandfs", MountFlags::empty(), data.as_c_str())
        .context("mount the FUSE view inside the user namespace")?;
    // SAFETY: the runtime passed this connected socket for the FUSE descriptor (and,
    // with a terminal, its master next); it is owned here.
    let chan = Conn::new(unsafe { OwnedFd::from_raw_fd(p.fuse_channel) });
    chan.send(&[1], &[dev.as_fd()]).context("hand the FUSE descriptor to the runtime")?;
    Ok(chan)
}

/// In pid 1, after the view is entered: a pty of the container's own devpts for
/// the program (sized as `process.consoleSize` asks); the master goes to the
/// runtime, the terminal is returned.
fn make_terminal(chan: &Conn, size: Option<(u16, u16)>) -> Result<OwnedFd> {
    let (master, term) = open_pty(size)?;
    chan.send(&[msg::TERMINAL], &[master.as_fd()]).context("hand the terminal to the runtime")?;
    Ok(term)
}

/// A new pty of this mount namespace's devpts, `size` (rows, columns) if given:
/// (master, terminal), close-on-exec.
pub(crate) fn open_pty(size: Option<(u16, u16)>) -> Result<(OwnedFd, OwnedFd)> {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let master =
        openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).context("open /dev/ptmx")?;
    grantpt(&master).context("grantpt")?;
    unlockpt(&master).context("unlockpt")?;
    let name = ptsname(&master, Vec::new()).context("ptsname")?;
    let term = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .context("open the terminal")?;
    if let Some((height, width)) = size {
        let ws = rustix::termios::Winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
        rustix::termios::tcsetwinsize(&master, ws).context("process.consoleSize")?;
    }
    Ok((master, term))
}

/// Makes `term` this process's stdin, stdout and stderr.
fn terminal_as_stdio(term: &OwnedFd) -> Result<()> {
    for n in 0..3 {
        // SAFETY: 0, 1 and 2 are this process's standard streams, replaced here by
        // the terminal; the borrowed OwnedFd is forgotten, not closed.
        let mut std_fd = unsafe { OwnedFd::from_raw_fd(n) };
        let r = rustix::io::dup2(term, &mut std_fd);
        std::mem::forget(std_fd);
        r.context("give the program its terminal")?;
    }
    Ok(())
}

/// The messages on the channel between the runtime and the sandbox: the first byte
/// of each.
pub mod msg {
    /// Sandbox process to runtime, with the /dev/fuse descriptor of the view.
    pub const FUSE: u8 = 1;
    /// pid 1 to runtime, with the master of the program's terminal.
    pub const TERMINAL: u8 = 2;
    /// pid 1: the kernel mounts are made; pivot_root waits for [`PIVOT`] (the
    /// createRuntime and createContainer hooks run meanwhile).
    pub const MOUNTED: u8 = 3;
    /// pid 1: everything is set up; the program waits for [`START`].
    pub const CREATED: u8 = 4;
    /// Runtime to pid 1: run the startContainer hooks (the rest of the message is
    /// the state JSON they read) and exec the program.
    pub const START: u8 = 5;
    /// Sandbox process to runtime: pid 1's pid in the runtime's pid namespace (u32,
    /// little endian).
    pub const PID: u8 = 6;
    /// Runtime to pid 1: go on to pivot_root.
    pub const PIVOT: u8 = 7;
    /// pid 1 to runtime: setup or exec failed; the rest is the reason.
    pub const ERROR: u8 = 0xff;
}

/// In pid 1: wait for the runtime's `want`; its payload. A closed channel means
/// the runtime is gone.
fn expect(chan: &Conn, want: u8) -> Result<Vec<u8>> {
    let (mut buf, mut fds) = (Vec::new(), Vec::new());
    chan.recv(&mut buf, &mut fds).map_err(|e| anyhow::anyhow!("the runtime is gone ({e:?})"))?;
    match buf.split_first() {
        Some((&t, rest)) if t == want => Ok(rest.to_vec()),
        _ => bail!("unexpected message from the runtime"),
    }
}

/// The program's path as exec will find it, checked before the container is
/// reported created (runc's wording, which engines map to exit status 127).
fn find_program(p: &Params) -> Result<(), String> {
    let Some(prog) = p.args.first() else { return Err("process.args: empty".into()) };
    let runnable = |path: &Path| {
        std::fs::metadata(path).is_ok_and(|m| {
            m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
        })
    };
    if prog.contains('/') {
        let path = if Path::new(prog).is_absolute() { PathBuf::from(prog) } else { p.cwd.join(prog) };
        if std::fs::symlink_metadata(&path).is_err() {
            return Err(format!("exec {prog}: no such file or directory"));
        }
        return Ok(());
    }
    let path = p
        .env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    if path.split(':').any(|d| runnable(&Path::new(d).join(prog))) {
        Ok(())
    } else {
        Err(format!("exec {prog}: executable file not found in $PATH"))
    }
}

/// pid 1 of the container: mounts (then the runtime's hooks), pivot_root, the
/// terminal, then waits for `start`, runs the startContainer hooks and becomes the
/// program. Returns only on failure: the reason and the exit status.
fn pid1(p: &Params, chan: &Conn) -> (String, i32) {
    let setup = (|| -> Result<Option<OwnedFd>> {
        mount_all(p)?;
        chan.send(&[msg::MOUNTED], &[]).context("tell the runtime")?;
        expect(chan, msg::PIVOT)?;
        pivot(p)?;
        let term = if p.tty { Some(make_terminal(chan, p.console_size)?) } else { None };
        if let Some(t) = &term {
            // The caller's stdio is not the program's: let go of it now, not at exec
            // (an engine waits for `create`'s output to close).
            terminal_as_stdio(t)?;
        }
        Ok(term)
    })();
    let term = match setup {
        Ok(t) => t,
        Err(e) => return (format!("{e:#}"), 125),
    };
    if let Err(why) = find_program(p) {
        return (why, 127);
    }
    if let Err(e) = chan.send(&[msg::CREATED], &[]) {
        return (format!("tell the runtime: {e}"), 125);
    }
    let state = match expect(chan, msg::START) {
        Ok(s) => s,
        Err(e) => return (format!("{e:#}"), 125),
    };
    if let Err(e) = crate::hooks::run_all(crate::hooks::Point::StartContainer, &p.start_hooks, &state) {
        return (format!("{e:#}"), 125);
    }
    exec_program(p, term)
}

/// `sandfs __sandbox PARAMS_FD`: runs in the new namespaces, in the runtime's pid
/// namespace; its child is pid 1 of the container, which sets up the view and
/// becomes the program. Attached (`sandfs run`) this process stays, forwards
/// signals, and exits with the program's status; otherwise it exits once pid 1
/// exists, which then belongs to whoever reaps orphans for the caller (an engine's
/// subreaper: conmon, containerd's shim), as a runc container's init does.
pub fn run(params_fd: i32) -> Result<i32> {
    use nix::sys::signal::Signal;
    use nix::unistd::ForkResult;
    use std::io::Read;
    if params_fd < 3 {
        bail!("descriptor {params_fd} is a standard stream, not the parameters");
    }
    // SAFETY: the runtime passed this pipe's read end for this one read; it is owned
    // here and closed after it.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(params_fd) };
    let mut json = Vec::new();
    pipe.read_to_end(&mut json).context("read the sandbox parameters")?;
    drop(pipe);
    let p: Params = serde_json::from_slice(&json).context("sandbox parameters")?;
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    let sigs = if p.attached { Some(take_signals(&[Signal::SIGCHLD])?) } else { None };
    let runtime = rustix::process::getppid();
    let dev = enter_namespaces(&p, runtime)?;
    let chan = mount_view(&p, dev)?;
    // pid 1 waits until its pid is sent, so the runtime hears of it first.
    let (mut go_r, go_w) = std::io::pipe().context("pipe")?;
    let init = match fork_or_die()? {
        ForkResult::Parent { child } => child,
        ForkResult::Child => {
            drop(go_w);
            let mut b = [0u8; 1];
            let _ = go_r.read(&mut b);
            drop(go_r);
            if p.attached {
                // Dies with this process, which dies with the runtime.
                let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
            }
            if let Some(s) = &sigs {
                let _ = s.thread_unblock();
            }
            let (why, code) = pid1(&p, &chan);
            let mut m = vec![msg::ERROR];
            m.extend_from_slice(why.as_bytes());
            if chan.send(&m, &[]).is_err() {
                eprintln!("sandfs: {why}");
            }
            std::process::exit(code);
        }
    };
    drop(go_r);
    let mut m = vec![msg::PID];
    m.extend_from_slice(&(init.as_raw() as u32).to_le_bytes());
    chan.send(&m, &[]).context("tell the runtime pid 1's pid")?;
    let Some(sigs) = sigs else { return Ok(0) };
    // Opened before pid 1 goes on: its pivot_root moves this process's root (same
    // mount namespace) to the view, whose /proc shows only the container.
    let proc_dir = rustix::fs::open(
        format!("/proc/{init}"),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .context("open pid 1's /proc directory")?;
    drop(go_w);
    // The channel is pid 1's alone from here: the runtime sees it close at exec.
    drop(chan);
    drop_all_caps(runtime)?;
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .context("make the sandbox process not dumpable")?;
    supervise(init, &proc_dir, &sigs)
}
