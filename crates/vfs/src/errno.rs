//! Errors are Linux errnos: the filesystem layers speak the kernel's language so a
//! front end can hand them to the kernel (FUSE) or a caller unchanged.

/// An errno value. rustix's type covers every Linux errno and prints its name.
pub type Errno = rustix::io::Errno;

/// Result of a filesystem operation.
pub type Result<T> = std::result::Result<T, Errno>;
