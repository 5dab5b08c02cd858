//! Runtime configuration, with runsc's flag names: `--overlay2`, `--file-access`,
//! `--file-access-mounts`. Invalid combinations are refused here, before anything is
//! set up.

use crate::error::SetupError;
use sandfs_gofer::client::FileAccess;
use std::path::PathBuf;

/// Which mounts get a writable overlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverlayScope {
    /// None: writes go where the mount says.
    None,
    /// The root filesystem only.
    Root,
    /// The root and every writable bind mount.
    All,
}

/// Where an overlay's upper layer keeps file data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Medium {
    /// In memory.
    Memory,
    /// In a hidden store file inside the mount source.
    SelfBacked,
    /// In a store file in this absolute directory, unlinked once created.
    Dir(PathBuf),
}

/// `--overlay2`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlay2 {
    /// Which mounts.
    pub scope: OverlayScope,
    /// Upper layer medium.
    pub medium: Medium,
    /// Cap on each upper layer, in bytes.
    pub size: Option<u64>,
}

impl Default for Overlay2 {
    fn default() -> Self {
        Overlay2 { scope: OverlayScope::Root, medium: Medium::Memory, size: None }
    }
}

fn bad(value: &str, why: impl Into<String>) -> SetupError {
    SetupError::Flag { flag: "--overlay2", value: value.to_string(), why: why.into() }
}

impl std::str::FromStr for Overlay2 {
    type Err = SetupError;

    /// `none` | `root:MEDIUM` | `all:MEDIUM`, optionally `,size=N`; MEDIUM is
    /// `memory`, `self` or `dir=PATH` (absolute).
    fn from_str(s: &str) -> Result<Overlay2, SetupError> {
        let (main, size) = match s.split_once(",size=") {
            Some((m, n)) => {
                let n = sandfs_tmpfs::parse_size(n).map_err(|e| bad(s, e))?;
                (m, Some(n))
            }
            None => (s, None),
        };
        if main == "none" {
            if size.is_some() {
                return Err(bad(s, "size= needs an overlay"));
            }
            return Ok(Overlay2 { scope: OverlayScope::None, medium: Medium::Memory, size: None });
        }
        let (scope, medium) =
            main.split_once(':').ok_or_else(|| bad(s, "expected none, root:MEDIUM or all:MEDIUM"))?;
        let scope = match scope {
            "root" => OverlayScope::Root,
            "all" => OverlayScope::All,
            other => return Err(bad(s, format!("unknown scope {other:?} (root or all)"))),
        };
        let medium = match medium {
            "memory" => Medium::Memory,
            "self" => Medium::SelfBacked,
            m if m.starts_with("dir=") => {
                let p = PathBuf::from(&m[4..]);
                if !p.is_absolute() {
                    return Err(bad(s, "dir= needs an absolute path"));
                }
                Medium::Dir(p)
            }
            other => return Err(bad(s, format!("unknown medium {other:?} (memory, self or dir=PATH)"))),
        };
        if size == Some(0) {
            return Err(bad(s, "size must be positive"));
        }
        Ok(Overlay2 { scope, medium, size })
    }
}

/// The runtime flags that shape the filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// `--overlay2` (default `root:memory`).
    pub overlay2: Overlay2,
    /// `--file-access` for the root (default exclusive).
    pub file_access: FileAccess,
    /// `--file-access-mounts` for bind mounts (default shared).
    pub file_access_mounts: FileAccess,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            overlay2: Overlay2::default(),
            file_access: FileAccess::Exclusive,
            file_access_mounts: FileAccess::Shared,
        }
    }
}

impl RuntimeConfig {
    /// Refuse combinations runsc refuses: an overlaid root with shared file access
    /// (the overlay caches the lower layer, which others would change underneath).
    pub fn validate(&self) -> Result<(), SetupError> {
        if self.overlay2.scope != OverlayScope::None && self.file_access == FileAccess::Shared {
            return Err(SetupError::Flag {
                flag: "--file-access",
                value: "shared".into(),
                why: "an overlaid root (--overlay2 root:... or all:...) needs exclusive file access: keep \
                      --file-access exclusive (the default), or bind the host paths that change during \
                      the run with --bind (binds default to shared access)"
                    .into(),
            });
        }
        Ok(())
    }
}
