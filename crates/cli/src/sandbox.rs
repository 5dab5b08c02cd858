//! `sandfs __sandbox`: the process that becomes the container. The runtime starts it
//! in new mount, pid, ipc and uts namespaces (with the FUSE view already mounted in
//! the mount namespace it copies); it forks the program's process (pid 1 of the new
//! pid namespace), which mounts kernel proc, sysfs, devpts and a minimal /dev on the
//! view, pivot_roots into it, takes its identity, hostname and rlimits, and execs.
//! This process waits for it, forwards SIGINT and SIGTERM, and exits with its status
//! (128+N for a signal).

use anyhow::{Context, Result, bail};
use rustix::mount::{MountFlags, UnmountFlags, mount, mount_bind, unmount};
use serde::{Deserialize, Serialize};
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
    /// The FUSE view.
    pub root: PathBuf,
    /// Kernel mounts, parents first.
    pub mounts: Vec<KMount>,
    /// Working directory inside the container.
    pub cwd: PathBuf,
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
    /// (resource name, soft, hard).
    pub rlimits: Vec<(String, u64, u64)>,
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
        _ => return None,
    })
}

/// In pid 1 of the container: mount the kernel filesystems and /dev on the view,
/// pivot_root into it, set the hostname (all namespace-wide, as root).
fn enter_view(p: &Params) -> Result<()> {
    for m in &p.mounts {
        let dest = at(&p.root, &m.destination);
        match m.fstype.as_str() {
            "sandfs-dev" => minimal_dev(&dest)?,
            fstype => {
                let data = std::ffi::CString::new(m.data.join(",")).context("mount data")?;
                let mut f = flags(m);
                if fstype == "proc" {
                    f |= MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
                }
                mount(fstype, &dest, fstype, f, data.as_c_str())
                    .with_context(|| format!("mount {fstype} on {}", m.destination.display()))?;
            }
        }
    }
    rustix::process::chdir(&p.root).context("enter the view")?;
    rustix::process::pivot_root(".", ".").context("pivot_root into the view")?;
    unmount(".", UnmountFlags::DETACH).context("detach the old root")?;
    rustix::process::chdir("/")?;
    if let Some(h) = &p.hostname {
        rustix::system::sethostname(h.as_bytes()).context("sethostname")?;
    }
    Ok(())
}

/// In the program's process: limits and identity, then exec. Returns only on failure.
fn exec_program(p: &Params) -> Result<std::convert::Infallible> {
    for (name, soft, hard) in &p.rlimits {
        let r = rlimit_resource(name).with_context(|| format!("unknown rlimit {name}"))?;
        rustix::process::setrlimit(r, rustix::process::Rlimit { current: Some(*soft), maximum: Some(*hard) })
            .with_context(|| format!("setrlimit {name}"))?;
    }
    let groups: Vec<rustix::process::Gid> =
        p.groups.iter().map(|&g| rustix::process::Gid::from_raw(g)).collect();
    rustix::thread::set_thread_groups(&groups).context("setgroups")?;
    let Some((prog, args)) = p.args.split_first() else { bail!("no program to run") };
    let mut cmd = std::process::Command::new(prog);
    cmd.args(args).env_clear().current_dir(&p.cwd).uid(p.uid).gid(p.gid);
    for kv in &p.env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let err = cmd.exec();
    bail!("exec {prog}: {err}")
}

/// Wait for `child`, forwarding SIGINT and SIGTERM (blocked in `sigs`); its exit
/// status, or 128+N for a signal.
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

/// `sandfs __sandbox PARAMS_JSON`: runs in the new namespaces, in the runtime's pid
/// namespace; its child is pid 1 of the container (an init that mounts, pivots and
/// supervises), whose child execs the program. Each level dies with its parent.
pub fn run(params_json: &str) -> Result<i32> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::unistd::ForkResult;
    let p: Params = serde_json::from_str(params_json).context("sandbox parameters")?;
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    let mut sigs = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGCHLD] {
        sigs.add(s);
    }
    sigs.thread_block().context("block signals")?;
    let init = match fork_or_die()? {
        ForkResult::Parent { child } => child,
        ForkResult::Child => {
            // pid 1: when it dies the kernel kills everything in the namespace.
            let code = (|| -> Result<i32> {
                rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
                enter_view(&p)?;
                match fork_or_die()? {
                    ForkResult::Parent { child } => supervise(child, &sigs),
                    ForkResult::Child => {
                        let _ = sigs.thread_unblock();
                        let Err(e) = exec_program(&p);
                        eprintln!("sandfs: {e:#}");
                        std::process::exit(127);
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
    supervise(init, &sigs)
}
