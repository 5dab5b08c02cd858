//! `--network pasta`: outbound access for the sandbox's own network namespace
//! through `pasta` (package `passt`), the user-mode network stack podman uses for
//! rootless containers. No host interface, route or firewall rule is touched: pasta
//! creates a tap device inside the sandbox's namespace and turns the namespace's
//! TCP, UDP and ICMP traffic into ordinary sockets of its own on the host.
//!
//! What the sandbox gets (`--config-net`):
//! - an interface named like the host's outbound one, with [`ADDR4`]/24 and gateway
//!   [`GATEWAY4`] (and, when the host has an IPv6 default route, [`ADDR6`]/64 via
//!   [`GATEWAY6`]), plus its own `lo`. The addresses are the sandbox's own, not the
//!   host's, so the host's addresses stay reachable as remote ones.
//!
//! What it can reach: any address the host can reach, as connections made by the
//! pasta process (source: the host's address), including services listening on the
//! host's non-loopback addresses.
//!
//! What it cannot reach:
//! - the host's loopback: `--no-map-gw` stops pasta from mapping the gateway
//!   address to the host's 127.0.0.1 (its default), and `-T none -U none` stop it
//!   from forwarding the ports bound on the host to the sandbox's own loopback (its
//!   default is `auto`, every bound port). A host resolver on 127.0.0.53 is thus out
//!   of reach too; the sandbox needs a resolver at a non-loopback address.
//! - inbound: `-t none -u none` forward no port of the host into the sandbox.
//! - its own address on the real network: a machine that really has [`ADDR4`] or
//!   [`ADDR6`] is shadowed (the sandbox sees the address as local).
//!
//! Lifetime: pasta runs in the foreground as a child of the caller, so it is killed
//! and reaped when [`Pasta`] drops. It does not quit by itself when the sandbox
//! exits: it holds the namespace open, and its `/proc` target is not a file whose
//! deletion it watches. As a backstop it gets SIGKILL when the thread that called
//! [`attach`] exits (the parent-death signal follows the thread), so call it from
//! a thread that outlives the sandbox.
//!
//! Privilege: pasta started by host root drops to `nobody`, who may not enter the
//! sandbox's namespaces, so a root caller starts it already inside the sandbox's
//! user namespace as that namespace's root (the sandbox's root on the host: no
//! capability outside the sandbox's namespaces). A rootless caller owns the user
//! namespace and lets pasta join it (`--userns`).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The sandbox's IPv4 address (the slirp4netns convention for rootless containers).
pub const ADDR4: &str = "10.0.2.100";
/// The IPv4 prefix length of [`ADDR4`]'s network.
pub const PREFIX4: u8 = 24;
/// The IPv4 gateway pasta answers as; with `--no-map-gw` it is a plain remote address.
pub const GATEWAY4: &str = "10.0.2.2";
/// The sandbox's IPv6 address (a unique local address: fd53:616e:6466:73 spells "Sandfs").
pub const ADDR6: &str = "fd53:616e:6466:73::100";
/// The IPv6 gateway, in [`ADDR6`]'s /64.
pub const GATEWAY6: &str = "fd53:616e:6466:73::2";

/// How long pasta may take to set up before it counts as hung (a backstop, not the
/// readiness test: readiness is pasta writing its pid once the namespace is set up).
const SETUP_LIMIT_MS: i32 = 30_000;

/// The `pasta` executable on PATH, if there is one.
pub fn available() -> Option<PathBuf> {
    crate::which("pasta")
}

/// A running pasta serving one sandbox's network namespace; killed and reaped on drop.
#[derive(Debug)]
pub struct Pasta {
    child: Child,
    target: i32,
    drain: Option<std::thread::JoinHandle<()>>,
}

impl Pasta {
    /// The pasta process's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The pid of the sandbox process whose namespace pasta serves.
    pub fn target(&self) -> i32 {
        self.target
    }
}

impl Drop for Pasta {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(t) = self.drain.take() {
            let _ = t.join();
        }
    }
}

/// Whether the host has a default route of this family (`/proc/net/route` or
/// `/proc/net/ipv6_route`), ignoring the kernel's unreachable default on `lo`.
fn default_route(v6: bool) -> bool {
    let (file, zero) = if v6 {
        ("/proc/net/ipv6_route", "00000000000000000000000000000000")
    } else {
        ("/proc/net/route", "00000000")
    };
    let Ok(text) = std::fs::read_to_string(file) else { return false };
    text.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if v6 {
            f.len() >= 10 && f[0] == zero && f[1] == "00" && f[9] != "lo"
        } else {
            f.len() >= 3 && f[1] == zero && f[0] != "lo"
        }
    })
}

