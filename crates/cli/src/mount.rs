//! `sandfs mount [FLAGS] MOUNTPOINT`: build a mount namespace and serve it over FUSE,
//! for inspection and for external test suites.
//!
//! - The root is a host directory (`--rootfs`, default `/`) served by a gofer child
//!   process (`sandfs gofer`, confined), seen through an in-memory overlay
//!   (`--overlay2 root:memory`, the default: writes land in a tmpfs upper layer and
//!   never reach the host) or directly (`--overlay2 none`: read-only unless `--rw`,
//!   which writes to the host).
//! - `--bind SRC:DST[:ro]` mounts another host path (through the same gofer) at DST,
//!   writable on the host unless `:ro`; `--tmpfs DST[:size=N,mode=M,...]` mounts a
//!   memory filesystem at DST. Missing mount points are created (in the upper layer).
//! - Foreground by default: SIGINT, SIGTERM and SIGHUP unmount and end it (a second
//!   signal exits at once); `--daemon` returns once the mount is live and serves in
//!   the background. An external `umount MOUNTPOINT` ends it too. The gofer ends
//!   with its connections and is reaped.

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use rustix::fd::{AsRawFd, BorrowedFd, OwnedFd};
use sandfs_fuse::{CachePolicy, Options, Server};
use sandfs_gofer::client::{FileAccess, GoferFs};
use sandfs_gofer::transport::Conn;
use sandfs_overlay::Overlay;
use sandfs_tmpfs::{Tmpfs, TmpfsOptions};
use sandfs_vfs::{FileType, Filesystem, MountFlags, MountNamespace};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Arguments of `sandfs mount`.
#[derive(Args, Debug)]
pub struct MountArgs {
    /// Host directory served as the root, through a gofer.
    #[arg(long, value_name = "DIR", default_value = "/")]
    rootfs: PathBuf,
    /// Writable layer over the root: `root:memory` (a tmpfs upper layer) or `none`
    /// (the global `--overlay2`).
    #[arg(skip = String::from("root:memory"))]
    pub overlay2: String,
    /// With `--overlay2 none`: serve the root writable (writes reach the host).
    #[arg(long)]
    rw: bool,
    /// Who else changes the files: `exclusive` (cache long) or `shared` (revalidate)
    /// (the global `--file-access`).
    #[arg(skip = String::from("exclusive"))]
    pub file_access: String,
    /// Mount a host path at DST (writable on the host unless `:ro`). Repeatable.
    #[arg(long = "bind", value_name = "SRC:DST[:ro]")]
    binds: Vec<String>,
    /// Mount a memory filesystem at DST with tmpfs options (size=, mode=, uid=,
    /// gid=, nr_inodes=). Repeatable.
    #[arg(long = "tmpfs", value_name = "DST[:OPTS]")]
    tmpfs: Vec<String>,
    /// Return once the mount is live and keep serving in the background.
    #[arg(long)]
    daemon: bool,
    /// FUSE worker threads.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Never hand file data to the kernel (FUSE passthrough).
    #[arg(long)]
    no_passthrough: bool,
    /// Internal: the daemon's readiness channel.
    #[arg(long, hide = true)]
    ready_fd: Option<i32>,
    /// Where to mount.
    mountpoint: PathBuf,
}

/// One host path the gofer serves.
struct Served {
    path: PathBuf,
    readonly: bool,
    conn: Option<Conn>,
}

/// An extra mount inside the namespace.
enum Extra {
    Bind { src: usize, dst: String, readonly: bool, kind: FileType },
    Tmpfs { dst: String, opts: TmpfsOptions },
}

impl Extra {
    fn dst(&self) -> &str {
        match self {
            Extra::Bind { dst, .. } | Extra::Tmpfs { dst, .. } => dst,
        }
    }
}

/// Run `sandfs mount`.
pub fn run(args: MountArgs) -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!(
            "sandfs mount needs root: it mounts FUSE in the caller's mount namespace and starts \
             privileged gofers (an ordinary user can use `sandfs run`, which runs rootless)"
        );
    }
    if args.daemon {
        return daemonize();
    }
    sandfs_runtime::limits::raise_nofile();
    let ready = match args.ready_fd {
        Some(fd) => Some(inherited(fd)?),
        None => None,
    };
    match serve(&args, ready.as_ref()) {
        Ok(()) => Ok(()),
        Err(e) => {
            if let Some(r) = &ready {
                let _ = (&*r).write_all(format!("{e:#}").as_bytes());
            }
            Err(e)
        }
    }
}

fn inherited(fd: i32) -> Result<UnixStream> {
    if fd < 3 {
        bail!("--ready-fd {fd}: not a channel");
    }
    // SAFETY: the fd number is only borrowed for the fstat check.
    let st = rustix::fs::fstat(unsafe { BorrowedFd::borrow_raw(fd) }).context("--ready-fd is not open")?;
    if st.st_mode & 0o170000 != 0o140000 {
        bail!("--ready-fd {fd}: not a socket");
    }
    // SAFETY: the parent passed this socket to this process for its exclusive use.
    let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC)?;
    Ok(UnixStream::from(owned))
}

