//! `exec`: another process in a running container. It joins the container's
//! cgroup and namespaces (those of its pid 1), then takes the same confinement as
//! the program: identity, capabilities, rlimits, no_new_privs and the container's
//! seccomp filter, through the same code ([`crate::sandbox::exec_program`]).
//! Attached, this process waits for it and exits with its status; `--detach`
//! leaves it to the caller's reaper, as runc does.

use crate::lifecycle::{Global, spec_of};
use crate::state::{Status, Store};
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// Arguments of `exec`.
#[derive(Clone, Debug, Default)]
pub struct ExecArgs {
    /// The container id.
    pub id: String,
    /// An OCI `process` JSON file; replaces the container's process.
    pub process: Option<PathBuf>,
    /// Give the process a terminal.
    pub tty: bool,
    /// Send the terminal's master here.
    pub console_socket: Option<PathBuf>,
    /// Write the process's pid here.
    pub pid_file: Option<PathBuf>,
    /// Return once it runs.
    pub detach: bool,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// More environment, NAME=VALUE.
    pub env: Vec<String>,
    /// uid[:gid].
    pub user: Option<String>,
    /// More supplementary groups.
    pub additional_gids: Vec<u32>,
    /// The command (without --process).
    pub cmd: Vec<String>,
}

/// The namespaces joined, in the order tried; the user namespace comes last for a
/// root runtime (whose capabilities reach every namespace below the host's) and is
/// retried first for what was refused (rootless: only the user namespace's
/// capabilities reach the rest).
const NAMESPACES: &[(&str, rustix::thread::LinkNameSpaceType)] = {
    use rustix::thread::LinkNameSpaceType as T;
    &[
        ("cgroup", T::ControlGroup),
        ("ipc", T::InterProcessCommunication),
        ("uts", T::HostNameAndNISDomainName),
        ("net", T::Network),
        ("pid", T::ProcessID),
        ("time", T::Time),
        ("mnt", T::Mount),
    ]
};