/// pasta's arguments: the namespaces and the readiness pipe as `/proc/self/fd` paths.
fn args(netns: i32, userns: Option<i32>, ready: i32, v4: bool, v6: bool) -> Vec<String> {
    let mut a: Vec<String> = [
        "--foreground",
        "--quiet",
        "--config-net",
        "--no-map-gw",
        "--tcp-ports",
        "none",
        "--udp-ports",
        "none",
        "--tcp-ns",
        "none",
        "--udp-ns",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if v4 {
        a.extend(["--address", ADDR4, "--netmask"].map(String::from));
        a.push(PREFIX4.to_string());
        a.extend(["--gateway", GATEWAY4].map(String::from));
    }
    if v6 {
        a.extend(["--address", ADDR6, "--gateway", GATEWAY6].map(String::from));
    }
    a.push("--pid".into());
    a.push(format!("/proc/self/fd/{ready}"));
    if let Some(u) = userns {
        a.push("--userns".into());
        a.push(format!("/proc/self/fd/{u}"));
    }
    a.push("--netns".into());
    a.push(format!("/proc/self/fd/{netns}"));
    if userns.is_none() {
        a.push("--netns-only".into());
    }
    a
}

/// In the child before exec: keep `fd` open across exec.
fn inherit(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).map_err(std::io::Error::from)
}

