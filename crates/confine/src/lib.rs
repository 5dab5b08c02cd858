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

/// Where `tool` is on PATH (the first file of that name), if anywhere: the helpers
/// the confinement starts (newuidmap, newgidmap, pasta) are found this way.
pub fn which(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|f| std::fs::metadata(f).is_ok_and(|m| m.is_file()))
}
