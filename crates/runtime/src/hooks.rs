//! OCI hooks: programs the spec names, run at fixed points of the lifecycle with
//! the container's state JSON on their stdin. Which process runs them (and so in
//! which namespaces) is the caller's business; this module runs one list.

use anyhow::{Context, Result, bail};
use oci_spec::runtime::Hook;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The lifecycle points, by their config.json names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// Deprecated: runs with createRuntime.
    Prestart,
    /// In the runtime's namespaces, after the container's are made, before pivot_root.
    CreateRuntime,
    /// In the container's mount namespace, before pivot_root.
    CreateContainer,
    /// In the container, after `start`, before the program.
    StartContainer,
    /// In the runtime's namespaces, after the program started.
    Poststart,
    /// In the runtime's namespaces, after the container is deleted.
    Poststop,
}

impl Point {
    /// The config.json name.
    pub fn name(self) -> &'static str {
        match self {
            Point::Prestart => "prestart",
            Point::CreateRuntime => "createRuntime",
            Point::CreateContainer => "createContainer",
            Point::StartContainer => "startContainer",
            Point::Poststart => "poststart",
            Point::Poststop => "poststop",
        }
    }

    /// The hooks of this point in `spec`.
    pub fn of(self, spec: &oci_spec::runtime::Spec) -> Vec<Hook> {
        let Some(h) = spec.hooks() else { return Vec::new() };
        #[allow(deprecated)]
        let list = match self {
            Point::Prestart => h.prestart(),
            Point::CreateRuntime => h.create_runtime(),
            Point::CreateContainer => h.create_container(),
            Point::StartContainer => h.start_container(),
            Point::Poststart => h.poststart(),
            Point::Poststop => h.poststop(),
        };
        list.clone().unwrap_or_default()
    }
}

/// Runs `hooks` in order, each with `state` on stdin; the first that fails (exit
/// status not 0, not started, or past its `timeout`, then killed) stops the list.
pub fn run_all(point: Point, hooks: &[Hook], state: &[u8]) -> Result<()> {
    for (i, h) in hooks.iter().enumerate() {
        run_one(h, state).with_context(|| format!("hooks.{}[{i}] {}", point.name(), h.path().display()))?;
    }
    Ok(())
}

/// Runs every hook of a point whose failure is only worth a warning (poststart,
/// poststop): failures are returned as messages and the rest still run.
pub fn run_warn(point: Point, hooks: &[Hook], state: &[u8]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (i, h) in hooks.iter().enumerate() {
        if let Err(e) = run_one(h, state) {
            warnings.push(format!("hooks.{}[{i}] {}: {e:#}", point.name(), h.path().display()));
        }
    }
    warnings
}

/// Runs createContainer hooks in the container's user and mount namespaces (those
/// of `pid1`, before its pivot_root: the path resolves as the runtime sees it), as
/// the container's root.
pub fn run_in_container(pid1: i32, hooks: &[Hook], state: &[u8]) -> Result<()> {
    use std::os::fd::AsRawFd;
    let user =
        std::fs::File::open(format!("/proc/{pid1}/ns/user")).context("the container's user namespace")?;
    let mnt =
        std::fs::File::open(format!("/proc/{pid1}/ns/mnt")).context("the container's mount namespace")?;
    let (user, mnt) = (user.as_raw_fd(), mnt.as_raw_fd());
    for (i, h) in hooks.iter().enumerate() {
        let mut cmd = command(h);
        // SAFETY: runs in the forked child before exec, which is single-threaded (as
        // joining a user namespace requires); only raw system calls on descriptors
        // the parent keeps open until spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                for (fd, ns) in [(user, libc::CLONE_NEWUSER), (mnt, libc::CLONE_NEWNS)] {
                    if libc::setns(fd, ns) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if libc::setresgid(0, 0, 0) != 0 || libc::setresuid(0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        wait_for(cmd, h, state)
            .with_context(|| format!("hooks.createContainer[{i}] {}", h.path().display()))?;
    }
    Ok(())
}

fn command(h: &Hook) -> Command {
    let mut cmd = Command::new(h.path());
    let args = h.args().clone().unwrap_or_default();
    if let Some((arg0, rest)) = args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear();
    for kv in h.env().clone().unwrap_or_default() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    cmd
}

fn run_one(h: &Hook, state: &[u8]) -> Result<()> {
    wait_for(command(h), h, state)
}

fn wait_for(mut cmd: Command, h: &Hook, state: &[u8]) -> Result<()> {
    let mut child = cmd.spawn().context("start")?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine: EPIPE is ignored.
        let _ = stdin.write_all(state);
    }
    let deadline = h.timeout().map(|t| Instant::now() + Duration::from_secs(t.max(1) as u64));
    let mut nap = Duration::from_millis(1);
    let status = loop {
        if let Some(st) = child.try_wait().context("wait")? {
            break st;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {}s", h.timeout().unwrap_or(0));
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    };
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(c), _) => bail!("exit status {c}"),
        (_, Some(s)) => bail!("killed by signal {s}"),
        _ => bail!("{status}"),
    }
}
