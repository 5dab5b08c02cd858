//! sandfs program confinement: what makes root in the sandbox nobody on the host.
//!
//! The filesystem is served from outside; the program runs on the host kernel, so
//! its isolation comes from the kernel's primitives, applied in one order in every
//! mode: namespaces first (a user namespace always), then mounts, then identity and
//! capabilities, then no_new_privs, seccomp last, then exec. Each module holds one
//! primitive; the sandbox process (crates/cli) applies them, and any step that cannot
//! be applied stops the run.

pub mod caps;
pub mod cgroup;
pub mod fds;
pub mod net;
pub mod pasta;
pub mod paths;
pub mod seccomp;
pub mod sysctl;
pub mod userns;
