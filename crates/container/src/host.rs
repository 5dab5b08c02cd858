//! The seam between the setup logic and the host: everything that touches host
//! files (gofer connections) goes through [`Host`], so the plan is exercised in
//! tests with [`RecordingHost`] and without root.

use crate::error::SetupError;
use sandfs_gofer::client::{FileAccess, GoferFs};
use sandfs_gofer::server::{Server, Source};
use sandfs_gofer::transport::Conn;
use sandfs_vfs::{FileType, Filesystem};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How the owners of a host mount's files relate to the container's ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owners {
    /// The image: the ids stored are the container's own (the read-only lower layer
    /// of the root, as an image layer's ids are).
    AsStored,
    /// A host volume: ids go through the user namespace's map both ways, so the
    /// container's writes belong on the host to the mapped ids (as with runc).
    Mapped,
}

/// Access to host files.
pub trait Host {
    /// A filesystem serving host `source` (a directory, or a single file), with one
    /// gofer connection.
    fn gofer(
        &mut self,
        source: &Path,
        readonly: bool,
        access: FileAccess,
        owners: Owners,
    ) -> Result<Arc<dyn Filesystem>, SetupError>;
    /// Whether `source` exists on the host and is a directory (`Some(true)`), another
    /// file (`Some(false)`), or is missing (`None`).
    fn probe(&mut self, source: &Path) -> Option<bool>;
    /// The (source, readonly, owners) the next [`Host::gofer`] calls will ask for,
    /// told first so that a host may start their servers together. A hint only.
    fn prefetch(&mut self, _wants: &[(std::path::PathBuf, bool, Owners)]) {}
}

/// Serves sources with gofer servers on threads of this process (no confinement:
/// for tests and embedders; `sandfs run` uses the confined gofer process).
#[derive(Default)]
pub struct InProcessHost;

impl Host for InProcessHost {
    fn gofer(
        &mut self,
        source: &Path,
        readonly: bool,
        access: FileAccess,
        owners: Owners,
    ) -> Result<Arc<dyn Filesystem>, SetupError> {
        let _ = owners; // in process there is no user namespace: ids are the host's
        let what = || format!("serve {}", source.display());
        let src = Source::open(source, readonly).map_err(|e| SetupError::fs(what(), e))?;
        let server = Server::new(src).map_err(|e| SetupError::fs(what(), e))?;
        let (client, conn) = Conn::pair().map_err(|e| SetupError::fs(what(), e))?;
        std::thread::Builder::new()
            .name("sandfs-gofer".into())
            .spawn(move || server.serve(conn))
            .map_err(|_| SetupError::fs(what(), sandfs_vfs::Errno::AGAIN))?;
        let fs = GoferFs::attach(client, access).map_err(|e| SetupError::fs(what(), e))?;
        Ok(fs)
    }

    fn probe(&mut self, source: &Path) -> Option<bool> {
        std::fs::metadata(source).ok().map(|m| m.is_dir())
    }
}

/// A fake host: sources are tmpfs instances registered by the test; every gofer
/// request is recorded.
#[derive(Default)]
pub struct RecordingHost {
    /// Registered sources.
    pub sources: BTreeMap<PathBuf, Arc<dyn Filesystem>>,
    /// (source, readonly, access, owners) per gofer request, in order.
    pub calls: Vec<(PathBuf, bool, FileAccess, Owners)>,
}

impl RecordingHost {
    /// Register `fs` as host path `path`.
    pub fn add(&mut self, path: impl Into<PathBuf>, fs: Arc<dyn Filesystem>) {
        self.sources.insert(path.into(), fs);
    }
}

impl Host for RecordingHost {
    fn gofer(
        &mut self,
        source: &Path,
        readonly: bool,
        access: FileAccess,
        owners: Owners,
    ) -> Result<Arc<dyn Filesystem>, SetupError> {
        self.calls.push((source.to_path_buf(), readonly, access, owners));
        self.sources
            .get(source)
            .cloned()
            .ok_or_else(|| SetupError::fs(format!("serve {}", source.display()), sandfs_vfs::Errno::NOENT))
    }

    fn probe(&mut self, source: &Path) -> Option<bool> {
        self.sources.get(source).map(|fs| fs.root().kind() == FileType::Directory)
    }
}
