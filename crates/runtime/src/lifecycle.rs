//! The OCI runtime commands engines drive (`create`, `start`, `state`, `kill`,
//! `delete`, `list`, `ps`, `pause`, `resume`, `update`), as runc exposes them.
//!
//! `create` forks a *monitor*, which stays: it holds the gofers and serves the
//! container's view over FUSE, builds the container (the same launch as `sandfs
//! run`) and keeps pid 1 waiting before exec; `create` itself returns once the
//! state file is written. `start` asks the monitor, over a socket in the state
//! directory, to let pid 1 exec the program. pid 1 is never the monitor's child:
//! it belongs to whoever reaps orphans for the engine (conmon, containerd's shim),
//! which waits for it, as for a runc container's init. The monitor ends with pid 1.

use crate::run::{Ask, FsArgs, Launched, Limits, Prepared};
use crate::state::{State, Status, Store, proc_start};
use anyhow::{Context, Result, bail};
use std::io::{BufRead, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// The runtime flags engines pass before the command.
#[derive(Clone, Debug)]
pub struct Global {
    /// The state directory.
    pub root: PathBuf,
    /// `--overlay2`.
    pub overlay2: String,
    /// `--file-access`.
    pub file_access: String,
    /// `--file-access-mounts`.
    pub file_access_mounts: String,
    /// `--systemd-cgroup`: cgroupsPath is `slice:prefix:name`.
    pub systemd_cgroup: bool,
    /// Where the monitor writes what it has to say (`--log`).
    pub log: Option<PathBuf>,
    /// `--log-format json`.
    pub log_json: bool,
}

/// Arguments of `create`.
#[derive(Clone, Debug, Default)]
pub struct CreateArgs {
    /// The container id.
    pub id: String,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Where to write pid 1's pid.
    pub pid_file: Option<PathBuf>,
    /// The socket to send the terminal's master to.
    pub console_socket: Option<PathBuf>,
}

impl Global {
    fn fs(&self, bundle: &Path) -> FsArgs {
        FsArgs {
            bundle: Some(bundle.to_path_buf()),
            rootfs: None,
            bind: Vec::new(),
            tmpfs: Vec::new(),
            overlay2: self.overlay2.clone(),
            file_access: self.file_access.clone(),
            file_access_mounts: self.file_access_mounts.clone(),
        }
    }
}

/// `create`: returns once the container is created (its monitor running).
pub fn create(g: &Global, a: &CreateArgs) -> Result<()> {
    crate::run::seal_inherited();
    crate::limits::raise_nofile();
    let store = Store::open(&g.root)?;
    let dir = store.reserve(&a.id)?;
    let failed = |e: anyhow::Error| -> Result<()> {
        let _ = std::fs::remove_dir_all(&dir);
        Err(e)
    };
    let (mut result_r, result_w) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return failed(e.into()),
    };
    // SAFETY: this process is single-threaded here (nothing has started a thread:
    // the command line was parsed and a directory made), so the child may run
    // ordinary code.
    match unsafe { nix::unistd::fork() } {
        Err(e) => failed(anyhow::anyhow!("fork the monitor: {e}")),
        Ok(nix::unistd::ForkResult::Child) => {
            drop(result_r);
            let code = monitor(g, a, &store, result_w);
            std::process::exit(code)
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(result_w);
            let mut said = String::new();
            let _ = result_r.read_to_string(&mut said);
            if said == "ok" {
                return Ok(());
            }
            // The monitor cleans up after itself and exits; then its directory goes.
            let _ = nix::sys::wait::waitpid(child, None);
            let why = said.strip_prefix("error: ").unwrap_or("the monitor ended during setup").to_string();
            failed(anyhow::anyhow!(why))
        }
    }
}

/// A systemd `slice:prefix:name` cgroupsPath as the cgroupfs path systemd would
/// give it (`a-b.slice` nests under `a.slice`); sandfs writes the cgroup itself.
fn systemd_path(p: &str) -> Option<PathBuf> {
    let mut parts = p.split(':');
    let (slice, prefix, name) = (parts.next()?, parts.next()?, parts.next()?);
    let mut path = PathBuf::from("/");
    let slice = if slice.is_empty() { "system.slice" } else { slice };
    let base = slice.strip_suffix(".slice").unwrap_or(slice);
    let mut acc = String::new();
    for part in base.split('-').filter(|s| !s.is_empty()) {
        if !acc.is_empty() {
            acc.push('-');
        }
        acc.push_str(part);
        path.push(format!("{acc}.slice"));
    }
    path.push(if prefix.is_empty() { format!("{name}.scope") } else { format!("{prefix}-{name}.scope") });
    Some(path)
}

