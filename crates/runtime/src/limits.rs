//! sandfs's own descriptor limit. The FUSE server holds a descriptor for every file
//! the sandbox has open (a lent memfd, a host descriptor the gofer donated) and the
//! gofer one per fid, so each raises its soft RLIMIT_NOFILE to the hard limit at
//! start, as servers do; at the soft default of 1,024 a sandbox with a thousand files
//! open ran the server out. The sandboxed program gets back the limits sandfs was
//! started with (unless its OCI spec sets its own).

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// The limits this process started with (before [`raise_nofile`]).
static ORIGINAL: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();

/// The descriptor limits this process was started with, as (soft, hard): what the
/// program gets back.
pub fn original_nofile() -> (u64, u64) {
    *ORIGINAL.get_or_init(|| pair(&getrlimit(Resource::Nofile)))
}

/// Raise the soft descriptor limit to the hard one; the limits as they were.
pub fn raise_nofile() -> Rlimit {
    let before = getrlimit(Resource::Nofile);
    let _ = ORIGINAL.set(pair(&before));
    let raised = Rlimit { current: before.maximum, maximum: before.maximum };
    if let Err(e) = setrlimit(Resource::Nofile, raised) {
        tracing::debug!("raising RLIMIT_NOFILE to its hard limit: {e}");
    }
    before
}

/// `limit` as a (soft, hard) pair for an OCI-style rlimit entry (infinity: u64::MAX).
pub fn pair(limit: &Rlimit) -> (u64, u64) {
    (limit.current.unwrap_or(u64::MAX), limit.maximum.unwrap_or(u64::MAX))
}
