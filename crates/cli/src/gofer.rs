//! `sandfs gofer`: the host file server process. The runtime hands it one connected
//! SOCK_SEQPACKET descriptor per mount and the host path to serve on it; it opens the
//! sources, confines itself, then serves each connection on its own thread until the
//! sandbox closes them. Given `--uid-map`/`--gid-map` (the sandbox's user namespace
//! map), it speaks container ids on every mount it serves: the runtime starts one
//! gofer per mount and passes the map only for host volumes, never for the image.

use anyhow::{Context, Result, bail};
use clap::Args;
use rustix::fd::{BorrowedFd, FromRawFd, OwnedFd};
use sandfs_gofer::confine::{Keep, confine_with};
use sandfs_gofer::server::{Server, Source, prepare_reopen};
use sandfs_gofer::transport::Conn;
use sandfs_vfs::idmap::{IdMap, IdRange};
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
    /// A uid range of the sandbox's user namespace (as a `uid_map` line); repeat per
    /// range. With the gid ranges, owners are translated on every mount served.
    #[arg(long = "uid-map", value_name = "INSIDE:OUTSIDE:COUNT")]
    uid_map: Vec<IdRange>,
    /// A gid range of the sandbox's user namespace; repeat per range.
    #[arg(long = "gid-map", value_name = "INSIDE:OUTSIDE:COUNT")]
    gid_map: Vec<IdRange>,
}

/// The id map the flags give: none, or both uid and gid ranges, neither overlapping
/// another of its kind on either side (as the kernel requires of a `uid_map`).
fn id_map(args: &GoferArgs) -> Result<Option<IdMap>> {
    match (args.uid_map.is_empty(), args.gid_map.is_empty()) {
        (true, true) => return Ok(None),
        (false, false) => {}
        _ => bail!("--uid-map and --gid-map go together"),
    }
    for (what, ranges) in [("--uid-map", &args.uid_map), ("--gid-map", &args.gid_map)] {
        let overlap = |a: u32, b: u32, n: u32, m: u32| a <= b + (m - 1) && b <= a + (n - 1);
        for (i, x) in ranges.iter().enumerate() {
            for y in &ranges[i + 1..] {
                if overlap(x.inside, y.inside, x.count, y.count)
                    || overlap(x.outside, y.outside, x.count, y.count)
                {
                    bail!("{what} {x} overlaps {y}");
                }
            }
        }
    }
    Ok(Some(IdMap { uids: args.uid_map.clone(), gids: args.gid_map.clone() }))
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
    let ids = id_map(&args)?;
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
        sandfs_runtime::limits::raise_nofile();
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(1 << 20);
        (soft as usize).saturating_sub(64) / mounts.len().max(1)
    };
    let mut threads = Vec::new();
    for m in mounts {
        let mut server =
            Server::new(m.source).map_err(|e| anyhow::anyhow!("serve {}: {e}", m.path.display()))?;
        server.limit_fids(per_mount);
        if let Some(map) = &ids {
            server.map_ids(map.clone());
        }
        threads.push(std::thread::spawn(move || server.serve(m.conn)));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        gofer: GoferArgs,
    }

    fn map(args: &[&str]) -> Result<Option<IdMap>> {
        let cli = Cli::try_parse_from(["gofer", "--serve", "3:/x"].iter().chain(args))?;
        id_map(&cli.gofer)
    }

    #[test]
    fn id_map_flags() {
        assert_eq!(map(&[]).ok(), Some(None));
        let m = map(&["--uid-map", "0:100000:65536", "--gid-map", "0:200000:10", "--gid-map", "10:300000:1"])
            .expect("valid")
            .expect("a map");
        assert_eq!(m.uid_to_host(5), Some(100005));
        assert_eq!(
            (m.gid_to_host(9), m.gid_to_host(10), m.gid_to_host(11)),
            (Some(200009), Some(300000), None)
        );
        assert!(map(&["--uid-map", "0:100000:65536"]).is_err(), "uids without gids");
        assert!(map(&["--gid-map", "0:100000:65536"]).is_err(), "gids without uids");
        assert!(map(&["--uid-map", "0:1:0", "--gid-map", "0:1:1"]).is_err(), "empty range");
        let overlaps = [
            ["--uid-map", "0:100000:10", "--uid-map", "9:200000:1"],
            ["--uid-map", "0:100000:10", "--uid-map", "10:100009:1"],
        ];
        for o in overlaps {
            let mut a = o.to_vec();
            a.extend(["--gid-map", "0:1:1"]);
            assert!(map(&a).is_err(), "{o:?}");
        }
    }
}
