//! The real host for `sandfs run` and `sandfs mount`: every host source is served by
//! a confined `sandfs gofer` child process over a socketpair. The children die with
//! this process (parent-death signal) and are killed and reaped when dropped.

use sandfs_container::SetupError;
use sandfs_container::host::{Host, Owners};
use sandfs_gofer::client::{FileAccess, GoferFs};
use sandfs_gofer::transport::Conn;
use sandfs_vfs::idmap::IdMap;
use sandfs_vfs::{Errno, Filesystem};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

/// Spawns one confined gofer process per source.
pub struct ProcessHost {
    children: Vec<Child>,
    /// Gofers started ahead ([`Host::prefetch`]), not yet attached: (source,
    /// readonly, owners, connection).
    ahead: Vec<(std::path::PathBuf, bool, Owners, Conn)>,
    /// The sandbox's user namespace map, handed to the gofers of host volumes.
    ids: Option<IdMap>,
}

impl ProcessHost {
    /// A host whose gofers for host volumes ([`Owners::Mapped`]) translate owners
    /// through `ids`, the sandbox's user namespace map (`None`: ids pass through,
    /// as [`ProcessHost::default`]). The image ([`Owners::AsStored`]) never is.
    pub fn new(ids: Option<IdMap>) -> ProcessHost {
        ProcessHost { children: Vec::new(), ahead: Vec::new(), ids }
    }

    /// The map a gofer for a mount whose owners are `owners` is given: the
    /// namespace's for a host volume, none for the image.
    fn ids_for(&self, owners: Owners) -> Option<&IdMap> {
        match owners {
            Owners::Mapped => self.ids.as_ref(),
            Owners::AsStored => None,
        }
    }

    /// The gofers' pids.
    pub fn pids(&self) -> Vec<i32> {
        self.children.iter().map(|c| c.id() as i32).collect()
    }

    /// Whether any gofer has exited.
    pub fn any_exited(&mut self) -> Option<(u32, std::process::ExitStatus)> {
        self.children.iter_mut().find_map(|c| c.try_wait().ok().flatten().map(|s| (c.id(), s)))
    }
}

impl Default for ProcessHost {
    /// No id map: every gofer passes ids through as stored.
    fn default() -> ProcessHost {
        ProcessHost::new(None)
    }
}

impl Drop for ProcessHost {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `sandfs gofer` flags that hand it `ids`: one `--uid-map`/`--gid-map` per range.
fn map_args(ids: Option<&IdMap>) -> Vec<String> {
    let Some(map) = ids else { return Vec::new() };
    let uids = map.uids.iter().flat_map(|r| ["--uid-map".to_string(), r.to_string()]);
    let gids = map.gids.iter().flat_map(|r| ["--gid-map".to_string(), r.to_string()]);
    uids.chain(gids).collect()
}

/// Spawn `sandfs gofer` serving `source` on one end of a new socketpair, speaking
/// container ids through `ids` if given; returns the child and our end.
pub fn spawn_gofer(source: &Path, readonly: bool, ids: Option<&IdMap>) -> Result<(Child, Conn), SetupError> {
    let what = || format!("start the gofer for {}", source.display());
    let exe = std::env::current_exe().map_err(|_| SetupError::fs(what(), Errno::NOENT))?;
    let (ours, theirs) = Conn::pair().map_err(|e| SetupError::fs(what(), e))?;
    // The child's end must survive exec: clear close-on-exec on it alone.
    rustix::io::fcntl_setfd(theirs.fd(), rustix::io::FdFlags::empty())
        .map_err(|e| SetupError::fs(what(), e))?;
    let fd = theirs.fd().as_raw_fd();
    let spec = format!("{fd}:{}{}", source.display(), if readonly { ":ro" } else { "" });
    let mut cmd = Command::new(exe);
    cmd.arg("gofer").arg("--serve").arg(spec).args(map_args(ids));
    let child = cmd.stdin(Stdio::null()).spawn().map_err(|_| SetupError::fs(what(), Errno::NOEXEC))?;
    drop(theirs);
    Ok((child, ours))
}

impl Host for ProcessHost {
    fn gofer(
        &mut self,
        source: &Path,
        readonly: bool,
        access: FileAccess,
        owners: Owners,
    ) -> Result<Arc<dyn Filesystem>, SetupError> {
        let started =
            self.ahead.iter().position(|(s, r, o, _)| s == source && *r == readonly && *o == owners);
        let conn = match started {
            Some(i) => self.ahead.swap_remove(i).3,
            None => {
                let (child, conn) = spawn_gofer(source, readonly, self.ids_for(owners))?;
                self.children.push(child);
                conn
            }
        };
        // Attach is answered once the gofer has confined itself.
        let fs = GoferFs::attach(conn, access)
            .map_err(|e| SetupError::fs(format!("attach {}", source.display()), e))?;
        Ok(fs)
    }

    fn probe(&mut self, source: &Path) -> Option<bool> {
        std::fs::metadata(source).ok().map(|m| m.is_dir())
    }

    /// Starts every wanted gofer now; each confines itself while the others start
    /// (one after another they cost ~8 ms each: 38 ms of a `create` with five).
    /// One that is never asked for is killed with the rest.
    fn prefetch(&mut self, wants: &[(std::path::PathBuf, bool, Owners)]) {
        for (source, readonly, owners) in wants {
            if std::fs::metadata(source).is_err() {
                continue;
            }
            if let Ok((child, conn)) = spawn_gofer(source, *readonly, self.ids_for(*owners)) {
                self.children.push(child);
                self.ahead.push((source.clone(), *readonly, *owners, conn));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_volumes_get_the_map_and_it_becomes_flags() {
        let map = IdMap::shifted(100000, 200000, 65536);
        let host = ProcessHost::new(Some(map.clone()));
        assert_eq!(host.ids_for(Owners::Mapped), Some(&map));
        assert_eq!(host.ids_for(Owners::AsStored), None);
        assert_eq!(ProcessHost::default().ids_for(Owners::Mapped), None);
        assert_eq!(
            map_args(Some(&map)),
            ["--uid-map", "0:100000:65536", "--gid-map", "0:200000:65536"].map(String::from)
        );
        assert!(map_args(None).is_empty());
    }
}