/// The process to run, as sandbox parameters: the container's process (or the
/// `--process` file) with the flags' changes.
fn params(store: &Store, a: &ExecArgs) -> Result<crate::sandbox::Params> {
    let mut spec = spec_of(store, &a.id)?;
    if let Some(p) = &a.process {
        if !a.cmd.is_empty() {
            bail!("exec: --process gives the command; drop the words after the id");
        }
        let text = std::fs::read(p).with_context(|| format!("--process {}", p.display()))?;
        let raw: serde_json::Value =
            serde_json::from_slice(&text).with_context(|| format!("--process {}", p.display()))?;
        // The same checks as a bundle's process: capability names, and fields sandfs
        // does not apply (AppArmor, SELinux, I/O priority, scheduler, CPU affinity)
        // refused rather than ignored.
        crate::run::precheck(&serde_json::json!({ "process": raw }))
            .with_context(|| format!("--process {}", p.display()))?;
        let proc_: oci_spec::runtime::Process =
            serde_json::from_value(raw).with_context(|| format!("--process {}", p.display()))?;
        spec.set_process(Some(proc_));
    } else if a.cmd.is_empty() {
        bail!("exec: no command given (and no --process)");
    }
    // The container's filter, compiled once at create, is the exec's too.
    let saved: Option<sandfs_confine::seccomp::Filter> = std::fs::read(store.dir(&a.id).join("seccomp.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if saved.is_some()
        && let Some(linux) = spec.linux_mut()
    {
        linux.set_seccomp(None);
    }
    let mut p = crate::run::exec_params(&spec, &a.cmd)?;
    if saved.is_some() {
        p.seccomp = saved;
    }
    if let Some(c) = &a.cwd {
        p.cwd = c.clone();
    }
    for kv in &a.env {
        let key = kv.split('=').next().unwrap_or("");
        p.env.retain(|e| e.split('=').next() != Some(key));
        p.env.push(kv.clone());
    }
    if let Some(u) = &a.user {
        // A uid alone keeps the process's group, as runc does.
        let (uid, gid) = u.split_once(':').map_or((u.as_str(), None), |(u, g)| (u, Some(g)));
        p.uid = uid.parse().with_context(|| format!("--user {u}: want uid[:gid] numbers"))?;
        if let Some(g) = gid {
            p.gid = g.parse().with_context(|| format!("--user {u}: want uid[:gid] numbers"))?;
        }
    }
    p.groups.extend(&a.additional_gids);
    p.tty =
        a.tty || (a.process.is_some() && spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false));
    // A --process file's consoleSize sizes the terminal, as the bundle's does for pid 1.
    if p.tty
        && a.process.is_some()
        && let Some(size) = spec.process().as_ref().and_then(|p| p.console_size())
    {
        p.console_size = Some((size.height() as u16, size.width() as u16));
    }
    Ok(p)
}

/// Runs `exec`; the exit status to exit with.
pub fn exec(g: &Global, a: &ExecArgs) -> Result<i32> {
    crate::run::seal_inherited();
    let store = Store::open(&g.root)?;
    let st = store.load(&a.id)?;
    match st.status() {
        Status::Running | Status::Created => {}
        Status::Paused => bail!("cannot exec in a paused container"),
        Status::Stopped => bail!("cannot exec in a stopped container"),
    }
    let p = params(&store, a)?;
    if p.tty && a.detach && a.console_socket.is_none() {
        bail!("--tty with --detach needs --console-socket");
    }
    if a.console_socket.is_some() && !p.tty {
        // As create refuses it: the socket would get nothing.
        bail!("--console-socket given but the process has no terminal (--tty, or terminal in --process)");
    }
    // Everything on the host's side is opened first.
    let console = a
        .console_socket
        .as_ref()
        .map(|s| {
            std::os::unix::net::UnixStream::connect(s)
                .with_context(|| format!("--console-socket {}", s.display()))
        })
        .transpose()?;
    let pid_file = match &a.pid_file {
        Some(f) => {
            let f = std::path::absolute(f).unwrap_or_else(|_| f.clone());
            let dir = f.parent().unwrap_or(Path::new("/"));
            let fd = rustix::fs::open(
                dir,
                rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .with_context(|| format!("--pid-file {}", f.display()))?;
            Some((fd, PathBuf::from(f.file_name().context("--pid-file: no file name")?)))
        }
        None => None,
    };
    let sigs = if a.detach {
        None
    } else {
        Some(crate::sandbox::take_signals(&[nix::sys::signal::Signal::SIGCHLD])?)
    };
    let raw = if p.tty && console.is_none() { Some(crate::tty::Raw::enter()?) } else { None };
    if let Some(cg) = &st.cgroup {
        cg.add_pid(std::process::id() as i32).context("join the container's cgroup")?;
    }
    if let Some(adj) = p.oom_score_adj {
        // Set here, while this process has the host's privileges (lowering it needs
        // them); the program, forked below, inherits it.
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .with_context(|| format!("process.oomScoreAdj {adj}"))?;
    }
    join(st.pid)?;
    // In the container's mount namespace: its /dev/pts.
    let (master, term) = match p.tty {
        true => crate::sandbox::open_pty(p.console_size).map(|(m, t)| (Some(m), Some(t)))?,
        false => (None, None),
    };
    // Detached, the caller learns whether the program started (as from runc): the
    // child's end of this pipe closes at its exec (close-on-exec), or says why not.
    let (mut started_r, started_w) = std::io::pipe().context("pipe")?;
    // SAFETY: this process is single-threaded (no thread was started: joining the
    // user namespace above required it), so the child may run ordinary code.
    let child = match unsafe { nix::unistd::fork() }.context("fork")? {
        nix::unistd::ForkResult::Child => {
            drop(master);
            drop(started_r);
            if let Some(s) = &sigs {
                let _ = s.thread_unblock();
            }
            let (why, code) = crate::sandbox::exec_program(&p, term);
            if a.detach {
                let _ = (&started_w).write_all(why.as_bytes());
            } else {
                eprintln!("sandfs: exec: {why}");
            }
            std::process::exit(code);
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(started_w);
    drop(term);
    if a.detach {
        let mut why = String::new();
        let _ = started_r.read_to_string(&mut why);
        if !why.is_empty() {
            bail!("exec: {why}");
        }
    }
    drop(started_r);
    if let Some((dir, name)) = &pid_file {
        crate::state::write_atomic_at(dir, name, child.as_raw().to_string().as_bytes())
            .context("--pid-file")?;
    }
    let mut relay = None;
    if let Some(m) = master {
        match (console, raw) {
            (Some(sock), _) => crate::lifecycle::send_master(sock, &m).context("--console-socket")?,
            (None, Some(raw)) => {
                let r = crate::tty::Relay::new(m, raw);
                let out = r.start()?;
                relay = Some((r, out));
            }
            (None, None) => {}
        }
    }
    let Some(sigs) = sigs else { return Ok(0) };
    let resize = relay.as_ref().map(|(r, _)| r.resizer()).transpose()?;
    let code = wait_forwarding(child, &sigs, resize.as_ref())?;
    if let Some((r, out)) = relay {
        r.finish(out);
    }
    Ok(code)
}

/// Joins pid 1's namespaces (those that differ from this process's).
fn join(pid1: i32) -> Result<()> {
    let same = |t: &str| {
        let a = std::fs::metadata(format!("/proc/self/ns/{t}"));
        let b = std::fs::metadata(format!("/proc/{pid1}/ns/{t}"));
        matches!((a, b), (Ok(a), Ok(b)) if std::os::unix::fs::MetadataExt::ino(&a) == std::os::unix::fs::MetadataExt::ino(&b))
    };
    let open = |t: &str| -> Result<std::fs::File> {
        std::fs::File::open(format!("/proc/{pid1}/ns/{t}"))
            .with_context(|| format!("open the container's {t} namespace"))
    };
    // All opened first: once in the container's mount namespace, /proc is its own.
    let mut todo = Vec::new();
    for &(name, typ) in NAMESPACES {
        if same(name) || !Path::new(&format!("/proc/{pid1}/ns/{name}")).exists() {
            continue;
        }
        todo.push((name, typ, open(name)?));
    }
    let user = if same("user") { None } else { Some(open("user")?) };
    let mut later = Vec::new();
    for (name, typ, f) in todo {
        match rustix::thread::move_into_link_name_space(f.as_fd(), Some(typ)) {
            Ok(()) => {}
            Err(rustix::io::Errno::PERM) => later.push((name, typ, f)),
            Err(e) => bail!("join the container's {name} namespace: {e}"),
        }
    }
    if let Some(f) = user {
        rustix::thread::move_into_link_name_space(f.as_fd(), Some(rustix::thread::LinkNameSpaceType::User))
            .context("join the container's user namespace")?;
    }
    for (name, typ, f) in later {
        rustix::thread::move_into_link_name_space(f.as_fd(), Some(typ))
            .with_context(|| format!("join the container's {name} namespace"))?;
    }
    Ok(())
}

/// Waits for `child`, forwarding signals; its status (128+N for a signal). With the
/// program's terminal relayed (`resize`: its master), SIGWINCH resizes that terminal
/// to the caller's instead, and the kernel signals the program's foreground group.
fn wait_forwarding(
    child: nix::unistd::Pid,
    sigs: &nix::sys::signal::SigSet,
    resize: Option<&std::os::fd::OwnedFd>,
) -> Result<i32> {
    use nix::sys::wait::{WaitStatus, waitpid};
    let c = child;
    let mut set = *sigs;
    set.add(nix::sys::signal::Signal::SIGCHLD);
    loop {
        match waitpid(c, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, s, _)) => return Ok(128 + s as i32),
            Ok(_) => {}
            Err(e) => bail!("wait for the process: {e}"),
        }
        match (set.wait().context("wait for signals")?, resize) {
            (nix::sys::signal::Signal::SIGCHLD, _) => {}
            (nix::sys::signal::Signal::SIGWINCH, Some(m)) => crate::tty::resize(m),
            (sig, _) => {
                let _ = nix::sys::signal::kill(c, sig);
            }
        }
    }
}