/// The monitor: builds and launches the container, says how that went on
/// `result`, then serves it until pid 1 ends. Returns the exit status.
fn monitor(g: &Global, a: &CreateArgs, store: &Store, result: std::io::PipeWriter) -> i32 {
    let _ = rustix::process::setsid();
    let mut result = Some(result);
    let mut tell = |s: &str| {
        if let Some(mut w) = result.take() {
            let _ = w.write_all(s.as_bytes());
        }
    };
    let dir = store.dir(&a.id);
    let mut cg_keep = None;
    let launched = (|| -> Result<(Prepared, Launched)> {
        let fs = g.fs(&a.bundle);
        let cfg = fs.config()?;
        let (mut spec, bundle) = fs.spec()?;
        let terminal = spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
        match (terminal, &a.console_socket) {
            (true, None) => bail!("process.terminal is true: --console-socket is required (create detaches)"),
            (false, Some(_)) => bail!("--console-socket given but process.terminal is false"),
            _ => {}
        }
        if g.systemd_cgroup
            && let Some(linux) = spec.linux_mut()
            && let Some(p) = linux.cgroups_path().clone()
        {
            let text = p.display().to_string();
            let mapped = systemd_path(&text).with_context(|| {
                format!("linux.cgroupsPath {text:?}: want slice:prefix:name with --systemd-cgroup")
            })?;
            linux.set_cgroups_path(Some(mapped));
        }
        // Private: the environment may hold secrets.
        crate::state::write_atomic(&dir.join("config.json"), &serde_json::to_vec(&spec)?)
            .context("keep the spec")?;
        crate::run::split_dev(&mut spec);
        // The caller's stdio is the container's alone: this process and the gofers
        // let go of it (an engine waits for it to close), warnings go to the log.
        let stdio = take_stdio()?;
        if let Some(log) = &g.log {
            crate::log_to(log, g.log_json);
        }
        cg_keep = crate::run::sandbox_cgroup(&Limits::default(), &spec, &a.id, false)?;
        let ask = Ask { cmd: &[], network: None, tty: false, attached: false };
        let mut prep = crate::run::prepare(&fs, cfg, spec, bundle, &ask)?;
        prep.stdio = Some(stdio);
        // The view's mount point, in the state directory: the sandbox (container
        // root, an unprivileged host id) may pass through it (0711) to this empty
        // directory and no host path is covered for it.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .with_context(|| format!("chmod 0711 {}", dir.display()))?;
        if let Some(mnt) = view_mount_point(&dir, &a.id) {
            prep.params.root = mnt;
            prep.params.own_mount_point = true;
        }
        let (id, b, s) = (a.id.clone(), prep.bundle.clone(), prep.spec.clone());
        let launched = crate::run::launch(&mut prep, cg_keep.as_ref(), &|pid| {
            crate::run::hook_state(&id, "creating", pid, &b, &s)
        })
        .map_err(|f| f.error)?;
        Ok((prep, launched))
    })();
    let (prep, mut launched) = match launched {
        Ok(l) => l,
        Err(e) => {
            tell(&format!("error: {e:#}"));
            if let Some(mut cg) = cg_keep.take() {
                let _ = cg.destroy_now();
            }
            remove_view_mount_point(&a.id, std::process::id() as i32);
            return 1;
        }
    };
    let finish = (|| -> Result<UnixListener> {
        if let (Some(master), Some(sock)) = (launched.master.take(), &a.console_socket) {
            send_console(sock, master)?;
        }
        let (pid_start, _) = proc_start(launched.pid1).context("pid 1 ended during setup")?;
        let me = std::process::id() as i32;
        let (monitor_start, _) = proc_start(me).context("the monitor's own start time")?;
        let root = prep.spec.root().as_ref().map(|r| r.path().clone()).unwrap_or_default();
        let st = State {
            id: a.id.clone(),
            status: Status::Created,
            pid: launched.pid1,
            pid_start,
            monitor: me,
            monitor_start,
            bundle: prep.bundle.clone(),
            rootfs: if root.is_absolute() { root } else { prep.bundle.join(root) },
            annotations: prep.spec.annotations().clone().unwrap_or_default().into_iter().collect(),
            created: crate::state::now_rfc3339(),
            owner: rustix::process::getuid().as_raw(),
            // `delete` removes it, from the state file.
            cgroup: cg_keep.take().map(|mut cg| {
                cg.disown();
                cg
            }),
        };
        store.save(&st)?;
        if let Some(f) = &prep.params.seccomp {
            crate::state::write_atomic(&dir.join("seccomp.json"), &serde_json::to_vec(f)?)?;
        }
        if let Some(p) = &a.pid_file {
            crate::state::write_atomic(p, launched.pid1.to_string().as_bytes())
                .with_context(|| format!("--pid-file {}", p.display()))?;
        }
        listen(&dir)
    })();
    let listener = match finish {
        Ok(l) => l,
        Err(e) => {
            tell(&format!("error: {e:#}"));
            let _ = rustix::process::Pid::from_raw(launched.pid1)
                .map(|p| rustix::process::kill_process(p, rustix::process::Signal::KILL));
            if let Ok(st) = store.load(&a.id)
                && let Some(mut cg) = st.cgroup
            {
                let _ = cg.destroy_now();
            }
            remove_view_mount_point(&a.id, std::process::id() as i32);
            return 1;
        }
    };
    tell("ok");
    serve(store, &a.id, &launched, listener);
    // The gofers and the view go with this process.
    drop(prep);
    0
}

