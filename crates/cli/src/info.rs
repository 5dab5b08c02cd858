//! `sandfs info`: what this build provides and what this host allows, so a user
//! knows before a run fails closed why it would (user namespaces, rootless FUSE,
//! subordinate ids, pasta, cgroups, seccomp).

use anyhow::Result;

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Whether a child of this process may make a user namespace.
fn userns_allowed() -> bool {
    // SAFETY: `sandfs info` is single-threaded; the child makes one system call
    // and exits without returning into Rust code that could hold locks.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            // SAFETY: single-threaded child; the flag touches no shared state.
            let ok = unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER) }.is_ok();
            std::process::exit(if ok { 0 } else { 1 })
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            matches!(nix::sys::wait::waitpid(child, None), Ok(nix::sys::wait::WaitStatus::Exited(_, 0)))
        }
        Err(_) => false,
    }
}

/// Print the report.
pub fn run() -> Result<()> {
    use sandfs_confine::userns;
    println!("sandfs {}", env!("CARGO_PKG_VERSION"));
    println!("commands: run, mount, spec, info");
    let uid = rustix::process::geteuid().as_raw();
    let (map, how) = userns::for_caller();
    println!("mode: {}", if uid == 0 { "root-started" } else { "rootless" });
    println!("user namespaces: {}", yes(userns_allowed()));
    println!(
        "id map (container:host:count): uid {} gid {}{}",
        map.uids.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(","),
        map.gids.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(","),
        if how == userns::Writer::Helpers { " (through newuidmap/newgidmap)" } else { "" }
    );
    let fuse = std::fs::metadata("/dev/fuse").ok();
    let fuse_ok = fuse.as_ref().is_some_and(|m| {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        uid == 0 || m.uid() == uid || m.permissions().mode() & 0o006 == 0o006
    });
    println!("FUSE (/dev/fuse usable by this user): {}", yes(fuse_ok));
    println!("newuidmap/newgidmap: {}", yes(userns::on_path("newuidmap") && userns::on_path("newgidmap")));
    println!("pasta (--network pasta): {}", yes(userns::on_path("pasta")));
    match sandfs_confine::cgroup::detect() {
        Ok(v) => println!("cgroups: {v}"),
        Err(e) => println!("cgroups: none ({e})"),
    }
    let seccomp = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| s.contains("Seccomp_filters:"));
    println!("seccomp filters: {}", yes(seccomp));
    Ok(())
}