/// `--daemon`: start this command again without it, detached, and wait until it
/// says the mount is live (a byte 1) or fails (its error text, then EOF).
fn daemonize() -> Result<()> {
    let (mine, theirs) = UnixStream::pair().context("socketpair")?;
    let raw = theirs.as_raw_fd();
    let exe = std::env::current_exe().context("find the sandfs executable")?;
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).filter(|a| a != "--daemon").collect();
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .arg("--ready-fd")
        .arg(raw.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe system calls: setsid and
    // fcntl on a descriptor that stays open in the parent until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            let _ = rustix::process::setsid();
            let fd = BorrowedFd::borrow_raw(raw);
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).map_err(std::io::Error::from)
        });
    }
    let child = cmd.spawn().context("start the sandfs mount daemon")?;
    drop(theirs);
    let mut first = [0u8; 1];
    let mut rest = Vec::new();
    let mut r = &mine;
    match r.read(&mut first) {
        Ok(1) if first[0] == 1 => {
            println!("{}", child.id());
            Ok(())
        }
        Ok(1) => {
            let _ = r.read_to_end(&mut rest);
            let mut msg = vec![first[0]];
            msg.extend(rest);
            Err(anyhow!("{}", String::from_utf8_lossy(&msg)))
        }
        _ => Err(anyhow!("the sandfs mount daemon exited before the mount was live")),
    }
}

fn parse_extras(args: &MountArgs, served: &mut Vec<Served>) -> Result<Vec<Extra>> {
    let mut extras = Vec::new();
    for b in &args.binds {
        let mut parts: Vec<&str> = b.splitn(3, ':').collect();
        let readonly = match parts.get(2) {
            None => false,
            Some(&"ro") => true,
            Some(&"rw") => false,
            Some(o) => bail!("--bind {b:?}: unknown option {o:?} (ro or rw)"),
        };
        parts.truncate(2);
        let [src, dst] = parts[..] else { bail!("--bind {b:?}: wants SRC:DST[:ro]") };
        if !dst.starts_with('/') {
            bail!("--bind {b:?}: the destination must be absolute");
        }
        let src = std::fs::canonicalize(src).with_context(|| format!("--bind {b:?}: source"))?;
        let meta = std::fs::metadata(&src).with_context(|| format!("--bind {b:?}: source"))?;
        let kind = if meta.is_dir() { FileType::Directory } else { FileType::Regular };
        served.push(Served { path: src, readonly, conn: None });
        extras.push(Extra::Bind { src: served.len() - 1, dst: dst.to_string(), readonly, kind });
    }
    for t in &args.tmpfs {
        let (dst, opts) = t.split_once(':').unwrap_or((t.as_str(), ""));
        if !dst.starts_with('/') {
            bail!("--tmpfs {t:?}: the destination must be absolute");
        }
        let opts = TmpfsOptions::parse(opts).map_err(|e| anyhow!("--tmpfs {t:?}: {e}"))?;
        extras.push(Extra::Tmpfs { dst: dst.to_string(), opts });
    }
    // Parents before children, whatever the order given.
    extras.sort_by_key(|e| e.dst().split('/').filter(|c| !c.is_empty()).count());
    Ok(extras)
}

/// Start `sandfs gofer` serving every path, one connection each.
fn start_gofer(served: &mut [Served]) -> Result<Child> {
    let exe = std::env::current_exe().context("find the sandfs executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("gofer").stdin(Stdio::null());
    let mut theirs = Vec::new();
    for s in served.iter_mut() {
        let (mine, other) = Conn::pair().map_err(|e| anyhow!("socketpair: {e}"))?;
        let other = other.into_fd();
        let spec =
            format!("{}:{}{}", other.as_raw_fd(), s.path.display(), if s.readonly { ":ro" } else { "" });
        cmd.arg("--serve").arg(spec);
        s.conn = Some(mine);
        theirs.push(other);
    }
    let raws: Vec<i32> = theirs.iter().map(|f| f.as_raw_fd()).collect();
    // SAFETY: between fork and exec only async-signal-safe system calls (fcntl,
    // prctl) on descriptors that stay open in the parent until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            for &raw in &raws {
                let fd = BorrowedFd::borrow_raw(raw);
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).map_err(std::io::Error::from)?;
            }
            let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
            Ok(())
        });
    }
    let child = cmd.spawn().context("start sandfs gofer")?;
    drop(theirs);
    Ok(child)
}