/// Where a container's view is mounted in its sandbox's mount namespace: an empty
/// directory of the runtime's that the container's root can reach, so that no host
/// path is covered for it. The container's state directory when reachable; for a
/// root-started runtime whose state directory is not (docker's exec root is 0700),
/// one under /run/sandfs/views; otherwise none (a scratch tmpfs over /tmp then).
fn view_mount_point(dir: &Path, id: &str) -> Option<PathBuf> {
    let own = dir.join("mnt");
    if std::fs::create_dir(&own).is_ok() && reachable(&own) {
        return Some(own);
    }
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let base = Path::new(VIEWS);
    std::fs::create_dir_all(base).ok()?;
    for d in [Path::new("/run/sandfs"), base] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o711)).ok()?;
    }
    let mnt = base.join(format!("{id}-{}", std::process::id()));
    std::fs::create_dir(&mnt).ok()?;
    reachable(&mnt).then_some(mnt)
}

/// Mount points of views whose state directory the container cannot reach.
const VIEWS: &str = "/run/sandfs/views";

/// Removes the mount point [`view_mount_point`] made outside the state directory.
fn remove_view_mount_point(id: &str, monitor: i32) {
    let _ = std::fs::remove_dir(Path::new(VIEWS).join(format!("{id}-{monitor}")));
}

/// Whether the container's root (an unprivileged host id: the caller's own when
/// rootless) may walk down to `path`: every directory above it searchable by
/// others, or (rootless) by its owner when that is the caller.
fn reachable(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::getuid().as_raw();
    path.ancestors().skip(1).all(|d| {
        std::fs::metadata(d)
            .is_ok_and(|m| m.mode() & 0o001 != 0 || (me != 0 && m.uid() == me && m.mode() & 0o100 != 0))
    })
}

/// Takes this process's stdin, stdout and stderr (returned, for the container) and
/// puts /dev/null in their place.
fn take_stdio() -> Result<[OwnedFd; 3]> {
    let dup = |fd: std::os::fd::BorrowedFd<'_>| {
        rustix::io::fcntl_dupfd_cloexec(fd, 3).context("keep the container's stdio")
    };
    let saved =
        [dup(std::io::stdin().as_fd())?, dup(std::io::stdout().as_fd())?, dup(std::io::stderr().as_fd())?];
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").context("/dev/null")?;
    rustix::stdio::dup2_stdin(&null)?;
    rustix::stdio::dup2_stdout(&null)?;
    rustix::stdio::dup2_stderr(&null)?;
    Ok(saved)
}

/// Sends the terminal's master to the engine's console socket (SCM_RIGHTS), as
/// runc does.
fn send_console(sock: &Path, master: OwnedFd) -> Result<()> {
    let s = UnixStream::connect(sock).with_context(|| format!("--console-socket {}", sock.display()))?;
    send_master(s, &master).with_context(|| format!("--console-socket {}", sock.display()))
}

/// Sends a terminal's master over a connected console socket, named as runc names
/// it.
pub(crate) fn send_master(sock: UnixStream, master: &OwnedFd) -> Result<()> {
    let conn = sandfs_gofer::transport::Conn::new(OwnedFd::from(sock));
    Ok(conn.send(b"/dev/ptmx", &[master.as_fd()])?)
}

