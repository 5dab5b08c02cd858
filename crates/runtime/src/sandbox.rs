//! `sandfs __sandbox`: the process that becomes the container. The runtime starts it
//! already inside the sandbox's new user namespace (container root, every capability
//! *in that namespace only*) and its new mount, pid, ipc, uts, cgroup and (unless
//! the host network is asked for) network namespaces. It:
//!
//! 1. mounts the FUSE view itself (a user namespace's FUSE mount is made from
//!    inside it, so the kernel speaks the namespace's ids to the server) and hands
//!    the /dev/fuse descriptor to the runtime, which serves it;
//! 2. forks pid 1 of the new pid namespace, which mounts kernel proc, sysfs, devpts,
//!    a minimal /dev, masks and write-protects /proc and /sys paths, pivot_roots
//!    into the view, sets hostname, loopback and sysctls, then forks the program;
//! 3. the program's process: new session, limits, umask, identity, capabilities,
//!    no_new_privs, only stdio left open, seccomp last, exec.
//!
//! pid 1 and this process then drop every capability and only wait, forwarding
//! SIGINT and SIGTERM. Any step that fails stops the run (exit 125) before the
//! program starts: it never runs less confined than asked.

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
    /// Where to mount the FUSE view (made on a scratch tmpfs of the sandbox's own).
    pub root: PathBuf,
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
    /// The seccomp profile (OCI JSON), if any.
    pub seccomp: Option<serde_json::Value>,
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

/// In pid 1 of the container: kernel mounts, sysctls, masked and read-only paths,
/// pivot_root into the view, hostname, loopback.
fn enter_view(p: &Params) -> Result<()> {
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
fn exec_program(p: &Params, filter: Option<&Filter>, term: Option<OwnedFd>) -> (String, i32) {
    let setup = (|| -> Result<()> {
        if let Some(t) = term {
            rustix::process::setsid().context("setsid")?;
            for n in 0..3 {
                // SAFETY: 0, 1 and 2 are this process's standard streams, replaced
                // here by the terminal; the borrowed OwnedFd is forgotten, not closed.
                let mut std_fd = unsafe { OwnedFd::from_raw_fd(n) };
                let r = rustix::io::dup2(&t, &mut std_fd);
                std::mem::forget(std_fd);
                r.context("give the program its terminal")?;
            }
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

/// Wait for `child`, forwarding the [`FORWARDED`] signals (blocked in `sigs`); its
/// exit status, or 128+N for a signal.
fn supervise(child: nix::unistd::Pid, sigs: &nix::sys::signal::SigSet) -> Result<i32> {
    use nix::sys::signal::Signal;
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    loop {
        let sig = sigs.wait().context("wait for signals")?;
        if sig != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(child, sig);
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => return Ok(code),
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == child => return Ok(128 + s as i32),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue, // an orphan reaped (we may be pid 1)
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
    let scratch = p.root.parent().context("view path")?;
    mount("sandfs", scratch, "tmpfs", MountFlags::NOSUID | MountFlags::NODEV, c"mode=700")
        .context("mount the scratch tmpfs")?;
    std::fs::create_dir(&p.root).context("make the view's mount point")?;
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
/// the program; the master goes to the runtime, the terminal is returned.
fn make_terminal(chan: &Conn) -> Result<OwnedFd> {
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
    .context("open the program's terminal")?;
    chan.send(&[2], &[master.as_fd()]).context("hand the terminal to the runtime")?;
    Ok(term)
}

/// The run's seccomp filter, from the profile the runtime chose (the spec's, or the
/// default without a bundle).
pub fn compile_filter(p: &Params) -> Result<Option<Filter>> {
    Ok(p.seccomp.as_ref().map(sandfs_confine::seccomp::compile_json).transpose()?.map(|c| c.filter))
}

/// `sandfs __sandbox PARAMS_FD`: runs in the new namespaces, in the runtime's pid
/// namespace; its child is pid 1 of the container (an init that mounts, pivots and
/// supervises), whose child execs the program. Each level dies with its parent.
pub fn run(params_fd: i32) -> Result<i32> {
    use nix::sys::signal::{SigSet, Signal};
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
    let sigs: SigSet = take_signals(&[Signal::SIGCHLD])?;
    let runtime = rustix::process::getppid();
    let dev = enter_namespaces(&p, runtime)?;
    let chan = mount_view(&p, dev)?;
    // Built before any fork: allocation and name resolution happen here, the child
    // only installs it.
    let filter = compile_filter(&p)?;
    let init = match fork_or_die()? {
        ForkResult::Parent { child } => child,
        ForkResult::Child => {
            // pid 1: when it dies the kernel kills everything in the namespace.
            let code = (|| -> Result<i32> {
                rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
                enter_view(&p)?;
                let term = if p.tty { Some(make_terminal(&chan)?) } else { None };
                drop(chan);
                match fork_or_die()? {
                    ForkResult::Parent { child } => {
                        // Its parent is outside the pid namespace: getppid says 0.
                        drop_all_caps(None)?;
                        // pid 1 runs without the program's seccomp filter: the program
                        // must not be able to ptrace it (or read its memory) to make
                        // system calls the filter refuses. Not dumpable: attaching
                        // then needs CAP_SYS_PTRACE, which the default set lacks.
                        rustix::process::set_dumpable_behavior(
                            rustix::process::DumpableBehavior::NotDumpable,
                        )
                        .context("make pid 1 not dumpable")?;
                        supervise(child, &sigs)
                    }
                    ForkResult::Child => {
                        let _ = sigs.thread_unblock();
                        let (why, code) = exec_program(&p, filter.as_ref(), term);
                        eprintln!("sandfs: {why}");
                        std::process::exit(code);
                    }
                }
            })();
            match code {
                Ok(c) => std::process::exit(c),
                Err(e) => {
                    eprintln!("sandfs: {e:#}");
                    std::process::exit(125);
                }
            }
        }
    };
    drop_all_caps(runtime)?;
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .context("make the sandbox process not dumpable")?;
    supervise(init, &sigs)
}
