//! `sandfs gofer`: the host file server process. The runtime hands it one connected
//! SOCK_SEQPACKET descriptor per mount and the host path to serve on it; it opens the
//! sources, confines itself, then serves each connection on its own thread until the
//! sandbox closes them.

use anyhow::{Context, Result, bail};
use clap::Args;
use rustix::fd::{BorrowedFd, FromRawFd, OwnedFd};
use sandfs_gofer::confine::{Keep, confine_with};
use sandfs_gofer::server::{Server, Source, prepare_reopen};
use sandfs_gofer::transport::Conn;
use std::path::PathBuf;

/// Arguments of `sandfs gofer`.
#[derive(Args, Debug)]
pub struct GoferArgs {
    /// A mount to serve: the connected socket's descriptor number, the host path,
    /// and `ro` for read-only (repeat per mount).
    #[arg(long = "serve", value_name = "FD:PATH[:ro]", required = true)]
    serve: Vec<String>,
    /// Serve even where a confinement step cannot be applied (it is reported).
    #[arg(long)]
    best_effort: bool,
}

struct Mount {
    conn: Conn,
    path: PathBuf,
    source: Source,
}

fn parse(spec: &str) -> Result<(i32, PathBuf, bool)> {
    let (fd, rest) = spec.split_once(':').context("--serve wants FD:PATH[:ro]")?;
    let fd: i32 = fd.parse().with_context(|| format!("--serve {spec:?}: bad descriptor number"))?;
    let (path, ro) = match rest.strip_suffix(":ro") {
        Some(p) => (p, true),
        None => (rest, false),
    };
    if !path.starts_with('/') {
        bail!("--serve {spec:?}: the path must be absolute");
    }
    Ok((fd, PathBuf::from(path), ro))
}

/// Take ownership of an inherited descriptor after checking it is an open socket.
fn inherited_socket(fd: i32) -> Result<OwnedFd> {
    if fd < 3 {
        bail!("descriptor {fd} is a standard stream, not a connection");
    }
    // SAFETY: `fd` is a number, borrowed only for the fstat below; no ownership is
    // taken unless it is open.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let st = rustix::fs::fstat(borrowed).with_context(|| format!("descriptor {fd} is not open"))?;
    if st.st_mode & 0o170000 != 0o140000 {
        bail!("descriptor {fd} is not a socket");
    }
    // SAFETY: the runtime passed this open socket to this process for its exclusive
    // use; it is wrapped once (duplicates in --serve are refused by the caller).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Run the gofer.
pub fn run(args: GoferArgs) -> Result<()> {
    rustix::process::umask(rustix::fs::Mode::empty());
    let mut seen = std::collections::HashSet::new();
    let mut mounts = Vec::new();
    for spec in &args.serve {
        let (fd, path, ro) = parse(spec)?;
        if !seen.insert(fd) {
            bail!("descriptor {fd} given twice");
        }
        let source = Source::open(&path, ro).map_err(|e| anyhow::anyhow!("open {}: {e}", path.display()))?;
        mounts.push(Mount { conn: Conn::new(inherited_socket(fd)?), path, source });
    }
    prepare_reopen().map_err(|e| anyhow::anyhow!("open /proc/self/fd: {e}"))?;
    // Die with the runtime that started us.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let keep: Vec<Keep<'_>> = mounts
        .iter()
        .map(|m| Keep { path: &m.path, fd: m.source.fd(), readonly: m.source.readonly() })
        .collect();
    // Serve from the namespace's binds (/m0, /m1, ...), reopened right after it is
    // entered: descriptors opened before belong to the runtime's mounts, and walks
    // through them would see whatever the runtime mounts later (its FUSE view too).
    let mut reopened: Vec<Source> = Vec::new();
    let sources: Vec<(PathBuf, bool)> =
        mounts.iter().map(|m| (m.path.clone(), m.source.readonly())).collect();
    let report = confine_with(&keep, !args.best_effort, &mut |in_ns| {
        if in_ns {
            for (i, (path, ro)) in sources.iter().enumerate() {
                let here = PathBuf::from(format!("/m{i}"));
                let src = Source::open(&here, *ro)
                    .map_err(|e| format!("reopen {} as {}: {e}", path.display(), here.display()))?;
                reopened.push(src);
            }
        }
        Ok(())
    })
    .map_err(|e| anyhow::anyhow!("confinement failed: {e}"))?;
    drop(keep);
    tracing::info!("gofer confined: {report:?}");
    if !reopened.is_empty() {
        for (m, src) in mounts.iter_mut().zip(reopened) {
            m.source = src;
        }
    }
    // Descriptors are shared by every mount this process serves: raise the soft
    // limit to the hard one and give each connection an equal share.
    let per_mount = {
        crate::limits::raise_nofile();
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(1 << 20);
        (soft as usize).saturating_sub(64) / mounts.len().max(1)
    };
    let mut threads = Vec::new();
    for m in mounts {
        let mut server =
            Server::new(m.source).map_err(|e| anyhow::anyhow!("serve {}: {e}", m.path.display()))?;
        server.limit_fids(per_mount);
        threads.push(std::thread::spawn(move || server.serve(m.conn)));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}