/// The control socket, bound by a short relative name (ids make long paths, and a
/// socket path has 108 bytes).
fn listen(dir: &Path) -> Result<UnixListener> {
    let d = std::fs::File::open(dir).with_context(|| format!("open {}", dir.display()))?;
    let path = format!("/proc/self/fd/{}/ctl.sock", d.as_raw_fd());
    let l = UnixListener::bind(&path).with_context(|| format!("bind {}/ctl.sock", dir.display()))?;
    // The directory lets others through (0711): the socket's own mode keeps them out,
    // whatever umask the caller had.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("chmod {}/ctl.sock", dir.display()))?;
    Ok(l)
}

/// Connects to a container's monitor.
fn connect(dir: &Path) -> Result<UnixStream> {
    let d = std::fs::File::open(dir).with_context(|| format!("open {}", dir.display()))?;
    let path = format!("/proc/self/fd/{}/ctl.sock", d.as_raw_fd());
    UnixStream::connect(&path).context("the container's monitor is gone")
}

/// Serves `start` until pid 1 ends.
fn serve(store: &Store, id: &str, launched: &Launched, listener: UnixListener) {
    let pidfd = rustix::process::Pid::from_raw(launched.pid1)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
    let Some(pidfd) = pidfd else { return };
    let mut started = false;
    loop {
        let mut fds = [
            rustix::event::PollFd::new(&listener, rustix::event::PollFlags::IN),
            rustix::event::PollFd::new(&pidfd, rustix::event::PollFlags::IN),
        ];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        }
        if !fds[1].revents().is_empty() {
            // pid 1 ended: the kernel ends the rest of the pid namespace.
            return;
        }
        if fds[0].revents().is_empty() {
            continue;
        }
        let Ok((conn, _)) = listener.accept() else { continue };
        // Only this runtime's own user commands a container, whatever the socket's
        // mode let through.
        let peer = rustix::net::sockopt::socket_peercred(&conn).map(|c| c.uid);
        if peer != Ok(rustix::process::geteuid()) {
            continue;
        }
        let mut line = String::new();
        let mut r = std::io::BufReader::new(&conn);
        if r.read_line(&mut line).is_err() {
            continue;
        }
        let reply = match line.trim() {
            "start" if started => "error: the container was already started".to_string(),
            "start" => {
                started = true;
                match start_here(store, id, launched) {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("error: {e:#}"),
                }
            }
            other => format!("error: unknown request {other:?}"),
        };
        let _ = (&conn).write_all(reply.as_bytes());
    }
}

/// In the monitor: lets pid 1 exec and records the container running.
fn start_here(store: &Store, id: &str, launched: &Launched) -> Result<()> {
    let mut st = store.load(id)?;
    launched.start(&serde_json::to_vec(&st.oci())?)?;
    st.status = Status::Running;
    store.save(&st)
}

/// `start`: the program runs; poststart hooks follow.
pub fn start(g: &Global, id: &str) -> Result<()> {
    let store = Store::open(&g.root)?;
    let _lock = store.lock(id)?;
    let st = store.load(id)?;
    match st.status() {
        Status::Created => {}
        Status::Stopped => bail!("cannot start a container that has stopped"),
        s => bail!("cannot start an already {} container", s.name()),
    }
    let conn = connect(&store.dir(id))?;
    (&conn).write_all(b"start\n")?;
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let mut reply = String::new();
    (&conn).read_to_string(&mut reply).context("the monitor's reply")?;
    if let Some(e) = reply.strip_prefix("error: ") {
        bail!("{e}");
    }
    if reply != "ok" {
        bail!("the container's monitor ended while starting it");
    }
    let spec = spec_of(&store, id)?;
    let st = store.load(id)?;
    let state = serde_json::to_vec(&st.oci())?;
    for w in crate::hooks::run_warn(
        crate::hooks::Point::Poststart,
        &crate::hooks::Point::Poststart.of(&spec),
        &state,
    ) {
        crate::warn(&w);
    }
    Ok(())
}