/// Start pasta for the network namespace `netns` (normally `/proc/PID/ns/net`) of
/// sandbox process `pid`, whose user namespace is `userns` (`/proc/PID/ns/user`;
/// needed unless the namespace is owned by the caller's own user namespace and the
/// caller is not root). Returns once pasta has configured the namespace's interface
/// and routes. A missing pasta binary is an error naming the package to install.
pub fn attach(pid: i32, netns: &Path, userns: Option<&Path>) -> Result<Pasta, String> {
    let Some(exe) = available() else {
        return Err("--network pasta: pasta is not installed (install the `passt` package)".into());
    };
    let root = rustix::process::geteuid().is_root();
    if root && userns.is_none() {
        return Err(format!(
            "pasta for {pid}: a root caller must give the sandbox's user namespace (pasta run by root drops to nobody)"
        ));
    }
    // Opened here, by the caller who may, and handed over as descriptors: the
    // namespaces stay the ones named even if `pid` exits and its number is reused.
    let net = File::open(netns).map_err(|e| format!("open {}: {e}", netns.display()))?;
    let user = match userns {
        Some(p) => Some(File::open(p).map_err(|e| format!("open {}: {e}", p.display()))?),
        None => None,
    };
    // pasta writes its pid to the `--pid` file once the namespace is set up; the
    // file is this pipe, so the first line read is the readiness signal, and EOF
    // (every write end closed) means pasta died first.
    let (reader, writer) = std::io::pipe().map_err(|e| format!("pipe for pasta: {e}"))?;
    if root {
        // pasta reopens it by /proc/self/fd as the sandbox's root, not host root:
        // the pipe (reachable only through this descriptor) must let it.
        rustix::fs::fchmod(&writer, rustix::fs::Mode::from_raw_mode(0o666))
            .map_err(|e| format!("pipe for pasta: {e}"))?;
    }
    let user_for_pasta = if root { None } else { user.as_ref().map(|u| u.as_raw_fd()) };
    let a =
        args(net.as_raw_fd(), user_for_pasta, writer.as_raw_fd(), default_route(false), default_route(true));
    let mut cmd = Command::new(&exe);
    cmd.args(&a).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let (net_fd, user_fd, ready_fd) =
        (net.as_raw_fd(), user.as_ref().map(|u| u.as_raw_fd()), writer.as_raw_fd());
    // SAFETY: the closure runs in the forked child before exec and makes only raw
    // system calls (no allocation, no locks) on descriptors the parent keeps open
    // until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            // SAFETY: the descriptors are open in the parent for the duration of spawn,
            // so they are open in the child.
            let (net, ready) = (BorrowedFd::borrow_raw(net_fd), BorrowedFd::borrow_raw(ready_fd));
            if root && let Some(u) = user_fd {
                // SAFETY: as above.
                let user = BorrowedFd::borrow_raw(u);
                // Host root's supplementary groups go first, while this process may
                // still drop them (the namespace may deny setgroups).
                rustix::thread::set_thread_groups(&[])?;
                // pasta opens /dev/net/tun by path once it is the sandbox's root, which
                // is not host root: the host's node (root's, 0600) would refuse it. In a
                // mount namespace of its own, a node of the same device open to all
                // stands at that path (the device checks CAP_NET_ADMIN in the network
                // namespace's owner, which pasta has there, and nothing else).
                rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS)?;
                rustix::mount::mount_change(
                    c"/",
                    rustix::mount::MountPropagationFlags::PRIVATE | rustix::mount::MountPropagationFlags::REC,
                )?;
                rustix::mount::mount(
                    c"tun",
                    c"/dev/net",
                    c"tmpfs",
                    rustix::mount::MountFlags::NOSUID,
                    c"mode=755",
                )?;
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    c"/dev/net/tun",
                    rustix::fs::FileType::CharacterDevice,
                    rustix::fs::Mode::from_raw_mode(0o666),
                    rustix::fs::makedev(10, 200),
                )?;
                rustix::fs::chmod(c"/dev/net/tun", rustix::fs::Mode::from_raw_mode(0o666))?;
                rustix::thread::move_into_link_name_space(
                    user,
                    Some(rustix::thread::LinkNameSpaceType::User),
                )?;
                let gid = rustix::process::Gid::ROOT;
                rustix::thread::set_thread_res_gid(gid, gid, gid)?;
                let uid = rustix::process::Uid::ROOT;
                rustix::thread::set_thread_res_uid(uid, uid, uid)?;
            } else if let Some(u) = user_fd {
                // SAFETY: as above.
                inherit(BorrowedFd::borrow_raw(u))?;
            }
            // After the identity change, which clears it.
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            inherit(net)?;
            inherit(ready)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("start {}: {e}", exe.display()))?;
    drop(writer);
    drop(net);
    drop(user);
    let stderr = child.stderr.take();
    let fail = |mut child: Child, stderr: Option<std::process::ChildStderr>, what: String| {
        let _ = child.kill();
        let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
        let mut text = String::new();
        if let Some(mut s) = stderr {
            let _ = s.read_to_string(&mut text);
        }
        let text: Vec<&str> = text.lines().filter(|l| !l.starts_with("Failed to send ")).collect();
        format!("pasta for {pid}: {what} ({status}): {}", text.join("; "))
    };
    match wait_readable(reader.as_fd(), SETUP_LIMIT_MS) {
        Ok(true) => {}
        Ok(false) => return Err(fail(child, stderr, format!("no setup within {SETUP_LIMIT_MS} ms"))),
        Err(e) => return Err(fail(child, stderr, format!("wait for setup: {e}"))),
    }
    let mut line = String::new();
    let _ = BufReader::new(reader).read_line(&mut line);
    if line.trim().parse::<u32>().is_err() {
        return Err(fail(child, stderr, "exited during setup".into()));
    }
    let drain = stderr.map(|s| {
        std::thread::spawn(move || {
            for l in BufReader::new(s).lines().map_while(Result::ok) {
                if !l.starts_with("Failed to send ") {
                    tracing::warn!(target: "pasta", "{l}");
                }
            }
        })
    });
    Ok(Pasta { child, target: pid, drain })
}

/// Wait up to `ms` for `fd` to be readable (data or EOF).
fn wait_readable(fd: BorrowedFd<'_>, ms: i32) -> std::io::Result<bool> {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    loop {
        // SAFETY: one valid pollfd, its count 1; `fd` is open for the call.
        let n = unsafe { libc::poll(&mut p, 1, ms) };
        if n >= 0 {
            return Ok(n > 0);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_forward_nothing_and_keep_the_host_loopback_out() {
        let a = args(5, Some(6), 7, true, true).join(" ");
        for f in ["--no-map-gw", "--tcp-ports none", "--udp-ports none", "--tcp-ns none", "--udp-ns none"] {
            assert!(a.contains(f), "{f} missing in {a}");
        }
        assert!(a.contains("--foreground") && a.contains("--config-net"));
        assert!(a.contains("--pid /proc/self/fd/7"));
        assert!(a.contains("--userns /proc/self/fd/6 --netns /proc/self/fd/5"));
        assert!(!a.contains("--netns-only"));
        assert!(a.contains(&format!("--address {ADDR4} --netmask 24 --gateway {GATEWAY4}")));
        assert!(a.contains(&format!("--address {ADDR6} --gateway {GATEWAY6}")));
        let a = args(5, None, 7, true, false).join(" ");
        assert!(a.ends_with("--netns /proc/self/fd/5 --netns-only"));
        assert!(!a.contains(ADDR6));
    }
}
