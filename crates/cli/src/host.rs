//! The real host for `sandfs run` and `sandfs mount`: every host source is served by
//! a confined `sandfs gofer` child process over a socketpair. The children die with
//! this process (parent-death signal) and are killed and reaped when dropped.

use sandfs_container::SetupError;
use sandfs_container::host::{Host, Owners};
use sandfs_gofer::client::{FileAccess, GoferFs};
use sandfs_gofer::transport::Conn;
use sandfs_vfs::{Errno, Filesystem};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

/// Spawns one confined gofer process per source.
#[derive(Default)]
pub struct ProcessHost {
    children: Vec<Child>,
    /// The sandbox's id map, handed to the gofers of host volumes.
    pub idmap: Option<sandfs_vfs::IdMap>,
}

impl ProcessHost {
    /// Whether any gofer has exited.
    pub fn any_exited(&mut self) -> Option<(u32, std::process::ExitStatus)> {
        self.children.iter_mut().find_map(|c| c.try_wait().ok().flatten().map(|s| (c.id(), s)))
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

/// Spawn `sandfs gofer` serving `source` on one end of a new socketpair; returns
/// the child and our end.
pub fn spawn_gofer(source: &Path, readonly: bool) -> Result<(Child, Conn), SetupError> {
    let what = || format!("start the gofer for {}", source.display());
    let exe = std::env::current_exe().map_err(|_| SetupError::fs(what(), Errno::NOENT))?;
    let (ours, theirs) = Conn::pair().map_err(|e| SetupError::fs(what(), e))?;
    // The child's end must survive exec: clear close-on-exec on it alone.
    rustix::io::fcntl_setfd(theirs.fd(), rustix::io::FdFlags::empty())
        .map_err(|e| SetupError::fs(what(), e))?;
    let fd = theirs.fd().as_raw_fd();
    let spec = format!("{fd}:{}{}", source.display(), if readonly { ":ro" } else { "" });
    let child = Command::new(exe)
        .arg("gofer")
        .arg("--serve")
        .arg(spec)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|_| SetupError::fs(what(), Errno::NOEXEC))?;
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
        let _ = owners; // TODO(id maps): hand the map of Owners::Mapped mounts to the gofer
        let (child, conn) = spawn_gofer(source, readonly)?;
        self.children.push(child);
        // Attach is answered once the gofer has confined itself.
        let fs = GoferFs::attach(conn, access)
            .map_err(|e| SetupError::fs(format!("attach {}", source.display()), e))?;
        Ok(fs)
    }

    fn probe(&mut self, source: &Path) -> Option<bool> {
        std::fs::metadata(source).ok().map(|m| m.is_dir())
    }
}