/// The spec a container was created with.
pub fn spec_of(store: &Store, id: &str) -> Result<oci_spec::runtime::Spec> {
    let p = store.dir(id).join("config.json");
    let text = std::fs::read(&p).with_context(|| format!("read {}", p.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("{}", p.display()))
}

/// `state`: the OCI state JSON.
pub fn state(g: &Global, id: &str) -> Result<String> {
    let store = Store::open(&g.root)?;
    let st = store.load(id)?;
    Ok(serde_json::to_string_pretty(&st.oci())?)
}

/// A signal by name (`TERM`, `SIGTERM`) or number.
pub fn parse_signal(s: &str) -> Result<nix::sys::signal::Signal> {
    use std::str::FromStr;
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).map_err(|_| anyhow::anyhow!("unknown signal {s:?}"));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") { up } else { format!("SIG{up}") };
    nix::sys::signal::Signal::from_str(&name).map_err(|_| anyhow::anyhow!("unknown signal {s:?}"))
}

/// The pids (in this pid namespace) of every process in the pid namespace of
/// `pid1`.
pub fn pids_of(pid1: i32) -> Vec<i32> {
    let Ok(ns) = std::fs::read_link(format!("/proc/{pid1}/ns/pid")) else { return Vec::new() };
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok())
                && std::fs::read_link(format!("/proc/{pid}/ns/pid")).is_ok_and(|n| n == ns)
            {
                out.push(pid);
            }
        }
    }
    out.sort();
    out
}

/// `kill`: `sig` to pid 1, or with `all` to every process of the container.
pub fn kill(g: &Global, id: &str, sig: &str, all: bool) -> Result<()> {
    let sig = parse_signal(sig)?;
    let store = Store::open(&g.root)?;
    let st = store.load(id)?;
    let status = st.status();
    if status == Status::Stopped {
        bail!("container {id} is not running");
    }
    let targets = if all { pids_of(st.pid) } else { vec![st.pid] };
    for p in targets {
        // The container's pid 1 is checked by start time; others may be gone.
        let r = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), sig);
        if p == st.pid
            && let Err(e) = r
        {
            bail!("signal {sig} to pid {p}: {e}");
        }
    }
    // A frozen process (cgroup v1) does not die of SIGKILL until thawed: a paused
    // container is thawed for it, as runc does, so that it ends now.
    if status == Status::Paused
        && sig == nix::sys::signal::Signal::SIGKILL
        && let Some(cg) = &st.cgroup
    {
        cg.thaw().with_context(|| format!("container {id}: thaw it for SIGKILL"))?;
    }
    Ok(())
}

/// Waits until `pid` (started at `start`) is gone, up to `secs` seconds.
fn wait_gone(pid: i32, start: u64, secs: u64) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut nap = std::time::Duration::from_millis(1);
    while crate::state::alive(pid, start) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(std::time::Duration::from_millis(20));
    }
    true
}

/// `delete`: frees everything of a stopped (or created) container; `force`
/// kills a running one first.
pub fn delete(g: &Global, id: &str, force: bool) -> Result<()> {
    let store = Store::open(&g.root)?;
    let st = match store.load(id) {
        Ok(st) => st,
        Err(e) => {
            // A create that died before its state file: its directory only.
            let dir = store.dir(id);
            if dir.is_dir() && !dir.join("state.json").exists() {
                let _ = std::fs::remove_dir_all(&dir);
                if force {
                    return Ok(());
                }
            }
            if force && e.to_string().contains("does not exist") {
                return Ok(());
            }
            return Err(e);
        }
    };
    let _lock = store.lock(id)?;
    let status = st.status();
    match status {
        Status::Stopped | Status::Created => {}
        s if !force => bail!("cannot delete container {id} that is not stopped: {}", s.name()),
        _ => {}
    }
    if status != Status::Stopped {
        for p in pids_of(st.pid) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
        }
        if let Some(cg) = &st.cgroup {
            let _ = cg.thaw();
        }
        if !wait_gone(st.pid, st.pid_start, 10) {
            bail!("container {id}: pid 1 ({}) did not end after SIGKILL", st.pid);
        }
    }
    // The monitor ends with pid 1; a stuck one is killed.
    if !wait_gone(st.monitor, st.monitor_start, 5) {
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(st.monitor), nix::sys::signal::Signal::SIGKILL);
        wait_gone(st.monitor, st.monitor_start, 5);
    }
    if let Some(mut cg) = st.cgroup {
        cg.destroy_now().with_context(|| format!("container {id}: remove its cgroup"))?;
    }
    let spec = spec_of(&store, id).ok();
    let dir = store.dir(id);
    std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    remove_view_mount_point(id, st.monitor);
    if let Some(spec) = spec {
        let stopped = crate::state::oci_state(id, "stopped", 0, &st.bundle, &st.annotations);
        for w in crate::hooks::run_warn(
            crate::hooks::Point::Poststop,
            &crate::hooks::Point::Poststop.of(&spec),
            &serde_json::to_vec(&stopped)?,
        ) {
            crate::warn(&w);
        }
    }
    Ok(())
}

