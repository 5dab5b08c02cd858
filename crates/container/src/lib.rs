//! sandfs container filesystem setup, after runsc's `runsc/boot/vfs.go`: an OCI
//! runtime spec plus runtime flags become a ready [`sandfs_vfs::MountNamespace`]
//! (root from the gofer, optional overlay, submounts parents first, synthetic mount
//! points, an automatic /tmp, pod volumes shared between containers), the list of
//! kernel mounts the sandbox process must make itself, and the restore map.
//!
//! Host access goes through the [`host::Host`] trait, so the whole plan is tested
//! with a recording fake and without root; the real host starts gofer connections.

pub mod config;
pub mod error;
pub mod hints;
pub mod host;
pub mod plan;
pub mod setup;

pub use config::{Medium, Overlay2, OverlayScope, RuntimeConfig};
pub use error::SetupError;
pub use setup::{ContainerFs, KernelMount, RestoreKey, Sandbox};