/// Wait for the gofer to end by itself (its connections are closed), then kill it.
fn reap(mut child: Child) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() >= deadline => break,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn build(args: &MountArgs, served: &mut [Served], extras: &[Extra]) -> Result<Arc<MountNamespace>> {
    let access: FileAccess = args.file_access.parse().map_err(|e: String| anyhow!("--file-access: {e}"))?;
    let mut attach = |i: usize| -> Result<Arc<GoferFs>> {
        let s = &mut served[i];
        let conn = s.conn.take().ok_or_else(|| anyhow!("no gofer connection for {}", s.path.display()))?;
        GoferFs::attach(conn, access)
            .map_err(|e| anyhow!("attach to the gofer for {}: {e}", s.path.display()))
    };
    let lower = attach(0)?;
    let ns = match args.overlay2.as_str() {
        "root:memory" => {
            let upper: Arc<dyn Filesystem> = Tmpfs::new_default();
            let ov = Overlay::new(upper, vec![lower]).map_err(|e| anyhow!("overlay over the root: {e}"))?;
            MountNamespace::new(ov, MountFlags::empty())
        }
        "none" => {
            let flags = if args.rw { MountFlags::empty() } else { MountFlags::RDONLY };
            MountNamespace::new(lower, flags)
        }
        o => bail!("--overlay2 {o:?}: supported are none and root:memory"),
    };
    for e in extras {
        let at = match e {
            Extra::Bind { kind, dst, .. } => ns.make_mount_point(dst.as_bytes(), *kind),
            Extra::Tmpfs { dst, .. } => ns.make_mount_point(dst.as_bytes(), FileType::Directory),
        }
        .map_err(|err| anyhow!("mount point {}: {err}", e.dst()))?;
        match e {
            Extra::Bind { src, readonly, .. } => {
                let fs = attach(*src)?;
                let flags = if *readonly { MountFlags::RDONLY } else { MountFlags::empty() };
                ns.mount(fs, &at, flags)
            }
            Extra::Tmpfs { opts, .. } => {
                let fs = Tmpfs::new(opts).map_err(|err| anyhow!("tmpfs at {}: {err}", e.dst()))?;
                ns.mount(fs, &at, MountFlags::empty())
            }
        }
        .map_err(|err| anyhow!("mount at {}: {err}", e.dst()))?;
    }
    Ok(ns)
}

fn serve(args: &MountArgs, ready: Option<&UnixStream>) -> Result<()> {
    let cache: CachePolicy = args.file_access.parse().map_err(|e: String| anyhow!("--file-access: {e}"))?;
    let mountpoint = std::fs::canonicalize(&args.mountpoint)
        .with_context(|| format!("mount point {}", args.mountpoint.display()))?;
    if !mountpoint.is_dir() {
        bail!("mount point {} is not a directory", mountpoint.display());
    }
    let rootfs =
        std::fs::canonicalize(&args.rootfs).with_context(|| format!("--rootfs {}", args.rootfs.display()))?;
    let root_ro = args.overlay2 != "none" || !args.rw;
    let mut served = vec![Served { path: rootfs, readonly: root_ro, conn: None }];
    let extras = parse_extras(args, &mut served)?;
    // The gofer starts before signals are blocked here: it must not inherit the mask.
    let gofer = start_gofer(&mut served)?;
    let result = (|| -> Result<()> {
        let ns = build(args, &mut served, &extras)?;
        drop(served);
        // Block the stop signals in every thread (those made from here on inherit
        // the mask) and take them synchronously on one thread.
        let mut stop = SigSet::empty();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            stop.add(s);
        }
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&stop), None).context("block signals")?;
        let opts = Options {
            cache,
            threads: args.threads.max(1),
            passthrough: !args.no_passthrough,
            fsname: format!("sandfs:{}", args.rootfs.display()),
            ..Options::default()
        };
        let mut server = Server::mount(ns, &mountpoint, &opts)
            .with_context(|| format!("mount FUSE at {}", mountpoint.display()))?;
        let unmounter = server.unmounter();
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            let mut first = true;
            loop {
                match stop.wait() {
                    Ok(sig) if first => {
                        tracing::info!("{sig}: unmounting");
                        first = false;
                        if let Err(e) = unmounter.unmount() {
                            eprintln!("sandfs mount: unmount: {e}");
                        }
                    }
                    Ok(sig) => {
                        eprintln!("sandfs mount: {sig} again: exiting");
                        std::process::exit(128 + sig as i32);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        })?;
        let status = server.status();
        tracing::info!(
            "serving {} (passthrough offered by the kernel: {})",
            mountpoint.display(),
            status.passthrough_offered()
        );
        if let Some(r) = ready {
            let mut r = r;
            r.write_all(&[1]).context("report readiness")?;
        }
        server.run().context("serve FUSE")?;
        tracing::info!(
            "unmounted; passthrough: {} accepted, {} refused{}",
            status.passthrough_accepted(),
            status.passthrough_refused(),
            status.passthrough_error().map(|e| format!(" ({e})")).unwrap_or_default()
        );
        Ok(())
    })();
    reap(gofer);
    result
}