/// `pause`: freezes the container's cgroup.
pub fn pause(g: &Global, id: &str) -> Result<()> {
    let store = Store::open(&g.root)?;
    let _lock = store.lock(id)?;
    let st = store.load(id)?;
    match st.status() {
        Status::Running | Status::Created => {}
        s => bail!("container {id} is {}, not running", s.name()),
    }
    let cg = st.cgroup.as_ref().with_context(|| format!("container {id} has no cgroup to freeze"))?;
    cg.freeze().with_context(|| format!("pause {id}"))
}

/// `resume`: thaws a paused container.
pub fn resume(g: &Global, id: &str) -> Result<()> {
    let store = Store::open(&g.root)?;
    let _lock = store.lock(id)?;
    let st = store.load(id)?;
    if st.status() != Status::Paused {
        bail!("container {id} is not paused");
    }
    let cg = st.cgroup.as_ref().with_context(|| format!("container {id} has no cgroup"))?;
    cg.thaw().with_context(|| format!("resume {id}"))
}

/// `update --resources`: new `linux.resources` for a live container.
pub fn update(g: &Global, id: &str, resources: &[u8]) -> Result<Vec<String>> {
    let store = Store::open(&g.root)?;
    let _lock = store.lock(id)?;
    let st = store.load(id)?;
    if st.status() == Status::Stopped {
        bail!("container {id} is not running");
    }
    let r: oci_spec::runtime::LinuxResources =
        serde_json::from_slice(resources).context("--resources: not a linux.resources JSON object")?;
    let cg = st.cgroup.as_ref().with_context(|| format!("container {id} has no cgroup"))?;
    cg.apply(&r).context("--resources")
}

/// `list`: every container, as a table or JSON.
pub fn list(g: &Global, json: bool) -> Result<String> {
    let store = Store::open(&g.root)?;
    let mut states = Vec::new();
    for id in store.ids()? {
        if let Ok(st) = store.load(&id) {
            states.push(st.oci());
        }
    }
    if json {
        return Ok(serde_json::to_string(&states)?);
    }
    let mut out = String::from("ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n");
    for s in &states {
        let f = |k: &str| s[k].as_str().map(String::from).unwrap_or_else(|| s[k].to_string());
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            f("id"),
            f("pid"),
            f("status"),
            f("bundle"),
            f("created"),
            f("owner")
        ));
    }
    Ok(out)
}

/// `ps`: the container's processes: JSON pids, or `ps -ef` (with `ps_args`)
/// filtered to them.
pub fn ps(g: &Global, id: &str, json: bool, ps_args: &[String]) -> Result<String> {
    let store = Store::open(&g.root)?;
    let st = store.load(id)?;
    let pids = if st.status() == Status::Stopped { Vec::new() } else { pids_of(st.pid) };
    if json {
        return Ok(serde_json::to_string(&pids)?);
    }
    let args: Vec<String> = if ps_args.is_empty() { vec!["-ef".into()] } else { ps_args.to_vec() };
    let out = std::process::Command::new("ps").args(&args).output().context("run ps")?;
    if !out.status.success() {
        bail!("ps {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let col = header.split_whitespace().position(|h| h == "PID").context("ps printed no PID column")?;
    let mut res = format!("{header}\n");
    for l in lines {
        if l.split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(|p| pids.contains(&p))
        {
            res.push_str(l);
            res.push('\n');
        }
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_paths_nest_slices_as_systemd_does() {
        assert_eq!(
            systemd_path("machine-a.slice:libpod:abc").unwrap(),
            Path::new("/machine.slice/machine-a.slice/libpod-abc.scope")
        );
        assert_eq!(systemd_path(":docker:x").unwrap(), Path::new("/system.slice/docker-x.scope"));
        assert!(systemd_path("/plain/path").is_none());
    }

    #[test]
    fn signals_by_name_and_number() {
        use nix::sys::signal::Signal;
        assert_eq!(parse_signal("TERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("sigkill").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("1").unwrap(), Signal::SIGHUP);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
    }
}
